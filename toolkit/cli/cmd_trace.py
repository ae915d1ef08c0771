from __future__ import annotations

import click

from toolkit.cli.options import format_option, journal_option, open_journal


@click.command("trace")
@journal_option
@click.argument("trace_id")
@format_option
def command(journal_path: str, trace_id: str, fmt: str, output: str | None) -> None:
    """Show the cross-stream timeline of one W3C trace: every event, from any stream or source,
    whose trace_id (in any case) or traceparent carries TRACE_ID (32 hex digits, or a whole
    traceparent).

    \b
    Example:
      journal trace 0af7651916cd43dd8448eb211c80319c
      journal trace 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 --format csv
    """
    from toolkit.analysis.timeline import normalise_trace_id, streams_of, trace_events
    from toolkit.reports.timelines import write_timeline

    timeline = trace_events(open_journal(journal_path), trace_id)
    streams = streams_of(timeline)
    click.echo(f"trace: {timeline.height} events in {streams.height} streams", err=True)
    write_timeline(timeline, fmt, output, title=f"trace {normalise_trace_id(trace_id)}")
