"""A journal of an older minor schema (fewer nullable columns) reads, verifies and grows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake
from helpers import ev

from toolkit.engines import duckdb_engine
from toolkit.engines.polars_engine import scan_events
from toolkit.journal import ARROW_SCHEMA, Journal
from toolkit.journal.integrity import verify_journal

NEWER = ("subject_id", "idempotency_key")  # pretend these arrived in a later minor version


def make_old_journal(tmp_path: Path) -> Journal:
    donor = Journal.create(tmp_path / "donor")
    donor.append("run-1", [ev("user_message", {"i": i}) for i in range(3)])
    donor.append("run-2", [ev("tool_called", {"i": i}, tool_name="search") for i in range(2)])
    rows = donor.read_all().drop_columns(list(NEWER))
    old = Journal.create(tmp_path / "old")
    shutil.rmtree(old.path / "events")
    schema = pa.schema([f for f in ARROW_SCHEMA if f.name not in NEWER])
    DeltaTable.create(str(old.path / "events"), schema, partition_by=["stream_type", "day"])
    write_deltalake(str(old.path / "events"), rows.cast(schema), mode="append", partition_by=["stream_type", "day"])
    return Journal.open(old.path)


def test_older_journal_reads_newer_columns_as_nulls_everywhere(tmp_path: Path) -> None:
    j = make_old_journal(tmp_path)
    assert not set(NEWER) & set(j.table_columns())
    stream = j.read_stream("run-1")
    assert stream.schema == ARROW_SCHEMA.remove_metadata() or stream.column_names == ARROW_SCHEMA.names
    assert stream.column("idempotency_key").null_count == 3
    frame = scan_events(j).collect()
    assert frame.columns == ARROW_SCHEMA.names and frame.get_column("subject_id").null_count() == 5
    session = duckdb_engine.connect(j)
    out = session.query("SELECT count(*) AS n, count(idempotency_key) AS k FROM events").to_pylist()
    session.close()
    assert out == [{"n": 5, "k": 0}]
    assert verify_journal(j).ok  # hashes of rows written before the columns existed still verify


def test_appending_to_an_older_journal_adds_the_columns(tmp_path: Path) -> None:
    j = make_old_journal(tmp_path)
    j.append("run-1", [ev("tool_called", {"x": 1}, tool_name="book", idempotency_key="idem-1", subject_id="u-1")])
    assert set(NEWER) <= set(Journal.open(j.path).table_columns())
    session = duckdb_engine.connect(j)
    keys = session.query("SELECT version, idempotency_key FROM events WHERE stream_id = 'run-1' ORDER BY 1").to_pylist()
    session.close()
    assert [k["idempotency_key"] for k in keys] == [None, None, None, "idem-1"]
    frame = scan_events(j, stream_ids=["run-1"]).sort("version").collect()
    assert frame.get_column("subject_id").to_list() == [None, None, None, "u-1"]
    assert j.read_stream("run-1").column("idempotency_key").to_pylist() == [None, None, None, "idem-1"]
    assert verify_journal(j).ok


def test_the_append_that_grows_the_schema_writes_its_rows_in_position_order(tmp_path: Path) -> None:
    # it goes through deltalake's writer, which put a file's rows out of order when handed several
    # batches (an Arrow table of several chunks, as importers pass)
    j = make_old_journal(tmp_path)
    before = set(j.file_paths())
    rows = [{"stream_id": f"g{i % 6}", **ev("tool_called", {"i": i}, subject_id="u-1")} for i in range(600)]
    table = pa.concat_tables(
        pa.Table.from_pylist([{**r, "data": json.dumps(r["data"])} for r in rows[lo : lo + 30]])
        for lo in range(0, 600, 30)
    )
    j.append_batch(table)
    (new,) = set(Journal.open(j.path).file_paths()) - before
    positions = pq.read_table(new, columns=["position"]).column(0).to_pylist()
    assert positions == sorted(positions) and len(positions) == 600
    assert j.read_stream("g0", ["version"]).column(0).to_pylist() == list(range(1, 101))
    assert verify_journal(j).ok
