"""Run explorer: find a run among thousands, then scrub through it version by version (time travel).

    marimo run notebooks/run_explorer.py -- --journal data/demo-journal     # as an app
    python notebooks/run_explorer.py --journal data/demo-journal            # as a script
    journal report run -p stream=RUN_ID -o run.html                         # one run as static HTML
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="Run explorer")


@app.cell
def _():
    import html
    import json

    import marimo as mo

    from toolkit.analysis.overview import day_range, journal_span
    from toolkit.analysis.run_explorer import (
        RUN_STATUSES,
        explore_step,
        find_runs,
        list_failing_rules,
        run_failures,
        run_timeline,
        timeline_points,
        version_at_text,
    )
    from toolkit.errors import ReplayError, VersionNotFoundError
    from toolkit.reports import charts
    from toolkit.reports.report_catalog import notebook_journal

    return (
        RUN_STATUSES,
        ReplayError,
        VersionNotFoundError,
        charts,
        day_range,
        explore_step,
        find_runs,
        html,
        journal_span,
        json,
        list_failing_rules,
        mo,
        notebook_journal,
        run_failures,
        run_timeline,
        timeline_points,
        version_at_text,
    )


@app.cell
def _(journal_span, list_failing_rules, mo, notebook_journal):
    journal = notebook_journal(mo.cli_args().get("journal"))
    span = journal_span(journal)
    rules = list_failing_rules(journal)
    mo.md(f"# Run explorer\n`{journal.path}` · Delta version {journal.delta_version}")
    return journal, rules, span


@app.cell
def _(RUN_STATUSES, mo, rules, span):
    mo.stop(span.first_day is None, mo.md("**The journal has no events yet.**"))
    ANY = "(any)"
    days = mo.ui.date_range(start=span.first_day, stop=span.last_day, value=(span.first_day, span.last_day), label="active (UTC)")
    agent = mo.ui.dropdown(options=[ANY, *span.agents], value=ANY, label="agent")
    status = mo.ui.dropdown(options=[ANY, *RUN_STATUSES], value=ANY, label="status")
    rule = mo.ui.dropdown(options=[ANY, *rules], value=ANY, label="failing rule")
    min_cost = mo.ui.number(start=0, step=0.01, value=0, label="min cost (USD)")
    search = mo.ui.text(placeholder="part of a run id", label="search")
    mo.vstack([mo.hstack([days, agent, status], justify="start"), mo.hstack([rule, min_cost, search], justify="start")])
    return ANY, agent, days, min_cost, rule, search, status


@app.cell
def _(ANY, agent, day_range, days, find_runs, journal, min_cost, mo, rule, search, status):
    # every picker value reaches SQL as a bound parameter
    since, until = day_range(*days.value)
    runs = find_runs(
        journal,
        since=since,
        until=until,
        agent=None if agent.value == ANY else agent.value,
        status=None if status.value == ANY else status.value,
        rule=None if rule.value == ANY else rule.value,
        min_cost_usd=min_cost.value or None,
        search=search.value.strip() or None,
        limit=500,
    )
    mo.stop(runs.num_rows == 0, mo.md("No run matches these filters."))
    run_ids = runs.column("stream_id").to_pylist()
    picked = mo.ui.dropdown(options=run_ids, value=run_ids[0], label=f"run ({runs.num_rows} shown, most recent first)")
    mo.vstack([mo.ui.table(runs.to_pylist(), selection=None, page_size=8, label="Matching runs"), picked])
    return (picked,)


@app.cell
def _(journal, mo, picked, run_failures, run_timeline, timeline_points):
    stream_id = picked.value
    timeline = run_timeline(journal, stream_id)
    points = timeline_points(timeline)  # a long run: one point per range of versions, not per event
    failures = run_failures(journal, stream_id)
    versions = timeline.column("version").to_pylist()
    first_version, last_version = min(versions), max(versions)  # first above 1: a purge removed the start
    NONE = f"(start at version {first_version})"
    jump = mo.ui.dropdown(
        options=[NONE, *[f"{r['rule']} (v{r['first_failing_version']})" for r in failures.to_pylist()]],
        value=NONE,
        label="jump to the first failing event of",
    )
    at_time = mo.ui.text(placeholder="2026-10-02T14:03:00Z", label="or to the state at (UTC)", debounce=True)
    mo.hstack([jump, at_time], justify="start")
    return NONE, at_time, failures, first_version, jump, last_version, points, stream_id


@app.cell
def _(
    NONE,
    ReplayError,
    VersionNotFoundError,
    at_time,
    failures,
    first_version,
    journal,
    jump,
    last_version,
    mo,
    stream_id,
    version_at_text,
):
    jumps = {f"{r['rule']} (v{r['first_failing_version']})": r["first_failing_version"] for r in failures.to_pylist()}
    start = first_version if jump.value == NONE else max(first_version, int(jumps[jump.value]))
    _said = None
    if at_time.value.strip():
        try:  # the version journal state --at resolves the time to (its last event by then)
            _found, _said = version_at_text(journal, stream_id, at_time.value)
            start = max(first_version, _found)
        except (ReplayError, VersionNotFoundError) as _e:  # not a time; a time in purged versions
            _said = f"{_e.message} ({_e.hint})"
    # debounce: a drag across a long run sends the version it ends on, not every version it passes
    version = mo.ui.slider(
        first_version, last_version, value=start, step=1, label="version", show_value=True, full_width=True, debounce=True
    )
    mo.vstack([mo.md(f"*{_said}*"), version]) if _said else version
    return (version,)


@app.cell
def _(charts, points, stream_id, version):
    charts.run_timeline(points, selected_version=version.value, title=f"{stream_id}: events by version")
    return


@app.cell
def _(explore_step, html, journal, json, mo, stream_id, version):
    step = explore_step(journal, stream_id, version.value)
    x = step.explanation
    event_json = html.escape(json.dumps(step.event_fields(), indent=2, sort_keys=True, default=str))
    changes = "".join(
        f"<tr><td>{html.escape(c.path)}</td><td>{html.escape(str(c.before))}</td><td>{html.escape(str(c.after))}</td></tr>"
        for c in step.changes
    )
    mo.Html(
        f"""<div data-testid="run-state">
<h3>Event at version {step.version} of {step.last_version}: {html.escape(x.title)}</h3>
<p>{html.escape(x.summary)} <small>{html.escape(", ".join(x.tags))}</small></p>
<details><summary>event fields</summary><pre>{event_json}</pre></details>
<h3>What changed from version {step.version - 1}</h3>
<table><tr><th>field</th><th>before</th><th>after</th></tr>{changes}</table>
<h3>State after version {step.version}</h3>
<pre>{html.escape(step.state_json())}</pre>
</div>"""
    )
    return


if __name__ == "__main__":
    app.run()
