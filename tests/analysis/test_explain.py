# ruff: noqa: F811  (pytest fixtures imported from replay_fixtures are parameters here)
"""Explainers: every canonical type and imported topic reads as a sentence; users add their own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from replay_fixtures import fresh_cache, samples_journal  # noqa: F401  (pytest fixtures)

from toolkit.analysis.explain import Explanation, explain_event, register_explainer, unregister_explainer
from toolkit.analysis.replay import replay
from toolkit.journal import Journal
from toolkit.journal.schema import CANONICAL_EVENT_TYPES


def test_every_event_of_the_real_samples_gets_a_specific_explanation(samples_journal: Journal) -> None:
    seen = set()
    for sid in samples_journal.heads():
        tl = replay(samples_journal, sid)
        for et, title, summary in tl.select("event_type", "title", "summary").iter_rows():
            seen.add(et)
            assert title and summary is not None
            assert title != et or et in {"custom"}, f"{et} fell back to the generic explainer"
    assert set(CANONICAL_EVENT_TYPES) - {"custom"} <= seen
    assert {"GoalCreated", "TickCompleted", "EmergencyStopTriggered", "AssistantArchived"} <= seen


@pytest.mark.parametrize(
    ("row", "title", "fragment"),
    [
        ({"event_type": "tool_result", "tool_name": "dig", "is_error": True, "error": "exit exists"}, "Tool failed", "exit exists"),
        ({"event_type": "llm_response", "model": "m", "tokens_in": 1200, "data": '{"text": "hi"}'}, "Model answered", "1,200 in"),
        ({"event_type": "llm_response", "model": "m", "data": '{"finish_reason": "tool_calls", "tool_calls": [{"name": "dig"}]}'},
         "Model asked for tools", "wants to call dig"),
        ({"event_type": "llm_response", "model": "m", "data": '{"finish_reasons": ["tool_calls"]}'},
         "Model asked for tools", "wants to call tools"),
        ({"event_type": "plan_created", "data": '{"steps": ["a", "b"]}'}, "Plan made", "2 steps: a → b"),
        ({"event_type": "plan_created", "data": '{"steps": ["search flights"]}'}, "Plan made", "1 step: search flights"),
        ({"event_type": "GoalCompleted", "data": '{"goal_id": "g1", "outcome": "done"}'}, "Goal completed", "g1: done"),
        ({"event_type": "Unheard", "source_type": "x:Agg.TickCompleted", "data": '{"tick_number": 3}'}, "Tick", "tick 3"),
        ({"event_type": "whatever_else", "data": "not json {"}, "Whatever else", "not json"),
    ],
)
def test_default_explanations(row: dict[str, Any], title: str, fragment: str) -> None:
    x = explain_event(row)
    assert x.title == title and fragment in x.summary


def test_user_explainers_override_and_a_failing_one_does_not_break_the_timeline() -> None:
    @register_explainer("user_message")
    def mine(e: Mapping[str, Any]) -> Explanation:
        return Explanation("Customer", "said something", ("people",))

    @register_explainer("flaky")
    def flaky(e: Mapping[str, Any]) -> Explanation:
        raise KeyError("x")

    try:
        assert explain_event({"event_type": "user_message", "data": "{}"}).title == "Customer"
        bad = explain_event({"event_type": "flaky", "data": '{"text": "t"}'})
        assert "explainer-failed" in bad.tags and "KeyError" in bad.summary
    finally:
        unregister_explainer("flaky")
        import importlib

        import toolkit.analysis.explain as ex

        importlib.reload(ex)  # restore the defaults for other tests
