"""A fixture run for the overview and run-explorer queries: an agent whose tool fails, ending in an error."""

from __future__ import annotations

from helpers import ev

from toolkit.journal import Journal


def build_flaky_deploy(journal: Journal) -> None:
    """Agent ``deployer``: an LLM call, a tool call that fails after 250 ms, then an error (status aborted)."""
    journal.append(
        "flaky_deploy",
        [
            ev(
                "user_message",
                {"text": "roll out v2"},
                agent="deployer",
                occurred_at="2026-03-02T07:00:00Z",
                correlation_id="release-42",
                subject_id="ops-team",
            ),
            ev(
                "llm_response",
                {"text": "deploying"},
                agent="deployer",
                model="small-model",
                tokens_in=400,
                tokens_out=20,
                cost_usd="0.020000000",
                duration_ms=900.0,
                occurred_at="2026-03-02T07:00:01Z",
            ),
            ev(
                "tool_called",
                {"cmd": "deploy v2"},
                agent="deployer",
                tool_name="deploy",
                tool_call_id="d1",
                occurred_at="2026-03-02T07:00:02Z",
            ),
            ev(
                "tool_result",
                {"exit": 2},
                agent="deployer",
                tool_name="deploy",
                tool_call_id="d1",
                error="quota exceeded",
                duration_ms=250.0,
                occurred_at="2026-03-02T07:00:03Z",
            ),
            ev(
                "error",
                {"reason": "gave up"},
                agent="deployer",
                error="deploy failed",
                occurred_at="2026-03-02T07:00:04Z",
            ),
        ],
        expected_version=0,
        stream_type="agent_run",
    )
