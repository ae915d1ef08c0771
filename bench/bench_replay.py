"""Replay benchmarks: state at a version, snapshots, every stream's agent-run state, projections.

Each figure is printed next to a baseline measured in the same run:

1. state at a random version of a 1,000-event stream, warm (the Journal and the stream cache
   live in the process) and cold, vs the python ``eventsourcing`` library (SQLite) getting the
   same aggregate at the same versions with ``repository.get(id, version=...)`` after storing
   the same 1,000 events (targets: <= 2 ms warm, >= 10x faster than eventsourcing);
2. state at the end of a 100,000-event stream with snapshots every 1,000 versions vs the full
   fold without snapshots (target <= 5 ms);
3. the agent-run state of every stream of a large journal (vectorised) vs the Python fold's
   rate on a slice of the same events (target >= 2M events/s);
4. built-in projection catch-up (runs, tool_calls) from scratch, vs a row-at-a-time handler
   projection on the same events; then incrementally (target >= 500k events/s), timed on
   ``--repeat`` identical copies of the journal, next to the full rebuild of the same journal:
   A. the last 200k-event batch of the demo journal (whole new runs) after the first 800k;
   B. a cut through running streams: the first half of each run of that batch is caught up
      first, then its second half arrives (open tool calls get their results, runs continue).

Usage:
    .venv/bin/python bench/bench_replay.py                         # uses bench/out/journal-10000000 if present
    .venv/bin/python bench/bench_replay.py --journal PATH          # a large journal (read only)
    .venv/bin/python bench/bench_replay.py --projection-events 1000000
    .venv/bin/python bench/bench_replay.py --skip state,snapshots,all    # projections only (~1.5 min)
"""

from __future__ import annotations

# isort: off
# first, as the journal CLI does: toolkit's allocator settings apply only before Polars and Arrow load
import toolkit  # noqa: F401
# isort: on

import argparse
import datetime as dt
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from toolkit.analysis.agent_run import AGENT_RUN, agent_run_states
from toolkit.analysis.aggregates import Event
from toolkit.analysis.projections import Emit, Projection, catch_up
from toolkit.analysis.replay import clear_cache, events_from_table, fold_to, read_events, state_at
from toolkit.analysis.snapshots import take_snapshots
from toolkit.ingest.demo import estimate_events, generate_demo
from toolkit.journal import Journal

OUT = Path(__file__).resolve().parent / "out"
MAIN_10M = Path("/work/main/bench/out/journal-10000000")
LONG = "bench-long-run-00"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ms(s: float) -> str:
    return f"{s * 1000:.3f} ms"


def agent_events(stream_id: str, n: int, t0: dt.datetime) -> pa.Table:
    """``n`` events of an agent run: LLM turns, tool calls (1 in 20 fails), plans, state updates."""
    kinds = ["llm_request", "llm_response", "tool_called", "tool_result", "state_updated"]
    et, tool, model, tin, tout, cost, err, data = [], [], [], [], [], [], [], []
    for i in range(n):
        k = kinds[i % 5] if i else "user_message"
        et.append(k)
        tool.append("search" if k.startswith("tool") else None)
        model.append("gpt-4o" if k.startswith("llm") else None)
        tin.append(1200 + i if k == "llm_response" else None)
        tout.append(80 if k == "llm_response" else None)
        cost.append("0.001250000" if k == "llm_response" else None)
        err.append("timeout" if k == "tool_result" and i % 100 == 3 else None)
        data.append(f'{{"i":{i},"q":"flights to BER"}}')
    return pa.table(
        {
            "stream_id": [stream_id] * n,
            "stream_type": ["agent_run"] * n,
            "event_type": et,
            "occurred_at": pa.array([t0 + dt.timedelta(seconds=i) for i in range(n)], pa.timestamp("us", tz="UTC")),
            "tool_name": tool,
            "model": model,
            "tokens_in": pa.array(tin, pa.int64()),
            "tokens_out": pa.array(tout, pa.int64()),
            "cost_usd": pa.array(cost, pa.string()),
            "error": err,
            "data": data,
        }
    )


# ---------------------------------------------------------------------------- 1. vs eventsourcing


