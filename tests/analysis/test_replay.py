"""Time travel: state_at == a naive full fold at every version, with and without snapshots."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import pickle
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from helpers import at, build_cut_with_a_late_clock, build_tool_failure_loop, ev
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from replay_fixtures import fresh_cache  # noqa: F401  (pytest fixtures)

from toolkit.analysis.agent_run import AGENT_RUN, AgentRunState, agent_run_states, apply_event
from toolkit.analysis.aggregates import Aggregate, Event, Upcaster, append_events, get_aggregate
from toolkit.analysis.counterfactual import Drop, counterfactual
from toolkit.analysis.plugins import load_plugins
from toolkit.analysis.replay import (
    clear_cache,
    diff_states,
    fold_states,
    fold_to,
    read_events,
    replay,
    replay_problems,
    state_at,
    stream_events,
)
from toolkit.analysis.snapshots import SNAPSHOTS, nearest_snapshot, take_snapshots
from toolkit.errors import (
    EventValidationError,
    ReplayError,
    StreamNotFoundError,
    VersionNotFoundError,
    VersionPurgedError,
)
from toolkit.journal import Journal
from toolkit.journal.retention import purge_before, remove_stream_prefix
from toolkit.journal.schema import CANONICAL_EVENT_TYPES
from toolkit.journal.side_tables import append_rows, read_table

TOOLS = ["search", "book", "shell"]
MODELS = ["m-a", "m-b", None]


@st.composite
def agent_event(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            [
                *CANONICAL_EVENT_TYPES,
                "GoalCreated",
                "GoalUpdated",
                "GoalCompleted",
                "TickCompleted",
                "EmergencyStopTriggered",
                "EmergencyStopCleared",
                "ConfigurationChanged",
                "AssistantArchived",
            ]
        )
    )
    e: dict[str, Any] = {"event_type": kind, "occurred_at": at(1) + dt.timedelta(minutes=draw(st.integers(0, 500)))}
    data: dict[str, Any] = {}
    if kind in {"tool_called", "tool_result"}:
        e["tool_name"] = draw(st.sampled_from(TOOLS))
        if kind == "tool_result" and draw(st.booleans()):
            e["error"] = "failed"
    if kind in {"llm_response", "llm_request"}:
        e["model"] = draw(st.sampled_from(MODELS))
        e["tokens_in"] = draw(st.integers(0, 5000))
        e["tokens_out"] = draw(st.integers(0, 500))
        e["cost_usd"] = str(draw(st.decimals(0, 1, places=6)))
    if kind == "plan_created":
        data = {"steps": draw(st.lists(st.sampled_from(TOOLS), max_size=3))}
    if kind.startswith("Goal"):
        data = {"goal_id": draw(st.sampled_from(["g1", "g2"])), "status": draw(st.sampled_from([None, "active"]))}
    if kind == "ConfigurationChanged":
        data = {"key": "llm_model", "new_value": draw(st.sampled_from(["m-a", "m-c"]))}
    if kind == "EmergencyStopTriggered":
        data = {"reason": "too many errors"}
    if kind == "error" and draw(st.booleans()):
        e["tool_name"] = draw(st.sampled_from(TOOLS))
    e["data"] = data
    return e


def naive(journal: Journal, stream_id: str, version: int, aggregate: Aggregate[Any] = AGENT_RUN) -> Any:
    """A full fold from version 1, straight from the journal files (no cache, no snapshots)."""
    events = [e for e in read_events(Journal.open(journal.path), stream_id) if e.version <= version]
    return aggregate.fold(events)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(agent_event(), min_size=1, max_size=12), min_size=1, max_size=3), st.integers(1, 5))
def test_state_at_equals_the_naive_fold_at_every_version(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[dict[str, Any]]], every: int
) -> None:
    journal = Journal.create(tmp_path_factory.mktemp("prop") / "j")
    clear_cache()
    total = 0
    for i, batch in enumerate(batches):  # several commits: the cache must pick up each
        journal.append("run", batch)
        total += len(batch)
        if i == 0:
            take_snapshots(journal, every=every)  # snapshots in the middle of the history
        for v in range(0, total + 1):
            assert state_at(journal, "run", version=v) == naive(journal, "run", v)
    states = dict(fold_states(journal, "run"))
    assert list(states) == list(range(1, total + 1))
    for v, s in states.items():
        assert s == naive(journal, "run", v)
        assert fold_to(journal, "run", version=v, use_snapshots=False).state == s
    # the vectorised state of every stream agrees with the fold too (SQL for canonical-only streams)
    canonical = [e for b in batches for e in b if e["event_type"] in CANONICAL_EVENT_TYPES]
    if canonical:
        journal.append("canon", canonical)
    rows = {r["stream_id"]: r for r in agent_run_states(journal).iter_rows(named=True)}
    assert rows["run"] == {"stream_id": "run", **states[total].summary()}
    if canonical:
        assert rows["canon"] == {"stream_id": "canon", **state_at(journal, "canon").summary()}
    journal.close()


def test_snapshots_are_used_and_never_change_results(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    before = [state_at(journal, "tool_failure_loop", version=v) for v in range(14)]
    report = take_snapshots(journal, every=4)
    assert (report.written, report.streams) == (3, 1)
    assert take_snapshots(journal, every=4).written == 0  # already there
    clear_cache()
    assert [state_at(journal, "tool_failure_loop", version=v) for v in range(14)] == before
    clear_cache()  # from the head down: the first fold decodes only the events after a snapshot
    assert [state_at(journal, "tool_failure_loop", version=v) for v in reversed(range(14))] == before[::-1]
    clear_cache()
    assert state_at(journal, "tool_failure_loop") == before[-1]
    assert fold_to(journal, "tool_failure_loop", at=at(2, 9, 4)).version == 6  # needs the whole stream
    assert fold_to(journal, "tool_failure_loop", version=10).snapshot_version == 8
    assert fold_to(journal, "tool_failure_loop", version=3).snapshot_version is None


def test_a_snapshot_with_the_current_fingerprint_is_trusted_a_stale_one_is_ignored(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    forged = dataclasses.replace(AgentRunState(), version=8, events=999)

    def snap(fingerprint: str) -> None:
        append_rows(
            journal,
            SNAPSHOTS,
            [
                {
                    "stream_id": "tool_failure_loop",
                    "version": 8,
                    "aggregate": "agent_run",
                    "fingerprint": fingerprint,
                    "state": json.dumps(AGENT_RUN.to_dict(forged)),
                }
            ],
        )

    snap("0123456789abcdef")  # another reducer's snapshot
    assert state_at(journal, "tool_failure_loop", version=10).events == 10
    snap(AGENT_RUN.fingerprint)  # this reducer's: used (which is why stale ones must never be)
    assert state_at(journal, "tool_failure_loop", version=10).events == 999 + 2


def test_a_changed_reducer_changes_the_fingerprint_and_ignores_old_snapshots(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    take_snapshots(journal, every=4)

    def double_count(s: AgentRunState, e: Event) -> AgentRunState:
        s = apply_event(s, e)
        s.events += 1
        return s

    changed = dataclasses.replace(AGENT_RUN, reducer=double_count)
    assert changed.fingerprint != AGENT_RUN.fingerprint
    assert nearest_snapshot(journal, "tool_failure_loop", changed, 13) is None
    assert nearest_snapshot(journal, "tool_failure_loop", AGENT_RUN, 13) is not None
    assert state_at(journal, "tool_failure_loop", aggregate=changed).events == 26

    class Other(BaseModel):
        goal_id: int

    remodelled = dataclasses.replace(AGENT_RUN, events={**AGENT_RUN.events, "GoalCreated": Other})
    assert remodelled.fingerprint != AGENT_RUN.fingerprint


def test_a_changed_helper_or_constant_of_the_reducer_file_changes_the_fingerprint(
    journal: Journal, tmp_path: Path
) -> None:
    """The reducer's own source is not all its code: a snapshot folded with FACTOR = 1 must not
    answer for FACTOR = 10 (nor for an edited helper)."""
    source = (
        "from toolkit.analysis.aggregates import Aggregate\n"
        "FACTOR = 1\n"
        "def weight(e):\n"
        "    return 1\n"
        "def count(n, e):\n"
        "    return n + weight(e) * FACTOR\n"
        "COUNT = Aggregate('weighted_count', initial=lambda: 0, reducer=count, from_dict=int)\n"
    )
    build_tool_failure_loop(journal)

    def load(text: str, name: str) -> Aggregate[Any]:
        (tmp_path / name).write_text(text)
        load_plugins([str(tmp_path / name)])
        return get_aggregate("weighted_count")

    base = load(source, "a.py")
    assert take_snapshots(journal, every=4, aggregate=base).written == 3
    assert load(source, "b.py").fingerprint == base.fingerprint  # the same code elsewhere folds the same way
    for name, edited in (
        ("c.py", source.replace("FACTOR = 1", "FACTOR = 10")),
        ("d.py", source.replace("return 1", "return 2")),
    ):
        agg = load(edited, name)
        assert agg.fingerprint != base.fingerprint
        assert nearest_snapshot(journal, "tool_failure_loop", agg, 13) is None
        assert state_at(journal, "tool_failure_loop", aggregate=agg) == 13 * (10 if "10" in edited else 2)


def test_bad_input_errors_name_the_problem(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    with pytest.raises(StreamNotFoundError) as e:
        state_at(journal, "tool_failure_lop")
    assert "did you mean tool_failure_loop" in str(e.value)
    with pytest.raises(VersionNotFoundError) as v:
        state_at(journal, "tool_failure_loop", version=14)
    assert "1..13" in str(v.value) and v.value.context["last_version"] == 13
    with pytest.raises(VersionNotFoundError):
        state_at(journal, "tool_failure_loop", version=-1)
    early = fold_to(journal, "tool_failure_loop", at=at(1))
    assert (
        early.version == 0 and early.state == AgentRunState() and "before the stream's first event" in str(early.note)
    )
    assert fold_to(journal, "tool_failure_loop", at=at(2, 9, 4)).version == 6  # the last event at or before
    with pytest.raises(ReplayError, match="without a time zone"):
        state_at(journal, "tool_failure_loop", at=dt.datetime(2026, 3, 2, 9))


def _tool_of(n: int, e: Event) -> int:
    return n + len(e.tool_name)  # None for events without a tool: a TypeError at this line


def test_a_reducer_that_raises_is_an_error_naming_aggregate_stream_version_and_line(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    broken = Aggregate("tool_letters", initial=lambda: 0, reducer=_tool_of, from_dict=int)
    line = _tool_of.__code__.co_firstlineno + 1
    expected = (
        rf"aggregate 'tool_letters' failed on stream 'tool_failure_loop' version 1 \(user_message\) "
        rf"at {re.escape(__file__)}:{line}: TypeError"
    )
    for fold in (
        lambda: state_at(journal, "tool_failure_loop", aggregate=broken),
        lambda: list(fold_states(journal, "tool_failure_loop", broken)),
        lambda: take_snapshots(journal, every=4, aggregate=broken),
        lambda: counterfactual(journal, "tool_failure_loop", [Drop([2])], aggregate=broken),
        lambda: broken.fold(read_events(journal, "tool_failure_loop")),
    ):
        with pytest.raises(ReplayError, match=expected) as e:
            fold()
        assert e.value.context["version"] == 1 and e.value.context["aggregate"] == "tool_letters"


def _appends_to_items(n: int, e: Event) -> int:
    e.data["items"].append(99)  # changes the event it is handed: refused
    return n + sum(e.data["items"])


def _pops_items(n: int, e: Event) -> int:
    return n + sum(e.data.pop("items"))


def _zeroes_tokens(n: int, e: Event) -> int:
    e.tokens_in = 0
    return n


def _sums_a_copy(n: int, e: Event) -> int:
    items = copy.deepcopy(e.data)["items"]
    items.append(99)  # a copy of the data: the reducer's own
    return n + sum(items)


def test_a_reducer_that_changes_its_events_never_changes_the_next_fold(journal: Journal) -> None:
    """Every fold of a stream gets the same cached events: a reducer that appended to a list in
    ``e.data`` (or popped from it) changed what the next fold read, so state_at asked twice gave
    two answers (1+99 + 2+99 = 201, then 1+99+99 + 2+99+99 = 399)."""
    journal.append("r", [ev("custom", {"items": [1]}, tokens_in=5), ev("custom", {"items": [2]}, tokens_in=5)])
    for reducer in (_appends_to_items, _pops_items, _zeroes_tokens):
        agg = Aggregate(reducer.__name__, initial=lambda: 0, reducer=reducer)
        for _ in range(2):
            with pytest.raises(ReplayError, match=r"read-only") as e:
                state_at(journal, "r", aggregate=agg)
            assert f"aggregate {reducer.__name__!r} failed on stream 'r' version 1" in str(e.value)
            assert "copy" in str(e.value)
    copying = Aggregate("copying", initial=lambda: 0, reducer=_sums_a_copy)
    assert [state_at(journal, "r", aggregate=copying) for _ in range(2)] == [201, 201]
    assert [e.data for e in read_events(journal, "r")] == [{"items": [1]}, {"items": [2]}]
    assert state_at(journal, "r").tokens_in == 10
    assert copying.fold(read_events(journal, "r")) == 201  # events read by the caller stay the caller's


def _keeps_events(kept: list[Event], e: Event) -> list[Event]:
    kept.append(e)  # the state holds the events themselves (the list is the reducer's own)
    return kept


def test_a_state_that_keeps_its_events_is_copied_like_any_state(journal: Journal) -> None:
    """A state may hold the events it was handed; the fold copies states (``Aggregate.copy``, a deep
    copy). The cached events refused the copy: setting a copy's slots raised "read-only", so
    fold_states (bisect's linear scan, the run explorer) and counterfactuals failed on such a state."""
    journal.append("r", [ev("custom", {"items": [1]}, tokens_in=5), ev("custom", {"items": [2]}, tokens_in=7)])
    agg = Aggregate("keeps_events", initial=list, reducer=_keeps_events)
    states = dict(fold_states(journal, "r", agg))
    assert [[(e.version, e.data, e.tokens_in) for e in s] for s in states.values()] == [
        [(1, {"items": [1]}, 5)],
        [(1, {"items": [1]}, 5), (2, {"items": [2]}, 7)],
    ]
    mine = states[2][1]
    mine.data["items"].append(99)  # a copy is the caller's to change
    mine.tokens_in = 0
    assert [(e.data, e.tokens_in) for e in state_at(journal, "r", aggregate=agg)] == [
        ({"items": [1]}, 5),
        ({"items": [2]}, 7),
    ]
    assert [s.real_state[-1].version for s in counterfactual(journal, "r", [Drop([1])], aggregate=agg).steps] == [1, 2]
    unparsed = copy.deepcopy(read_events(journal, "r")[0])  # payload not parsed yet: parsed in the copy
    assert unparsed.data == {"items": [1]} and unparsed.metadata == {}
    assert pickle.loads(pickle.dumps(state_at(journal, "r", aggregate=agg)))[1].data == {"items": [2]}


class _Items(BaseModel):
    items: list[int]


def _payloads(seen: list[Any], e: Event) -> list[Any]:
    return [*seen, e.payload]


def test_an_aggregate_without_event_models_sees_no_payload_of_another(journal: Journal) -> None:
    """The cached events are shared by every fold and each fold sets ``payload`` for its aggregate;
    an aggregate without event models was handed the payload the last typed fold left on them."""
    journal.append("r", [ev("custom", {"items": [1]}), ev("custom", {"items": [2]})])
    typed = Aggregate("typed", initial=list, reducer=_payloads, events={"custom": _Items})
    untyped = Aggregate("untyped", initial=list, reducer=_payloads)
    assert state_at(journal, "r", aggregate=typed) == [_Items(items=[1]), _Items(items=[2])]
    assert state_at(journal, "r", aggregate=untyped) == [None, None]
    assert [s for _, s in fold_states(journal, "r", untyped)] == [[None], [None, None]]
    assert untyped.fold(read_events(journal, "r")) == [None, None]


class _NoteA(BaseModel):
    n: int


class _NoteB(BaseModel):
    n: int
    seen_by: str = "b"


def _payload_types(seen: frozenset[Any], e: Event) -> frozenset[Any]:
    return seen if type(e.payload) in seen else seen | {type(e.payload)}


def test_folds_of_one_cached_stream_in_threads_each_see_their_own_payloads(journal: Journal) -> None:
    """The cached events are shared by every fold, and each fold set ``e.payload`` on them for its
    aggregate: two threads folding the same stream with aggregates of different models (or one
    without models) handed each other's reducers the other's payload between the set and the read."""
    journal.append("r", [ev("custom", {"n": i}) for i in range(300)])
    aggs = [
        Aggregate("notes_a", initial=frozenset, reducer=_payload_types, events={"custom": _NoteA}),
        Aggregate("notes_b", initial=frozenset, reducer=_payload_types, events={"custom": _NoteB}),
        Aggregate("untyped", initial=frozenset, reducer=_payload_types),
    ]
    expected = {"notes_a": {_NoteA}, "notes_b": {_NoteB}, "untyped": {type(None)}}
    stream_events(journal, "r")  # cached: every fold below shares these events

    def fold(i: int) -> list[tuple[str, set[Any]]]:
        agg = aggs[i % len(aggs)]
        out = []
        for _ in range(15):
            out.append((agg.name, set(state_at(journal, "r", aggregate=agg))))
            out.append((agg.name, set(agg.fold(stream_events(journal, "r")))))
        return out

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: the race shows in every run
    try:
        with ThreadPoolExecutor(6) as pool:
            seen = [s for part in pool.map(fold, range(12)) for s in part]
    finally:
        sys.setswitchinterval(switch)
    wrong = [(name, sorted(t.__name__ for t in types)) for name, types in seen if types != expected[name]]
    assert wrong == [], f"{len(wrong)} of {len(seen)} folds saw another aggregate's payload: {wrong[:3]}"
    assert all(e.payload is None for e in stream_events(journal, "r"))  # no fold set it on the shared events


def test_replay_filters_by_type_time_and_version(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    tl = replay(journal, "tool_failure_loop")
    assert tl["version"].to_list() == list(range(1, 14))
    assert tl["title"][0] == "User said" and tl["title"][-1] == "Tool failed" and "error" in tl["tags"][-1]
    only = replay(journal, "tool_failure_loop", types=["tool_called", "tool_result"])
    assert set(only["event_type"]) == {"tool_called", "tool_result"} and only.height == 6
    window = replay(journal, "tool_failure_loop", since=at(2, 9, 2), until=at(2, 9, 5))
    assert window["version"].to_list() == [3, 4, 5, 6]
    assert replay(journal, "tool_failure_loop", to_version=2).height == 2
    with pytest.raises(VersionNotFoundError):
        replay(journal, "tool_failure_loop", to_version=99)


def test_diff_states_names_the_changed_fields(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    changes = {c.path: (c.before, c.after) for c in diff_states(journal, "tool_failure_loop", 3, 4)}
    assert changes["tools_called.shell"] == (None, 1)
    assert changes["last_tool"] == (None, "shell") and changes["events"] == (3, 4)
    assert diff_states(journal, "tool_failure_loop", 5, 5) == []


def test_the_cache_sees_appends_by_another_process(journal: Journal) -> None:
    journal.append("r", [ev("user_message")])
    assert state_at(journal, "r").events == 1
    other = Journal.open(journal.path)
    other.append("r", [ev("llm_response", model="m")])
    assert state_at(journal, "r").events == 2 and state_at(journal, "r").status == "answered"


# ---------------------------------------------------------------------------- typed user aggregates


class DepositedV1(BaseModel):
    cents: int


class Deposited(BaseModel):
    amount: float
    currency: str


def _apply(balance: float, e: Event) -> float:
    return balance + e.payload.amount if e.event_type == "Deposited" else balance


ACCOUNT = Aggregate(
    "account",
    initial=lambda: 0.0,
    reducer=_apply,
    events={"Deposited": Deposited},
    event_versions={"Deposited": 2},
    upcasters=(Upcaster("Deposited", 1, lambda d: {"amount": d["cents"] / 100, "currency": "EUR"}),),
)


def test_appending_through_an_aggregate_validates_and_names_stream_index_field(journal: Journal) -> None:
    good = {"event_type": "Deposited", "data": {"amount": 5, "currency": "EUR"}}
    with pytest.raises(EventValidationError) as e:
        append_events(journal, ACCOUNT, "acct-1", [good, {"event_type": "Deposited", "data": {"amount": "lots"}}])
    assert "stream 'acct-1': event 1 (Deposited): field 'amount'" in str(e.value) and "Hint:" in str(e.value)
    assert journal.stream_version("acct-1") == 0  # nothing written
    append_events(journal, ACCOUNT, "acct-1", [good], expected_version=0)
    assert json.loads(journal.read_stream("acct-1", ["metadata"]).column("metadata")[0].as_py())["event_version"] == 2


def test_upcasters_and_misfits_during_replay(journal: Journal) -> None:
    journal.append(
        "acct-2",
        [
            {"event_type": "Deposited", "data": {"cents": 250}, "metadata": {"event_version": 1}},  # old model
            {"event_type": "Deposited", "data": {"amount": 1.5, "currency": "EUR"}, "metadata": {"event_version": 2}},
            {"event_type": "Deposited", "data": {"amount": "oops"}, "metadata": {"event_version": 2}},  # misfit
            {"event_type": "Deposited", "data": {"amount": 1, "currency": "EUR"}, "metadata": {"event_version": 2}},
        ],
    )
    assert state_at(journal, "acct-2", aggregate=ACCOUNT) == 5.0
    problems = replay_problems(journal, "acct-2", ACCOUNT)
    assert [(p.stream_id, p.version) for p in problems] == [("acct-2", 3)]
    assert "amount" in problems[0].errors and "currency" in problems[0].errors
    # the same events through another aggregate: payloads of the first never leak
    assert state_at(journal, "acct-2").events == 4


def test_a_newer_snapshot_never_leaves_a_gap_in_a_cached_stream(journal: Journal) -> None:
    """The cache held versions 1-4; 5-10 were appended and another process snapshotted version 8. The
    fold of version 10 starts at the snapshot and reads on from 9: the cache must add 5-10, not
    9-10 (before, the cached list became 1-4, 9-10 and state_at(6) summed the wrong events)."""
    llm = {"event_type": "llm_response", "model": "m", "data": {}}
    journal.append("r", [{**llm, "tokens_in": v} for v in range(1, 5)])
    assert state_at(journal, "r").tokens_in == 10
    journal.append("r", [{**llm, "tokens_in": v} for v in range(5, 11)])
    import subprocess
    import sys

    code = "import sys; from toolkit.journal import Journal; from toolkit.analysis.snapshots import take_snapshots; "
    code += "take_snapshots(Journal.open(sys.argv[1]), every=8)"
    subprocess.run([sys.executable, "-c", code, str(journal.path)], check=True)  # another process: not our cache
    assert state_at(journal, "r", version=10).tokens_in == 55
    assert state_at(journal, "r", version=6).tokens_in == 21


def test_a_redaction_is_never_served_from_the_cache(journal: Journal) -> None:
    from toolkit.journal.redaction import redact_subject

    journal.append(
        "run-1",
        [
            {"event_type": "user_message", "subject_id": "alice", "data": {"text": "my card is 4111-1111"}},
            {"event_type": "plan_created", "subject_id": "alice", "data": {"steps": ["charge 4111-1111"]}},
        ],
    )
    assert "4111-1111" in json.dumps(replay(journal, "run-1")["summary"].to_list()) and state_at(journal, "run-1").plan
    redact_subject(Journal.open(journal.path), "alice")
    assert "4111-1111" not in json.dumps(replay(journal, "run-1")["summary"].to_list())
    assert not state_at(journal, "run-1").plan


def test_a_purged_version_is_an_error_naming_the_purge(journal: Journal) -> None:
    """Versions 1-3 were purged: state_at(2) returned the blank initial state with no note."""
    old = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
    llm = {"event_type": "llm_response", "model": "m", "data": {}}
    journal.append(
        "r", [{**llm, "tokens_in": v, "occurred_at": old + dt.timedelta(days=20 * v - 20)} for v in range(1, 7)]
    )
    purge = purge_before(journal, dt.datetime(2025, 3, 1, tzinfo=dt.UTC), now=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    purged_on = read_table(journal, "purges").column("purged_at")[0].as_py().date().isoformat()
    with pytest.raises(VersionPurgedError) as e:
        state_at(journal, "r", version=2)
    assert f"version 2 was purged on {purged_on} by retention ({purge.purge_id})" in str(e.value)
    assert (
        "versions 4..6 remain" in str(e.value) and "Hint:" in str(e.value) and str(purge.archive_path) in str(e.value)
    )
    assert e.value.context["first_kept_version"] == 4 and isinstance(e.value, VersionNotFoundError)
    with pytest.raises(VersionPurgedError, match=r"falls in versions 1\.\.3"):
        state_at(journal, "r", at=old + dt.timedelta(days=30))
    assert fold_to(journal, "r", at=old - dt.timedelta(days=1)).version == 0  # before the first event ever
    assert state_at(journal, "r", version=0) == AgentRunState()
    head = fold_to(journal, "r")
    assert head.state.tokens_in == 4 + 5 + 6 and "versions 1..3 were purged" in str(head.note)
    assert "folded without them" in str(head.note)


def test_a_snapshot_taken_before_a_purge_is_not_used_after_it(journal: Journal) -> None:
    """Snapshots at versions 2, 4, 6, 8 were taken, then a purge removed versions 1-3: state_at(5)
    started from the snapshot at 4, which held the purged events (tokens 1+2+3+4+5 = 15), while
    the fold without snapshots folds only the events left (4+5 = 9)."""
    old = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
    llm = {"event_type": "llm_response", "model": "m", "data": {}}
    events = [{**llm, "tokens_in": v, "occurred_at": old + dt.timedelta(days=20 * v - 20)} for v in range(1, 9)]
    journal.append("r", events)
    journal.append("other", [{**llm, "tokens_in": 1}] * 4)  # a stream the purge leaves alone
    assert take_snapshots(journal, every=2).written == 6
    purge_before(journal, dt.datetime(2025, 3, 1, tzinfo=dt.UTC), now=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))

    def both(v: int | None) -> tuple[Any, Any]:
        with_snaps = fold_to(Journal.open(journal.path), "r", version=v)
        clear_cache()
        return with_snaps.state, fold_to(Journal.open(journal.path), "r", version=v, use_snapshots=False).state

    for v in (4, 5, 6, 7, 8, None):
        with_snaps, without = both(v)
        assert with_snaps == without, v
    assert both(5)[0].tokens_in == 4 + 5
    for v in (2, 3):
        with pytest.raises(VersionPurgedError):
            state_at(journal, "r", version=v)
    assert nearest_snapshot(journal, "r", AGENT_RUN, 8) is None  # folded with the purged events
    assert nearest_snapshot(journal, "other", AGENT_RUN, 4) is not None  # its stream lost nothing
    report = take_snapshots(journal, every=2)  # taken again: from the events left
    assert (report.written, report.already_present) == (2, 2)
    assert nearest_snapshot(journal, "r", AGENT_RUN, 8)[0] == 7
    for v in (5, 7, 8):
        with_snaps, without = both(v)
        assert with_snaps == without and fold_to(journal, "r", version=v).snapshot_version == (5 if v < 7 else 7)


def test_a_snapshot_never_changes_what_a_time_inside_purged_versions_gives(journal: Journal) -> None:
    """Versions 1-3 purged, version 3 at 09:30: the state at 09:25 lies inside them (an error). With
    a snapshot at version 4 (taken after the purge, so valid) the fold started there and skipped the
    purge check, answering with the state after version 4, which follows an event after 09:25."""

    t = build_cut_with_a_late_clock(journal)
    assert take_snapshots(journal, every=1).written == 2  # at versions 4 and 5
    for use_snapshots in (False, True):
        with pytest.raises(VersionPurgedError, match=r"falls in versions 1\.\.3"):
            fold_to(journal, "cut", at=t(25), use_snapshots=use_snapshots)
        later = fold_to(journal, "cut", at=t(45), use_snapshots=use_snapshots)
        assert (later.version, later.state.tokens_in) == (5, 4 + 5)
        assert "versions 1..3 were" in str(later.note) and "folded without them" in str(later.note)
    assert fold_to(journal, "cut", at=t(45)).snapshot_version == 5


def test_a_pinned_journal_folds_its_own_head_past_later_snapshots(journal: Journal) -> None:
    """A journal pinned at a Delta version (``Journal.pinned``, what regrade and the Dask shards read)
    looked for the nearest snapshot below "any version" in the snapshots table, which is not pinned:
    one taken since, past the stream's head at the pinned version, sent the fold to read the stream
    from there, found nothing and raised StreamNotFoundError for a stream the journal holds."""
    journal.append("r", [ev("user_message"), ev("llm_response", model="m", tokens_in=3)])
    pinned = journal.pinned()
    journal.append("r", [ev("llm_response", model="m", tokens_in=4), ev("llm_response", model="m", tokens_in=5)])
    assert take_snapshots(journal, every=2).written == 2  # at versions 2 and 4
    clear_cache()
    for _ in range(2):  # cold, then with the stream cached at the newer version
        head = fold_to(pinned, "r")
        assert (head.version, head.last_version, head.state.tokens_in) == (2, 2, 3)
        assert head.snapshot_version == 2
        with pytest.raises(VersionNotFoundError, match=r"has versions 1\.\.2;"):
            state_at(pinned, "r", version=3)
        assert state_at(journal, "r").tokens_in == 3 + 4 + 5


def test_a_journal_pinned_before_a_purge_ignores_snapshots_taken_after_it(journal: Journal) -> None:
    """Pinned at a Delta version before a purge of versions 1-5, the journal still holds them; a
    snapshot taken after the purge folds only versions 6 on, and the snapshot lookup went by the
    purges of today (the purges table is not pinned): state_at(9) of the pinned journal started
    from the snapshot at 9 and counted 4 events and tokens 6+7+8+9 instead of 9 events, 1+...+9."""
    journal.append("r", [ev("llm_response", model="m", tokens_in=v) for v in range(1, 11)])
    assert take_snapshots(journal, every=4).written == 2  # at 4 and 8, folds of versions 1 on
    pinned = Journal.open(journal.path, delta_version=journal.delta_version)
    remove_stream_prefix(journal, "r", 6, reason="archive")
    assert take_snapshots(journal, every=2).written == 2  # at 7 and 9, folds of versions 6 on
    assert fold_to(journal, "r", version=9).snapshot_version == 9
    for v in (9, 7, 10, 4):
        clear_cache()
        with_snaps = fold_to(pinned, "r", version=v)
        without = fold_to(pinned, "r", version=v, use_snapshots=False)
        assert with_snaps.state == without.state, v
        assert with_snaps.state.tokens_in == sum(range(1, v + 1))
        assert with_snaps.snapshot_version == (4 if v < 8 else 8)  # the snapshots taken before the purge
    assert nearest_snapshot(pinned, "r", AGENT_RUN, 9) is None  # the stream's first version there is not known
    plain = fold_to(pinned, "r", version=8, use_snapshots=False).state
    assert nearest_snapshot(pinned, "r", AGENT_RUN, 9, first_version=1) == (8, plain)


def test_the_run_explorer_and_story_start_at_the_first_version_a_purge_kept(journal: Journal) -> None:
    """Since a purged version is an error, the explorer's step at the first kept version (whose state
    before is gone) and the story's middle version (inside the purged range) must not ask for one."""
    from toolkit.analysis.run_explorer import explore_step
    from toolkit.analysis.run_story import story_of_run

    old = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
    llm = {"event_type": "llm_response", "model": "m", "data": {}}
    journal.append(
        "r", [{**llm, "tokens_in": v, "occurred_at": old + dt.timedelta(days=20 * v - 20)} for v in range(1, 7)]
    )
    purge_before(journal, dt.datetime(2025, 3, 1, tzinfo=dt.UTC), now=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    step = explore_step(journal, "r", 4)
    assert step.state["tokens_in"] == 4 and [
        (c.path, c.before, c.after) for c in step.changes if c.path == "tokens_in"
    ] == [("tokens_in", 0, 4)]
    story = story_of_run(journal, "r")
    assert story.versions == (4, 6), story.versions
    with pytest.raises(VersionPurgedError):
        explore_step(journal, "r", 2)


def test_the_explorer_resolves_a_time_in_purged_versions_as_journal_state_at(journal: Journal) -> None:
    """version_at_text (the run explorer's time box) used locate only: a time inside versions a purge
    removed gave version 0 and 'the initial state' (the slider then showed the first kept version),
    and a time between two kept events before a removed one a kept version, where journal state --at
    (state_at) refuses both naming the purge; it now says the same."""
    from toolkit.analysis.run_explorer import version_at_text

    old = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
    llm = {"event_type": "llm_response", "model": "m", "data": {}}
    journal.append(
        "r", [{**llm, "tokens_in": v, "occurred_at": old + dt.timedelta(days=20 * v - 20)} for v in range(1, 7)]
    )
    purge = purge_before(journal, dt.datetime(2025, 3, 1, tzinfo=dt.UTC), now=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    inside = old + dt.timedelta(days=30)  # between versions 2 and 3, both removed
    with pytest.raises(VersionPurgedError) as by_state:
        state_at(journal, "r", at=inside)
    with pytest.raises(VersionPurgedError) as by_text:
        version_at_text(journal, "r", inside.isoformat())
    assert by_text.value.message == by_state.value.message and purge.purge_id in by_text.value.message
    before = old - dt.timedelta(days=1)  # before the stream's first event ever: the initial state
    assert version_at_text(journal, "r", before.isoformat()) == (0, fold_to(journal, "r", at=before).note)
    later = old + dt.timedelta(days=75)  # after version 4, the first kept one
    assert version_at_text(journal, "r", later.isoformat()) == (4, fold_to(journal, "r", at=later).note)
    assert "versions 1..3 were purged" in str(fold_to(journal, "r", at=later).note)
