from __future__ import annotations

import sys

import click

from toolkit.cli.options import format_option, journal_option, open_journal


@click.command("verify")
@journal_option
@format_option
def command(journal_path: str, fmt: str, output: str | None) -> None:
    """Recompute every stream's hash chain; exit 3 and name the first broken event of each stream.

    \b
    Example:
      journal verify || echo "journal was altered"
    """
    from toolkit.journal.integrity import breaks_table, verify_journal
    from toolkit.reports.progress import progress_bar
    from toolkit.reports.tables import write_table

    journal = open_journal(journal_path)
    total = sum(f.rows for f in journal.files())
    with progress_bar("verifying", total) as advance:
        report = verify_journal(journal, progress=advance)
    click.echo(
        f"verified {report.events} events in {report.streams} streams: "
        + ("OK" if report.ok else f"{len(report.breaks or [])} broken"),
        err=True,
    )
    if not report.ok:
        write_table(breaks_table(report), fmt, output, title="broken chains")
        sys.exit(3)
