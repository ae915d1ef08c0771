"""Re-grade: pick rules, judge every run of the journal again, see first failures over time and
failing runs per day, and drill into one failing run's bisection.

    marimo run notebooks/regrade.py -- --journal data/demo-journal     # as an app
    python notebooks/regrade.py --journal data/demo-journal            # as a script
    journal report regrade -p rules=budget,latency -o regrade.html     # the same, as static HTML
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="Re-grade")


@app.cell
def _():
    import html
    import json

    import marimo as mo

    from toolkit.analysis.overview import day_range, journal_span
    from toolkit.analysis.regrade_trends import (
        DEFAULT_RULES,
        bisect_run,
        failing_runs,
        failing_runs_by_day,
        first_failures_by_day,
        probes_table,
        regrade_rules,
        rule_summary,
        stream_rule_names,
    )
    from toolkit.reports import charts
    from toolkit.reports.report_catalog import notebook_journal
    from toolkit.reports.report_regrade import regrade_charts

    return (
        DEFAULT_RULES,
        bisect_run,
        charts,
        day_range,
        failing_runs,
        failing_runs_by_day,
        first_failures_by_day,
        html,
        journal_span,
        json,
        mo,
        notebook_journal,
        probes_table,
        regrade_charts,
        regrade_rules,
        rule_summary,
        stream_rule_names,
    )


@app.cell
def _(journal_span, mo, notebook_journal):
    journal = notebook_journal(mo.cli_args().get("journal"))
    span = journal_span(journal)
    mo.md(f"# Re-grade all history\n`{journal.path}` · Delta version {journal.delta_version}")
    return journal, span


@app.cell
def _(DEFAULT_RULES, mo, span, stream_rule_names):
    mo.stop(span.first_day is None, mo.md("**The journal has no events yet.**"))
    rules = mo.ui.multiselect(options=stream_rule_names(), value=list(DEFAULT_RULES), label="rules")
    days = mo.ui.date_range(start=span.first_day, stop=span.last_day, value=(span.first_day, span.last_day), label="runs active (UTC)")
    mo.hstack([rules, days], justify="start")
    return days, rules


@app.cell
def _(day_range, days, journal, mo, regrade_rules, rules):
    mo.stop(not rules.value, mo.md("Pick at least one rule."))
    since, until = day_range(*days.value)
    with mo.status.spinner(title="Re-grading every selected run..."):
        result = regrade_rules(journal, rules.value, since=since, until=until, write=False)
    summary = result.summary()
    mo.hstack(
        [
            mo.stat(f"{summary['streams_checked']:,}", label="runs checked", bordered=True),
            mo.stat(f"{summary['streams_failing']:,}", label="runs failing", bordered=True),
            mo.stat(f"{summary['findings']:,}", label="findings", bordered=True),
            mo.stat(f"{summary['errors']:,}", label="rule errors", bordered=True),
        ],
        justify="start",
    )
    return result, since, until


@app.cell
def _(failing_runs_by_day, first_failures_by_day, journal, mo, regrade_charts, result, rule_summary, since, until):
    per_day = failing_runs_by_day(journal, result.findings, since=since, until=until)
    # each chart, or the sentence saying why there is nothing to draw (no run failed a chosen rule...)
    figures = regrade_charts(per_day, first_failures_by_day(result.findings))
    mo.vstack(
        [
            mo.ui.table(rule_summary(result).to_pylist(), selection=None, label="Rules"),
            *(mo.md(f"*{f}*") if isinstance(f, str) else f for f in figures.values()),
        ]
    )
    return


@app.cell
def _(failing_runs, mo, result):
    failures = failing_runs(result)
    mo.stop(failures.num_rows == 0, mo.md("Every run holds every chosen rule."))
    options = {
        f"{r['rule']} · {r['stream_id']} (v{r['first_failing_version']})": (r["rule"], r["stream_id"])
        for r in failures.to_pylist()
    }
    drill = mo.ui.dropdown(options=options, value=next(iter(options)), label="drill into")
    mo.vstack([mo.ui.table(failures.to_pylist(), selection=None, page_size=10, label="Failing runs, earliest first"), drill])
    return (drill,)


@app.cell
def _(bisect_run, charts, drill, html, journal, json, mo, probes_table):
    rule_name, stream_id = drill.value
    b = bisect_run(journal, rule_name, stream_id)
    detail = f"{b.method}, {b.evaluations} rule evaluations over {b.events} events. {b.note or ''}"
    mo.vstack(
        [
            # names and messages come from the journal: escaped text, never Markdown or HTML
            mo.Html(
                f"<h3>{html.escape(rule_name)} in {html.escape(stream_id)}: first failing version <b>{b.version}</b></h3>"
                f"<p>{html.escape(detail)}</p>"
                f"<p>{html.escape(b.message or '')}</p>"
            ),
            charts.bisection_chart(probes_table(b), first_failing=b.version, title="Versions evaluated, in order")
            if b.probes
            else mo.md("*A linear scan evaluates every version in order: no search path to draw.*"),
            mo.accordion(
                {
                    "event and explanation": mo.md(f"```json\n{json.dumps({'explanation': b.explanation, 'event': b.event}, indent=2, default=str)}\n```"),
                    "state before → after": mo.md(f"```json\n{json.dumps({'before': b.state_before, 'after': b.state_after}, indent=2, default=str)}\n```"),
                }
            ),
        ]
    )
    return


if __name__ == "__main__":
    app.run()
