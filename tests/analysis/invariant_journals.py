"""Fixture journals for the invariant tests, one per forensic pattern (tests/fixtures/<pattern>/events.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolkit.journal import Journal

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DEMO = FIXTURES / "demo-journal"
PATTERNS = (
    "tool_failure_loop",
    "budget_breach_at_v7",
    "orphan_tool_result",
    "unconfirmed_write",
    "broken_causation",
    "slow_tool",
    "doorbell_rung_twice",
)


def pattern_rows(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / name / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def build(path: Path, *patterns: str) -> Journal:
    """A journal on disk holding the given patterns (each one commit, in the order given)."""
    journal = Journal.create(path)
    for name in patterns:
        journal.append_batch(pattern_rows(name), stream_type="agent_run")
    return journal
