"""The causation report: an event's ancestors and descendants as a graph and a readable list,
across streams, with its trace's cross-stream timeline. Shared with ``notebooks/causation.py``."""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa

from toolkit.analysis.causation import Chain, walk_chain
from toolkit.analysis.timeline import trace_events
from toolkit.analysis.titles import describe_event
from toolkit.errors import EventNotFoundError
from toolkit.journal.store import Journal
from toolkit.reports import charts
from toolkit.reports.html import Block, ChartBlock, Figures, Report, Section, TableBlock, Text

_NODE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("x", pa.int64()),
        ("y", pa.int64()),
        ("label", pa.string()),
        ("group", pa.string()),
        ("tooltip", pa.string()),
    ]
)
_EDGE_SCHEMA = pa.schema([("x", pa.int64()), ("y", pa.int64()), ("x2", pa.int64()), ("y2", pa.int64())])


def charted_nodes(chain: Chain, limit: int = charts.MAX_CHART_ROWS) -> pl.DataFrame:
    """The chain's events a graph can hold: all of them, or the ``limit`` nearest the focus (fewest
    links away, then earliest) when the chain is longer than a chart takes."""
    if chain.nodes.height <= limit:
        return chain.nodes
    return chain.nodes.sort(pl.col("depth").abs(), "occurred_at", "position").head(limit)


def charted_note(chain: Chain, limit: int = charts.MAX_CHART_ROWS) -> str | None:
    """What the graph leaves out of a chain longer than a chart holds (None: it shows every event)."""
    if chain.nodes.height <= limit:
        return None
    depths = charted_nodes(chain, limit).get_column("depth").to_list()
    return (
        f"The chain has {chain.nodes.height:,} events, more than a chart holds ({limit:,}): the graph shows the "
        f"{limit:,} nearest the focus (links {min(depths)} to {max(depths)}); the list below has them all."
    )


def chain_layout(chain: Chain, limit: int = charts.MAX_CHART_ROWS) -> tuple[pa.Table, pa.Table]:
    """Swimlanes for ``graph_chart``: one row per event (causes first, in time order), one lane per
    stream (in order of appearance), and a segment from each cause to its effect; a chain longer
    than a chart holds is cut to the ``limit`` events nearest the focus (``charted_note``)."""
    nodes = charted_nodes(chain, limit).sort("depth", "occurred_at", "position").to_dicts()
    lanes: dict[str, int] = {}
    where: dict[str, tuple[int, int]] = {}
    rows = []
    for y, n in enumerate(nodes):
        x = lanes.setdefault(n["stream_id"], len(lanes))
        where[n["event_id"]] = (x, y)
        title, summary = describe_event(n)
        focus = "  ◀ focus" if n["event_id"] == chain.focus else ""
        rows.append(
            {
                "id": n["event_id"],
                "x": x,
                "y": y,
                "label": f"{title} ({n['stream_id']} v{n['version']}){focus}",
                "group": n["stream_id"],
                "tooltip": summary,
            }
        )
    edges = []
    for n in nodes:
        parent = n.get("parent_id")
        if parent in where:
            (x, y), (x2, y2) = where[parent], where[n["event_id"]]
            edges.append({"x": x, "y": y, "x2": x2, "y2": y2})
    return pa.Table.from_pylist(rows, schema=_NODE_SCHEMA), pa.Table.from_pylist(edges, schema=_EDGE_SCHEMA)


