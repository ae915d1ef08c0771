"""Turn caller events (dicts or an Arrow table) into validated canonical columns.

Every problem is an ``EventValidationError`` naming the field and the event's index in the
batch; nothing of a batch with a bad event is written. What the journal assigns
(position, recorded_at, hashes, day) is filled later, under the write lock.

>>> t = events_to_table([{"stream_id": "run-1", "event_type": "user_message",
...                       "occurred_at": "2026-11-01T12:00:00Z", "data": {"text": "hi"}}])
>>> t.column("data").to_pylist(), t.column("metadata").to_pylist()
(['{"text":"hi"}'], ['{}'])
>>> events_to_table([{"stream_id": "r", "event_type": "x", "data": 1,
...                   "occurred_at": "2026-11-01T12:00:00"}])
Traceback (most recent call last):
...
toolkit.errors.EventValidationError: event 0: field 'occurred_at': timestamp has no time zone ('2026-11-01T12:00:00')
Hint: give times in ISO 8601 with an offset, e.g. 2026-11-01T12:00:00Z
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Final

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from pydantic_core import from_json

from toolkit.errors import EventValidationError, QueryError
from toolkit.journal.schema import ARROW_SCHEMA, ASSIGNED_COLUMNS, COLUMN_NAMES, TIMESTAMP

if TYPE_CHECKING:
    import duckdb

UTC = dt.UTC
STREAM_TYPE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
TRACEPARENT_RE = re.compile(
    r"^(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})$"
)
DEFAULT_STREAM_TYPE = "default"


def check_stream_type(value: str) -> None:
    """A stream type given for the events that name none (``stream_type=``, ``--stream-type``) must
    be one the events themselves may name: it becomes a partition folder of the Delta table.

    >>> check_stream_type("agent_run")
    >>> check_stream_type("bad type!")
    Traceback (most recent call last):
    ...
    toolkit.errors.EventValidationError: stream type 'bad type!': not letters, digits, '_', '-' and '.' (1 to 128)
    Hint: use letters, digits, '_', '-' and '.', e.g. agent_run
    """
    if not isinstance(value, str) or not STREAM_TYPE_RE.fullmatch(value):
        reason = "not letters, digits, '_', '-' and '.' (1 to 128)"
        raise EventValidationError(
            f"stream type {value!r}: {reason}",
            hint="use letters, digits, '_', '-' and '.', e.g. agent_run",
            field="stream_type",
            value=value,
            reason=reason,
        )

TOKEN_COLUMNS = _INT_COLUMNS = ("tokens_in", "tokens_out", "tokens_cache_read", "tokens_cache_write", "tokens_reasoning")
#: a token count above this is no count: sums over a journal (budgets, rollups) must fit in int64
#: (journal verify names events written before it was refused)
MAX_TOKENS = 10**12
# caller-given text columns other than the JSON ones (importers type their readers with it)
STRING_COLUMNS = _STR_COLUMNS = tuple(
    n
    for n in COLUMN_NAMES
    if ARROW_SCHEMA.field(n).type == pa.string()
    and n not in {"data", "metadata", "payload_sha256", "prev_hash", "hash"}
)
# Columns a caller may give; the journal fills the rest.
INPUT_COLUMNS = tuple(n for n in COLUMN_NAMES if n not in ASSIGNED_COLUMNS and n != "position")
INPUT_SCHEMA = pa.schema([ARROW_SCHEMA.field(n).with_nullable(True) for n in INPUT_COLUMNS])


def canonical_json(value: Any) -> str:
    """Compact, key-sorted JSON text — the canonical encoding of data and metadata."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def parse_time(value: Any, field: str, index: int) -> dt.datetime:
    if isinstance(value, dt.datetime):
        ts = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            ts = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            # 9-digit fractions (Go's RFC3339Nano) are cut to microseconds
            m = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d{7,9})(Z|[+-]\d\d:?\d\d)$", text)
            if not m:
                raise EventValidationError.field(field, index, f"not an ISO 8601 time ({value!r})") from None
            tz = "+00:00" if m.group(3) == "Z" else m.group(3)
            try:
                ts = dt.datetime.fromisoformat(f"{m.group(1)}.{m.group(2)[:6]}{tz}")
            except ValueError:
                raise EventValidationError.field(field, index, f"not an ISO 8601 time ({value!r})") from None
    else:
        raise EventValidationError.field(field, index, f"expected an ISO 8601 string, got {type(value).__name__}")
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise EventValidationError.field(field, index, f"timestamp has no time zone ({value!r})")
    try:
        return ts.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise EventValidationError.field(field, index, f"out of range in UTC ({value!r})") from None


