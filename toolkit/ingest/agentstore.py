"""AgentStore (Go, file backend) data directories and ``*.replay.json`` library exports.

Mapping (the whole story, with every pitfall's outcome, is in ``docs/importers/agentstore.md``):

- a session is a stream: ``stream_id`` = ``session_id``, ``stream_type`` = ``agent_session``
  (or ``--stream-type``);
- an event line is an event: ``type`` → ``event_type`` and ``source_type``, ``payload`` (any JSON)
  → ``data``, ``timestamp`` (0–9 fraction digits) → ``occurred_at`` (cut to µs),
  ``metadata.{tokens_in, tokens_out, model, tool_name, duration_ms, cost_usd}`` → columns,
  every other metadata key (``worker_id``, ``extra``, …) and ``source_sequence_number`` → ``metadata``;
- versions follow ``sequence_number`` (ties in file order), contiguous from 1; the event id is
  ``derive_id("agentstore", session_id, sequence_number, content)`` where ``content`` is what the
  event says (type, payload, metadata, tokens, model, tool, duration, cost, time to the µs): two
  writers' different events with one sequence number get different ids, an exact copy the same;
- session records and snapshots are not events: they become ``source_snapshots`` rows
  (topics ``agentstore:session`` and ``agentstore:snapshot``) and notes in the report.

An event's content depends on its line alone, so a ``.replay.json`` of a session and the session's
``events/<id>.jsonl`` give the same events, and a file that has grown imports only its new lines.

Events files are read in blocks by ``toolkit.ingest.agentstore_bulk`` (Polars, ids hashed by
polars-hash or DuckDB, no per-line Python) for the lines it can prove give the same event; every other line goes through ``_parse_line``, the
line-by-line reader, which is the reference and words every rejection.

>>> AgentStoreImporter().sniff("notes.txt")
False
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO, Final

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from pydantic_core import from_json

from toolkit.errors import EventValidationError
from toolkit.ingest.agentstore_bulk import bulk_lines, lines_at
from toolkit.ingest.base import (
    IMPORT_NAMESPACE,
    Importer,
    ImportFormatError,
    ImportOptions,
    Rejection,
    SourceBatch,
    link_outside,
    notes_only,
    read_path,
    text_of,
)
from toolkit.journal.prepare import INPUT_SCHEMA, parse_time
from toolkit.journal.schema import COST, TIMESTAMP

FORMAT: Final = "agentstore"
STREAM_TYPE: Final = "agent_session"
SESSION_TOPIC: Final = "agentstore:session"
SNAPSHOT_TOPIC: Final = "agentstore:snapshot"
BATCH_LINES: Final = 100_000  # replay records parsed between two progress reports
BLOCK_BYTES: Final = 24 << 20  # events-file bytes parsed between two progress reports
WORKERS: Final = 2  # blocks of an events file parsed at a time (one per core)
# the block readers' threads, kept across files and imports (a process that forks must not use it:
# the toolkit's worker processes are spawned)
_POOL: list[ThreadPoolExecutor] = []
FIELDS: Final = ("session_id", "sequence_number", "type", "payload", "timestamp", "metadata")
# metadata keys that become columns; every other key stays in the event's metadata
COLUMN_KEYS: Final = frozenset({"tokens_in", "tokens_out", "model", "tool_name", "duration_ms", "cost_usd"})
_INT64_MAX: Final = (1 << 63) - 1
_COST_LIMIT: Final = Decimal(10) ** 9
_NANO: Final = Decimal("1e-9")
_ZONE_RE: Final = r"(Z|z|[+-]\d\d:?\d\d)$"
_EVENT_LINE_RE: Final = re.compile(rb'^\s*\{\s*"session_id"\s*:\s*"[^"]*"\s*,\s*"sequence_number"\s*:')
_REPLAY_RE: Final = re.compile(rb'^\s*\[\s*(\]|\{\s*"session_id"\s*:)')
_BOM: Final = b"\xef\xbb\xbf"
_SNIFF_BYTES: Final = 1 << 20  # how much of a .jsonl file is searched for an event line
SEARCH_DEPTH: Final = 6  # directory levels searched below a directory import
NOTE_NAMES: Final = 5  # files named one by one in the notes; more are counted with the first names


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


def _encoder() -> Callable[[Any], str]:
    """Canonical JSON text; the C encoder built once (``JSONEncoder.encode`` rebuilds it per call)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    ascii_ok = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or ascii_ok is None:  # no C accelerator: the same output, slower
        return json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
    iterencode = make(None, _not_json, ascii_ok, None, ":", ",", True, False, False)

    def encode(value: Any) -> str:
        return "".join(iterencode(value, 0))

    return encode


_encode = _encoder()
_encode_str: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring", None) or _encode


def canonical(value: Any) -> str:
    """Compact, key-sorted JSON (the journal's encoding of data and metadata).

    >>> canonical({"b": "<&>", "a": [1, 2.5, None]})
    '{"a":[1,2.5,null],"b":"<&>"}'
    """
    return _encode(value)


# ------------------------------------------------------------------ event ids

_SHA1_NS = hashlib.sha1(IMPORT_NAMESPACE.bytes, usedforsecurity=False)
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


