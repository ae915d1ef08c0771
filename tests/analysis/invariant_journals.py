"""Fixture journals for the invariant tests, one per forensic pattern (tests/fixtures/<pattern>/events.jsonl)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    """One journal holding every fixture pattern (a fixture: import it into a test module)."""
    j = build(tmp_path_factory.mktemp("all") / "j", *PATTERNS)
    yield j
    j.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    """A writable copy of the demo journal (a fixture: import it into a test module)."""
    copy = tmp_path_factory.mktemp("demo") / "demo-journal"
    shutil.copytree(DEMO, copy)
    j = Journal.open(copy)
    yield j
    j.close()
