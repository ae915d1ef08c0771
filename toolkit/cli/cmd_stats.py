from __future__ import annotations

import click

from toolkit.cli.options import format_option, journal_option, open_journal


@click.command("stats")
@journal_option
@click.argument("stream_id")
@format_option
def command(journal_path: str, stream_id: str, fmt: str, output: str | None) -> None:
    """Summarise one stream: head version and hash, time span, tokens, cost; events by type.

    \b
    Example:
      journal stats support-triage-0001
    """
    from toolkit.analysis.streams import stream_stats
    from toolkit.reports.tables import write_table

    summary, by_type = stream_stats(open_journal(journal_path), stream_id)
    if fmt == "table" and not output:
        for k, v in summary.items():
            click.echo(f"{k:>14}: {v}")
        click.echo()
    write_table(by_type, fmt, output, title=f"{stream_id} by event type")
