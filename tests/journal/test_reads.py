"""Reading streams back: ordering, version ranges, compaction, and row-group pruning."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import at, ev, event_rows, parquet_on_disk, rewrite_parquet

from toolkit.engines.polars_engine import scan_events
from toolkit.errors import DataFileError, EventValidationError, InvalidPathError
from toolkit.journal import ARROW_SCHEMA, Journal, JournalConfig
from toolkit.journal.integrity import verify_journal
from toolkit.journal.maintenance import compact, vacuum

STREAMS = [f"s{i:02d}" for i in range(24)]
ROW_GROUP = 16


def _type_of(stream_id: str) -> str:
    return "agent_run" if int(stream_id[1:]) % 2 == 0 else "chat"


@pytest.fixture(scope="module")
def busy_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 streams of two types, 10 events each, over 10 commits and 2 days: 20 small files."""
    path = tmp_path_factory.mktemp("reads") / "busy"
    j = Journal.create(path, config=JournalConfig(row_group_rows=ROW_GROUP))
    for c in range(10):
        j.append_batch(
            [
                {
                    "stream_id": s,
                    "stream_type": _type_of(s),
                    **ev("step", {"c": c, "s": s}, occurred_at=at(1 + c // 5, c)),
                }
                for s in STREAMS
            ]
        )
    return path


@pytest.fixture
def busy(busy_template: Path, tmp_path: Path) -> Iterator[Journal]:
    """A private copy of the busy journal (the Delta log holds relative paths)."""
    shutil.copytree(busy_template, tmp_path / "busy")
    j = Journal.open(tmp_path / "busy")
    yield j
    j.close()


class RowGroupSpy:
    """Records every row-group read (``read_row_groups`` / ``read_row_group``): groups and their stream_id min/max."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[list[tuple[int, str, str]]] = []
        many = pq.ParquetFile.read_row_groups
        one = pq.ParquetFile.read_row_group
        spy = self

        def record(pf: pq.ParquetFile, row_groups: list[int]) -> None:
            sid = pf.schema_arrow.get_field_index("stream_id")
            stats = [pf.metadata.row_group(i).column(sid).statistics for i in row_groups]
            spy.calls.append([(i, s.min, s.max) for i, s in zip(row_groups, stats, strict=True)])

        def read_row_groups(pf: pq.ParquetFile, row_groups: list[int], *args: Any, **kwargs: Any) -> pa.Table:
            record(pf, row_groups)
            return many(pf, row_groups, *args, **kwargs)

        def read_row_group(pf: pq.ParquetFile, i: int, *args: Any, **kwargs: Any) -> pa.Table:
            record(pf, [i])
            return one(pf, i, *args, **kwargs)

        monkeypatch.setattr(pq.ParquetFile, "read_row_groups", read_row_groups)
        monkeypatch.setattr(pq.ParquetFile, "read_row_group", read_row_group)

    @property
    def groups(self) -> list[tuple[int, str, str]]:
        return [g for call in self.calls for g in call]


def _row_groups_holding(journal: Journal, stream_id: str) -> tuple[int, int]:
    """(row groups whose stream_id stats contain the stream, all row groups) in the stream's partitions."""
    holding = total = 0
    for path in journal.file_paths(stream_types=[_type_of(stream_id)]):
        md = pq.ParquetFile(path).metadata
        sid = pq.ParquetFile(path).schema_arrow.get_field_index("stream_id")
        for i in range(md.num_row_groups):
            st = md.row_group(i).column(sid).statistics
            total += 1
            holding += st.min <= stream_id <= st.max
    return holding, total


# ---------------------------------------------------------------------- read_stream


def test_read_stream_returns_only_that_stream_in_version_order(busy: Journal) -> None:
    t = busy.read_stream("s05")
    assert t.schema.names == list(ARROW_SCHEMA.names)
    assert set(t.column("stream_id").to_pylist()) == {"s05"}
    assert t.column("version").to_pylist() == list(range(1, 11))
    assert [json.loads(x)["c"] for x in t.column("data").to_pylist()] == list(range(10))
    assert set(t.column("stream_type").to_pylist()) == {"chat"}
    assert t.column("day").to_pylist() == [at(1).date()] * 5 + [at(2).date()] * 5


@pytest.mark.parametrize(
    ("from_version", "to_version", "expected"),
    [
        (None, None, list(range(1, 11))),
        (4, None, list(range(4, 11))),
        (None, 3, [1, 2, 3]),
        (3, 5, [3, 4, 5]),
        (7, 7, [7]),
        (11, None, []),
    ],
)
def test_read_stream_version_range(
    busy: Journal, from_version: int | None, to_version: int | None, expected: list[int]
) -> None:
    t = busy.read_stream("s00", ["version", "event_type"], from_version=from_version, to_version=to_version)
    assert t.column_names == ["version", "event_type"]
    assert t.column("version").to_pylist() == expected


def test_read_stream_of_an_unknown_stream_is_empty_and_typed(busy: Journal) -> None:
    t = busy.read_stream("nope", ["stream_id", "version", "day"])
    assert t.num_rows == 0
    assert t.schema == pa.schema([ARROW_SCHEMA.field(c) for c in ("stream_id", "version", "day")])


def test_read_stream_refuses_unknown_columns(busy: Journal) -> None:
    with pytest.raises(EventValidationError) as caught:
        busy.read_stream("s00", ["version", "colour"])
    assert caught.value.context["field"] == "colour"


def test_read_streams_reads_several(busy: Journal) -> None:
    t = busy.read_streams(["s03", "s00"], ["stream_id", "version"])
    assert t.to_pylist() == [{"stream_id": s, "version": v} for s in ("s00", "s03") for v in range(1, 11)]


def test_read_stream_sorts_a_data_file_whose_rows_are_out_of_version_order(tmp_path: Path) -> None:
    # deltalake 1.6.6 wrote such files for remote journals (a file held the input batches 1, 3, 5,
    # then 0, 2, 4) until appends handed it one batch: journals written then read in version order
    j = Journal.create(tmp_path / "j")
    j.append_batch([{"stream_id": s, **ev(data={"i": i}, occurred_at=at(1))} for i in range(6) for s in ("a", "b")])
    (path,) = j.file_paths()
    rewrite_parquet(path, lambda t: t.take(pa.array(range(t.num_rows - 1, -1, -1))))
    j = Journal.open(tmp_path / "j")
    assert pq.read_table(path, columns=["version"]).column(0).to_pylist()[:3] == [6, 6, 5]  # as stored
    t = j.read_stream("a", ["version", "data"])
    assert t.column("version").to_pylist() == list(range(1, 7))
    assert [json.loads(x)["i"] for x in t.column("data").to_pylist()] == list(range(6))
    assert j.read_stream("b", ["version"], from_version=4).column(0).to_pylist() == [4, 5, 6]
    assert verify_journal(j).ok


def test_read_all_with_columns_keeps_position_order(busy: Journal) -> None:
    ids = busy.read_all(["event_id"]).column("event_id").to_pylist()
    assert ids == busy.read_all(["event_id", "position"]).column("event_id").to_pylist()
    assert len(ids) == 240


def test_a_reader_sees_what_another_writer_appended_on_a_later_day(tmp_path: Path) -> None:
    reader = Journal.create(tmp_path / "j")
    reader.append("run-1", [ev(occurred_at=at(1))])
    assert reader.read_stream("run-1").num_rows == 1  # the reader knows the stream's head now
    writer = Journal.open(tmp_path / "j")
    writer.append("run-1", [ev(occurred_at=at(5))], expected_version=1)
    assert reader.read_stream("run-1", ["version", "day"]).to_pylist() == [
        {"version": 1, "day": at(1).date()},
        {"version": 2, "day": at(5).date()},
    ]
    assert reader.stream_version("run-1") == 2


def test_one_stream_read_opens_only_files_of_its_type(busy: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    busy.heads()
    opened: list[str] = []
    original = busy._footer
    monkeypatch.setattr(busy, "_footer", lambda path: (opened.append(path), original(path))[1])
    busy.read_stream("s02")
    expected = [f.path for f in busy.files(stream_types=["agent_run"])]
    assert sorted(opened) == sorted(expected) and len(expected) == 10


# ---------------------------------------------------------------------- compaction


def test_compact_keeps_the_rows_and_sorts_files_by_stream_and_version(busy: Journal) -> None:
    before = event_rows(busy)
    streams_before = {s: busy.read_stream(s).to_pylist() for s in STREAMS[::5]}
    result = compact(busy)
    assert (result.partitions, result.files_before, result.files_after, result.rows) == (4, 20, 4, 240)
    assert event_rows(busy) == before
    assert {s: busy.read_stream(s).to_pylist() for s in STREAMS[::5]} == streams_before
    for path in busy.file_paths():
        pf = pq.ParquetFile(path)
        keys = list(
            zip(
                *(pf.read(columns=["stream_id", "version"]).column(c).to_pylist() for c in ("stream_id", "version")),
                strict=True,
            )
        )
        assert keys == sorted(keys) and len(keys) == 60
        assert pf.metadata.num_row_groups == 4
        assert all(pf.metadata.row_group(i).num_rows <= ROW_GROUP for i in range(pf.metadata.num_row_groups))
    report = verify_journal(Journal.open(busy.path))
    assert report.ok and report.events == 240


def test_a_partition_larger_than_the_chunk_is_sorted_range_by_range(
    busy: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory follows ``chunk_rows``: each 60-row partition is spilled in ranges of about 25 rows of
    whole streams, and the result is the same as sorting it at once."""
    from toolkit.journal import maintenance

    before = event_rows(busy)
    streams_before = {s: busy.read_stream(s).to_pylist() for s in STREAMS}
    (busy.path / ".compact-tmp" / "7").mkdir(parents=True)  # left by a killed compaction
    spilled: list[tuple[str, str, str]] = []  # (partition, range, stream)
    write = maintenance.pq.write_table

    def spy(table: pa.Table, where: Any, **kw: Any) -> None:
        part = f"{table.column('stream_type')[0]}/{table.column('day')[0]}"
        spilled.extend((part, Path(where).parent.name, s) for s in table.column("stream_id").to_pylist())
        write(table, where, **kw)

    monkeypatch.setattr(maintenance.pq, "write_table", spy)
    monkeypatch.setattr(maintenance, "COMPACT_FILE_ROWS", 24)  # a new file once one holds 24 rows
    result = compact(busy, chunk_rows=25)
    assert (result.partitions, result.rows) == (4, 240)
    assert len(spilled) == 240  # every row went through a range
    ranges = {(p, r) for p, r, _ in spilled}
    assert len(ranges) == 4 * 3  # 12 streams x 5 events in a partition: ranges of 5, 5 and 2 streams
    assert all(len({r for p2, r, s2 in spilled if (p2, s2) == (p, s)}) == 1 for p, _, s in spilled)  # no stream split
    assert not (busy.path / ".compact-tmp").exists()
    assert event_rows(busy) == before
    fresh = Journal.open(busy.path)
    assert {s: fresh.read_stream(s).to_pylist() for s in STREAMS} == streams_before
    by_partition: dict[str, list[list[tuple[str, int]]]] = {}
    for path in sorted(fresh.file_paths()):  # part-00000, part-00001, ... in the order written
        keys = [
            (r["stream_id"], r["version"]) for r in pq.read_table(path, columns=["stream_id", "version"]).to_pylist()
        ]
        by_partition.setdefault(str(Path(path).parent), []).append(keys)
    assert len(by_partition) == 4
    for runs in by_partition.values():  # several files, one sorted run across them
        assert len(runs) > 1 and all(len(k) >= 24 for k in runs[:-1]) and sum(map(len, runs)) == 60
        joined = [k for keys in runs for k in keys]
        assert joined == sorted(joined)
    assert verify_journal(fresh).ok


def test_compact_again_has_nothing_to_do_and_full_rewrites_all(busy: Journal) -> None:
    compact(busy)
    assert (compact(busy).partitions, len(busy.files())) == (0, 4)
    again = compact(busy, full=True)
    assert (again.partitions, again.files_after, again.rows) == (4, 4, 240)
    assert verify_journal(busy).ok


def test_after_compaction_a_one_stream_read_touches_only_row_groups_holding_it(
    busy: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = RowGroupSpy(monkeypatch)
    busy.heads()  # known heads let the reader skip the other stream type's partitions
    busy.read_stream("s07")
    # before: every file of the stream's type is one row group, and each holds the stream
    assert len(spy.groups) == 10 and all(lo <= "s07" <= hi for _, lo, hi in spy.groups)

    compact(busy)
    fresh = Journal.open(busy.path)
    fresh.heads()
    spy.calls.clear()
    t = fresh.read_stream("s07", ["version"])
    assert t.column("version").to_pylist() == list(range(1, 11))
    holding, total = _row_groups_holding(fresh, "s07")
    assert (holding, total) == (len(spy.groups), 8)
    assert all(lo <= "s07" <= hi for _, lo, hi in spy.groups)
    assert len(spy.groups) <= 4  # the stream's 5 events per file span at most 2 groups in each of 2 files


def test_appends_after_compaction_continue_the_streams(busy: Journal) -> None:
    compact(busy)
    busy.append("s00", [ev("late")], expected_version=10)
    busy.append("new", [ev("first")], expected_version=0)
    assert busy.read_stream("s00", ["version"]).column("version").to_pylist() == list(range(1, 12))
    assert verify_journal(Journal.open(busy.path)).ok


def test_vacuum_after_compaction_deletes_only_replaced_files(busy: Journal) -> None:
    before = event_rows(busy)
    compact(busy)
    assert len(parquet_on_disk(busy)) == 24
    deleted = vacuum(busy, retain_hours=0, force=True)
    assert len(deleted) == 20
    assert parquet_on_disk(busy) == set(busy.file_paths())
    assert event_rows(busy) == before
    assert verify_journal(busy).ok


def test_vacuum_refuses_a_negative_retention(busy: Journal) -> None:
    with pytest.raises(InvalidPathError, match="no retention period"):
        vacuum(busy, retain_hours=-5, force=True)


def test_warm_reads_reuse_decoded_row_groups_within_a_byte_bound(
    busy: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    compact(busy)
    j = Journal.open(busy.path)
    first = j.read_stream("s07")
    spy = RowGroupSpy(monkeypatch)
    assert j.read_stream("s07").equals(first)
    assert spy.calls == []  # served from the decoded row groups
    j.row_group_cache_bytes = 1  # the bound evicts all but the newest group
    j.read_stream("s03")
    assert len(j._rg_cache) == 1
    assert j.read_stream("s07").equals(first)


def test_a_data_file_cut_short_or_damaged_inside_is_a_data_file_error_naming_it(tmp_path: Path) -> None:
    """pyarrow's errors named no file ("Parquet magic bytes not found", "Couldn't deserialize
    thrift"), and a Polars scan over a cut-off file failed only when collected, with a ComputeError
    naming none."""
    j = Journal.create(tmp_path / "j")
    j.append("r", [ev("custom", {"text": "x" * 2000}) for _ in range(50)])
    (path,) = j.file_paths()
    whole = Path(path).read_bytes()
    Path(path).write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataFileError, match="cut short") as cut:
        scan_events(Journal.open(j.path))  # before any collect
    assert cut.value.context["path"] == path and "journal verify" in str(cut.value)
    with pytest.raises(DataFileError, match="cut short"):
        Journal.open(j.path).read_stream("r")
    footer_at = len(whole) - 8 - int.from_bytes(whole[-8:-4], "little")
    garbled = whole[:4] + b"\xab" * (footer_at - 4) + whole[footer_at:]  # every page garbled, the footer whole
    Path(path).write_bytes(garbled)
    with pytest.raises(DataFileError, match="damaged") as inside:
        Journal.open(j.path).read_stream("r")
    assert inside.value.context["path"] == path
    report = verify_journal(Journal.open(j.path))
    assert [(b.check, b.stream_id) for b in report.breaks or []] == [("unreadable_file", path)]
