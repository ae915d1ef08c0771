"""Reprice every event from an effective-dated price table, without rewriting the journal.

A price table is a CSV file (the default is ``data/prices/prices.csv``, its sources in
``data/prices/SOURCES.md``) with one row per model pattern and effective range::

    model,match,provider,effective_from,effective_to,input_usd_per_mtok,output_usd_per_mtok,
    cache_read_usd_per_mtok,cache_write_usd_per_mtok,reasoning_usd_per_mtok,prompt_tokens_above,
    source,source_date

Token semantics are the journal's (OTel GenAI): cache reads and writes are part of ``tokens_in``,
reasoning tokens part of ``tokens_out``, so an event costs::

    (tokens_in - cache_read - cache_write) x input + cache_read x cache_read_rate
      + cache_write x cache_write_rate + (tokens_out - reasoning) x output + reasoning x reasoning_rate

(per million tokens; an empty cache rate bills at the input rate, an empty reasoning rate at the
output rate). A model is priced by one pattern: an exact row beats a regex row, regex rows are
tried in file order; that pattern's rows must not overlap in time (per tier). A tier row
(``prompt_tokens_above = N``) applies to events whose ``tokens_in`` is above N.

Repricing is one DuckDB join of the events to the price segments on model and effective range
(``queries/costs/priced_events.sql``), exposed in a session as the view ``priced_events``. The
session also has ``prices`` (the rows as given, with ``file`` and ``line``) and ``cost_events``:
every event with ``cost_usd`` on the chosen basis (``recorded`` or ``repriced``), which the
rollups in ``queries/rollups/`` read.

>>> t = load_prices()
>>> t.rows.num_rows > 20, t.rows.column("match").unique().to_pylist() == ["exact", "regex"]
(True, True)
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, Literal

import pyarrow as pa

from toolkit.engines import duckdb_engine
from toolkit.engines.queries import get_query
from toolkit.errors import InvalidPathError, PriceTableError, QueryError
from toolkit.journal.prepare import parse_time
from toolkit.journal.schema import TIMESTAMP
from toolkit.journal.store import Journal

CostBasis = Literal["recorded", "repriced"]
COST_BASES: Final = ("recorded", "repriced")

RATE = pa.decimal128(18, 6)  # USD per 1M tokens, up to 6 decimals
RATE_COLUMNS: Final = (
    "input_usd_per_mtok",
    "output_usd_per_mtok",
    "cache_read_usd_per_mtok",
    "cache_write_usd_per_mtok",
    "reasoning_usd_per_mtok",
)
REQUIRED_RATES: Final = ("input_usd_per_mtok", "output_usd_per_mtok")
CSV_COLUMNS: Final = (
    "model",
    "match",
    "provider",
    "effective_from",
    "effective_to",
    *RATE_COLUMNS,
    "prompt_tokens_above",
    "source",
    "source_date",
)
REQUIRED_TEXT: Final = ("model", "match", "provider", "effective_from", "source", "source_date")

PRICES_SCHEMA: Final = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("match", pa.string(), nullable=False),
        pa.field("provider", pa.string(), nullable=False),
        pa.field("effective_from", TIMESTAMP, nullable=False),
        pa.field("effective_to", TIMESTAMP),
        *(pa.field(c, RATE, nullable=c not in REQUIRED_RATES) for c in RATE_COLUMNS),
        pa.field("prompt_tokens_above", pa.int64()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_date", pa.date32(), nullable=False),
        pa.field("file", pa.string(), nullable=False),
        pa.field("line", pa.int64(), nullable=False),
    ]
)

# one row per (pattern, elementary time range, tokens_in range): at most one matches an event
SEGMENTS_SCHEMA: Final = pa.schema(
    [
        pa.field("pattern", pa.string(), nullable=False),
        pa.field("match", pa.string(), nullable=False),
        pa.field("rule_order", pa.int64(), nullable=False),
        pa.field("provider", pa.string(), nullable=False),
        pa.field("valid_from", TIMESTAMP, nullable=False),
        pa.field("valid_to", TIMESTAMP),
        pa.field("tokens_above", pa.int64(), nullable=False),
        pa.field("tokens_upto", pa.int64()),
        pa.field("input_rate", RATE, nullable=False),
        pa.field("output_rate", RATE, nullable=False),
        pa.field("cache_read_rate", RATE, nullable=False),
        pa.field("cache_write_rate", RATE, nullable=False),
        pa.field("reasoning_rate", RATE, nullable=False),
        pa.field("price_row", pa.string(), nullable=False),
    ]
)

_MAX_FILE_BYTES = 10_000_000
_SIX_PLACES = Decimal("0.000001")


def default_prices_path() -> Path:
    """``data/prices/prices.csv`` of a source checkout, or the copy shipped inside the package."""
    here = Path(__file__).resolve().parents[2] / "data" / "prices" / "prices.csv"
    return here if here.is_file() else Path(__file__).resolve().parents[1] / "data" / "prices" / "prices.csv"


@dataclass(frozen=True)
class PriceTable:
    """A validated price table: its rows as given and the non-overlapping segments the join uses."""

    rows: pa.Table
    segments: pa.Table
    files: tuple[str, ...]


def load_prices(paths: str | Path | Sequence[str | Path] | None = None) -> PriceTable:
    """Read and validate price files (``None`` or ``"default"``: the shipped table), in order.

    Several files are one table: a row of a later file for a pattern and time already priced is
    an overlap, not an override.
    """
    if paths is None or isinstance(paths, str | Path):
        paths = [paths or "default"]
    rows: list[dict[str, Any]] = []
    files = []
    for p in paths:
        path = default_prices_path() if str(p) == "default" else Path(p)
        files.append(str(path))
        rows += _read_csv(path)
    if not rows:
        raise PriceTableError(f"no price rows in {', '.join(files)}", hint="give at least one model's prices")
    table = pa.Table.from_pylist(rows, schema=PRICES_SCHEMA)
    return PriceTable(table, _segments(rows), tuple(files))


def _where(row: dict[str, Any]) -> str:
    return f"{row['file']}:{row['line']}"


def _read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InvalidPathError(f"{path}: no such price file", hint="pass --prices FILE (a CSV like data/prices/prices.csv)")
    if path.stat().st_size > _MAX_FILE_BYTES:
        raise InvalidPathError(f"{path}: larger than 10 MB; not a price table")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's UTF-8 CSV starts with a BOM
    except UnicodeDecodeError as e:
        line = e.object.count(b"\n", 0, e.start) + 1  # e.object: the bytes after a BOM
        raise PriceTableError.rows(
            f"not UTF-8 text (byte {e.object[e.start]:#04x})",
            [f"{path}:{line}"],
            hint="save the price table as UTF-8 (CSV UTF-8)",
        ) from None
    lines = text.splitlines()
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        return []
    header_line, header_text = numbered[0]
    header = [h.strip() for h in next(csv.reader([header_text]))]
    missing = [c for c in CSV_COLUMNS if c not in header]
    unknown = [c for c in header if c not in CSV_COLUMNS]
    twice = sorted({c for c in header if header.count(c) > 1})  # the later one would silently win
    if missing or unknown or twice:
        raise PriceTableError.rows(
            f"header lacks {missing}" if missing else f"unknown columns {unknown}" if unknown else f"columns named twice {twice}",
            [f"{path}:{header_line}"],
            hint="the header is: " + ",".join(CSV_COLUMNS),
        )
    out = []
    for lineno, text in numbered[1:]:
        values = next(csv.reader([text]))
        where = f"{path}:{lineno}"
        if len(values) != len(header):
            raise PriceTableError.rows(f"expected {len(header)} fields, got {len(values)}", [where])
        raw = {k: v.strip() for k, v in zip(header, values, strict=True)}
        out.append(_parse_row(raw, str(path), lineno))
    return out


def _parse_row(raw: dict[str, str], file: str, line: int) -> dict[str, Any]:
    where = [f"{file}:{line}"]
    for name in REQUIRED_TEXT:
        if not raw[name]:
            raise PriceTableError.rows(f"missing required {name}", where)
    for name in REQUIRED_RATES:
        if not raw[name]:
            raise PriceTableError.rows(f"missing required price {name}", where)
    if raw["match"] not in ("exact", "regex"):
        raise PriceTableError.rows(f"match must be exact or regex, got {raw['match']!r}", where)
    if raw["match"] == "regex":  # matched by DuckDB (RE2): no look-arounds, no back-references
        problem = duckdb_engine.regex_problem(raw["model"])
        if problem is not None:
            raise PriceTableError.rows(f"model pattern {raw['model']!r} is not a regex RE2 reads ({problem})", where)
    row: dict[str, Any] = {"model": raw["model"], "match": raw["match"], "provider": raw["provider"]}
    row["effective_from"] = _time(raw["effective_from"], "effective_from", where)
    row["effective_to"] = _time(raw["effective_to"], "effective_to", where) if raw["effective_to"] else None
    if row["effective_to"] is not None and row["effective_to"] <= row["effective_from"]:
        raise PriceTableError.rows("effective_to is not after effective_from", where)
    for name in RATE_COLUMNS:
        row[name] = _rate(raw[name], name, where) if raw[name] else None
    above = raw["prompt_tokens_above"]
    if above:
        if not re.fullmatch(r"\d+", above) or int(above) == 0:
            raise PriceTableError.rows(f"prompt_tokens_above must be a positive integer, got {above!r}", where)
        row["prompt_tokens_above"] = int(above)
    else:
        row["prompt_tokens_above"] = None
    try:
        row["source_date"] = dt.date.fromisoformat(raw["source_date"])
    except ValueError:
        raise PriceTableError.rows(f"source_date is not a date ({raw['source_date']!r})", where) from None
    row.update(source=raw["source"], file=file, line=line)
    return row


def _time(text: str, name: str, where: list[str]) -> dt.datetime:
    if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
        text += "T00:00:00Z"
    try:
        return parse_time(text, name, 0)
    except ValueError:
        raise PriceTableError.rows(f"{name} is not a date or an ISO time with offset ({text!r})", where) from None


def _rate(text: str, name: str, where: list[str]) -> Decimal:
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise PriceTableError.rows(f"{name} is not a number ({text!r})", where) from None
    if not d.is_finite() or d < 0 or d >= Decimal(10) ** 12:
        raise PriceTableError.rows(f"{name} must be a non-negative number, got {text!r}", where)
    if d != d.quantize(_SIX_PLACES):
        raise PriceTableError.rows(f"{name} has more than 6 decimals ({text!r})", where)
    return d


_FAR: Final = dt.datetime.max.replace(tzinfo=dt.UTC)


def _overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a["effective_from"] < (b["effective_to"] or _FAR) and b["effective_from"] < (a["effective_to"] or _FAR))


def _segments(rows: list[dict[str, Any]]) -> pa.Table:
    """Check overlaps and tiers per pattern; cut time and tokens_in into ranges with one rate each."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["match"]), []).append(r)
    out = []
    for order, ((pattern, match), group) in enumerate(groups.items()):
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if a["prompt_tokens_above"] == b["prompt_tokens_above"] and _overlaps(a, b):
                    raise PriceTableError.rows(
                        f"effective ranges overlap for {match} model {pattern!r}"
                        + (f" (tier above {a['prompt_tokens_above']} tokens)" if a["prompt_tokens_above"] else ""),
                        [_where(a), _where(b)],
                        hint="end the older row (effective_to) where the newer one starts",
                    )
        bases = [r for r in group if r["prompt_tokens_above"] is None]
        for tier in (r for r in group if r["prompt_tokens_above"] is not None):
            if not _covered(tier, bases):
                raise PriceTableError.rows(
                    f"missing required base price: the tier above {tier['prompt_tokens_above']} tokens of "
                    f"{pattern!r} has no base row (empty prompt_tokens_above) for its whole effective range",
                    [_where(tier)],
                    hint="add a base row for the same model and range",
                )
        bounds = sorted({r["effective_from"] for r in group} | {r["effective_to"] for r in group if r["effective_to"]})
        edges: list[tuple[dt.datetime, dt.datetime | None]] = [
            (lo, bounds[i + 1] if i + 1 < len(bounds) else None) for i, lo in enumerate(bounds)
        ]
        for lo, hi in edges:
            active = [r for r in group if r["effective_from"] <= lo and (r["effective_to"] is None or lo < r["effective_to"])]
            tiers = sorted(active, key=lambda r: r["prompt_tokens_above"] or -1)
            for k, r in enumerate(tiers):
                upto = tiers[k + 1]["prompt_tokens_above"] if k + 1 < len(tiers) else None
                inp, outp = r["input_usd_per_mtok"], r["output_usd_per_mtok"]
                out.append(
                    {
                        "pattern": pattern,
                        "match": match,
                        "rule_order": order,
                        "provider": r["provider"],
                        "valid_from": lo,
                        "valid_to": hi,
                        "tokens_above": r["prompt_tokens_above"] if r["prompt_tokens_above"] is not None else -1,
                        "tokens_upto": upto,
                        "input_rate": inp,
                        "output_rate": outp,
                        "cache_read_rate": r["cache_read_usd_per_mtok"] if r["cache_read_usd_per_mtok"] is not None else inp,
                        "cache_write_rate": r["cache_write_usd_per_mtok"] if r["cache_write_usd_per_mtok"] is not None else inp,
                        "reasoning_rate": r["reasoning_usd_per_mtok"] if r["reasoning_usd_per_mtok"] is not None else outp,
                        "price_row": _where(r),
                    }
                )
    return pa.Table.from_pylist(out, schema=SEGMENTS_SCHEMA)