def eventsourcing_baseline(events: list[Event], versions: list[int], workdir: Path) -> dict[str, float]:
    """The same events stored by eventsourcing (SQLite file), read back at the same versions."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Run(Aggregate):  # the same counters the agent-run state keeps for these events
        def __init__(self) -> None:
            self.events = 0
            self.tokens_in = 0
            self.tokens_out = 0
            self.errors = 0
            self.tool_calls: dict[str, int] = {}
            self.llm_calls: dict[str, int] = {}
            self.last_tool: str | None = None

        @event("Recorded")
        def record(
            self, event_type: str, tool_name: str | None, model: str | None, tokens_in: int, tokens_out: int,
            is_error: bool, data: str,
        ) -> None:
            self.events += 1
            self.tokens_in += tokens_in
            self.tokens_out += tokens_out
            self.errors += is_error
            if event_type == "tool_called" and tool_name:
                self.tool_calls[tool_name] = self.tool_calls.get(tool_name, 0) + 1
                self.last_tool = tool_name
            if event_type == "llm_response":
                self.llm_calls[model or "unknown"] = self.llm_calls.get(model or "unknown", 0) + 1

    db = workdir / "eventsourcing.sqlite"
    db.unlink(missing_ok=True)
    app: Application[Any] = Application(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db)}
    )
    run = Run()
    for e in events:
        run.record(e.event_type, e.tool_name, e.model, e.tokens_in or 0, e.tokens_out or 0, e.is_error, e.data_json)
    save = timed(lambda: app.save(run))
    # eventsourcing's version 1 is the creation event: its version v + 1 holds our version v
    for v in versions[:5]:
        app.repository.get(run.id, version=v + 1)
    got = [timed(lambda v=v: app.repository.get(run.id, version=v + 1)) for v in versions]
    check = app.repository.get(run.id, version=len(events) + 1)
    return {"median": statistics.median(got), "p95": _p95(got), "save": save, "events": float(check.events)}


def _p95(xs: list[float]) -> float:
    return sorted(xs)[int(len(xs) * 0.95)]


def bench_state_at(journal: Journal, stream_id: str) -> None:
    log(f"1. state at version: stream {stream_id} of {journal.path}")
    clear_cache()
    cold_first = timed(lambda: state_at(journal, stream_id, version=500))
    n = journal.stream_version(stream_id)
    rng = random.Random(7)
    versions = [rng.randint(1, n) for _ in range(300)]
    for v in versions[:20]:
        state_at(journal, stream_id, version=v)
    warm = [timed(lambda v=v: state_at(journal, stream_id, version=v)) for v in versions]
    colds = []
    for v in versions[:10]:
        clear_cache()
        colds.append(timed(lambda v=v: state_at(journal, stream_id, version=v)))
    head = state_at(journal, stream_id)
    events = read_events(journal, stream_id)
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        es = eventsourcing_baseline(events, versions, Path(tmp))
    assert int(es["events"]) == head.events, (es["events"], head.events)
    med = statistics.median(warm)
    print(f"state_at, {n}-event stream, warm: median {ms(med)}, p95 {ms(_p95(warm))} (target <= 2 ms)")
    print(f"state_at, cold (stream read from the journal files + fold): median {ms(statistics.median(colds))}; "
          f"first call of the process {ms(cold_first)}")
    print(f"eventsourcing {_es_version()} SQLite repository.get(id, version=v), same events and versions: "
          f"median {ms(es['median'])}, p95 {ms(es['p95'])} (its save of the {n} events took {es['save']:.2f} s)")
    print(f"ratio: warm state_at is {es['median'] / med:.1f}x faster than eventsourcing (target >= 10x); "
          f"cold is {es['median'] / statistics.median(colds):.1f}x")


def _es_version() -> str:
    from importlib.metadata import version

    return version("eventsourcing")


# ---------------------------------------------------------------------------- 2. snapshots


def bench_snapshots(events: int) -> None:
    path = OUT / f"replay-snapshots-{events}"
    shutil.rmtree(path, ignore_errors=True)
    log(f"2. snapshots: writing one {events:,}-event stream to {path}")
    journal = Journal.create(path)
    t0 = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
    journal.append_batch(agent_events("long", events, t0))
    clear_cache()
    cold_full = timed(lambda: fold_to(journal, "long", use_snapshots=False))
    full = [timed(lambda: fold_to(journal, "long", use_snapshots=False)) for _ in range(3)]
    took = timed(lambda: take_snapshots(journal, every=1000))
    first = timed(lambda: state_at(journal, "long"))
    warm = [timed(lambda: state_at(journal, "long")) for _ in range(50)]
    assert state_at(journal, "long") == fold_to(journal, "long", use_snapshots=False).state
    # the worst case: 999 events after the nearest snapshot
    worst_v = events - 1
    worst = [timed(lambda: state_at(journal, "long", version=worst_v)) for _ in range(50)]
    assert state_at(journal, "long", version=worst_v) == fold_to(
        journal, "long", version=worst_v, use_snapshots=False
    ).state
    clear_cache()
    fresh = Journal.open(path)
    cold = timed(lambda: state_at(fresh, "long"))
    print(f"state_at end of a {events:,}-event stream, snapshots every 1,000: warm median {ms(statistics.median(warm))} "
          f"(target <= 5 ms); first after snapshotting {ms(first)}; cold in a fresh Journal {ms(cold)}")
    print(f"state_at version {worst_v:,} (999 events after the nearest snapshot): warm median "
          f"{ms(statistics.median(worst))}, p95 {ms(_p95(worst))}")
    print(f"baseline full fold without snapshots: warm median {ms(statistics.median(full))}, cold {ms(cold_full)}; "
          f"ratio {statistics.median(full) / statistics.median(warm):.0f}x (taking the 100 snapshots: {took:.2f} s)")


# ---------------------------------------------------------------------------- 3. every stream


def bench_all_streams(journal: Journal) -> None:
    total = sum(f.rows for f in journal.files())
    log(f"3. agent-run state of every stream: {total:,} events in {journal.path}")
    times = []
    for _ in range(2):
        t = time.perf_counter()
        frame = agent_run_states(journal)
        times.append(time.perf_counter() - t)
    best = min(times)
    # the Python fold's rate on a slice of the same events (whole streams)
    ids = frame["stream_id"].head(20_000).to_list()
    table = journal.read_streams(ids, list(_event_columns()))
    evs = events_from_table(table)
    t = time.perf_counter()
    cur, state = None, AGENT_RUN.initial()
    for e in evs:
        if e.stream_id != cur:
            cur, state = e.stream_id, AGENT_RUN.initial()
        state = AGENT_RUN.reducer(state, e)
    fold_rate = len(evs) / (time.perf_counter() - t)
    print(f"agent_run_states, {frame.height:,} streams, {total:,} events: best {best:.2f} s of {len(times)} = "
          f"{total / best / 1e6:.2f}M events/s (target >= 2M/s); runs {', '.join(f'{x:.2f}' for x in times)} s")
    print(f"baseline Python fold (events already decoded, {len(evs):,} events): {fold_rate / 1e6:.2f}M events/s; "
          f"ratio {total / best / fold_rate:.1f}x")


def _event_columns() -> tuple[str, ...]:
    from toolkit.analysis.aggregates import EVENT_COLUMNS

    return EVENT_COLUMNS


# ---------------------------------------------------------------------------- 4. projections


def _handler(e: Event, emit: Emit) -> None:
    if e.event_type == "tool_result":
        emit({"stream_id": e.stream_id, "version": e.version, "ok": not e.is_error})


HANDLER = Projection(
    "bench_handler",
    pa.schema([("stream_id", pa.string()), ("version", pa.int64()), ("ok", pa.bool_())]),
    handler=_handler,
)


def _copy_journal(src: Path, dst: Path) -> Journal:
    """A copy sharing the (immutable) data files: hard links, not the lock file."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, copy_function=os.link, ignore=shutil.ignore_patterns(".write.lock"))
    return Journal.open(dst)


