"""Re-grade and rollups on a Dask cluster, identical to the single-machine results.

The selected streams are cut into shards of whole streams (``dask_engine.stream_shards``); each
shard is judged on a worker by exactly the single-machine code (the built-ins that judge one
stream at a time in one shared read, ``shared_pass.grade_streams``, as a big journal is on one
machine; Python rules by ``python_failures``, over the shard's ids); other SQL rules and user
Polars rules, which may look across streams (an expression without ``.over("stream_id")`` sees
every event of the journal, selected or not), run as one task reporting the whole selection
(``sql_failures``, ``polars_failures``). The driver merges the failure rows and records them as one findings batch —
only once every task has succeeded.

Every task reads the journal at the one Delta version the driver planned at
(``Journal.open(uri, delta_version=N)``): an append committed while the run is under way is in no
shard, so the result is the result at that version — never some shards with a new file, some
without.

Rollups split ``queries/rollups/usage.sql`` where its per-run rows are complete: workers compute
``per_run`` and ``outcomes`` for their streams (a run is a stream, so never split), the driver runs
the query's final aggregation (sums, cost-per-run percentiles) over their union.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from toolkit.analysis.pricing import CostBasis, PriceTable, cost_session, load_prices
from toolkit.analysis.rollup import METRICS, Prices, Time, _time, keep_dimensions, parse_dimensions
from toolkit.analysis.rules import Rule
from toolkit.analysis.shared_pass import CROSS_STREAM, grade_streams, is_builtin
from toolkit.analysis.verdicts import FAILURE_SCHEMA, Selection, polars_failures, sql_failures
from toolkit.engines import duckdb_engine
from toolkit.engines.dask_engine import (
    ClusterSpec,
    map_shards,
    shard_count,
    ship,
    stream_shards,
    unship,
    worker_memory_limit,
)
from toolkit.engines.queries import get_query
from toolkit.errors import QueryError, RuleDefinitionError, ToolkitError
from toolkit.journal.store import Journal

Outcome = tuple[pa.Table | None, str | None]  # (failures, error text) of one rule
_FINAL_SELECT = "\nSELECT\n    p.model,"  # where usage.sql's final aggregation begins


def _shards(journal: Journal, ids: Sequence[str] | None, spec: ClusterSpec) -> list[tuple[str, str, list[str]]]:
    every = sorted(journal.heads()) if ids is None else sorted(ids)
    return stream_shards(every, shard_count(len(every), spec.workers))


# ---------------------------------------------------------------------- re-grade


def grade_shard(
    journal_uri: str,
    delta_version: int,
    rule_blobs: list[bytes],
    bounds: list[dict[str, Any]],
    selection: Selection,
    ids: list[str] | None,
    time_limit_s: float | None = None,
) -> list[Outcome]:
    """On a worker: rules over one shard of streams (``ids``), or the rules that may look across
    streams (SQL, user Polars) over the whole selection (``ids``: its streams, None: every stream),
    all reading the journal at ``delta_version``; each query of a SQL rule stopped after
    ``time_limit_s`` seconds (None: ``sql_timeout_s`` of journal.toml; 0: no limit)."""
    from toolkit.analysis.state_rules import python_failures

    journal = Journal.open(journal_uri, delta_version=delta_version)
    rules: list[Rule] = [unship(b) for b in rule_blobs]
    out: list[Outcome] = []
    session = None
    # the per-stream built-ins: one shared read of the shard, as on one machine (shared_pass.grade_streams)
    shared = [r for r in rules if ids is not None and _per_stream_builtin(r)]
    shared_out: dict[str, Outcome] = {}
    if shared and ids is not None:
        by_name = {r.name: b for r, b in zip(rules, bounds, strict=True)}
        outcomes = grade_streams(journal, shared, by_name, ids, (min(ids), max(ids)) if ids else None)
        shared_out = {r.name: o for r, o in zip(shared, outcomes, strict=True)}
    try:
        for rule, bound in zip(rules, bounds, strict=True):
            try:
                if rule.name in shared_out:
                    out.append(shared_out[rule.name])
                elif rule.kind == "sql":
                    limit = worker_memory_limit()  # DuckDB spills within half the worker's share
                    session = session or duckdb_engine.connect(journal, memory_limit_bytes=limit // 2 if limit else None)
                    with session.watched(journal.config.sql_timeout_s if time_limit_s is None else time_limit_s):
                        out.append((sql_failures(session, rule, bound, selection), None))
                elif rule.kind == "polars":
                    out.append((polars_failures(journal, rule, bound, ids), None))
                else:
                    out.append((python_failures(journal, rule, bound, ids, workers=1), None))
            except RuleDefinitionError:
                raise
            except Exception as e:  # a rule that raises is a finding (as on one machine)
                out.append((None, f"{type(e).__name__}: {e}"))
    finally:
        if session is not None:
            session.close()
    return out


def _per_stream_builtin(rule: Rule) -> bool:
    return is_builtin(rule) and rule.name not in CROSS_STREAM


def dask_runner(
    spec: ClusterSpec, progress: Callable[[int, int], None] | None = None, time_limit_s: float | None = None
) -> Callable[[Journal, list[Rule], dict[str, dict[str, Any]], Selection, list[str] | None], list[Outcome]]:
    """A ``runner`` for ``regrade.regrade``: computes every rule's failures on the cluster.

    The built-ins that judge one stream at a time and Python rules run per shard of whole
    streams. SQL and user Polars rules run as one task over the whole selection, as on one
    machine: they may look across streams (``journal_integrity`` checks event ids and causes
    journal-wide; a Polars expression without ``.over("stream_id")`` sees every event, selected or not),
    and DuckDB and Polars parallelise inside the task. ``time_limit_s``: as ``regrade``'s, on the workers.
    """

    def run(
        journal: Journal, rules: list[Rule], bound: dict[str, dict[str, Any]], selection: Selection, ids: list[str] | None
    ) -> list[Outcome]:
        whole = [i for i, r in enumerate(rules) if r.kind in ("sql", "polars") and not _per_stream_builtin(r)]
        sharded = [i for i, r in enumerate(rules) if i not in whole]
        journal = journal.pinned()  # the version regrade planned at (it pins); every task reads it
        uri, version = str(journal.path), journal.delta_version
        tasks: list[tuple[Any, ...]] = []
        groups: list[list[int]] = []
        if whole:
            blobs = [ship(rules[i]) for i in whole]
            tasks.append((uri, version, blobs, [bound[rules[i].name] for i in whole], selection, ids, time_limit_s))
            groups.append(whole)
        if sharded:
            blobs = [ship(rules[i]) for i in sharded]
            bounds = [bound[rules[i].name] for i in sharded]
            for _, _, chunk in _shards(journal, ids, spec):
                tasks.append((uri, version, blobs, bounds, selection, chunk, time_limit_s))
                groups.append(sharded)
        parts = map_shards(grade_shard, tasks, spec, progress=progress, label="regrade")
        per_rule: list[list[Outcome]] = [[] for _ in rules]
        for group, part in zip(groups, parts, strict=True):
            for i, outcome in zip(group, part, strict=True):
                per_rule[i].append(outcome)
        merged: list[Outcome] = []
        for outcomes in per_rule:
            errors = [e for _, e in outcomes if e is not None]
            tables = [t for t, _ in outcomes if t is not None]
            if errors:
                merged.append((None, errors[0]))
            elif not tables:  # no stream selected: nothing fails
                merged.append((FAILURE_SCHEMA.empty_table(), None))
            else:
                merged.append((pa.concat_tables(tables, promote_options="permissive"), None))
        return merged

    return run


# ---------------------------------------------------------------------- rollups


def _usage_parts() -> tuple[str, str]:
    sql = get_query(METRICS["usage"]).sql
    cut = sql.find(_FINAL_SELECT)
    if cut < 0:
        raise QueryError("rollups/usage.sql no longer has the final aggregation the dask engine splits at")
    return sql[:cut], sql[cut:]


def rollup_shard(
    journal_uri: str,
    delta_version: int,
    params: dict[str, Any],
    cost: CostBasis,
    prices: PriceTable,
    as_of: Time,
    first: str,
    last: str,
) -> tuple[pa.Table, pa.Table]:
    """On a worker: the per-run rows and run outcomes of one shard of streams, at ``delta_version``."""
    ctes, _ = _usage_parts()
    journal = Journal.open(journal_uri, delta_version=delta_version)
    session = cost_session(journal, prices=prices, as_of=as_of, cost=cost, stream_range=(first, last))
    try:
        per_run = session.query(ctes + "SELECT * FROM per_run", params)  # noqa: S608 - the catalog query, cut
        outcomes = session.query(ctes + "SELECT * FROM outcomes", params)  # noqa: S608 - the catalog query, cut
    finally:
        session.close()
    return per_run, outcomes


def rollup_dask(
    journal: Journal,
    by: str | Sequence[str] = ("model",),
    *,
    since: Time = None,
    until: Time = None,
    cost: CostBasis = "recorded",
    prices: Prices = None,
    as_of: Time = None,
    spec: ClusterSpec | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pa.Table:
    """``rollup.rollup`` computed on a Dask cluster (same rows, same types), every shard reading the
    journal at the Delta version current when it was called."""
    from toolkit.analysis.rollup import rollup

    spec = spec or ClusterSpec()
    dims = parse_dimensions(by)
    journal = journal.pinned()
    shards = _shards(journal, None, spec)
    if not shards:
        return rollup(journal, dims, since=since, until=until, cost=cost, prices=prices, as_of=as_of)
    table_prices = prices if isinstance(prices, PriceTable) else load_prices(prices)
    q = get_query(METRICS["usage"])
    params = q.bind({"by": dims, "since": _time(since), "until": _time(until)})
    version = journal.delta_version
    tasks = [(str(journal.path), version, params, cost, table_prices, as_of, first, last) for first, last, _ in shards]
    parts = map_shards(rollup_shard, tasks, spec, progress=progress, label="rollup")
    _, final = _usage_parts()
    merged = duckdb_engine.query_tables(
        {
            "shard_per_run": pa.concat_tables([p[0] for p in parts]),
            "shard_outcomes": pa.concat_tables([p[1] for p in parts]),
        },
        "WITH per_run AS (SELECT * FROM shard_per_run), outcomes AS (SELECT * FROM shard_outcomes)" + final,  # noqa: S608
        {"by": params["by"]},
    )
    return keep_dimensions(merged, dims)


__all__ = ["ClusterSpec", "ToolkitError", "dask_runner", "grade_shard", "rollup_dask", "rollup_shard"]