def parse_traceparent(value: str, index: int) -> tuple[str, str]:
    m = TRACEPARENT_RE.match(value.strip().lower())
    if not m or m.group(2) == "0" * 32 or m.group(3) == "0" * 16:
        raise EventValidationError.field(
            "traceparent",
            index,
            f"not a W3C traceparent ({value!r})",
            hint="format: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>",
        )
    return m.group(2), m.group(3)


def _json_text(value: Any, field: str, index: int) -> str:
    try:
        return canonical_json(value)
    except (TypeError, ValueError) as e:
        raise EventValidationError.field(field, index, f"not JSON-serialisable: {e}") from e


def _int(value: Any, field: str, index: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise EventValidationError.field(field, index, f"expected an integer, got {value!r}")
    if not -(2**63) <= value < 2**63:  # the column is int64
        raise EventValidationError.field(field, index, f"out of range for a 64-bit integer: {value!r}")
    return int(value)


def _cost(value: Any, index: int) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise EventValidationError.field("cost_usd", index, f"expected a number, got {value!r}")
    try:
        d = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise EventValidationError.field("cost_usd", index, f"expected a number, got {value!r}") from None
    if not d.is_finite() or abs(d) >= Decimal(10) ** 9:
        raise EventValidationError.field("cost_usd", index, f"out of range: {value!r}")
    return d.quantize(Decimal("1e-9"))


def normalise_event(event: Mapping[str, Any], index: int, now: dt.datetime) -> dict[str, Any]:
    """Validate one event dict; return canonical column values (JSON as text)."""
    if not isinstance(event, Mapping):
        raise EventValidationError.field("<event>", index, f"expected an object, got {type(event).__name__}")
    unknown = set(event) - set(INPUT_COLUMNS) - {"position", *ASSIGNED_COLUMNS}
    if unknown:
        raise EventValidationError.field(
            sorted(unknown)[0],
            index,
            "not a column of the canonical schema",
            hint="put source-specific fields into data or metadata",
        )
    row: dict[str, Any] = {}
    for name in ("stream_id", "event_type"):
        v = event.get(name)
        if not isinstance(v, str) or not v:
            raise EventValidationError.field(
                name, index, "required, a non-empty string" + ("" if v is None else f" (got {v!r})")
            )
        row[name] = v
    for name in _STR_COLUMNS:
        if name in row:
            continue
        v = event.get(name)
        if v is not None and not isinstance(v, str):
            raise EventValidationError.field(name, index, f"expected a string, got {type(v).__name__}")
        row[name] = v
    if row["event_id"] == "":  # one id for every such event: verify would find them duplicated
        raise EventValidationError.field(
            "event_id", index, "must not be empty", hint="leave event_id out to have the journal derive one"
        )
    st = row.get("stream_type")
    if st is not None and not STREAM_TYPE_RE.fullmatch(st):
        raise EventValidationError.field("stream_type", index, f"invalid stream type {st!r}")
    if "data" not in event:
        raise EventValidationError.field("data", index, "required (use null for no payload)")
    row["data"] = _json_text(event["data"], "data", index)
    meta = event.get("metadata")
    meta = {} if meta is None else meta
    if not isinstance(meta, Mapping):
        raise EventValidationError.field("metadata", index, f"expected an object, got {type(meta).__name__}")
    row["metadata"] = _json_text(meta, "metadata", index)
    occurred = event.get("occurred_at")
    row["occurred_at"] = now if occurred is None else parse_time(occurred, "occurred_at", index)
    row["version"] = _int(event.get("version"), "version", index)
    if row["version"] is not None and row["version"] < 1:
        raise EventValidationError.field("version", index, f"versions start at 1, got {row['version']}")
    for name in _INT_COLUMNS:
        n = _int(event.get(name), name, index)
        if n is not None and n < 0:
            raise EventValidationError.field(name, index, f"must not be negative, got {n}")
        if n is not None and n > MAX_TOKENS:
            raise EventValidationError.field(name, index, f"more than {MAX_TOKENS:,} tokens in one event: {n}")
        row[name] = n
    row["cost_usd"] = _cost(event.get("cost_usd"), index)
    dur = event.get("duration_ms")
    if dur is not None:
        if isinstance(dur, bool) or not isinstance(dur, int | float) or not math.isfinite(dur):
            raise EventValidationError.field("duration_ms", index, f"expected a finite number, got {dur!r}")
        dur = float(dur)
    row["duration_ms"] = dur
    is_error = event.get("is_error")
    if is_error is None:
        is_error = row["event_type"] == "error" or row.get("error") is not None
    if not isinstance(is_error, bool):
        raise EventValidationError.field("is_error", index, f"expected true or false, got {is_error!r}")
    row["is_error"] = is_error
    if row["traceparent"]:
        trace_id, span_id = parse_traceparent(row["traceparent"], index)
        for name, parsed in (("trace_id", trace_id), ("span_id", span_id)):
            given = row[name]
            if given and given.strip().lower() != parsed:  # a given id is kept as written
                raise _contradiction(name, index, given, parsed)
        row["trace_id"] = row["trace_id"] or trace_id
        row["span_id"] = row["span_id"] or span_id
    return row


def _contradiction(name: str, index: int, given: str, parsed: str) -> EventValidationError:
    return EventValidationError.field(
        name,
        index,
        f"{given!r} contradicts the traceparent, which carries {parsed!r}",
        hint=f"give the traceparent's own {name}, or leave {name} out: it is read from the traceparent",
    )


def events_to_table(events: Iterable[Mapping[str, Any]], now: dt.datetime | None = None) -> pa.Table:
    """Validate event dicts into an Arrow table with ``INPUT_SCHEMA``."""
    now = now or dt.datetime.now(UTC)
    rows = [normalise_event(e, i, now) for i, e in enumerate(events)]
    try:
        return pa.Table.from_pylist(rows, schema=INPUT_SCHEMA)
    except UnicodeEncodeError:  # a lone surrogate (JSON's "\ud800"): no Unicode text, named below
        _raise_unencodable(rows)
        raise


def _raise_unencodable(rows: list[dict[str, Any]]) -> None:
    """The error naming the first text value of ``rows`` that is not valid Unicode (UTF-8 cannot hold it)."""
    for i, row in enumerate(rows):
        for name, value in row.items():
            if isinstance(value, str) and not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise EventValidationError.field(
                        name,
                        i,
                        f"not valid Unicode text: it holds a lone surrogate {value[e.start]!r}",
                        hint="\\ud800-\\udfff escapes must come in pairs (a high then a low surrogate)",
                    ) from None


def _first_bad(mask: pa.ChunkedArray | pa.Array) -> int:
    idx = pc.index(mask, True).as_py()
    return int(idx)


def validate_table(table: pa.Table) -> pa.Table:
    """Validate a caller's Arrow table (bulk path) and conform it to ``INPUT_SCHEMA``.

    JSON columns are text and must parse; timestamps must carry a time zone.
    """
    out, settle = validate_table_pending(table)
    settle()
    return out


class _Pending:
    """A check running in a thread; ``settle`` waits for it and raises its error (every call)."""

    def __init__(self, check: Callable[[], None]) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(check,), name="journal-validate", daemon=True)
        self._thread.start()

    def _run(self, check: Callable[[], None]) -> None:
        try:
            check()
        except BaseException as e:  # raised by settle, in the caller's thread
            self._error = e

    def settle(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def validate_table_pending(table: pa.Table) -> tuple[pa.Table, Callable[[], None]]:
    """``validate_table`` of which the JSON check of ``data`` may still be running: call ``settle``
    (returned) before anything durable is done with the table; it raises that check's error.

    The check (Polars and DuckDB, mostly without the GIL) runs in a thread meanwhile. Errors keep
    the order of ``validate_table``: one found by a check before it is raised as it is, and
    one found after it (here, or by the caller before settling) gives way to its error.
    """
    unknown = [
        n for n in table.column_names if n not in INPUT_COLUMNS and n != "position" and n not in ASSIGNED_COLUMNS
    ]
    if unknown:
        raise EventValidationError.field(unknown[0], 0, "not a column of the canonical schema")
    n = table.num_rows
    cols: dict[str, pa.ChunkedArray | pa.Array] = {}
    for field in INPUT_SCHEMA:
        name = field.name
        if name not in table.column_names:
            cols[name] = pa.nulls(n, field.type)
            continue
        col = table.column(name)
        if pa.types.is_timestamp(col.type) and col.type.tz is None:
            raise EventValidationError.field(name, 0, "timestamp column has no time zone")
        try:
            cols[name] = pc.cast(col, field.type) if col.type != field.type else col
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            at = _first_uncastable(col, field.type)
            raise EventValidationError.field(name, at, f"cannot be read as {field.type}: {e}") from e
    for name in ("stream_id", "event_type", "data"):
        if name == "data" and name not in table.column_names:
            raise EventValidationError.field(name, 0, "required (use the JSON text null for no payload)")
        bad = pc.fill_null(pc.equal(cols[name], ""), True) if name != "data" else pc.is_null(cols[name])
        if pc.any(bad).as_py():
            raise EventValidationError.field(name, _first_bad(bad), "required, a non-empty string")
    data = cols["data"]
    data_check = _Pending(lambda: _check_json(data, "data"))
    try:
        _check_columns(table, cols)
    except BaseException:
        with contextlib.suppress(BaseException):  # this error comes first
            data_check.settle()
        raise
    try:
        _check_json(cols["metadata"], "metadata")
        out = pa.table(cols, schema=INPUT_SCHEMA)
        if out.column("traceparent").null_count < n:
            out = _fill_trace_ids(out)
    except BaseException:
        data_check.settle()  # its error comes first
        raise
    return out, data_check.settle


def _check_columns(table: pa.Table, cols: dict[str, pa.ChunkedArray | pa.Array]) -> None:
    """The checks and defaults of ``validate_table`` between the required columns and the JSON."""
    if "metadata" in table.column_names:
        cols["metadata"] = pc.fill_null(cols["metadata"], "{}")
    else:
        cols["metadata"] = pa.array(["{}"] * table.num_rows, pa.string())
    if "occurred_at" not in table.column_names or pc.any(pc.is_null(cols["occurred_at"])).as_py():
        now = pa.scalar(dt.datetime.now(UTC), TIMESTAMP)
        cols["occurred_at"] = pc.fill_null(cols["occurred_at"], now)
    # what a datetime can hold (years 1-9999, UTC): readers turn values into datetimes
    out_of_range = pc.or_(
        pc.less(cols["occurred_at"], pa.scalar(dt.datetime.min.replace(tzinfo=UTC), TIMESTAMP)),
        pc.greater(cols["occurred_at"], pa.scalar(dt.datetime.max.replace(tzinfo=UTC), TIMESTAMP)),
    )
    if pc.any(out_of_range).as_py():
        raise EventValidationError.field("occurred_at", _first_bad(out_of_range), "out of range in UTC (years 1-9999)")
    if "is_error" not in table.column_names or pc.any(pc.is_null(cols["is_error"])).as_py():
        default = pc.or_(pc.equal(cols["event_type"], "error"), pc.is_valid(cols["error"]))
        cols["is_error"] = pc.coalesce(cols["is_error"], default)
    empty_id = pc.fill_null(pc.equal(cols["event_id"], ""), False)
    if pc.any(empty_id).as_py():
        raise EventValidationError.field(
            "event_id", _first_bad(empty_id), "must not be empty", hint="leave event_id null to have the journal derive one"
        )
    st = cols["stream_type"]
    kinds = pc.unique(st)  # a few: the pattern is matched once per kind, not per event
    bad_kinds = kinds.filter(pc.invert(pc.fill_null(pc.match_substring_regex(kinds, STREAM_TYPE_RE.pattern), True)))
    if len(bad_kinds):
        i = _first_bad(pc.is_in(st, bad_kinds))
        raise EventValidationError.field("stream_type", i, f"invalid stream type {st[i].as_py()!r}")
    for name in ("version", *_INT_COLUMNS):
        neg = pc.fill_null(pc.less(cols[name], 1 if name == "version" else 0), False)
        if pc.any(neg).as_py():
            i = _first_bad(neg)
            value = cols[name][i].as_py()
            raise EventValidationError.field(
                name,
                i,
                f"versions start at 1, got {value}" if name == "version" else f"must not be negative, got {value}",
            )
    for name in _INT_COLUMNS:
        big = pc.fill_null(pc.greater(cols[name], MAX_TOKENS), False)
        if pc.any(big).as_py():
            i = _first_bad(big)
            raise EventValidationError.field(name, i, f"more than {MAX_TOKENS:,} tokens in one event: {cols[name][i].as_py()}")


def _first_uncastable(col: pa.ChunkedArray | pa.Array, to: pa.DataType) -> int:
    """Index of the first value that does not cast (bisection: about 2n casts in all)."""
    lo, hi = 0, len(col)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(col.slice(lo, mid - lo), to)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hi = mid
        else:
            lo = mid
    return lo


# DuckDB's json_valid (yyjson) passes three things strict JSON refuses (found by differential
# fuzzing against pydantic-core with DuckDB 2.0; tests/journal/test_validation.py keeps checking):
# NaN, Inf and Infinity in any case, maybe after '-', where a value starts; a comma before ']' or
# '}'; nesting deeper than pydantic-core's limit. Texts that may hold one are re-checked.
_NAN_OR_INF: Final = r"(?i)nan|inf"  # a fast scan; its few hits (words in prose) get the next look
_NAN_OR_INF_VALUE: Final = r"(?i)(?:^|[\[:,\s])-?(?:nan|inf)"
_TRAILING_COMMA: Final = r",\s*[\]}]"
_MAX_DEPTH: Final = 200  # pydantic-core refuses a value inside 201 arrays; yyjson has no limit
# fewer distinct texts are parsed one by one: under 1 us each (the demo's payloads) against 2.5 ms
# for the vectorised pass however few they are; small appends (journal append) then never load
# DuckDB (50 ms, once)
_FEW_TEXTS: Final = 4096
_INVALID_JSON_SQL: Final = "SELECT t FROM json_texts WHERE NOT json_valid(t)"


def _check_json(col: pa.ChunkedArray | pa.Array, name: str) -> None:
    """Every cell must be one JSON value (metadata: one JSON object).

    Distinct texts are checked once, vectorised (DuckDB's json_valid and a few regexes, see
    ``_suspicious_json``); the few that may be bad (all, when there are few) are parsed one by one
    with a strict parser (pydantic-core, the reference: no NaN/Infinity, no trailing text), which
    also words the error.
    """
    texts = pl.Series(col).unique().drop_nulls()
    objects = name == "metadata"
    suspicious = texts if texts.len() < _FEW_TEXTS else _suspicious_json(texts, objects=objects, name=name)
    bad: dict[str, str] = {}
    for text in suspicious.to_list():
        try:
            value = from_json(text, allow_inf_nan=False)  # NaN / Infinity are not JSON
        except ValueError as e:
            bad[text] = f"not JSON: {e}"
            continue
        if objects and not isinstance(value, dict):
            bad[text] = "expected a JSON object"
    if bad:
        first = pl.Series(col).is_in(pl.Series(list(bad), dtype=pl.String).implode()).arg_true()[0]
        raise EventValidationError.field(name, int(first), bad[col[int(first)].as_py()])


def _suspicious_json(texts: pl.Series, *, objects: bool, name: str) -> pl.Series:
    """Every text (distinct, not null) that may not be strict JSON (``objects``: a JSON object),
    and a few that are: those DuckDB refuses and those that may use one of its leniencies."""
    maybe_nan = texts.filter(texts.str.contains(_NAN_OR_INF))
    long = texts.filter(texts.str.len_bytes() > 2 * _MAX_DEPTH)  # each level takes two brackets
    parts = [
        _json_invalid(texts, name),
        texts.filter(texts.str.contains(_TRAILING_COMMA)),
        maybe_nan.filter(maybe_nan.str.contains(_NAN_OR_INF_VALUE)),
        long.filter(long.str.count_matches(r"[\[{]") > _MAX_DEPTH),  # no deeper than its openers
    ]
    if objects:  # valid JSON whose first character is not '{' is no object
        parts.append(texts.filter(~texts.str.strip_chars().str.starts_with("{")))
    return pl.concat(parts).unique()


_JSON_DB: duckdb.DuckDBPyConnection | None = None
_JSON_DB_LOCK = threading.Lock()


def _json_invalid(texts: pl.Series, name: str) -> pl.Series:
    """The texts DuckDB's json_valid refuses: on a cursor (a connection of its own) of the process's
    JSON database, as appends in several threads check at once, each in a thread of its own."""
    import duckdb  # here: importing the journal, and small appends, do without it

    global _JSON_DB
    with _JSON_DB_LOCK:
        if _JSON_DB is None:
            # nothing to read or spill: no file access, no spill directory (./.tmp by default); one
            # thread: the check runs beside the rest of an append's validation, and two were no
            # faster on 200,000 events (65,000 distinct texts) for a little more CPU
            _JSON_DB = duckdb.connect(
                ":memory:",
                config={
                    "threads": 1,
                    "enable_external_access": False,
                    "temp_directory": "",
                    "autoinstall_known_extensions": False,
                    "autoload_known_extensions": False,
                    "lock_configuration": True,
                },
            )
        con = _JSON_DB.cursor()
    try:
        con.register("json_texts", pl.DataFrame({"t": texts}))
        invalid: pl.Series = con.sql(_INVALID_JSON_SQL).pl().to_series()
    except duckdb.Error as e:
        raise QueryError(f"checking that {name} is JSON failed: {e}") from e
    finally:
        con.close()
    return invalid


def _fill_trace_ids(table: pa.Table) -> pa.Table:
    """Check every traceparent and fill trace_id/span_id where they are missing (vectorised);
    given ids must be the traceparent's (in any case)."""
    tp = table.column("traceparent")
    text = pl.Series(tp)
    checked = _trace_parts(text)  # the text as written: the usual, canonical form
    if checked.get_column("bad").any():  # spaces, capitals, or a bad value: the normalising pass
        checked = _trace_parts(text.str.strip_chars().str.to_lowercase())
    bad = checked.get_column("bad")
    if bad.any():
        i = int(bad.arg_true()[0])
        parse_traceparent(tp[i].as_py(), i)  # raises with the message and hint
    for name, part in (("trace_id", "trace"), ("span_id", "span")):
        given = pl.Series(table.column(name))
        parsed = checked.get_column(part)
        if not (given != parsed).any():  # the usual case: none given, or each as its traceparent has it
            continue
        clash = ((given != "") & (given.str.strip_chars().str.to_lowercase() != parsed)).fill_null(False)
        if clash.any():
            i = int(clash.arg_true()[0])
            raise _contradiction(name, i, given[i], parsed[i])
    trace = checked.get_column("trace").to_arrow().cast(pa.string())
    span = checked.get_column("span").to_arrow().cast(pa.string())
    table = table.set_column(
        table.schema.get_field_index("trace_id"), "trace_id", pc.coalesce(table.column("trace_id"), trace)
    )
    return table.set_column(
        table.schema.get_field_index("span_id"), "span_id", pc.coalesce(table.column("span_id"), span)
    )


def _trace_parts(text: pl.Series) -> pl.DataFrame:
    """bad (a present value that is no valid traceparent), trace and span ids of each value.

    A well-formed traceparent has the ids at fixed offsets; all-zero ids are invalid. The
    expressions of one ``select`` run in parallel.
    """
    t = pl.col("t")
    parts = pl.DataFrame({"t": text}).select(
        form=t.str.contains(TRACEPARENT_RE.pattern), trace=t.str.slice(3, 32), span=t.str.slice(36, 16)
    )
    ok = pl.col("form") & (pl.col("trace") != "0" * 32) & (pl.col("span") != "0" * 16)
    return parts.select(
        bad=ok.not_().fill_null(False), trace=pl.when(ok).then("trace"), span=pl.when(ok).then("span")
    )
