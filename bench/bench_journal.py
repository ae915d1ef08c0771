"""Foundation benchmarks: bulk append, one-stream read, full-journal rollup.

Each figure is printed next to a baseline measured in the same run on the same data:

1. bulk append of demo events from Arrow batches (validation, numbering, idempotency against the
   stream heads and the hash chain included) vs a raw ``deltalake.write_deltalake`` of the same
   rows (target: >= 0.5x raw);
2. read of one 1,000-event stream out of a large journal with the Journal open in the process
   (warm: second and later reads; target <= 5 ms), next to raw DuckDB on the same files;
3. a full-journal rollup (tokens and cost by model and day) through the toolkit's SQL session vs
   raw DuckDB SQL over the same Parquet files (target <= 1.5x raw).

Usage:
    .venv/bin/python bench/bench_journal.py                  # 1M-event append, 10M-event journal
    .venv/bin/python bench/bench_journal.py --append-events 200000 --journal-events 1000000
    .venv/bin/python bench/bench_journal.py --reuse          # keep/reuse bench/out/journal-<N>
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from toolkit.engines import duckdb_engine
from toolkit.ingest.demo import generate_demo
from toolkit.journal import Journal
from toolkit.journal.maintenance import compact, vacuum

OUT = Path(__file__).resolve().parent / "out"
EVENTS_PER_RUN_GUESS = 40

ROLLUP = """
SELECT day, model,
       CAST(count(*) AS BIGINT) AS events,
       CAST(sum(tokens_in) AS BIGINT) AS tokens_in,
       CAST(sum(tokens_out) AS BIGINT) AS tokens_out,
       CAST(sum(cost_usd) AS DECIMAL(18, 9)) AS cost_usd
