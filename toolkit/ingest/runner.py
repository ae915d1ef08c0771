"""``journal import``: choose the importer, validate, append idempotently or quarantine, count.

``--on-error fail`` (default) stops at the first bad record, naming file:line and the reason,
and writes nothing. ``--on-error quarantine`` imports every valid record and writes each
rejected one verbatim, with its location and reason, to the journal's ``quarantine`` table.
Events are appended in one commit, so an import is all-or-nothing; event ids are deterministic,
so importing the same export again adds nothing and an export that has grown adds only the
new events.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from toolkit.errors import ConcurrencyError, DuplicateEventError, EventValidationError, InvalidPathError
from toolkit.ingest.base import (
    Importer,
    ImportFormatError,
    ImportOptions,
    RecordRejectedError,
    Rejection,
    display_path,
    split_source,
)
from toolkit.ingest.idempotency import check_field, fill_idempotency_key
from toolkit.journal.lock import write_lock
from toolkit.journal.prepare import check_stream_type, validate_table
from toolkit.journal.side_tables import append_rows, read_table
from toolkit.journal.store import AppendResult, Journal

# name -> "module:Class", in sniffing order (most specific first); loaded only when used
REGISTRY: dict[str, str] = {
    "agentstore": "toolkit.ingest.agentstore:AgentStoreImporter",
    "eventsourcing": "toolkit.ingest.eventsourcing:EventsourcingImporter",
    "evennia-archive": "toolkit.ingest.evennia_archive:EvenniaArchiveImporter",
    "otlp": "toolkit.ingest.otlp:OtlpImporter",
    "chat": "toolkit.ingest.chat:ChatImporter",
    "jsonl": "toolkit.ingest.jsonl:CanonicalJsonlImporter",
    "csv": "toolkit.ingest.tabular:CsvImporter",
    "parquet": "toolkit.ingest.tabular:ParquetImporter",
}

OnError = Literal["fail", "quarantine"]


def register(name: str, target: str) -> None:
    REGISTRY[name] = target


def load_importer(name: str) -> Importer:
    target = REGISTRY.get(name)
    if target is None:
        raise ImportFormatError(
            f"unknown format {name!r}",
            hint=f"formats: auto, {', '.join(REGISTRY)}",
        )
    module, _, cls = target.partition(":")
    importer: Importer = getattr(importlib.import_module(module), cls)()
    return importer


def choose_importer(path: str, fmt: str = "auto") -> Importer:
    if "://" not in path and not os.path.exists(path):  # a URL (PostgreSQL) is sniffed as given
        raise InvalidPathError(f"{path}: no such file or directory", hint="check the path to import", path=path)
    if fmt != "auto":
        return load_importer(fmt)
    for name in REGISTRY:
        importer = load_importer(name)
        if importer.sniff(path):
            return importer
    raise ImportFormatError(
        f"{path}: cannot tell which format this is",
        hint=f"name it with --from ({', '.join(REGISTRY)})",
        path=path,
    )


@dataclass
class ImportReport:
    formats: dict[str, str] = field(default_factory=dict)  # path -> format chosen
    read: int = 0
    imported: int = 0
    already_present: int = 0
    #: by column, how many events already present came with a value the journal's copy lacks
    already_present_lacking: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    quarantined: int = 0
    snapshots: int = 0
    streams: int = 0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "formats": self.formats,
            "read": self.read,
            "imported": self.imported,
            "already_present": self.already_present,
            "already_present_lacking": self.already_present_lacking,
            "rejected": self.rejected,
            "quarantined": self.quarantined,
            "snapshots_kept": self.snapshots,
            "streams": self.streams,
            "dry_run": self.dry_run,
            "notes": self.notes,
        }


def split_valid(table: pa.Table, fmt: str, origins: pa.ChunkedArray | None = None) -> tuple[pa.Table, list[Rejection]]:
    """Validate a batch; rows the journal would refuse become rejections, located by ``origins``
    (where each row was read, ``SourceBatch.origins``) or else by the row's ``source``."""
    valid, _, rejected = _split_valid(table, fmt, _origins(table, origins))
    return valid, rejected


