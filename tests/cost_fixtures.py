"""Fixture runs for the cost and rollup tests: an agent framework's goals and ticks, a chat run with an outcome."""

from __future__ import annotations

from helpers import ev

from toolkit.journal import Journal


def build_goals_and_ticks(journal: Journal) -> None:
    """An eventsourcing-style assistant: goals created and completed, ticks with tokens and durations."""
    topic = "assistant_model:AssistantAggregate."
    journal.append(
        "assistant-1",
        [
            ev("AssistantCreated", {"assistant_key": "guide"}, source_type=topic + "AssistantCreated", agent="guide",
               occurred_at="2026-03-02T08:00:00Z"),
            ev("GoalCreated", {"goal": "greet"}, source_type=topic + "GoalCreated", agent="guide",
               occurred_at="2026-03-02T08:01:00Z"),
            ev("GoalCreated", {"goal": "guide"}, source_type=topic + "GoalCreated", agent="guide",
               occurred_at="2026-03-02T08:02:00Z"),
            ev("TickCompleted", {"tick_number": 1}, source_type=topic + "TickCompleted", agent="guide",
               duration_ms=1000.0, tokens_in=1500, tokens_out=100, occurred_at="2026-03-02T08:03:00Z"),
            ev("TickCompleted", {"tick_number": 2}, source_type=topic + "TickCompleted", agent="guide",
               duration_ms=3000.0, tokens_in=1700, tokens_out=120, occurred_at="2026-03-02T08:04:00Z"),
            ev("GoalCompleted", {"goal": "greet"}, source_type=topic + "GoalCompleted", agent="guide",
               occurred_at="2026-03-02T08:05:00Z"),
        ],
        expected_version=0,
        stream_type="AssistantAggregate",
    )


def build_chat_outcomes(journal: Journal) -> None:
    """Two chat runs with a stated outcome (first event's metadata.run), one solved, one not."""
    for run, outcome, tokens in (("chat-solved", "success", 2000), ("chat-failed", "failure", 3000)):
        journal.append(
            run,
            [
                ev("user_message", {"content": "hi"}, metadata={"run": {"id": run, "outcome": outcome}},
                   occurred_at="2026-03-02T10:00:00Z", agent="helper"),
                ev("llm_response", {"content": "ok"}, model="gpt-4o-mini", tokens_in=tokens, tokens_out=100,
                   cost_usd="0.001", occurred_at="2026-03-02T10:00:01Z", agent="helper"),
            ],
            expected_version=0,
            stream_type="chat_run",
        )
