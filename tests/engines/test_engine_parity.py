"""Polars scans and the DuckDB ``events`` view return the same rows with the canonical types, in any TZ."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from helpers import TRACEPARENT, at, build_budget_breach, build_tool_failure_loop, ev, run

from toolkit.engines.duckdb_engine import connect
from toolkit.engines.polars_engine import scan_events
from toolkit.journal import ARROW_SCHEMA, POLARS_SCHEMA, Journal

UTC = dt.UTC


def _fill(journal: Journal) -> None:
    """Every column type non-null somewhere; events near midnight in several offsets; two stream types."""
    build_tool_failure_loop(journal)
    build_budget_breach(journal)
    journal.append(
        "everything",
        [
            ev(
                "llm_response",
                {"nested": [1, {"a": None}], "text": "héllo"},
                source_type="gen_ai.response",
                occurred_at="2026-03-04T00:30:00+01:00",  # 23:30 UTC the day before
                correlation_id="corr-1",
                causation_id="cause-1",
                traceparent=TRACEPARENT,
                model="m",
                tool_name="t",
                tokens_in=1,
                tokens_out=2,
                tokens_cache_read=3,
                tokens_cache_write=4,
                tokens_reasoning=5,
                cost_usd="0.000000001",
                duration_ms=0.25,
                is_error=True,
                error="boom",
                metadata={"k": "v"},
                agent="agent-x",
                subject_id="user-1",
                tool_call_id="call-x",
                idempotency_key="idem-1",
                source="test:1",
            ),
            ev("custom", None, occurred_at="2026-03-04T19:30:00-05:00"),  # 00:30 UTC the day after
        ],
        stream_type="misc",
    )


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    j = Journal.create(tmp_path_factory.mktemp("parity") / "j")
    _fill(j)
    yield j
    j.close()


def _duck(journal: Journal, sql: str = "SELECT * FROM events") -> pa.Table:
    s = connect(journal)
    try:
        return s.query(sql)
    finally:
        s.close()


def _no_nulls_flag(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    return [(f.name, f.type) for f in schema]


def test_polars_scan_has_the_canonical_schema(mixed: Journal) -> None:
    lf = scan_events(mixed)
    assert lf.collect_schema() == POLARS_SCHEMA
    assert lf.collect().schema == POLARS_SCHEMA


def test_duckdb_events_view_has_the_canonical_types_without_casts(mixed: Journal) -> None:
    assert _no_nulls_flag(_duck(mixed).schema) == _no_nulls_flag(ARROW_SCHEMA)


def test_empty_journal_has_the_canonical_types_in_both_engines(journal: Journal) -> None:
    assert scan_events(journal).collect().schema == POLARS_SCHEMA
    assert _no_nulls_flag(_duck(journal).schema) == _no_nulls_flag(ARROW_SCHEMA)


def test_polars_duckdb_and_the_store_return_the_same_rows(mixed: Journal) -> None:
    polars = scan_events(mixed).collect().sort("position")
    duck = pl.from_arrow(_duck(mixed)).sort("position")  # type: ignore[union-attr]
    store = pl.from_arrow(mixed.read_all())
    assert polars.height == 17
    assert polars.equals(duck) and polars.equals(store)  # type: ignore[arg-type]
    assert polars.schema == duck.schema == store.schema == POLARS_SCHEMA
    everything = polars.filter(pl.col("stream_id") == "everything").row(0, named=True)
    assert all(v is not None for v in everything.values())


@pytest.mark.parametrize(
    ("filters", "sql_where"),
    [
        ({"stream_ids": ["budget_breach"]}, "stream_id = 'budget_breach'"),
        ({"stream_types": ["misc"]}, "stream_type = 'misc'"),
        ({"event_types": ["llm_response", "tool_result"]}, "event_type IN ('llm_response', 'tool_result')"),
        (
            {"since": at(4, 0), "until": at(4, 12)},
            "occurred_at >= TIMESTAMPTZ '2026-03-04 00:00:00+00' "
            "AND occurred_at < TIMESTAMPTZ '2026-03-04 12:00:00+00'",
        ),
        (
            {"since": dt.datetime(2026, 3, 3, 19, tzinfo=dt.timezone(dt.timedelta(hours=-5)))},
            "occurred_at >= TIMESTAMPTZ '2026-03-04 00:00:00+00'",
        ),
    ],
)
def test_polars_filters_match_duckdb(mixed: Journal, filters: dict[str, object], sql_where: str) -> None:
    polars = scan_events(mixed, **filters).collect().sort("position")  # type: ignore[arg-type]
    duck = pl.from_arrow(_duck(mixed, f"SELECT * FROM events WHERE {sql_where} ORDER BY position"))
    assert polars.height > 0
    assert polars.equals(duck)  # type: ignore[arg-type]


def test_day_is_the_utc_date_in_every_engine(mixed: Journal) -> None:
    polars = scan_events(mixed).select("stream_id", "version", "occurred_at", "day").collect()
    assert all(d == o.astimezone(UTC).date() for _, _, o, d in polars.rows())
    near_midnight = {(s, v): d for s, v, _, d in polars.rows() if s in ("everything", "budget_breach")}
    assert near_midnight == {
        ("budget_breach", 1): dt.date(2026, 3, 4),
        ("budget_breach", 2): dt.date(2026, 3, 4),
        ("everything", 1): dt.date(2026, 3, 3),
        ("everything", 2): dt.date(2026, 3, 5),
    }


def test_appending_and_reading_under_a_non_utc_tz_keeps_utc_days(tmp_path: Path, new_york_tz: str) -> None:
    assert time.localtime(time.mktime((2026, 3, 3, 12, 0, 0, 0, 0, -1))).tm_gmtoff == -5 * 3600
    j = Journal.create(tmp_path / "j")
    _fill(j)
    t = j.read_all(["occurred_at", "day"]).to_pylist()
    assert all(r["day"] == r["occurred_at"].astimezone(UTC).date() for r in t)
    lf = scan_events(j).select(
        "day",
        pl.col("occurred_at").dt.date().alias("date"),
        pl.col("occurred_at").dt.truncate("1d").dt.date().alias("trunc"),
    )
    assert all(day == date == trunc for day, date, trunc in lf.collect().rows())
    duck = _duck(
        j, "SELECT day, CAST(occurred_at AS DATE) AS d, CAST(date_trunc('day', occurred_at) AS DATE) AS b FROM events"
    ).to_pylist()
    assert all(r["day"] == r["d"] == r["b"] for r in duck)
    assert scan_events(j).collect().sort("position").equals(pl.from_arrow(_duck(j)).sort("position"))  # type: ignore[union-attr]


def test_duckdb_daily_buckets_are_utc_in_a_process_whose_tz_is_new_york(mixed: Journal) -> None:
    report = json.loads(run("tz_report", mixed.path, env={"TZ": "America/New_York"}))
    # the process really runs in New York time: Python and an unconfigured DuckDB say so
    assert report["python_local_offset"] == -5 * 3600
    assert report["machine_tz"] == "America/New_York"
    utc_days = [r["day"] for r in report["duck"]]
    assert report["raw_days"] != utc_days  # an unpinned session shifts events near midnight
    # the toolkit's session is pinned to UTC: its casts and truncations agree with `day`
    assert {r["tz"] for r in report["duck"]} == {"UTC"}
    assert all(r["day"] == r["cast_day"] == r["trunc_day"] for r in report["duck"])
    assert all(day == date == trunc for _, day, date, trunc in report["polars"])
    assert [r[1] for r in report["polars"]] == utc_days
    expected = {}
    for day in utc_days:
        expected[day] = expected.get(day, 0) + 1
    assert {r["day"]: int(r["n"]) for r in report["daily"]} == expected
    assert "2026-03-05" in expected and "2026-03-03" in expected
