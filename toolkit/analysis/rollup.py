"""Cost and token rollups over the journal: catalog queries in ``queries/rollups/`` and ``queries/costs/``.

``rollup(journal, by=("model", "day"))`` groups events by any of the dimensions in ``DIMENSIONS``
and returns runs, events, LLM and tool calls, errors, tokens, cost (recorded, or repriced from a
price table), cost-per-run percentiles and cost per successful run. The metrics of the agent
frameworks the journal imports each have their own query: ``tool_usage``, ``goal_completion``,
``tick_duration``, ``error_frequency``, ``agent_token_spend``; ``top_runs`` lists the costliest runs.

Every function returns a ``pyarrow.Table``; money is ``decimal128(38, 9)`` (sums of the events'
``decimal128(18, 9)`` ``cost_usd``, which pass 1e9 USD in a large fleet).

>>> from toolkit.journal import Journal
>>> j = Journal.in_memory()
>>> _ = j.append("r", [{"event_type": "llm_response", "data": {}, "model": "gpt-4o-mini",
...     "tokens_in": 1000, "tokens_out": 100, "occurred_at": "2026-11-02T10:00:00Z"}])
>>> t = rollup(j, by=["model"], cost="repriced")
>>> t.column_names[:2], t.column("cost_usd").to_pylist()
(['model', 'runs'], [Decimal('0.000210000')])
>>> j.close()
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from toolkit.analysis.pricing import CostBasis, PriceTable, run_cost_query
from toolkit.errors import QueryError
from toolkit.journal.store import Journal

# --by name -> output column of queries/rollups/usage.sql
DIMENSIONS: Final[dict[str, str]] = {
    "model": "model",
    "tool": "tool",
    "stream": "stream_id",
    "stream_type": "stream_type",
    "day": "day",
    "week": "week",
    "correlation": "correlation_id",
    "agent": "agent",
}
_DIMENSION_COLUMNS: Final = frozenset(DIMENSIONS.values())

# name -> catalog query, for the metrics that are not a grouping of usage
METRICS: Final[dict[str, str]] = {
    "usage": "rollups/usage",
    "totals": "rollups/totals",
    "top-runs": "costs/top_runs",
    "tools": "rollups/tool_usage",
    "goals": "rollups/goal_completion",
    "ticks": "rollups/tick_duration",
    "errors": "rollups/error_frequency",
    "agents": "rollups/agent_token_spend",
}

Prices = PriceTable | str | Path | Sequence[str | Path] | None
Time = dt.datetime | dt.date | str | None


def parse_dimensions(by: str | Sequence[str]) -> list[str]:
    """``"model,day"`` or ``["model", "day"]`` → ``["model", "day"]``, checked against ``DIMENSIONS``.

    >>> parse_dimensions(["model,day", "agent"])
    ['model', 'day', 'agent']
    """
    items = [by] if isinstance(by, str) else list(by)
    out: list[str] = []
    for item in items:
        for name in (s.strip() for s in item.split(",")):
            if not name:
                continue
            if name not in DIMENSIONS:
                raise QueryError(
                    f"cannot group by {name!r}", hint=f"--by takes {', '.join(DIMENSIONS)} (several: --by model,day)"
                )
            if name not in out:
                out.append(name)
    if not out:
        raise QueryError("no dimension to group by", hint=f"--by takes {', '.join(DIMENSIONS)}")
    return out


def _time(value: Time) -> Any:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return value


def run_metric(
    journal: Journal,
    query: str,
    params: dict[str, Any],
    *,
    cost: CostBasis = "recorded",
    prices: Prices = None,
    as_of: Time = None,
) -> pa.Table:
    """Run a catalog query in a cost session (``cost_events`` on the ``cost`` basis)."""
    return run_cost_query(journal, query, params, prices=prices, as_of=as_of, cost=cost)


def keep_dimensions(table: pa.Table, dims: Sequence[str]) -> pa.Table:
    """``table`` with only the asked dimension columns (in the asked order) and every measure."""
    keep = [DIMENSIONS[d] for d in dims] + [c for c in table.column_names if c not in _DIMENSION_COLUMNS]
    return table.select(keep)


def _grouped(
    journal: Journal,
    metric: str,
    by: str | Sequence[str],
    since: Time,
    until: Time,
    cost: CostBasis,
    prices: Prices,
    as_of: Time,
) -> pa.Table:
    """``metric`` grouped by ``by``, keeping only the asked dimension columns."""
    dims = parse_dimensions(by)
    table = run_metric(
        journal,
        METRICS[metric],
        {"by": dims, "since": _time(since), "until": _time(until)},
        cost=cost,
        prices=prices,
        as_of=as_of,
    )
    return keep_dimensions(table, dims)


def rollup(
    journal: Journal,
    by: str | Sequence[str] = ("model",),
    *,
    since: Time = None,
    until: Time = None,
    cost: CostBasis = "recorded",
    prices: Prices = None,
    as_of: Time = None,
) -> pa.Table:
    """Usage and cost grouped by ``by`` (``queries/rollups/usage.sql``); only the asked dimensions are kept.

    ``since`` is inclusive and ``until`` exclusive (times or dates, UTC). ``cost="repriced"`` prices
    every event from ``prices`` (default: the shipped table) at its own time, or at ``as_of``.
    """
    return _grouped(journal, "usage", by, since, until, cost, prices, as_of)


def rollup_totals(
    journal: Journal,
    by: str | Sequence[str] = ("model",),
    *,
    since: Time = None,
    until: Time = None,
    cost: CostBasis = "recorded",
    prices: Prices = None,
    as_of: Time = None,
) -> pa.Table:
    """The one-pass part of ``rollup`` (``queries/rollups/totals.sql``): events, calls, errors, tokens
    and cost per group, without the per-run figures (runs, percentiles, outcomes) — the fast path."""
    return _grouped(journal, "totals", by, since, until, cost, prices, as_of)


def rollup_cost(journal: Journal, **kwargs: Any) -> pa.Table:
    """Cost by model and day (the headline rollup): ``rollup(journal, by=("model", "day"), ...)``."""
    return rollup(journal, ("model", "day"), **kwargs)


def top_runs(
    journal: Journal,
    n: int = 5,
    *,
    since: Time = None,
    until: Time = None,
    cost: CostBasis = "recorded",
    prices: Prices = None,
    as_of: Time = None,
) -> pa.Table:
    """The ``n`` costliest runs (streams) with agent, models, tokens, errors and outcome."""
    if n < 1:
        raise QueryError(f"top-N needs N >= 1, got {n}", hint="e.g. --limit 5")
    return run_metric(
        journal,
        METRICS["top-runs"],
        {"since": _time(since), "until": _time(until), "limit": n},
        cost=cost,
        prices=prices,
        as_of=as_of,
    )


def tool_usage(journal: Journal, *, since: Time = None, until: Time = None) -> pa.Table:
    """Tool usage patterns per tool (``queries/rollups/tool_usage.sql``)."""
    return run_metric(journal, METRICS["tools"], {"since": _time(since), "until": _time(until)})


def goal_completion(journal: Journal, *, since: Time = None, until: Time = None) -> pa.Table:
    """Goal completion rate per agent (``queries/rollups/goal_completion.sql``)."""
    return run_metric(journal, METRICS["goals"], {"since": _time(since), "until": _time(until)})


def tick_duration(journal: Journal, *, since: Time = None, until: Time = None) -> pa.Table:
    """Average tick duration per agent (``queries/rollups/tick_duration.sql``)."""
    return run_metric(journal, METRICS["ticks"], {"since": _time(since), "until": _time(until)})


def error_frequency(journal: Journal, *, since: Time = None, until: Time = None) -> pa.Table:
    """Errors per day and agent (``queries/rollups/error_frequency.sql``)."""
    return run_metric(journal, METRICS["errors"], {"since": _time(since), "until": _time(until)})


def agent_token_spend(
    journal: Journal,
    *,
    since: Time = None,
    until: Time = None,
    cost: CostBasis = "recorded",
    prices: Prices = None,
    as_of: Time = None,
) -> pa.Table:
    """Tokens and cost per agent (``queries/rollups/agent_token_spend.sql``)."""
    return run_metric(
        journal,
        METRICS["agents"],
        {"since": _time(since), "until": _time(until)},
        cost=cost,
        prices=prices,
        as_of=as_of,
    )


def rollup_metric(
    journal: Journal,
    metric: str,
    *,
    by: str | Sequence[str] = ("model",),
    since: Time = None,
    until: Time = None,
    cost: CostBasis = "recorded",
    prices: Prices = None,
    as_of: Time = None,
    limit: int = 5,
) -> tuple[pa.Table, str | None]:
    """``journal rollup METRIC``: the table and a note on events without a cost (or None)."""
    if metric not in METRICS:
        raise QueryError(f"no rollup {metric!r}", hint=f"one of: {', '.join(METRICS)}")
    if metric == "usage":
        table = rollup(journal, by, since=since, until=until, cost=cost, prices=prices, as_of=as_of)
    elif metric == "totals":
        table = rollup_totals(journal, by, since=since, until=until, cost=cost, prices=prices, as_of=as_of)
    elif metric == "top-runs":
        table = top_runs(journal, limit, since=since, until=until, cost=cost, prices=prices, as_of=as_of)
    else:
        table = run_metric(
            journal,
            METRICS[metric],
            {"since": _time(since), "until": _time(until)},
            cost=cost,
            prices=prices,
            as_of=as_of,
        )
    return table, unpriced_note(table, cost)


def unpriced_note(table: pa.Table, cost: CostBasis) -> str | None:
    """The stderr note on a rollup's events without a cost (``unpriced_events``), or None if there are none."""
    if "unpriced_events" not in table.column_names:
        return None
    n = sum(v or 0 for v in table.column("unpriced_events").to_pylist())
    if not n:
        return None
    if cost == "repriced":
        return f"note: {n} events with tokens have no price and count as 0 here; list them with: journal reprice --unpriced"
    return f"note: {n} events with tokens have no recorded cost; try --cost repriced"
