"""Fleet overview: events, runs, tokens and cost over time; by model, tool and agent.

    marimo run notebooks/overview.py -- --journal data/demo-journal     # as an app
    python notebooks/overview.py --journal data/demo-journal            # as a script
    journal report overview -o overview.html                            # the same, as static HTML
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="Journal overview")


@app.cell
def _():
    import marimo as mo

    from toolkit.analysis.overview import day_range, journal_span, overview_tables, recorded_vs_repriced
    from toolkit.reports import charts
    from toolkit.reports.report_catalog import notebook_journal
    from toolkit.reports.report_overview import headline_figures, overview_charts

    return (
        charts,
        day_range,
        headline_figures,
        journal_span,
        mo,
        notebook_journal,
        overview_charts,
        overview_tables,
        recorded_vs_repriced,
    )


@app.cell
def _(journal_span, mo, notebook_journal):
    journal = notebook_journal(mo.cli_args().get("journal"))
    span = journal_span(journal)
    mo.md(f"# Journal overview\n`{journal.path}` · Delta version {journal.delta_version}")
    return journal, span


@app.cell
def _(mo, span):
    mo.stop(span.first_day is None, mo.md("**The journal has no events yet.**"))
    days = mo.ui.date_range(start=span.first_day, stop=span.last_day, value=(span.first_day, span.last_day), label="days (UTC)")
    agent = mo.ui.dropdown(options=["(all agents)", *span.agents], value="(all agents)", label="agent")
    top = mo.ui.slider(5, 50, value=10, step=5, label="costliest runs shown")
    mo.hstack([days, agent, top], justify="start", gap=2)
    return agent, days, top


@app.cell
def _(agent, day_range, days, journal, mo, overview_charts, overview_tables, top):
    # picker values reach SQL only as bound parameters ($since, $until, $agent, $limit)
    since, until = day_range(*days.value)
    overview = overview_tables(
        journal,
        since=since,
        until=until,
        agent=None if agent.value == "(all agents)" else agent.value,
        top=int(top.value),
    )
    # each chart, or the sentence saying why there is nothing to draw (no costs, no tool calls...)
    figures = {name: mo.md(f"*{c}*") if isinstance(c, str) else c for name, c in overview_charts(overview).items()}
    return figures, overview


@app.cell
def _(headline_figures, mo, overview):
    mo.hstack(
        [mo.stat(value, label=label, bordered=True) for label, value in headline_figures(overview).items()],
        wrap=True,
        justify="start",
    )
    return


@app.cell
def _(figures, mo, overview):
    mo.stop(overview.totals["events"] == 0, mo.md("No events in this range."))
    mo.vstack(
        [
            mo.md("## Over time"),
            figures["events_per_day"],
            figures["runs_per_day"],
            figures["tokens_per_day"],
            figures["cost_by_model_per_day"],
            figures["error_rate_per_day"],
        ]
    )
    return


@app.cell
def _(figures, mo, overview):
    mo.stop(overview.totals["events"] == 0)
    mo.vstack(
        [
            mo.md("## Latency\nPercentiles of `duration_ms`: LLM calls and tool calls."),
            figures["latency_per_day"],
            mo.ui.table(overview.by_model.to_pylist(), label="By model", selection=None),
            mo.ui.table(overview.by_tool.to_pylist(), label="By tool", selection=None),
        ]
    )
    return


@app.cell
def _(figures, mo, overview):
    mo.stop(overview.totals["events"] == 0)
    mo.vstack(
        [
            mo.md("## By model, tool and agent"),
            figures["cost_by_model"],
            figures["calls_by_tool"],
            figures["cost_by_agent"],
            mo.ui.table(overview.by_agent.to_pylist(), label="By agent", selection=None),
        ]
    )
    return


@app.cell
def _(figures, mo, overview):
    mo.stop(overview.totals["events"] == 0)
    mo.vstack(
        [
            mo.md("## Costliest runs\nOpen one in the run explorer: `journal notebook run_explorer`."),
            figures["costliest_runs"],
            mo.ui.table(overview.costliest_runs.to_pylist(), label="Costliest runs", selection=None),
            mo.md("## Errors"),
            mo.ui.table(overview.top_errors.to_pylist(), label="Most frequent errors", selection=None),
        ]
    )
    return


@app.cell
def _(charts, day_range, days, journal, mo, overview, recorded_vs_repriced):
    mo.stop(overview.totals["events"] == 0)
    repriced_by_model, repriced_by_day = recorded_vs_repriced(journal, since=day_range(*days.value)[0], until=day_range(*days.value)[1])
    mo.vstack(
        [
            mo.md(
                "## Recorded vs repriced cost\nEvery event repriced from its tokens with the default price table, "
                "next to the cost the source recorded (a dry run over all agents: nothing is rewritten)."
            ),
            charts.compared_bars(
                repriced_by_model,
                "model",
                ["recorded_cost_usd", "repriced_cost_usd"],
                "Recorded vs repriced cost by model",
                x_title="USD",
            )
            if repriced_by_model.num_rows
            else mo.md("No LLM call with tokens in this range."),
            mo.ui.table(repriced_by_model.to_pylist(), selection=None, label="By model"),
        ]
    )
    return


if __name__ == "__main__":
    app.run()
