from __future__ import annotations

import datetime as dt
from typing import Any

import click

from toolkit.cli.options import journal_option, open_journal, param_option, params_checked, parse_params
from toolkit.cli.time_options import check_time_range, given_time_range, time_range_options


@click.command("report")
@journal_option
@click.argument("name", required=False)
@param_option
@time_range_options(
    since_help="Start of the range (ISO 8601 or a date; UTC), for reports that take one.",
    until_help="End of the range (exclusive), for reports that take one.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=str),
    help="HTML file to write (self-contained: opens offline).",
)
@click.option(
    "--charts",
    "charts_dir",
    type=click.Path(file_okay=False, path_type=str),
    help="Also save every chart into this directory.",
)
@click.option(
    "--chart-format",
    type=click.Choice(["png", "svg", "json"]),
    default="png",
    show_default=True,
    help="Format of the charts saved with --charts (json: the Vega-Lite spec).",
)
@click.option("--list", "list_", is_flag=True, help="List the reports and their parameters.")
def command(
    journal_path: str,
    name: str | None,
    params: tuple[str, ...],
    since: dt.datetime | None,
    until: dt.datetime | None,
    output: str | None,
    charts_dir: str | None,
    chart_format: str,
    list_: bool,
) -> None:
    """Write a self-contained static HTML report (charts inlined, no CDN: opens offline).

    NAME is one of the reports of `journal report --list` (overview, run, causation, regrade,
    compliance); each is built from the same analysis as the notebook of that name. Report
    parameters are given as -p name=value; --since/--until set the time range.

    \b
    Examples:
      journal report overview -o overview.html
      journal report overview --since 2026-10-01 -p agent=support-triage -o triage.html --charts charts/
      journal report run -p stream=run-7-0000003 -o run.html
    """
    from toolkit.reports.html import save_charts, write_html
    from toolkit.reports.report_catalog import REPORTS, bind_report_params, build_report, get_report_kind

    if list_:
        for kind in REPORTS.values():
            params_text = ", ".join(f"{p.name} {p.type}" + ("" if p.default is None else "?") for p in kind.params)
            click.echo(f"{kind.name:<12} {kind.summary}\n{'':<12} -p {params_text}\n{'':<12} e.g. {kind.example}")
        return
    if not name:
        raise click.UsageError("give a report name (see journal report --list)")
    if not output and not charts_dir:
        raise click.UsageError("give -o FILE.html (and/or --charts DIR)")
    given = parse_params(params)
    values: dict[str, Any] = dict(given)
    for key, value in (("since", since), ("until", until)):
        if value is not None:
            values[key] = value
    with params_checked(given):
        typed = bind_report_params(get_report_kind(name), values)
    ends = given_time_range(click.get_current_context())  # --since/--until, else -p since=/until=
    for key in ("since", "until"):
        if key not in ends and typed.get(key) is not None:
            ends[key] = (key, given[key], typed[key])
    check_time_range(ends.get("since"), ends.get("until"))
    report = build_report(open_journal(journal_path), name, typed)
    if output:
        click.echo(str(write_html(report, output)))
    if charts_dir:
        for path in save_charts(report, charts_dir, chart_format):
            click.echo(str(path))
