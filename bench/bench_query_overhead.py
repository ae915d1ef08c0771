"""What making the toolkit's own queries stoppable by Ctrl-C costs a short query.

The toolkit runs its own queries on the main thread; while one runs, Ctrl-C's signal handler also
writes to a pipe that one thread of the process reads to interrupt the query (``duckdb_engine._CtrlC``).
Printed per 1,000 tiny queries (``--sql``; by default one that reads no file, the worst case for
the relative cost), medians of rounds interleaved in the same run:

1. ``Session.query`` as it runs now (the pipe set and reset around each query);
2. the same with the pipe left out (as before: the baseline);
3. ``Session.query`` inside ``Session.watched()`` (a worker thread per query, as ``journal sql``
   runs user SQL): what the cheaper way saves;
4. raw DuckDB (no sandbox checks) for scale.

Usage:
    .venv/bin/python bench/bench_query_overhead.py [--queries 1000] [--rounds 7]
    .venv/bin/python bench/bench_query_overhead.py --sql "SELECT count(*) AS n FROM events WHERE version <= \\$v"
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit.engines import duckdb_engine
from toolkit.journal import Journal

SQL = "SELECT CAST($v AS BIGINT) AS n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sql", default=SQL, help="the query (one $v parameter; a view events of 200 events)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal.create(Path(tmp) / "j")
        journal.append("run-1", [{"event_type": "user_message", "data": {"i": i}} for i in range(200)])
        session = duckdb_engine.connect(journal)
        raw = duckdb_engine.raw_connection()
        raw.sql("CREATE TABLE events AS SELECT range + 1 AS version FROM range(200)")
        interruptible = duckdb_engine._interruptible

        def plain(con: Any, run: Callable[[], Any]) -> Any:
            return run()

        def now() -> None:
            for i in range(args.queries):
                session.query(args.sql, {"v": i})

        def before() -> None:
            duckdb_engine._interruptible = plain  # type: ignore[assignment]
            try:
                now()
            finally:
                duckdb_engine._interruptible = interruptible

        def watched() -> None:
            with session.watched():
                now()

        def raw_duckdb() -> None:
            for i in range(args.queries):
                raw.sql(args.sql, params={"v": i}).to_arrow_table()

        cases = {"now": now, "before (no Ctrl-C pipe)": before, "watched (thread per query)": watched, "raw DuckDB": raw_duckdb}
        times: dict[str, list[float]] = {name: [] for name in cases}
        now()  # warm-up: the parsed statements are cached, the pipe's reader thread started
        for _ in range(args.rounds):
            for name, fn in cases.items():
                started = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - started)
        base = statistics.median(times["before (no Ctrl-C pipe)"])
        print(f"{args.queries:,} x {args.sql}, median of {args.rounds} interleaved rounds")
        for name, ts in times.items():
            m = statistics.median(ts)
            print(f"  {name:28} {m * 1000:8.1f} ms  ({m / args.queries * 1e6:7.1f} us/query, {m / base:5.2f}x before)")
        session.close()
        raw.close()
        journal.close()


if __name__ == "__main__":
    main()
