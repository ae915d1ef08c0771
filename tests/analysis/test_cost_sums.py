"""Cost sums past 1e9 USD and exact means: every rollup, listing, summary and reprice keeps them.

An event's ``cost_usd`` is a DECIMAL(18, 9) (less than 1e9 USD); its sums are DECIMAL(38, 9). The
queries cast the sums back to DECIMAL(18, 9), so a fleet whose cost passed 999,999,999.999999999
USD failed with a conversion error, and a cost per run went through a DOUBLE that drops the 9th
decimal. The expected figures are computed here from the appended events with ``Decimal``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import ev, run_cli

from toolkit.analysis.demo_summary import summarise_journal
from toolkit.analysis.overview import overview_tables, recorded_vs_repriced
from toolkit.analysis.pricing import CSV_COLUMNS
from toolkit.analysis.rollup import DIMENSIONS
from toolkit.analysis.run_summaries import local_run_summaries
from toolkit.engines.polars_engine import scan_events
from toolkit.journal import Journal

NANO = Decimal("0.000000001")
BIG = Decimal("900000000.000000001")  # one event: just under DECIMAL(18, 9)'s limit
RATE = Decimal("700000000.250000")  # USD per 1M tokens: 1M tokens_in cost this much, repriced


def _events(journal: Journal) -> list[dict[str, Any]]:
    return journal.read_all().to_pylist()  # type: ignore[no-any-return]


def _mean(total: Decimal, n: int) -> Decimal:
    return (total / n).quantize(NANO, rounding=ROUND_HALF_UP)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    """Three runs, two agents, two models, two days, two weeks; 7 events of ~900M USD: 6.3e9 USD."""
    j = Journal.create(tmp_path_factory.mktemp("cost_past_1e9") / "journal")
    plan = [
        ("run-a", "planner", "success", [("gpt-4o", "search", "2026-03-02T10:00:00Z", "c-1")] * 3),
        ("run-b", "planner", "failure", [("gpt-4o", None, "2026-03-02T11:00:00Z", "c-2"), ("o3", "fetch", "2026-03-03T09:00:00Z", None)]),
        ("run-c", "critic", "success", [("o3", None, "2026-03-10T08:00:00Z", "c-2")] * 2),
    ]  # fmt: skip
    for run, agent, outcome, steps in plan:
        j.append(
            run,
            [
                ev("llm_response", {"step": i}, model=model, tool_name=tool, occurred_at=at, correlation_id=corr,
                   agent=agent, tokens_in=1_000_000, tokens_out=2, cost_usd=str(BIG + i * NANO),
                   metadata={"outcome": outcome} if i == 0 else None)
                for i, (model, tool, at, corr) in enumerate(steps)
            ],
            expected_version=0,
            stream_type="planner_run" if agent == "planner" else "critic_run",
        )  # fmt: skip
    yield j
    j.close()


@pytest.fixture(scope="module")
def prices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both models at RATE per 1M tokens in and 0.5 out: an event reprices to RATE + 0.000001 USD."""
    path = tmp_path_factory.mktemp("prices") / "prices.csv"
    rows = [
        f"{m},exact,acme,2026-01-01,,{RATE},0.500000,,,,,https://example.com/p,2026-01-01" for m in ("gpt-4o", "o3")
    ]
    path.write_text(",".join(CSV_COLUMNS) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _key(dim: str) -> Callable[[dict[str, Any]], str]:
    """The group an event falls in for ``dim``, as the CSV writes it."""

    def key(e: dict[str, Any]) -> str:
        if dim == "week":
            return str(e["day"] - dt.timedelta(days=e["day"].weekday()))
        value = e[{"tool": "tool_name", "stream": "stream_id"}.get(dim, DIMENSIONS[dim])]
        return "(none)" if value is None else str(value)

    return key


def _grouped(
    events: list[dict[str, Any]], key: Callable[[dict[str, Any]], str], cost: Callable[[dict[str, Any]], Decimal]
) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for e in events:
        out[key(e)] += cost(e)
    return dict(out)


def _csv(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, str]]:
    code, out, err = run_cli(capsys, *argv, "--format", "csv")
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out)))


def test_the_fleet_costs_more_than_decimal_18_9_holds(fleet: Journal) -> None:
    total = sum((e["cost_usd"] for e in _events(fleet)), Decimal(0))
    assert total > Decimal("999999999.999999999") and max(e["cost_usd"] for e in _events(fleet)) < 10**9


@pytest.mark.parametrize("metric", ["usage", "totals"])
@pytest.mark.parametrize("dim", list(DIMENSIONS))
def test_rollup_sums_past_1e9_exactly_at_every_grain(
    capsys: pytest.CaptureFixture[str], fleet: Journal, prices: Path, metric: str, dim: str
) -> None:
    events = _events(fleet)
    column = DIMENSIONS[dim]
    recorded = _csv(capsys, "rollup", metric, "-j", str(fleet.path), "--by", dim)
    assert {r[column]: Decimal(r["cost_usd"]) for r in recorded} == _grouped(events, _key(dim), lambda e: e["cost_usd"])
    repriced = _csv(
        capsys, "rollup", metric, "-j", str(fleet.path), "--by", dim, "--cost", "repriced", "--prices", str(prices)
    )
    want = _grouped(
        events, _key(dim), lambda e: e["tokens_in"] * RATE / 10**6 + e["tokens_out"] * Decimal("0.5") / 10**6
    )
    assert {r[column]: Decimal(r["cost_usd"]) for r in repriced} == want


