# ruff: noqa: F811  (pytest fixtures imported from invariant_journals are parameters here)
"""Python-state rules: every shortcut of ``python_failures`` gives the plain fold's findings.

Column-wise agent-run states equal the reducer's state at every event; monotone rules judged on
final states (columns, or snapshots plus the tail) find the same first failing version, message and
failing event count; rules reading what columns do not hold fold; a rule that raises is an error
finding; stale snapshots are ignored; worker processes find what one process finds.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from invariant_journals import DEMO, demo, everything  # noqa: F401  (pytest fixtures)
from replay_fixtures import samples_journal  # noqa: F401  (a fixture)

from toolkit.analysis import state_rules
from toolkit.analysis.agent_run import AGENT_RUN
from toolkit.analysis.aggregates import EVENT_COLUMNS, Aggregate, Event
from toolkit.analysis.rules import Rule, RuleSet, python_rule
from toolkit.analysis.snapshots import take_snapshots
from toolkit.journal import Journal
from toolkit.journal.retention import remove_stream_prefix
from toolkit.journal.side_tables import append_rows

USER_RULES = '''
from toolkit.analysis.rules import python_rule


@python_rule("tool_failures_state", "No tool fails more than n times (reads the per-tool dict).", params="n BIGINT = 0")
def tool_failures_state(state, p):
    worst = max(state.tool_failures.values(), default=0)
    return True if worst <= p["n"] else f"a tool failed {worst} times"


@python_rule("fragile", "Raises on the third event of a run with an error, fails from its fifth event on.")
def fragile(state, p):
    if state.events == 3 and state.errors:
        raise ValueError(f"cannot judge version {state.version}")
    return state.events < 5


@python_rule("long_run", "Runs stay under n events.", params="n BIGINT = 6", monotone=True)
def long_run(state, p):
    return True if state.events < p["n"] else f"{state.events} events at {state.last_at.isoformat()}"


@python_rule("raises_late", "Fails from the 4th event on, raises on the 6th.", monotone=True)
def raises_late(state, p):
    if state.events == 6:
        raise RuntimeError("boom")
    return state.events < 4


@python_rule("raises_sixth", "Raises on the sixth event of a run.")
def raises_sixth(state, p):
    if state.events == 6:
        raise RuntimeError("boom")
    return True


@python_rule("few_failures", "At most one failed tool call per LLM call plus one.", monotone=False)
def few_failures(state, p):
    return state.tool_failures_total <= state.llm_calls_total + 1 or f"{state.tool_failures_total} failures"


@python_rule("returns_tuple", "A mistake: returns (ok, message), a tuple, always truthy.")
def returns_tuple(state, p):
    return state.events < 3, "too long"


@python_rule("returns_tuple_folded", "The same mistake in a rule graded by folding (reads the per-tool dict).")
def returns_tuple_folded(state, p):
    return not state.tool_failures, "a tool failed"


@python_rule("still_running", "Not answered after an error (reads status and model).")
def still_running(state, p):
    return not (state.status == "aborted" and state.model is not None and state.consecutive_errors >= 1)
'''

CASES: list[tuple[str, dict[str, Any]]] = [
    ("budget_state", {"max_cost_usd": "0.05"}),
    ("budget_state", {"max_cost_usd": "1", "max_tokens": "3000"}),
    ("error_streak", {"max_errors": "0"}),
    ("error_streak", {}),
    ("tool_failures_state", {}),
    ("fragile", {}),
    ("long_run", {}),
    ("raises_sixth", {}),
    ("still_running", {}),
    ("few_failures", {}),
    ("returns_tuple", {}),
    ("returns_tuple_folded", {}),
]


@pytest.fixture(scope="module")
def rule_set(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    path = tmp_path_factory.mktemp("rules") / "user_rules.py"
    path.write_text(USER_RULES, encoding="utf-8")
    return RuleSet.load([str(path)])


@pytest.fixture
def journals(everything: Journal, demo: Journal, samples_journal: Journal) -> dict[str, Journal]:
    return {"patterns": everything, "demo": demo, "samples": samples_journal}


def _rows(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    keys = ("stream_id", "version", "kind", "message", "failing_events", "failing_versions", "last_failing_version")
    return sorted(tuple(r[k] for k in keys) for r in rows)


def _ids(journal: Journal) -> list[str]:
    return state_rules.all_stream_ids(journal)


# ---------------------------------------------------------------------------- column-wise states

FIELDS = ("version", "events", "tokens_in", "tokens_out", "tokens_cache_read", "tokens_cache_write", "tokens_reasoning",
          "cost_usd", "model", "last_tool", "plans", "errors", "consecutive_errors", "status", "first_at", "last_at",
          "goals_completed", "ticks", "emergency_stop", "emergency_stop_reason", "goals", "llm_calls_total",
          "tool_failures_total")


@pytest.mark.parametrize("where", ["patterns", "demo", "samples"])
def test_column_states_equal_the_reducer_at_every_event(where: str, journals: dict[str, Journal]) -> None:
    journal = journals[where]
    ids = _ids(journal)
    frame = state_rules._read(journal, ids, state_rules.STATE_COLUMNS)
    special = set(frame.filter(frame["event_type"].is_in(list(state_rules.assistant_types())))["stream_id"].to_list())
    frame = frame.filter(~frame["stream_id"].is_in(list(special)))
    keyed = state_rules.with_stream_key(frame)
    view = state_rules.RunStateView.over(keyed, tools=state_rules.tools_of(journal))()
    row = 0
    compared = 0
    for sid, events in state_rules.iter_stream_events(journal, sorted(set(ids) - special)):
        state = AGENT_RUN.initial()
        for e in events:
            state = state_rules.fold_event(AGENT_RUN, state, e)
            view.at = row
            assert keyed["stream_id"][row] == sid
            for name in FIELDS:
                got, want = getattr(view, name), getattr(state, name)
                assert got == want and str(got) == str(want), (sid, e.version, name, got, want)
            compared += 1
            row += 1
    assert row == keyed.height and compared > 20
    with pytest.raises(state_rules.NeedsFold):
        _ = view.tool_failures


def test_decisive_statuses_are_the_reducers_for_column_streams() -> None:
    from toolkit.analysis.agent_run import _DECISIVE

    assert state_rules.DECISIVE_STATUS == {k: v for k, v in _DECISIVE.items() if k not in state_rules.assistant_types()}


def test_cost_is_zero_until_recorded_then_keeps_nine_decimals(tmp_path: Path) -> None:
    j = Journal.create(tmp_path / "j")
    j.append("r", [{"event_type": "user_message", "data": {}},
                   {"event_type": "llm_response", "model": "m", "cost_usd": "0", "data": {}},
                   {"event_type": "llm_response", "model": "", "cost_usd": "0.25", "data": {}}])
    keyed = state_rules.with_stream_key(state_rules._read(j, ["r"], state_rules.STATE_COLUMNS))
    view = state_rules.RunStateView.over(keyed, tools=state_rules.tools_of(j))()
    folded = [AGENT_RUN.fold(state_rules.DecodedEvents(state_rules._read(j, ["r"], EVENT_COLUMNS))
                             .events(0, n)) for n in (1, 2, 3)]
    for i, want in enumerate(folded):
        view.at = i
        assert (str(view.cost_usd), view.model) == (str(want.cost_usd), want.model)
    assert [str(s.cost_usd) for s in folded] == ["0", "0E-9", "0.250000000"]
    j.close()


# ---------------------------------------------------------------------------- same findings as the plain fold


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_python_failures_equal_the_plain_fold(
    name: str, params: dict[str, Any], rule_set: RuleSet, journals: dict[str, Journal]
) -> None:
    rule = rule_set.get(name)
    bound = rule.bind(params)
    found = 0
    for journal in journals.values():
        ids = _ids(journal)
        fast = state_rules.python_failures(journal, rule, bound, ids, workers=1)
        plain = state_rules.fold_failures(journal, rule, bound, ids)
        assert _rows(fast.to_pylist()) == _rows(plain)
        found += len(plain)
    if (name, params) != ("error_streak", {}):
        assert found, "no stream fails: the comparison would be empty"


def test_shortcuts_are_taken_and_counted(rule_set: RuleSet, samples_journal: Journal) -> None:
    ids = _ids(samples_journal)
    events = sum(h.version for s, h in samples_journal.heads().items() if s in set(ids))
    # monotone on columns: final states judged, only failing streams walked, nothing folded but assistant streams
    rule = rule_set.get("long_run")
    state_rules.python_failures(samples_journal, rule, rule.bind({}), ids, workers=1)
    stats = state_rules.LAST_STATS
    assert stats.events == events and stats.streams == len(ids)
    assert 0 < stats.columnwise_streams < stats.streams  # the assistant streams were folded
    assert stats.judged < events
    # a rule reading the per-tool dict folds every stream
    rule = rule_set.get("tool_failures_state")
    state_rules.python_failures(samples_journal, rule, rule.bind({}), ids, workers=1)
    stats = state_rules.LAST_STATS
    assert stats.columnwise_streams == 0 and stats.folded == stats.judged == events


def test_an_error_finding_names_the_event_and_the_exception(rule_set: RuleSet, everything: Journal) -> None:
    rule = rule_set.get("raises_sixth")
    rows = state_rules.python_failures(everything, rule, rule.bind({}), _ids(everything), workers=1).to_pylist()
    errors = [r for r in rows if r["kind"] == "error"]
    assert errors and all(r["message"] == "RuntimeError: boom" and r["failing_events"] == 1 for r in errors)
    heads = everything.heads()
    assert {r["stream_id"] for r in errors} == {s for s, h in heads.items() if h.version >= 6}


@pytest.mark.parametrize("name", ["returns_tuple", "returns_tuple_folded"])
def test_a_rule_returning_neither_a_bool_nor_a_message_is_an_error_finding(
    name: str, rule_set: RuleSet, everything: Journal
) -> None:
    """``return ok, message`` is a tuple, always truthy: once graded as holding everywhere."""
    rule = rule_set.get(name)
    rows = state_rules.python_failures(everything, rule, {}, _ids(everything), workers=1).to_pylist()
    assert {r["stream_id"] for r in rows} == set(everything.heads())
    assert all(r["kind"] == "error" and r["version"] == 1 for r in rows)
    assert rows[0]["message"].startswith("TypeError: the rule returned a tuple ((True, ")


def test_a_monotone_rule_is_trusted_to_stay_broken(rule_set: RuleSet, everything: Journal) -> None:
    """raises_late declares monotone but raises on the 6th event, after failing from the 4th: the
    walk stops at the first failure and counts every later event, where the plain fold, walking on,
    reports the error (as bisection, grading trusts the declaration)."""
    rule = rule_set.get("raises_late")
    ids = _ids(everything)
    fast = {r["stream_id"]: r for r in state_rules.python_failures(everything, rule, {}, ids, workers=1).to_pylist()}
    plain = {r["stream_id"]: r for r in state_rules.fold_failures(everything, rule, {}, ids)}
    heads = everything.heads()
    assert fast and set(fast) == set(plain) == {s for s, h in heads.items() if h.version >= 4}
    assert any(r["kind"] == "error" for r in plain.values())
    for sid, row in fast.items():
        assert (row["kind"], row["version"], row["failing_events"]) == ("violation", 4, heads[sid].version - 3)
        assert plain[sid]["kind"] == ("error" if heads[sid].version >= 6 else "violation")


@pytest.mark.parametrize("columnwise", [True, False])
def test_a_refund_is_not_trusted_to_keep_a_monotone_budget_broken(tmp_path: Path, columnwise: bool) -> None:
    """budget_state declares monotone, but a negative cost brings the run back under budget: the
    final state holds. Streams with a refund are judged at every event, as the plain fold does
    (column-wise, and folding: a stream with an assistant topic is always folded)."""
    j = Journal.create(tmp_path / "j")
    topic = [] if columnwise else [{"event_type": "TickCompleted", "data": {}}]
    for sid, costs in {"refunded": ["6", "-3", "1"], "refunded_twice": ["6", "-3", "3", "-2"],
                       "over": ["6", "1"], "under": ["1", "2"], "refund_first": ["-1", "5.5"]}.items():
        j.append(sid, [*topic, *({"event_type": "llm_response", "cost_usd": c, "data": {}} for c in costs)])
    rule = RuleSet.load().get("budget_state")
    bound = rule.bind({})
    fast = state_rules.python_failures(j, rule, bound, _ids(j), workers=1).to_pylist()
    assert (state_rules.LAST_STATS.columnwise_streams > 0) is columnwise
    assert _rows(fast) == _rows(state_rules.fold_failures(j, rule, bound, _ids(j)))
    failing = {r["stream_id"]: (r["version"] - len(topic), r["failing_events"]) for r in fast}
    assert failing == {"refunded": (1, 1), "refunded_twice": (1, 2), "over": (1, 2)}
    j.close()


def test_worker_processes_find_what_one_process_finds(rule_set: RuleSet, demo: Journal) -> None:
    rule = rule_set.get("tool_failures_state")
    ids = _ids(demo)
    one = state_rules.python_failures(demo, rule, rule.bind({}), ids, workers=1)
    two = state_rules.python_failures(demo, rule, rule.bind({}), ids, workers=2)
    assert state_rules.LAST_STATS.workers == 2
    assert _rows(two.to_pylist()) == _rows(one.to_pylist()) and one.num_rows


# ---------------------------------------------------------------------------- snapshots (folding)


@dataclass
class Tally:
    events: int = 0
    tokens: int = 0


def _tally(s: Tally, e: Event) -> Tally:
    s.events += 1
    s.tokens += e.tokens_in or 0
    return s


TALLY = Aggregate(
    "test_tally", initial=Tally, reducer=_tally, copy=lambda s: Tally(s.events, s.tokens),
    to_dict=lambda s: {"events": s.events, "tokens": s.tokens}, from_dict=lambda d: Tally(**d),
)


@python_rule("tally_tokens", "At most 250 input tokens per run.", monotone=True, aggregate=TALLY)
def tally_tokens(state: Tally, p: dict[str, Any]) -> bool | str:
    return True if state.tokens <= 250 else f"{state.tokens} tokens after {state.events} events"


def _tally_check(journal: Journal, rule: Rule) -> state_rules.GradeStats:
    ids = _ids(journal)
    fast = state_rules.python_failures(journal, rule, {}, ids, workers=1)
    assert _rows(fast.to_pylist()) == _rows(state_rules.fold_failures(journal, rule, {}, ids)) and fast.num_rows
    return state_rules.LAST_STATS


def test_monotone_rules_start_from_valid_snapshots_and_ignore_stale_ones(tmp_path: Path) -> None:
    journal = Journal.open(shutil.copytree(DEMO, tmp_path / "demo"))
    events = sum(h.version for h in journal.heads().values())
    without = _tally_check(journal, tally_tokens)  # no snapshots at all
    assert without.folded >= events
    take_snapshots(journal, every=4, aggregate=TALLY)
    with_snapshots = _tally_check(journal, tally_tokens)
    assert with_snapshots.folded < without.folded  # passing streams folded only their tails
    # a snapshot under another fingerprint (an older reducer) would make every stream fail if used
    stale = [{"stream_id": s, "version": h.version, "aggregate": TALLY.name, "fingerprint": "0" * 16,
              "state": json.dumps({"events": 1, "tokens": 10**9})} for s, h in journal.heads().items()]
    append_rows(journal, "snapshots", stale)
    assert _tally_check(journal, tally_tokens).folded == with_snapshots.folded
    journal.close()


def test_a_journal_pinned_before_a_purge_is_judged_without_snapshots_taken_after_it(tmp_path: Path) -> None:
    """regrade judges a pinned journal; pinned before a purge of versions 1-5 it still holds them
    (250 tokens, 500 in all: the rule fails at version 6). The snapshot at 9, taken after the
    purge, tallies versions 6-9 only: started from it, the stream held (250 tokens)."""
    journal = Journal.create(tmp_path / "j")
    journal.append("r", [{"event_type": "llm_response", "model": "m", "tokens_in": 50, "data": {}}] * 10)
    pinned = journal.pinned()
    remove_stream_prefix(journal, "r", 6, reason="archive")
    assert take_snapshots(journal, every=2, aggregate=TALLY).written == 2  # at 7 and 9
    assert not state_rules.python_failures(journal, tally_tokens, {}, ["r"], workers=1).num_rows  # 250 left
    found = state_rules.python_failures(pinned, tally_tokens, {}, ["r"], workers=1).to_pylist()
    assert _rows(found) == _rows(state_rules.fold_failures(pinned, tally_tokens, {}, ["r"]))
    assert [(r["version"], r["message"]) for r in found] == [(6, "300 tokens after 6 events")]
    journal.close()


def test_column_wise_decoding_builds_the_events_replay_builds(demo: Journal) -> None:
    from toolkit.analysis.replay import events_from_table

    frame = state_rules._read(demo, _ids(demo), EVENT_COLUMNS)
    ours = state_rules.DecodedEvents(frame).events(0, frame.height)
    replays = events_from_table(frame.to_arrow())
    slots = [c for c in Event.__slots__ if not c.startswith("_") and c != "payload"]
    assert len(ours) == len(replays) > 100
    for a, b in zip(ours, replays, strict=True):
        for name in slots:
            x, y = getattr(a, name), getattr(b, name)
            assert (type(x), str(x)) == (type(y), str(y)), (a, name)


@pytest.mark.parametrize(
    ("last", "status"),
    [
        ({"event_type": "llm_response", "model": "m", "data": {"finish_reason": "stop"}}, "answered"),
        ({"event_type": "error", "data": {"message": "crash"}}, "aborted"),
    ],
)
def test_the_status_of_a_damaged_stream_repeating_a_version_is_each_events_own(
    last: dict[str, Any], status: str, tmp_path: Path
) -> None:
    """Whether an LLM response asks for tools is read for the events that hold one (``tools_of``)
    and matched by position: a stream repeating a version (damage journal_integrity reports) got
    rows multiplied, or another event's answer."""
    from helpers import locate, rewrite_parquet, set_cell

    j = Journal.create(tmp_path / "j")
    j.append("r", [{"event_type": "user_message", "data": {"text": "hi"}},
                   {"event_type": "llm_response", "model": "m", "data": {"finish_reason": "tool_calls"}}, last],
             expected_version=0)
    path, row = locate(j, "r", 3)
    rewrite_parquet(path, lambda t: set_cell(t, "version", row, 2))  # version 3 written as 2 again
    j = Journal.open(tmp_path / "j")
    keyed = state_rules.with_stream_key(state_rules._read(j, ["r"], state_rules.STATE_COLUMNS))
    view = state_rules.RunStateView.over(keyed, tools=state_rules.tools_of(j))()
    statuses = []
    for i in range(keyed.height):
        view.at = i
        statuses.append((keyed["event_type"][i], view.status))
    assert statuses[0] == ("user_message", "running")
    assert sorted(statuses[1:]) == sorted([("llm_response", "running"), (last["event_type"], status)])


