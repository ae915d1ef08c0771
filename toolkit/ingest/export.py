"""``journal export``: streams of the journal → files that the matching importer reads back.

``export_streams(journal, stream_ids, fmt, out_dir)`` reads the streams once (every column, in
version order) and hands them to the format's writer. A format is one function
``(events, out_dir, context) -> written paths`` registered with ``@exporter("name")``; the
writer for the Evennia archive lives with its importer and registers itself the same way
(``FORMATS`` lists where each is loaded from).

- ``agentstore``: an AgentStore data dir (``sessions/<id>.json``, ``events/<id>.jsonl``, an empty
  ``snapshots/``) that ``AgentStoreImporter`` — and the Go library — read: same streams, event
  types, payloads, times (µs), tokens, cost, model, tool and duration. What the format cannot
  carry is listed in ``docs/importers/agentstore.md``.
- ``jsonl``: canonical JSON lines (``events.jsonl``), every input column of the journal, which
  the ``jsonl`` importer reads back to the same events, ids included.

>>> sorted(FORMATS)
['agentstore', 'evennia-archive', 'jsonl']
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from toolkit.errors import ExportError, StreamNotFoundError
from toolkit.ingest.agentstore import COLUMN_KEYS, SESSION_TOPIC
from toolkit.journal.location import open_output
from toolkit.journal.prepare import INPUT_COLUMNS
from toolkit.journal.side_tables import read_table
from toolkit.journal.store import Journal


@dataclass(frozen=True)
class ExportContext:
    journal: Journal


ExportFn = Callable[[pa.Table, Path, ExportContext], list[Path]]

EXPORTERS: dict[str, ExportFn] = {}
# format -> module that registers its writer when imported (loaded only when that format is used)
FORMATS: Final[dict[str, str]] = {
    "agentstore": "toolkit.ingest.export",
    "jsonl": "toolkit.ingest.export",
    "evennia-archive": "toolkit.ingest.evennia_archive",
}


def exporter(name: str) -> Callable[[ExportFn], ExportFn]:
    """Register a writer: ``@exporter("agentstore") def write_agentstore(events, out, ctx): ...``."""

    def register(fn: ExportFn) -> ExportFn:
        EXPORTERS[name] = fn
        return fn

    return register


@dataclass
class ExportReport:
    format: str
    output: str
    streams: list[str] = field(default_factory=list)
    events: int = 0
    files: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "output": self.output,
            "streams": len(self.streams),
            "events": self.events,
            "files": self.files,
        }


def load_exporter(fmt: str) -> ExportFn:
    if fmt not in EXPORTERS and fmt in FORMATS:
        try:
            importlib.import_module(FORMATS[fmt])
        except ModuleNotFoundError as e:  # that format's module is not there (yet)
            if e.name != FORMATS[fmt]:
                raise
    fn = EXPORTERS.get(fmt)
    if fn is None:
        known = sorted(set(EXPORTERS) | set(FORMATS))  # FORMATS: also those whose module is not loaded yet
        raise ExportError(f"cannot export to {fmt!r}", hint=f"formats: {', '.join(known)}", format=fmt)
    return fn


def export_streams(
    journal: Journal,
    stream_ids: Sequence[str],
    fmt: str,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
) -> ExportReport:
    """Write the streams (whole, in version order) in format ``fmt`` under ``out_dir``.

    ``out_dir`` must not exist or be empty, unless ``overwrite`` (files of the same name are
    replaced; others are left alone).
    """
    write = load_exporter(fmt)
    wanted = list(dict.fromkeys(stream_ids))
    if not wanted:
        raise ExportError("no stream to export", hint="name one or more streams (journal streams lists them)")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: not a directory", hint="-o names a directory the files are written into")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(
            f"{out}: directory is not empty",
            hint="choose a new directory, or pass --force to write into it (files of the same name are replaced)",
            path=str(out),
        )
    events = journal.read_streams(wanted)
    found = set(pc.unique(events.column("stream_id")).to_pylist())
    missing = [s for s in wanted if s not in found]
    if missing:
        raise StreamNotFoundError(
            f"no stream {missing[0]!r} in {journal.path}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            hint="journal streams lists the streams of the journal",
            stream_id=missing[0],
        )
    events = _in_order(events, wanted)
    out.mkdir(parents=True, exist_ok=True)
    files = write(events, out, ExportContext(journal))
    return ExportReport(fmt, str(out), wanted, events.num_rows, [str(f) for f in files])


def _in_order(events: pa.Table, wanted: list[str]) -> pa.Table:
    """Streams in the order asked for, each in version order."""
    rank = {s: i for i, s in enumerate(wanted)}
    ranks = pa.array([rank[s] for s in events.column("stream_id").to_pylist()], pa.int64())
    return (
        events.append_column("_rank", ranks)
        .sort_by([("_rank", "ascending"), ("version", "ascending")])
        .drop_columns(["_rank"])
    )


def _streams(events: pa.Table) -> list[tuple[str, list[dict[str, Any]]]]:
    """(stream id, its rows as dicts) in table order."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for row in events.to_pylist():
        if not out or out[-1][0] != row["stream_id"]:
            out.append((row["stream_id"], []))
        out[-1][1].append(row)
    return out


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _decimal_text(d: Decimal) -> str:
    """A Decimal as a JSON number without an exponent (``0.000000200`` → ``0.0000002``)."""
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "") else text