def test_usage_cost_per_run_figures_past_1e9(capsys: pytest.CaptureFixture[str], fleet: Journal) -> None:
    """One group (stream type planner_run) of runs costing 2.7e9 and 1.8e9 USD: percentiles and
    the cost per successful run (run-a alone) keep every nano-dollar where they fall on a run."""
    events = _events(fleet)
    per_run = _grouped(
        [e for e in events if e["agent"] == "planner"], lambda e: e["stream_id"], lambda e: e["cost_usd"]
    )
    rows = {r["stream_type"]: r for r in _csv(capsys, "rollup", "-j", str(fleet.path), "--by", "stream_type")}
    planner = rows["planner_run"]
    assert Decimal(planner["cost_per_run_p99"]) < per_run["run-a"]  # interpolated (a DOUBLE weight): an estimate
    assert Decimal(planner["cost_per_successful_run"]) == per_run["run-a"]
    assert Decimal(rows["critic_run"]["cost_per_run_p50"]) == Decimal(rows["critic_run"]["cost_usd"])  # one run: exact


def test_top_runs_and_agents_past_1e9(capsys: pytest.CaptureFixture[str], fleet: Journal) -> None:
    events = _events(fleet)
    per_run = _grouped(events, lambda e: e["stream_id"], lambda e: e["cost_usd"])
    top = _csv(capsys, "rollup", "top-runs", "-j", str(fleet.path), "--limit", "3")
    assert [(r["stream_id"], Decimal(r["cost_usd"])) for r in top] == sorted(per_run.items(), key=lambda kv: -kv[1])
    agents = {r["agent"]: r for r in _csv(capsys, "rollup", "agents", "-j", str(fleet.path))}
    for agent, total in _grouped(events, lambda e: e["agent"], lambda e: e["cost_usd"]).items():
        runs = len({e["stream_id"] for e in events if e["agent"] == agent})
        assert Decimal(agents[agent]["cost_usd"]) == total
        assert Decimal(agents[agent]["cost_per_run"]) == _mean(total, runs)


def test_streams_and_stats_past_1e9(capsys: pytest.CaptureFixture[str], fleet: Journal) -> None:
    events = _events(fleet)
    per_run = _grouped(events, lambda e: e["stream_id"], lambda e: e["cost_usd"])
    streams = _csv(capsys, "streams", "-j", str(fleet.path))
    assert {r["stream_id"]: Decimal(r["cost_usd"]) for r in streams} == per_run
    code, out, err = run_cli(capsys, "stats", "-j", str(fleet.path), "run-a")
    assert code == 0, err
    assert f"cost_usd: {per_run['run-a']}" in out
    stats = json.loads(run_cli(capsys, "stats", "-j", str(fleet.path), "run-a", "--format", "json")[1])
    assert Decimal(stats["summary"]["cost_usd"]) == per_run["run-a"]
    assert sum(Decimal(r["cost_usd"]) for r in stats["by_event_type"]) == per_run["run-a"]


