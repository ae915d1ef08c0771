"""The re-grade report: rules judged over all history, first failures over time, failing runs per
day, the failing runs, and the bisection of the earliest failure. Shared with ``notebooks/regrade.py``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from toolkit.analysis.regrade import RegradeResult
from toolkit.analysis.regrade_trends import (
    DEFAULT_RULES,
    bisect_run,
    failing_runs,
    failing_runs_by_day,
    first_failures_by_day,
    probes_table,
    regrade_rules,
    rule_summary,
)
from toolkit.journal.store import Journal
from toolkit.reports import charts
from toolkit.reports.html import Block, ChartBlock, Figures, Preformatted, Report, Section, TableBlock, Text


def regrade_charts(per_day: pa.Table, first_days: pa.Table) -> dict[str, Any]:
    """The re-grade's charts by name, each an altair chart or, when it would be empty, the sentence
    that says why (no run failed a chosen rule; no run started in the range). Shared with
    ``notebooks/regrade.py``."""
    out: dict[str, Any] = {
        "first_failures_per_day": charts.stacked_daily(
            first_days, "runs", "rule", "First failures per day by rule (runs)", y_title="runs", fmt=",d"
        )
        if first_days.num_rows
        else "No run fails a chosen rule in this range."
    }
    if per_day.num_rows == 0:
        out["failing_runs_per_day"] = "No run started in this range."
        return out
    out["failing_runs_per_day"] = charts.folded_daily(
        per_day,
        ["failing_runs", "runs"],
        "Runs started per day, and how many fail a rule",
        y_title="runs",
        series="runs",
    )
    out["failing_share_per_day"] = charts.daily_line(per_day, "failing_share", "Share of the day's runs failing a rule")
    return out


def regrade_sections(
    journal: Journal, result: RegradeResult, *, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> list[Section]:
    summary = result.summary()
    first = summary["first_failure"]
    figures = {
        "streams checked": f"{summary['streams_checked']:,}",
        "streams failing": f"{summary['streams_failing']:,}",
        "findings": f"{summary['findings']:,}",
        "rule errors": f"{summary['errors']:,}",
        "first failure": f"{first['occurred_at'][:19]} {first['rule']} ({first['stream_id']} v{first['version']})"
        if first
        else "none",
    }
    per_day = failing_runs_by_day(journal, result.findings, since=since, until=until)
    figures = regrade_charts(per_day, first_failures_by_day(result.findings))
    over_time: list[Block] = [Text(f) if isinstance(f, str) else ChartBlock(name, f) for name, f in figures.items()]
    if per_day.num_rows:
        over_time.append(TableBlock("Per day", per_day))
    sections = [
        Section(
            "Summary",
            [Figures(figures), TableBlock("Rules", rule_summary(result))],
            intro=f"Re-grade batch {result.batch_id} (inputs {result.inputs_sha256[:16]}…).",
        ),
        Section("Failures over time", over_time),
        Section(
            "Failing runs",
            [TableBlock("First failing event per rule and run, earliest first", failing_runs(result), max_rows=500)],
        ),
    ]
    if first:
        b = bisect_run(journal, first["rule"], first["stream_id"])
        sections.append(
            Section(
                f"Bisection: {first['rule']} in {first['stream_id']}",
                [
                    Figures(
                        {
                            "method": b.method,
                            "rule evaluations": b.evaluations,
                            "events in the run": b.events,
                            "first failing version": b.version if b.version is not None else "none",
                        }
                    ),
                    Text(b.note or ""),
                    ChartBlock(
                        "bisection",
                        charts.bisection_chart(
                            probes_table(b), first_failing=b.version, title="Versions evaluated, in order"
                        ),
                    )
                    if b.probes
                    else Text("A linear scan evaluates every version in order; there is no search path to draw."),
                    Preformatted(
                        "Event at the first failing version",
                        json.dumps(
                            {"explanation": b.explanation, "message": b.message, "event": b.event},
                            indent=2,
                            sort_keys=True,
                            default=str,
                        ),
                    ),
                    Preformatted(
                        "State before → after",
                        json.dumps(
                            {"before": b.state_before, "after": b.state_after}, indent=2, sort_keys=True, default=str
                        ),
                    ),
                ],
                intro="The earliest failure of the re-grade, found again by binary search over the run's versions.",
            )
        )
    return sections


def build_regrade_report(
    journal: Journal,
    *,
    rules: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Report:
    """Re-grade ``rules`` (default: a built-in selection) over runs active in ``[since, until)``; nothing is written."""
    chosen = list(rules or DEFAULT_RULES)
    result = regrade_rules(journal, chosen, since=since, until=until, write=False)
    return Report(
        name="regrade",
        title="Re-grade of all history",
        subject=f"Rules: {', '.join(chosen)}. Every selected run judged again from its events; findings not written.",
        journal=str(journal.path),
        journal_version=journal.delta_version,
        params={"rules": ",".join(chosen), "since": since, "until": until},
        sections=regrade_sections(journal, result, since=since, until=until),
    )
