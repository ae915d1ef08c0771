from __future__ import annotations

import click

from toolkit.cli.key_options import key_options
from toolkit.cli.options import journal_option, open_journal


@click.command("checkpoint")
@journal_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Checkpoint file to write.")
@key_options
@click.option("--force", is_flag=True, help="Replace FILE if it exists (an earlier checkpoint).")
def command(journal_path: str, output: str, key_file: str | None, key_env: str | None, force: bool) -> None:
    """Export every stream's chain head (version, hash) to a file kept outside the journal,
    optionally HMAC-signed; journal verify --checkpoint FILE later names any stream rewritten,
    cut short or removed since.

    \b
    Example:
      journal checkpoint -o /safe/heads-$(date +%F).json --key-env JOURNAL_HMAC_KEY
    """
    from toolkit.journal.checkpoints import read_key, write_checkpoint

    key = read_key(key_file=key_file, key_env=key_env)
    info = write_checkpoint(open_journal(journal_path), output, key=key, force=force)
    click.echo(
        f"checkpoint: {info.streams} streams, {info.events} events at Delta version {info.delta_version}"
        f"{' (HMAC-signed)' if info.signed else ''} -> {info.path}",
        err=True,
    )
