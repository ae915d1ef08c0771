from __future__ import annotations

import click

from toolkit.cli.options import format_option, journal_option, open_journal


@click.command("stats")
@journal_option
@click.argument("stream_id")
@format_option
def command(journal_path: str, stream_id: str, fmt: str, output: str | None) -> None:
    """Summarise one stream: head version and hash, time span, tokens, cost; events by type.

    Every format carries both: csv is a key,value section, a blank line, then the events by
    type; json is one object {"summary": {...}, "by_event_type": [...]}; parquet holds the
    events by type with the summary (JSON) in the file's metadata under "summary".

    \b
    Examples:
      journal stats support-triage-0001
      journal stats support-triage-0001 --format json
    """
    from toolkit.analysis.streams import stream_stats
    from toolkit.reports.tables import write_summary_table

    summary, by_type = stream_stats(open_journal(journal_path), stream_id)
    write_summary_table(summary, by_type, fmt, output, rows="by_event_type", title=f"{stream_id} by event type")