# ------------------------------------------------------------------ AgentStore

# journal metadata keys the AgentStore importer adds (they travel as the line's own fields)
_IMPORTER_KEYS: Final = frozenset({"source_sequence_number", "source_fields"})


def rfc3339(ts: dt.datetime) -> str:
    """UTC, Go's ``RFC3339Nano`` layout: fraction with trailing zeros trimmed, none when zero.

    >>> rfc3339(dt.datetime(2026, 11, 21, 23, 43, 22, 368400, tzinfo=dt.UTC))
    '2026-11-21T23:43:22.3684Z'
    >>> rfc3339(dt.datetime(2026, 11, 21, 23, 43, 22, tzinfo=dt.UTC))
    '2026-11-21T23:43:22Z'
    """
    ts = ts.astimezone(dt.UTC)
    frac = f".{ts.microsecond:06d}".rstrip("0") if ts.microsecond else ""
    return ts.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def _session_file_name(stream_id: str) -> str:
    if not stream_id or stream_id in (".", "..") or any(c in stream_id for c in "/\\\x00"):
        raise ExportError(
            f"stream {stream_id!r} cannot be an AgentStore session: the session id names its files",
            hint="export it --to jsonl instead",
            stream_id=stream_id,
        )
    return stream_id


def _session_records(journal: Journal, stream_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The latest AgentStore session record of each stream, from ``source_snapshots``."""
    table = read_table(journal, "source_snapshots")
    if not table.num_rows:
        return {}
    mask = pc.and_(
        pc.equal(table.column("topic"), SESSION_TOPIC),
        pc.is_in(table.column("stream_id"), pa.array(stream_ids, pa.string())),
    )
    rows = table.filter(mask).sort_by(
        [("stream_id", "ascending"), ("version", "ascending"), ("recorded_at", "ascending")]
    )
    out: dict[str, dict[str, Any]] = {}
    for row in rows.select(["stream_id", "state"]).to_pylist():
        try:
            record = json.loads(row["state"])
        except ValueError:
            continue
        if isinstance(record, dict):
            out[row["stream_id"]] = record
    return out


def _agentstore_line(row: dict[str, Any], sequence_number: int) -> str:
    meta = json.loads(row["metadata"]) if row["metadata"] else {}
    fields = meta.pop("source_fields", None)
    # agentstore.Metadata in Go's field order, then any other metadata the journal kept
    parts: list[tuple[str, str]] = []
    if isinstance(meta.get("worker_id"), str):
        parts.append(("worker_id", _json(meta.pop("worker_id"))))
    for key in ("tokens_in", "tokens_out", "model", "tool_name"):
        if row[key] is not None:
            parts.append((key, _json(row[key])))
    if row["duration_ms"] is not None:  # AgentStore keeps whole milliseconds (int64)
        parts.append(("duration_ms", str(round(row["duration_ms"]))))
    if row["cost_usd"] is not None:  # the exact decimal, as a JSON number
        parts.append(("cost_usd", _decimal_text(row["cost_usd"])))
    if "extra" in meta:
        parts.append(("extra", _json(meta.pop("extra"))))
    parts.extend((k, _json(v)) for k, v in meta.items() if k not in _IMPORTER_KEYS and k not in COLUMN_KEYS)
    metadata = "{" + ",".join(f"{_json(k)}:{v}" for k, v in parts) + "}"
    line = (
        f'{{"session_id":{_json(row["stream_id"])},"sequence_number":{sequence_number},'
        f'"type":{_json(row["event_type"])},"payload":{row["data"]},'
        f'"timestamp":"{rfc3339(row["occurred_at"])}","metadata":{metadata}'
    )
    if isinstance(fields, dict):  # top-level fields the source line had besides AgentStore's six
        line += "".join(f",{_json(k)}:{_json(v)}" for k, v in fields.items())
    return line + "}"


def _sequence_numbers(rows: list[dict[str, Any]]) -> list[int]:
    """The AgentStore sequence numbers an imported stream had; otherwise the journal versions."""
    original = []
    for row in rows:
        source = row.get("source") or ""
        try:
            n = json.loads(row["metadata"]).get("source_sequence_number") if row["metadata"] else None
        except ValueError:
            n = None
        if not source.startswith("agentstore:") or type(n) is not int:
            return [row["version"] for row in rows]
        original.append(n)
    return original


@exporter("agentstore")
def write_agentstore(events: pa.Table, out: Path, ctx: ExportContext) -> list[Path]:
    streams = _streams(events)
    names = [_session_file_name(sid) for sid, _ in streams]
    records = _session_records(ctx.journal, names)
    for sub in ("sessions", "events", "snapshots"):
        (out / sub).mkdir(exist_ok=True)
    written: list[Path] = []
    for sid, rows in streams:
        seqs = _sequence_numbers(rows)
        path = out / "events" / f"{sid}.jsonl"
        with open_output(path, newline="\n") as f:  # a hard link (to a journal file?) is replaced
            for row, seq in zip(rows, seqs, strict=True):
                f.write(_agentstore_line(row, seq) + "\n")
        written.append(path)
        old = records.get(sid, {})
        session: dict[str, Any] = {"id": sid}
        if isinstance(old.get("name"), str) and old["name"]:
            session["name"] = old["name"]
        created = old.get("created_at")
        session["created_at"] = created if isinstance(created, str) else rfc3339(rows[0]["occurred_at"])
        session["updated_at"] = rfc3339(rows[-1]["occurred_at"])
        session["event_count"] = max(seqs)
        if isinstance(old.get("labels"), dict) and old["labels"]:
            session["labels"] = old["labels"]
        path = out / "sessions" / f"{sid}.json"
        with open_output(path) as f:
            f.write(json.dumps(session, ensure_ascii=False, indent=2))  # Go: no final newline
        written.append(path)
    return written


# ------------------------------------------------------------------ canonical JSONL

_JSONL_COLUMNS: Final = tuple(c for c in INPUT_COLUMNS if c not in ("data", "metadata"))


def _jsonl_line(row: dict[str, Any]) -> str:
    parts = []
    for name in _JSONL_COLUMNS:
        value = row.get(name)
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            text = '"' + value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + '"'
        elif isinstance(value, Decimal):
            text = _decimal_text(value)
        else:
            text = _json(value)
        parts.append(f'"{name}":{text}')
    parts.append(f'"data":{row["data"]}')
    parts.append(f'"metadata":{row["metadata"] or "{}"}')
    return "{" + ",".join(parts) + "}"


@exporter("jsonl")
def write_jsonl(events: pa.Table, out: Path, ctx: ExportContext) -> list[Path]:
    path = out / "events.jsonl"
    with open_output(path, newline="\n") as f:
        for row in events.select([c for c in INPUT_COLUMNS if c in events.column_names]).to_pylist():
            f.write(_jsonl_line(row) + "\n")
    return [path]
