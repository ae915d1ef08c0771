"""JSON lines: canonical (one event per line with the journal's own field names), or mapped.

**Canonical** (no mapping): every field is the canonical column of the same name; ``stream_id``,
``event_type`` and ``data`` are required. A line without ``event_id`` gets
``derive_id("jsonl", stream_id, line number, the line)``, so importing the file again (or after
lines were appended to it) adds only new events. A line that is not JSON, not an object, or not a
valid event is rejected with its file and line number. Blank lines are skipped. ``data`` and
``metadata`` are kept verbatim: the JSON text of the value as the line writes it.

Lines are parsed in bulk, a block at a time: Polars reads the typed columns, regular expressions
check each line's structure and cut out ``data``/``metadata``, ids are hashed while Polars works.
A line the bulk reader cannot take exactly (not JSON, a value of the wrong type, an unknown,
repeated or escaped key, deep nesting, a time that is not plain ISO 8601 with an offset) is read
on its own by the line-by-line reader (``_row``), the reference, which also words rejections.
Both give the same event for a line (``tests/ingest/test_jsonl.py`` checks it on generated lines).

**Mapped** (``--mapping FILE``, or ``<stem>.mapping.toml`` beside the file): each line is a JSON
object mapped by ``toolkit.ingest.mapping``; the event id is the mapped ``event_id`` or
``derive_id("jsonl", file name, line number, SHA-256 of the line)``. Mappings of JSON paths to
scalar columns, top-level ``data``/``metadata`` fields and ISO or unix times are applied in bulk
(``plan_bulk``); others line by line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from toolkit.errors import EventValidationError
from toolkit.ingest.base import (
    ORIGIN,
    Importer,
    ImportOptions,
    Rejection,
    SourceBatch,
    derive_id,
    files_below,
    non_utf8_field,
    notes_only,
    read_path,
    rows_table,
    text_of,
)
from toolkit.ingest.mapping import Mapping, ValueMappingError, derive_ids, mapping_for, sha256_hex, sidecar
from toolkit.journal.prepare import INPUT_SCHEMA, STRING_COLUMNS, normalise_event

BLOCK_BYTES: Final = 32 << 20  # a block of whole lines parsed at once
INPUT_WITH_ORIGIN: Final = INPUT_SCHEMA.append(pa.field(ORIGIN, pa.string()))  # rows as importers build them
_BOM: Final = b"\xef\xbb\xbf"

# columns the bulk reader types (it reads any value into a String column: see _suspicious)
_STRINGS: Final = (*STRING_COLUMNS, "occurred_at")
_INTS: Final = ("version", "tokens_in", "tokens_out", "tokens_cache_read", "tokens_cache_write", "tokens_reasoning")
_READ_SCHEMA: Final = {
    **{n: pl.String() for n in _STRINGS},
    **{n: pl.Int64() for n in _INTS},
    "cost_usd": pl.Float64(),
    "duration_ms": pl.Float64(),
    "is_error": pl.Boolean(),
}

# The bulk reader's structural checks are regular expressions over the line (Rust regex, no
# backtracking). In JSON a quote inside a string is always escaped, so a string is matched
# exactly by _S; values are matched with brackets nested up to _DEPTH levels (deeper lines go to
# the line-by-line reader). A line the bulk reader parsed is valid JSON, so brackets pair up.
_S = r'"(?:[^"\\]|\\.)*"'
_N = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_DEPTH = 6


def _nested(depth: int) -> str:
    body = r"(?:" + _S + r'|[^{}\[\]"])*'
    for _ in range(depth):
        body = r"(?:" + _S + r'|[^{}\[\]"]|[\{\[]' + body + r"[\}\]])*"
    return body


_V = r"(?:" + _S + "|" + _N + r"|true|false|null|[\{\[]" + _nested(_DEPTH - 1) + r"[\}\]])"
_MEMBER = _S + r"\s*:\s*" + _V
_OBJECT = r"^\s*\{\s*(?:" + _MEMBER + r"\s*(?:,\s*" + _MEMBER + r"\s*)*)?\}\s*$"
_VALUE_AT_START = r"^" + _V
_ALWAYS_READ: Final = ("stream_id", "event_type", "event_id", "occurred_at", "source")
_UNREAD: Final = ("data", "metadata", "position", "recorded_at", "payload_sha256", "prev_hash", "hash", "day")
_SAMPLE_LINES: Final = 1000
_TIME_SHAPE = r"^\d{4}-\d\d-\d\dT(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?(?:Z|[+-]\d\d:?\d\d)$"


def _suspicious(string_columns: list[str]) -> str:
    """A read string column given something else than a string or null, or a key spelled with escapes.

    (Such keys could name a column; nested keys of the same names only send a line to the
    line-by-line reader.)
    """
    escaped_key = r'[{,]\s*"[^"\\]*\\[^"]*"\s*:'
    if not string_columns:
        return escaped_key
    return r'[{,]\s*"(?:' + "|".join(string_columns) + r')"\s*:\s*[^"n\s]|' + escaped_key


def _prefix(key: str) -> str:
    """From the line's start through ``"key":`` at the top level (earlier members skipped whole)."""
    return r"^\s*\{\s*(?:" + _MEMBER + r"\s*,\s*)*?\"" + key + r'"\s*:\s*'


