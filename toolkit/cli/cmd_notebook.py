from __future__ import annotations

import click

from toolkit.cli.options import journal_option


@click.command("notebook")
@journal_option
@click.argument("name", required=False)
@click.option("--edit", is_flag=True, help="Open in marimo's editor instead of as an app.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (localhost by default).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: marimo picks a free one).")
@click.option("--headless", is_flag=True, help="Do not open a browser window.")
@click.option("--list", "list_", is_flag=True, help="List the notebooks.")
def command(
    journal_path: str, name: str | None, edit: bool, host: str, port: int | None, headless: bool, list_: bool
) -> None:
    """Open a marimo notebook on the journal as an interactive app on localhost.

    Needs the notebooks extra (pip install -e '.[notebooks]'). The same notebooks also run as
    plain scripts: python notebooks/overview.py --journal PATH.

    \b
    Examples:
      journal notebook overview
      journal notebook run_explorer -j data/demo-journal --port 2718 --headless
    """
    import shlex
    import subprocess

    from toolkit.reports.report_catalog import NOTEBOOKS, notebook_argv, notebook_env

    if list_:
        for key, summary in NOTEBOOKS.items():
            click.echo(f"{key:<14} {summary}")
        return
    if not name:
        raise click.UsageError("give a notebook name (see journal notebook --list)")
    argv = notebook_argv(name, edit=edit, host=host, port=port, headless=headless)
    env = notebook_env(journal_path)
    click.echo(f"starting: AGENT_JOURNAL={shlex.quote(env['AGENT_JOURNAL'])} {shlex.join(argv[1:])}", err=True)
    try:
        raise SystemExit(subprocess.call(argv, env=env))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
