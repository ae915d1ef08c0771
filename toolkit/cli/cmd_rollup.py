from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

import click

from toolkit.cli.options import cluster_spec, engine_options, format_option, journal_option, open_journal
from toolkit.cli.time_options import show_time, since_until_options

F = TypeVar("F", bound=Callable[..., Any])

METRIC_NAMES = ("usage", "totals", "top-runs", "tools", "goals", "ticks", "errors", "agents")
DIMENSION_NAMES = "model|tool|stream|stream_type|day|week|correlation|agent"


def price_options(f: F) -> F:
    f = click.option(
        "--as-of",
        "as_of",
        metavar="DATE",
        help="Price every event at the rates in force on DATE instead of at its own time.",
    )(f)
    return click.option(
        "--prices",
        "prices",
        multiple=True,
        metavar="FILE",
        help="Price table CSV (repeatable; 'default' is the shipped data/prices/prices.csv).",
    )(f)


@click.command("rollup")
@journal_option
@click.argument("metric", type=click.Choice(METRIC_NAMES), default="usage", required=False)
@click.option(
    "--by",
    "by",
    multiple=True,
    metavar="DIM[,DIM]",
    help=f"usage/totals: group by {DIMENSION_NAMES} (repeatable or comma-separated; default model).",
)
@since_until_options
@click.option(
    "--cost",
    type=click.Choice(["recorded", "repriced"]),
    default="recorded",
    show_default=True,
    help="Cost as the source recorded it, or repriced from the price table.",
)
@price_options
@click.option("--limit", type=click.IntRange(1), default=5, show_default=True, help="top-runs: how many runs.")
@engine_options
@format_option
def command(
    journal_path: str,
    metric: str,
    by: tuple[str, ...],
    since: dt.datetime | None,
    until: dt.datetime | None,
    cost: str,
    prices: tuple[str, ...],
    as_of: str | None,
    limit: int,
    engine: str,
    scheduler: str | None,
    fmt: str,
    output: str | None,
) -> None:
    """Roll events up into usage and cost: runs, events, LLM/tool calls, errors, tokens, cost.

    METRIC is one of: usage (default; grouped by --by: runs, events, LLM and tool calls, errors,
    tokens in/out/cache read/cache write/reasoning, cost, cost-per-run p50/p90/p99, cost per
    successful run), totals (the same grouping in one pass, without the per-run figures: faster on
    large journals), top-runs (the --limit costliest runs), tools (tool usage patterns), goals
    (goal completion rate), ticks (tick duration), errors (error frequency per day and agent),
    agents (token spend per agent). Each is a catalog query (journal sql --list: rollups/, costs/).

    \b
    Examples:
      journal rollup --by model,day
      journal rollup --by agent --by week --cost repriced --since 2026-10-01
      journal rollup top-runs --limit 5 --cost repriced
      journal rollup tools --format csv -o tools.csv
      journal rollup --by model,day --engine dask
    """
    from toolkit.analysis.rollup import parse_dimensions, rollup_metric, unpriced_note
    from toolkit.cli.time_options import parse_time_option
    from toolkit.errors import QueryError
    from toolkit.reports.tables import write_table

    if by and metric not in ("usage", "totals"):  # the other metrics have their own grouping: --by was ignored
        raise click.BadParameter(
            f"{metric} is not grouped by --by (only usage and totals are); drop --by, or roll up usage --by ...",
            param_hint="--by",
        )
    try:
        dims = parse_dimensions(list(by) or ["model"])
    except QueryError as e:
        raise click.BadParameter(e.message + f" (one of {DIMENSION_NAMES})", param_hint="--by") from e
    as_of_at = parse_time_option(as_of, "--as-of")
    if cost == "recorded" and (prices or as_of):  # the recorded cost reads no price: they would be ignored
        raise click.BadParameter("--prices and --as-of reprice events: add --cost repriced", param_hint="--cost")
    if engine == "dask":
        if metric != "usage":
            raise click.BadParameter(f"--engine dask computes the usage rollup, not {metric}", param_hint="--engine")
        from toolkit.analysis.distributed import rollup_dask
        from toolkit.reports.progress import progress_bar

        with progress_bar("rolling up on dask (shards)", None) as advance:
            table = rollup_dask(
                open_journal(journal_path), dims, since=since, until=until, cost=cost,  # type: ignore[arg-type]
                prices=list(prices) or None, as_of=as_of_at, spec=cluster_spec(scheduler),
                progress=lambda _done, total: advance(1, total=total),
            )
        note = unpriced_note(table, cost)  # type: ignore[arg-type]
        if note:
            click.echo(note, err=True)
        _warn_if_empty(table.num_rows, since, until)
        write_table(table, fmt, output, title=f"{metric} ({cost} cost)")
        return
    table, note = rollup_metric(
        open_journal(journal_path),
        metric,
        by=dims,
        since=since,
        until=until,
        cost=cost,  # type: ignore[arg-type]
        prices=list(prices) or None,
        as_of=as_of_at,
        limit=limit,
    )
    if note:
        click.echo(note, err=True)
    _warn_if_empty(table.num_rows, since, until)
    write_table(table, fmt, output, title=f"{metric} ({cost} cost)")


def _warn_if_empty(rows: int, since: dt.datetime | None, until: dt.datetime | None) -> None:
    """An empty rollup says why on stderr: a mistyped date looks like a quiet month otherwise."""
    if rows:
        return
    if since or until:
        window = " ".join(f"--{k} {show_time(v)}" for k, v in (("since", since), ("until", until)) if v)
        click.echo(f"warning: nothing to roll up in the time window ({window}): no event there, or none with "
                   "what this metric counts (see the journal's span with: journal streams)", err=True)
    else:
        click.echo("warning: no event to roll up (the journal is empty, or no event has what this metric counts)",
                   err=True)