def _covered(tier: dict[str, Any], bases: list[dict[str, Any]]) -> bool:
    """Do the base rows cover the tier's whole effective range (they do not overlap each other)?"""
    t: dt.datetime = tier["effective_from"]
    end: dt.datetime = tier["effective_to"] or _FAR
    for b in sorted(bases, key=lambda b: b["effective_from"]):
        if b["effective_from"] <= t < (b["effective_to"] or _FAR):
            t = b["effective_to"] or _FAR
        if t >= end:
            return True
    return t >= end


# ---------------------------------------------------------------------------- sessions


def cost_session(
    journal: Journal,
    *,
    prices: PriceTable | str | Path | Sequence[str | Path] | None = None,
    as_of: dt.date | dt.datetime | str | None = None,
    cost: CostBasis = "recorded",
    stream_range: tuple[str, str] | None = None,
) -> duckdb_engine.Session:
    """A sandboxed SQL session with the views ``prices``, ``price_segments``, ``priced_events`` and
    ``cost_events`` (``cost_usd`` on the ``cost`` basis) besides the journal's own.

    ``as_of`` prices every event at the rates in force at that date instead of at its own time.
    """
    if cost not in COST_BASES:
        raise QueryError(f"cost basis {cost!r} is not one of {', '.join(COST_BASES)}", hint="--cost recorded|repriced")
    table = prices if isinstance(prices, PriceTable) else load_prices(prices)
    as_of_time = _as_of(as_of)
    session = duckdb_engine.connect(journal, stream_range=stream_range)  # a shard of a dask run
    try:
        con = session.con
        con.from_arrow(table.rows).create_view("prices")
        con.from_arrow(table.segments).create_view("price_segments")
        priced = get_query("costs/priced_events")
        con.sql(priced.sql, params=priced.bind({"as_of": as_of_time})).create_view("priced_events")
        basis = get_query("costs/repriced_events" if cost == "repriced" else "costs/recorded_events")
        con.sql(basis.sql).create_view("cost_events")
    except Exception:
        session.close()
        raise
    return session