def event_id(session_id: str, sequence_number: int, content: str | None = None) -> str:
    """``derive_id("agentstore", session_id, sequence_number[, content])``, without UUID objects.

    >>> from toolkit.ingest.base import derive_id
    >>> event_id("support-triage-0001", 3) == derive_id("agentstore", "support-triage-0001", 3)
    True
    >>> event_id("s", 1, "ab") == derive_id("agentstore", "s", 1, "ab")
    True
    """
    h = _SHA1_NS.copy()
    name = (
        f"{FORMAT}/{session_id}/{sequence_number}"
        if content is None
        else f"{FORMAT}/{session_id}/{sequence_number}/{content}"
    )
    h.update(name.encode())
    x = h.hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


def event_ids(
    sessions: Sequence[str], seqs: Sequence[int], contents: Sequence[str], micros: Sequence[int | None]
) -> pa.Array:
    """``event_id(session, seq, content + "\\x1e" + µs)`` for many events (null where the time is null).

    The same ids as ``event_id``, hashed in one loop, the UUID text built column-wise.
    """
    base = _SHA1_NS
    hexes: list[str | None] = []
    append = hexes.append
    for sid, seq, content, us in zip(sessions, seqs, contents, micros, strict=True):
        if us is None:
            append(None)
            continue
        h = base.copy()
        h.update(f"{FORMAT}/{sid}/{seq}/{content}\x1e{us}".encode())
        append(h.hexdigest())
    x = pa.array(hexes, pa.string())
    variant = pc.utf8_slice_codeunits(x, 16, 17)
    for chars, to in (("[048c]", "8"), ("[159d]", "9"), ("[26ae]", "a"), ("[37bf]", "b")):
        variant = pc.replace_substring_regex(variant, chars, to)
    parts = [
        pc.utf8_slice_codeunits(x, 0, 8),
        pc.utf8_slice_codeunits(x, 8, 12),
        pc.binary_join_element_wise("5", pc.utf8_slice_codeunits(x, 13, 16), ""),
        pc.binary_join_element_wise(variant, pc.utf8_slice_codeunits(x, 17, 20), ""),
        pc.utf8_slice_codeunits(x, 20, 32),
    ]
    joined: pa.Array = pc.binary_join_element_wise(*parts, "-")
    return joined


# ------------------------------------------------------------------ finding the files


@dataclass(frozen=True)
class Source:
    kind: str  # "datadir" | "events" | "replay"
    path: Path


def is_data_dir(p: Path) -> bool:
    """A directory AgentStore writes: ``events/`` with ``*.jsonl`` and/or ``sessions/`` with ``*.json``."""
    events, sessions = p / "events", p / "sessions"
    return (events.is_dir() and any(events.glob("*.jsonl"))) or (sessions.is_dir() and any(sessions.glob("*.json")))


def is_replay_file(p: Path) -> bool:
    """``<session>.replay.json`` or a ``.json`` file holding a JSON array of event records."""
    if not p.is_file() or p.suffix != ".json":
        return False
    if p.name.endswith(".replay.json"):
        return True
    with p.open("rb") as f:
        head = f.read(4096)
    return bool(_REPLAY_RE.match(head)) and head.lstrip().startswith(b"[")


def is_events_file(p: Path) -> bool:
    """A JSONL file with an AgentStore event record starting one of the lines of its first MiB
    (after a UTF-8 BOM): a damaged first line (the tail of a cut-off write) does not hide the rest."""
    if not p.is_file() or p.suffix != ".jsonl":
        return False
    with p.open("rb") as f:
        head = f.read(1 << 16).removeprefix(_BOM)  # the first line, nearly always
        if _EVENT_LINE_RE.match(head):
            return True
        head += f.read(_SNIFF_BYTES)
    return any(_EVENT_LINE_RE.match(line) for line in head.split(b"\n"))


def find_sources(
    path: Path, depth: int = SEARCH_DEPTH, inside: Path | None = None, notes: list[str] | None = None
) -> list[Source]:
    """Data dirs, events files and replay exports at or below ``path`` (sorted, deterministic),
    searched ``depth`` directory levels down.

    Below a directory, symlinks leading outside it (``inside``) are not followed, ``.jsonl`` files
    that are not events files are not read, and files deeper than ``depth`` levels are not searched:
    all are said in ``notes``.
    """
    if path.is_file():  # named explicitly: a JSON document is an export, anything else JSON lines
        return [Source("replay" if path.suffix == ".json" else "events", path)]
    notes = notes if notes is not None else []
    deep: list[Path] = []
    out = _walk(path, depth, inside or path.resolve(), notes, deep)
    notes.extend(
        skipped_notes(
            deep,
            f"deeper than {depth} levels below {path}, which are not searched; pass that directory itself",
            path,
        )
    )
    return out


