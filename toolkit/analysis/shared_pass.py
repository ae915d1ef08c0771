"""One shared pass for the built-in rules: read the journal once, order it once, judge every rule.

The seven built-ins (``budget``, ``latency``, ``exactly_once``, ``tool_result_pairing``,
``journal_integrity``, ``no_tool_failure_loop``, ``confirmation_before_write``) are defined by
their SQL files and Polars functions, which stay what ``journal sql``, bisection and user rules
see. Run one by one, each rescans the Parquet files and sorts 10M string keys on its own. Here
they share one frame instead:

1. **one scan** of the union of the columns the chosen rules read (``BUILTIN_COLUMNS``); ``data``
   only for the rows a rule reads it on (tool calls' arguments, user messages' text);
2. **integer keys**: stream ids become dictionary codes, event and causation ids two 64-bit hashes
   (duplicates confirmed on the strings, so a collision never invents a finding), tool call ids
   dictionary codes (exact);
3. **one sort** by ``(stream code, version)`` (a single u64 key), after which per-stream windows are
   plain column arithmetic (segmented cumulative sums, shifts) — no per-group hash tables;
4. each rule gives ``holds`` per judged row; failing streams are summarised (first failing
   version, count, the first versions) and the message is formatted only for each stream's first
   failing event, with the same text as the SQL/Polars definition;
5. the rules are judged in threads, the costliest first (``RULE_THREADS``: Polars releases the GIL
   and many of its steps run on one core); intermediate frames two rules share are built once.

``shared_failures`` returns, per rule, exactly the failure rows of ``verdicts.sql_failures`` /
``verdicts.polars_failures`` (tests compare them on the fixture and demo journals). A built-in
overridden by a user file of the same name is not a built-in any more and runs its own code.

>>> sorted(BUILTIN_COLUMNS)  # doctest: +NORMALIZE_WHITESPACE
['budget', 'confirmation_before_write', 'exactly_once', 'journal_integrity', 'latency',
 'no_tool_failure_loop', 'tool_result_pairing']
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl
import pyarrow as pa

from toolkit.analysis.rules import Rule, builtin_rules, decimal_param
from toolkit.analysis.verdicts import EVIDENCE_VERSIONS, FAILURE_SCHEMA
from toolkit.engines.dask_engine import stream_shards
from toolkit.engines.polars_engine import scan_events
from toolkit.journal.retention import Removals, read_removals
from toolkit.journal.store import Journal

# event columns each built-in reads (besides stream_id, version, position); "data" is read only on
# the event types the rule needs it for
BUILTIN_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "budget": ("cost_usd", "tokens_in", "tokens_out"),
    "latency": ("event_type", "tool_name", "model", "duration_ms"),
    "exactly_once": ("event_type", "idempotency_key"),
    "tool_result_pairing": ("event_type", "tool_name", "tool_call_id"),
    "journal_integrity": ("event_id", "causation_id"),
    "no_tool_failure_loop": ("event_type", "tool_name", "tool_call_id", "is_error", "data"),
    "confirmation_before_write": ("event_type", "tool_name", "idempotency_key", "data"),
}
# rules whose verdict at an event depends on other streams: judged over the whole journal
CROSS_STREAM: Final = frozenset({"exactly_once", "journal_integrity"})
_DATA_TYPES: Final = {"no_tool_failure_loop": "tool_called", "confirmation_before_write": "user_message"}
_INFO: Final = ("stream_id", "stream_type", "occurred_at", "event_id", "event_type")
# event columns a failing event's message quotes (besides the stream and event info)
_MESSAGE_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "budget": (),
    "latency": ("tool_name", "model", "duration_ms"),
    "exactly_once": ("idempotency_key",),
    "tool_result_pairing": ("tool_call_id", "tool_name"),
    "journal_integrity": ("causation_id",),
    "no_tool_failure_loop": (),
    "confirmation_before_write": ("tool_name",),
}
_SEED1, _SEED2 = 0x6A09E667, 0xBB67AE85
# rules judged at once, in threads (2 cores: 3.0-3.4 s for the seven over 10M events, against
# 3.8-4.0 s one after another; 3 threads: 3.3-3.6 s)
RULE_THREADS: Final = max(1, min(len(os.sched_getaffinity(0)), 4))  # the cores this process may use
# what each built-in costs over the 10M-event bench journal (the costliest are started first)
RULE_COST: Final = {  # over saved rule keys (``rule_keys``), ms
    "confirmation_before_write": 720, "tool_result_pairing": 470, "no_tool_failure_loop": 400, "budget": 230,
    "exactly_once": 190, "latency": 130, "journal_integrity": 80,
}
# events judged in memory at once (about 0.5 KB each with the strings messages quote): larger
# journals go in shards of whole streams
SHARD_EVENTS: Final = 15_000_000
# a whole-journal pass reads (and first saves) the journal's rule keys (``rule_keys``); off: it
# reads the journal's strings every time (for comparisons)
SAVED_KEYS = True


def is_builtin(rule: Rule) -> bool:
    """True when ``rule`` is the built-in of its name (same code), so the shared pass may judge it."""
    builtin = builtin_rules().get(rule.name)
    return (
        rule.name in BUILTIN_COLUMNS
        and builtin is not None
        and rule.origin == builtin.origin
        and rule.kind == builtin.kind
        and rule.source == builtin.source
    )


class Strings:
    """The events' strings (and the numbers messages quote), taken by ``orig`` row: here a frame
    read from the journal in file order; a saved frame (``rule_keys``) loads each column on its
    first use."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame

    def take(self, column: str, rows: pl.Series) -> pl.Series:
        """``column`` at the ``orig`` rows ``rows``."""
        return self.frame.get_column(column).gather(rows)

    def take_frame(self, columns: Sequence[str], rows: pl.Series) -> pl.DataFrame:
        return pl.DataFrame([self.take(c, rows).alias(c) for c in columns])

    def text_codes(self, rows: pl.Series) -> tuple[pl.Series, pl.Series]:
        """The user message texts at ``rows`` as codes (null: no text) into their distinct texts."""
        text = self.take("data", rows)
        texts = text.drop_nulls().unique()
        codes = text.to_frame("t").join(
            texts.to_frame("t").with_row_index("code"), on="t", how="left", maintain_order="left"
        ).get_column("code")
        return codes, texts

    def close(self) -> None:
        """Release what the strings hold open (nothing here)."""


