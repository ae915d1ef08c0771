from __future__ import annotations

import datetime as dt
import json
import sys

import click

from toolkit.cli.cmd_replay import load, plugins_option
from toolkit.cli.options import format_option, journal_option, open_journal
from toolkit.cli.time_options import TIME


@click.command("state")
@journal_option
@click.argument("stream_id")
@click.option("--version", "version", type=int, help="State after this version (0: the initial state).")
@click.option(
    "--at",
    type=TIME,
    help="State at this time (UTC ISO 8601): after the last version whose events all occurred at or before it.",
)
@click.option("--diff-from", type=int, help="Show what changed between this version and --version (or the head).")
@click.option(
    "--aggregate", default="agent_run", show_default=True, help="Aggregate to fold with (built-in or --plugins)."
)
@click.option("--no-snapshots", is_flag=True, help="Fold from version 1 even when a snapshot exists.")
@plugins_option
@format_option
def command(
    journal_path: str,
    stream_id: str,
    version: int | None,
    at: dt.datetime | None,
    diff_from: int | None,
    aggregate: str,
    no_snapshots: bool,
    plugins: tuple[str, ...],
    fmt: str,
    output: str | None,
) -> None:
    """The state of a stream at a version or a time ("what did the agent know at step 23?").

    Without --version/--at: the state at the stream's last event. Events whose stored data no
    longer fits the aggregate's model are skipped and listed on stderr. --at T folds the longest
    prefix of the stream whose events all occurred by T (a real state of the run); when the
    stream's times are out of version order, a note on stderr names the events that occurred by T
    but follow a later one.

    \b
    Examples:
      journal state support-triage-0001 --version 3
      journal state support-triage-0001 --at 2026-11-21T10:00:00Z --format json
      journal state support-triage-0001 --diff-from 2
    """
    import pyarrow as pa

    from toolkit.analysis.aggregates import get_aggregate
    from toolkit.analysis.explain import short
    from toolkit.analysis.replay import changes_frame, diff_values, fold_to
    from toolkit.reports.tables import write_table

    load(plugins)
    agg = get_aggregate(aggregate)
    journal = open_journal(journal_path)
    result = fold_to(journal, stream_id, version=version, at=at, aggregate=agg, use_snapshots=not no_snapshots)
    if result.note:
        click.echo(f"note: {result.note}", err=True)
    for p in result.problems[:20]:
        click.echo(f"skipped {p.stream_id} v{p.version} ({p.event_type}): does not fit its model: {p.errors}", err=True)
    origin = f" (from the snapshot at version {result.snapshot_version})" if result.snapshot_version else ""
    click.echo(f"{stream_id}: {agg.name} state at version {result.version} of {result.last_version}{origin}", err=True)
    state = agg.to_dict(result.state)
    if diff_from is not None:
        before = agg.to_dict(fold_to(journal, stream_id, version=diff_from, aggregate=agg).state)
        frame = changes_frame(diff_values(before, state))
        write_table(frame.to_arrow(), fmt, output, title=f"{stream_id}: v{diff_from} → v{result.version}")
        return
    if fmt == "json" and not output:
        sys.stdout.write(json.dumps(state, sort_keys=True, default=str, ensure_ascii=False) + "\n")
        return
    items = state.items() if isinstance(state, dict) else [("state", state)]
    table = pa.table({"field": [str(k) for k, _ in items], "value": [short(v, 200) for _, v in items]})
    write_table(table, fmt, output, title=f"{stream_id} at version {result.version}")
