"""`journal rollup`, `journal reprice` and `journal sql --list` through the real entry point."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import REPO, run_cli

from toolkit.journal import Journal

DEMO = str(REPO / "tests" / "fixtures" / "demo-journal")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run_cli(capsys, *argv)


def test_rollup_by_model_and_day_as_csv(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "rollup", "-j", DEMO, "--by", "model,day", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0])[:3] == ["model", "day", "runs"]
    assert sum(int(r["events"]) for r in rows) == Journal.open(DEMO).read_all(["event_id"]).num_rows
    assert {r["model"] for r in rows} >= {"gpt-4o", "claude-sonnet-4", "(none)"}


def test_a_rollup_of_an_empty_window_says_so_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "rollup", "-j", DEMO, "--since", "2031-01-01", "--format", "csv")
    assert code == 0 and len(out.strip().splitlines()) == 1  # the header only
    assert "nothing to roll up in the time window (--since 2031-01-01)" in err
    code, out, err = run(capsys, "rollup", "-j", DEMO, "--since", "2000-01-01", "--format", "csv")
    assert code == 0 and "warning" not in err


def test_rollup_repriced_top_runs_and_seed_metrics(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "rollup", "top-runs", "-j", DEMO, "--limit", "3", "--cost", "repriced", "--format", "json")
    assert code == 0, err
    top = [json.loads(line) for line in out.splitlines()]
    assert [t["rank"] for t in top] == [1, 2, 3]
    assert Decimal(top[0]["cost_usd"]) >= Decimal(top[1]["cost_usd"]) >= Decimal(top[2]["cost_usd"])
    for metric in ("tools", "goals", "ticks", "errors", "agents", "totals"):
        code, out, err = run(capsys, "rollup", metric, "-j", DEMO, "--format", "json", "--since", "2026-10-02")
        assert code == 0, (metric, err)
    out_file = tmp_path / "by-agent.parquet"
    code, _, err = run(capsys, "rollup", "-j", DEMO, "--by", "agent", "--by", "week", "--format", "parquet", "-o", str(out_file))
    assert code == 0 and out_file.stat().st_size > 0, err


def test_bad_dimension_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "rollup", "-j", DEMO, "--by", "colour")
    assert code == 2 and "colour" in err and "model|tool|stream" in err


def test_by_on_a_metric_with_its_own_grouping_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """`journal rollup tools --by agent` printed the rollup by tool, --by ignored without a word."""
    for metric in ("tools", "top-runs", "errors"):
        code, out, err = run(capsys, "rollup", "-j", DEMO, metric, "--by", "agent", "--format", "csv")
        assert code == 2 and not out and f"{metric} is not grouped by --by" in err, (metric, err)
    code, out, err = run(capsys, "rollup", "-j", DEMO, "totals", "--by", "agent", "--format", "csv")
    assert code == 0 and out.startswith("agent,"), err


def test_prices_or_as_of_without_cost_repriced_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """They were ignored: `--as-of 2020-01-01` printed the recorded cost as if repriced at that date."""
    for option in (("--as-of", "2020-01-01"), ("--prices", "default")):
        code, out, err = run(capsys, "rollup", "-j", DEMO, *option, "--format", "csv")
        assert code == 2 and not out and "--cost repriced" in err, (option, err)
    code, _, err = run(capsys, "rollup", "-j", DEMO, "--as-of", "2026-11-01", "--cost", "repriced", "--format", "csv")
    assert code == 0, err


def test_the_dask_engine_notes_unpriced_events_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-machine rollup says how many events have no cost; --engine dask printed the table only."""
    from toolkit.analysis import distributed, rollup
    from toolkit.journal import Journal

    journal = Journal.create(tmp_path / "j")
    journal.append("r", [{"event_type": "llm_response", "data": {}, "model": "m", "tokens_in": 5, "occurred_at": "2026-03-01T00:00:00Z"}])
    journal.close()
    monkeypatch.setattr(distributed, "rollup_dask", lambda j, dims, **kw: rollup.rollup(j, dims, since=kw["since"], until=kw["until"]))
    for engine in ("local", "dask"):
        code, _, err = run(capsys, "rollup", "-j", str(tmp_path / "j"), "--engine", engine, "--format", "csv")
        assert code == 0 and "note: 1 events with tokens have no recorded cost" in err, (engine, err)


