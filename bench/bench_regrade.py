"""Re-grade benchmarks: vectorised built-in rules over a large journal, Python-state rules, bisection.

Each figure is printed next to a baseline measured in the same run:

1. the built-in SQL and Polars rules judged over every stream of a large journal in one shared
   pass (``toolkit.analysis.shared_pass``) over the journal's saved rule keys
   (``toolkit.analysis.rule_keys``), best of ``--repeat``: total, the read and the rules (run in
   threads), peak RSS; the first pass of the journal's Delta version, which reads the journal's
   strings and saves the keys (each part timed); one pass without keys (the strings read every
   time, as before the keys); then ``journal regrade`` of the same rules end to end (findings recorded; default journal:
   the 10M-event journal of bench_journal.py, linked read-only into bench/out so the findings can be
   written); vs a plain Python loop (the rules' references in ``toolkit.analysis.invariants``) timed
   over a sample of whole streams and scaled to the journal (target: <= 3 s on 2 cores);
2. Python-state rules over consecutive streams (``--state-streams``; 0: all), events covered per
   second through ``regrade`` (target: >= 500k events/s on 2 cores): ``budget_state`` (monotone),
   ``error_streak`` (not monotone; default and ``max_errors=0``, which fails often) on column-wise
   agent-run states, and a rule reading the per-tool dict (folds, in worker processes); vs the
   plain fold over the first ``--baseline-streams`` of them, whose findings must be identical;
3. bisecting a 100,000-event stream: rule evaluations (target: <= 20) and time, vs a linear scan;
4. (with ``--polars-bisect-journal PATH``) bisecting a Polars rule over a copy of that journal with
   a 100,000-event stream added: the probes on one read held in memory vs a scan per probe
   (``hold_bytes_max=0``, the path before the held read), without the failing event's description.

Usage:
    .venv/bin/python bench/bench_regrade.py
    .venv/bin/python bench/bench_regrade.py --journal bench/out/journal-1000000 --sample-streams 2000
    .venv/bin/python bench/bench_regrade.py --skip vectorised bisect --state-streams 0   # Python-state, all streams
    .venv/bin/python bench/bench_regrade.py --skip vectorised state bisect --polars-bisect-journal /tmp/demo
"""

from __future__ import annotations

# isort: off
# first, as the journal CLI does: toolkit's allocator settings apply only before Polars and Arrow load
import toolkit  # noqa: F401
# isort: on

import argparse
import os
import random
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

from toolkit.analysis import regrade as regrade_module
from toolkit.analysis import rule_keys, shared_pass, state_rules
from toolkit.analysis.bisection import bisect_stream
from toolkit.analysis.invariants import REFERENCE_COLUMNS, REFERENCES
from toolkit.analysis.regrade import regrade
from toolkit.analysis.rules import RuleSet
from toolkit.analysis.shared_pass import BUILTIN_COLUMNS, RULE_THREADS, is_builtin, shared_failures
from toolkit.analysis.state_rules import all_stream_ids
from toolkit.analysis.verdicts import Selection
from toolkit.engines.polars_engine import scan_events
from toolkit.journal import Journal
from toolkit.journal.rewrite import drop_rule_keys

OUT = Path(__file__).resolve().parent / "out"
DEFAULT_JOURNAL = Path("/work/main/bench/out/journal-10000000")


def linked_copy(source: Path, target: Path) -> Path:
    """A copy of a journal whose data files are hard links (the source is never written)."""
    if target.exists():
        shutil.rmtree(target)
    try:
        shutil.copytree(source, target, copy_function=os.link, ignore=shutil.ignore_patterns("findings"))
    except OSError:
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("findings"))
    return target


