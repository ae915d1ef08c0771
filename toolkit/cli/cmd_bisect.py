from __future__ import annotations

import json
import shlex
import sys
from typing import TYPE_CHECKING, Any

import click

from toolkit.cli.cmd_regrade import rules_option
from toolkit.cli.options import (
    journal_option,
    open_journal,
    param_option,
    params_checked,
    parse_params,
    timeout_option,
)

if TYPE_CHECKING:
    from toolkit.analysis.regrade import GradedBatch


@click.command("bisect")
@journal_option
@click.argument("rule")
@click.argument("stream", required=False)
@click.option("--global", "global_", is_flag=True, help="Search the whole journal in position order (global rules).")
@param_option
@rules_option
@click.option("--linear", is_flag=True, help="Scan every event instead of bisecting.")
@click.option("--from-findings", is_flag=True,
              help="Bisect the first failing stream of RULE's latest re-grade (journal regrade), naming the streams "
                   "that re-grade selected; nothing when RULE held there.")
@click.option("--batch", "batch_id", help="With --from-findings: take the stream from this findings batch instead.")
@timeout_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format.")
def command(
    journal_path: str,
    rule: str,
    stream: str | None,
    global_: bool,
    params: tuple[str, ...],
    rule_files: tuple[str, ...],
    linear: bool,
    from_findings: bool,
    batch_id: str | None,
    timeout_s: float | None,
    fmt: str,
) -> None:
    """Find the first version of STREAM where RULE stops holding (binary search for monotone rules).

    Prints the event, its explanation, the state before and after it, and how many rule
    evaluations it took. Rules that do not declare themselves monotone, or whose verdicts
    contradict monotonicity during the search, get a linear scan instead (and it says so).
    Every probe reads the journal as it was when the bisection began (printed as "journal
    version N"): an import or append committing meanwhile changes nothing.
    Exit 3 when the rule fails somewhere, 0 when it holds throughout. A SQL rule's probe that runs
    past --timeout is stopped: exit 4, naming the limit (Ctrl-C stops a running probe too).

    \b
    Examples:
      journal bisect budget run-7-0000012 -p max_cost_usd=2
      journal bisect budget --from-findings        # after: journal regrade budget
      journal bisect budget --from-findings --batch 0b5e…   # an earlier batch's first failing stream
      journal bisect my_global_rule --global --rules ./rules.py
    """
    from toolkit.analysis.bisection import bisect_global, bisect_stream

    journal = open_journal(journal_path)
    if batch_id is not None and not from_findings:
        raise click.UsageError("--batch goes with --from-findings")
    given = parse_params(params)
    p: dict[str, Any] = dict(given)
    if from_findings and stream is None and not global_:
        batch = _batch_from_findings(journal, rule, batch_id)
        if batch is None:
            return
        stream = batch.stream_id
        shown = ", ".join(f"{k}={v}" for k, v in sorted(batch.params.items())) or "none"
        if p:
            click.echo(f"note: judged with the parameters given by -p, not the batch's ({shown})", err=True)
        else:  # the stream failed the rule as that batch bound it: judge it the same way
            p = batch.params
            if batch.params:
                click.echo(f"with the batch's parameters: {shown}", err=True)
    if global_ == (stream is not None):
        raise click.UsageError("give a STREAM, --from-findings, or --global for a rule over the whole journal")
    with params_checked(given):
        if global_:
            result = bisect_global(
                journal, rule, params=p, rule_files=rule_files, force_linear=linear, time_limit_s=timeout_s
            )
        else:
            assert stream is not None
            result = bisect_stream(
                journal, rule, stream, params=p, rule_files=rule_files, force_linear=linear, time_limit_s=timeout_s
            )
    if fmt == "json":
        doc = {**result.summary(), "event": result.event, "explanation": result.explanation,
               "state_before": result.state_before, "state_after": result.state_after, "probes": result.probes}
        click.echo(json.dumps(doc, default=str, indent=1))
    else:
        where = f"stream {result.stream_id}" if result.stream_id else "the journal"
        plural = "" if result.evaluations == 1 else "s"
        click.echo(f"{result.method}: {result.evaluations} rule evaluation{plural} over {result.events} events of {where}")
        click.echo(f"journal version {result.journal_version} (as the bisection began: later commits are not judged)")
        if result.note:
            click.echo(f"note: {result.note}")
        if result.version is None:
            click.echo(f"rule {result.rule} holds throughout")
        else:
            unit = "version" if result.stream_id else "position"
            click.echo(f"first failing {unit}: {result.version}" + (f" — {result.message}" if result.message else ""))
            if result.event:
                e = result.event
                click.echo(f"event: {e['stream_id']} v{e['version']} {e['event_type']} at {e['occurred_at']} (id {e['event_id']})")
            if result.explanation:
                click.echo(f"explanation: {result.explanation['title']}: {result.explanation['summary']}")
            if result.state_before is not None:
                click.echo("state before -> after (changed fields):")
                for key, before, after in _changes(result.state_before, result.state_after):
                    click.echo(f"  {key}: {before} -> {after}")
    if result.version is not None:
        sys.exit(3)