def chain_list(chain: Chain) -> pa.Table:
    """The chain as a readable list: depth (negative: causes, positive: effects), stream, what happened."""
    rows = []
    for n in chain.nodes.sort("depth", "occurred_at", "position").to_dicts():
        title, summary = describe_event(n)
        rows.append(
            {
                "depth": n["depth"],
                "event": ("    " * abs(int(n["depth"]))) + title,
                "summary": summary,
                "stream_id": n["stream_id"],
                "version": n["version"],
                "occurred_at": n["occurred_at"],
                "event_id": n["event_id"],
            }
        )
    schema = pa.schema(
        [
            ("depth", pa.int64()),
            ("event", pa.string()),
            ("summary", pa.string()),
            ("stream_id", pa.string()),
            ("version", pa.int64()),
            ("occurred_at", pa.timestamp("us", tz="UTC")),
            ("event_id", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def trace_of(journal: Journal, chain: Chain) -> pl.DataFrame | None:
    """The cross-stream timeline of the focus event's trace (None when it has no trace id)."""
    focus = chain.nodes.filter(pl.col("event_id") == chain.focus)
    trace_id = focus.get_column("trace_id")[0] if focus.height else None
    if not trace_id:
        return None
    try:
        return trace_events(journal, str(trace_id))
    except EventNotFoundError:
        return None


def causation_sections(journal: Journal, chain: Chain) -> list[Section]:
    depths = chain.nodes.get_column("depth").to_list()
    figures: dict[str, Any] = {
        "focus event": chain.focus,
        "causes (ancestors)": sum(d < 0 for d in depths),
        "effects (descendants)": sum(d > 0 for d in depths),
        "streams": chain.nodes.get_column("stream_id").n_unique(),
        "orphans": chain.orphans.height,
        "cycles": len(chain.cycles),
    }
    nodes, edges = chain_layout(chain)
    graph: list[Block] = [
        ChartBlock(
            "graph",
            charts.graph_chart(nodes, edges, title="Causes (top) → focus → effects (bottom); one lane per stream"),
        ),
        TableBlock("The chain, causes first", chain_list(chain)),
    ]
    note = charted_note(chain)
    if note is not None:
        graph.insert(0, Text(note))
    if chain.truncated:
        graph.insert(0, Text("The walk stopped at the depth limit: there is more beyond it."))
    problems: list[Block] = [
        TableBlock(
            "Orphans: the cause is not in the journal",
            pa.Table.from_pylist(chain.orphans.to_dicts())
            if chain.orphans.height
            else pa.table({"event_id": pa.array([], pa.string())}),
        )
    ]
    if chain.cycles:
        problems.append(Text("Cycles: " + "; ".join(" → ".join(c) for c in chain.cycles)))
    if chain.ambiguous.height:
        problems.append(
            TableBlock(
                "Ambiguous ids: other events carry the same event id (the chain takes the copy in the effect's "
                "stream, then of its correlation, then the latest before it)",
                chain.ambiguous.with_columns(pl.col("also_in").list.join(", ")).to_arrow(),
            )
        )
    sections = [
        Section("Summary", [Figures(figures)]),
        Section("Causation chain", graph, intro="Each event's causation_id names the event that caused it."),
        Section("Orphans and cycles", problems),
    ]
    trace = trace_of(journal, chain)
    if trace is not None:
        t = trace.select("occurred_at", "stream_id", "version", "event_type", "title", "summary", "is_error").to_arrow()
        sections.append(
            Section(
                "Trace",
                [
                    ChartBlock(
                        "trace", charts.cross_stream_timeline(t, title="Every event of the focus event's trace")
                    ),
                    TableBlock("Trace timeline", t),
                ],
                intro=f"Events sharing the W3C trace id {trace.get_column('trace_id')[0]}, across streams and sources.",
            )
        )
    return sections


def build_causation_report(journal: Journal, *, event: str, depth: int = 50) -> Report:
    """The causation chain of ``event`` (both ways, at most ``depth`` links each way) as a report."""
    chain = walk_chain(journal, event, direction="both", depth=depth)
    return Report(
        name="causation",
        title=f"Causation chain of {event}",
        subject="What led to this event, what it led to, across streams; with its trace.",
        journal=str(journal.path),
        journal_version=journal.delta_version,
        params={"event": event, "depth": depth},
        sections=causation_sections(journal, chain),
    )
