from __future__ import annotations

import json

import click

from toolkit.cli.options import journal_option, open_journal
from toolkit.cli.time_options import parse_time_option

#: the Hint after Ctrl-C (journal prints it under "Aborted."): what the journal holds, what to do
INTERRUPTED = (
    "a purge archives and records the events, then removes them in one commit: interrupted before it, "
    "every event is still in the journal (it verifies); run the same purge again: it first rolls back the "
    "unfinished records and archive, so each removal is recorded once"
)


@click.command("purge")
@journal_option
@click.option(
    "--before", required=True, metavar="TIME", help="Remove events that occurred before TIME (ISO 8601, UTC)."
)
@click.option(
    "--archive",
    type=click.Path(dir_okay=False),
    help="Archive file (Parquet); default JOURNAL/purge-archives/<purge id>.parquet.",
)
@click.option("--force", is_flag=True, help="Purge even events younger than the journal's minimum retention.")
def command(journal_path: str, before: str, archive: str | None, force: bool) -> None:
    """Apply the retention policy: archive, then remove, events older than --before.

    Refuses events younger than retention_min_days (journal.toml, default 183) unless --force.
    The removed events go to a Parquet archive first; the journal records what went (counts,
    time range, archive SHA-256) with a chain anchor per stream, so journal verify still checks
    every event that remains. Prints the purge record as JSON (nothing when nothing is older).

    \b
    Example:
      journal purge --before 2026-05-01
    """
    from toolkit.journal.retention import purge_before

    when = parse_time_option(before, "--before")
    assert when is not None
    result = purge_before(
        open_journal(journal_path), when, force=force, archive=archive, progress=lambda m: click.echo(m, err=True)
    )
    for note in result.leftovers.notes():
        click.echo(f"purge: {note}", err=True)
    if result.events == 0:  # nothing was written: no purge record to print
        click.echo(f"purge: nothing to purge: no events before {when.isoformat()}", err=True)
        return
    click.echo(json.dumps(result.summary()))
