# ruff: noqa: F811  (pytest fixtures imported from replay_fixtures are parameters here)
"""The built-in agent-run aggregate: its rules, and the vectorised states equal the Python fold."""

from __future__ import annotations

from decimal import Decimal

from helpers import at, build_budget_breach, build_tool_failure_loop, ev
from replay_fixtures import fresh_cache, samples_journal  # noqa: F401  (pytest fixtures)

from toolkit.analysis.agent_run import AGENT_RUN, agent_run_states, state_from_dict, state_to_dict
from toolkit.analysis.replay import read_events, state_at
from toolkit.journal import Journal

GUIDE = "bc7329a7-7f1c-5516-979c-f6e9e622dea3"  # Evennia guide-npc: failing tools, emergency stop, archived


def _fold_rows(journal: Journal) -> dict[str, dict[str, object]]:
    return {sid: {"stream_id": sid, **AGENT_RUN.fold(read_events(journal, sid)).summary()} for sid in journal.heads()}


def test_vectorised_states_equal_the_python_fold_on_every_real_sample(samples_journal: Journal) -> None:
    frame = agent_run_states(samples_journal)
    folded = _fold_rows(samples_journal)
    assert frame.height == len(folded) == len(samples_journal.heads())
    for row in frame.iter_rows(named=True):
        assert row == folded[row["stream_id"]], row["stream_id"]


def test_vectorised_states_equal_the_fold_on_hand_made_runs(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    build_budget_breach(journal)
    journal.append(
        "mixed",
        [
            ev("tool_result", tool_name="grep", occurred_at=at(3)),  # a result nobody called
            ev("tool_called", tool_name="grep", occurred_at=at(3)),
            ev("error", {"error": "boom"}, tool_name="grep", occurred_at=at(3, 13)),
            ev("error", {"error": "boom"}, occurred_at=at(3, 14)),
            ev("llm_response", model="", occurred_at=at(3, 15)),
            ev("tool_called", tool_name="", occurred_at=at(3, 16)),
            ev("error", {"x": 1}, occurred_at=at(3, 17)),
        ],
    )
    frame = agent_run_states(journal)
    folded = _fold_rows(journal)
    for row in frame.iter_rows(named=True):
        assert row == folded[row["stream_id"]], row["stream_id"]
    only = agent_run_states(journal, ["mixed"])
    assert only["stream_id"].to_list() == ["mixed"] and only.row(0, named=True) == folded["mixed"]


def test_failure_loop_state(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    s = state_at(journal, "tool_failure_loop")
    assert (s.events, s.tool_calls, s.tool_failures, s.llm_calls) == (13, {"shell": 3}, {"shell": 3}, {"gpt-test": 3})
    assert (s.tokens_in, s.tokens_cache_read, s.cost_usd) == (3003, 600, Decimal("0.0375"))
    assert (s.errors, s.consecutive_errors, s.status, s.last_tool) == (3, 1, "running", "shell")


def test_evennia_assistant_goals_stop_and_archive(samples_journal: Journal) -> None:
    at7 = state_at(samples_journal, GUIDE, version=7)
    assert at7.emergency_stop and at7.status == "aborted" and at7.consecutive_errors == 0
    assert at7.tool_failures == {"web_search": 3} and at7.tool_calls == {"say": 1, "web_search": 3}
    at6 = state_at(samples_journal, GUIDE, version=6)
    assert at6.consecutive_errors == 3 and not at6.emergency_stop
    end = state_at(samples_journal, GUIDE)
    assert end.status == "archived" and not end.emergency_stop and end.ticks == 4
    assert end.model == "claude-3-5-sonnet" and end.llm_calls == {"claude-3-5-haiku": 1, "claude-3-5-sonnet": 3}
    assert list(end.goals) == ["goal-1"] and end.goals["goal-1"].status == "created"
    # the archived final stats the source itself recorded agree with the fold
    assert (end.tokens_in, end.tokens_out) == (6652, 292)


def test_state_round_trips_through_json(samples_journal: Journal) -> None:
    for sid in samples_journal.heads():
        s = state_at(samples_journal, sid)
        assert state_from_dict(state_to_dict(s)) == s
