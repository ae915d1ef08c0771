"""The run explorer's view of findings: per stream, the latest re-grade whose selection checked it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from invariant_journals import PATTERNS, build

from toolkit.analysis.regrade import regrade
from toolkit.analysis.run_explorer import failing_rules_by_run, list_failing_rules, run_failures
from toolkit.analysis.sql import run_sql
from toolkit.analysis.verdicts import Selection
from toolkit.journal import Journal
from toolkit.journal.side_tables import SIDE_TABLES, read_table

TINY, HUGE = {"max_cost_usd": "0.0001"}, {"max_cost_usd": "100"}  # cheap and expensive fail / nothing fails


@pytest.fixture
def patterns(tmp_path: Path) -> Iterator[Journal]:
    j = build(tmp_path / "j", *PATTERNS)
    yield j
    j.close()


def failing(journal: Journal) -> dict[str, tuple[str, ...]]:
    return {s: rules for s, rules in failing_rules_by_run(journal).items() if "budget" in rules}


def test_a_later_regrade_that_checked_a_stream_supersedes_its_finding_one_that_did_not_leaves_it(
    patterns: Journal,
) -> None:
    """The explorer took the latest batch *with findings* of a rule for every stream: a re-grade of
    one other stream hid every earlier finding, and one in which the rule held for a stream left its
    finding shown. It now takes, per stream, the latest batch whose selection checked that stream."""
    regrade(patterns, ["budget"], params=TINY)
    assert set(failing(patterns)) == {"cheap", "expensive"}
    # not covering cheap: its finding stays (it used to vanish, as the latest batch found only expensive)
    regrade(patterns, ["budget"], params=TINY, selection=Selection(streams=("expensive",)))
    assert set(failing(patterns)) == {"cheap", "expensive"}
    assert [f["rule"] for f in run_failures(patterns, "cheap").to_pylist()] == ["budget"]
    # covering cheap, where the rule now holds: no violation there any more (it used to stay shown)
    regrade(patterns, ["budget"], params=HUGE, selection=Selection(streams=("cheap",)))
    assert set(failing(patterns)) == {"expensive"}
    assert run_failures(patterns, "cheap").num_rows == 0
    # a re-grade of everything in which the rule held: nothing fails
    regrade(patterns, ["budget"], params=HUGE)
    assert failing(patterns) == {} and "budget" not in list_failing_rules(patterns)


def test_a_batch_in_which_the_rule_raised_does_not_supersede(patterns: Journal, tmp_path: Path) -> None:
    rules_py = tmp_path / "flaky.py"
    rules_py.write_text(
        "import os\n"
        "from toolkit.analysis.rules import python_rule\n\n"
        "@python_rule('flaky', 'Fails expensive; raises when told to.')\n"
        "def flaky(state, p):\n"
        "    if os.environ.get('FLAKY_RAISE'):\n"
        "        raise RuntimeError('broken')\n"
        "    return state.cost_usd < 1\n",
        encoding="utf-8",
    )
    regrade(patterns, ["flaky"], rule_files=[str(rules_py)], workers=1)
    before = {s for s, rules in failing_rules_by_run(patterns).items() if "flaky" in rules}
    assert before
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLAKY_RAISE", "1")
        raised = regrade(patterns, ["flaky"], rule_files=[str(rules_py)], workers=1)
    assert set(raised.findings.column("kind").to_pylist()) == {"error"}
    assert {s for s, rules in failing_rules_by_run(patterns).items() if "flaky" in rules} == before


def test_regrades_record_their_selection_and_a_table_written_before_gains_the_columns(patterns: Journal) -> None:
    """Rows written before the selection columns existed read as null (checked every stream); the
    next re-grade appends to that table with the columns added."""
    old_schema = pa.schema([f for f in SIDE_TABLES["regrades"] if f.name not in ("selection", "stream_ids")])
    batch = "00000000-0000-4000-8000-000000000000"
    old = {
        "graded_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "batch_id": batch,
        "rule": "latency",
        "rule_fingerprint": "f",
        "params": "{}",
        "streams_checked": 22,
        "streams_failing": 0,
        "errors": 0,
    }
    write_deltalake(str(patterns.path / "regrades"), pa.Table.from_pylist([old], schema=old_schema))
    result = regrade(patterns, ["budget"], params=TINY, selection=Selection(streams=("cheap", "quick")))
    rows = {r["batch_id"]: r for r in read_table(patterns, "regrades").to_pylist()}
    assert rows[batch]["selection"] is None and rows[batch]["stream_ids"] is None
    mine = rows[result.batch_id]
    assert json.loads(mine["selection"])["streams"] == ["cheap", "quick"] and mine["stream_ids"] == ["cheap", "quick"]
    everything = regrade(patterns, ["budget"], params=TINY)
    recorded = run_sql(patterns, "SELECT batch_id, stream_ids FROM regrades WHERE rule = 'budget' ORDER BY graded_at")
    assert recorded.to_pylist() == [
        {"batch_id": result.batch_id, "stream_ids": ["cheap", "quick"]},
        {"batch_id": everything.batch_id, "stream_ids": None},  # every stream
    ]