def _halves(batch: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Each stream's first half of its events, and the rest (a cut through running streams)."""
    import polars as pl

    frame = pl.from_arrow(batch)
    assert isinstance(frame, pl.DataFrame)
    idx = pl.int_range(pl.len()).over("stream_id")
    first = (idx < pl.len().over("stream_id") // 2).alias("_first")
    frame = frame.with_columns(first)
    return (frame.filter(pl.col("_first")).drop("_first").to_arrow().cast(batch.schema),
            frame.filter(~pl.col("_first")).drop("_first").to_arrow().cast(batch.schema))


def _rows(journal: Journal, name: str) -> list[tuple[Any, ...]]:
    from toolkit.journal.side_tables import read_projection

    t = read_projection(journal, name)
    assert t is not None
    return sorted(tuple(repr(v) for v in r.values()) for r in t.to_pylist())


def _incremental(base: Path, work: Path, batch: pa.Table, label: str, repeat: int) -> None:
    """Catch up both built-ins on ``repeat`` identical copies of ``base`` after appending ``batch``;
    then the full rebuild of the same journal (every event) for the ratio, and a check that both agree."""
    for name in ("runs", "tool_calls"):
        times: list[float] = []
        cpus: list[float] = []
        r = None
        for _ in range(repeat):
            journal = _copy_journal(base, work)
            journal.append_batch(batch)
            cpu = time.process_time()
            r = catch_up(journal, name)
            cpus.append(time.process_time() - cpu)
            assert not r.rebuilt, r.reason
            times.append(r.seconds)
        assert r is not None
        incremental = _rows(journal, name)
        full = catch_up(journal, name, reset=True)
        assert incremental == _rows(journal, name), f"{name}: incremental != rebuild"
        best, med = min(times), statistics.median(times)
        rate, full_rate = r.events / best, full.events_per_second
        print(f"project {name} incremental, {label}: {r.events:,} new events of {r.streams:,} streams: "
              f"best {best:.3f} s of {repeat} = {rate / 1e3:,.0f}k events/s (median {r.events / med / 1e3:,.0f}k/s; "
              f"target >= 500k/s); CPU {min(cpus):.3f} s = {r.events / min(cpus) / 1e3:,.0f}k events per CPU-second; "
              f"load {os.getloadavg()[0]:.1f}")
        print(f"  full rebuild of the same journal ({full.events:,} events) in the same run: {full.seconds:.3f} s = "
              f"{full_rate / 1e3:,.0f}k events/s; incremental rate / rebuild rate {rate / full_rate:.2f}x, "
              f"time {full.seconds / best:.1f}x shorter; rows equal")
        journal.close()


def bench_projections(events: int, repeat: int) -> None:
    path = OUT / f"replay-projections-{events}"
    shutil.rmtree(path, ignore_errors=True)
    runs = max(1, round(events / (estimate_events(1000) / 1000)))
    log(f"4. projections: writing ~{events:,} demo events ({runs:,} runs) to {path}")
    journal = Journal.create(path)
    batches = list(generate_demo(runs=runs, seed=5, batch_events=200_000))
    for t in batches[:-1]:
        journal.append_batch(t)
    for name in ("runs", "tool_calls"):
        r = catch_up(journal, name)
        print(f"project {name} from scratch: {r.events:,} events in {r.seconds:.2f} s = "
              f"{r.events_per_second / 1e3:,.0f}k events/s (target >= 500k/s), {r.rows:,} rows")
    h = catch_up(journal, HANDLER)
    print(f"baseline row-at-a-time handler projection, same events: {h.events_per_second / 1e3:,.0f}k events/s")
    journal.close()
    last = batches[-1]
    # A: the bench's split: the last 200k-event batch of the demo = whole new runs
    _incremental(path, OUT / "replay-projections-work", last, "new runs (the last demo batch)", repeat)
    # B: a cut through running streams: the first half of each of those runs is caught up
    # first, then the second halves arrive (open calls wait for their results)
    head, tail = _halves(last)
    cut = OUT / f"replay-projections-{events}-cut"
    journal = _copy_journal(path, cut)
    journal.append_batch(head)
    for name in ("runs", "tool_calls"):
        catch_up(journal, name)
    journal.close()
    _incremental(cut, OUT / "replay-projections-work", tail, "second halves of running streams", repeat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--journal", default=str(OUT / "journal-10000000") if (OUT / "journal-10000000").exists()
                    else str(MAIN_10M) if MAIN_10M.exists() else None,
                    help="large journal with 1,000-event streams bench-long-run-NN (read only)")
    ap.add_argument("--snapshot-events", type=int, default=100_000)
    ap.add_argument("--projection-events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="incremental catch-ups timed on identical copies")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: state,snapshots,all,projections")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    skip = set(args.skip.split(","))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    big: Journal | None = None
    if not {"state", "all"} - skip:
        pass  # only the projections (their own journal) or snapshots: no large journal needed
    elif args.journal:
        big = Journal.open(args.journal)
        big.warm_up()
    else:
        path = OUT / "replay-small"
        shutil.rmtree(path, ignore_errors=True)
        log(f"no large journal: writing {path} (demo fleet + a 1,000-event run)")
        big = Journal.create(path)
        for t in generate_demo(runs=20_000, seed=3, batch_events=200_000):
            big.append_batch(t)
        big.append_batch(agent_events(LONG, 1000, dt.datetime(2026, 10, 1, tzinfo=dt.UTC)))
    if "state" not in skip:
        bench_state_at(big, LONG)
    if "snapshots" not in skip:
        bench_snapshots(args.snapshot_events)
    if "all" not in skip:
        bench_all_streams(big)
    if "projections" not in skip:
        bench_projections(args.projection_events, args.repeat)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