def _origins(table: pa.Table, origins: pa.ChunkedArray | None) -> pa.ChunkedArray:
    """Where each row was read: ``origins`` when the importer gave them, else the ``source`` column."""
    if origins is None and "source" in table.column_names:
        origins = table.column("source")
    if origins is None:
        return pa.chunked_array([pa.nulls(table.num_rows, pa.string())])
    return origins.cast(pa.string())


def _split_valid(
    table: pa.Table, fmt: str, origins: pa.ChunkedArray
) -> tuple[pa.Table, pa.ChunkedArray, list[Rejection]]:
    rejected: list[Rejection] = []
    while table.num_rows:
        try:
            return validate_table(table), origins, rejected
        except EventValidationError as e:
            i = e.context.get("index")
            if not isinstance(i, int) or not 0 <= i < table.num_rows:
                raise
            row = table.slice(i, 1)
            try:
                validate_table(row)
            except EventValidationError:
                pass
            else:  # not a property of that row: an importer bug, not bad input
                raise
            source, location = split_source(origins[i].as_py(), fmt, i)
            reason = str(e).split("\n", 1)[0].split(": ", 1)[-1]
            rejected.append(Rejection(source, location, reason, _row_text(row)))
            keep = pc.not_equal(pa.array(range(table.num_rows), pa.int64()), i)
            table, origins = table.filter(keep), origins.filter(keep)
    return table, origins, rejected


def _row_text(row: pa.Table) -> str:
    """A rejected row as JSON text; times as Arrow prints them (they may be beyond datetime's range)."""
    import json

    cols = {
        name: pc.cast(col, pa.string()) if pa.types.is_temporal(col.type) or pa.types.is_decimal(col.type) else col
        for name, col in zip(row.column_names, row.columns, strict=True)
    }
    return json.dumps(pa.table(cols).to_pylist()[0], default=str, ensure_ascii=False)