_ISO = "%Y-%m-%dT%H:%M:%S%.f%#z"


def jsonl_files(path: str, suffixes: tuple[str, ...] = (".jsonl", ".ndjson", ".json")) -> tuple[list[Path], list[str]]:
    """The files to read for ``path`` and notes on the symlinks below a directory that were not read."""
    p = read_path(path)
    if p.is_file():
        return [p], []
    return files_below(p, lambda f: f.suffix in suffixes, "/".join(suffixes))


class CanonicalJsonlImporter(Importer):
    name = "jsonl"
    description = (
        "JSON lines with canonical field names (stream_id, event_type, data, ...), or any JSON lines with --mapping"
    )

    def sniff(self, path: str) -> bool:
        p = Path(path)
        if not p.is_file() or p.suffix not in (".jsonl", ".ndjson"):
            return False
        if sidecar(p).is_file():
            return True
        with p.open("rb") as f:
            first = f.readline(1 << 20)
        try:
            obj = json.loads(first)
        except ValueError:
            return False
        return isinstance(obj, dict) and "stream_id" in obj and "event_type" in obj

    def batches(self, path: str, options: ImportOptions) -> Iterator[SourceBatch]:
        files, notes = jsonl_files(path)
        yield from notes_only(notes)
        for file in files:
            mapping = mapping_for(file, options.mapping)
            if mapping is None:
                batches = _pipelined(file, partial(canonical_batch, file=file))
            elif (plan := plan_bulk(mapping)) is not None:
                batches = _pipelined(file, partial(mapped_bulk_batch, file=file, mapping=mapping, plan=plan))
            else:
                batches = (mapped_batch(block, first, file, mapping) for first, block in _blocks(file))
            for batch in batches:
                if options.stream_type and batch.events.num_rows:
                    batch.events = fill_stream_type(batch.events, options.stream_type)
                yield batch


def _pipelined(file: Path, parse: Callable[[bytes, int], SourceBatch], workers: int = 2) -> Iterator[SourceBatch]:
    """``parse(block, first line)`` of every block of a file, in order; ``workers`` blocks at a time.

    Polars releases the GIL and hashing holds it, so two blocks in flight keep two cores busy.
    """
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[SourceBatch]] = deque()
        for first, block in _blocks(file):
            pending.append(pool.submit(parse, block, first))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _blocks(file: Path) -> Iterator[tuple[int, bytes]]:
    """(number of its first line, a block of whole lines) — a cut-off last line stays as it is.

    A UTF-8 byte order mark (an editor's, or PowerShell's) is not line 1's text.
    """
    lineno = 1
    with file.open("rb") as f:
        if f.read(len(_BOM)) != _BOM:
            f.seek(0)
        while block := f.read(BLOCK_BYTES):
            if not block.endswith(b"\n"):
                block += f.readline()
            yield lineno, block
            lineno += block.count(b"\n")


def fill_stream_type(table: pa.Table, value: str) -> pa.Table:
    """``--stream-type``: the stream type of events whose source names none."""
    i = table.schema.get_field_index("stream_type")
    col = pl.Series(table.column(i)).fill_null(value).to_arrow().cast(pa.string())
    return table.set_column(i, "stream_type", col)


def _lines(block: bytes, first: int, where: str, rejections: list[Rejection]) -> tuple[pl.DataFrame, bool]:
    """Non-blank lines as (lineno, line), and whether they are exactly what a bulk reader sees in ``block``.

    Lines that are not UTF-8 are rejected here.
    """
    expected = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
    frame: pl.DataFrame | None = None
    if b"\x00" not in block and b"\r" not in block:  # NUL and CR would split or trim lines differently
        try:
            frame = pl.read_csv(block, has_header=False, separator="\x00", quote_char=None, schema={"line": pl.String})
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException):  # not UTF-8
            frame = None
        if frame is not None and frame.height != expected:
            frame = None
    exact = frame is not None
    if frame is None:
        try:
            texts = block.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            texts = []
            for i, raw in enumerate(block.split(b"\n")):
                try:
                    texts.append(raw.decode("utf-8"))
                except UnicodeDecodeError as e:
                    rejections.append(Rejection(where, f"line {first + i}", f"not UTF-8: {e}", text_of(raw)))
                    texts.append("")
        texts = texts[:expected]
        frame = pl.DataFrame({"line": pl.Series(texts, dtype=pl.String)}).with_columns(
            pl.col("line").str.strip_chars_end("\r")
        )
    frame = frame.with_row_index("lineno", offset=first).with_columns(pl.col("lineno").cast(pl.Int64))
    starts = frame.get_column("line").str.starts_with("{")
    if not starts.fill_null(False).all():
        frame = frame.filter(pl.col("line").str.contains(r"\S").fill_null(False))
    return frame, exact


# --- canonical: bulk ------------------------------------------------------------------------

_READ_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException, ValueError, OverflowError)


