from __future__ import annotations

import datetime as dt

import click

from toolkit.cli.cmd_rollup import price_options
from toolkit.cli.options import format_option, journal_option, open_journal
from toolkit.cli.time_options import since_until_options


@click.command("reprice")
@journal_option
@price_options
@since_until_options
@click.option("--unpriced", is_flag=True, help="List the events the price table cannot price, and why.")
@format_option
def command(
    journal_path: str,
    prices: tuple[str, ...],
    as_of: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    unpriced: bool,
    fmt: str,
    output: str | None,
) -> None:
    """Reprice every event from a price table and compare with the recorded cost (a dry run).

    Nothing is rewritten: the repriced cost is computed from the tokens (cache and reasoning
    tokens priced at their own rates, counted once) next to the recorded cost_usd, and the
    difference is shown per day and model. Events with tokens but no price (no model, a model
    the table does not know, no price in force at that time) are counted per row and listed
    with --unpriced, never priced at zero.

    \b
    Examples:
      journal reprice
      journal reprice --prices my-prices.csv --as-of 2026-11-01 --format csv
      journal reprice --prices default --prices extra-models.csv --unpriced
    """
    from toolkit.analysis.pricing import reprice_report
    from toolkit.cli.time_options import parse_time_option
    from toolkit.reports.tables import write_table

    table, note = reprice_report(
        open_journal(journal_path),
        prices=list(prices) or None,
        as_of=parse_time_option(as_of, "--as-of"),
        since=since,
        until=until,
        unpriced=unpriced,
    )
    click.echo(note, err=True)
    title = "events without a price" if unpriced else "recorded vs repriced cost by day and model"
    write_table(table, fmt, output, title=title)
