from __future__ import annotations

import os
import sys

import click

from toolkit.cli.key_options import key_options
from toolkit.cli.options import ENV_JOURNAL, format_option


@click.command("verify-export")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option(
    "-j", "--journal", "journal_path", default=None, type=click.Path(file_okay=False),
    help="Also check the bundle against this journal (default: none, or $AGENT_JOURNAL with --against-journal).",
)
@click.option("--against-journal", is_flag=True, help="Check against $AGENT_JOURNAL (or -j).")
@key_options
@format_option
def command(
    bundle: str,
    journal_path: str | None,
    against_journal: bool,
    key_file: str | None,
    key_env: str | None,
    fmt: str,
    output: str | None,
) -> None:
    """Check a compliance bundle: every file's SHA-256 and row count against the manifest (a
    changed file is named), the events' payload digests and hash chain, the chain heads, and that
    the titles, summaries, causation links, run summaries and report.html say what the export
    derives from the events; with -j JOURNAL, that every exported event and head is still in the
    journal. Exit 3 on a problem.

    \b
    Example:
      journal verify-export bundle-0003/
      journal verify-export bundle-0003/ -j data/demo-journal --key-env JOURNAL_HMAC_KEY
    """
    from toolkit.journal.checkpoints import read_key
    from toolkit.reports.compliance_verify import verify_bundle
    from toolkit.reports.tables import write_table

    path = journal_path or (os.environ.get(ENV_JOURNAL) if against_journal else None)
    if against_journal and not path:
        raise click.UsageError("--against-journal needs -j JOURNAL or $AGENT_JOURNAL")
    journal = None
    if path:
        from toolkit.cli.options import open_journal

        journal = open_journal(path)
    report = verify_bundle(bundle, journal=journal, key=read_key(key_file=key_file, key_env=key_env))
    notes = []
    if report.empty:
        notes.append("empty bundle (no events matched its selection)")
    if report.redacted_in_bundle:
        notes.append(f"{report.redacted_in_bundle} events were already redacted when exported")
    if report.redacted_since:
        notes.append(f"{report.redacted_since} events were redacted in the journal since the export")
    click.echo(
        f"verify-export: {report.events} events"
        + (" checked against the journal" if report.checked_against_journal else "")
        + (f" ({'; '.join(notes)})" if notes else "")
        + (": OK" if report.ok else f": {len(report.problems)} problems"),
        err=True,
    )
    if not report.ok:
        write_table(report.table(), fmt, output, title="bundle problems")
        if any(p.check.startswith("derived_") for p in report.problems):
            from toolkit.reports.compliance import toolkit_version

            if report.written_by != toolkit_version():
                click.echo(
                    f"Hint: the bundle was written by toolkit {report.written_by} and its derived content "
                    f"(titles, summaries, links, runs, report.html) recomputed by {toolkit_version()}; "
                    "if the explainers or the report changed between them, check it with the version that wrote it",
                    err=True,
                )
        sys.exit(3)
