"""Cost rollup by model x day over a large journal, against raw DuckDB and a JSONL (json module) baseline.

Figures printed (each with its baseline measured in the same run, on the same data):

1. ``rollup(journal, by=("model", "day"))`` — the query ``queries/rollups/usage.sql`` (runs, events,
   LLM/tool calls, errors, 5 token columns, cost, cost-per-run p50/p90/p99, outcomes) in an open
   cost session, and end to end (opening the journal's Delta log, the sandboxed session, the price
   table, the query). Target <= 0.5 s on 2 cores.
2. the same SQL text in a raw DuckDB connection over the same Parquet files (``read_parquet`` of
   the Delta log's active files, no sandbox, no views; target ours <= 1.5x raw), and a minimal
   hand-written GROUP BY (sums only) for scale.
3. the repriced rollup (the vectorised join of every event to the price segments) vs recorded.
4. the equivalent JSONL export (every canonical column, one JSON object per line) of a sample of
   ``--json-events`` events (default 1M: the full 10M export is ~6 GB), rolled up with the stdlib
   ``json`` module and dicts (pandas is not a dependency); its rate is extrapolated to the whole
   journal for the ratio, and said so.

Usage:
    .venv/bin/python bench/bench_rollup.py                                   # the 10M-event bench journal
    .venv/bin/python bench/bench_rollup.py --journal PATH --json-events 200000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from toolkit.analysis.pricing import cost_session
from toolkit.analysis.rollup import rollup_totals
from toolkit.engines import duckdb_engine
from toolkit.engines.queries import get_query
from toolkit.journal import Journal

OUT = Path(__file__).resolve().parent / "out"
# bench/bench_journal.py builds bench/out/journal-<N>; the team's shared copy is read-only
DEFAULT_JOURNAL = next(
    (p for p in (OUT / "journal-10000000", Path("/work/main/bench/out/journal-10000000")) if p.is_dir()),
    OUT / "journal-10000000",
)
BY = ["model", "day"]

MINIMAL = """
SELECT day, coalesce(model, '(none)') AS model,
       CAST(count(*) AS BIGINT) AS events,
       CAST(sum(tokens_in) AS BIGINT) AS tokens_in,
       CAST(sum(tokens_out) AS BIGINT) AS tokens_out,
       CAST(sum(cost_usd) AS DECIMAL(38, 9)) AS cost_usd
FROM read_parquet($files, hive_partitioning = true)
GROUP BY ALL
"""

RAW_COST_EVENTS = """
SELECT *, cost_usd IS NULL AND coalesce(tokens_in, 0) + coalesce(tokens_out, 0) > 0 AS unpriced
FROM read_parquet($files, hive_partitioning = true, hive_types = {'stream_type': 'VARCHAR', 'day': 'DATE'})
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_of(fn: Callable[[], Any], n: int) -> float:
    fn()  # warm: Parquet metadata, OS cache
    return statistics.median(timed(fn) for _ in range(n))


def bench_query(journal: Journal, name: str, repeat: int) -> dict[str, Any]:
    """One catalog rollup by model x day: in an open cost session vs the same SQL in raw DuckDB."""
    q = get_query(name)
    params = q.bind({"by": BY})
    session = cost_session(journal)
    ours = median_of(lambda: session.query(q.sql, params), repeat)
    rows = session.query(q.sql, params).num_rows
    session.close()
    con = duckdb_engine.raw_connection()
    con.sql(RAW_COST_EVENTS, params={"files": journal.file_paths()}).create_view("cost_events")
    raw = median_of(lambda: con.sql(q.sql, params=params).to_arrow_table(), repeat)
    assert con.sql(q.sql, params=params).to_arrow_table().num_rows == rows
    con.close()
    return {"rows": rows, "ours_s": ours, "raw_s": raw}


def bench_duckdb(journal: Journal, repeat: int) -> dict[str, Any]:
    totals = bench_query(journal, "rollups/totals", repeat)
    usage = bench_query(journal, "rollups/usage", repeat)
    files = journal.file_paths()
    con = duckdb_engine.raw_connection()
    minimal = median_of(lambda: con.sql(MINIMAL, params={"files": files}).to_arrow_table(), repeat)
    con.close()
    end_to_end = median_of(lambda: rollup_totals(Journal.open(journal.path), BY), repeat)
    repriced = median_of(lambda: rollup_totals(Journal.open(journal.path), BY, cost="repriced"), repeat)
    return {
        "events": _count(journal),
        "files": len(files),
        "totals": totals,
        "usage": usage,
        "minimal_s": minimal,
        "end_to_end_s": end_to_end,
        "repriced_s": repriced,
    }


def _count(journal: Journal) -> int:
    return sum(f.rows for f in journal.files())


