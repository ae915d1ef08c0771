from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click

from toolkit.cli.cmd_replay import load, plugins_option
from toolkit.cli.options import OptionValueError, journal_option, open_journal


@click.command("snapshot")
@journal_option
@click.argument("stream_ids", nargs=-1)
@click.option(
    "--every",
    type=int,
    default=1000,
    show_default=True,
    help="Snapshot at versions N, 2N, 3N, …",
    callback=lambda ctx, param, value: every_value(value),
)
@click.option(
    "--aggregate", default="agent_run", show_default=True, help="Aggregate to snapshot (built-in or --plugins)."
)
@plugins_option
def command(
    journal_path: str, stream_ids: tuple[str, ...], every: int, aggregate: str, plugins: tuple[str, ...]
) -> None:
    """Store aggregate states every N versions in the journal's snapshots table (state_at starts there).

    Without STREAM_IDS: every stream with at least N events. Snapshots carry the reducer's
    fingerprint: after the reducer or its event models change, old ones are ignored. Prints the
    counts as JSON. Local journals only: an s3:// journal replays from its events.

    \b
    Examples:
      journal snapshot --every 1000
      journal snapshot support-triage-0001 --every 2
    """
    from toolkit.analysis.aggregates import get_aggregate
    from toolkit.analysis.snapshots import take_snapshots
    from toolkit.reports.progress import progress_bar

    load(plugins)
    agg = get_aggregate(aggregate)
    journal = open_journal(journal_path)
    with progress_bar("snapshots", None) as advance:
        report = take_snapshots(
            journal,
            every=every,
            aggregate=agg,
            stream_ids=list(stream_ids) if stream_ids else None,
            progress=lambda done, total: advance(1, total=total),
        )
    sys.stdout.write(json.dumps(asdict(report)) + "\n")


def every_value(value: int) -> int:
    """``--every`` below 1 is a usage error, as any bad option value."""
    if value < 1:
        raise OptionValueError("--every", str(value), "snapshots need a positive interval", "e.g. --every 1000")
    return value
