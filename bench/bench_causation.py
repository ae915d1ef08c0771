"""Causation, trace and correlation walks and a compliance export on a large journal.

Each figure is printed next to a baseline measured in the same run on the same journal:

1. ``walk_chain --up`` from a failed tool call of a follow-up run (the chain crosses into the
   previous run of the session) vs the naive walk: one journal query per event (look up the
   cause by id, repeat);
2. ``walk_chain --down`` from the session's first user message (every effect, across runs);
3. ``trace_events`` and ``correlation_events`` for that session, and ``export_compliance`` +
   ``verify_bundle`` (against the journal) of it;
4. a one-run chain of ``--long-chain`` events (built in bench/out): the walk from its middle and
   its causation report, vs the naive walk.

The journal is only read (the bundle goes to bench/out/). Usage:
    .venv/bin/python bench/bench_causation.py                       # the 10M-event journal of bench_journal.py
    .venv/bin/python bench/bench_causation.py --journal data/demo-journal
    .venv/bin/python bench/bench_causation.py --only-long-chain --long-chain 6000   # 4. only
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


def naive_up(journal: Journal, event_id: str, limit: int | None = None) -> int:
    """The baseline: one journal query per event (find it, read its cause, repeat), at most ``limit``."""
    steps, current = 0, event_id
    while current is not None and (limit is None or steps < limit):
        row = scan_events(journal).filter(pl.col("event_id") == current).select("causation_id").collect()
        steps += 1
        current = row.item(0, 0) if row.height else None
    return steps


def long_chain(n: int, repeat: int) -> None:
    """4. one run of ``n`` events, each caused by the one before: the walk from its middle (both
    ways), and the causation report built and rendered (its graph holds the 5,000 events nearest
    the focus), vs the naive walk (its first 300 hops, scaled to the chain)."""
    import datetime as dt

    from toolkit.reports.html import render_html
    from toolkit.reports.report_catalog import build_report

    path = OUT / f"long-chain-{n}"
    shutil.rmtree(path, ignore_errors=True)
    journal = Journal.create(path)
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    journal.append("run-long", [
        {"event_type": "tool_called" if i % 2 else "llm_response", "event_id": f"long-{i:07d}",
         "causation_id": f"long-{i - 1:07d}" if i else None, "occurred_at": start + dt.timedelta(seconds=i),
         "data": {"i": i}}
        for i in range(n)
    ])
    focus = f"long-{n // 2:07d}"
    t_walk, chain = timed(lambda: walk_chain(journal, focus, depth=n), repeat)
    t_report, report = timed(lambda: build_report(journal, "causation", {"event": focus, "depth": str(n)}), repeat)
    t_render, _ = timed(lambda: render_html(report, bundle_js=""), repeat)
    hops = 300
    t_naive, steps = timed(lambda: naive_up(journal, focus, hops), 1)
    scaled = t_naive * chain.nodes.height / steps
    print(
        f"long chain: {chain.nodes.height:,} events (one run, from its middle both ways): walk {t_walk * 1000:.0f} ms; "
        f"causation report built {t_report * 1000:.0f} ms, rendered {t_render * 1000:.0f} ms; naive one-query-per-event "
        f"{t_naive * 1000:.0f} ms for {steps} hops -> {scaled:.1f} s scaled to the chain ({scaled / t_walk:.0f}x the walk)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--journal", type=Path, default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--long-chain", type=int, default=6_000, metavar="N",
                    help="also walk a one-run chain of N events and build its causation report (0: skip)")
    ap.add_argument("--only-long-chain", action="store_true", help="skip the walks over --journal")
    args = ap.parse_args()
    if args.long_chain:
        long_chain(args.long_chain, args.repeat)
    if args.only_long_chain:
        return
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