def test_a_bad_since_or_until_is_a_usage_error_as_in_the_other_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """rollup and reprice exited 1 ('parameter since: ...'); correlation, regrade, export-compliance exit 2 naming --since."""
    for argv in (("rollup", "--since", "2026-10-01T00:00:00"), ("reprice", "--until", "yesterday"), ("correlation", "x", "--since", "2026-10-01T00:00:00")):
        code, out, err = run(capsys, argv[0], "-j", DEMO, *argv[1:])
        assert code == 2 and not out and f"Invalid value for {argv[-2]}" in err, (argv, code, err)
    code, out, _ = run(capsys, "rollup", "-j", DEMO, "--since", "2026-10-02T00:00:00+02:00", "--format", "csv")
    assert code == 0 and out


def test_reprice_prints_the_diff_and_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "reprice", "-j", DEMO, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and all(Decimal(r["diff_usd"]) == 0 for r in rows)
    assert "every event with tokens has a price" in err
    code, out, err = run(capsys, "reprice", "-j", DEMO, "--as-of", "2024-06-01", "--unpriced", "--format", "csv")
    assert code == 0, err
    unpriced = list(csv.DictReader(io.StringIO(out)))
    # in June 2024 only gpt-4o had a price (5/15): every other model's events are listed, with why
    assert unpriced and {r["reason"] for r in unpriced} == {"no price in force at that time"}
    assert "gpt-4o" not in {r["model"] for r in unpriced}


def test_reprice_refuses_an_overlapping_price_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    shipped = (REPO / "data" / "prices" / "prices.csv").read_text(encoding="utf-8")
    bad = tmp_path / "p.csv"
    bad.write_text(shipped + "gpt-4o,exact,openai,2025-01-01,,1,1,,,,,https://example.com,2026-01-01\n", encoding="utf-8")
    code, _, err = run(capsys, "reprice", "-j", DEMO, "--prices", str(bad))
    last = len(bad.read_text().splitlines())
    assert code == 1 and f"{bad}:{last}" in err and "overlap" in err and "Hint:" in err


def test_sql_list_shows_the_catalog_and_the_queries_run(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "sql", "--list", "--format", "json")
    assert code == 0, err
    names = {json.loads(line)["name"] for line in out.splitlines()}
    assert {"rollups/usage", "rollups/totals", "costs/reprice_diff_by_model_day", "costs/top_runs"} <= names
    code, out, err = run(capsys, "sql", "--list", "costs", "--format", "json")
    listed = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and {q["name"].split("/")[0] for q in listed} == {"costs"}
    top = next(q for q in listed if q["name"] == "costs/top_runs")
    assert "limit BIGINT = 5" in top["params"] and top["returns"].startswith("rank BIGINT")
    code, _, err = run(capsys, "sql", "--list", "nope")
    assert code == 1 and "areas: " in err and "costs" in err and "rollups" in err
    code, out, err = run(capsys, "sql", "-j", DEMO, "rollups/agent_token_spend", "--format", "csv")
    assert code == 0 and out.startswith("agent,runs"), err
    code, out, err = run(capsys, "sql", "-j", DEMO, "SELECT count(*) AS n FROM priced_events WHERE repriced_cost_usd > 0", "--format", "csv")
    assert code == 0 and int(out.splitlines()[1]) > 0, err


def test_make_demo_prints_costs_by_model_and_day_and_the_costliest_runs() -> None:
    out = subprocess.run(["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "journal reprice" in out and "journal rollup top-runs" in out and "--limit 5" in out
    assert sys.executable  # the real run is tests/test_readme.py::test_make_demo_builds_and_summarises
