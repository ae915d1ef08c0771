# ruff: noqa: F811  (pytest fixtures imported from invariant_journals are parameters here)
"""The shared pass judges the built-ins exactly as their own SQL/Polars definitions do.

Every built-in, on the fixture patterns and the demo journal: the failure rows of the shared pass
(one scan, one sort, integer keys) == those of the per-rule path (``sql_failures`` /
``polars_failures``), message text included; its per-event verdicts == the plain-Python reference;
and ``journal regrade all`` writes the same findings either way.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from invariant_journals import demo, everything  # noqa: F401  (pytest fixtures)
from test_invariants import HISTORIES, HISTORY_RULES, _reference, history_journal

from toolkit.analysis import regrade as regrade_module
from toolkit.analysis.invariants import REFERENCES
from toolkit.analysis.regrade import regrade
from toolkit.analysis.rules import RuleSet, polars_rule
from toolkit.analysis.shared_pass import BUILTIN_COLUMNS, frame_failures, frame_verdicts, is_builtin, load_frame
from toolkit.analysis.verdicts import Selection, polars_failures, sql_failures
from toolkit.engines.duckdb_engine import connect
from toolkit.journal import Journal

PARAMS: dict[str, dict[str, Any]] = {
    "budget": {"max_cost_usd": "1"},
    "latency": {"max_tool_ms": "500", "max_llm_ms": "2000"},
    "journal_integrity": {},
}


def _per_rule(journal: Journal, name: str, bound: dict[str, Any], ids: list[str] | None = None) -> list[dict[str, Any]]:
    rule = RuleSet.load().get(name)
    if rule.kind == "sql":
        session = connect(journal)
        try:
            selection = Selection(streams=tuple(ids)) if ids else Selection()
            return list(sql_failures(session, rule, bound, selection).to_pylist())
        finally:
            session.close()
    return list(polars_failures(journal, rule, bound, ids).to_pylist())


@pytest.mark.parametrize("name", sorted(BUILTIN_COLUMNS))
@pytest.mark.parametrize("where", ["patterns", "demo"])
def test_shared_pass_failures_equal_the_per_rule_path(name: str, where: str, everything: Journal, demo: Journal) -> None:
    journal = everything if where == "patterns" else demo
    bound = RuleSet.load().get(name).bind(PARAMS.get(name, {}))
    shared = frame_failures(load_frame(journal, [name]), name, bound).to_pylist()
    assert shared == _per_rule(journal, name, bound)
    if where == "patterns":
        assert shared, "no stream fails: the comparison would be empty"


def test_rules_judged_in_threads_give_each_rule_its_own_outcome_in_order(
    everything: Journal, demo: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All seven at once, two at a time (the two tool rules share one grouping of the calls), give
    what each gives alone, in the order asked, and a rule that raises stays its own error."""
    from toolkit.analysis import shared_pass

    rule_set = RuleSet.load()
    names = sorted(BUILTIN_COLUMNS, reverse=True)
    rules = [rule_set.get(n) for n in names]
    bound = {n: rule_set.get(n).bind(PARAMS.get(n, {})) for n in names}
    calls: list[str] = []
    group_calls = shared_pass._group_calls

    def counted(f: Any, rows: Any) -> Any:
        calls.append("grouped")
        return group_calls(f, rows)

    monkeypatch.setattr(shared_pass, "_group_calls", counted)
    monkeypatch.setattr(shared_pass, "RULE_THREADS", 2)
    for journal in (everything, demo):
        calls.clear()
        together = shared_pass.grade_streams(journal, rules, bound)
        assert calls == ["grouped"]
        for name, (table, error) in zip(names, together, strict=True):
            assert error is None and table is not None
            assert table.to_pylist() == frame_failures(load_frame(journal, [name]), name, bound[name]).to_pylist()
    broken = dict(bound, latency={"max_tool_ms": None, "max_llm_ms": None})  # the message cannot be formatted
    outcomes = shared_pass.grade_streams(everything, rules, broken)
    assert [e is None for _, e in outcomes] == [n != "latency" for n in names]