def import_paths(
    journal: Journal,
    paths: Sequence[str],
    *,
    fmt: str = "auto",
    on_error: OnError = "fail",
    dry_run: bool = False,
    options: ImportOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import exports into the journal; see the module docstring for the error policy."""
    options = options or ImportOptions()
    if options.idempotency_field:
        check_field(options.idempotency_field)
    if options.stream_type is not None:
        check_stream_type(options.stream_type)
    report = ImportReport(dry_run=dry_run)
    staged: list[pa.Table] = []
    staged_origins: list[pa.ChunkedArray] = []
    quarantine: list[dict[str, Any]] = []
    snapshots: list[dict[str, Any]] = []
    named: dict[str, str] = {}  # real path -> the path it was first given as
    for given in paths:
        # the real path (symlinks, "..", the working directory resolved): rows name the same file
        # however it is given, so a rerun through another name finds its quarantine and snapshot
        # rows already there, and a file named twice in one import is read once
        path = given if "://" in given else os.path.realpath(os.path.expanduser(given))
        if path in named:
            kind = "directory" if os.path.isdir(path) else "file"
            report.notes.append(f"{display_path(given)}: not read again: the same {kind} as {named[path]}")
            continue
        named[path] = display_path(given)
        importer = choose_importer(given, fmt)
        report.formats[display_path(given)] = importer.name
        for batch in importer.batches(path, options):
            report.read += batch.read
            report.notes.extend(batch.notes)
            events = batch.events
            if options.stream_type:  # for events whose source names no stream type
                given = pa.repeat(pa.scalar(options.stream_type), events.num_rows)
                if "stream_type" in events.column_names:
                    i = events.schema.get_field_index("stream_type")
                    events = events.set_column(i, "stream_type", pc.coalesce(events.column(i), given))
                else:
                    events = events.append_column("stream_type", given)
            origins = _origins(events, batch.origins)
            valid, origins, bad = (
                _split_valid(events, importer.name, origins) if events.num_rows else (events, origins, [])
            )
            rejections = [*batch.rejections, *bad]
            if rejections and on_error == "fail":
                raise RecordRejectedError.of(rejections[0])
            report.rejections.extend(rejections)
            quarantine.extend(
                {
                    "format": importer.name,
                    "source": r.source,
                    "location": r.location,
                    "reason": r.reason,
                    "record": r.record,
                }
                for r in rejections
            )
            snapshots.extend({"format": importer.name, **s} for s in batch.snapshots)
            if valid.num_rows and options.idempotency_field:
                valid = fill_idempotency_key(valid, options.idempotency_field)
            if valid.num_rows:
                staged.append(valid)
                staged_origins.append(origins)
            if progress:
                progress(batch.read)
    events = _concat(staged)
    if events.num_rows:  # one commit: all or nothing (a dry run counts what it would do)
        origins = pa.chunked_array([c for o in staged_origins for c in o.chunks], pa.string())
        result, conflicts = _append(journal, events, origins, on_error, dry_run)
        report.imported, report.already_present = result.appended, result.skipped
        report.already_present_lacking = dict(result.lacking)
        if (note := result.lacking_note()) is not None:
            report.notes.append(note)
        report.rejections.extend(conflicts)
        quarantine.extend(
            {"format": "import", "source": r.source, "location": r.location, "reason": r.reason, "record": r.record}
            for r in conflicts
        )
        report.streams = result.streams
    report.rejected = len(report.rejections)
    if dry_run:
        report.snapshots = len(snapshots)
        return report
    report.quarantined = _append_new(journal, "quarantine", quarantine)
    report.snapshots = _append_new(journal, "source_snapshots", snapshots)
    return report


_BATCH_INDEX = re.compile(r"^event \d+: ")
_OTHER_INDEX = re.compile(r"event (\d+) of this batch")


def _append(
    journal: Journal, events: pa.Table, origins: pa.ChunkedArray, on_error: OnError, dry_run: bool
) -> tuple[AppendResult, list[Rejection]]:
    """Append (or plan) ``events``; an event the journal refuses because of what it already holds
    or of another event of the import (the same id with different content, a stream of another
    type, a version the stream is not at) is located by its source row (``origins``: where each
    event was read): with ``fail`` the import stops naming it, with ``quarantine`` it is set aside
    and the others are appended."""
    conflicts: list[Rejection] = []
    while True:
        try:
            return (journal.plan_validated(events) if dry_run else journal.append_validated(events)), conflicts
        except (DuplicateEventError, EventValidationError, ConcurrencyError) as e:
            i = e.context.get("index")
            if not isinstance(i, int) or not 0 <= i < events.num_rows or e.context.get("field") == "<table>":
                raise
            rejection = _located(events, origins, i, e.message)
            if on_error == "fail":
                raise RecordRejectedError.of(rejection) from None
            conflicts.append(rejection)
            keep = pc.not_equal(pa.array(range(events.num_rows), pa.int64()), i)
            events, origins = events.filter(keep), origins.filter(keep)
            if events.num_rows == 0:
                return AppendResult(), conflicts


def _located(events: pa.Table, origins: pa.ChunkedArray, i: int, message: str) -> Rejection:
    """A refused event as a rejection at its source row; "event N of this batch" becomes that row's place."""

    def where(k: int) -> tuple[str, str]:
        return split_source(origins[k].as_py(), "import", k)

    def other(m: re.Match[str]) -> str:
        k = int(m.group(1))
        return "the event at {} {}".format(*where(k)) if 0 <= k < events.num_rows else m.group(0)

    source, location = where(i)
    reason = _OTHER_INDEX.sub(other, _BATCH_INDEX.sub("", message))
    return Rejection(source, location, reason, _row_text(events.slice(i, 1)))


def _concat(tables: list[pa.Table]) -> pa.Table:
    if not tables:
        return pa.table({"stream_id": pa.array([], pa.string())})
    return pa.concat_tables(tables, promote_options="permissive")


_KEYS = {
    "quarantine": ("format", "source", "location", "reason", "record"),
    "source_snapshots": ("format", "source", "stream_id", "version"),
}


def _append_new(journal: Journal, name: str, rows: list[dict[str, Any]]) -> int:
    """Append the rows not already in the side table (re-importing the same export adds nothing);
    read and append under one hold of the write lock, so two imports at once add each row once."""
    if not rows:
        return 0
    keys = _KEYS[name]
    with write_lock(journal.path, journal.config.lock_timeout_s, nested=True):
        existing = read_table(journal, name).select(list(keys)).to_pylist()
        seen = {tuple(r[k] for k in keys) for r in existing}
        out = []
        for r in rows:
            key = tuple(r.get(k) for k in keys)
            if key not in seen:
                seen.add(key)
                out.append(r)
        return append_rows(journal, name, out)
