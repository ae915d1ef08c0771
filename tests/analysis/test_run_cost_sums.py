"""A run whose cost passes 1e9 USD: its state, the runs projection, compliance bundles and budgets.

An event's ``cost_usd`` is a DECIMAL(18, 9) (less than 1e9 USD); a run's accumulated cost is a
sum, a DECIMAL(38, 9). The agent-run state cast it back to DECIMAL(18, 9), so ``journal project
runs``, ``journal export-compliance`` and the run story failed with a conversion error on such a
run. The budget rules summed nano-dollars as i64, which Polars wraps past 9.2e9 USD: a run of 11
events of 900,000,000 USD came out negative and passed its budget. The expected figures are
computed here from the appended events with ``Decimal``.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from helpers import ev, run_cli

from toolkit.analysis.agent_run import AGENT_RUN, agent_run_states, fold_run_states
from toolkit.analysis.projections import RUNS, RUNS_SCHEMA, catch_up, runs_rows
from toolkit.analysis.replay import state_at, stream_events
from toolkit.analysis.run_story import story_of_run
from toolkit.journal import Journal
from toolkit.journal.side_tables import read_projection, write_projection

NANO = Decimal("0.000000001")
BIG = Decimal("900000000.000000001")  # one event: just under DECIMAL(18, 9)'s limit
I64_USD = Decimal(2**63 - 1) * NANO  # what an i64 of nano-dollars holds: 9,223,372,036.854775807 USD


def _costs(journal: Journal) -> dict[str, Decimal]:
    """Each stream's cost: the sum of its events' cost_usd."""
    out: dict[str, Decimal] = defaultdict(Decimal)
    for e in journal.read_all(["stream_id", "cost_usd"]).to_pylist():
        out[e["stream_id"]] += e["cost_usd"] or 0
    return dict(out)


def _append_big(journal: Journal, stream: str, n: int, *, first: int = 0, event_type: str = "llm_response") -> None:
    """``n`` events of BIG + i nano-dollars (i = first, first + 1, ...) at the end of ``stream``."""
    head = journal.heads().get(stream)
    journal.append(
        stream,
        [
            ev(event_type, {"step": i}, model="o3", cost_usd=str(BIG + i * NANO), correlation_id="session",
               occurred_at=f"2026-03-02T10:{i:02d}:00Z")
            for i in range(first, first + n)
        ],
        expected_version=head.version if head is not None else 0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    """big: 11 events of ~900M USD (9.9e9 USD, past an i64 of nano-dollars); assist: two
    assistant ticks (a stream folded in Python) of ~900M USD; small: 0.5 USD."""
    j = Journal.create(tmp_path_factory.mktemp("run_past_1e9") / "journal")
    _append_big(j, "big", 11)
    _append_big(j, "assist", 2, event_type="TickCompleted")
    j.append("small", [ev("llm_response", model="o3", cost_usd="0.5", correlation_id="session",
                          occurred_at="2026-03-02T09:00:00Z")], expected_version=0)  # fmt: skip
    yield j
    j.close()


def test_the_runs_cost_more_than_an_event_and_an_i64_hold(runs: Journal) -> None:
    costs = _costs(runs)
    assert costs["big"] > I64_USD and costs["assist"] > Decimal("999999999.999999999")


@pytest.mark.parametrize("mergeable", [False, True])
def test_run_states_past_1e9_are_exact(runs: Journal, mergeable: bool) -> None:
    """The column-wise states (big, small) and the Python fold (assist) give every nano-dollar."""
    states = agent_run_states(runs, mergeable=mergeable)
    assert states.schema["cost_usd"] == pl.Decimal(38, 9)
    assert dict(states.select("stream_id", "cost_usd").iter_rows()) == _costs(runs)
    folded = fold_run_states((sid, stream_events(runs, sid)) for sid in ("assist", "big", "small"))
    assert dict(folded.select("stream_id", "cost_usd").iter_rows()) == _costs(runs)


def test_state_replay_and_story_of_a_run_past_1e9(capsys: pytest.CaptureFixture[str], runs: Journal) -> None:
    """journal state and replay fold in Python (exact before too); the story picks its run from the
    column-wise states of every stream (a conversion error before)."""
    want = _costs(runs)["big"]
    code, out, err = run_cli(capsys, "state", "big", "-j", str(runs.path), "--format", "json")
    assert code == 0, err
    assert Decimal(json.loads(out)["cost_usd"]) == want == state_at(runs, "big").cost_usd
    code, out, err = run_cli(capsys, "replay", "big", "-j", str(runs.path))
    assert code == 0, err
    assert story_of_run(runs).stream_id == "small"  # picked from the states of every stream: the shortest
    story = story_of_run(runs, "big")
    assert story.states.filter(pl.col("field") == "cost_usd").row(0) == (
        "cost_usd",
        str(5 * BIG + 10 * NANO),
        str(want),
    )


def test_the_runs_projection_builds_and_catches_up_past_1e9(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Built, then caught up incrementally (the new events' state merged into a stored row)."""
    j = Journal.create(tmp_path / "journal")
    _append_big(j, "big", 2)
    code, out, err = run_cli(capsys, "project", "runs", "-j", str(j.path))
    assert code == 0, err
    _append_big(j, "big", 9, first=2)
    _append_big(j, "later", 2)
    code, out, err = run_cli(capsys, "project", "runs", "-j", str(j.path))
    assert code == 0, err
    assert json.loads(out)["rebuilt"] is False
    table = read_projection(Journal.open(j.path), "runs")
    assert table is not None and table.schema.field("cost_usd").type == pa.decimal128(38, 9)
    assert dict(zip(*table.select(["stream_id", "cost_usd"]).to_pydict().values(), strict=True)) == _costs(j)
    j.close()


