"""The committed demo fixture (tests/fixtures/demo-journal) is sound and in step with the generator.

Rebuild it after changing the generator or the hash chain:
    rm -rf tests/fixtures/demo-journal && .venv/bin/journal demo -j tests/fixtures/demo-journal --runs 40 --seed 7
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from toolkit.ingest.demo import generate_demo
from toolkit.journal import Journal
from toolkit.journal.integrity import verify_journal

FIXTURE = Path(__file__).parent / "fixtures" / "demo-journal"


@pytest.fixture(scope="module")
def fixture_journal(tmp_path_factory: pytest.TempPathFactory) -> Journal:
    copy = tmp_path_factory.mktemp("fixture") / "demo-journal"
    shutil.copytree(FIXTURE, copy)  # tests never write into the committed copy
    return Journal.open(copy)


def test_fixture_verifies(fixture_journal: Journal) -> None:
    report = verify_journal(fixture_journal)
    assert report.ok, report.breaks
    generated = sum(t.num_rows for t in generate_demo(runs=40, seed=7))
    assert (report.streams, report.events) == (40, generated)


def test_fixture_matches_the_generator(fixture_journal: Journal) -> None:
    generated = pa.concat_tables(list(generate_demo(runs=40, seed=7)))
    cols = ["event_id", "stream_id", "event_type", "occurred_at", "data", "metadata", "cost_usd"]
    stored = fixture_journal.read_all(cols)
    key = [("stream_id", "ascending"), ("occurred_at", "ascending"), ("event_id", "ascending")]
    assert stored.sort_by(key).to_pylist() == generated.select(cols).sort_by(key).to_pylist()
