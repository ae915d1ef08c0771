"""Rollups: DuckDB (queries/rollups/usage.sql) against an independent Polars computation; seed metrics; top runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from cost_fixtures import build_chat_outcomes, build_goals_and_ticks
from helpers import build_budget_breach, build_tool_failure_loop
from hypothesis import given
from hypothesis import strategies as st

from toolkit.analysis.rollup import (
    DIMENSIONS,
    agent_token_spend,
    error_frequency,
    goal_completion,
    parse_dimensions,
    rollup,
    rollup_metric,
    tick_duration,
    tool_usage,
    top_runs,
)
from toolkit.engines.polars_engine import scan_events
from toolkit.errors import QueryError
from toolkit.ingest.demo import generate_demo
from toolkit.journal import Journal

UTC = dt.UTC
NANO = Decimal("0.000000001")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    """60 demo runs over two weeks, plus the hand-made runs (failure loop, budget breach, goals, chat outcomes)."""
    j = Journal.create(tmp_path_factory.mktemp("rollup") / "j")
    for table in generate_demo(runs=60, seed=3):
        j.append_batch(table)
    build_tool_failure_loop(j)
    build_budget_breach(j)
    build_goals_and_ticks(j)
    build_chat_outcomes(j)
    yield j
    j.close()


# ---------------------------------------------------------------------- the Polars reference


def polars_usage(journal: Journal, dims: list[str], since: dt.datetime | None, until: dt.datetime | None) -> list[dict[str, Any]]:
    """The usage rollup computed independently with Polars, recorded cost."""
    lf = scan_events(journal, since=since, until=until)
    keys = {
        "model": pl.col("model").fill_null("(none)"),
        "tool": pl.col("tool_name").fill_null("(none)"),
        "stream": pl.col("stream_id"),
        "stream_type": pl.col("stream_type"),
        "day": pl.col("day"),
        "week": pl.col("day").dt.truncate("1w"),
        "correlation": pl.col("correlation_id").fill_null("(none)"),
        "agent": pl.col("agent").fill_null("(none)"),
    }
    names = [DIMENSIONS[d] for d in dims]
    first = lf.filter(pl.col("version") == 1).select(
        pl.col("stream_id").alias("run_id"),
        pl.coalesce(
            pl.col("metadata").str.json_path_match("$.outcome"), pl.col("metadata").str.json_path_match("$.run.outcome")
        ).str.to_lowercase().alias("outcome"),
    )
    per_run = (
        lf.with_columns([keys[d].alias(DIMENSIONS[d]) for d in dims])
        .group_by([*names, pl.col("stream_id").alias("run_id")])
        .agg(
            pl.len().alias("events"),
            (pl.col("event_type") == "llm_response").sum().alias("llm_calls"),
            (pl.col("event_type") == "tool_called").sum().alias("tool_calls"),
            pl.col("is_error").sum().alias("errors"),
            *(pl.col(c).sum().alias(c) for c in ("tokens_in", "tokens_out", "tokens_cache_read", "tokens_cache_write", "tokens_reasoning")),
            pl.col("cost_usd").sum().alias("cost_usd"),
        )
        .join(first, on="run_id", how="left")
        .with_columns(pl.col("outcome").is_in(["success", "succeeded", "completed", "resolved", "passed", "ok"]).alias("ok"))
    )
    out = (
        per_run.group_by(names)
        .agg(
            pl.len().alias("runs"),
            *(pl.col(c).sum() for c in ("events", "llm_calls", "tool_calls", "errors", "tokens_in", "tokens_out", "tokens_cache_read", "tokens_cache_write", "tokens_reasoning")),
            pl.col("cost_usd").sum(),
            pl.col("cost_usd").cast(pl.Float64).quantile(0.5, "linear").alias("cost_per_run_p50"),
            pl.col("cost_usd").cast(pl.Float64).quantile(0.9, "linear").alias("cost_per_run_p90"),
            pl.col("outcome").is_not_null().sum().alias("runs_with_outcome"),
            pl.col("ok").fill_null(False).sum().alias("successful_runs"),
        )
        .sort(names)
        .collect()
    )
    return out.to_dicts()


COMPARED = [
    "runs", "events", "llm_calls", "tool_calls", "errors", "tokens_in", "tokens_out", "tokens_cache_read",
    "tokens_cache_write", "tokens_reasoning", "cost_usd", "runs_with_outcome", "successful_runs",
]  # fmt: skip


def assert_same(duck: list[dict[str, Any]], ref: list[dict[str, Any]], names: list[str]) -> None:
    assert len(duck) == len(ref)
    key = lambda r: tuple(str(r[n]) for n in names)  # noqa: E731
    for d, p in zip(sorted(duck, key=key), sorted(ref, key=key), strict=True):
        assert [d[n] for n in names] == [p[n] for n in names]
        for c in COMPARED:
            assert (d[c] or 0) == (p[c] or 0), (c, d, p)
        for c in ("cost_per_run_p50", "cost_per_run_p90"):
            assert abs(float(d[c]) - p[c]) <= 2e-9, (c, d[c], p[c])  # DuckDB keeps 9 decimals


@pytest.mark.parametrize(
    "dims",
    [["model", "day"], ["model"], ["tool"], ["stream"], ["stream_type"], ["week"], ["correlation"], ["agent"], ["agent", "week", "model"]],
)
def test_duckdb_rollup_equals_the_polars_computation(fleet: Journal, dims: list[str]) -> None:
    duck = rollup(fleet, dims)
    assert duck.column_names[: len(dims)] == [DIMENSIONS[d] for d in dims]
    assert_same(duck.to_pylist(), polars_usage(fleet, dims, None, None), [DIMENSIONS[d] for d in dims])


@given(
    dims=st.lists(st.sampled_from(sorted(DIMENSIONS)), min_size=1, max_size=3, unique=True),
    since_day=st.integers(0, 20),
    span=st.integers(1, 20),
)
def test_any_grouping_and_window_agrees_with_polars(fleet: Journal, dims: list[str], since_day: int, span: int) -> None:
    since = dt.datetime(2026, 9, 28, tzinfo=UTC) + dt.timedelta(days=since_day, hours=7)
    until = since + dt.timedelta(days=span)
    duck = rollup(fleet, dims, since=since, until=until).to_pylist()
    assert_same(duck, polars_usage(fleet, dims, since, until), [DIMENSIONS[d] for d in dims])


def test_a_run_in_several_groups_counts_once_in_each(fleet: Journal) -> None:
    by_model = rollup(fleet, ["model"]).to_pylist()
    every = rollup(fleet, ["stream_type"]).to_pylist()
    assert sum(r["events"] for r in by_model) == sum(r["events"] for r in every)
    assert sum(r["cost_usd"] for r in by_model) == sum(r["cost_usd"] for r in every)
    assert sum(r["runs"] for r in every) == len({r["stream_id"] for r in rollup(fleet, ["stream"]).to_pylist()})


def test_cost_per_successful_run_uses_runs_with_an_outcome(fleet: Journal) -> None:
    rows = {r["stream_type"]: r for r in rollup(fleet, ["stream_type"]).to_pylist()}
    chat = rows["chat_run"]
    assert (chat["runs"], chat["runs_with_outcome"], chat["successful_runs"]) == (2, 2, 1)
    assert chat["cost_per_successful_run"] == Decimal("0.001")
    assert rows["agent_run"]["cost_per_successful_run"] is None  # no outcome recorded: no figure, not 0
    repriced = {r["stream_type"]: r for r in rollup(fleet, ["stream_type"], cost="repriced").to_pylist()}
    # the solved run: 2000 in, 100 out of gpt-4o-mini at 0.15 / 0.60 per 1M
    assert repriced["chat_run"]["cost_per_successful_run"] == (2000 * Decimal("0.15") + 100 * Decimal("0.60")) / 1_000_000


def test_top_runs_are_the_costliest_streams_in_order(fleet: Journal) -> None:
    top = top_runs(fleet, 5).to_pylist()
    per_stream = sorted(rollup(fleet, ["stream"]).to_pylist(), key=lambda r: (-r["cost_usd"], r["stream_id"]))
    assert [r["stream_id"] for r in top] == [r["stream_id"] for r in per_stream[:5]]
    assert [r["rank"] for r in top] == [1, 2, 3, 4, 5]
    assert [r["cost_usd"] for r in top] == [r["cost_usd"] for r in per_stream[:5]]
    outcomes = {r["stream_id"]: r["outcome"] for r in top_runs(fleet, 1000).to_pylist()}
    assert outcomes["chat-solved"] == "success" and outcomes["budget_breach"] is None
    with pytest.raises(QueryError):
        top_runs(fleet, 0)


def test_seed_metrics(fleet: Journal) -> None:
    goals = {r["agent"]: r for r in goal_completion(fleet).to_pylist()}
    assert (goals["guide"]["goals_created"], goals["guide"]["goals_completed"], goals["guide"]["completion_rate"]) == (2, 1, 0.5)
    ticks = {r["agent"]: r for r in tick_duration(fleet).to_pylist()}
    assert (ticks["guide"]["ticks"], ticks["guide"]["avg_duration_ms"], ticks["guide"]["tokens_in_per_tick"]) == (2, 2000.0, 1600.0)
    tools = {r["tool"]: r for r in tool_usage(fleet).to_pylist()}
    shell = tools["shell"]
    assert (shell["calls"], shell["failures"], shell["runs"], shell["repeated_calls"]) == (3, 3, 1, 2)
    errors = error_frequency(fleet, since="2026-03-02", until="2026-03-03").to_pylist()
    assert sum(r["errors"] for r in errors) == 3 and {r["top_error"] for r in errors if r["errors"]} == {"connection refused"}
    spend = {r["agent"]: r for r in agent_token_spend(fleet).to_pylist()}
    demo = scan_events(fleet).filter(pl.col("agent") == "flight-booker").select(pl.col("tokens_in").sum()).collect().item()
    assert spend["flight-booker"]["tokens_in"] == demo and spend["summariser"]["cost_usd"] == Decimal("3.25")


def test_since_and_until_are_half_open_and_take_dates(fleet: Journal) -> None:
    day = rollup(fleet, ["day"], since="2026-03-02", until=dt.date(2026, 3, 3)).to_pylist()
    assert [r["day"] for r in day] == [dt.date(2026, 3, 2)]


def test_bad_dimensions_and_metrics_are_refused() -> None:
    assert parse_dimensions("model, day") == ["model", "day"]
    with pytest.raises(QueryError, match="cannot group by 'colour'"):
        parse_dimensions(["model", "colour"])
    with pytest.raises(QueryError, match="no dimension"):
        parse_dimensions([","])


def test_rollup_metric_notes_unpriced_events(journal: Journal, tmp_path: Path) -> None:
    journal.append("r", [{"event_type": "llm_response", "data": {}, "model": "nobody-knows", "tokens_in": 5}])
    table, note = rollup_metric(journal, "usage", by=["model"], cost="repriced")
    assert table.column("unpriced_events").to_pylist() == [1]
    assert note is not None and "journal reprice --unpriced" in note
    _, recorded = rollup_metric(journal, "usage", by=["model"])
    assert recorded is not None and "no recorded cost" in recorded
    with pytest.raises(QueryError, match="no rollup"):
        rollup_metric(journal, "colours")


@pytest.mark.parametrize("dims", [["model", "day"], ["tool"], ["agent", "week"], ["stream"]])
def test_totals_are_the_one_pass_part_of_usage(fleet: Journal, dims: list[str]) -> None:
    from toolkit.analysis.rollup import rollup_totals

    totals = rollup_totals(fleet, dims, cost="repriced")
    usage = rollup(fleet, dims, cost="repriced").select(totals.column_names)
    assert totals.to_pylist() == usage.to_pylist()
    assert totals.num_rows == len(polars_usage(fleet, dims, None, None))
