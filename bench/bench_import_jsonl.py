"""JSONL import speed: the parse/map stage of ``journal import`` vs DuckDB ``read_json`` of the same file.

The file is a synthetic canonical JSONL export (``--lines`` lines, default 1M): agent runs of
user_message / llm_response / tool_called / tool_result events, with model, tokens, cost and tool
columns where they belong and ``data`` alternating between objects and text. Measured, best of
``--repeat`` runs each, in the same process:

1. DuckDB ``read_json`` of the file into Arrow (typed columns, ``data`` as JSON) — the baseline;
2. the canonical JSONL importer: bulk parse, structural checks, verbatim ``data``, derived event
   ids → Arrow batches in the journal's input schema (target >= 300k events/s);
3. the journal's batch validation of those rows (``validate_table``, as the runner does), shown
   apart: it is the runner's stage, not the parser's;
4. the mapped JSONL path (``--mapping``: JSON paths, unix times, data fields) on a file of
   ``--mapped-lines`` lines, which the mapping lets the importer apply in bulk.

Usage:
    .venv/bin/python bench/bench_import_jsonl.py                 # 1M lines
    .venv/bin/python bench/bench_import_jsonl.py --lines 200000 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from toolkit.engines.duckdb_engine import raw_connection
from toolkit.ingest.base import ImportOptions
from toolkit.ingest.jsonl import CanonicalJsonlImporter
from toolkit.journal.prepare import validate_table

OUT = Path(__file__).resolve().parent / "out"
TYPES = ("user_message", "llm_response", "tool_called", "tool_result")
# DuckDB reads the same columns with their types; data as JSON text
READ_JSON = """
SELECT * FROM read_json($path, format = 'newline_delimited', columns = {
    stream_id: 'VARCHAR', stream_type: 'VARCHAR', event_type: 'VARCHAR', occurred_at: 'TIMESTAMPTZ',
    model: 'VARCHAR', tokens_in: 'BIGINT', tokens_out: 'BIGINT', cost_usd: 'DECIMAL(18,9)',
    tool_name: 'VARCHAR', tool_call_id: 'VARCHAR', data: 'JSON'})
"""
MAPPING = """
[columns]
stream_id = "run"
event_type = "kind"
occurred_at = "ts"
model = "$.llm.model"
tokens_in = "$.llm.usage.prompt_tokens"
[data]
fields = ["text"]
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def write_file(path: Path, lines: int) -> None:
    if path.exists():
        return
    log(f"writing {lines:,} lines to {path} …")
    with path.open("w") as f:
        for i in range(lines):
            e: dict[str, object] = {
                "stream_id": f"run-{i // 50}",
                "stream_type": "agent_run",
                "event_type": TYPES[i % 4],
                "occurred_at": f"2026-11-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
            }
            if i % 4 == 1:
                e.update(model="gpt-4o", tokens_in=1200 + i % 50, tokens_out=90, cost_usd=0.0039)
            if i % 4 == 2:
                e.update(tool_name="search_flights", tool_call_id=f"c{i}")
            e["data"] = {"text": f"message number {i}", "n": i} if i % 3 else f"plain text {i}"
            f.write(json.dumps(e) + "\n")


def write_mapped(path: Path, lines: int) -> None:
    if path.exists():
        return
    with path.open("w") as f:
        for i in range(lines):
            rec = {
                "run": f"run-{i // 50}",
                "kind": TYPES[i % 4],
                "ts": f"2026-11-01T00:{(i // 60) % 60:02d}:{i % 60:02d}Z",
                "llm": {"model": "gpt-4o", "usage": {"prompt_tokens": i % 900}},
                "text": f"message {i}",
            }
            f.write(json.dumps(rec) + "\n")


def best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    """The best wall time of ``repeat`` runs; the CPU time of that run (all threads) goes to ``CPU``."""
    times, n = [], 0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        n = fn()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    wall, cpu = min(times)
    CPU.append(cpu)
    return wall, n


CPU: list[float] = []


def cpu_note(i: int, n: int) -> str:
    """CPU per event of a timed stage: what the figure would be if this process had the cores."""
    return f"  [{CPU[i]:6.2f} s CPU, {CPU[i] / n * 1e6:5.1f} µs/event]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--mapped-lines", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"events-{args.lines}.jsonl"
    write_file(path, args.lines)
    con = raw_connection()

    def duckdb_read() -> int:
        return int(con.execute(READ_JSON, {"path": str(path)}).to_arrow_table().num_rows)

    tables = []

    def toolkit_parse() -> int:
        tables.clear()
        for batch in CanonicalJsonlImporter().batches(str(path), ImportOptions()):
            tables.append(batch.events)
        return sum(t.num_rows for t in tables)

    def toolkit_validate() -> int:
        return sum(validate_table(t).num_rows for t in tables)

    t_duck, n_duck = best(duckdb_read, args.repeat)
    t_parse, n_parse = best(toolkit_parse, args.repeat)
    t_valid, _ = best(toolkit_validate, 1)
    mapped = OUT / f"mapped-{args.mapped_lines}.jsonl"
    write_mapped(mapped, args.mapped_lines)
    mapping = OUT / "mapping.toml"
    mapping.write_text(MAPPING)

    def toolkit_mapped() -> int:
        return sum(
            b.events.num_rows for b in CanonicalJsonlImporter().batches(str(mapped), ImportOptions(mapping=mapping))
        )

    t_mapped, n_mapped = best(toolkit_mapped, 1)
    assert n_duck == n_parse == args.lines, (n_duck, n_parse)
    print(
        f"file: {path.name} ({path.stat().st_size / 1e6:.0f} MB, {args.lines:,} lines), best of {args.repeat}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"duckdb read_json            {t_duck:7.2f} s  {n_duck / t_duck:12,.0f} events/s  (baseline){cpu_note(0, n_duck)}"
    )
    print(
        f"canonical jsonl parse/map   {t_parse:7.2f} s  {n_parse / t_parse:12,.0f} events/s  "
        f"{t_duck / t_parse:5.2f}x duckdb  (target >= 300,000 events/s){cpu_note(1, n_parse)}"
    )
    print(f"  + runner validate_table   {t_valid:7.2f} s  {n_parse / t_valid:12,.0f} events/s")
    print(f"mapped jsonl parse/map     {t_mapped:7.2f} s  {n_mapped / t_mapped:12,.0f} events/s  ({n_mapped:,} lines)")


if __name__ == "__main__":
    main()
