from __future__ import annotations

import json

import click

from toolkit.cli.options import journal_option, open_journal

#: the Hint after Ctrl-C (journal prints it under "Aborted."): what the journal holds, what to do
INTERRUPTED = (
    "the tombstone is appended first (one commit), then the file is written and registered and, with "
    "--delete, the events are removed in one commit; run the same command again to finish: it resumes "
    "after its tombstone (no second one) and writes the same file"
)


@click.command("archive")
@journal_option
@click.argument("stream_id")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Archive file to write.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "evennia-archive"]),
    default="parquet",
    show_default=True,
    help="Parquet (every column) or an Evennia assistant archive JSON document.",
)
@click.option("--delete", is_flag=True, help="Then delete the stream's events, keeping the tombstone (anchored).")
@click.option("--reason", help="Why; kept in the tombstone event.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def command(
    journal_path: str, stream_id: str, output: str, fmt: str, delete: bool, reason: str | None, force: bool
) -> None:
    """Archive one stream: append a tombstone event (stream_archived), export the stream with it
    to FILE, register the archive's SHA-256 in the journal and, with --delete, remove the
    stream's events before the tombstone (the tombstone anchors the chain: verify still passes).

    \b
    Example:
      journal archive run-7-0000001 -o run-7-0000001.parquet --delete --reason "closed ticket"
    """
    from toolkit.reports.archive import archive_stream

    result = archive_stream(
        open_journal(journal_path), stream_id, output, fmt=fmt, delete=delete, reason=reason, force=force
    )
    for note in result.leftovers.notes():
        click.echo(f"archive: {note}", err=True)
    click.echo(json.dumps(result.summary()))