def test_reprice_past_1e9(capsys: pytest.CaptureFixture[str], fleet: Journal, prices: Path) -> None:
    """Each event reprices below 1e9 USD; the sums per day and model and the totals pass it."""
    events = _events(fleet)
    repriced = {e["event_id"]: e["tokens_in"] * RATE / 10**6 + e["tokens_out"] * Decimal("0.5") / 10**6 for e in events}
    code, out, err = run_cli(capsys, "reprice", "-j", str(fleet.path), "--prices", str(prices), "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    key = lambda e: f"{e['day']}|{e['model']}"  # noqa: E731
    got = {
        f"{r['day']}|{r['model']}": (
            Decimal(r["recorded_cost_usd"]),
            Decimal(r["repriced_cost_usd"]),
            Decimal(r["diff_usd"]),
        )
        for r in rows
    }
    recorded_by = _grouped(events, key, lambda e: e["cost_usd"])
    repriced_by = _grouped(events, key, lambda e: repriced[e["event_id"]])
    assert got == {k: (recorded_by[k], repriced_by[k], repriced_by[k] - recorded_by[k]) for k in recorded_by}
    recorded, total = sum(recorded_by.values(), Decimal(0)), sum(repriced_by.values(), Decimal(0)).quantize(NANO)
    assert f"recorded {recorded:f} USD, repriced {total:f} USD (diff {total - recorded:+f})" in err


def test_overview_and_catalog_queries_past_1e9(capsys: pytest.CaptureFixture[str], fleet: Journal) -> None:
    events = _events(fleet)
    total = sum((e["cost_usd"] for e in events), Decimal(0))
    o = overview_tables(fleet)
    assert o.totals["cost_usd"] == total
    assert sum(o.by_day.column("cost_usd").to_pylist(), Decimal(0)) == total
    assert sum(o.cost_by_model_day.column("cost_usd").to_pylist(), Decimal(0)) == total
    assert dict(zip(*o.by_model.select(["model", "cost_usd"]).to_pydict().values(), strict=True)) == _grouped(
        events, lambda e: e["model"], lambda e: e["cost_usd"]
    )
    per_run = _grouped(events, lambda e: e["stream_id"], lambda e: e["cost_usd"])
    assert {r["stream_id"]: r["cost_usd"] for r in o.costliest_runs.to_pylist()} == per_run
    for r in o.by_agent.to_pylist():
        runs = {e["stream_id"] for e in events if e["agent"] == r["agent"]}
        assert r["cost_usd"] == sum((per_run[s] for s in runs), Decimal(0))
        assert r["cost_per_run_usd"] == _mean(r["cost_usd"], len(runs))
    by_model, _ = recorded_vs_repriced(fleet)
    assert sum(by_model.column("recorded_cost_usd").to_pylist(), Decimal(0)) == total
    rows = _csv(capsys, "sql", "-j", str(fleet.path), "overview/totals")
    assert Decimal(rows[0]["cost_usd"]) == total
    overview, by_model_table = summarise_journal(fleet)
    assert overview["cost_usd"] == total == sum(by_model_table.column("cost_usd").to_pylist(), Decimal(0))
    runs = local_run_summaries(scan_events(fleet).collect())
    assert dict(zip(*runs.select("stream_id", "cost_usd").to_dict(as_series=False).values(), strict=True)) == per_run


# ---------------------------------------------------------------------- a mean of decimals


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    """One agent, three successful runs of 300,000,000.000000001 USD: 900,000,000.000000003 in all.

    Divided as a DOUBLE the mean is 300000000.0 (a DOUBLE keeps 15-16 significant digits)."""
    j = Journal.create(tmp_path_factory.mktemp("three_runs") / "journal")
    for run in ("r1", "r2", "r3"):
        j.append(
            run,
            [ev("llm_response", {"n": 1}, model="o3", agent="solo", cost_usd="300000000.000000001",
                occurred_at="2026-03-02T10:00:00Z", metadata={"outcome": "success"})],
            expected_version=0,
        )  # fmt: skip
    yield j
    j.close()


def test_costs_per_run_are_exact_decimals(capsys: pytest.CaptureFixture[str], three_runs: Journal) -> None:
    want = Decimal("300000000.000000001")
    agents = _csv(capsys, "rollup", "agents", "-j", str(three_runs.path))
    assert [Decimal(r["cost_per_run"]) for r in agents] == [want]
    usage = _csv(capsys, "rollup", "-j", str(three_runs.path), "--by", "agent")
    assert [Decimal(r["cost_per_successful_run"]) for r in usage] == [want]
    assert [r["cost_per_run_usd"] for r in overview_tables(three_runs).by_agent.to_pylist()] == [want]


def test_a_cost_per_run_rounds_half_away_from_zero(tmp_path: Path) -> None:
    """Two runs of 0.000000001 and 0.000000002 USD: 0.0000000015 per run, 0.000000002 shown."""
    j = Journal.create(tmp_path / "journal")
    for run, cost in (("r1", "0.000000001"), ("r2", "0.000000002")):
        j.append(
            run, [ev("llm_response", agent="a", cost_usd=cost, occurred_at="2026-03-02T10:00:00Z")], expected_version=0
        )
    assert overview_tables(j).by_agent.column("cost_per_run_usd").to_pylist() == [Decimal("0.000000002")]
    j.close()


# ---------------------------------------------------------------------- one event repriced past 1e9


def test_an_event_repriced_past_what_cost_usd_holds_is_unpriced_with_its_reason(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, prices: Path
) -> None:
    """Two million tokens at RATE cost 1.4e9 USD: more than an event's DECIMAL(18, 9); the rest still reprices."""
    j = Journal.create(tmp_path / "journal")
    j.append("r", [ev("llm_response", model="o3", tokens_in=2_000_000, occurred_at="2026-03-02T10:00:00Z"),
                   ev("llm_response", model="o3", tokens_in=1_000_000, occurred_at="2026-03-02T10:01:00Z")],
             expected_version=0)  # fmt: skip
    code, out, err = run_cli(capsys, "reprice", "-j", str(j.path), "--prices", str(prices), "--format", "csv")
    assert code == 0, err
    (row,) = csv.DictReader(io.StringIO(out))
    assert (Decimal(row["repriced_cost_usd"]), row["unpriced_events"]) == (RATE, "1")
    code, out, err = run_cli(
        capsys, "reprice", "-j", str(j.path), "--prices", str(prices), "--unpriced", "--format", "json"
    )
    assert code == 0, err
    (listed,) = [json.loads(line) for line in out.splitlines()]
    assert listed["tokens_in"] == 2_000_000
    assert listed["reason"].startswith(f"repriced cost {2 * RATE}") and "999999999.999999999" in listed["reason"]
    j.close()