def _walk(path: Path, depth: int, inside: Path, notes: list[str], deep: list[Path]) -> list[Source]:
    if is_data_dir(path):
        return [Source("datadir", path)]
    out: list[Source] = []
    for child in sorted(path.iterdir()):
        if (why := link_outside(child, inside)) is not None:
            notes.append(why)
        elif depth <= 0:  # below the levels searched: said when it holds something to read
            if child.is_file() or (child.is_dir() and not child.is_symlink() and _holds_files(child)):
                deep.append(child)
        elif child.is_dir() and not child.is_symlink():
            out.extend(_walk(child, depth - 1, inside, notes, deep))
        elif is_replay_file(child):
            out.append(Source("replay", child))
        elif is_events_file(child):
            out.append(Source("events", child))
        elif child.suffix == ".jsonl" and child.is_file():
            notes.append(
                f"{child}: not an AgentStore events file (no line of its first MiB starts with an event "
                'record {"session_id": …, "sequence_number": …}); not read'
            )
        elif child.name.endswith(".state.json"):
            notes.append(f"{child}: an AgentStore GetState export (derived state, not events); not read")
        elif child.is_file():
            notes.append(
                f"{child}: not read: not an AgentStore file (a data dir, events/*.jsonl, *.replay.json); "
                "import it on its own (journal import FILE, --from to name its format)"
            )
    return out


def _holds_files(folder: Path) -> bool:
    """Whether a file is anywhere below ``folder`` (symlinked directories are not followed)."""
    return any(files for _, _, files in os.walk(folder))


def skipped_notes(paths: Sequence[Path], reason: str, where: Path) -> list[str]:
    """Notes for files and directories not read: one each, or for more than ``NOTE_NAMES`` one note
    with their count and the first names.

    >>> skipped_notes([Path("d/a.txt")], "not wanted", Path("d"))
    ['d/a.txt: not read: not wanted']
    >>> skipped_notes([Path(f"d/{n}.txt") for n in range(7)], "not wanted", Path("d"))
    ['d: 7 files not read: not wanted: 0.txt, 1.txt, 2.txt, 3.txt, 4.txt and 2 more']
    """
    if len(paths) <= NOTE_NAMES:
        return [f"{p}: not read: {reason}" for p in paths]
    names = ", ".join(str(p.relative_to(where)) for p in paths[:NOTE_NAMES])
    kind = "files and directories" if any(p.is_dir() for p in paths) else "files"
    return [f"{where}: {len(paths)} {kind} not read: {reason}: {names} and {len(paths) - NOTE_NAMES} more"]


def stray_notes(data_dir: Path) -> list[str]:
    """Notes for what a data dir holds that AgentStore does not write there, so is not read: it
    writes ``events/<id>.jsonl``, ``sessions/<id>.json`` and ``snapshots/<id>.json`` (and may leave
    ``snapshots/<id>.json.tmp``, said by ``read_snapshots``), nothing else."""
    wanted = {"events": (".jsonl",), "sessions": (".json",), "snapshots": (".json", ".json.tmp")}
    files: list[Path] = []
    dirs: list[Path] = []
    for child in sorted(data_dir.iterdir()):
        if child.name in wanted and child.is_dir():
            for f in sorted(child.iterdir()):
                if f.is_dir():
                    dirs.append(f)
                elif not f.name.endswith(wanted[child.name]):
                    files.append(f)
        elif child.is_dir():
            dirs.append(child)
        else:
            files.append(child)
    notes: list[str] = []
    for folder in (data_dir, *(data_dir / name for name in wanted)):
        notes += skipped_notes(
            [f for f in files if f.parent == folder],
            "not an AgentStore events/sessions/snapshots file (a data dir holds events/<session>.jsonl, "
            "sessions/<session>.json and snapshots/<session>.json); import it on its own (journal import FILE)",
            folder,
        )
    notes += skipped_notes(
        dirs,
        "a directory inside an AgentStore data dir, which is not searched further; pass that directory itself",
        data_dir,
    )
    return notes


# ------------------------------------------------------------------ parsing records


class _Rejected(Exception):
    """A record that cannot become an event (the message is the reason)."""


