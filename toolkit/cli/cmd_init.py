from __future__ import annotations

import click


@click.command("init")
@click.argument("path", type=click.Path(file_okay=False, path_type=str))
def command(path: str) -> None:
    """Create an empty journal at PATH.

    \b
    Example:
      journal init ./journals/prod && export AGENT_JOURNAL=./journals/prod
    """
    from toolkit.journal import Journal

    j = Journal.create(path)
    click.echo(f"created journal {j.path} (schema {j.config.schema_version})", err=True)
