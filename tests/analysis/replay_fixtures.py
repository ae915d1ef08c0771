"""Fixtures of the replay tests (imported by each test module): the real samples, a fresh cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from toolkit.analysis.replay import clear_cache
from toolkit.ingest.runner import import_paths
from toolkit.journal import Journal

REPO = Path(__file__).resolve().parents[2]
SAMPLES = [
    "data/samples/agentstore/sample-data",
    "data/samples/eventsourcing/assistants.sqlite",
    "data/samples/evennia-archive",
    "data/samples/otlp",
    "data/samples/chat/eval-runs.json",
]


@pytest.fixture(scope="session")
def samples_journal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    """Every bundled real sample imported once (read-only for tests)."""
    j = Journal.create(tmp_path_factory.mktemp("samples") / "j")
    import_paths(j, [str(REPO / p) for p in SAMPLES])
    yield j
    j.close()


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()
