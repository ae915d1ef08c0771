from __future__ import annotations

import datetime as dt
import json

import click

from toolkit.cli.key_options import key_options
from toolkit.cli.options import journal_option, open_journal
from toolkit.cli.time_options import since_until_options


@click.command("export-compliance")
@journal_option
@click.option("--correlation", "correlation_id", help="Every event of one request / user session.")
@click.option("--subject", "subject_id", help="Every event concerning one person or account (subject_id).")
@click.option("--stream", "stream_ids", multiple=True, help="Every event of these streams (repeatable).")
@since_until_options
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Bundle directory (new or empty).")
@key_options
def command(
    journal_path: str,
    correlation_id: str | None,
    subject_id: str | None,
    stream_ids: tuple[str, ...],
    since: dt.datetime | None,
    until: dt.datetime | None,
    output: str,
    key_file: str | None,
    key_env: str | None,
) -> None:
    """Write a compliance bundle: the selected events in order with explanations, their causation
    links, a state summary per run, a self-contained HTML report, and a manifest with the query,
    the Delta version, the export time, row counts, the SHA-256 of every file and the hash-chain
    heads of the streams involved (HMAC-signed with --key-file/--key-env). Prints the manifest's
    SHA-256: keep it; journal verify-export checks the bundle later.

    \b
    Example:
      journal export-compliance --correlation session-7-0000003 -o bundle-0003/
      journal export-compliance --subject user-0042 --since 2026-10-01 --until 2026-11-01 -o user-0042/
    """
    from toolkit.journal.checkpoints import read_key
    from toolkit.reports.compliance import Selection, export_compliance

    selection = Selection(
        correlation_id=correlation_id,
        subject_id=subject_id,
        stream_ids=stream_ids or None,
        since=since,
        until=until,
    )
    journal = open_journal(journal_path)
    result = export_compliance(journal, selection, output, key=read_key(key_file=key_file, key_env=key_env))
    if stream_ids:  # a --stream naming no stream (a typo) selects nothing of it: name it and close ids
        from toolkit.analysis.replay import unknown_stream

        heads = journal.heads()
        for missing in [s for s in dict.fromkeys(stream_ids) if s not in heads]:
            error = unknown_stream(journal, missing)
            click.echo(f"warning: --stream {missing}: {error.message} ({error.hint})", err=True)
    if result.empty:
        click.echo("export-compliance: no events matched; the bundle is empty and still verifiable", err=True)
    else:
        click.echo(f"export-compliance: {result.events} events of {result.streams} runs -> {result.path}", err=True)
    click.echo(json.dumps({"bundle": result.path, "events": result.events, "manifest_sha256": result.manifest_sha256}))