def export_jsonl(journal: Journal, n: int, path: Path) -> int:
    """The first ``n`` events (by position) as canonical JSONL: every column, one object per line."""
    files = journal.file_paths()
    con = duckdb_engine.raw_connection()
    rel = con.sql(
        "SELECT * EXCLUDE (prev_hash, hash, payload_sha256) FROM read_parquet($files, hive_partitioning = true, "
        "hive_types = {'stream_type': 'VARCHAR', 'day': 'DATE'}) WHERE position <= $n",
        params={"files": files, "n": n},
    )
    rel.to_view("sample")
    con.execute(f"COPY sample TO '{path}' (FORMAT json)")  # our own bench/out path; COPY takes no parameters
    got = con.sql("SELECT count(*) FROM sample").fetchall()[0]
    con.close()
    return int(got[0]) if got else 0


def _quantile(sorted_values: list[Decimal], q: float) -> float:
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo]) + (float(sorted_values[hi]) - float(sorted_values[lo])) * (pos - lo)


def json_rollup(path: Path) -> int:
    """The same rollup (model x day) in plain Python over JSON lines; returns the number of groups."""
    per_run: dict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0, 0, 0, 0, Decimal(0)])
    outcome: dict[str, bool] = {}
    tokens = ("tokens_in", "tokens_out", "tokens_cache_read", "tokens_cache_write", "tokens_reasoning")
    with path.open(encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            acc = per_run[(e["model"] or "(none)", e["day"], e["stream_id"])]
            acc[0] += 1
            acc[1] += e["event_type"] == "llm_response"
            acc[2] += e["event_type"] == "tool_called"
            acc[3] += bool(e["is_error"])
            for i, t in enumerate(tokens, start=4):
                acc[i] += e[t] or 0
            if e["cost_usd"] is not None:
                acc[9] += Decimal(str(e["cost_usd"]))
            if e["version"] == 1 and '"outcome"' in e["metadata"]:
                outcome[e["stream_id"]] = json.loads(e["metadata"]).get("outcome") == "success"
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for (model, day, run), acc in per_run.items():
        groups[(model, day)].append((run, acc))
    out = []
    for key, runs in groups.items():
        costs = sorted(acc[9] for _, acc in runs)
        out.append(
            (
                key,
                len(runs),
                [sum(acc[i] for _, acc in runs) for i in range(10)],
                [_quantile(costs, q) for q in (0.5, 0.9, 0.99)],
                sum(1 for run, _ in runs if outcome.get(run)),
            )
        )
    return len(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--journal", type=Path, default=DEFAULT_JOURNAL, help="journal to roll up (read only)")
    ap.add_argument("--json-events", type=int, default=1_000_000, help="events in the JSONL sample")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if not args.journal.is_dir():
        sys.exit(f"no journal at {args.journal}: build one with bench/bench_journal.py --skip-append --reuse")
    journal = Journal.open(args.journal)
    log(f"journal {args.journal}: rolling up by {' x '.join(BY)} ...")
    r = bench_duckdb(journal, args.repeat)
    t, u = r["totals"], r["usage"]
    print(
        f"rollup totals by model x day over {r['events']:,} events ({r['files']} files, {t['rows']} groups): "
        f"query {t['ours_s'] * 1000:.0f} ms (target <= 500 ms) | same SQL, raw DuckDB over the same Parquet files "
        f"{t['raw_s'] * 1000:.0f} ms | ratio {t['ours_s'] / t['raw_s']:.2f}x raw (target <= 1.5x)"
    )
    print(
        f"rollup usage (+ runs, cost-per-run p50/p90/p99, outcomes) by model x day: query {u['ours_s'] * 1000:.0f} ms "
        f"| same SQL raw {u['raw_s'] * 1000:.0f} ms | ratio {u['ours_s'] / u['raw_s']:.2f}x raw"
    )
    print(
        f"         totals end to end (open journal, session, price table, query) {r['end_to_end_s'] * 1000:.0f} ms | "
        f"repriced (join to the price table) {r['repriced_s'] * 1000:.0f} ms = {r['repriced_s'] / r['end_to_end_s']:.2f}x "
        f"recorded | minimal raw GROUP BY (4 sums) {r['minimal_s'] * 1000:.0f} ms"
    )
    OUT.mkdir(exist_ok=True)
    sample = OUT / f"events-{args.json_events}.jsonl"
    if not sample.exists():
        log(f"exporting {args.json_events:,} events to {sample} ...")
        export_jsonl(journal, args.json_events, sample)
    n = sum(1 for _ in sample.open(encoding="utf-8"))
    json_s = timed(lambda: json_rollup(sample))
    rate = n / json_s
    extrapolated = r["events"] / rate
    print(
        f"         JSONL baseline (json module + dicts) over a {n:,}-event sample "
        f"({sample.stat().st_size / 1e6:,.0f} MB): {json_s:.1f} s = {rate:,.0f} ev/s -> {extrapolated:.0f} s for "
        f"{r['events']:,} events (extrapolated) | ratio totals/json {t['ours_s'] / extrapolated:.4f}x "
        f"(totals {extrapolated / t['ours_s']:,.0f}x, usage {extrapolated / u['ours_s']:,.0f}x faster)"
    )


if __name__ == "__main__":
    main()