@dataclass
class Frame:
    """The journal's events read once: ``o`` the strings by original row, ``s`` sorted by (stream, version)."""

    o: Strings  # original order: the string columns, gathered only for the rows a message needs
    s: pl.DataFrame  # sorted: integer keys and numbers; ``orig`` points back into ``o``
    shared: dict[str, pl.DataFrame] = field(default_factory=dict)  # intermediate frames several rules use
    removals: Removals | None = None  # what the purges removed (read for journal_integrity only)
    lock: threading.Lock = field(default_factory=threading.Lock)  # rules judged in threads build ``shared`` once

    @property
    def height(self) -> int:
        return self.s.height


def _hash(col: str, seed: int) -> pl.Expr:
    return pl.when(pl.col(col).is_not_null()).then(pl.col(col).hash(seed))


def load_frame(
    journal: Journal,
    names: Sequence[str],
    stream_ids: Sequence[str] | None = None,
    stream_range: tuple[str, str] | None = None,
    after_position: int | None = None,
) -> Frame:
    """One scan of what the named built-ins read, sorted once by (stream code, version).

    ``stream_range`` (first, last id) bounds the scan so that row groups outside it are skipped on
    their statistics (files are sorted by stream id): a shard reads its part of the journal only.
    ``after_position``: only the events at later positions (those appended since; ``rule_keys``).
    """
    needed = {c for n in names for c in BUILTIN_COLUMNS[n]}
    data_types = sorted({_DATA_TYPES[n] for n in names if n in _DATA_TYPES})
    cols = list(dict.fromkeys(["stream_id", "version", "position", *_INFO, *(c for c in sorted(needed) if c != "data")]))
    lf = scan_events(journal, stream_ids=stream_ids, after_position=after_position)
    if stream_range is not None:
        lf = lf.filter(pl.col("stream_id").is_between(pl.lit(stream_range[0]), pl.lit(stream_range[1])))
    select: list[pl.Expr] = [pl.col(c) for c in cols]
    if data_types:
        select.append(pl.when(pl.col("event_type").is_in(data_types)).then(pl.col("data")).alias("data"))
    o = lf.select(select).collect()
    o = o.with_columns(
        sid=pl.col("stream_id").cast(pl.Categorical).to_physical(),  # codes by hashing: less memory than by runs
        event_type=pl.col("event_type").cast(pl.Categorical),
    )
    s_cols: list[pl.Expr] = [
        pl.int_range(0, pl.len(), dtype=pl.UInt32).alias("orig"),
        pl.col("sid"),
        pl.col("version"),
        pl.col("position"),
        pl.col("event_type").alias("et"),
    ]
    if {"tool_name"} & needed:
        s_cols.append(pl.col("tool_name").cast(pl.Categorical))
    if "is_error" in needed:
        s_cols.append(pl.col("is_error"))
    if "cost_usd" in needed:
        s_cols += [
            # nano-dollars: DECIMAL(18, 9) is an integer count of 1e-9 USD, summed exactly: as i64
            # when no sum can leave its range, else as i128 (an i64 sum stops at 9.2e9 USD, and
            # Polars wraps past it: a run over that passed its budget)
            pl.col("cost_usd").to_physical().cast(_cost_type(o.get_column("cost_usd"))).fill_null(0).alias("cost"),
            (pl.col("tokens_in").fill_null(0) + pl.col("tokens_out").fill_null(0)).alias("tokens"),
        ]
    if "duration_ms" in needed:
        s_cols.append(pl.col("duration_ms"))
    if "tool_call_id" in needed:
        s_cols += [_hash("tool_call_id", _SEED1).alias("tc"), _hash("tool_call_id", _SEED2).alias("tc2")]
    if "idempotency_key" in needed:
        s_cols.append(pl.col("idempotency_key").is_not_null().alias("has_key"))
    if "event_id" in needed:
        s_cols += [pl.col("event_id").hash(_SEED1).alias("h1e"), pl.col("event_id").hash(_SEED2).alias("h2e")]
    if "causation_id" in needed:
        s_cols += [_hash("causation_id", _SEED1).alias("h1c"), _hash("causation_id", _SEED2).alias("h2c")]
    if "no_tool_failure_loop" in names:
        s_cols.append(pl.when(pl.col("event_type") == "tool_called").then(pl.col("data").hash()).alias("args"))
    s = _group_streams(o.select(s_cols))
    # the numbers now live in ``s``: ``o`` keeps only what messages and exact checks read
    o = o.drop("sid", *(c for c in ("version", "cost_usd", "tokens_in", "tokens_out", "is_error") if c in o.columns))
    removals = read_removals(journal) if "journal_integrity" in names else None
    return Frame(Strings(o), s.with_columns(first=(pl.col("sid") != pl.col("sid").shift(1)).fill_null(True)), removals=removals)


def _cost_type(cost: pl.Series) -> pl.DataType:
    """Int64 when no sum of these nano-dollar costs can leave its range (the largest magnitude
    times the count stays below 2**63, as for any journal of real costs), else Int128.

    >>> _cost_type(pl.Series([1.5, None, -2.0], dtype=pl.Decimal(18, 9))), _cost_type(pl.Series([9e8] * 11, dtype=pl.Decimal(18, 9)))
    (Int64, Int128)
    """
    return nano_sum_type(cost.to_physical())


def nano_sum_type(*nanos: pl.Series) -> pl.DataType:
    """The integer type sums of these nano-dollar amounts (one or more columns, taken together
    without concatenating them) are taken in (see ``_cost_type``)."""
    bounds = [v for nano in nanos for v in (nano.min(), nano.max()) if v is not None]
    if not bounds:
        return pl.Int64()
    biggest = max(abs(int(v)) for v in bounds)  # type: ignore[arg-type]
    return pl.Int64() if biggest * max(1, sum(nano.len() for nano in nanos)) < 2**63 else pl.Int128()


