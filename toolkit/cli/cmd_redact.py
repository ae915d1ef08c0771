from __future__ import annotations

import json

import click

from toolkit.cli.options import journal_option, open_journal

#: the Hint after Ctrl-C (journal prints it under "Aborted."): what the journal holds, what to do
INTERRUPTED = (
    "the redaction is recorded, then the payloads are replaced in one commit: each event holds its old "
    "payload (the chain verifies) or the marker; run the same redaction again to finish: events redacted "
    "already are skipped, archives, snapshots and old file versions are handled again"
)


@click.command("redact")
@journal_option
@click.option("--subject", "subject_id", required=True, help="subject_id whose payloads are erased.")
@click.option("--reason", help="Why (e.g. the erasure request's reference); kept in the redaction record.")
@click.option(
    "--keep-history",
    is_flag=True,
    help="Do not vacuum old file versions and log entries (the old payloads stay recoverable).",
)
@click.option(
    "--quarantine",
    is_flag=True,
    help="Also redact quarantined records (rejected import input) that mention the subject id as a word.",
)
def command(journal_path: str, subject_id: str, reason: str | None, keep_history: bool, quarantine: bool) -> None:
    """Erasure request: redact the data and metadata of every event of one subject.

    The events' skeleton (type, time, stream, version, ids, hashes) stays and the chain still
    verifies; a redaction record says which events were redacted and when (the subject is named
    by the SHA-256 of its id). Archives the toolkit wrote are rewritten too, snapshots and
    projections of the subject's streams dropped, the messages of their findings replaced by the
    marker, and old file versions and Delta log entries removed so the payloads leave the
    table's history. Quarantined records that mention the subject are counted
    (quarantine_kept), and redacted with --quarantine.

    \b
    Example:
      journal redact --subject user-0042 --reason "GDPR art. 17 request 2026-118"
    """
    from toolkit.journal.redaction import redact_subject

    result = redact_subject(
        open_journal(journal_path), subject_id, reason=reason, erase=not keep_history, quarantine=quarantine
    )
    for note in result.leftovers.notes():
        click.echo(f"redact: {note}", err=True)
    if result.quarantine_kept:
        click.echo(
            f"redact: {result.quarantine_kept} quarantined record(s) mention {subject_id!r} and were kept\n"
            "Hint: run the command again with --quarantine to redact them",
            err=True,
        )
    click.echo(json.dumps(result.summary()))
