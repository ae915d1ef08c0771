"""Compliance: pick a correlation id or a subject and a date range; see every action in order with
who did it and why, the report `journal export-compliance` writes, and write the verifiable bundle.

    marimo run notebooks/compliance.py -- --journal data/demo-journal     # as an app
    python notebooks/compliance.py --journal data/demo-journal            # as a script (writes nothing)
    journal report compliance -p subject=user-0001 -o compliance.html     # the same, as static HTML
    journal export-compliance --subject user-0001 -o bundle/              # the bundle an auditor verifies
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="Compliance")


@app.cell
def _():
    import tempfile
    from pathlib import Path

    import marimo as mo

    from toolkit.analysis.overview import day_range, journal_span
    from toolkit.analysis.run_explorer import list_correlations, list_subjects
    from toolkit.reports import charts
    from toolkit.reports.compliance import causation_links, export_compliance
    from toolkit.reports.report_catalog import notebook_journal
    from toolkit.reports.report_compliance import actions_table, compliance_selection, explained_events

    return (
        Path,
        actions_table,
        causation_links,
        charts,
        compliance_selection,
        day_range,
        explained_events,
        export_compliance,
        journal_span,
        list_correlations,
        list_subjects,
        mo,
        notebook_journal,
        tempfile,
    )


@app.cell
def _(journal_span, list_correlations, list_subjects, mo, notebook_journal):
    journal = notebook_journal(mo.cli_args().get("journal"))
    span = journal_span(journal)
    correlations = list_correlations(journal).column("correlation_id").to_pylist()
    subjects = list_subjects(journal).column("subject_id").to_pylist()
    mo.md(f"# Compliance\n`{journal.path}` · Delta version {journal.delta_version}")
    return correlations, journal, span, subjects


@app.cell
def _(correlations, mo, span, subjects):
    mo.stop(span.first_day is None or not (correlations or subjects), mo.md("**No correlation id or subject in the journal.**"))
    kind = mo.ui.radio(
        options=["correlation id", "subject"],
        value="correlation id" if correlations else "subject",
        label="select by",
        inline=True,
    )
    days = mo.ui.date_range(start=span.first_day, stop=span.last_day, value=(span.first_day, span.last_day), label="between (UTC)")
    mo.hstack([kind, days], justify="start")
    return days, kind


@app.cell
def _(correlations, kind, mo, subjects):
    options = correlations if kind.value == "correlation id" else subjects
    who = mo.ui.dropdown(options=options, value=options[0] if options else None, label=kind.value)
    who
    return (who,)


@app.cell
def _(compliance_selection, day_range, days, explained_events, journal, kind, mo, who):
    mo.stop(who.value is None, mo.md("Nothing to pick."))
    since, until = day_range(*days.value)
    picked = {"correlation": who.value} if kind.value == "correlation id" else {"subject": who.value}
    selection = compliance_selection(**picked, since=since, until=until)
    events = explained_events(journal, selection)
    mo.stop(events.height == 0, mo.md("No event matches this selection in this range."))
    mo.md(
        f"**{events.height} events** in **{events.get_column('stream_id').n_unique()} runs**, "
        f"{events.get_column('occurred_at').min():%Y-%m-%d %H:%M} → {events.get_column('occurred_at').max():%Y-%m-%d %H:%M} UTC"
    )
    return events, selection


@app.cell
def _(actions_table, causation_links, charts, events, journal, mo):
    links = causation_links(journal, events)
    shown = events.select("occurred_at", "stream_id", "event_type", "is_error", "title").head(2000).to_arrow()
    mo.vstack(
        [
            charts.cross_stream_timeline(shown, title="Every event, by run"),
            mo.ui.table(actions_table(events, links).to_pylist(), selection=None, page_size=12, label="Who did what, and why"),
        ]
    )
    return


@app.cell
def _(export_compliance, journal, mo, selection, tempfile):
    # the report exactly as the bundle carries it: written to a scratch directory, shown here
    with tempfile.TemporaryDirectory() as scratch:
        preview = export_compliance(journal, selection, f"{scratch}/bundle")
        with open(f"{preview.path}/report.html", encoding="utf-8") as f:
            bundle_html = f.read()
    mo.vstack([mo.md("## The bundle's report.html"), mo.iframe(bundle_html, height="600px")])
    return


@app.cell
def _(mo):
    out_dir = mo.ui.text(value="compliance-bundle", label="write the bundle to (a new or empty directory)", full_width=True)
    write = mo.ui.run_button(label="Write the bundle")
    mo.hstack([out_dir, write], justify="start")
    return out_dir, write


@app.cell
def _(Path, export_compliance, journal, mo, out_dir, selection, write):
    mo.stop(not write.value, mo.md("*The bundle is written when you press the button.*"))
    result = export_compliance(journal, selection, Path(out_dir.value).expanduser())
    mo.md(
        f"Wrote **{result.path}**: {result.events} events of {result.streams} runs; manifest SHA-256 "
        f"`{result.manifest_sha256}`. Check it with `journal verify-export {result.path} -j {journal.path}`."
    )
    return


if __name__ == "__main__":
    app.run()
