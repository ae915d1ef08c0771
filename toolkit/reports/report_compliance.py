"""The compliance report: every action for one correlation id or subject in a date range, in
order, with who did it and why — the selection ``journal export-compliance`` bundles, shown with
charts. Built from the bundle's own functions (``toolkit.reports.compliance``), so the report and
the bundle show the same events; the bundle is what an auditor verifies (``journal verify-export``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import polars as pl
import pyarrow as pa

from toolkit.analysis.run_summaries import summarise_runs
from toolkit.analysis.titles import describe_event
from toolkit.errors import ReportError
from toolkit.journal.store import Journal
from toolkit.reports import charts
from toolkit.reports.compliance import Selection, causation_links, chain_heads, select_events
from toolkit.reports.html import Block, ChartBlock, Figures, Report, Section, TableBlock, Text

TIMELINE_POINTS = 2_000  # above this many events the time chart shows events per day instead


def compliance_selection(
    *,
    correlation: str | None = None,
    subject: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Selection:
    if bool(correlation) == bool(subject):
        raise ReportError(
            "give exactly one of -p correlation=ID or -p subject=ID",
            hint="e.g. journal report compliance -p subject=user-0001 --since 2026-10-01 -o compliance.html",
        )
    selection = Selection(correlation_id=correlation or None, subject_id=subject or None, since=since, until=until)
    selection.check()
    return selection


def explained_events(journal: Journal, selection: Selection) -> pl.DataFrame:
    """The selected events in time order, each with who did it, an explainer title and summary."""
    events = select_events(journal, selection)
    texts = [describe_event(r) for r in events.to_dicts()]
    return events.with_columns(
        title=pl.Series([t for t, _ in texts], dtype=pl.String),
        summary=pl.Series([s for _, s in texts], dtype=pl.String),
    )


def _who(row: dict[str, Any]) -> str:
    kind = row["event_type"]
    if kind == "user_message":
        return "user " + (row.get("subject_id") or "")
    if row.get("model"):
        return f"model {row['model']}"
    if row.get("tool_name"):
        return f"tool {row['tool_name']}"
    return f"agent {row.get('agent') or ''}".strip()


def actions_table(events: pl.DataFrame, links: pl.DataFrame) -> pa.Table:
    """When, run, who, what, why (the cause), error — one row per event in order."""
    titles = dict(zip(events.get_column("event_id").to_list(), events.get_column("title").to_list(), strict=True))
    cause_of = {r["effect_event_id"]: r for r in links.to_dicts()}
    rows = []
    for r in events.to_dicts():
        link = cause_of.get(r["event_id"])
        why = ""
        if link is not None:
            why = titles.get(link["cause_event_id"]) or (
                f"{link['cause_event_type']} in {link['cause_stream_id']} v{link['cause_version']}"
                if not link["orphan"]
                else f"cause {link['cause_event_id']} is not in the journal"
            )
        rows.append(
            {
                "occurred_at": r["occurred_at"],
                "stream_id": r["stream_id"],
                "version": r["version"],
                "who": _who(r),
                "what": r["title"],
                "detail": r["summary"],
                "because of": why,
                "error": r["error"],
            }
        )
    schema = pa.schema(
        [
            ("occurred_at", pa.timestamp("us", tz="UTC")),
            ("stream_id", pa.string()),
            ("version", pa.int64()),
            ("who", pa.string()),
            ("what", pa.string()),
            ("detail", pa.string()),
            ("because of", pa.string()),
            ("error", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def events_per_day(events: pl.DataFrame) -> pa.Table:
    counts = Counter((r["occurred_at"].astimezone(dt.UTC).date(), r["stream_id"]) for r in events.to_dicts())
    rows = [{"day": d, "stream_id": s, "events": n} for (d, s), n in sorted(counts.items())]
    return pa.Table.from_pylist(
        rows, schema=pa.schema([("day", pa.date32()), ("stream_id", pa.string()), ("events", pa.int64())])
    )


def compliance_sections(journal: Journal, selection: Selection) -> list[Section]:
    events = explained_events(journal, selection)
    if events.height == 0:
        return [Section("Summary", [Text("No event matches this selection in this range.")])]
    links = causation_links(journal, events)
    streams = list(dict.fromkeys(events.get_column("stream_id").to_list()))
    runs = summarise_runs(journal, streams, events)
    heads = chain_heads(journal, events)
    times = events.get_column("occurred_at").to_list()
    first, last = min(times), max(times)
    figures = {
        "events": f"{events.height:,}",
        "runs": f"{len(streams):,}",
        "agents": ", ".join(sorted({a for a in events.get_column("agent").to_list() if a})) or "—",
        "errors": f"{int(events.get_column('is_error').sum()):,}",
        "first → last (UTC)": f"{first:%Y-%m-%d %H:%M} → {last:%Y-%m-%d %H:%M}",
        "orphan causes": f"{int(links.get_column('orphan').sum()) if links.height else 0:,}",
    }
    timeline: list[Block]
    if events.height <= TIMELINE_POINTS:
        shown = events.select("occurred_at", "stream_id", "event_type", "is_error", "title").to_arrow()
        timeline = [ChartBlock("timeline", charts.cross_stream_timeline(shown, title="Every event, by run"))]
    else:
        timeline = [
            ChartBlock(
                "events_per_day",
                charts.stacked_daily(
                    events_per_day(events), "events", "stream_id", "Events per day by run", y_title="events", fmt=",d"
                ),
            )
        ]
    heads_table = pa.Table.from_pylist(
        [{"stream_id": s, **h} for s, h in heads.items()],
        schema=pa.schema(
            [
                ("stream_id", pa.string()),
                ("head_version", pa.int64()),
                ("head_hash", pa.string()),
                ("last_exported_version", pa.int64()),
                ("last_exported_hash", pa.string()),
            ]
        ),
    )
    run_cols = [
        c
        for c in ("stream_id", "agent", "first_at", "last_at", "events", "errors", "outcome", "status", "cost_usd")
        if c in runs.columns
    ]
    return [
        Section("Summary", [Figures(figures)], intro=_describe(selection)),
        Section("Timeline", [*timeline, TableBlock("Runs", runs.select(run_cols).to_arrow())]),
        Section(
            "Every action, in order",
            [TableBlock("Who did what, and why", actions_table(events, links), max_rows=10_000)],
        ),
        Section("Causation links", [TableBlock("Cause → effect", links.to_arrow(), max_rows=10_000)]),
        Section(
            "Hash-chain heads",
            [TableBlock("Per run: the journal's head and the last event shown", heads_table)],
            intro="The SHA-256 chain heads let an auditor check these events against the journal; "
            "write a verifiable bundle with journal export-compliance and check it with journal verify-export.",
        ),
    ]


def _describe(selection: Selection) -> str:
    who = (
        f"correlation id {selection.correlation_id}" if selection.correlation_id else f"subject {selection.subject_id}"
    )
    since = selection.since.isoformat() if selection.since else "the beginning"
    until = selection.until.isoformat() if selection.until else "now"
    return f"Every event of {who} from {since} until (not including) {until}."


def build_compliance_report(
    journal: Journal,
    *,
    correlation: str | None = None,
    subject: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Report:
    """Everything one correlation id or subject did in ``[since, until)``, as a readable report."""
    selection = compliance_selection(correlation=correlation, subject=subject, since=since, until=until)
    return Report(
        name="compliance",
        title=f"Compliance report: {'correlation ' + correlation if correlation else 'subject ' + str(subject)}",
        subject="Every action taken, in order, with who did it and why (its cause).",
        journal=str(journal.path),
        journal_version=journal.delta_version,
        params={"correlation": correlation, "subject": subject, "since": since, "until": until},
        sections=compliance_sections(journal, selection),
    )
