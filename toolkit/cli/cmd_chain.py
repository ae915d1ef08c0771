from __future__ import annotations

import json

import click

from toolkit.cli.options import format_option, journal_option, open_journal


@click.command("chain")
@journal_option
@click.argument("event_id", required=False)
@click.option(
    "--orphans",
    "list_orphans",
    is_flag=True,
    help="Instead: list every event whose cause is not in the journal (exit 3 if any); a cause a purge "
    "removed is not an orphan (named on stderr with the purge).",
)
@click.option("--up", is_flag=True, help="Ancestors only: back to the root input.")
@click.option("--down", is_flag=True, help="Descendants only: every effect.")
@click.option("--both", is_flag=True, help="Ancestors and descendants (default).")
@click.option("--depth", type=click.IntRange(0), default=None, help="Follow at most N causation links each way.")
@format_option
def command(
    journal_path: str,
    event_id: str | None,
    list_orphans: bool,
    up: bool,
    down: bool,
    both: bool,
    depth: int | None,
    fmt: str,
    output: str | None,
) -> None:
    """Walk the causation chain of EVENT_ID across streams: causes up to the root input,
    effects down to every consequence; orphans (a cause not in the journal) and cycles are named.
    An event id several events carry (imported duplicates) is named ambiguous; as a cause it is
    the copy in its effect's stream, then of its correlation, then the latest before it.

    --format table prints an indented tree with one explanation per event; json prints the graph
    (nodes, edges, orphans, cycles, ambiguous); csv/parquet print the nodes with their depth and parent.

    \b
    Example:
      journal chain 8c24ab68-39d3-5393-8f68-000000000007 --up
      journal chain EVENT_ID --down --depth 3 --format json > chain.json
      journal chain --orphans --format csv
    """
    import pyarrow as pa

    from toolkit.analysis.causation import walk_chain
    from toolkit.reports.causation_tree import render_chain
    from toolkit.reports.tables import emit_text, write_table

    if list_orphans:
        import sys

        import polars as pl

        from toolkit.analysis.causation import find_missing_causes

        missing = find_missing_causes(open_journal(journal_path))  # one scan: orphans and purged causes
        found = missing.filter(pl.col("removed_by").is_null()).drop("removed_by")
        click.echo(f"orphans: {found.height} events whose cause is not in the journal", err=True)
        purged = missing.filter(pl.col("removed_by").is_not_null())
        for purge_id, n in purged.group_by("removed_by").len().sort("removed_by").iter_rows():
            click.echo(f"not orphans: {n} events whose cause was removed by purge {purge_id}", err=True)
        if found.height:
            write_table(found.to_arrow(), fmt, output, title="orphans")
            sys.exit(3)
        return
    if event_id is None:
        raise click.UsageError("give an EVENT_ID (or --orphans)")
    given = [name for name, on in (("--up", up), ("--down", down), ("--both", both)) if on]
    if len(given) > 1:  # one direction: the last flag used to win silently
        raise click.UsageError(f"{', '.join(given)} exclude each other: give one direction (default --both)")
    direction = given[0][2:] if given else "both"
    chain = walk_chain(open_journal(journal_path), event_id, direction=direction, depth=depth)  # type: ignore[arg-type]
    if fmt == "json":
        emit_text(json.dumps(chain.graph(), ensure_ascii=False, default=str, indent=1) + "\n", output)
    elif fmt == "table" and not output:
        for line in render_chain(chain):
            click.echo(line)
    else:
        nodes = chain.nodes.drop("data", "metadata").to_arrow()
        write_table(pa.Table.from_batches(nodes.to_batches(), nodes.schema), fmt, output, title="chain")
    click.echo(
        f"chain: {chain.nodes.height} events, {chain.orphans.height} orphans, {len(chain.cycles)} cycles, "
        f"{chain.ambiguous.height} ambiguous ids",
        err=True,
    )
