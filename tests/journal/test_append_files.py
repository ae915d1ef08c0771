"""Appends write Parquet with pyarrow and commit add actions: layout, row groups, Delta statistics.

The statistics in the Delta log decide which files readers skip, so they must bound every value
of their file; these tests check them against the files' own rows, and check that deltalake,
Polars and the store read back exactly what was appended.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from helpers import ev

from toolkit.journal import Journal, JournalConfig
from toolkit.journal.integrity import verify_journal
from toolkit.journal.maintenance import compact
from toolkit.journal.store import STATS_COLUMNS

UTC = dt.UTC


def _events(n: int, seed: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    t0 = dt.datetime(2026, 10, 1, 23, 59, 0, 123456, tzinfo=UTC)
    out = []
    for i in range(n):
        k = rnd.randrange(40)
        out.append(
            {
                "stream_id": f"run-{k:03d}",
                "stream_type": "agent_run" if k % 3 else "session",
                "event_type": rnd.choice(["llm_response", "tool_called", "tool_result"]),
                "occurred_at": t0 + dt.timedelta(seconds=rnd.randrange(3 * 86400), microseconds=rnd.randrange(999_999)),
                "model": rnd.choice([None, "gpt-4o", "claude-sonnet-4"]),
                "tokens_in": rnd.choice([None, rnd.randrange(10_000)]),
                "cost_usd": rnd.choice([None, Decimal(rnd.randrange(10**6)) / 10**9]),
                "duration_ms": rnd.choice([None, rnd.random() * 1000]),
                "data": {"i": i},
            }
        )
    return out


def _add_actions(journal: Journal) -> list[dict[str, Any]]:
    return list(pa.table(DeltaTable(journal.events_uri).get_add_actions(flatten=True)).to_pylist())


@pytest.fixture
def small_groups(tmp_path: Path) -> Journal:
    return Journal.create(tmp_path / "j", config=JournalConfig(row_group_rows=50))


def test_files_are_hive_partitioned_and_read_back_exactly(small_groups: Journal) -> None:
    events = _events(900, seed=1)
    small_groups.append_batch(events)
    small_groups.append_batch(_events(300, seed=2))
    actions = _add_actions(small_groups)
    for a in actions:
        st, day = a["partition.stream_type"], a["partition.day"]
        assert a["path"].startswith(f"stream_type={st}/day={day.isoformat()}/part-")
        assert (Path(small_groups.events_uri) / a["path"]).stat().st_size == a["size_bytes"]
    assert sum(a["num_records"] for a in actions) == 1200
    polars_rows = pl.scan_delta(small_groups.events_uri).select("event_id", "version", "hash").collect()
    store_rows = pl.from_arrow(small_groups.read_all(["event_id", "version", "hash"]))
    assert isinstance(store_rows, pl.DataFrame)
    assert polars_rows.sort("event_id").equals(store_rows.sort("event_id"))
    assert verify_journal(small_groups).ok


def test_row_groups_are_full_except_the_last_of_a_file(small_groups: Journal) -> None:
    small_groups.append_batch(_events(2000, seed=3))
    for a in _add_actions(small_groups):
        md = pq.ParquetFile(Path(small_groups.events_uri) / a["path"]).metadata
        sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        assert all(s == 50 for s in sizes[:-1]) and 0 < sizes[-1] <= 50
        assert md.num_rows == a["num_records"]
        assert "stream_type" not in md.schema.names and "day" not in md.schema.names


def test_log_statistics_bound_every_value_of_their_file(small_groups: Journal) -> None:
    small_groups.append_batch(_events(1500, seed=4))
    log = "".join(p.read_text() for p in sorted((Path(small_groups.events_uri) / "_delta_log").glob("*.json")))
    raw_stats = [json.loads(json.loads(line)["add"]["stats"]) for line in log.splitlines() if '"add"' in line]
    assert raw_stats and all(set(s["nullCount"]) == set(STATS_COLUMNS) for s in raw_stats)
    assert all(s["minValues"]["occurred_at"].endswith("Z") for s in raw_stats)
    for a in _add_actions(small_groups):
        rows = pq.read_table(Path(small_groups.events_uri) / a["path"])
        assert rows.num_rows == a["num_records"]
        for c in STATS_COLUMNS:
            col = rows.column(c)
            assert a[f"null_count.{c}"] == col.null_count, c
            values = [v for v in col.to_pylist() if v is not None]
            lo, hi = a.get(f"min.{c}"), a.get(f"max.{c}")
            if not values or c == "cost_usd":  # decimals carry only their null count
                assert lo is None and hi is None, c
                continue
            assert lo is not None and hi is not None, c
            assert lo <= min(values) and max(values) <= hi, c
            if isinstance(lo, dt.datetime):  # millisecond precision, rounded outwards
                assert min(values) - lo < dt.timedelta(milliseconds=1)
                assert hi - max(values) < dt.timedelta(milliseconds=1)
            else:
                assert (lo, hi) == (min(values), max(values)), c


def test_readers_prune_with_the_statistics_and_still_find_every_row(small_groups: Journal) -> None:
    events = _events(1200, seed=5)
    small_groups.append_batch(events)
    # a bound between the millisecond a maximum was rounded to and the value itself
    rows = pl.from_arrow(small_groups.read_all(["occurred_at", "stream_id"]))
    assert isinstance(rows, pl.DataFrame)
    cut = rows.get_column("occurred_at").max()
    assert isinstance(cut, dt.datetime)
    found = pl.scan_delta(small_groups.events_uri).filter(pl.col("occurred_at") >= cut).collect()
    assert found.height == 1
    for sid in ("run-000", "run-017", "run-039"):
        expected = sum(1 for e in events if e["stream_id"] == sid)
        assert small_groups.read_stream(sid).num_rows == expected
        assert len(small_groups.files(stream_ids=[sid])) <= len(small_groups.files())


def test_a_failed_append_leaves_no_parquet_files_behind(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    from toolkit.journal import appendfiles

    journal.append("a", [ev()])
    before = sorted(Path(journal.events_uri).rglob("*.parquet"))

    def broken_close(self: appendfiles.AppendFiles) -> list[Any]:
        raise OSError("disk full")

    monkeypatch.setattr(appendfiles.AppendFiles, "close", broken_close)
    with pytest.raises(OSError, match="disk full"):
        journal.append_batch([{"stream_id": f"s{i}", **ev("step", {"i": i})} for i in range(30)])
    monkeypatch.undo()
    assert sorted(Path(journal.events_uri).rglob("*.parquet")) == before
    assert journal.append("s0", [ev()], expected_version=0).appended == 1


def _codecs(journal: Journal) -> dict[str, set[str]]:
    """Each column's compression codecs over every row group of every file of the journal."""
    out: dict[str, set[str]] = {}
    for a in _add_actions(journal):
        md = pq.ParquetFile(Path(journal.events_uri) / a["path"]).metadata
        for g in range(md.num_row_groups):
            for c in range(md.num_columns):
                col = md.row_group(g).column(c)
                out.setdefault(col.path_in_schema, set()).add(col.compression)
    return out


def test_append_files_keep_hex_digests_plain_and_compaction_compresses_everything(small_groups: Journal) -> None:
    small_groups.append_batch(_events(600, seed=6))
    small_groups.append_batch(_events(300, seed=7))
    codecs = _codecs(small_groups)
    assert codecs["hash"] == codecs["prev_hash"] == codecs["payload_sha256"] == {"UNCOMPRESSED"}
    assert codecs["data"] == codecs["event_id"] == codecs["stream_id"] == {"SNAPPY"}
    compact(small_groups, full=True)
    assert set().union(*_codecs(small_groups).values()) == {"ZSTD"}
    assert verify_journal(small_groups).ok