def _schema_for(lines: pl.Series) -> dict[str, pl.DataType]:
    """The columns to bulk-read: those the block's first and last lines name (reading fewer is faster).

    A line naming another column is read by the line-by-line reader (see ``_bulk_rows``).
    """
    names = set(_ALWAYS_READ)
    sample = lines.head(_SAMPLE_LINES).to_list() + lines.tail(_SAMPLE_LINES).to_list()
    for text in sample:
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict):
            names.update(k for k in obj if k in _READ_SCHEMA)
    return {n: t for n, t in _READ_SCHEMA.items() if n in names}


def _read(payload: pl.Series | bytes, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    data = payload.str.join("\n").item().encode("utf-8") if isinstance(payload, pl.Series) else payload
    return pl.read_ndjson(data, schema=schema)


def _readable(
    lines: pl.Series, block: bytes | None, schema: dict[str, pl.DataType]
) -> tuple[pl.DataFrame | None, list[int]]:
    """Bulk-read the lines; return the frame of the readable ones and the indices of the others.

    The reader is all-or-nothing, so a failure is narrowed down by halving; a line is unreadable
    exactly when it fails on its own.
    """
    try:
        frame = _read(block if block is not None else lines, schema)
        if frame.height == len(lines):
            return frame, []
    except _READ_ERRORS:
        pass
    bad: list[int] = []

    def narrow(lo: int, hi: int) -> None:
        if hi - lo <= 8:
            for i in range(lo, hi):
                try:
                    _read(lines.slice(i, 1), schema)
                except _READ_ERRORS:
                    bad.append(i)
            return
        mid = (lo + hi) // 2
        for a, b in ((lo, mid), (mid, hi)):
            try:
                _read(lines.slice(a, b - a), schema)
            except _READ_ERRORS:
                narrow(a, b)

    narrow(0, len(lines))
    if len(bad) == len(lines):
        return None, bad
    keep = ~pl.Series(range(len(lines))).is_in(pl.Series(bad, dtype=pl.Int64).implode())
    return _read(lines.filter(keep), schema), bad


def canonical_batch(block: bytes, first: int, file: Path) -> SourceBatch:
    """One block of a canonical JSONL file as canonical rows (in line order) and rejections."""
    where = str(file)
    rejections: list[Rejection] = []
    frame, exact = _lines(block, first, where, rejections)
    read = frame.height + len(rejections)
    slow: list[int] = []
    fast_table: pa.Table | None = None
    if frame.height:
        lines = frame.get_column("line")
        schema = _schema_for(lines)
        parsed, unreadable = _readable(lines, block if exact else None, schema)
        slow.extend(unreadable)
        if parsed is not None:
            indexed = frame.with_row_index("_i")
            good = indexed.filter(~pl.col("_i").is_in(pl.Series(unreadable, dtype=pl.UInt32).implode()))
            fast_table, fallback = _bulk_rows(good, parsed, file)
            slow.extend(fallback)
    slow_rows: list[dict[str, Any]] = []
    if slow:
        now = dt.datetime.now(dt.UTC)
        lines = frame.get_column("line")
        numbers = frame.get_column("lineno")
        for i in sorted(slow):
            lineno = int(numbers[i])
            row = _row(lines[i], lineno, file, now, rejections)
            if row is not None:
                row["_lineno"] = lineno
                slow_rows.append(row)
    events = _merge(fast_table, slow_rows, rejections, file)
    rejections.sort(key=lambda r: int(r.location.split()[-1]))
    return SourceBatch(events, rejections, read)


def _line_ids(frame: pl.DataFrame) -> pl.Series:
    """``derive_id("jsonl", stream_id, line number, line)`` for rows that name no event_id."""
    if frame.get_column("event_id").null_count() == frame.height:
        return derive_ids(frame.select(pl.lit("jsonl").alias("f"), pl.col("stream_id").fill_null(""), "lineno", "line"))
    need = frame.select(
        pl.lit("jsonl").alias("f"), pl.col("stream_id").fill_null(""), "lineno", "line", "event_id"
    ).with_row_index("_k")
    todo = need.filter(pl.col("event_id").is_null())
    ids = pl.Series("event_id", [None] * frame.height, dtype=pl.String)
    if todo.height:
        derived = derive_ids(todo.select("f", "stream_id", "lineno", "line"))
        ids = ids.scatter(todo.get_column("_k"), derived)
    given = need.get_column("event_id")
    return given.zip_with(given.is_not_null(), ids) if todo.height < frame.height else ids


def _member_value(frame: pl.DataFrame, key: str, name: str) -> pl.DataFrame:
    """Add ``name`` (the top-level ``key``'s value, verbatim) and ``name_found`` to a frame with ``line``."""
    line, rest, after = pl.col("line"), pl.col("_rest"), pl.col("_after")
    return (
        frame.with_columns(_rest=line.str.replace(_prefix(key), ""))
        .with_columns(_after=rest.str.replace(_VALUE_AT_START, ""))
        .with_columns(
            ((rest.str.len_bytes() < line.str.len_bytes()) & (after.str.len_bytes() < rest.str.len_bytes())).alias(
                f"{name}_found"
            ),
            rest.str.strip_suffix(after).alias(name),
        )
        .drop("_rest", "_after")
    )


def _bulk_rows(good: pl.DataFrame, parsed: pl.DataFrame, file: Path) -> tuple[pa.Table | None, list[int]]:
    """Rows the bulk reader read exactly, as an INPUT_SCHEMA table; the indices of lines it cannot."""
    missing = [pl.lit(None, t).alias(n) for n, t in _READ_SCHEMA.items() if n not in parsed.columns]
    frame = pl.concat([good, parsed], how="horizontal")
    frame = frame.with_columns(missing)
    with ThreadPoolExecutor(1) as pool:  # hashing holds the GIL, Polars does not: overlap them
        ids = pool.submit(_line_ids, frame)
        line = pl.col("line")
        probes = frame.lazy().select(
            whole=line.str.contains(_OBJECT),
            suspicious=line.str.contains(_suspicious([n for n in parsed.columns if n in _STRINGS])),
            members=line.str.count_matches(_MEMBER),
            has_meta=line.str.contains('"metadata"', literal=True),
            time_shape=pl.col("occurred_at").str.contains(_TIME_SHAPE),
        )
        frame = _member_value(pl.concat([frame, probes.collect()], how="horizontal"), "data", "data")
        meta_rows = frame.filter(pl.col("has_meta"))
        if meta_rows.height:
            found = _member_value(meta_rows.select("_i", "line"), "metadata", "metadata").drop("line")
            frame = frame.join(found, on="_i", how="left", maintain_order="left")
            frame = frame.with_columns(pl.col("metadata_found").fill_null(False))
        else:
            frame = frame.with_columns(metadata=pl.lit(None, pl.String), metadata_found=pl.lit(False))
        frame = frame.with_columns(_event_id=ids.result())
    frame = frame.with_columns(occurred=_times(frame))
    present = pl.sum_horizontal([pl.col(n).is_not_null() for n in parsed.columns]) + 1 + pl.col("metadata_found")
    meta_ok = ~pl.col("metadata_found") | pl.col("metadata").str.starts_with("{") | (pl.col("metadata") == "null")
    simple = (
        pl.col("whole")
        & ~pl.col("suspicious")
        & pl.col("data_found")
        & meta_ok
        & (pl.col("occurred_at").is_null() | pl.col("occurred").is_not_null())
        & (pl.col("stream_id").fill_null("") != "")
        & (pl.col("event_type").fill_null("") != "")
        & (pl.col("cost_usd").is_null() | (pl.col("cost_usd").abs() < 1e9))
    )
    frame = frame.with_columns(simple=simple.fill_null(False), plain=(pl.col("members") == present).fill_null(False))
    # members beyond the non-null read ones: null-valued read keys are fine; unknown, unread or repeated keys are not
    readable = [f'"{k}"' for k in (*parsed.columns, *_UNREAD)]
    doubtful = frame.filter(pl.col("simple") & ~pl.col("plain"))
    if doubtful.height:
        keys = (
            doubtful.select("_i", member=pl.col("line").str.extract_all(_MEMBER))
            .explode("member")
            .with_columns(key=pl.col("member").str.extract("^(" + _S + ")", 1))
            .group_by("_i")
            .agg(ok=pl.col("key").is_in(readable).all() & (pl.col("key").n_unique() == pl.len()))
        )
        frame = frame.join(keys, on="_i", how="left", maintain_order="left").with_columns(
            simple=pl.col("simple") & (pl.col("plain") | pl.col("ok").fill_null(False))
        )
    simple_rows = frame.get_column("simple")
    fallback = frame.get_column("_i").filter(~simple_rows).to_list()
    if not simple_rows.any():
        return None, fallback
    out = frame.lazy().select(
        *[n for n in INPUT_SCHEMA.names if n not in _DERIVED],
        event_id=pl.col("_event_id"),
        source=pl.coalesce(pl.col("source"), pl.lit(f"jsonl:{file}:") + pl.col("lineno").cast(pl.String)),
        occurred_at=pl.col("occurred"),
        metadata=pl.when(pl.col("metadata_found") & (pl.col("metadata") != "null"))
        .then(pl.col("metadata"))
        .otherwise(pl.lit("{}")),
        cost_usd=pl.col("cost_usd").cast(pl.Decimal(18, 9), strict=False),
        is_error=pl.coalesce(pl.col("is_error"), (pl.col("event_type") == "error") | pl.col("error").is_not_null()),
        _lineno=pl.col("lineno"),
        _simple=pl.col("simple"),
    )
    if fallback:
        out = out.filter(pl.col("_simple"))
    table = out.select([*INPUT_SCHEMA.names, "_lineno"]).collect().to_arrow()
    return table.cast(pa.schema([*INPUT_SCHEMA, pa.field("_lineno", pa.int64())])), fallback


_DERIVED: Final = frozenset({"event_id", "source", "occurred_at", "metadata", "cost_usd", "is_error"})


def _times(frame: pl.DataFrame) -> pl.Series:
    """``occurred_at`` of plain ISO 8601 shape with an offset, as UTC; null for every other text."""
    text = frame.get_column("occurred_at")
    plain = text.filter(frame.get_column("time_shape").fill_null(False))
    out = pl.Series("occurred", [None] * frame.height, dtype=pl.Datetime("us", "UTC"))
    if plain.len() == 0:
        return out
    try:
        parsed = pl.Series(pc.cast(plain.to_arrow(), pa.timestamp("us", "UTC")))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed = plain.str.to_datetime(_ISO, time_zone="UTC", time_unit="us", strict=False)
    where = frame.get_column("time_shape").fill_null(False).arg_true()
    return out.scatter(where, parsed.cast(pl.Datetime("us", "UTC")))


def _merge(fast: pa.Table | None, slow_rows: list[dict[str, Any]], rejections: list[Rejection], file: Path) -> pa.Table:
    """The bulk and line-by-line rows in line order, with ``ORIGIN`` (``jsonl:file:line``: a
    line's own ``source`` does not say where it is)."""
    schema = pa.schema([*INPUT_SCHEMA, pa.field("_lineno", pa.int64())])
    slow = None
    if slow_rows:
        for row in slow_rows:  # (for rows_table's rejections)
            row[ORIGIN] = f"jsonl:{file}:{row['_lineno']}"
        slow, unstorable = rows_table(slow_rows, schema, "jsonl")
        rejections.extend(unstorable)
    parts = [t for t in (fast, slow) if t is not None]
    if not parts:
        return INPUT_SCHEMA.empty_table()
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    if len(parts) > 1:
        table = table.sort_by("_lineno")
    lines = pc.cast(table.column("_lineno"), pa.string())
    origin = pc.binary_join_element_wise(pa.scalar(f"jsonl:{file}:"), lines, "")
    return table.drop(["_lineno"]).append_column(ORIGIN, origin)


# --- canonical: one line ----------------------------------------------------------------------

_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")


def raw_members(text: str) -> dict[str, str]:
    """The JSON text of each top-level member of an object, verbatim (the last of repeated keys).

    >>> raw_members('{"a": 1, "data": {"x": [1, 2]} }')
    {'a': '1', 'data': '{"x": [1, 2]}'}
    """
    out: dict[str, str] = {}
    i = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if text[i : i + 1] != "{":
        return out
    i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
    while i < len(text) and text[i] == '"':
        key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
        i = _WS.match(text, i).end()  # type: ignore[union-attr]
        if text[i : i + 1] != ":":
            break
        start = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
        _, end = _DECODER.raw_decode(text, start)
        out[key] = text[start:end]
        i = _WS.match(text, end).end()  # type: ignore[union-attr]
        if text[i : i + 1] != ",":
            break
        i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
    return out


def _row(line: str, lineno: int, file: Path, now: dt.datetime, rejections: list[Rejection]) -> dict[str, Any] | None:
    """The line-by-line reader: the reference for what a canonical line means."""
    where = str(file)
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as e:
        rejections.append(Rejection(where, f"line {lineno}", f"not JSON: {e}", text_of(line)))
        return None
    if not isinstance(obj, dict):
        rejections.append(Rejection(where, f"line {lineno}", "not a JSON object", text_of(line)))
        return None
    try:
        row = normalise_event(obj, lineno - 1, now)
        raw = raw_members(line)
        row["data"] = raw["data"]
        if obj.get("metadata") is not None:
            row["metadata"] = raw["metadata"]
        _check_text(row)
    except EventValidationError as e:
        reason = str(e).split("\n", 1)[0].split(": ", 1)[-1]
        rejections.append(Rejection(where, f"line {lineno}", reason, text_of(line)))
        return None
    except OverflowError:  # a time whose UTC value is outside years 1-9999
        rejections.append(Rejection(where, f"line {lineno}", "field 'occurred_at': out of range", text_of(line)))
        return None
    except (RecursionError, ValueError, KeyError):  # nested too deeply for the reference reader
        rejections.append(Rejection(where, f"line {lineno}", "nested too deeply to read", text_of(line)))
        return None
    if row.get("event_id") is None:
        row["event_id"] = derive_id("jsonl", row["stream_id"], lineno, line)
    row["source"] = row.get("source") or f"jsonl:{file}:{lineno}"
    return row


def _check_text(row: dict[str, Any]) -> None:
    name = non_utf8_field(row)
    if name is not None:
        raise EventValidationError.field(name, 0, "contains a lone surrogate (not UTF-8 text)")


# --- mapped -----------------------------------------------------------------------------------


# --- mapped: bulk ---------------------------------------------------------------------------
#
# A mapping whose sources are JSON paths to scalar columns (or constants), whose data/metadata
# fields are top-level fields, and whose times are ISO or unix numbers is applied in bulk, as
# canonical lines are: Polars reads the paths with strict leaf types, the fields' JSON text is
# cut out verbatim, and a line the bulk reader cannot take exactly goes to the line-by-line path.

_Tree = dict[str, Any]  # {"leaf": dtype} | {"struct": {key: tree}} | {"list": tree}


def _leaf_type(column: str, time_kind: str) -> pl.DataType:
    if column in _INTS:
        return pl.Int64()
    if column in ("cost_usd", "duration_ms"):
        return pl.Float64()
    if column == "is_error":
        return pl.Boolean()
    if column == "occurred_at" and time_kind.startswith("unix_"):
        return pl.Int64()
    return pl.Categorical()  # strict: a number, object or boolean sends the line to the line path


def _merge_tree(tree: _Tree | None, steps: tuple[str | int, ...], leaf: pl.DataType) -> _Tree | None:
    if not steps:
        node: _Tree = {"leaf": leaf}
        return node if tree is None or tree == node else None
    step, rest = steps[0], steps[1:]
    if isinstance(step, int):
        if tree is not None and "list" not in tree:
            return None
        inner = _merge_tree(None if tree is None else tree["list"], rest, leaf)
        return None if inner is None else {"list": inner}
    if tree is not None and "struct" not in tree:
        return None
    fields = dict(tree["struct"]) if tree is not None else {}
    inner = _merge_tree(fields.get(step), rest, leaf)
    if inner is None:
        return None
    fields[step] = inner
    return {"struct": fields}


def _dtype(tree: _Tree) -> pl.DataType:
    if "leaf" in tree:
        leaf: pl.DataType = tree["leaf"]
        return leaf
    if "list" in tree:
        return pl.List(_dtype(tree["list"]))
    return pl.Struct({k: _dtype(v) for k, v in tree["struct"].items()})


def _path_expr(steps: tuple[str | int, ...]) -> pl.Expr:
    expr = pl.col(str(steps[0]))
    for step in steps[1:]:
        expr = expr.list.get(step, null_on_oob=True) if isinstance(step, int) else expr.struct.field(step)
    return expr


@dataclass(frozen=True)
class BulkPlan:
    """How a mapping is applied in bulk (``plan_bulk`` returns None when it cannot be)."""

    schema: dict[str, pl.DataType]
    columns: dict[str, pl.Expr]
    time_kind: str
    objects: dict[str, tuple[tuple[str, str | None, str | None], ...]]  # data/metadata: (json key, top key, const JSON)
    direct: dict[str, str]  # data/metadata mapped straight to a top-level field
    defaults: dict[str, Any]

    @property
    def verbatim(self) -> list[str]:
        keys = {top for parts in self.objects.values() for _, top, _ in parts if top is not None}
        return sorted(keys | set(self.direct.values()))


def plan_bulk(mapping: Mapping) -> BulkPlan | None:
    time_kind = mapping.time.kind
    if time_kind not in ("iso", "unix_s", "unix_ms", "unix_us", "unix_ns"):
        return None
    trees: dict[str, _Tree] = {}
    columns: dict[str, pl.Expr] = {}
    direct: dict[str, str] = {}
    for name, source in mapping.columns.items():
        if source.path is None:
            try:
                columns[name] = pl.lit(_plain(name, source.const, mapping))
            except (ValueMappingError, TypeError, ValueError):
                return None
            continue
        if source.json or not source.path.steps or not isinstance(source.path.steps[0], str):
            return None
        if name in ("data", "metadata"):
            if len(source.path.steps) != 1:
                return None
            direct[name] = str(source.path.steps[0])
            continue
        top = str(source.path.steps[0])
        tree = _merge_tree(trees.get(top), source.path.steps[1:], _leaf_type(name, time_kind))
        if tree is None:
            return None
        trees[top] = tree
        expr = _path_expr(source.path.steps)
        columns[name] = expr.cast(pl.String) if _leaf_type(name, time_kind) == pl.Categorical() else expr
    objects: dict[str, tuple[tuple[str, str | None, str | None], ...]] = {}
    for name, spec in (("data", mapping.data), ("metadata", mapping.metadata)):
        if name in direct or (name in mapping.columns):
            continue
        if spec.rest:
            return None
        parts: list[tuple[str, str | None, str | None]] = []
        for key, source in spec.fields:
            if source.path is None:
                parts.append((key, None, _compact(source.const)))
            elif source.json or len(source.path.steps) != 1 or not isinstance(source.path.steps[0], str):
                return None
            else:
                parts.append((key, str(source.path.steps[0]), None))
        objects[name] = tuple(parts)
    try:
        defaults = {name: _plain(name, value, mapping) for name, value in mapping.defaults.items()}
    except (ValueMappingError, TypeError, ValueError):
        return None
    return BulkPlan({k: _dtype(v) for k, v in trees.items()}, columns, time_kind, objects, direct, defaults)


def _plain(name: str, value: Any, mapping: Mapping) -> Any:
    """A constant as its column's value (JSON columns as text)."""
    out = mapping.constant(name, value)
    return _compact(out) if name in ("data", "metadata") else out


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def mapped_bulk_batch(block: bytes, first: int, file: Path, mapping: Mapping, plan: BulkPlan) -> SourceBatch:
    where = str(file)
    rejections: list[Rejection] = []
    frame, exact = _lines(block, first, where, rejections)
    read = frame.height + len(rejections)
    slow: list[int] = []
    fast: pa.Table | None = None
    if frame.height:
        lines = frame.get_column("line")
        parsed, unreadable = _readable(lines, block if exact else None, plan.schema)
        slow.extend(unreadable)
        if parsed is not None:
            indexed = frame.with_row_index("_i")
            good = indexed.filter(~pl.col("_i").is_in(pl.Series(unreadable, dtype=pl.UInt32).implode()))
            fast, fallback = _mapped_rows(pl.concat([good, parsed], how="horizontal"), file, plan)
            slow.extend(fallback)
    rows: list[dict[str, Any]] = []
    if slow:
        now = dt.datetime.now(dt.UTC)
        numbers, texts = frame.get_column("lineno"), frame.get_column("line")
        for i in sorted(slow):
            row = _mapped_line(int(numbers[i]), texts[i], file, mapping, now, rejections)
            if row is not None:
                row["_lineno"] = int(numbers[i])
                rows.append(row)
    events = _merge(fast, rows, rejections, file)
    rejections.sort(key=lambda r: int(r.location.split()[-1]))
    return SourceBatch(events, rejections, read)


def _mapped_rows(frame: pl.DataFrame, file: Path, plan: BulkPlan) -> tuple[pa.Table | None, list[int]]:
    line = pl.col("line")
    frame = frame.with_columns(
        _whole=line.str.contains(_OBJECT),
        _escaped=line.str.contains(_suspicious([])) | line.str.contains(r"[:\[,]\s*(?:-\d{19}|\d{20})"),
        **{name: expr for name, expr in plan.columns.items()},
    )
    for i, key in enumerate(plan.verbatim):
        frame = _member_value(frame, key, f"_v{i}")
    index = {key: i for i, key in enumerate(plan.verbatim)}
    texts: dict[str, pl.Expr] = {}
    for name, direct in plan.direct.items():
        v = f"_v{index[direct]}"
        texts[name] = pl.when(pl.col(f"{v}_found")).then(pl.col(v)).otherwise(pl.lit("null"))
    for name, parts in plan.objects.items():
        pieces = []
        for key, top, const in parts:
            label = _compact(key) + ":"
            if top is None:
                pieces.append(pl.lit(label + (const if const is not None else "null")))
            else:
                v = f"_v{index[top]}"
                pieces.append(pl.when(pl.col(f"{v}_found")).then(pl.lit(label) + pl.col(v)))
        body = pl.concat_str(pieces, separator=",", ignore_nulls=True) if pieces else pl.lit("")
        texts[name] = pl.lit("{") + body + pl.lit("}")
    for name in ("data", "metadata"):
        if name not in plan.columns:
            texts.setdefault(name, pl.lit("{}"))
    frame = frame.with_columns(**texts)
    for name, value in plan.defaults.items():
        if name in ("data", "metadata"):
            continue
        current = pl.col(name) if name in frame.columns else pl.lit(None)
        frame = frame.with_columns(current.fill_null(pl.lit(value)).alias(name))
    time_ok = pl.lit(True)
    if "occurred_at" in plan.columns and plan.columns["occurred_at"] is not None and "occurred_at" in frame.columns:
        if plan.time_kind == "iso":
            frame = frame.with_columns(time_shape=pl.col("occurred_at").cast(pl.String).str.contains(_TIME_SHAPE))
            occurred = _times(frame) if frame.schema["occurred_at"] == pl.String else frame.get_column("occurred_at")
            frame = frame.with_columns(_occurred=occurred)
            time_ok = pl.col("occurred_at").is_null() | pl.col("_occurred").is_not_null()
        else:
            scale = {"unix_s": 1, "unix_ms": 1_000, "unix_us": 1_000_000, "unix_ns": 1_000_000_000}[plan.time_kind]
            raw = pl.col("occurred_at")
            micros = raw * (1_000_000 // scale) if scale <= 1_000_000 else raw.floordiv(scale // 1_000_000)
            lo, hi = -62_135_596_800_000_000, 253_402_300_799_999_999  # years 1 to 9999
            frame = frame.with_columns(
                _occurred=pl.when(micros.is_between(lo, hi)).then(micros).cast(pl.Datetime("us", "UTC"))
            )
            time_ok = raw.is_null() | pl.col("_occurred").is_not_null()
        frame = frame.with_columns(occurred_at=pl.col("_occurred"))
    cost_ok = pl.col("cost_usd").cast(pl.Float64).abs() < 1e9 if "cost_usd" in frame.columns else pl.lit(True)
    frame = frame.with_columns(
        _simple=(
            pl.col("_whole")
            & ~pl.col("_escaped")
            & time_ok
            & (cost_ok | pl.col("cost_usd").is_null() if "cost_usd" in frame.columns else cost_ok)
        ).fill_null(False)
    )
    if "is_error" not in frame.columns:
        frame = frame.with_columns(is_error=pl.lit(None, pl.Boolean))
    error = pl.col("error") if "error" in frame.columns else pl.lit(None, pl.String)
    frame = frame.with_columns(
        is_error=pl.coalesce(pl.col("is_error"), (pl.col("event_type") == "error") | error.is_not_null())
    )
    simple = frame.get_column("_simple")
    fallback = frame.get_column("_i").filter(~simple).to_list()
    if not simple.any():
        return None, fallback
    rows = frame.filter(simple) if fallback else frame
    if "event_id" not in rows.columns or rows.get_column("event_id").null_count():
        derived = derive_ids(
            rows.select(
                pl.lit("jsonl").alias("f"),
                pl.lit(file.name).alias("n"),
                "lineno",
                d=sha256_hex(rows.get_column("line")),
            )
        )
        given = (
            rows.get_column("event_id")
            if "event_id" in rows.columns
            else pl.Series([None] * rows.height, dtype=pl.String)
        )
        rows = rows.with_columns(event_id=given.cast(pl.String).fill_null(derived))
    out = rows.select(
        *[
            (pl.col(n) if n in rows.columns else pl.lit(None)).cast(_POLARS_INPUT[n], strict=False).alias(n)
            for n in INPUT_SCHEMA.names
            if n != "source"
        ],
        source=(pl.col("source").cast(pl.String) if "source" in rows.columns else pl.lit(None, pl.String)).fill_null(
            pl.lit(f"jsonl:{file}:") + pl.col("lineno").cast(pl.String)
        ),
        _lineno=pl.col("lineno"),
    ).select([*INPUT_SCHEMA.names, "_lineno"])
    table = out.to_arrow()
    return table.cast(pa.schema([*INPUT_SCHEMA, pa.field("_lineno", pa.int64())])), fallback


_POLARS_INPUT: Final = {
    f.name: (
        pl.String()
        if pa.types.is_string(f.type)
        else pl.Int64()
        if pa.types.is_int64(f.type)
        else pl.Float64()
        if pa.types.is_float64(f.type)
        else pl.Boolean()
        if pa.types.is_boolean(f.type)
        else pl.Decimal(18, 9)
        if pa.types.is_decimal(f.type)
        else pl.Datetime("us", "UTC")
    )
    for f in INPUT_SCHEMA
}


def _mapped_line(
    lineno: int, line: str, file: Path, mapping: Mapping, now: dt.datetime, rejections: list[Rejection]
) -> dict[str, Any] | None:
    """The line-by-line mapped path: the reference for what a mapped line means."""
    where = str(file)
    raw = line.encode("utf-8")
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as e:
        rejections.append(Rejection(where, f"line {lineno}", f"not JSON: {e}", text_of(raw)))
        return None
    if not isinstance(record, dict):
        rejections.append(Rejection(where, f"line {lineno}", "not a JSON object", text_of(raw)))
        return None
    digest = hashlib.sha256(raw).hexdigest()
    return map_one(record, mapping, "jsonl", file, lineno, digest, now, rejections, f"line {lineno}", raw)


def mapped_batch(block: bytes, first: int, file: Path, mapping: Mapping) -> SourceBatch:
    """One block of a JSONL file through a mapping, line by line."""
    rejections: list[Rejection] = []
    frame, _ = _lines(block, first, str(file), rejections)
    read = frame.height + len(rejections)
    now = dt.datetime.now(dt.UTC)
    rows: list[dict[str, Any]] = []
    for lineno, line in frame.iter_rows():
        row = _mapped_line(lineno, line, file, mapping, now, rejections)
        if row is not None:
            row[ORIGIN] = f"jsonl:{file}:{lineno}"  # where it was read (the mapping may name a source)
            rows.append(row)
    rejections.sort(key=lambda r: int(r.location.split()[-1]))
    table, unstorable = rows_table(rows, INPUT_WITH_ORIGIN, "jsonl")
    return SourceBatch(table, [*rejections, *unstorable], read)


def map_one(
    record: dict[str, Any],
    mapping: Mapping,
    fmt: str,
    file: Path,
    number: int,
    digest: str,
    now: dt.datetime,
    rejections: list[Rejection],
    location: str,
    raw: bytes | str | None,
) -> dict[str, Any] | None:
    """One source record through the mapping and the journal's checks; a rejection on failure."""
    try:
        event = mapping.map_record(record)
        row = normalise_event(event, number, now)
    except (ValueMappingError, EventValidationError) as e:
        reason = str(e).split("\n", 1)[0]
        if isinstance(e, EventValidationError):
            reason = reason.split(": ", 1)[-1]
        rejections.append(Rejection(str(file), location, reason, text_of(raw)))
        return None
    except OverflowError:  # a time whose UTC value is outside years 1-9999
        rejections.append(Rejection(str(file), location, "field 'occurred_at': out of range", text_of(raw)))
        return None
    except RecursionError:
        rejections.append(Rejection(str(file), location, "nested too deeply", text_of(raw)))
        return None
    for name in ("data", "metadata"):  # JSON text in the source is kept as it is written
        source = mapping.columns.get(name)
        if source is not None and source.json and source.path is not None:
            text = source.path.get(record)
            if isinstance(text, str) and text.strip() != "null":  # (null metadata is {})
                row[name] = text.strip()
    if row.get("event_id") is None:
        row["event_id"] = derive_id(fmt, file.name, number, digest)
    row["source"] = row.get("source") or f"{fmt}:{file}:{number}"
    return row
