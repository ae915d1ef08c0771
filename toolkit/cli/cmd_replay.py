from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

import click

from toolkit.cli.options import format_option, journal_option, open_journal
from toolkit.cli.time_options import TIME, since_until_options

F = TypeVar("F", bound=Callable[..., Any])


def plugins_option(f: F) -> F:
    return click.option(
        "--plugins",
        "plugins",
        multiple=True,
        metavar="FILE.py|MODULE",
        help="Load user aggregates, projections and explainers from a Python file or module (repeatable).",
    )(f)


def load(plugins: tuple[str, ...]) -> None:
    if plugins:
        from toolkit.analysis.plugins import load_plugins

        loaded = load_plugins(list(plugins))
        what = [
            f"{k}: {', '.join(v)}"
            for k, v in (
                ("aggregates", loaded.aggregates),
                ("projections", loaded.projections),
                ("explainers", loaded.explainers),
            )
            if v
        ]
        click.echo(f"plugins: loaded {', '.join(loaded.modules)}" + (f" ({'; '.join(what)})" if what else ""), err=True)


@click.command("replay")
@journal_option
@click.argument("stream_id")
@click.option("--type", "types", help="Only these event types (comma-separated; source topics work too).")
@since_until_options
@click.option("--to-version", type=int, help="Stop after this version.")
@click.option(
    "--at",
    type=TIME,
    help="Stop where journal state --at stops: after the last version whose events all occurred by then.",
)
@plugins_option
@format_option
def command(
    journal_path: str,
    stream_id: str,
    types: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    to_version: int | None,
    at: dt.datetime | None,
    plugins: tuple[str, ...],
    fmt: str,
    output: str | None,
) -> None:
    """Show a stream's timeline, one readable line per event (title, summary, tags by the explainers).

    --since/--until keep the events whose own time is in the window; --at stops the timeline at the
    version journal state --at folds to (a stream's times can be out of version order: see the note).

    \b
    Examples:
      journal replay support-triage-0001
      journal replay support-triage-0001 --type tool_called,tool_result --format csv
      journal replay run-1 --to-version 23 --plugins my_explainers.py
      journal replay support-triage-0001 --at 2026-11-21T10:00:00Z
    """
    from toolkit.analysis.replay import locate, purged_start, replay, stream_events
    from toolkit.reports.tables import write_table

    load(plugins)
    wanted = [t.strip() for t in types.split(",") if t.strip()] if types else None
    journal = open_journal(journal_path)
    frame = replay(journal, stream_id, types=wanted, since=since, until=until, to_version=to_version, at=at)
    if wanted:  # a typo in --type gave an empty timeline and no word why
        events = stream_events(journal, stream_id)
        present = {e.event_type for e in events} | {e.source_type for e in events if e.source_type}
        if absent := [t for t in wanted if t not in present]:
            types_held = ", ".join(sorted({e.event_type for e in events}))
            click.echo(
                f"note: stream {stream_id} has no event of type {', '.join(absent)} (its types: {types_held})", err=True
            )
    if (note := purged_start(journal, stream_id)) is not None:
        click.echo(f"note: {note}", err=True)
    if at is not None and (note := locate(journal, stream_id, at=at).note) is not None:
        click.echo(f"note: {note}", err=True)
    if fmt == "table" and not output:
        frame = frame.select("version", "occurred_at", "title", "summary", "tags")
        frame = frame.with_columns(frame["tags"].list.join(",").alias("tags"))
    write_table(frame.to_arrow(), fmt, output, title=f"{stream_id}: {frame.height} events")