@dataclass
class _Rows:
    """Columns of one source file, filled record by record, turned into Arrow every batch."""

    file: Path
    prefix: str  # source column: "<prefix><location number>"
    stream_type: str
    chunks: list[pa.Table] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)  # one tuple per record, see ``add``

    def reject(self, location: str, reason: str, record: bytes | str | None) -> None:
        self.rejections.append(Rejection(str(self.file), location, reason, text_of(record)))

    def add(self, obj: Any, where: int) -> None:
        """One parsed record; raises ``_Rejected`` with the reason when it is not an event."""
        if type(obj) is not dict:
            raise _Rejected(f"not a JSON object but {_kind(obj)}")
        try:
            sid = obj["session_id"]
            seq = obj["sequence_number"]
            typ = obj["type"]
            ts = obj["timestamp"]
            payload = obj["payload"]
        except KeyError as e:
            raise _Rejected(f"missing field {e.args[0]!r}") from None
        if type(sid) is not str or not sid:
            raise _Rejected(f"session_id: expected a non-empty string, got {_show(sid)}")
        if type(seq) is not int or not 1 <= seq <= _INT64_MAX:
            raise _Rejected(f"sequence_number: expected a positive integer, got {_show(seq)}")
        if type(typ) is not str or not typ:
            raise _Rejected(f"type: expected a non-empty string, got {_show(typ)}")
        if type(ts) is not str:
            raise _Rejected(f"timestamp: expected an RFC 3339 string, got {_show(ts)}")
        try:
            data = _encode(payload)
        except ValueError as e:  # inf from 1e400
            raise _Rejected(f"payload: {e}") from None
        m = obj.get("metadata")
        tin = tout = model = tool = None
        duration: float | None = None
        cost: Decimal | None = None
        rest: dict[str, Any] | None = None
        if m:
            if type(m) is not dict:
                raise _Rejected(f"metadata: expected an object, got {_kind(m)}")
            for k, v in m.items():
                if v is None and k in COLUMN_KEYS:
                    continue
                if k == "tokens_in":
                    tin = _tokens(k, v)
                elif k == "tokens_out":
                    tout = _tokens(k, v)
                elif k == "model":
                    model = _text(k, v)
                elif k == "tool_name":
                    tool = _text(k, v)
                elif k == "duration_ms":
                    duration = _number(k, v)
                elif k == "cost_usd":
                    cost = _cost(v)
                else:
                    if rest is None:
                        rest = {}
                    rest[k] = v
        elif m is not None and type(m) is not dict:
            raise _Rejected(f"metadata: expected an object, got {_kind(m)}")
        if len(obj) != 6 or m is None:
            extra = {k: v for k, v in obj.items() if k not in FIELDS}
            if extra:  # fields a later AgentStore (or another writer) added
                rest = {**(rest or {}), "source_fields": extra}
        if rest is None:
            meta = f'{{"source_sequence_number":{seq}}}'
        elif len(rest) == 1 and type(rest.get("worker_id")) is str:  # the common case, without the encoder
            meta = f'{{"source_sequence_number":{seq},"worker_id":{_encode_str(rest["worker_id"])}}}'
        else:
            try:
                meta = _encode({**rest, "source_sequence_number": seq})
            except ValueError as e:
                raise _Rejected(f"metadata: {e}") from None
        error = None
        if typ == "error" and type(payload) is dict:
            msg = payload.get("error", payload.get("message"))
            error = msg if type(msg) is str else None
        # what the event says besides its time (added in ``flush``): hashed into the event id
        key = f"{typ!r}\x1e{data}\x1e{meta}\x1e{tin}\x1e{tout}\x1e{model!r}\x1e{tool!r}\x1e{duration!r}\x1e{cost}"
        self.rows.append((where, sid, seq, typ, data, ts, meta, tin, tout, model, tool, duration, cost, error, key))

    def flush(self, location: str, record_of: Callable[[int], bytes | str | None]) -> None:
        """Turn the rows gathered so far into an Arrow chunk; bad timestamps become rejections."""
        if not self.rows:
            return
        n = len(self.rows)
        rows = self.rows
        (where, sid, seq, typ, data, ts, meta, tin, tout, model, tool, duration, cost, error, key) = (
            list(map(itemgetter(k), rows)) for k in range(15)
        )
        self.rows = []
        occurred, bad = _times(ts)
        ids = event_ids(sid, seq, key, pc.cast(occurred, pa.int64()).to_pylist())
        chunk = pa.table(
            {
                "_where": pa.array(where, pa.int64()),
                "_seq": pa.array(seq, pa.int64()),
                "stream_id": pa.array(sid, pa.string()),
                "event_id": pa.array(ids, pa.string()),
                "event_type": pa.array(typ, pa.string()),
                "occurred_at": occurred,
                "model": pa.array(model, pa.string()),
                "tool_name": pa.array(tool, pa.string()),
                "tokens_in": pa.array(tin, pa.int64()),
                "tokens_out": pa.array(tout, pa.int64()),
                "cost_usd": pa.array(cost, COST),
                "duration_ms": pa.array(duration, pa.float64()),
                "error": pa.array(error, pa.string()),
                "data": pa.array(data, pa.string()),
                "metadata": pa.array(meta, pa.string()),
                "source": _sources(self.prefix, pa.array(where, pa.int64())),
            }
        )
        if bad:
            for i, reason in bad.items():
                self.reject(f"{location} {where[i]}", reason, record_of(where[i]))
            chunk = chunk.filter(pa.array([i not in bad for i in range(n)]))
        self.chunks.append(chunk)

    def finish(self, notes: list[str]) -> pa.Table:
        """All rows of the file in version order, with event ids and the source of each row."""
        if not self.chunks:
            return INPUT_SCHEMA.empty_table().append_column("_seq", pa.array([], pa.int64()))
        table = pa.concat_tables(self.chunks)
        self.chunks = []
        keys = pl.from_arrow(table.select(["stream_id", "_seq", "_where"]))
        assert isinstance(keys, pl.DataFrame)
        sid, seq, where = pl.col("stream_id"), pl.col("_seq"), pl.col("_where")
        same = (sid == sid.shift(1)) & (seq == seq.shift(1))
        after = (
            (sid > sid.shift(1)) | ((sid == sid.shift(1)) & (seq > seq.shift(1))) | (same & (where > where.shift(1)))
        )
        repeats = same.fill_null(False)
        ordered, repeated = keys.select(o=after.fill_null(True).all(), r=repeats.any()).row(0)
        if not ordered:  # a file is normally in sequence order already
            keys = keys.with_row_index("_i").sort(["stream_id", "_seq", "_where"])
            schema = table.schema
            whole = pl.from_arrow(table)
            assert isinstance(whole, pl.DataFrame)
            # (Polars gathers strings faster than Arrow's take)
            table = whole[keys.get_column("_i")].to_arrow().cast(schema)
        if not ordered or repeated:
            dup_rows = keys.filter(repeats | repeats.shift(-1).fill_null(False))
            if dup_rows.height:
                _note_repeats(dup_rows, notes, self.file)
        return pa.table(
            {
                "stream_id": table.column("stream_id"),
                "stream_type": pa.repeat(pa.scalar(self.stream_type), table.num_rows),
                "event_id": table.column("event_id"),
                "event_type": table.column("event_type"),
                "source_type": table.column("event_type"),
                "occurred_at": table.column("occurred_at"),
                "model": table.column("model"),
                "tool_name": table.column("tool_name"),
                "tokens_in": table.column("tokens_in"),
                "tokens_out": table.column("tokens_out"),
                "cost_usd": table.column("cost_usd"),
                "duration_ms": table.column("duration_ms"),
                "error": table.column("error"),
                "data": table.column("data"),
                "metadata": table.column("metadata"),
                "source": table.column("source"),
                # kept for the session checks, dropped before yielding
                "_seq": table.column("_seq"),
            }
        )