OLD_RUNS_SCHEMA = pa.schema([f.with_type(pa.decimal128(18, 9)) if f.name == "cost_usd" else f for f in RUNS_SCHEMA])


def test_a_runs_projection_stored_with_the_old_schema_is_rebuilt(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A projection written before the change (cost_usd a decimal128(18, 9), its checkpoint the
    fingerprint of the projection with that schema): the next catch-up, with a run now past
    1e9 USD, rebuilds it with the new schema instead of merging into it; later ones are incremental."""
    j = Journal.create(tmp_path / "journal")
    _append_big(j, "big", 1)
    old = dataclasses.replace(RUNS, schema=OLD_RUNS_SCHEMA)
    checkpoint = {"position": j.max_position(), "fingerprint": old.fingerprint, "removals": ""}
    write_projection(j, "runs", runs_rows(j, None).cast(OLD_RUNS_SCHEMA), overwrite=True, checkpoint=checkpoint)
    stored = read_projection(j, "runs")
    assert stored is not None and stored.schema.field("cost_usd").type == pa.decimal128(18, 9)
    _append_big(j, "big", 2, first=1)
    code, out, err = run_cli(capsys, "project", "runs", "-j", str(j.path))
    assert code == 0, err
    report = json.loads(out)
    assert (report["rebuilt"], report["reason"]) == (
        True,
        "the projection's code or schema changed since its last build",
    )
    _append_big(j, "big", 1, first=3)
    report = catch_up(Journal.open(j.path), "runs")
    assert not report.rebuilt and report.events == 1
    table = read_projection(Journal.open(j.path), "runs")
    assert table is not None and table.schema.field("cost_usd").type == pa.decimal128(38, 9)
    assert table.column("cost_usd").to_pylist() == [_costs(j)["big"]] == [4 * BIG + 6 * NANO]
    j.close()


def test_a_compliance_bundle_of_runs_past_1e9_exports_and_verifies(
    capsys: pytest.CaptureFixture[str], runs: Journal, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    code, _, err = run_cli(
        capsys, "export-compliance", "-j", str(runs.path), "--correlation", "session", "-o", str(bundle)
    )
    assert code == 0, err
    exported = pl.read_parquet(bundle / "runs.parquet")
    assert dict(exported.select("stream_id", "cost_usd").iter_rows()) == _costs(runs)
    code, _, err = run_cli(capsys, "verify-export", str(bundle), "-j", str(runs.path))
    assert code == 0, err
    assert "OK" in err


# ---------------------------------------------------------------------- budgets past an i64


def _findings(capsys: pytest.CaptureFixture[str], journal: Journal, rule: str, limit: str) -> list[dict[str, Any]]:
    code, out, err = run_cli(
        capsys, "regrade", rule, "-j", str(journal.path), "--stream", "big", "-p", f"max_cost_usd={limit}",
        "--dry-run", "--format", "json",
    )  # fmt: skip
    assert code == 3, err  # findings present
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("rule", ["budget", "budget_state"])
def test_a_run_past_an_i64_of_nano_dollars_breaks_its_budget(
    capsys: pytest.CaptureFixture[str], runs: Journal, rule: str
) -> None:
    """11 events of ~900M USD (9.9e9 USD): over a 9.5e9 budget at its last event, with its cost
    as summed; over a 5 USD budget at every event (the sums past 9.2e9 USD wrapped negative)."""
    costs = [e["cost_usd"] for e in runs.read_stream("big", ["cost_usd"]).to_pylist()]
    total = sum(costs, Decimal(0))
    (f,) = _findings(capsys, runs, rule, "9500000000")
    assert (f["stream_id"], f["first_failing_version"], f["failing_events"]) == ("big", 11, 1)
    assert f["message"] == f"cumulative cost ${total} exceeds $9500000000.0"
    (f,) = _findings(capsys, runs, rule, "5")
    assert (f["first_failing_version"], f["failing_events"]) == (1, len(costs))
    assert f["message"] == f"cumulative cost ${costs[0]} exceeds $5.0"


def test_a_budget_past_an_i64_of_nano_dollars_is_kept_as_written(
    capsys: pytest.CaptureFixture[str], runs: Journal
) -> None:
    """A 1e10 USD budget is not cut to an i64's 9.2e9 USD: the 9.9e9 USD run holds."""
    assert _costs(runs)["big"] < 10**10
    for rule in ("budget", "budget_state"):
        code, out, err = run_cli(
            capsys, "regrade", rule, "-j", str(runs.path), "--stream", "big", "-p", "max_cost_usd=1e10",
            "--dry-run", "--format", "json",
        )  # fmt: skip
        assert (code, out) == (0, ""), err


def test_the_fold_agrees(runs: Journal) -> None:
    """The Python reference: the same total, past an i64 of nano-dollars."""
    assert AGENT_RUN.fold(stream_events(runs, "big")).cost_usd == _costs(runs)["big"] > I64_USD
