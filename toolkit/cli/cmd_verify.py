from __future__ import annotations

import sys

import click

from toolkit.cli.key_options import key_options
from toolkit.cli.options import format_option, journal_option, open_journal


@click.command("verify")
@journal_option
@click.option(
    "--checkpoint",
    "checkpoint",
    type=click.Path(dir_okay=False, exists=True),
    help="Also check the journal against a checkpoint (journal checkpoint -o FILE).",
)
@key_options
@format_option
def command(
    journal_path: str,
    checkpoint: str | None,
    key_file: str | None,
    key_env: str | None,
    fmt: str,
    output: str | None,
) -> None:
    """Recompute every stream's hash chain; exit 3 and name the first broken event of each stream.

    Purges and redactions recorded by the journal are not breaks (they are counted); any other
    change is. With --checkpoint, streams rewritten, cut short or removed since the checkpoint
    are named too (--key-file/--key-env check its HMAC first). Events with a token count above
    10^12 (written before import and append refused them: their sums can wrap) are findings of
    check token_count, not breaks, and exit 3 too.

    \b
    Example:
      journal verify || echo "journal was altered, or holds token counts no sum can hold"
      journal verify --checkpoint /safe/heads.json --key-env JOURNAL_HMAC_KEY
    """
    from toolkit.journal.integrity import problems_table, verify_journal
    from toolkit.reports.progress import progress_bar
    from toolkit.reports.tables import write_table

    journal = open_journal(journal_path)
    total = sum(f.rows for f in journal.files())
    with progress_bar("verifying", total) as advance:
        report = verify_journal(journal, progress=advance)
    if checkpoint:
        from toolkit.journal.checkpoints import check_checkpoint, read_key

        assert report.breaks is not None
        report.breaks.extend(check_checkpoint(journal, checkpoint, key=read_key(key_file=key_file, key_env=key_env)))
    extra = "".join(
        f", {n} {label}" for n, label in ((report.redacted, "redacted events"), (report.anchored, "streams after a purge")) if n
    )
    click.echo(
        f"verified {report.events} events in {report.streams} streams{extra}"
        + (" against the checkpoint" if checkpoint else "")
        + ": "
        + (("chains OK" if report.token_counts else "OK") if report.ok else f"{len(report.breaks or [])} broken")
        + (f"; {n} token counts above 10^12 (not breaks: sums of them can wrap)" if (n := len(report.token_counts)) else ""),
        err=True,
    )
    if not report.clean:
        title = " and ".join(
            t for t, shown in (("broken chains", not report.ok), ("token counts above 10^12", report.token_counts)) if shown
        )
        write_table(problems_table(report), fmt, output, title=title)
        sys.exit(3)
