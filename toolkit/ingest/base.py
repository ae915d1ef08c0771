"""The importer contract: a foreign export → batches of canonical event rows and rejections.

An importer reads one path (a file, a directory, or a database URL) and yields ``SourceBatch``es:
an Arrow table with columns of ``INPUT_SCHEMA`` (any subset; ``source`` must say where each row
came from, e.g. ``agentstore:events/s1.jsonl:12``) plus the records it could not turn into events,
each with its location and reason. When a row's ``source`` is the record's own (a JSONL line or a
CSV cell may name one), the table also has an ``ORIGIN`` column saying where the row was read;
``SourceBatch`` moves it to ``origins``, which the runner uses to locate the rows it refuses. Importers never write: ``toolkit.ingest.runner`` validates,
appends (idempotently: event ids are deterministic) or quarantines, and counts.

A new importer is a subclass with ``name``, ``sniff`` and ``batches``; the contract tests in
``tests/ingest/test_importer_contract.py`` cover it once it is registered in ``IMPORTERS``.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

from toolkit.errors import ToolkitError

# ids the importers derive: uuid5(IMPORT_NAMESPACE, "<format family>/<source identity>")
IMPORT_NAMESPACE = uuid.UUID("3b0f5d1e-8f6a-5c2b-9d47-1e2a3b4c5d6e")


def derive_id(*parts: object) -> str:
    """A deterministic event id from the source identity of an event.

    >>> derive_id("agentstore", "support-triage-0001", 3) == derive_id("agentstore", "support-triage-0001", 3)
    True
    """
    return str(uuid.uuid5(IMPORT_NAMESPACE, "/".join(str(p) for p in parts)))


@dataclass(frozen=True)
class Rejection:
    """A source record that did not become an event: where it is, why, and the record itself."""

    source: str  # file path or database (without credentials)
    location: str  # "line 12", "row 4", "stored_events rowid 25"
    reason: str
    record: str | None = None  # verbatim text (bytes are shown as hex)


ORIGIN = "_origin"  # where a row was read ("jsonl:f.jsonl:12"), when its ``source`` may say something else


@dataclass
class SourceBatch:
    events: pa.Table
    rejections: list[Rejection] = field(default_factory=list)
    read: int = 0  # source records read for this batch (events, rejected and ignored alike)
    notes: list[str] = field(default_factory=list)  # facts worth reporting (snapshots kept, counts that disagree)
    snapshots: list[dict[str, Any]] = field(default_factory=list)  # rows for the source_snapshots table
    origins: pa.ChunkedArray | None = None  # per event row, where it was read (None: its ``source`` says)

    def __post_init__(self) -> None:
        if ORIGIN in self.events.column_names:  # an importer's ORIGIN column becomes ``origins``
            self.origins = self.events.column(ORIGIN)
            self.events = self.events.drop_columns([ORIGIN])


@dataclass(frozen=True)
class ImportOptions:
    stream_type: str | None = None
    mapping: Path | None = None
    cipher_key: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    idempotency_field: str | None = None  # fill idempotency_key from this column or data./metadata. path


class Importer:
    """Base of every importer; subclasses set ``name`` and implement ``sniff`` and ``batches``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def sniff(self, path: str) -> bool:
        """True when ``path`` looks like this importer's format (cheap: names and first bytes)."""
        raise NotImplementedError

    def batches(self, path: str, options: ImportOptions) -> Iterator[SourceBatch]:
        raise NotImplementedError


_LINE_SOURCE = re.compile(r"[\w-]+:(.+):(\d+)")  # jsonl:f:12, agentstore:f:12, otlp:f:12, csv:f:12, parquet:f:3
_CHAT_SOURCE = re.compile(r"chat:(.+):((?:line|run) \d+, message \d+(?:, tool call \d+)?)")
_PART_SOURCE = re.compile(r"[\w-]+:(.+)#([^#]+)")  # evennia-archive:f#events[2], otlp:f#resourceSpans[0]…
_ROW_SOURCE = re.compile(r"(eventsourcing:.+\?table=([^&]+).*)&(rowid|id|notification_id)=(\d+)")


