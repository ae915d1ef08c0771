"""The run report: one run's timeline, its failures, every step's changes and its final state.

The static counterpart of ``notebooks/run_explorer.py``: the slider becomes one table of what
each version changed, built from the same functions (``find_runs``, ``run_timeline``,
``run_steps``, ``run_failures``).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from toolkit.analysis.run_explorer import find_runs, run_failures, run_steps, run_timeline, timeline_points
from toolkit.journal.store import Journal
from toolkit.reports import charts
from toolkit.reports.html import ChartBlock, Figures, Preformatted, Report, Section, TableBlock, Text

_CHANGE_SCHEMA = pa.schema(
    [
        ("version", pa.int64()),
        ("event", pa.string()),
        ("field", pa.string()),
        ("before", pa.string()),
        ("after", pa.string()),
    ]
)


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_run_report(journal: Journal, *, stream: str, max_events: int = 500) -> Report:
    """Report on run ``stream`` (its first ``max_events`` steps in the change table)."""
    timeline = run_timeline(journal, stream)  # raises StreamNotFoundError with near matches
    listed = find_runs(journal, stream_id=stream, limit=1).to_pylist()
    run = listed[0] if listed else {}
    failures = run_failures(journal, stream)
    changes: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    final_version = 0
    for step in run_steps(journal, stream, max_events=max_events):
        for c in step.changes:
            if c.path.endswith("_us"):
                continue  # the same times, in microseconds
            changes.append(
                {
                    "version": step.version,
                    "event": step.explanation.title,
                    "field": c.path,
                    "before": _short(c.before),
                    "after": _short(c.after),
                }
            )
        final, final_version = step.state, step.version
    events = timeline.num_rows
    figures = {
        "run": stream,
        "agent": run.get("agent") or "",
        "status": run.get("status") or final.get("status", ""),
        "events": f"{events:,}",
        "errors": f"{run.get('errors', 0):,}",
        "recorded cost": f"${run.get('cost_usd') or 0:,.4f}",
        "first → last (UTC)": f"{run['first_at']:%Y-%m-%d %H:%M:%S} → {run['last_at']:%H:%M:%S}" if run else "",
        "failing rules": run.get("failing_rules") or "none found",
    }
    capped = f"Only the first {max_events:,} of {events:,} steps are listed." if events > max_events else ""
    table = timeline.select(
        [
            "version",
            "occurred_at",
            "event_type",
            "title",
            "summary",
            "tool_name",
            "model",
            "tokens_in",
            "tokens_out",
            "cost_usd",
            "is_error",
        ]
    )
    return Report(
        name="run",
        title=f"Run {stream}",
        subject="Every event of one run in order, what it meant, and how the agent's state changed at each step.",
        journal=str(journal.path),
        journal_version=journal.delta_version,
        params={"stream": stream, "max_events": max_events},
        sections=[
            Section("Summary", [Figures(figures)]),
            Section(
                "Timeline",
                [
                    ChartBlock(
                        "timeline", charts.run_timeline(timeline_points(timeline), title=f"{stream}: events by version")
                    ),
                    TableBlock("Events", table, max_rows=max_events),
                ],
            ),
            Section(
                "Rule failures",
                [TableBlock("First failing event per rule (latest re-grade)", failures)]
                if failures.num_rows
                else [Text("No re-grade finding for this run (run journal regrade to check rules).")],
            ),
            Section(
                "What changed at each step",
                [
                    TableBlock(
                        "State changes by version",
                        pa.Table.from_pylist(changes, schema=_CHANGE_SCHEMA),
                        max_rows=5_000,
                        note=capped,
                    )
                ],
                intro="The agent-run state after each event compared with the state before it.",
            ),
            Section(
                "Final state",
                [
                    Preformatted(
                        f"State after version {final_version}",
                        json.dumps(final, indent=2, sort_keys=True, default=str),
                    )
                ],
            ),
        ],
    )