def _group_streams(s: pl.DataFrame) -> pl.DataFrame:
    """``s`` with each stream's rows together, in version order (streams in any order).

    A compacted journal is read almost in that order already (files sorted by stream and version;
    only streams that cross a partition — a run over midnight — come in pieces), and gathering a
    10M-row frame costs more than the rules: rows of streams that already form one ascending run
    stay where they are, the others are sorted and put after them.

    >>> s = pl.DataFrame({"sid": [0, 0, 1, 2, 1, 2], "version": [1, 2, 1, 2, 2, 1]})
    >>> _group_streams(s).rows()
    [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]
    """
    sid, version = pl.col("sid"), pl.col("version")
    # a row that does not follow its predecessor in its stream: a new piece of a stream, or a
    # version not above the previous one
    restart = (sid == sid.shift(1)) & (version <= version.shift(1))
    piece = (sid != sid.shift(1)).fill_null(True)
    marks = s.select(restart.fill_null(False).alias("restart"), piece.alias("piece"), "sid")
    pieces = marks.filter("piece").get_column("sid")
    broken = marks.filter("restart").get_column("sid")
    if not broken.len() and pieces.n_unique() == pieces.len():
        return s  # one ascending run per stream: nothing to move
    dirty = pl.concat([pieces.filter(pieces.is_duplicated()), broken]).unique()
    moved = pl.col("sid").is_in(dirty.implode())
    rest = s.filter(moved)
    v = rest.select(version.min().alias("lo"), version.max().alias("hi")).row(0)
    if v[0] is not None and v[0] >= 0 and v[1] < 1 << 32:
        order = rest.select((sid.cast(pl.UInt64) * (1 << 32) + version.cast(pl.UInt64)).arg_sort()).to_series()
    else:  # versions outside u32 (a damaged journal): the general two-key sort
        order = rest.select(pl.arg_sort_by("sid", "version")).to_series()
    if rest.height == s.height:
        return rest.select(pl.all().gather(order))
    # one chunk: scatter and gather on a chunked frame copy it first, once per call
    return pl.concat([s.filter(~moved), rest.select(pl.all().gather(order))], rechunk=True)


# ---------------------------------------------------------------------- column arithmetic helpers


def _seg_cumsum(x: pl.Expr, start: str = "first") -> pl.Expr:
    """Cumulative sum restarting at every row where ``start`` is true (rows sorted by segment)."""
    cs = x.cum_sum()
    return cs - pl.when(pl.col(start)).then(cs - x).forward_fill()


def _seg_total(x: pl.Expr, start: str, end: str) -> pl.Expr:
    """The sum of ``x`` over the row's whole segment."""
    cs = x.cum_sum()
    return pl.when(pl.col(end)).then(cs).backward_fill() - pl.when(pl.col(start)).then(cs - x).forward_fill()


def _num(value: float) -> str:
    """A DOUBLE as DuckDB's CAST(... AS VARCHAR) writes it (5.0, 617.89, 1e+20)."""
    return repr(float(value))


