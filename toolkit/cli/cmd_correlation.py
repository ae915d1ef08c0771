from __future__ import annotations

import datetime as dt

import click

from toolkit.cli.options import format_option, journal_option, open_journal
from toolkit.cli.time_options import since_until_options


@click.command("correlation")
@journal_option
@click.argument("correlation_id")
@since_until_options
@format_option
def command(
    journal_path: str,
    correlation_id: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
    fmt: str,
    output: str | None,
) -> None:
    """List every stream and event of one logical request or user session (CORRELATION_ID), in
    time order, with one line of explanation per event.

    \b
    Example:
      journal correlation session-7-0000003
      journal correlation session-7-0000003 --since 2026-10-01 --format json
    """
    from toolkit.analysis.timeline import correlation_events, streams_of
    from toolkit.reports.tables import write_table
    from toolkit.reports.timelines import write_timeline

    timeline = correlation_events(open_journal(journal_path), correlation_id, since=since, until=until)
    streams = streams_of(timeline)
    click.echo(f"correlation {correlation_id}: {timeline.height} events in {streams.height} streams", err=True)
    if fmt == "table" and not output:
        write_table(streams.to_arrow(), "table", title="streams")
    write_timeline(timeline, fmt, output, title=f"correlation {correlation_id}")