def _as_of(value: dt.date | dt.datetime | str | None) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise QueryError(f"as_of {value!r} has no time zone", hint="give a date (2026-11-01) or a UTC time")
        return value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
        text += "T00:00:00Z"
    try:
        return parse_time(text, "as_of", 0)
    except ValueError as e:
        raise QueryError(f"--as-of {value!r} is not a date or an ISO time", hint="e.g. --as-of 2026-11-01") from e


def run_cost_query(
    journal: Journal,
    query: str,
    params: dict[str, Any],
    *,
    prices: PriceTable | str | Path | Sequence[str | Path] | None = None,
    as_of: dt.date | dt.datetime | str | None = None,
    cost: CostBasis = "recorded",
) -> pa.Table:
    """Run a catalog query in a cost session (``cost_events`` on the ``cost`` basis)."""
    q = get_query(query)
    session = cost_session(journal, prices=prices, as_of=as_of, cost=cost)
    try:
        return session.query(q.sql, q.bind(params))
    finally:
        session.close()


def reprice_diff(
    journal: Journal,
    prices: PriceTable | str | Path | Sequence[str | Path] | None = None,
    as_of: dt.date | dt.datetime | str | None = None,
    *,
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
) -> pa.Table:
    """Recorded vs repriced cost per day and model (``queries/costs/reprice_diff_by_model_day.sql``)."""
    return run_cost_query(
        journal,
        "costs/reprice_diff_by_model_day",
        {"since": since, "until": until},
        prices=prices,
        as_of=as_of,
    )


