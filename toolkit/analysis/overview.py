"""The fleet overview: events, runs, tokens and cost over time, by model, tool and agent.

Every figure comes from a catalog query under ``queries/overview/`` run in one sandboxed
session with bound parameters, so each table is already aggregated (days × models at most):
small enough to chart however large the journal is. The overview notebook and
``journal report overview`` both call :func:`overview_tables`.

>>> from toolkit.journal import Journal
>>> j = Journal.in_memory()
>>> _ = j.append("r", [{"event_type": "llm_response", "data": {}, "model": "m", "cost_usd": "0.5",
...                    "occurred_at": "2026-01-02T10:00:00Z"}])
>>> o = overview_tables(j)
>>> o.totals["events"], o.totals["runs"], float(o.totals["cost_usd"])
(1, 1, 0.5)
>>> o.by_day.column("day").to_pylist()
[datetime.date(2026, 1, 2)]
>>> j.close()
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from toolkit.engines import duckdb_engine
from toolkit.engines.queries import get_query
from toolkit.journal.store import Journal


@dataclass(frozen=True)
class OverviewFilter:
    """What the overview covers: a half-open time range ``[since, until)`` and optionally one agent."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    agent: str | None = None

    def params(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until, "agent": self.agent}


@dataclass(frozen=True)
class Overview:
    """The overview's tables (one per catalog query) and the headline figures."""

    filter: OverviewFilter
    totals: dict[str, Any]
    by_day: pa.Table
    cost_by_model_day: pa.Table
    by_model: pa.Table
    by_tool: pa.Table
    by_agent: pa.Table
    latency_by_day: pa.Table
    costliest_runs: pa.Table
    top_errors: pa.Table


def run_catalog_queries(journal: Journal, names: dict[str, str], params: dict[str, Any]) -> dict[str, pa.Table]:
    """Run catalog queries in one session; each gets the subset of ``params`` it declares.

    ``names`` maps a result key to a catalog name (``overview/totals``). Values are bound,
    never formatted into the SQL.
    """
    session = duckdb_engine.connect(journal)
    try:
        out = {}
        for key, name in names.items():
            q = get_query(name)
            declared = {p.name for p in q.params}
            out[key] = session.query(q.sql, q.bind({k: v for k, v in params.items() if k in declared}))
        return out
    finally:
        session.close()


_QUERIES = {
    "totals": "overview/totals",
    "by_day": "overview/activity_by_day",
    "cost_by_model_day": "overview/cost_by_model_day",
    "by_model": "overview/usage_by_model",
    "by_tool": "overview/usage_by_tool",
    "by_agent": "overview/usage_by_agent",
    "latency_by_day": "overview/latency_by_day",
    "costliest_runs": "overview/costliest_runs",
    "top_errors": "overview/top_errors",
}


def overview_tables(
    journal: Journal,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    agent: str | None = None,
    top: int = 10,
) -> Overview:
    """All overview tables for ``[since, until)`` (and ``agent`` when given)."""
    flt = OverviewFilter(since, until, agent)
    tables = run_catalog_queries(journal, _QUERIES, {**flt.params(), "limit": top})
    totals = tables.pop("totals").to_pylist()[0]
    return Overview(filter=flt, totals=totals, **tables)


@dataclass(frozen=True)
class JournalSpan:
    """The first and last UTC day with events (None for an empty journal) and the agents seen."""

    first_day: dt.date | None
    last_day: dt.date | None
    agents: list[str]


def journal_span(journal: Journal) -> JournalSpan:
    """What the pickers of a notebook offer: the days with events and the agent names."""
    row = run_catalog_queries(journal, {"s": "overview/time_span"}, {})["s"].to_pylist()[0]
    return JournalSpan(row["first_day"], row["last_day"], list(row["agents"] or []))


def day_range(first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """``[first 00:00 UTC, the day after last 00:00 UTC)``: a range of whole UTC days as times.

    >>> day_range(dt.date(2026, 1, 1), dt.date(2026, 1, 2))[1].isoformat()
    '2026-01-03T00:00:00+00:00'
    """
    start = dt.datetime.combine(first, dt.time(), dt.UTC)
    return start, dt.datetime.combine(last, dt.time(), dt.UTC) + dt.timedelta(days=1)


def recorded_vs_repriced(
    journal: Journal, *, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> tuple[pa.Table, pa.Table]:
    """Recorded vs repriced cost (default price table) per model, and per day and model.

    Repricing is a dry run over all agents (``toolkit.analysis.pricing.reprice_diff``): nothing is
    rewritten. Events the price table cannot price are counted in ``unpriced_events``.
    """
    from decimal import Decimal

    from toolkit.analysis.pricing import reprice_diff

    by_day = reprice_diff(journal, since=since, until=until)
    totals: dict[str, dict[str, Any]] = {}
    for r in by_day.to_pylist():
        t = totals.setdefault(
            r["model"],
            {
                "model": r["model"],
                "recorded_cost_usd": Decimal(0),
                "repriced_cost_usd": Decimal(0),
                "diff_usd": Decimal(0),  # over the priced events only, as reprice_diff gives it
                "unpriced_events": 0,
            },
        )
        t["recorded_cost_usd"] += r["recorded_cost_usd"] or 0
        t["repriced_cost_usd"] += r["repriced_cost_usd"] or 0
        t["diff_usd"] += r["diff_usd"] or 0
        t["unpriced_events"] += r["unpriced_events"] or 0
    rows = sorted(totals.values(), key=lambda t: (-t["recorded_cost_usd"], t["model"]))
    cost = pa.decimal128(38, 9)  # sums: DECIMAL(18, 9) holds less than 1e9 USD
    schema = pa.schema(
        [
            ("model", pa.string()),
            ("recorded_cost_usd", cost),
            ("repriced_cost_usd", cost),
            ("diff_usd", cost),
            ("unpriced_events", pa.int64()),
        ]
    )
    return pa.Table.from_pylist([{k: t[k] for k in schema.names} for t in rows], schema=schema), by_day