def _decimal_text(col: str) -> pl.Expr:
    """Nano-dollars as DuckDB writes a DECIMAL(38, 9): -0.500000000, 5.012000000."""
    n = pl.col(col)
    whole = (n.abs() // 1_000_000_000).cast(pl.String)
    frac = (n.abs() % 1_000_000_000).cast(pl.String).str.zfill(9)
    return pl.when(n < 0).then(pl.lit("-")).otherwise(pl.lit("")) + whole + pl.lit(".") + frac


def _opt(prefix: str, col: str) -> pl.Expr:
    return (pl.lit(prefix) + pl.col(col).cast(pl.String)).fill_null("")


# A rule: (frame, params) -> judged rows (srow, holds, aux...) in any order, and the message of a
# failing row (an expression over its aux columns and the event's strings).
Judge = Callable[[Frame, dict[str, Any]], pl.DataFrame]
Message = Callable[[dict[str, Any]], pl.Expr]


_INT128_MAX: Final = 2**127 - 1


def _nano_limit(limit: float) -> int:
    """A dollar limit in whole nano-dollars: a run costing exactly the limit written holds.

    The limit is the decimal it was written as (0.3, not 0.29999999999999998890), so integer
    nano-dollar sums compare exactly; a cost, a whole number of nano-dollars, is within the limit
    when it is within its floor. (Dividing the sums by 1e9 as doubles put 0.1 + 0.2 over 0.3.)
    The sums are i128, so a limit past an i64's 9.2e9 USD is kept as it is.

    >>> _nano_limit(0.3), _nano_limit(1e10), _nano_limit(float("inf")) == _INT128_MAX
    (300000000, 10000000000000000000, True)
    """
    if math.isinf(limit):
        return _INT128_MAX if limit > 0 else -_INT128_MAX
    nano = math.floor(decimal_param(limit) * 1_000_000_000)
    return max(min(nano, _INT128_MAX), -_INT128_MAX)


def _budget(f: Frame, p: dict[str, Any]) -> pl.DataFrame:
    cost = _seg_cumsum(pl.col("cost"))
    tokens = _seg_cumsum(pl.col("tokens"))
    out = f.s.select(
        pl.int_range(0, pl.len(), dtype=pl.UInt32).alias("srow"), cost.alias("cost_so_far"), tokens.alias("tokens_so_far")
    )
    holds = pl.col("cost_so_far") <= _nano_limit(p["max_cost_usd"])
    if p["max_tokens"] is not None:
        holds = holds & (pl.col("tokens_so_far") <= p["max_tokens"])
    return out.with_columns(holds=holds)


def _budget_message(p: dict[str, Any]) -> pl.Expr:
    over_cost = pl.col("cost_so_far") > _nano_limit(p["max_cost_usd"])
    cost = pl.lit("cumulative cost $") + _decimal_text("cost_so_far") + pl.lit(f" exceeds ${_num(p['max_cost_usd'])}")
    if p["max_tokens"] is None:
        return pl.when(over_cost).then(cost)
    tokens = pl.lit("cumulative tokens ") + pl.col("tokens_so_far").cast(pl.String) + pl.lit(f" exceed {p['max_tokens']}")
    return pl.when(over_cost).then(cost).when(pl.col("tokens_so_far") > p["max_tokens"]).then(tokens)


def _latency(f: Frame, p: dict[str, Any]) -> pl.DataFrame:
    bound = pl.when(pl.col("et") == "llm_response").then(pl.lit(float(p["max_llm_ms"]))).otherwise(
        pl.lit(float(p["max_tool_ms"]))
    )
    return (
        f.s.select(pl.int_range(0, pl.len(), dtype=pl.UInt32).alias("srow"), "et", "duration_ms")
        .filter(pl.col("duration_ms").is_not_null(), pl.col("et").is_in(["tool_result", "llm_response"]))
        .with_columns(bound_ms=bound)
        .select("srow", "bound_ms", holds=pl.col("duration_ms") <= pl.col("bound_ms"))
    )


def _latency_message(p: dict[str, Any]) -> pl.Expr:
    bound = pl.when(pl.col("event_type") == "llm_response").then(pl.lit(_num(p["max_llm_ms"]))).otherwise(
        pl.lit(_num(p["max_tool_ms"]))
    )
    return (
        pl.col("event_type").cast(pl.String) + _opt(" ", "tool_name") + _opt(" ", "model") + pl.lit(" took ")
        + pl.col("duration_ms").cast(pl.String) + pl.lit(" ms > ") + bound + pl.lit(" ms")
    )


def _exactly_once(f: Frame, p: dict[str, Any]) -> pl.DataFrame:
    judged = f.s.select(pl.int_range(0, pl.len(), dtype=pl.UInt32).alias("srow"), "orig", "et", "has_key", "version", "position").filter(
        pl.col("has_key") | (pl.col("et") == "tool_called")
    )
    keyed = judged.filter("has_key").with_columns(key=f.o.take("idempotency_key", judged.filter("has_key").get_column("orig")))
    firsts = keyed.group_by("key").agg(
        first_position=pl.col("position").min(),
        first_orig=pl.col("orig").sort_by("position").first(),
        first_version=pl.col("version").sort_by("position").first(),
        uses=pl.len().cast(pl.Int64),
    )
    keyed = keyed.join(firsts, on="key", how="left").select(
        "srow", "first_orig", "first_version", "uses", holds=pl.col("position") == pl.col("first_position")
    )
    plain = judged.filter(~pl.col("has_key")).select("srow", holds=pl.lit(True))
    return pl.concat([keyed, plain], how="diagonal")  # in no order: frame_failures sorts the failing rows


def _exactly_once_message(p: dict[str, Any]) -> pl.Expr:
    return (
        pl.lit("idempotency_key ") + pl.col("idempotency_key") + pl.lit(" already used by ") + pl.col("first_stream_id")
        + pl.lit(" version ") + pl.col("first_version").cast(pl.String) + pl.lit(" (") + pl.col("uses").cast(pl.String)
        + pl.lit(" uses)")
    )


def _tool_rows(f: Frame) -> pl.DataFrame:
    """Tool calls and results in (stream, version) order."""
    with f.lock:
        if "tool_rows" not in f.shared:
            f.shared["tool_rows"] = f.s.select(
                pl.int_range(0, pl.len(), dtype=pl.UInt32).alias("srow"), "orig", "sid", "tc", "tc2", "et", "position",
                *(c for c in ("is_error", "tool_name", "args", "call_rank") if c in f.s.columns),
            ).filter(pl.col("et").is_in(["tool_called", "tool_result"]))
        return f.shared["tool_rows"]


def _by_call(f: Frame, rows: pl.DataFrame) -> pl.DataFrame:
    """Rows with a tool_call_id sorted by (stream, call id hash), version order kept within each call.

    A second hash must agree within every group; if it does not, two ids share the first hash
    (a collision) and the groups are rebuilt from the id strings themselves.
    """
    with f.lock:
        if "by_call" not in f.shared:
            f.shared["by_call"] = _group_calls(f, rows)
        return f.shared["by_call"]


def by_call_groups(f: Frame) -> pl.DataFrame:
    """The tool calls and results with a tool_call_id, by (stream, call id): ``srow``, and
    ``start`` true on the first row of each (stream, call id)."""
    return _by_call(f, _tool_rows(f))


def _group_calls(f: Frame, rows: pl.DataFrame) -> pl.DataFrame:
    if "call_rank" in rows.columns:  # saved keys: the order was saved, the call codes are exact
        keyed = rows.filter(pl.col("tc").is_not_null())
        order = pl.repeat(0, keyed.height, dtype=pl.UInt32, eager=True).scatter(
            keyed.get_column("call_rank"), pl.int_range(0, keyed.height, dtype=pl.UInt32, eager=True)
        )
        keyed = keyed.drop("call_rank").gather(order).with_columns(start=(pl.col("tc") != pl.col("tc").shift(1)).fill_null(True))
        return keyed.with_columns(end=pl.col("start").shift(-1).fill_null(True))
    keyed = rows.filter(pl.col("tc").is_not_null()).sort("sid", "tc", maintain_order=True)
    keyed = keyed.with_columns(
        start=((pl.col("sid") != pl.col("sid").shift(1)) | (pl.col("tc") != pl.col("tc").shift(1))).fill_null(True)
    )
    if keyed.select((pl.col("tc2") != pl.col("tc2").shift(1)) & ~pl.col("start")).to_series().any():
        exact = keyed.with_columns(cid=f.o.take("tool_call_id", keyed.get_column("orig")))
        keyed = exact.sort("sid", "cid", maintain_order=True).with_columns(
            start=((pl.col("sid") != pl.col("sid").shift(1)) | (pl.col("cid") != pl.col("cid").shift(1))).fill_null(True)
        ).drop("cid")
    return keyed.with_columns(end=pl.col("start").shift(-1).fill_null(True))


def _tool_result_pairing(f: Frame, p: dict[str, Any]) -> pl.DataFrame:
    rows = _tool_rows(f)
    call = (pl.col("et") == "tool_called").cast(pl.Int32)
    result = (pl.col("et") == "tool_result").cast(pl.Int32)
    paired = _by_call(f, rows).with_columns(
        calls_before=_seg_cumsum(call, "start") - call,
        results_before=_seg_cumsum(result, "start") - result,
        results_after=_seg_total(result, "start", "end") - _seg_cumsum(result, "start"),
    )
    is_call = pl.col("et") == "tool_called"
    holds = pl.when(is_call).then(
        (pl.col("calls_before") == 0) & (pl.col("results_after") == 1)
    ).otherwise((pl.col("calls_before") == 1) & (pl.col("results_before") == 0))
    judged = paired.select("srow", "calls_before", "results_before", "results_after", holds=holds)
    no_id = rows.filter(pl.col("tc").is_null()).select("srow", holds=pl.lit(False))
    return pl.concat([judged, no_id], how="diagonal")  # in no order: frame_failures sorts the failing rows


def _tool_result_pairing_message(p: dict[str, Any]) -> pl.Expr:
    call = pl.col("event_type") == "tool_called"
    result = pl.col("event_type") == "tool_result"
    cid = pl.col("tool_call_id")
    return (
        pl.when(cid.is_null()).then(pl.col("event_type").cast(pl.String) + pl.lit(" without a tool_call_id"))
        .when(call & (pl.col("calls_before") > 0)).then(pl.lit("call ") + cid + pl.lit(" made twice"))
        .when(call & (pl.col("results_after") == 0))
        .then(pl.lit("call ") + cid + (pl.lit(" (") + pl.col("tool_name").cast(pl.String) + pl.lit(")")).fill_null("")
              + pl.lit(" never got a result"))
        .when(call & (pl.col("results_after") > 1))
        .then(pl.lit("call ") + cid + pl.lit(" got ") + pl.col("results_after").cast(pl.String) + pl.lit(" results"))
        .when(result & (pl.col("calls_before") == 0)).then(pl.lit("orphan result: no earlier call ") + cid)
        .when(result & (pl.col("results_before") > 0)).then(pl.lit("second result for call ") + cid)
    )


def _journal_integrity(f: Frame, p: dict[str, Any]) -> pl.DataFrame:
    base = _purged(f, integrity_base(f))
    ok_cause = ~pl.col("has_cause") | (pl.col("cause_position") < pl.col("position")).fill_null(
        pl.lit(bool(p["allow_unknown_causes"])) | pl.col("cause_removed")
    )
    holds = (pl.col("version") == pl.col("prev_version") + 1) & (pl.col("uses") == 1) & ok_cause
    return base.select("srow", "prev_version", "uses", "cause_position", "cause_removed", holds=holds)


def integrity_base(f: Frame) -> pl.DataFrame:
    """Per event (``srow`` order): ``prev_version`` in its stream (0 first), ``uses`` of its id in
    the journal, ``has_cause`` and ``cause_position``, the first position of the event its
    causation_id names (null: none). A saved frame holds the last two resolved (``rule_keys``)."""
    s = f.s
    n = s.height
    prev_version = pl.when(pl.col("first")).then(pl.lit(0, pl.Int64)).otherwise(pl.col("version").shift(1))
    if "cause" in s.columns:  # resolved when the keys were saved, on the strings
        return s.select(
            pl.int_range(0, n, dtype=pl.UInt32).alias("srow"), "orig", "position", "version",
            prev_version=prev_version, uses=pl.col("uses").fill_null(1), cause_position="cause", has_cause="has_cause",
        )
    # duplicate event ids: hashes seen twice (a value sort, no argsort: usually there are none),
    # confirmed on the strings
    h_sorted = s.select(pl.col("h1e").sort()).to_series()
    twice = h_sorted.filter((h_sorted == h_sorted.shift(1)).fill_null(False))
    cand_srows = (
        s.select(pl.arg_where(pl.col("h1e").is_in(twice.unique().implode()))).to_series().cast(pl.UInt32)
        if twice.len() else pl.Series("h1e", [], dtype=pl.UInt32)
    )
    exact = (
        s.select("orig", "position", "h1e", "h2e").gather(cand_srows)
        .with_columns(srow=cand_srows, event_id=f.o.take("event_id", s.get_column("orig").gather(cand_srows)))
    )
    ids = exact.group_by("event_id").agg(uses=pl.len().cast(pl.Int64), first_position=pl.col("position").min())
    exact = exact.join(ids, on="event_id", how="left")
    uses_full = pl.repeat(1, n, dtype=pl.Int64, eager=True).scatter(exact.get_column("srow"), exact.get_column("uses"))
    # a collision (equal first hash, different strings) among the candidates: those hashes resolve by string
    collided = exact.group_by("h1e").agg(pl.col("event_id").n_unique().alias("k")).filter(pl.col("k") > 1).get_column("h1e")
    # causes: usually one of the three events before in the same stream (a tool result names its
    # call, a call the response before it); the others by a join on both hashes
    def names_back(back: int) -> pl.Expr:
        return (
            (pl.col("sid") == pl.col("sid").shift(back))
            & (pl.col("h1c") == pl.col("h1e").shift(back))
            & (pl.col("h2c") == pl.col("h2e").shift(back))
        ).fill_null(False)

    near_cause = (
        pl.when(names_back(1)).then(pl.col("position").shift(1))
        .when(names_back(2)).then(pl.col("position").shift(2))
        .when(names_back(3)).then(pl.col("position").shift(3))
    )
    base = s.select(
        pl.int_range(0, n, dtype=pl.UInt32).alias("srow"), "orig", "position", "version", "h1c", "h2c",
        prev_version=prev_version,
        cause_prev=near_cause,
    ).with_columns(uses=uses_full)
    cause = base.get_column("cause_prev").clone()
    rest = base.filter(pl.col("h1c").is_not_null() & pl.col("cause_prev").is_null()).select("srow", "h1c", "h2c")
    if rest.height:  # causes that are not the previous event: one lookup on both hashes
        found = (
            s.select("h1e", "h2e", "position").filter(pl.col("h1e").is_in(rest.get_column("h1c").unique().implode()))
            .group_by("h1e", "h2e").agg(pl.col("position").min().alias("found"))
        )
        rest = rest.join(found, left_on=["h1c", "h2c"], right_on=["h1e", "h2e"], how="left")
        cause = cause.scatter(rest.get_column("srow"), rest.get_column("found"))
    if exact.height:  # a cause naming an id used twice names its first use
        dup_first = exact.group_by(pl.col("h1e").alias("h1c"), pl.col("h2e").alias("h2c")).agg(
            pl.col("first_position").min().alias("dup_first")
        )
        hits = base.filter(pl.col("h1c").is_in(dup_first.get_column("h1c").implode())).select("srow", "h1c", "h2c")
        hits = hits.join(dup_first, on=["h1c", "h2c"], how="inner")
        cause = cause.scatter(hits.get_column("srow"), hits.get_column("dup_first"))
    base = base.with_columns(cause_position=cause)
    if collided.len():
        base = _exact_causes(f, base, collided)
    return base.with_columns(has_cause=pl.col("h1c").is_not_null()).drop("h1c", "h2c", "cause_prev")


def _purged(f: Frame, base: pl.DataFrame) -> pl.DataFrame:
    """What the purges recorded, on the few rows it can change: a stream's first event at a first
    kept version of its purges follows the version before it, and a cause not in the journal that
    a purge removed is ``cause_removed`` (both looked up by the strings; nothing when no purge)."""
    removals = f.removals
    if removals is None or removals.empty:
        return base.with_columns(cause_removed=pl.lit(False))
    s, o = f.s, f.o
    starts = s.select(pl.arg_where(pl.col("first") & (pl.col("version") != 1))).to_series().cast(pl.UInt32)
    if starts.len():
        rows = pl.DataFrame(
            {
                "srow": starts,
                "stream_id": o.take("stream_id", s.get_column("orig").gather(starts)),
                "version": s.get_column("version").gather(starts),
            }
        ).join(
            removals.kept, left_on=["stream_id", "version"], right_on=["stream_id", "first_kept_version"], how="semi"
        )
        prev = base.get_column("prev_version").scatter(rows.get_column("srow"), rows.get_column("version") - 1)
        base = base.with_columns(prev_version=prev)
    removed = pl.repeat(False, base.height, dtype=pl.Boolean, eager=True)
    unknown = base.filter(pl.col("has_cause") & pl.col("cause_position").is_null()).select("srow", "orig", "version")
    if unknown.height:
        orig = unknown.get_column("orig")
        rows = unknown.with_columns(
            stream_id=o.take("stream_id", orig), causation_id=o.take("causation_id", orig)
        )
        hit = rows.get_column("srow").filter(removals.removed_by(rows).is_not_null())
        removed = removed.scatter(hit, True)
    return base.with_columns(cause_removed=removed)


def _exact_causes(f: Frame, base: pl.DataFrame, collided: pl.Series) -> pl.DataFrame:
    """Causes whose hash is shared by different event ids: looked up by the strings themselves."""
    s = f.s
    mask = pl.col("h1e").is_in(collided.implode())
    events = s.select("orig", "position", "h1e").filter(mask)
    events = events.with_columns(event_id=f.o.take("event_id", events.get_column("orig")))
    first = events.group_by("event_id").agg(pl.col("position").min().alias("exact_cause"))
    hit = base.filter(pl.col("h1c").is_in(collided.implode())).select("srow", "orig")
    hit = hit.with_columns(causation_id=f.o.take("causation_id", hit.get_column("orig")))
    hit = hit.join(first, left_on="causation_id", right_on="event_id", how="left").select("srow", "exact_cause")
    return base.join(hit, on="srow", how="left", maintain_order="left").with_columns(
        cause_position=pl.when(pl.col("srow").is_in(hit.get_column("srow").implode()))
        .then(pl.col("exact_cause")).otherwise(pl.col("cause_position"))
    ).drop("exact_cause")


def _journal_integrity_message(p: dict[str, Any]) -> pl.Expr:
    allow = bool(p["allow_unknown_causes"])
    msg = pl.when(pl.col("version") != pl.col("prev_version") + 1).then(
        pl.lit("version ") + pl.col("version").cast(pl.String) + pl.lit(" follows ") + pl.col("prev_version").cast(pl.String)
    ).when(pl.col("uses") > 1).then(
        pl.lit("event_id ") + pl.col("event_id") + pl.lit(" used ") + pl.col("uses").cast(pl.String) + pl.lit(" times")
    )
    if not allow:
        unknown = pl.col("causation_id").is_not_null() & pl.col("cause_position").is_null() & ~pl.col("cause_removed")
        msg = msg.when(unknown).then(
            pl.lit("causation_id ") + pl.col("causation_id") + pl.lit(" names no event in the journal")
        )
    return msg.when(pl.col("cause_position") >= pl.col("position")).then(
        pl.lit("causation_id ") + pl.col("causation_id") + pl.lit(" names a later event")
    )


def _no_tool_failure_loop(f: Frame, p: dict[str, Any]) -> pl.DataFrame:
    rows = _tool_rows(f)
    # every result, in (stream, version) order; only failed ones can fail the rule, and a streak
    # is a run of failed results next to each other (``i``) in one stream
    results = rows.filter(pl.col("et") == "tool_result").with_row_index("i")
    errors = results.filter(pl.col("is_error").fill_null(False))
    ok = results.filter(~pl.col("is_error").fill_null(False)).select(
        "srow", streak=pl.lit(0, pl.Int64), tool=pl.col("tool_name"), holds=pl.lit(True)
    )
    if errors.height == 0:
        return ok
    answered = _answered_calls(f, rows, errors)
    errors = errors.join(answered, on="srow", how="left", maintain_order="left").select(
        "srow", "sid", "i",
        args="call_args",
        # the tool is the one the answered call named (results often lack it), else the result's own
        tool=pl.coalesce(pl.col("call_tool"), pl.col("tool_name")),
    )
    same = (
        (pl.col("sid") == pl.col("sid").shift(1))
        & (pl.col("i") == pl.col("i").shift(1) + 1)
        & (pl.col("tool") == pl.col("tool").shift(1))
        & (pl.col("args") == pl.col("args").shift(1))
    ).fill_null(False)
    start = pl.when(~pl.col("same")).then(pl.col("i")).forward_fill()
    streak = errors.with_columns(same=same).with_columns(streak=(pl.col("i") - start + 1).cast(pl.Int64))
    failed = streak.select("srow", "streak", "tool", holds=pl.col("streak") < p["times"])
    return pl.concat([failed, ok])  # in no order: frame_failures sorts the failing rows


def _answered_calls(f: Frame, rows: pl.DataFrame, errors: pl.DataFrame) -> pl.DataFrame:
    """For each failed result with a tool_call_id whose call came before it: ``srow``, the call's
    argument hash ``call_args`` and tool ``call_tool`` (the first call of that (stream, call id)).
    Only the groups of failed results are looked at."""
    wanted = errors.get_column("tc").drop_nulls().unique()
    grouped = _by_call(f, rows).filter(pl.col("tc").is_in(wanted.implode()))  # whole (stream, call id) groups
    is_call = pl.col("et") == "tool_called"
    grouped = grouped.with_columns(first_call=is_call & (_seg_cumsum(is_call.cast(pl.Int64), "start") == 1))
    # the row of the group's first call, carried forward (-1 before it): the call's arguments and
    # tool are gathered from that row, so a call without a tool name never takes one from the group
    # (or stream) before
    call_row = pl.when(pl.col("first_call")).then(pl.int_range(pl.len(), dtype=pl.Int64)).when(pl.col("start")).then(-1)
    grouped = grouped.with_columns(
        called_at=pl.when(pl.col("first_call")).then(pl.col("position")).when(pl.col("start")).then(-1).forward_fill(),
        call_row=call_row.forward_fill(),
    )
    gathered = pl.col("call_row").clip(0)
    answered = (pl.col("called_at") >= 0) & (pl.col("called_at") < pl.col("position")) & (pl.col("call_row") >= 0)
    return grouped.select(
        "srow", "et",
        call_args=pl.when(answered).then(pl.col("args").gather(gathered)),
        call_tool=pl.when(answered).then(pl.col("tool_name").gather(gathered)),
    ).filter(pl.col("et") == "tool_result").drop("et")


def _no_tool_failure_loop_message(p: dict[str, Any]) -> pl.Expr:
    return pl.format("tool {} failed {} times in a row with the same arguments", pl.col("tool").cast(pl.String), pl.col("streak"))


def _confirmation_before_write(f: Frame, p: dict[str, Any]) -> pl.DataFrame:
    is_user = pl.col("et") == "user_message"
    is_call = pl.col("et") == "tool_called"
    writes = is_call & (pl.col("tool_name").is_in(list(p["tools"])) if p["tools"] else pl.col("has_key"))
    rows = f.s.select(pl.int_range(0, f.height, dtype=pl.UInt32).alias("srow"), "orig", "sid", "et", "tool_name", "has_key").filter(
        is_user | writes
    )
    # the patterns run once per distinct user message text (agents' users repeat themselves); the
    # calls' data, read for no_tool_failure_loop, is no text
    orig = rows.select(pl.when(pl.col("et") == "user_message").then(pl.col("orig"))).to_series()
    codes, texts = f.o.text_codes(orig)
    confirms = texts.str.contains(p["confirm_pattern"])
    # the reject pattern only where the confirm pattern matched (a regex with Unicode word
    # boundaries over non-ASCII text is slow: ≈ 6 µs a message)
    confirmed = confirms.arg_true()
    ok = confirms.scatter(confirmed, ~texts.gather(confirmed).str.contains(p["reject_pattern"]))
    rows = rows.with_columns(user_ok=ok.cast(pl.Int8).gather(codes))
    verdict = (
        pl.when(is_user).then(pl.col("user_ok"))
        .when((pl.col("sid") != pl.col("sid").shift(1)).fill_null(True)).then(pl.lit(-1, pl.Int8))
    )
    return (
        rows.with_columns(last_user=verdict.forward_fill(), write=writes)
        .filter("write")
        .select("srow", "last_user", holds=pl.col("last_user") == 1)
    )


def _confirmation_before_write_message(p: dict[str, Any]) -> pl.Expr:
    return pl.when(pl.col("last_user") == -1).then(
        pl.format("{} called with no user message before it", pl.col("tool_name"))
    ).otherwise(pl.format("{} called without a confirmation in the latest user message", pl.col("tool_name")))


JUDGES: Final[dict[str, tuple[Judge, Message]]] = {
    "budget": (_budget, _budget_message),
    "latency": (_latency, _latency_message),
    "exactly_once": (_exactly_once, _exactly_once_message),
    "tool_result_pairing": (_tool_result_pairing, _tool_result_pairing_message),
    "journal_integrity": (_journal_integrity, _journal_integrity_message),
    "no_tool_failure_loop": (_no_tool_failure_loop, _no_tool_failure_loop_message),
    "confirmation_before_write": (_confirmation_before_write, _confirmation_before_write_message),
}


# ---------------------------------------------------------------------- verdicts and failures


def frame_verdicts(frame: Frame, name: str, bound: Mapping[str, Any]) -> pl.DataFrame:
    """stream_id, version, holds of every event the built-in judges (for tests and comparisons)."""
    judged = JUDGES[name][0](frame, dict(bound))
    orig = frame.s.get_column("orig").gather(judged.get_column("srow"))
    return pl.DataFrame(
        {
            "stream_id": frame.o.take("stream_id", orig),
            "version": frame.s.get_column("version").gather(judged.get_column("srow")),
            "holds": judged.get_column("holds"),
        }
    )


def frame_failures(
    frame: Frame, name: str, bound: Mapping[str, Any], stream_ids: Sequence[str] | None = None
) -> pa.Table:
    """The failure rows (``FAILURE_SCHEMA``) of one built-in over the frame, as ``sql_failures`` gives them."""
    judge, message = JUDGES[name]
    p = dict(bound)
    judged = judge(frame, p)
    failing = judged.filter(pl.col("holds") == False)  # noqa: E712 - null means "no verdict"
    if failing.height == 0:
        return FAILURE_SCHEMA.empty_table()
    s = frame.s
    failing = failing.with_columns(
        sid=s.get_column("sid").gather(failing.get_column("srow")),
        version=s.get_column("version").gather(failing.get_column("srow")),
    ).sort("srow")
    per_stream = failing.group_by("sid", maintain_order=True).agg(
        srow=pl.col("srow").first(),
        failing_events=pl.len().cast(pl.Int64),
        failing_versions=pl.col("version").head(EVIDENCE_VERSIONS),
        last_failing_version=pl.col("version").last(),
    )
    firsts = failing.join(per_stream.select("srow"), on="srow", how="semi").drop("sid", "holds")
    rows = per_stream.join(firsts, on="srow", how="left")
    orig = s.get_column("orig").gather(rows.get_column("srow"))
    o = frame.o
    strings = o.take_frame(["position", *_INFO, *_MESSAGE_COLUMNS[name]], orig)
    rows = pl.concat([rows.drop("version"), strings], how="horizontal").with_columns(
        version=s.get_column("version").gather(rows.get_column("srow"))
    )
    if "first_orig" in rows.columns:
        rows = rows.with_columns(first_stream_id=o.take("stream_id", rows.get_column("first_orig")))
    if stream_ids is not None:
        rows = rows.filter(pl.col("stream_id").is_in(list(stream_ids)))
    out = rows.with_columns(message=message(p).cast(pl.String), event_type=pl.col("event_type").cast(pl.String))
    out = out.sort("stream_id").select(FAILURE_SCHEMA.names)
    return out.to_arrow().cast(FAILURE_SCHEMA)


# what a failed save of the rule keys raises; the re-grade goes on without them
KEYS_NOT_SAVED: Final = (OSError, pl.exceptions.PolarsError, pa.ArrowException)


def whole_journal_frame(journal: Journal) -> Frame | None:
    """Every built-in's frame over the whole journal from its saved keys (``rule_keys``); when
    they are stale, read from the journal and saved for the next re-grade. None: a journal that
    keeps no keys (remote)."""
    from toolkit.analysis import rule_keys  # it builds on this module

    if rule_keys.keys_root(journal) is None:
        return None
    # one Delta version read, saved and stamped: a commit after the read makes the keys stale
    # (an unpinned journal stamped the version of after the commit on the events of before it)
    journal = journal if journal.pinned_version is not None else journal.pinned()
    frame = rule_keys.load_saved(journal)
    if frame is None:
        frame = load_frame(journal, list(BUILTIN_COLUMNS))
        try:
            rule_keys.save_frame(journal, frame)
        except KEYS_NOT_SAVED:  # a journal this user may not write to, a full disk: the next re-grade reads again
            pass
    return frame


def journal_events(journal: Journal) -> int:
    """Events in the journal, from the table's file statistics (nothing read)."""
    return sum(f.rows for f in journal.files())


def shard_plan(journal: Journal, stream_ids: Sequence[str] | None, budget: int) -> list[tuple[str, str, list[str]]] | None:
    """Shards of whole streams of about ``budget`` events each, or None when the journal fits at once."""
    events = journal_events(journal)
    if events <= budget:
        return None
    every = sorted(journal.heads()) if stream_ids is None else sorted(stream_ids)
    return stream_shards(every, math.ceil(events / budget))


def grade_streams(
    journal: Journal,
    rules: Sequence[Rule],
    bound: Mapping[str, Mapping[str, Any]],
    stream_ids: Sequence[str] | None = None,
    stream_range: tuple[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
    *,
    read_all: bool = False,
) -> list[tuple[pa.Table | None, str | None]]:
    """(failures, error) of each built-in over one read of the given streams (None: the journal).

    ``read_all``: read the whole journal (rules that look across streams) but report only the
    given streams.

    The unit of work of both engines: ``shared_failures`` calls it once, or once per shard of
    whole streams; the Dask runner calls it per shard on its workers (``distributed.grade_shard``).
    """
    names = [r.name for r in rules]
    if progress:
        progress("read")
    whole = SAVED_KEYS and stream_range is None and (stream_ids is None or read_all)
    frame = whole_journal_frame(journal) if whole else None
    if frame is None:
        frame = load_frame(journal, names, None if read_all else stream_ids, stream_range)

    def judge(rule: Rule) -> tuple[pa.Table | None, str | None]:
        try:
            return frame_failures(frame, rule.name, bound[rule.name], stream_ids), None
        except Exception as e:  # a rule that raises is a finding, not a crash
            return None, f"{type(e).__name__}: {e}"

    # the rules run in threads (Polars releases the GIL; many of its steps use one core), the
    # costliest first; the outcomes come back in the rules' order
    costliest_first = sorted(rules, key=lambda r: RULE_COST.get(r.name, 0), reverse=True)
    pool = ThreadPoolExecutor(max(1, min(RULE_THREADS, len(rules))), "journal-rule")
    out: list[tuple[pa.Table | None, str | None]] = []
    try:
        futures = {r.name: pool.submit(judge, r) for r in costliest_first}
        for rule in rules:
            if progress:
                progress(rule.name)
            out.append(futures[rule.name].result())
    except BaseException:  # Ctrl-C: the rules not started yet are dropped, not waited for
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    frame.o.close()
    return out


def shared_failures(
    journal: Journal,
    rules: Sequence[Rule],
    bound: Mapping[str, Mapping[str, Any]],
    stream_ids: Sequence[str] | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    budget: int | None = None,
) -> list[tuple[pa.Table | None, str | None]]:
    """(failures, error) of each built-in rule, all judged over one shared read of the journal.

    ``stream_ids`` (None: every stream) are the streams graded; rules that look across streams
    (``CROSS_STREAM``) still see the whole journal, as their SQL does. A journal of more than
    ``budget`` events (default ``SHARD_EVENTS``) is judged in shards of whole streams, one at a
    time, so memory stays bounded; rules that look across streams cannot be sharded (see
    ``shardable``).
    """
    names = [r.name for r in rules]
    cross = bool(CROSS_STREAM & set(names))
    plan = None if cross else shard_plan(journal, stream_ids, budget or SHARD_EVENTS)
    if plan is None:
        return grade_streams(journal, rules, bound, stream_ids, progress=progress, read_all=cross)
    parts = [
        grade_streams(journal, rules, bound, chunk, (first, last), progress=progress if i == 0 else None)
        for i, (first, last, chunk) in enumerate(plan)
    ]
    return [merge_outcomes([part[i] for part in parts]) for i in range(len(rules))]


def merge_outcomes(outcomes: Sequence[tuple[pa.Table | None, str | None]]) -> tuple[pa.Table | None, str | None]:
    """One rule's outcomes over several shards: the first error, or the failures of all, by stream."""
    errors = [e for _, e in outcomes if e is not None]
    if errors:
        return None, errors[0]
    tables = [t for t, _ in outcomes if t is not None]
    if not tables:
        return FAILURE_SCHEMA.empty_table(), None
    return pa.concat_tables(tables).sort_by("stream_id"), None


def shardable(rule: Rule, events: int, budget: int | None = None) -> bool:
    """Whether the shared pass judges ``rule`` in a journal of ``events``: a built-in, and when the
    journal is over the memory budget only the per-stream ones (the journal-wide ones then run as
    SQL, which DuckDB spills to disk)."""
    if not is_builtin(rule):
        return False
    return rule.name not in CROSS_STREAM or events <= (budget or SHARD_EVENTS)


__all__ = [
    "BUILTIN_COLUMNS",
    "CROSS_STREAM",
    "SHARD_EVENTS",
    "Frame",
    "frame_failures",
    "frame_verdicts",
    "grade_streams",
    "is_builtin",
    "journal_events",
    "load_frame",
    "merge_outcomes",
    "shard_plan",
    "shardable",
    "shared_failures",
]
