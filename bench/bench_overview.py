"""Notebook and report speed on a large journal: the overview, the run finder, the charts.

Every chart is drawn from an aggregated table, so what a large journal costs is the SQL that
aggregates it. Printed next to a baseline measured in the same run on the same files:

1. ``overview_tables`` (the ten aggregations of the overview notebook and report, one sandboxed
   session) vs one raw DuckDB rollup (tokens and cost by model and day) over the same Parquet files:
   the ratio says how many full-journal rollups the whole overview costs;
2. building every overview chart (altair specs, validated) from those tables: independent of the
   journal's size;
3. ``find_runs`` (the run explorer's list: every run's status, cost and errors, filtered, most
   recent first) vs the same raw rollup;
4. ``journal report overview`` as a whole (queries, charts, HTML with the inlined Vega bundle).

Usage (the journal is only read):
    .venv/bin/python bench/bench_overview.py                                   # bench/out/journal-10000000
    .venv/bin/python bench/bench_overview.py --journal /work/main/bench/out/journal-10000000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit.analysis.overview import overview_tables
from toolkit.analysis.run_explorer import find_runs
from toolkit.engines import duckdb_engine
from toolkit.journal import Journal
from toolkit.reports.html import vega_bundle, write_html
from toolkit.reports.report_overview import build_overview_report, overview_sections

OUT = Path(__file__).resolve().parent / "out"

RAW_ROLLUP = """
SELECT CAST(occurred_at AS DATE) AS day, model,
       CAST(count(*) AS BIGINT) AS events,
       CAST(sum(tokens_in) AS BIGINT) AS tokens_in,
       CAST(sum(tokens_out) AS BIGINT) AS tokens_out,
       CAST(sum(cost_usd) AS DECIMAL(38, 9)) AS cost_usd
FROM read_parquet($files)
GROUP BY ALL ORDER BY day, model
"""


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time of ``repeat`` runs after one warm-up, and the last result."""
    result = fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--journal", type=Path, default=OUT / "journal-10000000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not (args.journal / "journal.toml").is_file():
        sys.exit(f"no journal at {args.journal}; build one with: .venv/bin/python bench/bench_journal.py --reuse")
    journal = Journal.open(args.journal)
    files = journal.file_paths()
    events = journal.read_all(["position"]).num_rows
    print(f"journal {args.journal}: {events:,} events in {len(files)} files")

    con = duckdb_engine.raw_connection()
    raw_s, raw = timed(lambda: con.sql(RAW_ROLLUP, params={"files": files}).to_arrow_table(), args.repeat)
    print(
        f"baseline: raw DuckDB rollup by model x day over the same files: {raw_s * 1000:,.0f} ms ({raw.num_rows} rows)"
    )

    ov_s, ov = timed(lambda: overview_tables(journal), args.repeat)
    rows = sum(
        t.num_rows
        for t in (
            ov.by_day,
            ov.cost_by_model_day,
            ov.by_model,
            ov.by_tool,
            ov.by_agent,
            ov.latency_by_day,
            ov.costliest_runs,
            ov.top_errors,
        )
    )
    print(
        f"overview_tables (10 aggregations): {ov_s * 1000:,.0f} ms = {ov_s / raw_s:.1f}x the raw rollup "
        f"({rows} rows to chart)"
    )

    def charts() -> int:
        specs = [b.chart.to_dict() for s in overview_sections(ov, None) for b in s.blocks if hasattr(b, "chart")]
        return len(specs)

    ch_s, n_charts = timed(charts, args.repeat)
    print(f"building the {n_charts} overview charts from those tables: {ch_s * 1000:,.0f} ms")

    fr_s, runs = timed(lambda: find_runs(journal, limit=500), args.repeat)
    print(
        f"find_runs (every run's status/cost/errors, 500 most recent): {fr_s * 1000:,.0f} ms = "
        f"{fr_s / raw_s:.1f}x the raw rollup ({runs.num_rows} rows)"
    )

    vega_bundle()  # cached on disk after the first build (~10 s once per vl-convert version)
    with tempfile.TemporaryDirectory() as tmp:
        rep_s, path = timed(lambda: write_html(build_overview_report(journal), Path(tmp) / "o.html"), 1)
        size = path.stat().st_size
    print(
        f"journal report overview (queries, repricing, charts, HTML): {rep_s:,.1f} s, {size / 1e6:.2f} MB "
        f"= {rep_s / raw_s:.1f}x the raw rollup"
    )


if __name__ == "__main__":
    main()