def test_a_finding_at_a_version_a_damaged_stream_repeats_is_reported_once(tmp_path: Path) -> None:
    """The finding names the first event written at that version (found by review: it was
    reported once per event at the version)."""
    from helpers import locate, rewrite_parquet, set_cell

    j = Journal.create(tmp_path / "j")
    j.append("r", [{"event_type": "user_message", "data": {"text": "hi"}},
                   {"event_type": "llm_response", "model": "m", "data": {"finish_reason": "tool_calls"}},
                   {"event_type": "error", "data": {"message": "crash"}}], expected_version=0)
    path, row = locate(j, "r", 3)
    rewrite_parquet(path, lambda t: set_cell(t, "version", row, 2))
    (tmp_path / "r.py").write_text(
        "from toolkit.analysis.rules import python_rule\n\n"
        "@python_rule('never_aborted', 'Reads the status.')\n"
        "def never_aborted(state, p):\n    return state.status != 'aborted'\n"
    )
    j = Journal.open(tmp_path / "j")
    rule = RuleSet.load([str(tmp_path / "r.py")]).get("never_aborted")
    columns = state_rules.python_failures(j, rule, rule.bind({}), None, workers=1).to_pylist()
    folded = state_rules.fold_failures(j, rule, rule.bind({}), ["r"])
    assert [(r["version"], r["event_type"]) for r in columns] == [(2, "llm_response")]
    assert [r["version"] for r in folded] == [2]