def split_source(where: str | None, fmt: str, index: int) -> tuple[str, str]:
    """(source, location) of a row from its ``source`` column, as the importer itself names the
    record when it rejects it; ``record <index>`` (the row's place in the batch) for a source it
    cannot read (given in the input, or none).

    >>> split_source("jsonl:runs/a.jsonl:7", "jsonl", 0)
    ('runs/a.jsonl', 'line 7')
    >>> split_source("parquet:runs/a.parquet:7", "parquet", 0)
    ('runs/a.parquet', 'row 7')
    >>> split_source("chat:runs/a.json:run 2, message 3, tool call 1", "chat", 0)
    ('runs/a.json', 'run 2, message 3, tool call 1')
    >>> split_source("evennia-archive:a/guide.json#events[2]", "import", 16)
    ('a/guide.json', 'events[2]')
    >>> split_source("agentstore:x/s1.replay.json#record-4", "import", 16)
    ('x/s1.replay.json', 'record 4')
    >>> split_source("eventsourcing:db.sqlite?table=stored_events&rowid=25", "import", 16)
    ('eventsourcing:db.sqlite?table=stored_events', 'stored_events rowid 25')
    >>> split_source(None, "csv", 3)
    ('csv', 'record 3')
    """
    if not where:
        return fmt, f"record {index}"
    if m := _LINE_SOURCE.fullmatch(where):
        return m[1], f"{'row' if where.startswith('parquet:') else 'line'} {m[2]}"
    if m := _CHAT_SOURCE.fullmatch(where):
        return m[1], m[2]
    if m := _PART_SOURCE.fullmatch(where):
        part = m[2]
        return m[1], f"record {part.removeprefix('record-')}" if re.fullmatch(r"record-\d+", part) else part
    if m := _ROW_SOURCE.fullmatch(where):
        return m[1], f"{m[2]} {m[3]} {m[4]}"
    return where, f"record {index}"


_CONVERSION_ERRORS = (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError)


def rows_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema, fmt: str) -> tuple[pa.Table, list[Rejection]]:
    """``rows`` as a table of ``schema``; a row a column cannot hold (an integer beyond 64 bits,
    a value of the wrong kind) becomes a rejection located by its ``ORIGIN`` (else its ``source``)
    instead of a crash.

    >>> import pyarrow as pa
    >>> t, bad = rows_table([{"n": 1, "source": "x:f:1"}, {"n": 2**70, "source": "x:f:2"}],
    ...                     pa.schema([("n", pa.int64()), ("source", pa.string())]), "x")
    >>> t.column("n").to_pylist(), [(r.location, r.reason) for r in bad]
    ([1], [('line 2', 'n: cannot be stored as int64: 1180591620717411303424')])
    """
    try:
        return pa.Table.from_pylist(list(rows), schema=schema), []
    except _CONVERSION_ERRORS:
        pass
    good: list[Mapping[str, Any]] = []
    bad: list[Rejection] = []
    for i, row in enumerate(rows):
        field = next((f for f in schema if f.name in row and not _fits(row[f.name], f.type)), None)
        if field is None:
            good.append(row)
            continue
        source, location = split_source(row.get(ORIGIN) or row.get("source"), fmt, i)
        reason = f"{field.name}: cannot be stored as {field.type}: {row[field.name]!r}"
        record = {k: v for k, v in row.items() if k != ORIGIN}
        bad.append(Rejection(source, location, reason, json.dumps(record, default=str, ensure_ascii=False)))
    return pa.Table.from_pylist(good, schema=schema), bad


def _fits(value: Any, type_: pa.DataType) -> bool:
    try:
        pa.array([value], type_)
    except _CONVERSION_ERRORS:
        return False
    return True


class ImportFormatError(ToolkitError, ValueError):
    """The input is not in a format the chosen importer reads."""

    # where no more specific hint is given
    hint = "check that the file is whole and in the format it was read as (name one with --from; see docs/importers/)"


class RecordRejectedError(ToolkitError, ValueError):
    """``--on-error fail``: a record could not be imported; nothing was written."""

    @classmethod
    def of(cls, r: Rejection) -> RecordRejectedError:
        return cls(
            f"{r.source}: {r.location}: {r.reason}",
            hint="nothing was written; fix the record, or import the valid records with --on-error quarantine",
            source=r.source,
            location=r.location,
            reason=r.reason,
        )