#: ``journal reprice --unpriced`` lists at most this many events (the note says when there are more)
UNPRICED_LISTED = 1_000_000


def unpriced_events(
    journal: Journal,
    prices: PriceTable | str | Path | Sequence[str | Path] | None = None,
    as_of: dt.date | dt.datetime | str | None = None,
    *,
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
    limit: int = 1_000_000,
) -> pa.Table:
    """Events with tokens that the price table cannot price, and why (``costs/unpriced_events.sql``),
    the first ``limit`` of them."""
    return run_cost_query(
        journal,
        "costs/unpriced_events",
        {"since": since, "until": until, "limit": limit},
        prices=prices,
        as_of=as_of,
    )


def priced_events(
    journal: Journal,
    prices: PriceTable | str | Path | Sequence[str | Path] | None = None,
    as_of: dt.date | dt.datetime | str | None = None,
    *,
    columns: Sequence[str] = (
        "event_id",
        "stream_id",
        "occurred_at",
        "model",
        "tokens_in",
        "tokens_out",
        "cost_usd",
        "repriced_cost_usd",
        "price_row",
        "unpriced_reason",
    ),
) -> pa.Table:
    """Per-event repriced cost (selected columns of the ``priced_events`` view), by position."""
    session = cost_session(journal, prices=prices, as_of=as_of)
    try:
        names = set(session.query("SELECT * FROM priced_events LIMIT 0").column_names)
        bad = [c for c in columns if c not in names]
        if bad:
            raise QueryError(f"priced_events has no column {bad[0]!r}", hint=f"columns: {', '.join(sorted(names))}")
        rel = session.con.table("priced_events").order("position").select(*columns)
        result: pa.Table = rel.to_arrow_table()
        return result
    finally:
        session.close()