def sample_streams(journal: Journal, n: int, *, contiguous: bool = False) -> list[str]:
    """n streams spread over the journal, or n consecutive stream ids (as a full re-grade reads them)."""
    ids = scan_events(journal).select("stream_id").unique().sort("stream_id").collect().get_column("stream_id")
    if contiguous:
        return ids.slice(len(ids) // 3, n).to_list()
    step = max(1, len(ids) // n)
    return ids.gather_every(step).head(n).to_list()


def _pass(journal: Journal, chosen: list[Any], bound: dict[str, Any]) -> tuple[float, float, float, list[Any]]:
    """One shared pass: (total, read, rules) seconds and the outcomes."""
    marks: list[float] = []
    t0 = time.perf_counter()
    outcomes = shared_failures(journal, chosen, bound, progress=lambda _name: marks.append(time.perf_counter()))
    total = time.perf_counter() - t0
    read_end = marks[1] if len(marks) > 1 else t0 + total  # the rules start once the frame is read
    return total, read_end - marks[0], t0 + total - read_end, outcomes


def bench_vectorised(journal: Journal, rules: list[str], sample: list[str], repeat: int, per_rule: bool) -> None:
    events = sum(f.rows for f in journal.files())
    rule_set = RuleSet.load()
    chosen = [rule_set.get(n) for n in rules]
    bound = {r.name: r.bind({}) for r in chosen}
    # the first pass of this Delta version reads the journal's strings and saves the rule keys
    # (timed on their own); the next ones read the keys
    drop_rule_keys(journal)
    saving: list[float] = []
    save = rule_keys.save_frame

    def timed_save(*args: Any) -> Any:
        t = time.perf_counter()
        try:
            return save(*args)
        finally:
            saving.append(time.perf_counter() - t)

    rule_keys.save_frame = timed_save  # type: ignore[assignment]
    try:
        cold, cold_read, cold_rules, outcomes = _pass(journal, chosen, bound)
    finally:
        rule_keys.save_frame = save  # type: ignore[assignment]
    best: dict[str, float] = {"total": float("inf"), "read": float("inf"), "rules": float("inf"), "cpu": float("inf")}
    for _ in range(repeat):
        c0 = time.process_time()
        total, read, rules_s, outcomes = _pass(journal, chosen, bound)
        cpu = time.process_time() - c0
        for k, v in (("total", total), ("read", read), ("rules", rules_s), ("cpu", cpu)):
            best[k] = min(best[k], v)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    failing = sum(t.num_rows for t, _ in outcomes if t is not None)
    keys = sum(p.stat().st_size for p in (rule_keys.saved_folder(journal) or Path("/nonexistent")).glob("*"))
    print(f"1. vectorised re-grade of {len(rules)} built-in rules over {events:,} events, one shared pass over the "
          f"saved rule keys: {best['total']:.2f} s (best of {repeat}; target <= 3 s; CPU {best['cpu']:.2f} s over "
          f"both cores), {failing:,} failing (rule, stream) pairs; peak RSS {rss:,.0f} MB")
    print(f"   {'read the rule keys':<34} {best['read']:6.2f} s")
    print(f"   {f'the rules, {min(RULE_THREADS, len(rules))} at a time':<34} {best['rules']:6.2f} s")
    print(f"   first pass of this journal version (as the first `journal regrade` after a commit runs it): "
          f"{cold:.2f} s = read the journal's strings {cold_read - sum(saving):.2f} s + save the rule keys "
          f"{sum(saving):.2f} s ({keys / 1e6:,.0f} MB) + the rules {cold_rules:.2f} s")
    shared_pass.SAVED_KEYS = False
    try:
        plain, plain_read, plain_rules, _ = _pass(journal, chosen, bound)
    finally:
        shared_pass.SAVED_KEYS = True
    print(f"   without rule keys (the journal's strings read every time, as before): {plain:.2f} s "
          f"(read + sort {plain_read:.2f} s, the rules {plain_rules:.2f} s)")
    t0 = time.perf_counter()
    result = regrade(journal, rules)
    end_to_end = time.perf_counter() - t0
    print(f"   journal regrade of the same rules, findings recorded ({result.findings.num_rows:,} rows, "
          f"{result.streams_checked:,} streams): {end_to_end:.2f} s end to end")
    if per_rule:  # the path every rule took before the shared pass: its own scan and sort
        regrade_module.SHARED_PASS = False
        t0 = time.perf_counter()
        regrade(journal, rules, write=False)
        print(f"   the same rules one by one (each its own scan and sort): {time.perf_counter() - t0:.2f} s")
        regrade_module.SHARED_PASS = True
    # baseline: the plain-Python references over a sample of whole streams, scaled to the journal
    frame = (
        scan_events(journal, stream_ids=sample).select(list(REFERENCE_COLUMNS)).sort("position").collect()
    )
    rows = frame.to_dicts()
    loop_total = 0.0
    for name in rules:
        t0 = time.perf_counter()
        for _ in REFERENCES[name](rows, bound[name]):
            pass
        loop_total += time.perf_counter() - t0
    scaled = loop_total * events / max(1, len(rows))
    print(f"   baseline: plain Python loop over a sample of {len(rows):,} events ({len(sample):,} whole streams): "
          f"{loop_total:.2f} s -> {scaled:.1f} s scaled to {events:,} events; the shared pass is "
          f"{scaled / best['total']:.1f}x faster")


def appended_events(journal: Journal, events: int, seed: int = 7) -> list[dict[str, Any]]:
    """About ``events`` events as an agent fleet appends them: a third go on 300 saved streams, the
    rest start new streams (10 each); tool calls with results (a few failing), LLM responses with
    costs, user messages, causes naming the event before."""
    rng = random.Random(seed)
    saved = scan_events(journal).group_by("stream_id").agg(pl.col("stream_type").first()).sort("stream_id").collect()
    old = saved.gather_every(max(1, saved.height // 300)).head(300).rows()
    streams = [(sid, st) for sid, st in old] + [(f"appended-{i:05d}", "agent_run") for i in range(max(0, events * 2 // 3 // 10))]
    per = max(1, events // max(1, len(streams)))
    out: list[dict[str, Any]] = []
    for sid, st in streams:
        for i in range(per):
            kind = ("user_message", "tool_called", "tool_result", "llm_response")[i % 4]
            e: dict[str, Any] = {"stream_id": sid, "stream_type": st, "event_type": kind, "data": {"i": i}}
            if kind == "user_message":
                e["data"] = {"text": rng.choice(["yes, send it", "no", "what now?"])}
            elif kind in ("tool_called", "tool_result"):
                e |= {"tool_name": rng.choice(["search", "send_email"]), "tool_call_id": f"{sid}-c{i // 4}"}
                if kind == "tool_result":
                    e |= {"is_error": rng.random() < 0.1, "duration_ms": rng.uniform(5, 900)}
            else:
                e |= {"model": "gpt-4o", "cost_usd": f"{rng.uniform(0, 0.05):.6f}", "tokens_in": 900, "tokens_out": 80}
            out.append(e)
    return out


def bench_appended(source: Path, rules: list[str], events: int, repeat: int) -> None:
    """The re-grade after an append: the saved keys and the events appended since (read from the
    journal), on a linked copy of ``source`` (whose keys the vectorised bench saved)."""
    journal = Journal.open(linked_copy(source, OUT / f"appended-{source.name}"))
    if rule_keys.saved_folder(journal) is None:
        print("   (no saved rule keys to append after: run the vectorised bench first)")
        return
    tail = appended_events(journal, events)
    t0 = time.perf_counter()
    journal.append_batch(tail)
    appended_s = time.perf_counter() - t0
    rule_set = RuleSet.load()
    chosen = [rule_set.get(n) for n in rules]
    bound = {r.name: r.bind({}) for r in chosen}
    best = (float("inf"), 0.0, 0.0)
    for _ in range(repeat):
        total, read, rules_s, outcomes = _pass(journal, chosen, bound)
        best = min(best, (total, read, rules_s))
    if rule_keys.saved_folder(journal) is not None:  # the tail was over its share: read and saved anew
        print(f"   (the {len(tail):,} events appended are over TAIL_SHARE of the journal: read and saved anew)")
    shared_pass.SAVED_KEYS = False
    try:
        plain, _, _, read_outcomes = _pass(journal, chosen, bound)
    finally:
        shared_pass.SAVED_KEYS = True
    same = all(
        (a is None and b is None) or (a is not None and b is not None and a.equals(b))
        for (a, _), (b, _) in zip(outcomes, read_outcomes, strict=True)
    )
    t0 = time.perf_counter()
    result = regrade(journal, rules)
    end_to_end = time.perf_counter() - t0
    new = len({e["stream_id"] for e in tail if e["stream_id"].startswith("appended-")})
    print(f"   after an append of {len(tail):,} events ({appended_s:.2f} s; "
          f"{len({e['stream_id'] for e in tail}) - new} saved streams go on, {new} new): over the saved keys and the events appended since {best[0]:.2f} s (best of {repeat}; "
          f"read {best[1]:.2f} s, the rules {best[2]:.2f} s); a read of the journal {plain:.2f} s; "
          f"same failures: {'yes' if same else 'NO'}; journal regrade end to end {end_to_end:.2f} s "
          f"({result.findings.num_rows:,} findings)")


# a Python rule reading the per-tool failure counts: column-wise states do not hold them, so it folds
FOLD_RULE = """
from toolkit.analysis.rules import python_rule


@python_rule("tool_failures_state", "No tool fails more than n times in a run (reads the per-tool dict).",
             params="n BIGINT = 3")
def tool_failures_state(state, p):
    worst = max(state.tool_failures.values(), default=0)
    return True if worst <= p["n"] else f"a tool failed {worst} times"
"""


def _rows(table: Any) -> list[tuple[Any, ...]]:
    keys = ("stream_id", "version", "kind", "message", "failing_events", "failing_versions", "last_failing_version")
    return sorted(tuple(r[k] for k in keys) for r in table)


def bench_state_rules(journal: Journal, sample: list[str], baseline: list[str], workers: int | None) -> None:
    """Each rule over ``sample`` through ``regrade`` (what the user runs), then the plain fold over
    ``baseline`` (a prefix of the sample): the events/s ratio, and the findings must be identical."""
    rule_file = OUT / "bench_state_rules.py"
    rule_file.write_text(FOLD_RULE, encoding="utf-8")
    files = [str(rule_file)]
    rule_set = RuleSet.load(files)
    everything = len(sample) == len(all_stream_ids(journal))
    selection = Selection() if everything else Selection(streams=tuple(sample))
    events = scan_events(journal, stream_ids=sample).select(pl.len()).collect().item()
    base_events = scan_events(journal, stream_ids=baseline).select(pl.len()).collect().item()
    cases: list[tuple[str, dict[str, Any]]] = [
        ("budget_state", {}),  # monotone: final states first
        ("error_streak", {}),  # not monotone: every event judged
        ("error_streak", {"max_errors": "0"}),  # not monotone, many failing events
        ("tool_failures_state", {}),  # reads what columns do not hold: folds, in worker processes
    ]
    for name, params in cases:
        rule = rule_set.get(name)
        t0 = time.perf_counter()
        result = regrade(journal, [name], params=params, rule_files=files, selection=selection, workers=workers,
                         write=False)
        took = time.perf_counter() - t0
        stats = state_rules.LAST_STATS
        how = (f"{'column-wise states' if stats.columnwise_streams else 'folded'} in {stats.workers} process(es), "
               f"{stats.judged:,} rule evaluations, {stats.folded:,} events folded; load {os.getloadavg()[0]:.1f}")
        bound = rule.bind(params)
        t0 = time.perf_counter()
        plain = state_rules.fold_failures(journal, rule, bound, baseline)
        plain_rate = base_events / (time.perf_counter() - t0)
        fast = state_rules.python_failures(journal, rule, bound, baseline)
        same = _rows(fast.to_pylist()) == _rows(plain)
        label = f"{name}" + "".join(f" -p {k}={v}" for k, v in params.items())
        print(f"2. python-state rule {label} ({'monotone' if rule.monotone else 'not monotone'}) over {events:,} events "
              f"({len(sample):,} streams): {took:.2f} s = {events / took:,.0f} events/s (target >= 500,000); "
              f"{how}; {result.findings.num_rows:,} findings")
        print(f"   baseline: plain fold (Event per row, reducer, rule after every event) {plain_rate:,.0f} events/s "
              f"over {len(baseline):,} streams -> {events / took / plain_rate:.1f}x; findings identical: {same}")
        if not same:
            raise SystemExit(f"{label}: findings differ from the plain fold")


def bench_bisection(n: int) -> None:
    path = OUT / f"bisect-{n}"
    if path.exists():
        shutil.rmtree(path)
    journal = Journal.create(path)
    journal.append_batch(
        [{"stream_id": "long-run", "event_type": "llm_response", "cost_usd": "0.01", "tokens_in": 100, "data": {}}
         for _ in range(n)],
        stream_type="agent_run",
    )
    limit = str(round(n * 0.01 * 0.6179, 2))
    for rule in ("budget", "budget_state"):
        params: dict[str, Any] = {"max_cost_usd": limit}
        t0 = time.perf_counter()
        fast = bisect_stream(journal, rule, "long-run", params=params)
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        slow = bisect_stream(journal, rule, "long-run", params=params, force_linear=True)
        t_slow = time.perf_counter() - t0
        assert fast.version == slow.version, (fast.version, slow.version)
        print(f"3. bisect {rule} over a {n:,}-event stream: first failing version {fast.version:,} in "
              f"{fast.evaluations} rule evaluations (target <= 20), {t_fast:.2f} s; linear scan: "
              f"{slow.evaluations:,} evaluations, {t_slow:.2f} s ({t_slow / t_fast:.1f}x)")
    journal.close()


POLARS_BISECT_RULES = """
import polars as pl
from toolkit.analysis.rules import polars_rule

@polars_rule("budget_pl", "A run's cost stays within max_cost_usd (per stream).", monotone=True,
             params="max_cost_usd DOUBLE = 5", columns=("cost_usd",))
def budget_pl(events, p):
    total = pl.col("cost_usd").cast(pl.Float64).fill_null(0).cum_sum().over("stream_id")
    return total <= p["max_cost_usd"], pl.format("cumulative cost {}", total)

@polars_rule("budget_share_pl", "budget_pl, and no event over 1000x the journal's mean cost or with 1 MB of data.",
             monotone=True, params="max_cost_usd DOUBLE = 5", columns=("cost_usd", "data"))
def budget_share_pl(events, p):
    cost = pl.col("cost_usd").cast(pl.Float64).fill_null(0)
    sane = (cost <= 1000 * cost.mean()) & (pl.col("data").str.len_bytes() < 1_000_000)  # across streams
    total = cost.cum_sum().over("stream_id")
    return (total <= p["max_cost_usd"]) & sane, pl.format("cumulative cost {}", total)
"""


def bench_polars_bisection(source: Path, n: int, repeat: int) -> None:
    from toolkit.analysis import bisection

    journal = Journal.open(linked_copy(source, OUT / f"polars-bisect-{source.name}"))
    journal.append_batch(
        [{"stream_id": "long-run", "event_type": "llm_response", "cost_usd": "0.01", "data": {}} for _ in range(n)],
        stream_type="agent_run",
    )
    rules = OUT / "polars_bisect_rules.py"
    rules.write_text(POLARS_BISECT_RULES)
    events = sum(f.rows for f in journal.files())
    describe = bisection._describe
    bisection._describe = lambda journal, rule, result: result  # the same for both: not timed
    try:
        for rule in ("budget_pl", "budget_share_pl"):
            best: dict[int, tuple[float, float, int | None]] = {}
            for _ in range(repeat):
                for hold in (bisection.HOLD_BYTES_MAX, 0):  # alternating: the load moves
                    c0, t0 = _cpu(), time.perf_counter()
                    found = bisect_stream(journal, rule, "long-run", params={"max_cost_usd": str(round(n * 0.01 * 0.6179, 2))},
                                          rule_files=(str(rules),), hold_bytes_max=hold)
                    took = (time.perf_counter() - t0, _cpu() - c0, found.version)
                    best[hold] = min(best.get(hold, took), took)
            (held, held_cpu, v1), (each, each_cpu, v2) = best[bisection.HOLD_BYTES_MAX], best[0]
            assert v1 == v2, (v1, v2)
            print(f"4. bisect Polars rule {rule} over {events:,} events (stream of {n:,}): first failing version "
                  f"{v1:,} in {found.evaluations} probes; one read held {held:.2f} s (CPU {held_cpu:.2f} s), "
                  f"a scan per probe {each:.2f} s (CPU {each_cpu:.2f} s): {each / held:.1f}x (best of {repeat})")
    finally:
        bisection._describe = describe
    journal.close()


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--journal", type=Path, default=DEFAULT_JOURNAL, help="journal to re-grade (read only)")
    ap.add_argument("--sample-streams", type=int, default=5_000, help="streams in the baseline / Python-rule sample")
    ap.add_argument("--state-streams", type=int, default=20_000,
                    help="streams judged by the Python-state rules (0: every stream)")
    ap.add_argument("--state-workers", type=int, default=None,
                    help="processes for the Python-state rules (default: python_failures decides)")
    ap.add_argument("--baseline-streams", type=int, default=5_000, help="streams of the plain-fold baseline")
    ap.add_argument("--bisect-events", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[], choices=["vectorised", "state", "bisect"])
    ap.add_argument("--append-events", type=int, default=10_000,
                    help="then re-grade after an append of this many events (0: skip)")
    ap.add_argument("--per-rule", action="store_true", help="also time the rules one by one (slow: minutes at 10M)")
    ap.add_argument("--polars-bisect-journal", type=Path, default=None,
                    help="also bisect Polars rules over a copy of this journal: one read held vs a scan per probe")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} (shared machine: figures are noisy)")
    if not {"vectorised", "state"} <= set(args.skip):
        if not (args.journal / "journal.toml").is_file():
            print(f"no journal at {args.journal}: run bench/bench_journal.py first (or pass --journal)", file=sys.stderr)
            return 1
        journal = Journal.open(linked_copy(args.journal, OUT / f"regrade-{args.journal.name}"))
        rule_set = RuleSet.load()
        vector_rules = [n for n, r in rule_set.rules.items() if n in BUILTIN_COLUMNS and is_builtin(r)]
        if "vectorised" not in args.skip:
            bench_vectorised(journal, vector_rules, sample_streams(journal, args.sample_streams), args.repeat, args.per_rule)
        if "state" not in args.skip:
            sample = (sample_streams(journal, args.state_streams, contiguous=True) if args.state_streams
                      else all_stream_ids(journal))
            bench_state_rules(journal, sample, sample[: args.baseline_streams], args.state_workers)
        if "vectorised" not in args.skip and args.append_events:
            bench_appended(journal.path, vector_rules, args.append_events, args.repeat)  # type: ignore[arg-type]
    if "bisect" not in args.skip:
        bench_bisection(args.bisect_events)
    if args.polars_bisect_journal is not None:
        bench_polars_bisection(args.polars_bisect_journal, args.bisect_events, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
