from __future__ import annotations

import click

from toolkit.cli.options import journal_option, open_journal

#: the Hint after Ctrl-C (journal prints it under "Aborted."): what the journal holds, what to do
INTERRUPTED = (
    "compact replaces each partition in its own commit by the same events, so no event changed; run it "
    "again to compact the partitions left (files of the interrupted one are removed now or by a later "
    "vacuum)"
)


@click.command("compact")
@journal_option
@click.option("--full", is_flag=True, help="Rewrite every partition, not only those with several files.")
@click.option("--vacuum/--no-vacuum", default=True, show_default=True, help="Delete unreferenced files afterwards.")
@click.option(
    "--retain-hours",
    type=click.IntRange(min=0),
    help="Keep unreferenced files younger than this (default: the journal's guard).",
)
@click.option("--force", is_flag=True, help="Allow --retain-hours below the journal's guard.")
def command(journal_path: str, full: bool, vacuum: bool, retain_hours: int | None, force: bool) -> None:
    """Merge small files into files sorted by (stream_id, version), then vacuum.

    \b
    Example:
      journal compact --retain-hours 0 --force   # single-user journal, nobody reading old versions
    """
    from toolkit.journal.maintenance import compact, vacuum_hours
    from toolkit.journal.maintenance import vacuum as do_vacuum
    from toolkit.reports.progress import progress_bar

    journal = open_journal(journal_path)
    if vacuum:
        vacuum_hours(journal, retain_hours, force)  # a vacuum it would refuse: refused before compacting
    with progress_bar("compacting partitions", None) as advance:
        result = compact(journal, full=full, progress=lambda done, total: advance(1, total))
    click.echo(
        f"compacted {result.partitions} partitions ({result.rows} events): "
        f"{result.files_before} files -> {result.files_after}",
        err=True,
    )
    if vacuum:
        deleted = do_vacuum(journal, retain_hours=retain_hours, force=force)
        click.echo(f"vacuum deleted {len(deleted)} unreferenced files", err=True)