def reprice_report(
    journal: Journal,
    prices: PriceTable | str | Path | Sequence[str | Path] | None = None,
    as_of: dt.date | dt.datetime | str | None = None,
    *,
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
    unpriced: bool = False,
) -> tuple[pa.Table, str]:
    """``journal reprice``: the diff (or the unpriced events) and a one-line summary of the totals."""
    table = load_prices(prices) if not isinstance(prices, PriceTable) else prices
    diff = reprice_diff(journal, table, as_of, since=since, until=until)
    recorded = sum((v for v in diff.column("recorded_cost_usd").to_pylist()), Decimal(0))
    repriced = sum((v for v in diff.column("repriced_cost_usd").to_pylist()), Decimal(0))
    n_unpriced = sum(diff.column("unpriced_events").to_pylist())
    n_events = sum(diff.column("billable_events").to_pylist())
    change = sum((v for v in diff.column("diff_usd").to_pylist()), Decimal(0))
    over = " over the priced events" if n_unpriced else ""
    note = (
        f"{n_events} events with tokens or cost: recorded {recorded:f} USD, repriced {repriced:f} USD "
        f"(diff {change:+f}{over}) with {', '.join(table.files)}"
        + (f" as of {_as_of(as_of):%Y-%m-%d}" if as_of is not None else "")
        + (
            f"; {n_unpriced} have no price (not counted): list them with journal reprice --unpriced"
            if n_unpriced and not unpriced
            else f"; {n_unpriced} have no price"
            if n_unpriced
            else "; every event with tokens has a price"
        )
    )
    if unpriced:
        listed = unpriced_events(journal, table, as_of, since=since, until=until, limit=UNPRICED_LISTED)
        if listed.num_rows < n_unpriced:
            note += f" (the first {listed.num_rows:,} listed: narrow it with --since/--until)"
        return listed, note
    return diff, note
