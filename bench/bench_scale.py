"""Scale-out benchmark: re-grade and rollup on one machine vs a 2-worker Dask LocalCluster.

For each engine the work runs in a fresh child process while the parent samples the resident
memory of the child's whole process tree (the Dask workers included) every 50 ms, so the peak is
what the machine spent, not one process. Printed per step: wall time, peak memory of the tree, the
journal's size on disk (memory must stay well below it: partition-wise, never the whole journal),
and the Dask/one-machine ratio. The Dask figures include starting the LocalCluster (measured alone
too). Both engines' outputs are compared row for row (``identical``).

The re-grade is a dry run (``write=False``): findings are computed in full but not recorded, so
the 10M journal of bench_journal.py stays read only (``--write`` records them in a copy instead).

Usage:
    .venv/bin/python bench/bench_scale.py
    .venv/bin/python bench/bench_scale.py --journal bench/out/journal-1000000 --rules budget,latency
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
DEFAULT_JOURNAL = Path("/work/main/bench/out/journal-10000000")
STABLE = ["finding_id", "kind", "rule", "rule_fingerprint", "stream_id", "first_failing_version", "position",
          "message", "evidence", "failing_events"]


def child(step: str, engine: str, journal_path: str, rules: list[str], out: str, workers: int, write: bool) -> None:
    """Run one step in this (child) process; print its timing as JSON."""
    import pyarrow.parquet as pq

    from toolkit.analysis.distributed import dask_runner, rollup_dask
    from toolkit.analysis.regrade import regrade
    from toolkit.analysis.rollup import rollup
    from toolkit.engines.dask_engine import ClusterSpec
    from toolkit.journal import Journal

    journal = Journal.open(journal_path)
    spec = ClusterSpec(workers=workers)
    t0 = time.perf_counter()
    if step == "regrade":
        runner = dask_runner(spec) if engine == "dask" else None
        result = regrade(journal, rules, write=write, runner=runner)
        table = result.findings.select(STABLE).sort_by([(c, "ascending") for c in ("rule", "stream_id", "kind")])
        extra = {"findings": table.num_rows, "streams_checked": result.streams_checked}
    else:
        if engine == "dask":
            table = rollup_dask(journal, ["model", "day"], spec=spec)
        else:
            table = rollup(journal, ["model", "day"])
        extra = {"groups": table.num_rows}
    seconds = time.perf_counter() - t0
    pq.write_table(table, out)
    print(json.dumps({"seconds": seconds, **extra}), flush=True)


def tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def measure(step: str, engine: str, args: argparse.Namespace, journal: Path) -> dict[str, Any] | None:
    out = OUT / f"scale-{step}-{engine}.parquet"
    cmd = [sys.executable, __file__, "--child", step, engine, "--journal", str(journal), "--rules", args.rules,
           "--workers", str(args.workers), "--out", str(out)] + (["--write"] if args.write else [])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        last = [line for line in stderr.strip().splitlines() if line.strip()][-2:]
        print(f"{step}/{engine} FAILED after {time.perf_counter() - t0:.0f} s, peak {peak / 2**20:,.0f} MB (tree): "
              f"{' | '.join(last)[-600:]}", flush=True)
        return None
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(peak_mb=peak / 2**20, process_s=time.perf_counter() - t0, out=str(out))
    print(f"  {step}/{engine}: {result['seconds']:.1f} s, peak {result['peak_mb']:,.0f} MB (tree), load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    return result


def cluster_start_s(workers: int) -> float:
    from toolkit.engines.dask_engine import ClusterSpec, client

    t0 = time.perf_counter()
    with client(ClusterSpec(workers=workers)):
        started = time.perf_counter() - t0
    return started


def identical(a: str, b: str) -> bool:
    import pyarrow.parquet as pq

    return bool(pq.read_table(a).equals(pq.read_table(b)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--journal", type=Path, default=DEFAULT_JOURNAL)
    ap.add_argument("--rules", default="all", help="comma-separated rule names (default: all built-in stream rules)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", default="regrade,rollup")
    ap.add_argument("--engines", default="local,dask", help="local, dask or both (the ratio needs both)")
    ap.add_argument("--write", action="store_true", help="record the findings (in a copy of the journal)")
    ap.add_argument("--child", nargs=2, metavar=("STEP", "ENGINE"), help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    rules = [r for r in args.rules.split(",") if r]
    if args.child:
        child(args.child[0], args.child[1], str(args.journal), rules, args.out, args.workers, args.write)
        return
    OUT.mkdir(exist_ok=True)
    journal = args.journal
    if args.write:
        copy = OUT / f"scale-copy-{journal.name}"
        if not copy.exists():
            shutil.copytree(journal, copy)
        journal = copy

    from toolkit.journal import Journal

    j = Journal.open(journal)
    events = sum(f.rows for f in j.files())
    size_mb = sum(p.stat().st_size for p in Path(journal).rglob("*.parquet")) / 2**20
    load = os.getloadavg()
    print(f"journal {journal}: {events:,} events, {len(j.files())} files, {size_mb:,.0f} MB of Parquet; "
          f"{os.cpu_count()} cores, load average {load[0]:.1f} at start", flush=True)
    start = cluster_start_s(args.workers)
    print(f"LocalCluster ({args.workers} workers) start + stop: {start:.1f} s", flush=True)
    for step in [s for s in args.steps.split(",") if s]:
        engines = set(args.engines.split(","))
        one = measure(step, "local", args, journal) if "local" in engines else None
        dask = measure(step, "dask", args, journal) if "dask" in engines else None
        if one is None or dask is None:
            continue
        what = f"regrade {args.rules}" if step == "regrade" else "rollup usage by model x day"
        count = {k: v for k, v in one.items() if k in ("findings", "streams_checked", "groups")}
        print(
            f"{what}: one machine {one['seconds']:.1f} s, peak {one['peak_mb']:,.0f} MB | "
            f"dask {args.workers} workers {dask['seconds']:.1f} s (incl. cluster start), peak {dask['peak_mb']:,.0f} MB "
            f"(tree) | ratio dask/one {dask['seconds'] / one['seconds']:.2f}x time, "
            f"{dask['peak_mb'] / one['peak_mb']:.2f}x memory | identical: {identical(one['out'], dask['out'])} | {count} "
            f"| load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
