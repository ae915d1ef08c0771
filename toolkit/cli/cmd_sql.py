from __future__ import annotations

import click

from toolkit.cli.options import (
    format_option,
    journal_option,
    open_journal,
    param_option,
    params_checked,
    parse_params,
    timeout_option,
)


@click.command("sql")
@journal_option
@click.argument("query", required=False)
@param_option
@click.option(
    "--list",
    "list_",
    is_flag=True,
    help="List the query catalog (queries/): name, summary, parameters, returned columns. "
    "With QUERY: only that area (journal sql --list costs).",
)
@timeout_option
@format_option
def command(
    journal_path: str,
    query: str | None,
    params: tuple[str, ...],
    list_: bool,
    timeout_s: float | None,
    fmt: str,
    output: str | None,
) -> None:
    """Run read-only SQL over the journal's views (events, ...).

    QUERY is SQL text, the name of a catalog query (see --list), or a .sql file.
    Values are bound as $name parameters, never pasted into the SQL.
    A query that runs past --timeout is stopped: exit 4, naming the limit.

    \b
    Examples:
      journal sql "SELECT model, sum(tokens_in) FROM events GROUP BY ALL"
      journal sql journal/stream_stats -p stream_id=support-triage-0001
      journal sql "SELECT * FROM events WHERE agent = \\$agent" -p agent=flight-booker
      journal sql --list rollups
      journal sql "SELECT count(*) FROM events a, events b" --timeout 30
    """
    from toolkit.analysis.sql import catalog_table, run_sql
    from toolkit.reports.tables import write_table

    if list_:
        table = catalog_table(query)
        if fmt == "table" and not output:  # the returned columns are long: csv/json carry them
            table = table.drop_columns(["returns"])
        write_table(table, fmt, output, title="queries")
        return
    if not query:
        raise click.UsageError("give SQL, a catalog query name or a .sql file (or --list)")
    values = parse_params(params)
    with params_checked(values):
        table = run_sql(open_journal(journal_path), query, values, time_limit_s=timeout_s)
    write_table(table, fmt, output)
