"""The overview report: the same tables and charts as ``notebooks/overview.py``, as static HTML."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

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


NO_EVENTS = "No events in this range."
NO_COSTS = "No costs recorded in this range."


def overview_charts(o: Overview) -> dict[str, Any]:
    """The overview's charts by name, each an altair chart or, when it would be empty or all zero, the
    sentence that says why (a journal of chat transcripts has no cost, tokens or latency to draw).
    Shared with ``notebooks/overview.py``."""
    if o.totals["events"] == 0:
        return {}
    no_cost = Decimal(o.totals["cost_usd"]) == 0
    out: dict[str, Any] = {
        "events_per_day": charts.daily_bars(o.by_day, "events", "Events per day"),
        "runs_per_day": charts.daily_bars(o.by_day, "runs", "Runs active per day"),
        "tokens_per_day": "No tokens recorded in this range."
        if o.totals["tokens_in"] == o.totals["tokens_out"] == 0
        else charts.folded_daily(
            o.by_day, ["tokens_in", "tokens_out"], "Tokens per day", y_title="tokens", series="direction"
        ),
        "cost_by_model_per_day": NO_COSTS
        if no_cost or o.cost_by_model_day.num_rows == 0
        else charts.stacked_daily(
            o.cost_by_model_day, "cost_usd", "model", "Recorded cost per day by model", y_title="USD"
        ),
        "error_rate_per_day": charts.daily_line(o.by_day, "error_rate", "Error rate per day (errors / events)"),
        "latency_per_day": "No LLM or tool call with a duration in this range."
        if o.latency_by_day.num_rows == 0
        else charts.latency_lines(o.latency_by_day),
        "cost_by_model": "No LLM call names a model in this range."
        if o.by_model.num_rows == 0
        else NO_COSTS
        if no_cost
        else charts.ranked_bars(
            o.by_model,
            "model",
            "cost_usd",
            "Recorded cost by model",
            x_title="USD",
            extra_tooltip=["llm_calls", "tokens_in", "tokens_out"],
        ),
        "calls_by_tool": "No tool calls in this range."
        if o.by_tool.num_rows == 0
        else charts.ranked_bars(
            o.by_tool,
            "tool_name",
            "calls",
            "Tool calls (colour: failure rate)",
            x_title="calls",
            fmt=",d",
            color="failure_rate",
            extra_tooltip=["failures", "p95_ms"],
        ),
        "cost_by_agent": NO_COSTS
        if no_cost
        else charts.ranked_bars(
            o.by_agent,
            "agent",
            "cost_usd",
            "Recorded cost by agent",
            x_title="USD",
            extra_tooltip=["runs", "cost_per_run_usd", "errors"],
        ),
        "costliest_runs": NO_COSTS
        if no_cost
        else charts.ranked_bars(
            o.costliest_runs,
            "stream_id",
            "cost_usd",
            "Costliest runs",
            x_title="USD",
            extra_tooltip=["agent", "events", "errors"],
        ),
    }
    return out


def _chart_or_note(figures: dict[str, Any], name: str) -> Block:
    figure = figures[name]
    return Text(figure) if isinstance(figure, str) else ChartBlock(name, figure)


def overview_sections(o: Overview, repricing: list[Block] | None = None) -> list[Section]:
    """The report's sections; ``repricing`` is the recorded-vs-repriced part when pricing is available."""
    figures = overview_charts(o)

    def part(names: list[str], *tables: TableBlock) -> list[Block]:
        if not figures:
            return [Text(NO_EVENTS)]
        return [*(_chart_or_note(figures, n) for n in names), *(t for t in tables if t.table.num_rows)]

    sections = [
        Section("Headline figures", [Figures(headline_figures(o))]),
        Section(
            "Over time",
            part(
                ["events_per_day", "runs_per_day", "tokens_per_day", "cost_by_model_per_day", "error_rate_per_day"],
                TableBlock("Per day", o.by_day),
            ),
            intro="Days are UTC. Cost is as recorded by the source.",
        ),
        Section(
            "Latency",
            part(["latency_per_day"], TableBlock("Latency per day (ms)", o.latency_by_day)),
            intro="Percentiles of duration_ms: LLM calls (events with a model) and tool calls (events with a tool).",
        ),
        Section("By model", part(["cost_by_model"], TableBlock("Models", o.by_model))),
        Section("By tool", part(["calls_by_tool"], TableBlock("Tools", o.by_tool))),
        Section("By agent", part(["cost_by_agent"], TableBlock("Agents", o.by_agent))),
        Section("Costliest runs", part(["costliest_runs"], TableBlock("Costliest runs", o.costliest_runs))),
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


__all__ = ["build_overview_report", "headline_figures", "overview_charts", "overview_sections"]
