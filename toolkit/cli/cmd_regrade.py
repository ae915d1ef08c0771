from __future__ import annotations

import datetime as dt
import json
import sys

import click

from toolkit.cli.options import (
    cluster_spec,
    engine_options,
    format_option,
    journal_option,
    open_journal,
    param_option,
    params_checked,
    parse_params,
    timeout_option,
)
from toolkit.cli.time_options import time_range_options

SHOWN = 20  # findings shown in the terminal table; all of them are in the findings table
SEE_BATCH = "journal sql 'SELECT * FROM findings WHERE batch_id = $b' -p b="


def rules_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--rules", "rule_files", multiple=True, type=click.Path(dir_okay=False), metavar="FILE.py|FILE.sql",
        help="Load more rules from a file (repeatable).",
    )(f)


#: the Hint after Ctrl-C (journal prints it under "Aborted."): what the journal holds, what to do
INTERRUPTED = (
    "regrade never changes events, and writes its findings as one batch in one commit once every rule is "
    "judged (interrupted before, nothing was written); run it again to re-grade: its batch is then the "
    "latest"
)


@click.command("regrade")
@journal_option
@click.argument("rules", nargs=-1)
@param_option
@rules_option
@time_range_options(
    since_help="Only streams with an event at or after TIME (ISO 8601 or a date; UTC).",
    until_help="Only streams with an event before TIME (ISO 8601 or a date; UTC; exclusive).",
)
@click.option("--stream-type", "stream_types", multiple=True, help="Only streams of this type (repeatable).")
@click.option("--agent", "agents", multiple=True, help="Only streams of this agent (repeatable).")
@click.option("--stream", "streams", multiple=True, help="Only this stream (repeatable).")
@click.option("--workers", type=click.IntRange(1), help="Processes for Python rules (default: all cores).")
@click.option("--dry-run", is_flag=True, help="Judge and print, but write no findings.")
@click.option("--list", "list_", is_flag=True, help="List the known rules and their parameters.")
@timeout_option
@engine_options
@format_option
def command(
    journal_path: str,
    rules: tuple[str, ...],
    params: tuple[str, ...],
    rule_files: tuple[str, ...],
    since: dt.datetime | None,
    until: dt.datetime | None,
    stream_types: tuple[str, ...],
    agents: tuple[str, ...],
    streams: tuple[str, ...],
    workers: int | None,
    dry_run: bool,
    list_: bool,
    timeout_s: float | None,
    engine: str,
    scheduler: str | None,
    fmt: str,
    output: str | None,
) -> None:
    """Re-grade history: judge every selected stream by RULES (or 'all') and record the findings.

    Each failing stream becomes a finding (rule, fingerprint, stream, first failing version,
    position, time, message, evidence, failing events) in the journal's findings table, one batch
    per run; query them with journal sql "SELECT * FROM findings". Prints a summary: streams
    checked, streams failing, the first failing event, failures per day. Exit 3 when anything fails.

    -p name=value goes to every chosen rule with that parameter (rule.name=value for one rule).
    Selected streams are judged whole (--since/--until pick streams with an event in the window).
    A SQL rule whose query runs past --timeout is stopped and recorded as a rule error.

    \b
    Examples:
      journal regrade all
      journal regrade budget -p max_cost_usd=2.5 --since 2026-10-01
      journal regrade my_rule --rules ./my_rules.py --agent flight-booker
      journal regrade all --engine dask --scheduler tcp://scheduler:8786
    """
    import pyarrow as pa

    from toolkit.analysis.regrade import regrade
    from toolkit.analysis.rules import RuleSet
    from toolkit.analysis.verdicts import Selection
    from toolkit.reports.progress import progress_bar
    from toolkit.reports.tables import write_table

    if list_:
        rows = [r.describe() for r in RuleSet.load(rule_files).rules.values()]
        write_table(pa.Table.from_pylist(rows), fmt, output, title="rules")
        return
    if not rules:
        raise click.UsageError("name one or more rules, or 'all' (see journal regrade --list)")
    selection = Selection(
        since=since,
        until=until,
        stream_types=stream_types,
        agents=agents,
        streams=streams,
    )
    values = parse_params(params)
    journal = open_journal(journal_path)
    with (
        params_checked(values),
        progress_bar("re-grading" if engine == "local" else "re-grading on dask (shards)", len(rules)) as advance,
    ):
        runner = None
        if engine == "dask":
            from toolkit.analysis.distributed import dask_runner

            runner = dask_runner(
                cluster_spec(scheduler), progress=lambda _done, total: advance(1, total=total), time_limit_s=timeout_s
            )
        result = regrade(
            journal, rules, params=values, rule_files=rule_files, selection=selection,
            write=not dry_run, workers=workers, progress=lambda _name: advance(1), runner=runner,
            time_limit_s=timeout_s,
        )
    summary = result.summary()
    if result.findings_redacted:
        # the count takes the rule errors too: they name no stream, and an error may quote a payload
        errors = result.findings.column("stream_id").null_count
        of_streams = result.findings_redacted - errors
        counted = [f"{of_streams} finding{'s' * (of_streams != 1)} of its streams"] if of_streams else []
        if errors:
            counted.append(f"{errors} rule error{'s' * (errors != 1)} (no stream: an error may quote a payload)")
        click.echo(
            f"note: a redaction committed during the re-grade: the text of {' and of '.join(counted)} "
            "is its marker, as journal redact leaves the findings it finds",
            err=True,
        )
    if streams:  # a --stream naming no stream: the others were judged, this one silently not
        from toolkit.analysis.replay import unknown_stream

        heads = journal.heads()
        for missing in [s for s in dict.fromkeys(streams) if s not in heads]:
            error = unknown_stream(journal, missing)
            click.echo(f"warning: --stream {missing}: {error.message} ({error.hint})", err=True)
    if summary["streams_checked"] == 0 and not selection.everything:
        click.echo("warning: the selection matched no stream: nothing was judged "
                   "(check --stream/--agent/--stream-type/--since/--until; list streams with: journal streams)", err=True)
    shown = result.findings.select(
        ["rule", "kind", "severity", "stream_id", "first_failing_version", "occurred_at", "failing_events", "message"]
    )
    if fmt == "table" and not output:
        click.echo(f"batch {summary['batch_id']}" + (" (dry run: not written)" if dry_run else f": {result.written} findings written"))
        click.echo(f"streams checked: {summary['streams_checked']}, failing: {summary['streams_failing']}, "
                   f"findings: {summary['findings']}, rule errors: {summary['errors']}")
        first = summary["first_failure"]
        if first:
            click.echo(f"first failing event: {first['stream_id']} v{first['version']} at {first['occurred_at']} "
                       f"({first['rule']}: {first['message'] or 'fails'})")
        write_table(pa.Table.from_pylist(summary["rules"]), "table", title="by rule")
        days = {d: n for d, n in summary["failures_per_day"].items() if n}
        if days:
            quiet = len(summary["failures_per_day"]) - len(days)
            per_day = pa.table({"day": list(days), "failures": list(days.values())})
            title = "failures per day since the first" + (f" ({quiet} days without any not shown)" if quiet else "")
            write_table(per_day, "table", title=title)
        write_table(shown.slice(0, SHOWN), "table", title="findings")
        if shown.num_rows > SHOWN:
            click.echo(f"… and {shown.num_rows - SHOWN} more: {SEE_BATCH}{summary['batch_id']}")
    else:
        click.echo(json.dumps(summary, default=str), err=True)
        write_table(result.findings, fmt, output)
    if result.failing:
        sys.exit(3)
