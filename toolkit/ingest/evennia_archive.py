"""Evennia AI assistant archives (one JSON document per archived aggregate) → canonical rows, and back.

An archive is ``{assistant_key, aggregate_id, exported_at, event_count, events: [{topic,
timestamp, data}]}``: the events of one ``AssistantAggregate`` in version order, written by the
contrib's archive feature before it cleans the aggregate out of its database. The mapping is the
pyeventsourcing importer's (``toolkit.ingest.eventsourcing``), so the same event arriving through
the database and through an archive is one event (``docs/importers/evennia-archive.md``):

- the document is one stream: ``stream_id`` is ``aggregate_id`` as a dashed UUID, ``agent`` is
  ``assistant_key``; versions follow the array's order (entry *i* is version *i + 1*), event ids
  are ``derive_id("eventsourcing", stream_id, version)``;
- ``timestamp`` → ``occurred_at``, ``topic`` (short or full) → ``source_type`` and, by its last
  segment, ``event_type``; ``data`` → ``data``, where values the archive writer turned into
  ``str(datetime)`` (``2026-11-21 00:00:00+00:00``) get back their ISO spelling, as decoded
  from the database;
- ``token_usage``, ``execution_time_ms``/``duration_ms``, ``tool_name``, ``success``/``error`` fill
  the agent columns; an ``event_count`` that disagrees with ``events`` is reported as a note.

``export_evennia_archive`` writes streams of a journal back as archives that this importer reads
to the same events.

>>> restore_times({"window_start": "2026-11-21 00:00:00+00:00", "text": "at 2026-11-21 00:00:00"})
{'window_start': '2026-11-21T00:00:00+00:00', 'text': 'at 2026-11-21 00:00:00'}
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from toolkit.errors import EventValidationError, ToolkitError
from toolkit.ingest.base import (
    Importer,
    ImportOptions,
    Rejection,
    SourceBatch,
    link_outside,
    notes_only,
    read_path,
    rows_table,
    text_of,
)
from toolkit.ingest.eventsourcing import (
    StreamInfo,
    VersionCheck,
    event_name,
    event_row,
    reason_of,
    stream_id_of,
)
from toolkit.ingest.export import ExportContext, exporter
from toolkit.journal.prepare import INPUT_SCHEMA, normalise_event
from toolkit.journal.store import Journal

FORMAT = "evennia-archive"
SNIFF_BYTES = 1 << 16
# what json.dumps(default=str) makes of a datetime: isoformat() with a space instead of the T
_STR_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{6})?([+-]\d{2}:\d{2}(:\d{2}(\.\d{6})?)?)?$")
# keys an exporter that dumps vars(event) whole would add; the database keeps them out of the state
_ENVELOPE_KEYS = ("originator_id", "originator_version", "timestamp")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def restore_times(value: Any) -> Any:
    """Strings of exactly the ``str(datetime)`` shape, anywhere in ``value``, in ISO 8601 (with T)."""
    if isinstance(value, dict):
        return {k: restore_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [restore_times(v) for v in value]
    if isinstance(value, str) and _STR_DATETIME.fullmatch(value):
        return value[:10] + "T" + value[11:]
    return value


def _looks_like_archive(head: bytes) -> bool:
    text = head.lstrip()
    return text[:1] == b"{" and b'"aggregate_id"' in text and b'"events"' in text


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(SNIFF_BYTES)
    except OSError:
        return b""


def archive_files(path: str) -> tuple[list[Path], list[str]]:
    """The documents to read for ``path`` (a file, or the ``.json`` files of a directory) and notes
    on the symlinks out of the directory that were not read."""
    p = read_path(path)
    if p.is_file():
        return [p], []
    inside = p.resolve()
    files: list[Path] = []
    notes: list[str] = []
    for f in sorted(p.iterdir()):
        if f.is_dir():
            notes.append(
                f"{f}: not read: a subdirectory (archives are read from the directory named; name it to import it)"
            )
            continue
        if f.suffix != ".json":
            if f.is_file():
                notes.append(f"{f}: not read: not a .json file (an archive is one JSON document)")
            continue
        why = link_outside(f, inside)
        if why is not None:
            notes.append(why)
        elif f.is_file():
            files.append(f)
    return files, notes


class EvenniaArchiveImporter(Importer):
    name = FORMAT
    description = "Evennia AI assistant archive JSON (one document per archived aggregate)"

    def sniff(self, path: str) -> bool:
        p = Path(path)
        if p.is_file():
            return p.suffix == ".json" and _looks_like_archive(_head(p))
        if p.is_dir():
            return any(f.suffix == ".json" and f.is_file() and _looks_like_archive(_head(f)) for f in p.iterdir())
        return False

    def batches(self, path: str, options: ImportOptions) -> Iterator[SourceBatch]:
        now = dt.datetime.now(dt.UTC)
        files, notes = archive_files(path)
        yield from notes_only(notes)
        for file in files:
            yield self._document(file, options, now)

    def _document(self, file: Path, options: ImportOptions, now: dt.datetime) -> SourceBatch:
        where = str(file)
        raw = file.read_bytes()

        def whole(reason: str) -> SourceBatch:
            return SourceBatch(INPUT_SCHEMA.empty_table(), [Rejection(where, "document", reason, text_of(raw))], 1)

        try:
            doc = json.loads(raw)
        except ValueError as e:  # also bad UTF-8
            return whole(f"not JSON ({e}); a cut-off archive cannot be read in part")
        if not isinstance(doc, dict):
            return whole("not an Evennia archive: the document is not a JSON object")
        aggregate_id, entries = doc.get("aggregate_id"), doc.get("events")
        if not isinstance(aggregate_id, str) or not aggregate_id.strip() or not isinstance(entries, list):
            return whole("not an Evennia archive: needs aggregate_id (a string) and events (a list)")
        stream_id = stream_id_of(aggregate_id)
        notes = []
        count = doc.get("event_count")
        if count != len(entries):
            notes.append(f"{where}: event_count is {count!r} but events holds {len(entries)}; imported the events")
        key = doc.get("assistant_key")
        first = entries[0].get("data") if entries and isinstance(entries[0], dict) else None
        info = StreamInfo.of_created(first, options.stream_type, key if isinstance(key, str) and key else None)
        versions = VersionCheck()
        rows: list[dict[str, Any]] = []
        rejections: list[Rejection] = []
        for i, entry in enumerate(entries):
            version = i + 1
            location = f"events[{i}] (version {version})"
            row, reason = self._entry(entry, stream_id, version, info, f"{FORMAT}:{where}#events[{i}]", now)
            reason = versions.problem(stream_id, version) or reason
            if reason is not None or row is None:
                versions.reject(stream_id, version)
                record = json.dumps(entry, ensure_ascii=False, default=str)
                rejections.append(Rejection(where, location, reason or "unreadable", text_of(record)))
                continue
            versions.accept(stream_id, version)
            rows.append(row)
        table, unstorable = rows_table(rows, INPUT_SCHEMA, FORMAT)
        return SourceBatch(table, [*rejections, *unstorable], len(entries), notes)

    @staticmethod
    def _entry(
        entry: Any, stream_id: str, version: int, info: StreamInfo, source: str, now: dt.datetime
    ) -> tuple[dict[str, Any] | None, str | None]:
        if not isinstance(entry, dict):
            return None, "an event entry must be a JSON object"
        topic = entry.get("topic")
        if not isinstance(topic, str) or not topic.strip():
            return None, "no topic (the event class name)"
        if "data" not in entry:
            return None, "no data (the event's attributes)"
        data = entry["data"]
        timestamp = entry.get("timestamp")
        if isinstance(data, dict):
            data = dict(data)
            embedded = {k: data.pop(k) for k in _ENVELOPE_KEYS if k in data}
            timestamp = timestamp if timestamp is not None else embedded.get("timestamp")
        if timestamp is None:
            return None, "no timestamp"
        candidate = event_row(
            stream_id=stream_id,
            version=version,
            topic=topic,
            occurred_at=timestamp,
            data=restore_times(data),
            source=source,
            info=info,
        )
        try:
            return normalise_event(candidate, 0, now), None
        except EventValidationError as e:
            return None, reason_of(e)


# ---------------------------------------------------------------------- export


def _safe_name(text: str) -> str:
    return _UNSAFE_NAME.sub("_", text).strip("._") or "stream"


def archive_document(journal: Journal, stream_id: str, exported_at: dt.datetime) -> dict[str, Any]:
    """One stream of the journal as an archive document (the format the importer reads)."""
    t = journal.read_stream(stream_id, ["version", "event_type", "source_type", "occurred_at", "data", "agent"])
    if t.num_rows == 0:
        raise ToolkitError(
            f"stream {stream_id!r} is not in the journal",
            hint="list the streams with: journal streams",
            stream_id=stream_id,
        )
    events = []
    agent = None
    for r in t.to_pylist():
        data = json.loads(r["data"])
        if r["version"] == 1 and isinstance(data, dict) and isinstance(data.get("assistant_key"), str):
            agent = agent or data["assistant_key"]
        agent = r["agent"] or agent
        occurred: dt.datetime = r["occurred_at"]
        events.append(
            {
                "topic": event_name(r["source_type"]) if r["source_type"] else r["event_type"],
                "timestamp": occurred.astimezone(dt.UTC).isoformat(),
                "data": data,
            }
        )
    return {
        "assistant_key": agent or stream_id,
        "aggregate_id": stream_id,
        "exported_at": exported_at.astimezone(dt.UTC).isoformat(),
        "event_count": len(events),
        "events": events,
    }


def export_evennia_archive(
    journal: Journal,
    stream_ids: Sequence[str],
    out_dir: str | Path,
    *,
    exported_at: dt.datetime | None = None,
) -> list[Path]:
    """Write each stream as ``<assistant_key>_<UTC time>.json`` under ``out_dir``; return the paths.

    ``evennia-archive`` import reads them back to the same events (ids, versions, types, times,
    data and the columns derived from data); what an archive cannot carry is listed in
    ``docs/importers/evennia-archive.md``.
    """
    at = exported_at or dt.datetime.now(dt.UTC)
    if at.tzinfo is None:
        raise ToolkitError("exported_at has no time zone", hint="pass an aware datetime, e.g. datetime.now(UTC)")
    stamp = at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for stream_id in dict.fromkeys(stream_ids):
        doc = archive_document(journal, stream_id, at)
        path = out / f"{_safe_name(str(doc['assistant_key']))}_{stamp}.json"
        if path in written:
            path = out / f"{_safe_name(str(doc['assistant_key']))}_{_safe_name(stream_id)}_{stamp}.json"
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(path)
    return written


@exporter("evennia-archive")
def _write_evennia_archive(events: pa.Table, out: Path, ctx: ExportContext) -> list[Path]:
    """``journal export --to evennia-archive``: one archive per stream."""
    stream_ids = list(dict.fromkeys(events.column("stream_id").to_pylist()))
    return export_evennia_archive(ctx.journal, stream_ids, out)
