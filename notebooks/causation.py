"""Causation chain: pick an event; its causes back to the root input and its effects, across streams,
as a graph and as a readable list; and the cross-stream timeline of a trace.

    marimo run notebooks/causation.py -- --journal data/demo-journal     # as an app
    python notebooks/causation.py --journal data/demo-journal            # as a script
    journal report causation -p event=EVENT_ID -o chain.html             # the same, as static HTML
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="Causation chain")


@app.cell
def _():
    import marimo as mo

    from toolkit.analysis.causation import walk_chain
    from toolkit.analysis.run_explorer import failing_events
    from toolkit.analysis.timeline import trace_events
    from toolkit.errors import EventNotFoundError
    from toolkit.reports import charts
    from toolkit.reports.report_catalog import notebook_journal
    from toolkit.reports.report_causation import chain_layout, chain_list, charted_note

    return (
        EventNotFoundError,
        chain_layout,
        chain_list,
        charted_note,
        charts,
        failing_events,
        mo,
        notebook_journal,
        trace_events,
        walk_chain,
    )


@app.cell
def _(failing_events, mo, notebook_journal):
    journal = notebook_journal(mo.cli_args().get("journal"))
    failures = failing_events(journal, limit=200).to_pylist()
    mo.md(f"# Causation chain\n`{journal.path}` · Delta version {journal.delta_version}")
    return failures, journal


@app.cell
def _(failures, mo):
    labels = {
        f"{r['occurred_at']:%Y-%m-%d %H:%M} {r['stream_id']} v{r['version']} {r['tool_name'] or r['event_type']}: {r['error'] or ''}"[:110]: r["event_id"]
        for r in failures
    }
    picked = mo.ui.dropdown(options=labels, value=next(iter(labels), None), label="a recent failure")
    typed = mo.ui.text(placeholder="or paste any event id", label="event id", full_width=True)
    direction = mo.ui.radio(options=["both", "up", "down"], value="both", label="walk", inline=True)
    depth = mo.ui.slider(1, 200, value=50, label="max links each way", show_value=True)
    mo.vstack([picked, typed, mo.hstack([direction, depth], justify="start")])
    return depth, direction, picked, typed


@app.cell
def _(EventNotFoundError, depth, direction, mo, picked, typed, walk_chain, journal):
    event_id = typed.value.strip() or picked.value
    mo.stop(not event_id, mo.md("Pick a failure or paste an event id."))
    try:
        chain = walk_chain(journal, event_id, direction=direction.value, depth=depth.value)
    except EventNotFoundError as e:
        mo.stop(True, mo.md(f"**{e.message}**  \n{e.hint}"))
    depths = chain.nodes.get_column("depth").to_list()
    mo.md(
        f"**{sum(d < 0 for d in depths)} causes, {sum(d > 0 for d in depths)} effects** across "
        f"{chain.nodes.get_column('stream_id').n_unique()} streams · orphans: {chain.orphans.height} · "
        f"cycles: {len(chain.cycles)}" + (" · *stopped at the depth limit*" if chain.truncated else "")
        + (f" · ambiguous ids: {chain.ambiguous.height}" if chain.ambiguous.height else "")
    )
    return (chain,)


@app.cell
def _(chain, chain_layout, charted_note, charts, mo):
    nodes, edges = chain_layout(chain)
    _graph = charts.graph_chart(nodes, edges, title="Causes (top) → focus → effects (bottom); one lane per stream")
    _note = charted_note(chain)
    mo.vstack([mo.md(_note), _graph]) if _note else _graph
    return


@app.cell
def _(chain, chain_list, mo):
    mo.vstack(
        [
            mo.ui.table(chain_list(chain).to_pylist(), selection=None, page_size=15, label="The chain, causes first"),
            mo.ui.table(chain.orphans.to_dicts(), selection=None, label="Orphans (cause not in the journal)")
            if chain.orphans.height
            else mo.md("No orphans."),
            *(
                [mo.ui.table(chain.ambiguous.to_dicts(), selection=None,
                             label="Ambiguous ids (other events carry them too; the chain takes the copy of the effect's stream)")]
                if chain.ambiguous.height
                else []
            ),
        ]
    )
    return


@app.cell
def _(chain, mo):
    import polars as pl

    focus = chain.nodes.filter(pl.col("event_id") == chain.focus)
    trace_default = (focus.get_column("trace_id")[0] or "") if focus.height else ""
    trace_id = mo.ui.text(value=trace_default, label="trace id (or traceparent)", full_width=True)
    mo.vstack([mo.md("## Trace view"), trace_id])
    return (trace_id,)


@app.cell
def _(EventNotFoundError, charts, journal, mo, trace_events, trace_id):
    mo.stop(not trace_id.value.strip(), mo.md("The focus event has no trace id."))
    try:
        trace = trace_events(journal, trace_id.value)
    except EventNotFoundError as e:
        mo.stop(True, mo.md(f"**{e.message}**  \n{e.hint}"))
    shown = trace.select("occurred_at", "stream_id", "version", "event_type", "title", "summary", "is_error")
    mo.vstack(
        [
            charts.cross_stream_timeline(shown.to_arrow(), title="Every event of the trace"),
            mo.ui.table(shown.to_dicts(), selection=None, page_size=10, label="Trace timeline"),
        ]
    )
    return


if __name__ == "__main__":
    app.run()
