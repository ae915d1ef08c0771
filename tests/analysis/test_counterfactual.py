"""Counterfactual replay: the alternative history next to the real one; the journal untouched."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers import build_tool_failure_loop, snapshot
from replay_fixtures import fresh_cache  # noqa: F401  (pytest fixtures)

from toolkit.analysis.counterfactual import Drop, Insert, Replace, counterfactual
from toolkit.analysis.replay import state_at
from toolkit.errors import ReplayError
from toolkit.journal import Journal


def test_edits_change_the_alternative_only_and_leave_the_journal_unchanged(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    before = snapshot(journal)
    real = state_at(journal, "tool_failure_loop")
    cf = counterfactual(
        journal,
        "tool_failure_loop",
        [
            Replace(5, {"exit": 0}, error=None, is_error=False),  # the first call worked
            Drop([6, 7, 8, 9]),  # so no second attempt
            Insert(13, {"event_type": "llm_response", "model": "gpt-test", "tokens_in": 7, "data": {"text": "ok"}}),
        ],
    )
    assert cf.real_state == real
    alt = cf.alternative_state
    assert (real.errors, alt.errors) == (3, 1)
    assert alt.status == "answered" and real.status == "running"
    assert alt.tokens_in == real.tokens_in - 1001 + 7 and alt.version == 13 - 4 + 1
    assert [s.edit for s in cf.steps].count("dropped") == 4 and cf.steps[-1].edit == "inserted"
    assert cf.steps[4].edit == "replaced" and cf.steps[4].alternative_state.consecutive_errors == 0
    frame = cf.frame()
    assert frame.height == 14 and {"real_status", "alt_status", "edit"} <= set(frame.columns)
    assert {c.path for c in cf.changes()} >= {"errors", "status", "tokens_in"}
    assert snapshot(journal) == before
    assert state_at(journal, "tool_failure_loop") == real


def test_bad_edits_are_refused(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    with pytest.raises(ReplayError, match=r"versions 1\.\.13"):
        counterfactual(journal, "tool_failure_loop", [Drop([14])])
    with pytest.raises(ReplayError, match="needs an event_type"):
        counterfactual(journal, "tool_failure_loop", [Insert(0, {"data": {}})])
    with pytest.raises(ReplayError, match="unknown column"):
        counterfactual(journal, "tool_failure_loop", [Replace(1, colour="red")])
    assert counterfactual(journal, "tool_failure_loop", [Insert(0, {"event_type": "user_message"})]).steps[0].edit == "inserted"


def test_an_inserted_event_happens_when_the_event_it_follows_happened(journal: Journal) -> None:
    """Without occurred_at it is not an event of 1970 (first_at of the alternative run); an ISO
    string is read as the journal reads it."""
    build_tool_failure_loop(journal)
    real = state_at(journal, "tool_failure_loop")
    v4 = state_at(journal, "tool_failure_loop", version=4).last_at
    cf = counterfactual(journal, "tool_failure_loop", [Insert(0, {"event_type": "user_message"}),
                                                       Insert(4, {"event_type": "error", "data": {}})])
    assert [e.occurred_at for e in cf.alternative_events if e.event_type in {"user_message", "error"}][:2] == [
        real.first_at, real.first_at]
    assert cf.alternative_events[5].occurred_at == v4 and cf.alternative_state.first_at == real.first_at
    later = counterfactual(journal, "tool_failure_loop", [Insert(13, {"event_type": "error", "occurred_at": "2026-03-03T10:00:00+01:00"})])
    assert later.alternative_events[-1].occurred_at == dt.datetime(2026, 3, 3, 9, tzinfo=dt.UTC)
    with pytest.raises(ReplayError, match=r"inserted event: .*not an ISO 8601 time \('yesterday'\)"):
        counterfactual(journal, "tool_failure_loop", [Insert(1, {"event_type": "error", "occurred_at": "yesterday"})])