FROM {src}
GROUP BY ALL ORDER BY day, model
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def demo_tables(events: int, seed: int) -> list[pa.Table]:
    """Demo batches holding about ``events`` events."""
    runs = max(1, events // EVENTS_PER_RUN_GUESS)
    tables = list(generate_demo(runs=runs, seed=seed, batch_events=200_000))
    total = sum(t.num_rows for t in tables)
    if total < events * 0.9:  # the guess was off: scale the run count once
        runs = int(runs * events / max(total, 1))
        tables = list(generate_demo(runs=runs, seed=seed, batch_events=200_000))
    return tables


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_append(events: int) -> dict[str, float]:
    log(f"append: generating ~{events:,} demo events")
    tables = demo_tables(events, seed=11)
    n = sum(t.num_rows for t in tables)
    jdir, rawdir = OUT / "append-journal", OUT / "append-raw"
    shutil.rmtree(jdir, ignore_errors=True)
    shutil.rmtree(rawdir, ignore_errors=True)
    journal = Journal.create(jdir)

    def ours() -> None:
        for t in tables:
            journal.append_batch(t)

    t_ours = timed(ours)
    full = journal.read_all()  # the same rows, as the journal stores them

    def raw() -> None:
        for start in range(0, full.num_rows, 200_000):
            write_deltalake(str(rawdir), full.slice(start, 200_000), mode="append", partition_by=["stream_type", "day"])

    t_raw = timed(raw)
    # idempotent re-append: every event is already there
    t_again = timed(ours)
    journal.close()
    return {
        "events": n,
        "ours_s": t_ours,
        "ours_ev_s": n / t_ours,
        "raw_s": t_raw,
        "raw_ev_s": n / t_raw,
        "ratio_vs_raw": (n / t_ours) / (n / t_raw),
        "reappend_ev_s": n / t_again,
    }


def build_journal(events: int, reuse: bool) -> Path:
    path = OUT / f"journal-{events}"
    if reuse and (path / "journal.toml").exists():
        log(f"journal: reusing {path}")
        return path
    shutil.rmtree(path, ignore_errors=True)
    journal = Journal.create(path)
    log(f"journal: writing ~{events:,} demo events to {path}")
    runs = max(1, events // EVENTS_PER_RUN_GUESS)
    written = 0
    for table in generate_demo(runs=runs, seed=23, batch_events=500_000):
        journal.append_batch(table)
        written += table.num_rows
        log(f"  {written:,} events")
    # one long run: the 1,000-event stream the read benchmark looks up
    t0 = dt.datetime(2026, 10, 5, tzinfo=dt.UTC)
    long_run = pa.table(
        {
            "stream_id": ["bench-long-run"] * 1000,
            "stream_type": ["agent_run"] * 1000,
            "event_type": ["tool_called", "tool_result"] * 500,
            "occurred_at": pa.array([t0 + dt.timedelta(seconds=i) for i in range(1000)], pa.timestamp("us", tz="UTC")),
            "tool_name": ["search"] * 1000,
            "data": [f'{{"i":{i}}}' for i in range(1000)],
        }
    )
    journal.append_batch(long_run)
    log("journal: compacting")
    compact(journal)
    vacuum(journal, retain_hours=0, force=True)
    journal.close()
    return path


def bench_read(path: Path) -> dict[str, float]:
    journal = Journal.open(path)
    cold = timed(lambda: journal.read_stream("bench-long-run"))
    warm = []
    for _ in range(30):
        warm.append(timed(lambda: journal.read_stream("bench-long-run")))
    rows = journal.read_stream("bench-long-run").num_rows
    files = journal.file_paths()
    con = duckdb_engine.raw_connection()
    q = "SELECT * FROM read_parquet($files, hive_partitioning = true) WHERE stream_id = $s ORDER BY version"
    con.sql(q, params={"files": files, "s": "bench-long-run"}).to_arrow_table()
    raw = [
        timed(lambda: con.sql(q, params={"files": files, "s": "bench-long-run"}).to_arrow_table()) for _ in range(10)
    ]
    events = sum(f.rows for f in journal.files())
    return {
        "journal_events": events,
        "files": len(files),
        "rows": rows,
        "cold_ms": cold * 1000,
        "warm_median_ms": statistics.median(warm) * 1000,
        "warm_p95_ms": sorted(warm)[int(len(warm) * 0.95) - 1] * 1000,
        "raw_duckdb_median_ms": statistics.median(raw) * 1000,
    }


def bench_rollup(path: Path) -> dict[str, float]:
    journal = Journal.open(path)
    session = duckdb_engine.connect(journal)
    ours_sql = ROLLUP.format(src="events")
    files = journal.file_paths()
    con = duckdb_engine.raw_connection()
    raw_sql = ROLLUP.format(src="read_parquet($files, hive_partitioning = true)")
    # warm both once (Parquet metadata, OS cache), then alternate runs
    a = session.query(ours_sql)
    b = con.sql(raw_sql, params={"files": files}).to_arrow_table()
    assert a.num_rows == b.num_rows, "rollups disagree"
    ours, raw = [], []
    for _ in range(5):
        ours.append(timed(lambda: session.query(ours_sql)))
        raw.append(timed(lambda: con.sql(raw_sql, params={"files": files}).to_arrow_table()))
    return {
        "ours_median_s": statistics.median(ours),
        "raw_median_s": statistics.median(raw),
        "ratio_vs_raw": statistics.median(ours) / statistics.median(raw),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--append-events", type=int, default=1_000_000)
    ap.add_argument("--journal-events", type=int, default=10_000_000)
    ap.add_argument("--reuse", action="store_true", help="reuse an existing bench journal of that size")
    ap.add_argument("--skip-append", action="store_true")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    if not args.skip_append:
        r = bench_append(args.append_events)
        print(
            f"append   {r['events']:,} events: {r['ours_ev_s']:,.0f} ev/s ({r['ours_s']:.2f} s) | raw write_deltalake "
            f"{r['raw_ev_s']:,.0f} ev/s ({r['raw_s']:.2f} s) | ratio {r['ratio_vs_raw']:.2f}x raw (target >= 0.5x) | "
            f"idempotent re-append {r['reappend_ev_s']:,.0f} ev/s"
        )
    path = build_journal(args.journal_events, args.reuse)
    r = bench_read(path)
    print(
        f"read     1 stream ({r['rows']:,} events) of {r['journal_events']:,} in {r['files']} files: cold "
        f"{r['cold_ms']:.1f} ms, warm median {r['warm_median_ms']:.2f} ms, p95 {r['warm_p95_ms']:.2f} ms "
        f"(target <= 5 ms) | raw DuckDB median {r['raw_duckdb_median_ms']:.1f} ms"
    )
    r = bench_rollup(path)
    print(
        f"rollup   by day x model over the journal: {r['ours_median_s'] * 1000:.0f} ms | raw DuckDB "
        f"{r['raw_median_s'] * 1000:.0f} ms | ratio {r['ratio_vs_raw']:.2f}x raw (target <= 1.5x)"
    )


if __name__ == "__main__":
    main()
