"""AgentStore import speed, next to DuckDB ``read_json`` of the same file measured in the same run.

A synthetic AgentStore data dir (``bench/out/agentstore-<N>/``: one session, ``events/<id>.jsonl``
with N lines as the Go library writes them — its field order, 9-digit fractions, payloads that are
objects, arrays, strings and null, metadata with tokens, cost, model, tool, duration, worker_id
and extra) is read three ways:

1. the import stage, ``AgentStoreImporter.batches`` — lines → validated canonical Arrow columns
   with event ids, i.e. everything before ``Journal.append_batch`` (what ``journal import`` hands
   the journal): Polars takes the lines it can prove canonical in bulk, DuckDB hashes their ids,
   the others go through the line-by-line reader (``--reference`` also times that reader alone on
   every line, the figure before the bulk reader existed);
2. ``import_paths`` into a fresh journal — the whole ``journal import`` (the journal's own
   validation, numbering, hash chain and Delta commit included);
3. DuckDB ``read_json(..., format='newline_delimited')`` materialised into a table — the baseline.

Usage:
    .venv/bin/python bench/bench_import_agentstore.py                 # 1,000,000 lines
    .venv/bin/python bench/bench_import_agentstore.py --lines 200000 --skip-journal
    .venv/bin/python bench/bench_import_agentstore.py --runs 3 --reference   # as in BENCHMARKS.md

The load average is printed: the build VM is shared, figures taken while it is busy are low.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from toolkit.engines.duckdb_engine import raw_connection
from toolkit.ingest import agentstore
from toolkit.ingest.agentstore import AgentStoreImporter
from toolkit.ingest.base import ImportOptions
from toolkit.ingest.runner import import_paths
from toolkit.journal import Journal

OUT = Path(__file__).resolve().parent / "out"
SESSION = "bench-session-0001"
TYPES = ("user_message", "plan_created", "llm_request", "llm_response", "tool_called", "tool_result", "error", "custom")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def write_data_dir(root: Path, lines: int, seed: int = 7) -> Path:
    """An AgentStore data dir with one session of ``lines`` events (deterministic)."""
    rnd = random.Random(seed)
    (root / "events").mkdir(parents=True, exist_ok=True)
    (root / "sessions").mkdir(exist_ok=True)
    (root / "snapshots").mkdir(exist_ok=True)
    base = 1_795_300_000_000_000_000  # ns since the epoch, Nov 2026
    path = root / "events" / f"{SESSION}.jsonl"
    with path.open("w", encoding="utf-8") as f:
        ns = base
        for seq in range(1, lines + 1):
            kind = TYPES[seq % len(TYPES)]
            ns += rnd.randint(1_000_000, 900_000_000)
            secs, frac = divmod(ns, 1_000_000_000)
            fraction = f"{frac:09d}".rstrip("0")
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + (f".{fraction}" if fraction else "") + "Z"
            meta: dict[str, object] = {}
            if seq % 3:
                meta["worker_id"] = f"worker-{seq % 4}"
            if kind == "llm_request":
                meta.update(tokens_in=rnd.randint(200, 8000), model="gpt-4o")
            elif kind == "llm_response":
                meta.update(tokens_out=rnd.randint(10, 900), model="gpt-4o", duration_ms=rnd.randint(200, 4000))
                meta["cost_usd"] = round(rnd.random() / 50, 7)
            elif kind in ("tool_called", "tool_result"):
                meta["tool_name"] = rnd.choice(["search_flights", "run_tests", "lookup_invoice"])
                if kind == "tool_result":
                    meta["duration_ms"] = rnd.randint(5, 3000)
            elif kind == "custom":
                meta["extra"] = {"event_kind": "review_posted", "ref": str(seq)}
            payload: object
            if kind == "plan_created":
                payload = ["search", "filter", "present"]
            elif kind == "user_message" and seq % 5 == 0:
                payload = "just a string"
            elif kind == "custom" and seq % 7 == 0:
                payload = None
            elif kind == "error":
                payload = {"error": "HTTP 429: rate limited", "retry_after_s": 2}
            else:
                payload = {"content": "x" * rnd.randint(20, 200), "role": "assistant", "step": seq}
            record = {
                "session_id": SESSION,
                "sequence_number": seq,
                "type": kind,
                "payload": payload,
                "timestamp": stamp,
                "metadata": meta,
            }
            f.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
    session = {
        "id": SESSION,
        "name": "bench",
        "created_at": "2026-11-21T00:00:00Z",
        "updated_at": "2026-11-21T00:00:00Z",
        "event_count": lines,
    }
    (root / "sessions" / f"{SESSION}.json").write_text(json.dumps(session, indent=2))
    return root


def best(runs: int, fn: object) -> float:
    """The best wall time of ``runs``; the CPU time of that run (all threads) goes to ``CPU``."""
    times = []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    wall, cpu = min(times)
    CPU.append(cpu)
    return wall


CPU: list[float] = []


def cpu_note(n: int) -> str:
    """CPU per event of the last run timed, and the rate it allows on the machine's cores if this process
    had them to itself (an estimate for a busy VM: the wall figure is the measurement)."""
    cores = os.cpu_count() or 1
    return (
        f"  [{CPU[-1]:6.2f} s CPU, {CPU[-1] / n * 1e6:5.1f} µs/event;"
        f" <= {n / CPU[-1] * cores:,.0f} events/s on {cores} free cores]"
    )


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} {five:.1f} {fifteen:.1f} on {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=1, help="repetitions (the best is reported)")
    ap.add_argument("--skip-journal", action="store_true", help="skip the end-to-end import into a journal")
    ap.add_argument("--reference", action="store_true", help="also time the line-by-line reader alone (one run)")
    args = ap.parse_args()

    root = OUT / f"agentstore-{args.lines}"
    if not (root / "events" / f"{SESSION}.jsonl").exists():
        log(f"writing {args.lines:,} lines under {root} …")
        write_data_dir(root, args.lines)
    events_file = root / "events" / f"{SESSION}.jsonl"
    size_mb = events_file.stat().st_size / 1e6
    n = args.lines

    def read_batches() -> None:
        rows = sum(b.events.num_rows for b in AgentStoreImporter().batches(str(root), ImportOptions()))
        assert rows == n, rows

    def read_duckdb() -> None:
        con = raw_connection()
        con.execute(
            "CREATE TABLE t AS SELECT * FROM read_json($path, format = 'newline_delimited')", {"path": str(events_file)}
        )
        got = con.execute("SELECT count(*) FROM t").fetchone()
        assert got is not None and got[0] == n, got
        con.close()

    def read_reference() -> None:
        bulk = agentstore.bulk_lines
        agentstore.bulk_lines = lambda block, *_: (None, list(range(len(agentstore._split_lines(block)))))
        try:
            read_batches()
        finally:
            agentstore.bulk_lines = bulk

    def import_journal() -> None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-agentstore-", dir=OUT))
        try:
            journal = Journal.create(tmp / "journal")
            report = import_paths(journal, [str(root)], fmt="agentstore")
            journal.close()
            assert report.imported == n, report.summary()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    log(f"{n:,} lines, {size_mb:,.0f} MB")
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}: {n:,} lines, {size_mb:,.0f} MB, best of {args.runs}; {load()}"
    )
    t_duck = best(args.runs, read_duckdb)
    print(f"duckdb read_json (baseline):        {t_duck:7.2f} s  {n / t_duck:>11,.0f} events/s{cpu_note(n)}")
    t_batches = best(args.runs, read_batches)
    print(
        f"import stage (read+validate+map):   {t_batches:7.2f} s  {n / t_batches:>11,.0f} events/s"
        f"  ({t_duck / t_batches:.2f}x DuckDB)  (target >= 300,000 events/s){cpu_note(n)}"
    )
    if args.reference:
        t_ref = best(1, read_reference)
        print(
            f"  line-by-line reader alone:        {t_ref:7.2f} s  {n / t_ref:>11,.0f} events/s"
            f"  ({t_duck / t_ref:.2f}x DuckDB; the bulk reader is {t_ref / t_batches:.1f}x faster){cpu_note(n)}"
        )
    if not args.skip_journal:
        t_import = best(args.runs, import_journal)
        print(
            f"end to end (+ Journal.append_batch): {t_import:6.2f} s  {n / t_import:>11,.0f} events/s"
            f"  ({t_duck / t_import:.2f}x DuckDB; bounded by the journal's Delta writer){cpu_note(n)}"
        )
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