def _sources(prefix: str, where: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The ``source`` column: the file's prefix and each row's line (record) number."""
    joined: pa.Array = pc.binary_join_element_wise(pa.scalar(prefix), pc.cast(where, pa.string()), pa.scalar(""))
    return joined


def _note_repeats(dup_rows: pl.DataFrame, notes: list[str], file: Path) -> None:
    """Say which sequence numbers of a session appear on more than one line."""
    for (sid,), group in dup_rows.group_by("stream_id", maintain_order=True):
        seqs = group.get_column("_seq").to_list()
        distinct = sorted(set(seqs))
        shown = ", ".join(map(str, distinct[:10])) + (", …" if len(distinct) > 10 else "")
        notes.append(
            f"{file}: session {sid!r}: sequence number(s) {shown} appear on {len(seqs)} lines (two "
            "writers, or an append after a crash); each different event is kept, in sequence then file "
            "order, with its own id; exact copies are imported once"
        )


def _show(v: Any, limit: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kind(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number"
    )


def _tokens(k: str, v: Any) -> int:
    if type(v) is int and 0 <= v <= _INT64_MAX:
        return v
    if type(v) is float and v.is_integer() and 0 <= v <= _INT64_MAX:
        return int(v)
    raise _Rejected(f"metadata.{k}: expected a non-negative integer, got {_show(v)}")


def _text(k: str, v: Any) -> str:
    if type(v) is str:
        return v
    raise _Rejected(f"metadata.{k}: expected a string, got {_show(v)}")


def _number(k: str, v: Any) -> float:
    if type(v) is int or type(v) is float:
        try:
            f = float(v)
        except OverflowError:  # an integer beyond float range
            f = math.inf
        if math.isfinite(f):
            return f
    raise _Rejected(f"metadata.{k}: expected a finite number, got {_show(v)}")


def _cost(v: Any) -> Decimal:
    if type(v) is float and math.isfinite(v):
        d = Decimal(repr(v))
    elif type(v) is int:
        d = Decimal(v)
    else:
        raise _Rejected(f"metadata.cost_usd: expected a number, got {_show(v)}")
    if abs(d) >= _COST_LIMIT:
        raise _Rejected(f"metadata.cost_usd: out of range ({_show(v)})")
    return d.quantize(_NANO)


def _times(texts: Sequence[str] | pa.Array) -> tuple[pa.Array, dict[int, str]]:
    """RFC 3339 texts (0–9 fraction digits, Z or an offset) → µs UTC, cut (not rounded); bad → reasons."""
    if isinstance(texts, pa.Array):
        arr = texts.cast(pa.string())
    else:
        arr = pa.array(texts, pa.string())
    try:
        if not pc.all(pc.match_substring_regex(arr, _ZONE_RE)).as_py():
            raise pa.ArrowInvalid("a time without a zone")
        ns = pc.cast(arr, pa.timestamp("ns", "UTC"))
        earliest = pc.min(pc.cast(ns, pa.int64())).as_py()
        if earliest is None or earliest >= 0:  # casting truncates toward zero: a floor only after 1970
            return pc.cast(ns, TIMESTAMP, safe=False), {}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values: list[dt.datetime | None] = []
    bad: dict[int, str] = {}
    for i, text in enumerate(arr.to_pylist()):  # slow path: out of the ns range, before 1970, or bad
        try:
            values.append(parse_time(text, "timestamp", i))
        except EventValidationError as e:
            values.append(None)
            bad[i] = "timestamp: " + str(e.context.get("reason", e))
    return pa.array(values, TIMESTAMP), bad


# ------------------------------------------------------------------ reading files


@dataclass
class _SessionStats:
    lines: int = 0  # records read from the session's events file (rejected ones included)
    max_seq: int = 0


def _parse_line(rows: _Rows, raw: bytes, lineno: int) -> int:
    """One line (the reference reader): 1 if it is a record (taken or rejected), 0 if blank."""
    if not raw.strip():
        return 0
    try:
        obj = from_json(raw, allow_inf_nan=False)
    except ValueError as e:
        rows.reject(f"line {lineno}", _cut_off_reason(raw, e), raw)
        return 1
    try:
        rows.add(obj, lineno)
    except _Rejected as e:
        rows.reject(f"line {lineno}", str(e), raw)
    return 1


def _parse_lines(rows: _Rows, lines: Sequence[bytes], lineno: int) -> tuple[int, int]:
    """Lines numbered from ``lineno + 1`` into ``rows``; returns (records read, last line number)."""
    read = 0
    for raw in lines:
        lineno += 1
        read += _parse_line(rows, raw, lineno)
    return read, lineno


def _error_of(payload_text: str) -> str | None:
    """The error message of an ``error`` event's payload (as ``_Rows.add`` finds it)."""
    payload = from_json(payload_text)
    if type(payload) is not dict:
        return None
    msg = payload.get("error", payload.get("message"))
    return msg if type(msg) is str else None


def _bulk_with_sources(block: bytes, first: int, newlines: int, prefix: str) -> tuple[pa.Table | None, list[int]]:
    """``bulk_lines`` and the chunk's ``source`` column, built on the worker's thread rather than in ``finish``."""
    chunk, slow = bulk_lines(block, first, _times, _error_of, newlines)
    if chunk is not None:
        chunk = chunk.append_column("source", _sources(prefix, chunk.column("_where")))
    return chunk, slow


def _split_lines(block: bytes) -> list[bytes]:
    """The lines of a block as the file iterator gives them (each with its newline but a cut-off last one)."""
    lines = [line + b"\n" for line in block.split(b"\n")]
    if block.endswith(b"\n"):
        lines.pop()
    else:
        lines[-1] = lines[-1][:-1]
    return lines


def _parse_blocks(rows: _Rows, blocks: Iterator[bytes]) -> Iterator[tuple[int, list[Rejection]]]:
    """Each block of lines parsed and flushed: (records read, its rejections in line order).

    Blocks are read in bulk (``agentstore_bulk``) two at a time, one per core: the bulk reader runs in
    Polars (and DuckDB for ids without polars-hash), which release the GIL; the lines it leaves go
    through ``_parse_line``.
    """
    if not _POOL:  # threads (and their DuckDB connections and regex caches) outlive one file
        _POOL.append(ThreadPoolExecutor(WORKERS, thread_name_prefix="agentstore-blocks"))
    pool = _POOL[0]
    pending: deque[tuple[int, bytes, Future[tuple[pa.Table | None, list[int]]]]] = deque()

    def take() -> tuple[int, list[Rejection]]:
        first, block, future = pending.popleft()
        chunk, slow = future.result()
        rejected = len(rows.rejections)
        read = 0 if chunk is None else chunk.num_rows
        if chunk is not None and chunk.num_rows:
            rows.chunks.append(chunk)
        if slow:
            lines = dict(zip(slow, lines_at(block, slow), strict=True))
            for i in slow:
                read += _parse_line(rows, lines[i], first + i)
            taken = len(rows.chunks)
            rows.flush("line", lambda n, lines=lines, first=first: lines[n - first])  # type: ignore[misc]
            if chunk is not None and chunk.num_rows and len(rows.chunks) > taken:
                rows.chunks[taken - 1 :] = _interleave(rows.chunks[taken - 1], rows.chunks[taken])
        return read, _in_file_order(rows.rejections[rejected:])

    first = 1
    for block in blocks:
        newlines = block.count(b"\n")
        pending.append((first, block, pool.submit(_bulk_with_sources, block, first, newlines, rows.prefix)))
        first += newlines
        if len(pending) > WORKERS:
            yield take()
    while pending:
        yield take()


def _interleave(bulk: pa.Table, slow: pa.Table) -> list[pa.Table]:
    """A block's rows read in bulk and its rows read line by line, each in line order → slices of both
    (no copy) in line order, so that ``finish`` need not reorder a file that is in sequence order."""
    at = pl.Series(bulk.column("_where")).search_sorted(pl.Series(slow.column("_where"))).to_list()
    out: list[pa.Table] = []
    start = 0
    for j, stop in enumerate(at):
        if stop > start:
            out.append(bulk.slice(start, stop - start))
            start = stop
        out.append(slow.slice(j, 1))
    if start < bulk.num_rows:
        out.append(bulk.slice(start))
    return out


def _blocks_of(f: BinaryIO) -> Iterator[bytes]:
    """Blocks of whole lines of at most about ``BLOCK_BYTES`` (a cut-off last line stays as it is).

    A file is cut into a multiple of ``WORKERS`` blocks of about the same size, so that the blocks read
    at a time (one per core) end together: a file of 13.2 blocks would otherwise leave one core idle
    while the other reads its last block.
    """
    size = max(0, os.fstat(f.fileno()).st_size - f.tell())
    count = -(-size // BLOCK_BYTES)
    count += -count % WORKERS if count > 1 else 0
    step = max(1, -(-size // max(1, count)))
    while block := f.read(step):
        if not block.endswith(b"\n"):
            block += f.readline()
        yield block


def read_events_file(
    file: Path, stream_type: str, notes: list[str], stats: dict[str, _SessionStats] | None = None
) -> Iterator[SourceBatch]:
    """One ``events/<session>.jsonl``: progress batches every ``BLOCK_BYTES``, then the events."""
    rows = _Rows(file, f"{FORMAT}:{file}:", stream_type)
    read = 0
    with file.open("rb") as f:
        if f.read(len(_BOM)) != _BOM:  # a BOM (written by an editor, not AgentStore) is not line 1's text
            f.seek(0)
        for n, rejections in _parse_blocks(rows, _blocks_of(f)):
            read += n
            yield SourceBatch(INPUT_SCHEMA.empty_table(), rejections, n)
    table = rows.finish(notes)
    sessions = pc.unique(table.column("stream_id")).to_pylist()
    if stats is not None:
        own = pc.filter(table.column("_seq"), pc.equal(table.column("stream_id"), file.stem))
        s = stats.setdefault(file.stem, _SessionStats())
        s.lines += read
        s.max_seq = max(s.max_seq, pc.max(own).as_py() or 0)
        others = [sid for sid in sessions if sid != file.stem]
        if others:
            notes.append(
                f"{file}: holds events of session(s) {', '.join(map(repr, others))}; imported under their own ids"
            )
    if table.num_rows:
        yield SourceBatch(table.drop_columns(["_seq"]), [], 0)


def _in_file_order(rejections: list[Rejection]) -> list[Rejection]:
    """Rejections by line (record) number (bad times are found after the rest of their batch)."""
    return sorted(rejections, key=lambda r: int(r.location.rpartition(" ")[2] or 0) if r.location[-1:].isdigit() else 0)


def _cut_off_reason(raw: bytes, e: ValueError) -> str:
    text = raw.rstrip(b"\r\n")
    glued = text.find(b'{"session_id"', 1)
    if glued > 0:
        return (
            f"not JSON ({e}): a cut-off line with the next event glued on at byte {glued + 1} "
            "(AgentStore appends without checking that the file ended in a newline)"
        )
    if not raw.endswith(b"\n"):
        return f"not JSON ({e}): the last line is cut off (no newline at the end of the file)"
    return f"not JSON ({e})"


def read_replay_file(file: Path, stream_type: str, notes: list[str]) -> Iterator[SourceBatch]:
    """A library export: a JSON array of event records (``Replay`` → ``json.MarshalIndent``)."""
    rows = _Rows(file, f"{FORMAT}:{file}#record-", stream_type)
    raw = file.read_bytes()
    try:
        records = from_json(raw, allow_inf_nan=False)
    except ValueError as e:
        rows.reject("file", f"not JSON: {e}", raw)
        yield SourceBatch(INPUT_SCHEMA.empty_table(), rows.rejections, 1)
        return
    if records is None:
        records = []  # Go marshals an empty slice as null
    if not isinstance(records, list):
        rows.reject("file", f"expected a JSON array of event records, got {_kind(records)}", raw)
        yield SourceBatch(INPUT_SCHEMA.empty_table(), rows.rejections, 1)
        return
    for i, obj in enumerate(records, start=1):
        try:
            rows.add(obj, i)
        except _Rejected as e:
            rows.reject(f"record {i}", str(e), _record_text(obj))
        if i % BATCH_LINES == 0:
            rows.flush("record", lambda n: _record_text(records[n - 1]))
    rows.flush("record", lambda n: _record_text(records[n - 1]))
    table = rows.finish(notes)
    yield SourceBatch(table.drop_columns(["_seq"]), _in_file_order(rows.rejections), len(records))


def _record_text(obj: Any) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False)
    except ValueError:
        return repr(obj)


def _load_json_object(file: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        obj = from_json(file.read_bytes(), allow_inf_nan=False)
    except (ValueError, OSError) as e:
        return None, str(e)
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {_kind(obj)}"
    return obj, None


def _time_or_none(value: Any) -> dt.datetime | None:
    try:
        return parse_time(value, "created_at", 0)
    except EventValidationError:
        return None


def _files_in(folder: Path, pattern: str, inside: Path | None, notes: list[str]) -> list[Path]:
    """``folder``'s files matching ``pattern`` (sorted); symlinks leading outside ``inside`` are notes."""
    if not folder.is_dir():
        return []
    files = []
    for f in sorted(folder.glob(pattern)):
        why = link_outside(f, inside) if inside is not None else None
        if why is not None:
            notes.append(why)
        elif f.is_file():  # a directory so named is a note of ``stray_notes``
            files.append(f)
    return files


def read_sessions(
    data_dir: Path, stats: dict[str, _SessionStats], notes: list[str], inside: Path | None = None
) -> list[dict[str, Any]]:
    """Session records → ``source_snapshots`` rows; notes where they disagree with the events."""
    rows: list[dict[str, Any]] = []
    files = _files_in(data_dir / "sessions", "*.json", inside, notes)
    recorded = set()
    for file in files:
        sid = file.stem
        recorded.add(sid)
        rec, problem = _load_json_object(file)
        if rec is None:
            notes.append(
                f"{file}: session record not readable ({problem}); AgentStore rewrites it in place on "
                "every append, so a reader can catch it empty or half-written. Its events are imported; "
                "name and labels are not kept"
            )
            continue
        if isinstance(rec.get("id"), str) and rec["id"] and rec["id"] != sid:
            notes.append(f"{file}: the record names session {rec['id']!r}, the file name {sid!r}; kept under {sid!r}")
        count = rec.get("event_count")
        version = count if type(count) is int and count >= 0 else stats.get(sid, _SessionStats()).max_seq
        rows.append(
            {
                "source": str(file),
                "stream_id": sid,
                "version": version,
                "topic": SESSION_TOPIC,
                "taken_at": _time_or_none(rec.get("updated_at")),
                "state": canonical(rec),
            }
        )
        s = stats.get(sid)
        lines, max_seq = (s.lines, s.max_seq) if s else (0, 0)
        if type(count) is int and (count != lines or count != max_seq):
            notes.append(
                f"{file}: session {sid!r} says event_count {count}, the events file has {lines} event "
                f"line(s) with sequence numbers up to {max_seq}; the events are imported as they are, "
                "the count is ignored"
            )
    for sid in sorted(set(stats) - recorded):
        if (data_dir / "events" / f"{sid}.jsonl").exists():
            notes.append(f"{data_dir}: events of session {sid!r} but no sessions/{sid}.json; imported without it")
    return rows


def read_snapshots(data_dir: Path, notes: list[str], inside: Path | None = None) -> list[dict[str, Any]]:
    """``snapshots/<session>.json`` → ``source_snapshots`` rows (not events; they lag the log)."""
    folder = data_dir / "snapshots"
    if not folder.is_dir():
        return []
    rows = []
    for tmp in sorted(folder.glob("*.json.tmp")):
        notes.append(f"{tmp}: an unfinished snapshot write (AgentStore writes .tmp then renames); ignored")
    for file in _files_in(folder, "*.json", inside, notes):
        rec, problem = _load_json_object(file)
        version = rec.get("version") if rec else None
        if rec is None or type(version) is not int or version < 0:
            problem = problem or f"no integer version ({version!r})"
            notes.append(f"{file}: not a readable snapshot ({problem}); ignored (snapshots are derived state)")
            continue
        sid = rec.get("session_id") if isinstance(rec.get("session_id"), str) and rec.get("session_id") else file.stem
        rows.append(
            {
                "source": str(file),
                "stream_id": sid,
                "version": version,
                "topic": SNAPSHOT_TOPIC,
                "taken_at": _time_or_none(rec.get("created_at")),
                "state": canonical(rec.get("state")),
            }
        )
    return rows


def read_data_dir(data_dir: Path, stream_type: str, inside: Path | None = None) -> Iterator[SourceBatch]:
    """A data dir; ``inside``: the directory being imported (symlinks out of it are not read)."""
    notes = stray_notes(data_dir)
    stats: dict[str, _SessionStats] = {}
    for file in _files_in(data_dir / "events", "*.jsonl", inside, notes):
        yield from read_events_file(file, stream_type, notes, stats)
    snapshots = read_sessions(data_dir, stats, notes, inside) + read_snapshots(data_dir, notes, inside)
    kinds = [r["topic"] for r in snapshots]
    if snapshots:
        notes.append(
            f"{data_dir}: kept {kinds.count(SESSION_TOPIC)} session record(s) and "
            f"{kinds.count(SNAPSHOT_TOPIC)} snapshot(s) in source_snapshots (not events)"
        )
    yield SourceBatch(INPUT_SCHEMA.empty_table(), [], 0, notes, snapshots)


class AgentStoreImporter(Importer):
    name = "agentstore"
    description = "AgentStore data dirs (sessions/, events/*.jsonl, snapshots/) and *.replay.json exports"

    def sniff(self, path: str) -> bool:
        p = Path(path)
        try:
            if p.is_file():
                return is_replay_file(p) or is_events_file(p)
            return p.is_dir() and _has_sources(p, 3)
        except OSError:
            return False

    def batches(self, path: str, options: ImportOptions) -> Iterator[SourceBatch]:
        stream_type = options.stream_type or STREAM_TYPE
        root = read_path(path)
        inside = None if root.is_file() else root.resolve()
        skipped: list[str] = []
        sources = find_sources(root, inside=inside, notes=skipped)
        if not sources:
            raise ImportFormatError(
                f"{path}: no AgentStore data dir (events/, sessions/), events file or *.replay.json here",
                hint="point at the directory AgentStore writes (the one holding events/ and sessions/)"
                + "".join(f"; {n}" for n in skipped[:3]),
                path=path,
            )
        yield from notes_only(skipped)
        for source in sources:
            if source.kind == "datadir":
                yield from read_data_dir(source.path, stream_type, inside)
                continue
            notes: list[str] = []
            if source.kind == "replay":
                yield from read_replay_file(source.path, stream_type, notes)
            else:
                yield from read_events_file(source.path, stream_type, notes)
            if notes:
                yield SourceBatch(INPUT_SCHEMA.empty_table(), [], 0, notes)


def _has_sources(p: Path, depth: int) -> bool:
    if is_data_dir(p):
        return True
    if depth <= 0:
        return False
    with os.scandir(p) as entries:
        children = sorted(entries, key=lambda e: e.name)
    for e in children:
        child = Path(e.path)
        if e.is_dir(follow_symlinks=False):
            if _has_sources(child, depth - 1):
                return True
        elif e.name.endswith(".replay.json") or (e.name.endswith(".jsonl") and is_events_file(child)):
            return True
    return False