def non_utf8_field(row: Mapping[str, Any]) -> str | None:
    """The first text field that cannot be stored as UTF-8 (JSON escapes can spell lone surrogates).

    >>> non_utf8_field({"a": "ok", "b": chr(0xD800)})
    'b'
    """
    for name, value in row.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return name
    return None


def text_of(record: bytes | str | None, limit: int = 1 << 20) -> str | None:
    """A record as quarantine text: UTF-8 when it decodes, else hex; capped at ``limit`` chars."""
    if record is None:
        return None
    if isinstance(record, bytes):
        try:
            text = record.decode("utf-8")
        except UnicodeDecodeError:
            text = "hex:" + record.hex()
    else:
        text = record
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more characters]"


def read_path(path: str) -> Path:
    """A user-supplied input path: must exist and be a file or directory."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ImportFormatError(f"{path}: no such file or directory", hint="check the path", path=path)
    if not (p.is_file() or p.is_dir()):
        raise ImportFormatError(
            f"{path}: not a regular file or directory",
            hint="import files or folders of them; save what a pipe or device gives to a file first",
            path=path,
        )
    return p


def link_outside(p: Path, inside: Path) -> str | None:
    """Why ``p`` is not read: it is a symlink whose target is not below ``inside`` (a resolved
    directory being imported), or cannot be resolved. None when ``p`` may be read.

    A directory import reads what is in the directory; a link out of it (``events/s1.jsonl ->
    /etc/hostname``) is skipped and reported. Naming a file on the command line still reads it.
    """
    if not p.is_symlink():
        return None
    try:
        target = p.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return f"{p}: not read: a symlink that cannot be resolved"
    if target.is_relative_to(inside):
        return None
    return f"{p}: not read: a symlink to {target}, outside the directory being imported (name it to import it)"


def files_below(root: Path, keep: Callable[[Path], bool], wanted: str = "") -> tuple[list[Path], list[str]]:
    """The files below the directory ``root`` that ``keep`` accepts (sorted), and a note for each
    file ``keep`` refuses (``wanted``: the names it takes, for the note), for each symlink leading
    outside ``root`` (to such a file or to a directory) that was not read, and for each symlink to
    a file that is read under another name (read once, so quarantined once).

    Symlinked directories are never entered (as ``Path.rglob`` before Python 3.13).
    """
    inside = root.resolve()
    files: list[Path] = []
    notes: list[str] = []
    for here, dirs, names in os.walk(root):
        for name in sorted([*dirs, *names]):
            f = Path(here, name)
            if name in names and not keep(f):
                if f.is_file():
                    notes.append(f"{f}: not read: not a {wanted or 'file of this format'} file by its name")
                continue
            why = link_outside(f, inside)
            if why is not None:
                notes.append(why)
            elif name in names and f.is_file():
                files.append(f)
    read: dict[Path, Path] = {}  # real path -> the name it is read by: the file itself, else its first link
    for f in sorted(files, key=lambda f: (f.is_symlink(), f)):
        real = f.resolve()
        if real in read:
            notes.append(f"{f}: not read: the same file as {read[real]}")
        else:
            read[real] = f
    return sorted(read.values()), notes


def notes_only(notes: list[str]) -> Iterator[SourceBatch]:
    """A batch of no events carrying ``notes`` (files a directory import did not read), if any."""
    if notes:
        from toolkit.journal.prepare import INPUT_SCHEMA

        yield SourceBatch(INPUT_SCHEMA.empty_table(), [], 0, notes)


def public_url(url: str) -> str:
    """A database URL without password and query (for sources and messages).

    >>> public_url("postgresql://app:secret@db.example:5432/game?sslmode=require")
    'postgresql://app@db.example:5432/game'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = (f"{parts.username}@" if parts.username else "") + host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def display_path(path: str) -> str:
    """A path or URL as it may be shown and recorded: URLs lose their password and query."""
    return public_url(path) if "://" in path else path