def test_an_interrupt_while_rules_are_judged_drops_the_rules_not_started(
    everything: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during a re-grade surfaces once the rules running finish, not after every rule."""
    import time

    from toolkit.analysis import shared_pass

    started: list[str] = []
    real = shared_pass.frame_failures

    def slow(frame: Any, name: str, *args: Any) -> Any:
        started.append(name)
        time.sleep(0.3)
        return real(frame, name, *args)

    def interrupt(stage: str) -> None:
        if stage != "read":
            raise KeyboardInterrupt

    monkeypatch.setattr(shared_pass, "frame_failures", slow)
    monkeypatch.setattr(shared_pass, "RULE_THREADS", 2)
    rule_set = RuleSet.load()
    rules = [rule_set.get(n) for n in sorted(BUILTIN_COLUMNS)]
    with pytest.raises(KeyboardInterrupt):
        shared_pass.grade_streams(everything, rules, {r.name: r.bind({}) for r in rules}, progress=interrupt)
    assert len(started) <= 2 < len(rules)
    time.sleep(0.5)  # the two running finish on their own
    assert len(started) <= 2


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_shared_pass_verdicts_equal_the_plain_python_loop(name: str, everything: Journal, demo: Journal) -> None:
    for journal in (everything, demo):
        bound = RuleSet.load().get(name).bind(PARAMS.get(name, {}))
        frame = load_frame(journal, sorted(BUILTIN_COLUMNS))  # every rule over one frame
        got = {(s, v, ok) for s, v, ok in frame_verdicts(frame, name, bound).rows() if ok is not None}
        assert got == _reference(journal, name, bound)


def test_shared_pass_on_selected_streams_keeps_journal_wide_rules_journal_wide(everything: Journal) -> None:
    ids = sorted(set(everything.heads()))[:3]
    for name in sorted(BUILTIN_COLUMNS):
        bound = RuleSet.load().get(name).bind(PARAMS.get(name, {}))
        frame = load_frame(everything, [name])
        assert frame_failures(frame, name, bound, ids).to_pylist() == _per_rule(everything, name, bound, ids), name


def test_regrade_writes_the_same_findings_through_the_shared_pass(demo: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    def findings(result: regrade_module.RegradeResult) -> list[dict[str, Any]]:
        return sorted(
            (r for r in result.findings.drop_columns(["batch_id"]).to_pylist()),
            key=lambda r: (r["rule"], r["stream_id"] or "", r["kind"]),
        )

    fast = regrade(demo, ["all"], write=False)
    monkeypatch.setattr(regrade_module, "SHARED_PASS", False)
    slow = regrade(demo, ["all"], write=False)
    assert findings(fast) == findings(slow)
    assert fast.failing


def test_a_user_rule_named_like_a_builtin_runs_its_own_code(tmp_path: Any) -> None:
    override = polars_rule("latency", "every event is slow", columns=("event_type",))(lambda events, p: pl.lit(False))
    assert not is_builtin(override)
    assert all(is_builtin(r) for r in RuleSet.load().rules.values() if r.name in BUILTIN_COLUMNS)


@settings(max_examples=20, deadline=None)
@given(streams=HISTORIES)
def test_shared_pass_equals_python_on_random_tool_histories(streams: list[list[dict[str, Any]]]) -> None:
    with history_journal(streams) as j:
        frame = load_frame(j, sorted(BUILTIN_COLUMNS))
        for name in HISTORY_RULES:
            bound = RuleSet.load().get(name).bind({})
            got = {(s, v, ok) for s, v, ok in frame_verdicts(frame, name, bound).rows() if ok is not None}
            assert got == _reference(j, name, bound), name


@pytest.mark.parametrize("name", ["tool_result_pairing", "no_tool_failure_loop", "journal_integrity"])
def test_hash_collisions_are_resolved_on_the_strings(name: str, everything: Journal) -> None:
    """Every id given the same first hash (the worst collision): the strings still decide."""
    bound = RuleSet.load().get(name).bind(PARAMS.get(name, {}))
    frame = load_frame(everything, [name])
    collide = {c: pl.when(pl.col(c).is_not_null()).then(pl.lit(42, pl.UInt64)) for c in ("tc", "h1e", "h1c") if c in frame.s.columns}
    frame.s = frame.s.with_columns(**collide)
    assert frame_failures(frame, name, bound).to_pylist() == _per_rule(everything, name, bound)


def test_over_the_memory_budget_the_journal_is_judged_in_shards_of_whole_streams(
    demo: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    from toolkit.analysis import shared_pass

    rules = [r for r in RuleSet.load().rules.values() if r.name in BUILTIN_COLUMNS]
    bound = {r.name: r.bind(PARAMS.get(r.name, {})) for r in rules}
    per_stream = [r for r in rules if r.name not in shared_pass.CROSS_STREAM]
    budget = shared_pass.journal_events(demo) // 5
    plan = shared_pass.shard_plan(demo, None, budget)
    assert plan is not None and len(plan) >= 5
    sharded = shared_pass.shared_failures(demo, per_stream, bound, budget=budget)
    whole = shared_pass.shared_failures(demo, per_stream, bound)
    assert [t.to_pylist() for t, _ in sharded if t is not None] == [t.to_pylist() for t, _ in whole if t is not None]
    # through journal regrade: journal-wide rules then go the SQL way; findings are the same
    fast = regrade(demo, ["all"], write=False)
    monkeypatch.setattr(shared_pass, "SHARD_EVENTS", budget)
    assert not shared_pass.shardable(RuleSet.load().get("journal_integrity"), shared_pass.journal_events(demo))
    small = regrade(demo, ["all"], write=False)
    key = ["rule", "stream_id", "first_failing_version", "message", "failing_events", "evidence"]
    assert small.findings.select(key).to_pylist() == fast.findings.select(key).to_pylist()


def test_a_selection_reports_only_the_selected_streams(demo: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    failing = regrade(demo, ["all"], write=False).findings.column("stream_id").to_pylist()
    chosen = tuple(sorted({s for s in failing if s})[:4])
    selection = Selection(streams=chosen)
    fast = regrade(demo, ["all"], selection=selection, write=False)
    monkeypatch.setattr(regrade_module, "SHARED_PASS", False)
    slow = regrade(demo, ["all"], selection=selection, write=False)
    key = ["rule", "stream_id", "first_failing_version", "message", "failing_events", "evidence"]
    assert fast.findings.select(key).to_pylist() == slow.findings.select(key).to_pylist()
    assert {r for r in fast.findings.column("stream_id").to_pylist()} <= set(chosen)


@settings(max_examples=60, deadline=None)
@given(pieces=__import__("hypothesis").strategies.lists(
    __import__("hypothesis").strategies.tuples(
        __import__("hypothesis").strategies.integers(0, 5), __import__("hypothesis").strategies.integers(1, 4)),
    max_size=30))
def test_streams_are_grouped_in_version_order_whatever_order_the_files_give(pieces: list[tuple[int, int]]) -> None:
    """Rows in any read order (pieces of streams, versions out of order): each stream's rows end up
    together in version order, every row kept once, with its payload."""
    from toolkit.analysis.shared_pass import _group_streams

    rows: list[tuple[int, int]] = []
    next_version: dict[int, int] = {}
    for sid, n in pieces:  # a piece: n consecutive versions of a stream, pieces in read order
        start = next_version.get(sid, 1)
        rows += [(sid, v) for v in range(start, start + n)]
        next_version[sid] = start + n
    rows = rows[::2] + rows[1::2]  # and some versions read before earlier ones
    s = pl.DataFrame(rows, schema={"sid": pl.UInt32, "version": pl.Int64}, orient="row").with_row_index("payload")
    out = _group_streams(s)
    assert sorted(out.rows()) == sorted(s.rows())
    sids = out.get_column("sid").to_list()
    runs = [k for i, k in enumerate(sids) if i == 0 or sids[i - 1] != k]
    assert len(runs) == len(set(runs)), "a stream's rows are not together"
    for (sid,), part in out.group_by(["sid"], maintain_order=True):
        assert part.get_column("version").is_sorted(), sid
    assert all(out.filter(pl.col("payload") == p).get_column("version").item() == v for p, _, v in s.rows())


def test_a_compacted_journal_read_in_file_order_gives_the_same_failures(demo: Journal, tmp_path: Any) -> None:
    """After compaction the files come sorted by stream and version, so the shared pass moves only
    the streams that cross a day partition: the failures are those of the per-rule path."""
    import shutil

    from toolkit.analysis.shared_pass import _group_streams
    from toolkit.journal.maintenance import compact

    copy = tmp_path / "compacted"
    shutil.copytree(str(demo.path), copy)
    with Journal.open(copy) as j:
        compact(j)
        j.refresh()
        frame = load_frame(j, sorted(BUILTIN_COLUMNS))
        assert frame.s.height == sum(f.rows for f in j.files())
        for name in sorted(BUILTIN_COLUMNS):
            bound = RuleSet.load().get(name).bind(PARAMS.get(name, {}))
            assert frame_failures(frame, name, bound).to_pylist() == _per_rule(j, name, bound), name
    assert _group_streams(frame.s.select("sid", "version")).equals(frame.s.select("sid", "version"))


def test_a_run_costing_exactly_the_budget_holds_on_every_path(tmp_path: Any) -> None:
    """0.1 + 0.2 is within a $0.3 budget: the shared pass, the SQL rule, the state rule and the
    reference agree at the limit and one nano-dollar under it (sums divided by 1e9 as doubles
    once put 0.1 + 0.2 over 0.3, and 2.675 over 2.675)."""
    from decimal import Decimal

    costs = {"a": ["0.1", "0.2"], "b": ["2.675"], "c": ["1.1", "2.2"], "d": ["0.7", "0.1", "0.1", "0.1"]}
    rows = [
        {"stream_id": s, "event_type": "llm_response", "occurred_at": f"2026-10-01T00:00:0{i}Z", "data": {}, "cost_usd": c}
        for s, cs in costs.items()
        for i, c in enumerate(cs, 1)
    ]
    journal = Journal.create(tmp_path / "j")
    journal.append_batch(rows, stream_type="agent_run")
    rule = RuleSet.load().get("budget")
    for stream, cs in costs.items():
        total = sum(Decimal(c) for c in cs)
        for limit, fails in ((total, False), (total - Decimal("0.000000001"), True)):
            bound = rule.bind({"max_cost_usd": str(limit)})
            shared = {r["stream_id"] for r in frame_failures(load_frame(journal, ["budget"]), "budget", bound).to_pylist()}
            assert (stream in shared) is fails, (stream, limit)
            assert shared == {r["stream_id"] for r in _per_rule(journal, "budget", bound)}, limit
            state = regrade(journal, ["budget_state"], params={"max_cost_usd": str(limit)}, write=False)
            assert shared == {r["stream_id"] for r in state.findings.to_pylist()}, limit
            assert shared == {s for s, _, ok in _reference(journal, "budget", bound) if not ok}, limit


def test_a_call_without_a_tool_name_takes_none_from_the_call_before(tmp_path: Any) -> None:
    """The first call of a group names no tool: the shared pass once carried the tool of the group
    (or stream) before into it and reported loops that the rule's own code does not."""
    j = Journal.create(tmp_path / "j")
    for k, (a, b) in enumerate([("c1", "c2"), ("c2", "c1"), ("x", "y")]):
        j.append(f"run-{k}", [
            {"event_type": "tool_called", "tool_name": "pay", "tool_call_id": a, "data": {"amount": 5}},
            {"event_type": "tool_result", "tool_call_id": a, "is_error": True, "error": "declined", "data": {}},
            {"event_type": "tool_called", "tool_name": None, "tool_call_id": b, "data": {"amount": 5}},
            {"event_type": "tool_result", "tool_call_id": b, "is_error": True, "error": "declined", "data": {}},
        ])
    bound = RuleSet.load().get("no_tool_failure_loop").bind({})
    shared = frame_failures(load_frame(j, ["no_tool_failure_loop"]), "no_tool_failure_loop", bound).to_pylist()
    assert shared == _per_rule(j, "no_tool_failure_loop", bound) == []


def test_an_idempotency_key_equal_to_an_unkeyed_call_s_event_id_is_no_second_use(tmp_path: Any) -> None:
    j = Journal.create(tmp_path / "j")
    j.append("run-a", [{"event_type": "tool_called", "event_id": "pay-123", "tool_name": "pay", "tool_call_id": "c1", "data": {}}])
    j.append("run-b", [{"event_type": "custom", "idempotency_key": "pay-123", "data": {}}])
    bound = RuleSet.load().get("exactly_once").bind({})
    shared = frame_failures(load_frame(j, ["exactly_once"]), "exactly_once", bound).to_pylist()
    assert shared == _per_rule(j, "exactly_once", bound) == []
