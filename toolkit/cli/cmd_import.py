from __future__ import annotations

import json
import sys
from typing import Any

import click

from toolkit.cli.options import OptionValueError, journal_option, open_journal, stream_type_value

#: the Hint after Ctrl-C (journal prints it under "Aborted."): what the journal holds, what to do
INTERRUPTED = (
    "one commit adds the import's events, so the journal holds all of them or none; run the same import "
    "again to finish: event ids come from the source, so events already imported are skipped, not added "
    "twice (interrupted while saving the rule keys, the import is complete, as its counts printed say: "
    "journal regrade saves them)"
)


@click.command("import")
@journal_option
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--from",
    "fmt",
    default="auto",
    show_default=True,
    metavar="FORMAT",
    help="Source format: auto (sniffs and says which), agentstore, eventsourcing, evennia-archive, otlp, chat, "
    "jsonl, csv or parquet.",
    callback=lambda ctx, param, value: format_value(value),
)
@click.option("--stream-type", help="Stream type for events whose source names none.", callback=stream_type_value)
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False), help="TOML mapping for generic files.")
@click.option(
    "--on-error",
    type=click.Choice(["fail", "quarantine"]),
    default="fail",
    show_default=True,
    help="fail: stop at the first bad record, write nothing; quarantine: import the rest, keep the bad ones.",
)
@click.option("--cipher-key", envvar="CIPHER_KEY", help="AES key (base64) of encrypted eventsourcing stores.")
@click.option("--application", help="eventsourcing: import only this application's events (Django/Postgres layouts).")
@click.option(
    "--idempotency-key",
    "idempotency_field",
    metavar="FIELD",
    help="Fill idempotency_key from this column or payload path (e.g. data.dispatch_id) where the source gives none.",
    callback=lambda ctx, param, value: field_value(value),
)
@click.option("--dry-run", is_flag=True, help="Read and validate only; write nothing.")
@click.option(
    "--rule-keys/--no-rule-keys",
    default=True,
    show_default=True,
    help="When the journal holds 1M to 15M events after the import, save the rule keys journal regrade reads "
    "(larger journals are re-graded in shards, without them).",
)
def command(
    journal_path: str,
    paths: tuple[str, ...],
    fmt: str,
    stream_type: str | None,
    mapping: str | None,
    on_error: str,
    cipher_key: str | None,
    application: str | None,
    idempotency_field: str | None,
    dry_run: bool,
    rule_keys: bool,
) -> None:
    """Import exported journals into the journal (idempotent: a second import adds nothing).

    Prints the counts (read, imported, already present, rejected, quarantined, snapshots kept) as JSON on stdout.
    Rejected records are shown on stderr with file:line and the reason; with --on-error
    quarantine they are kept in the journal's quarantine table (journal sql "SELECT * FROM quarantine").
    A file named twice (a symlink, a/../a/f) is read once, with a note.

    \b
    Examples:
      journal import events.jsonl
      journal import ./agentstore-data --on-error quarantine
    """
    from pathlib import Path

    from toolkit.ingest.base import ImportOptions, display_path
    from toolkit.ingest.runner import choose_importer, import_paths
    from toolkit.journal import Journal
    from toolkit.reports.progress import progress_bar

    for path in paths:  # every path found (and sniffed) before a new journal is made for them
        importer = choose_importer(path, fmt)
        if fmt == "auto":
            click.echo(f"{display_path(path)}: format {importer.name} (sniffed)", err=True)
    journal = Journal.create(journal_path, exist_ok=True) if not dry_run else open_journal(journal_path)
    options = ImportOptions(
        stream_type=stream_type,
        mapping=Path(mapping) if mapping else None,
        cipher_key=cipher_key,
        extra={"application_name": application} if application else {},
        idempotency_field=idempotency_field,
    )
    with progress_bar("importing", None) as advance:
        report = import_paths(
            journal,
            list(paths),
            fmt=fmt,
            on_error="quarantine" if on_error == "quarantine" else "fail",
            dry_run=dry_run,
            options=options,
            progress=advance,
        )
    for r in report.rejections[:20]:
        click.echo(f"rejected {r.source}: {r.location}: {r.reason}", err=True)
    if len(report.rejections) > 20:
        more = len(report.rejections) - 20
        click.echo(f'… and {more} more; see them with: journal sql "SELECT * FROM quarantine"', err=True)  # noqa: S608
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    sys.stdout.write(json.dumps(report.summary()) + "\n")
    sys.stdout.flush()  # the import is committed: its counts are out before the keys' save (Ctrl-C there)
    if rule_keys and not dry_run and report.imported:
        _prepare_rule_keys(journal)


def _prepare_rule_keys(journal: Any) -> None:
    """A large journal's rule keys, saved now: the first ``journal regrade`` reads them."""
    import time

    from toolkit.analysis import rule_keys, shared_pass
    from toolkit.reports.progress import progress_bar

    # over the shared pass's memory budget a re-grade judges shards of streams, never the keys:
    # a save would hold the whole journal in memory for nothing
    if not rule_keys.KEYS_AT_IMPORT <= shared_pass.journal_events(journal) <= shared_pass.SHARD_EVENTS:
        return
    if rule_keys.serving(journal.pinned()) is not None:  # saved before appends of a small share: read with them
        click.echo("rule keys: those saved before serve journal regrade with the events imported since", err=True)
        return
    t0 = time.perf_counter()
    with progress_bar("saving rule keys", None):
        try:
            folder = rule_keys.prepare(journal)
        except shared_pass.KEYS_NOT_SAVED as e:  # the events are in; a re-grade reads them without keys
            click.echo(f"note: rule keys not saved ({e}); journal regrade reads the events instead", err=True)
            return
    if folder is not None:
        size = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
        click.echo(f"rule keys saved for journal regrade ({size:,.0f} MB, {time.perf_counter() - t0:.1f} s)", err=True)


def format_value(value: str) -> str:
    """``--from``: a format no importer reads is a usage error (before a journal is made for it)."""
    from toolkit.ingest.runner import REGISTRY

    if value != "auto" and value not in REGISTRY:
        raise OptionValueError(
            "--from", value, "not a format journal import reads", f"formats: auto, {', '.join(REGISTRY)}"
        )
    return value


def field_value(value: str | None) -> str | None:
    """``--idempotency-key``: a field that is neither a column nor a payload path is a usage error."""
    if value is None:
        return None
    from toolkit.errors import ToolkitError
    from toolkit.ingest.idempotency import check_field

    try:
        check_field(value)
    except ToolkitError as e:
        raise OptionValueError(
            "--idempotency-key", value, "not a canonical column nor a data./metadata. path", e.hint or ""
        ) from e
    return value
