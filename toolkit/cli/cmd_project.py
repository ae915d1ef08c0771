from __future__ import annotations

import json
import sys

import click

from toolkit.cli.cmd_replay import load, plugins_option
from toolkit.cli.options import journal_option, open_journal


@click.command("project")
@journal_option
@click.argument("names", nargs=-1)
@click.option("--reset", is_flag=True, help="Rebuild from the first event instead of catching up.")
@click.option("--list", "list_", is_flag=True, help="List the projections (built-in and --plugins) and exit.")
@plugins_option
def command(journal_path: str, names: tuple[str, ...], reset: bool, list_: bool, plugins: tuple[str, ...]) -> None:
    """Catch projections up with the journal (incrementally, from their checkpoint).

    Each projection NAME is a table projection_NAME in the journal and a view of that name in
    journal sql. Built-ins: runs (one row per stream, agent-run state), tool_calls (each call
    with its result, latency, outcome). Without NAMES: every known projection. Prints one JSON
    line per projection (events read, rows, positions, rebuilt or not, events/s).

    \b
    Examples:
      journal project runs
      journal project tool_calls --reset
      journal sql "SELECT tool_name, avg(latency_ms) FROM projection_tool_calls GROUP BY ALL"
    """
    from toolkit.analysis.projections import catch_up, get_projection, projections
    from toolkit.reports.progress import progress_bar

    load(plugins)
    if list_:
        for name, p in projections().items():
            click.echo(f"{name}\t{p.description}")
        return
    chosen = [get_projection(n) for n in names] if names else list(projections().values())
    journal = open_journal(journal_path)
    for p in chosen:
        with progress_bar(f"project {p.name}", None) as advance:
            report = catch_up(journal, p, reset=reset, progress=lambda done, total: advance(0, total=total))
        line = {
            "projection": report.projection,
            "events": report.events,
            "rows": report.rows,
            "streams": report.streams,
            "from_position": report.from_position,
            "to_position": report.to_position,
            "rebuilt": report.rebuilt,
            "reason": report.reason,
            "seconds": round(report.seconds, 3),
            "events_per_second": round(report.events_per_second),
        }
        sys.stdout.write(json.dumps(line) + "\n")
