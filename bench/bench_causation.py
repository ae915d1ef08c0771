"""Causation, trace and correlation walks and a compliance export on a large journal.

Each figure is printed next to a baseline measured in the same run on the same journal:

1. ``walk_chain --up`` from a failed tool call of a follow-up run (the chain crosses into the
   previous run of the session) vs the naive walk: one journal query per event (look up the
   cause by id, repeat);
2. ``walk_chain --down`` from the session's first user message (every effect, across runs);
3. ``trace_events`` and ``correlation_events`` for that session, and ``export_compliance`` +
   ``verify_bundle`` (against the journal) of it.

The journal is only read (the bundle goes to bench/out/). Usage:
    .venv/bin/python bench/bench_causation.py                       # the 10M-event journal of bench_journal.py
    .venv/bin/python bench/bench_causation.py --journal data/demo-journal
"""

from __future__ import annotations

# isort: off
# first, as the journal CLI does: toolkit's allocator settings apply only before Polars and Arrow load
import toolkit  # noqa: F401
# isort: on

import argparse
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from toolkit.analysis.causation import walk_chain
from toolkit.analysis.timeline import correlation_events, trace_events
from toolkit.engines import duckdb_engine
from toolkit.engines.polars_engine import scan_events
from toolkit.journal import Journal
from toolkit.reports.compliance import Selection, export_compliance
from toolkit.reports.compliance_verify import verify_bundle

OUT = Path(__file__).resolve().parent / "out"
DEFAULT = Path("/work/main/bench/out/journal-10000000")

PICK = """
SELECT f.event_id, f.stream_id, f.correlation_id, f.trace_id
FROM events AS f
JOIN events AS u ON u.stream_id = f.stream_id AND u.version = 1 AND u.causation_id IS NOT NULL
WHERE f.event_type = 'tool_result' AND f.is_error
ORDER BY f.position
LIMIT 1
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def naive_up(journal: Journal, event_id: str) -> int:
    """The baseline: one journal query per event (find it, read its cause, repeat)."""
    steps, current = 0, event_id
    while current is not None:
        row = scan_events(journal).filter(pl.col("event_id") == current).select("causation_id").collect()
        steps += 1
        current = row.item(0, 0) if row.height else None
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--journal", type=Path, default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    journal = Journal.open(args.journal)
    events = sum(f.rows for f in journal.files())
    session = duckdb_engine.connect(journal)
    try:
        pick = session.query(PICK).to_pylist()[0]
    finally:
        session.close()
    log(f"journal: {args.journal} ({events:,} events, {len(journal.files())} files); focus {pick}")

    t_up, chain = timed(lambda: walk_chain(journal, pick["event_id"], direction="up"), args.repeat)
    t_naive, steps = timed(lambda: naive_up(journal, pick["event_id"]), 1)
    streams = chain.nodes.get_column("stream_id").n_unique()
    print(
        f"chain --up: {chain.nodes.height} events over {streams} streams, {chain.journal_queries} journal queries: "
        f"{t_up * 1000:.0f} ms; naive one-query-per-event ({steps} queries): {t_naive * 1000:.0f} ms "
        f"-> {t_naive / t_up:.1f}x faster"
    )
    root = chain.nodes.row(0, named=True)["event_id"]
    t_down, down = timed(lambda: walk_chain(journal, root, direction="down"), args.repeat)
    print(
        f"chain --down from the session's first message: {down.nodes.height} events over "
        f"{down.nodes.get_column('stream_id').n_unique()} streams, {down.journal_queries} journal queries: {t_down * 1000:.0f} ms"
    )
    t_trace, tr = timed(lambda: trace_events(journal, pick["trace_id"]), args.repeat)
    t_corr, co = timed(lambda: correlation_events(journal, pick["correlation_id"]), args.repeat)
    print(f"trace: {tr.height} events {t_trace * 1000:.0f} ms; correlation: {co.height} events {t_corr * 1000:.0f} ms")
    out = OUT / "compliance-bundle"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    result = export_compliance(journal, Selection(correlation_id=pick["correlation_id"]), out)
    t_export = time.perf_counter() - t0
    t0 = time.perf_counter()
    check = verify_bundle(out, journal=journal)
    t_verify = time.perf_counter() - t0
    print(
        f"export-compliance ({result.events} events, {result.streams} runs): {t_export * 1000:.0f} ms; "
        f"verify-export against the journal: {t_verify * 1000:.0f} ms ({'OK' if check.ok else check.problems[:3]})"
    )


if __name__ == "__main__":
    main()