def _batch_from_findings(journal: Any, rule: str, batch_id: str | None) -> GradedBatch | None:
    """RULE's latest re-grade (or ``batch_id``) when it found a failing stream, saying which batch
    that is; None, said on stderr, when there is nothing to bisect."""
    from toolkit.analysis.regrade import graded_batches

    batches = graded_batches(journal, rule)
    if not batches:
        click.echo(f"rule {rule} was never re-graded in this journal: nothing to bisect "
                   f"(run journal regrade {rule} first, or name a STREAM)", err=True)
        return None
    chosen = batches[0] if batch_id is None else next((b for b in batches if b.batch_id == batch_id), None)
    if chosen is None:
        known = ", ".join(b.batch_id for b in batches[:5])
        raise click.BadParameter(f"no findings batch {batch_id} judged rule {rule} (latest first: {known})",
                                 param_hint="--batch")
    latest = batches[0]
    which = "latest re-grade" if chosen is latest else "re-grade"
    which += f" (batch {chosen.batch_id}, graded {chosen.graded_at.isoformat(timespec='seconds')}{_scope(chosen)})"
    if chosen is not latest:
        which += f", not its latest (batch {latest.batch_id}, graded {latest.graded_at.isoformat(timespec='seconds')})"
    if chosen.stream_id is not None:
        click.echo(f"bisecting {chosen.stream_id}: the first failing stream of {rule}'s {which}", err=True)
        return chosen
    checked = f" of the {chosen.streams_checked} it checked" if chosen.streams_checked is not None else ""
    if chosen.errors:
        said = f"rule {rule} raised in its {which} (see its findings of kind error); no stream{checked} failed it"
    else:
        said = f"rule {rule} held in its {which}: no stream{checked} failed it"
    said += ", nothing to bisect"
    older = next((b for b in batches[batches.index(chosen) + 1:] if b.stream_id is not None), None)
    if older is not None:
        graded = older.graded_at.isoformat(timespec="seconds")
        said += (f"; an earlier re-grade (batch {older.batch_id}, graded {graded}{_scope(older)}) "
                 f"found {older.stream_id} failing: journal bisect {rule} --from-findings --batch {older.batch_id}")
    click.echo(said, err=True)
    return None


def _scope(batch: GradedBatch) -> str:
    """Which streams the batch graded, as the regrade options that chose them (a batch of a few
    streams is not the whole journal's verdict); empty when the batch did not record it."""
    sel = batch.selection
    if sel is None:
        return ""
    flags = []
    for flag, key in (("--stream-type", "stream_types"), ("--agent", "agents"), ("--stream", "streams")):
        values = sel.get(key) or []
        flags += [f"{flag} {shlex.quote(str(v))}" for v in values[:3]]
        if len(values) > 3:
            flags.append(f"and {len(values) - 3} more {flag}")
    flags += [f"--{key} {sel[key]}" for key in ("since", "until") if sel.get(key)]
    if not flags:
        return ", of every stream"
    return f"; it graded only the streams matching {' '.join(flags)}"


def _changes(before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    if not isinstance(before, dict) or not isinstance(after, dict):
        return [("state", before, after)] if before != after else []
    return [(k, before.get(k), after.get(k)) for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
