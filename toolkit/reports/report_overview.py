"""The overview report: the same tables and charts as ``notebooks/overview.py``, as static HTML."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa

from toolkit.analysis.overview import Overview, overview_tables, recorded_vs_repriced
from toolkit.journal.store import Journal
from toolkit.reports import charts
from toolkit.reports.html import Block, ChartBlock, Figures, Report, Section, TableBlock, Text


def headline_figures(o: Overview) -> dict[str, str]:
    """The overview's cards: label → formatted value."""
    t = o.totals
    span = f"{t['first_at']:%Y-%m-%d} → {t['last_at']:%Y-%m-%d}" if t["first_at"] is not None else "no events"
    return {
        "events": f"{t['events']:,}",
        "runs": f"{t['runs']:,}",
        "agents": f"{t['agents']:,}",
        "models": f"{t['models']:,}",
        "LLM calls": f"{t['llm_calls']:,}",
        "tool calls": f"{t['tool_calls']:,}",
        "errors": f"{t['errors']:,} ({t['error_rate']:.1%})",
        "tokens in / out": f"{t['tokens_in']:,} / {t['tokens_out']:,}",
        "recorded cost": f"${Decimal(t['cost_usd']):,.4f}",
        "time span (UTC)": span,
    }


def _ranked(
    section: str, chart: str, table_title: str, table: pa.Table, key: str, value: str, title: str, **style: Any
) -> Section:
    """A ranked bar chart of ``value`` by ``key`` and the table under it (or a no-data note)."""
    if table.num_rows == 0:
        return Section(section, [Text("No events in this range.")])
    return Section(section, [ChartBlock(chart, charts.ranked_bars(table, key, value, title, **style)), TableBlock(table_title, table)])


def overview_sections(o: Overview, repricing: list[Block] | None = None) -> list[Section]:
    """The report's sections; ``repricing`` is the recorded-vs-repriced part when pricing is available."""
    no_data = [Text("No events in this range.")]
    empty = o.totals["events"] == 0
    sections = [
        Section("Headline figures", [Figures(headline_figures(o))]),
        Section(
            "Over time",
            no_data
            if empty
            else [
                ChartBlock("events_per_day", charts.daily_bars(o.by_day, "events", "Events per day")),
                ChartBlock("runs_per_day", charts.daily_bars(o.by_day, "runs", "Runs active per day")),
                ChartBlock(
                    "tokens_per_day",
                    charts.folded_daily(
                        o.by_day, ["tokens_in", "tokens_out"], "Tokens per day", y_title="tokens", series="direction"
                    ),
                ),
                ChartBlock(
                    "cost_by_model_per_day",
                    charts.stacked_daily(
                        o.cost_by_model_day, "cost_usd", "model", "Recorded cost per day by model", y_title="USD"
                    ),
                ),
                ChartBlock(
                    "error_rate_per_day",
                    charts.daily_line(o.by_day, "error_rate", "Error rate per day (errors / events)"),
                ),
                TableBlock("Per day", o.by_day),
            ],
            intro="Days are UTC. Cost is as recorded by the source.",
        ),
        Section(
            "Latency",
            no_data
            if empty
            else [
                ChartBlock("latency_per_day", charts.latency_lines(o.latency_by_day)),
                TableBlock("Latency per day (ms)", o.latency_by_day),
            ],
            intro="Percentiles of duration_ms: LLM calls (events with a model) and tool calls (events with a tool).",
        ),
        _ranked("By model", "cost_by_model", "Models", o.by_model, "model", "cost_usd", "Recorded cost by model",
                x_title="USD", extra_tooltip=["llm_calls", "tokens_in", "tokens_out"]),
        _ranked("By tool", "calls_by_tool", "Tools", o.by_tool, "tool_name", "calls", "Tool calls (colour: failure rate)",
                x_title="calls", fmt=",d", color="failure_rate", extra_tooltip=["failures", "p95_ms"]),
        _ranked("By agent", "cost_by_agent", "Agents", o.by_agent, "agent", "cost_usd", "Recorded cost by agent",
                x_title="USD", extra_tooltip=["runs", "cost_per_run_usd", "errors"]),
        _ranked("Costliest runs", "costliest_runs", "Costliest runs", o.costliest_runs, "stream_id", "cost_usd",
                "Costliest runs", x_title="USD", extra_tooltip=["agent", "events", "errors"]),
        Section("Errors", [TableBlock("Most frequent errors", o.top_errors)]),
    ]
    if repricing is not None:
        sections.append(
            Section(
                "Recorded vs repriced cost",
                repricing,
                intro="Cost as the source recorded it, next to every event repriced from tokens with the default "
                "price table (a dry run over all agents: nothing is rewritten).",
            )
        )
    return sections


def build_overview_report(
    journal: Journal,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    agent: str | None = None,
    top: int = 10,
) -> Report:
    """The overview of ``journal`` in ``[since, until)`` (optionally one agent) as a report."""
    o = overview_tables(journal, since=since, until=until, agent=agent, top=top)
    return Report(
        name="overview",
        title="Agent fleet overview",
        subject="Events, runs, tokens and cost over time; by model, tool and agent; latency, errors, costliest runs.",
        journal=str(journal.path),
        journal_version=journal.delta_version,
        params={"since": since, "until": until, "agent": agent},
        sections=overview_sections(o, repricing_blocks(journal, since=since, until=until)),
    )


def repricing_blocks(
    journal: Journal, *, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> list[Block]:
    """Recorded vs repriced cost per model (default price table; all agents), chart and tables."""
    by_model, by_day = recorded_vs_repriced(journal, since=since, until=until)
    if by_model.num_rows == 0:
        return [Text("No LLM call with tokens in this range.")]
    unpriced = sum(by_model.column("unpriced_events").to_pylist())
    note = (
        f"{unpriced:,} events have tokens the price table cannot price (journal reprice --unpriced lists them)."
        if unpriced
        else "Every event with tokens was priced."
    )
    return [
        ChartBlock(
            "recorded_vs_repriced",
            charts.compared_bars(
                by_model,
                "model",
                ["recorded_cost_usd", "repriced_cost_usd"],
                "Recorded vs repriced cost by model",
                x_title="USD",
            ),
        ),
        TableBlock("By model", by_model, note=note),
        TableBlock(
            "By day and model",
            by_day.select(
                [
                    "day",
                    "model",
                    "billable_events",
                    "recorded_cost_usd",
                    "repriced_cost_usd",
                    "diff_usd",
                    "unpriced_events",
                ]
            ),
        ),
    ]


__all__ = ["build_overview_report", "headline_figures", "overview_sections"]
