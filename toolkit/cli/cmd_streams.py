from __future__ import annotations

import click

from toolkit.cli.options import format_option, journal_option, open_journal


@click.command("streams")
@journal_option
@click.option("--stream-type", help="Only streams of this type.")
@click.option("--limit", type=int, default=1_000_000, show_default=True, help="At most this many streams.")
@format_option
def command(journal_path: str, stream_type: str | None, limit: int, fmt: str, output: str | None) -> None:
    """List streams: event count, first/last time, tokens, recorded cost, errors.

    \b
    Example:
      journal streams --stream-type agent_run --format csv -o streams.csv
    """
    from toolkit.analysis.streams import list_streams
    from toolkit.reports.tables import write_table

    table = list_streams(open_journal(journal_path), stream_type=stream_type, limit=limit + 1)
    if table.num_rows > limit:  # one more than asked: say that the list is cut
        table = table.slice(0, limit)
        click.echo(f"note: the first {limit:,} streams only: raise --limit or choose a --stream-type", err=True)
    write_table(table, fmt, output, title="streams")
