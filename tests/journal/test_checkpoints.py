"""Checkpoints: chain heads kept outside the journal name what verify alone cannot see.

Tamper cases: edit one byte (of a value, and of the raw file), drop one event (inside a stream
and at its end), reorder two events, and a consistent rewrite of a whole stream whose hashes
were recomputed by the forger.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import drop_row, ev, locate, rewrite_parquet, set_cell

from toolkit.errors import CheckpointError
from toolkit.journal import Journal, hashing
from toolkit.journal.checkpoints import check_checkpoint, write_checkpoint
from toolkit.journal.integrity import Break, verify_journal
from toolkit.journal.schema import GENESIS_HASH

KEY = b"k" * 32


@pytest.fixture
def runs(journal: Journal) -> Journal:
    for s in ("a", "b"):
        journal.append(s, [ev("tool_called", {"n": n, "text": f"call {n}"}, tool_name="shell") for n in range(1, 6)])
    return journal


def _all_breaks(journal: Journal, cp: Path) -> list[Break]:
    fresh = Journal.open(journal.path)
    report = verify_journal(fresh)
    return [*(report.breaks or []), *check_checkpoint(fresh, cp, key=KEY)]


def _cp(journal: Journal, tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "heads.json"
    write_checkpoint(journal, path, key=KEY)
    return path


def test_untouched_journal_passes_and_growth_is_fine(runs: Journal, tmp_path: Path) -> None:
    cp = _cp(runs, tmp_path)
    runs.append("a", [ev("custom")])
    runs.append("c", [ev("custom")])
    assert _all_breaks(runs, cp) == []


def test_edit_one_byte_of_a_value_is_named(runs: Journal, tmp_path: Path) -> None:
    cp = _cp(runs, tmp_path)
    path, row = locate(runs, "a", 3)
    rewrite_parquet(path, lambda t: set_cell(t, "data", row, t.column("data")[row].as_py().replace("call 3", "call 4")))
    breaks = _all_breaks(runs, cp)
    assert [(b.stream_id, b.version, b.check) for b in breaks if b.check == "payload"] == [("a", 3, "payload")]


@pytest.mark.parametrize("offset", [0.3, 0.5, 0.8])
def test_edit_one_raw_byte_of_a_file_is_named(runs: Journal, tmp_path: Path, offset: float) -> None:
    """A byte flipped inside the data column's pages: the event (or the file) is named."""
    cp = _cp(runs, tmp_path)
    path, _ = locate(runs, "b", 2)
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    chunk = meta.row_group(0).column(names.index("data"))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    raw = bytearray(Path(path).read_bytes())
    i = start + int(chunk.total_compressed_size * offset)
    raw[i] ^= 0x01
    Path(path).write_bytes(bytes(raw))
    breaks = _all_breaks(runs, cp)
    assert breaks, "a flipped byte must not pass"
    assert {b.stream_id for b in breaks} <= {"a", "b", path}
    assert all(b.check in ("payload", "unreadable_file") for b in breaks), breaks


def test_drop_one_event_inside_a_stream_is_named(runs: Journal, tmp_path: Path) -> None:
    cp = _cp(runs, tmp_path)
    path, row = locate(runs, "a", 2)
    rewrite_parquet(path, lambda t: drop_row(t, row))
    breaks = _all_breaks(runs, cp)
    assert ("a", 3, "version") in [(b.stream_id, b.version, b.check) for b in breaks]


def test_drop_the_last_event_only_the_checkpoint_sees(runs: Journal, tmp_path: Path) -> None:
    cp = _cp(runs, tmp_path)
    path, row = locate(runs, "b", 5)
    rewrite_parquet(path, lambda t: drop_row(t, row))
    assert verify_journal(Journal.open(runs.path)).ok  # consistent: verify alone is blind here
    breaks = check_checkpoint(Journal.open(runs.path), cp, key=KEY)
    assert [(b.stream_id, b.version, b.check) for b in breaks] == [("b", 5, "checkpoint_truncated")]


def test_reorder_two_events_is_named(runs: Journal, tmp_path: Path) -> None:
    cp = _cp(runs, tmp_path)
    path, row2 = locate(runs, "a", 2)
    _, row3 = locate(runs, "a", 3)

    def swap(t: pa.Table) -> pa.Table:
        t = set_cell(t, "version", row2, 3)
        return set_cell(t, "version", row3, 2)

    rewrite_parquet(path, swap)
    breaks = _all_breaks(runs, cp)
    named = [(b.stream_id, b.version, b.check) for b in breaks]
    assert ("a", 2, "prev_hash") in named or ("a", 2, "hash") in named, named
    assert ("a", 5, "checkpoint_hash") not in named  # the head is unchanged; the break is where it happened


def test_consistent_rewrite_only_the_checkpoint_sees(runs: Journal, tmp_path: Path) -> None:
    """The forger changes an event and recomputes every digest and hash of the stream."""
    cp = _cp(runs, tmp_path)
    path, row = locate(runs, "a", 1)

    envelopes = hashing.envelope_texts(runs.read_stream("a")).to_pylist()  # data is not in the envelope

    def forge(t: pa.Table) -> pa.Table:
        rows = [i for i, s in enumerate(t.column("stream_id").to_pylist()) if s == "a"]
        t = set_cell(t, "data", row, '{"n":1,"text":"forged"}')
        prev = GENESIS_HASH
        for i in sorted(rows, key=lambda i: t.column("version")[i].as_py()):
            one = t.slice(i, 1)
            digest = hashing.payload_digests(one.column("data"), one.column("metadata"))[0]
            h = hashing.event_hash(prev, digest, envelopes[one.column("version")[0].as_py() - 1])
            t = set_cell(set_cell(set_cell(t, "payload_sha256", i, digest), "prev_hash", i, prev), "hash", i, h)
            prev = h
        return t

    rewrite_parquet(path, forge)
    fresh = Journal.open(runs.path)
    assert verify_journal(fresh).ok, verify_journal(fresh).breaks
    breaks = check_checkpoint(fresh, cp, key=KEY)
    assert [(b.stream_id, b.version, b.check) for b in breaks] == [("a", 5, "checkpoint_hash")]


def test_hmac_protects_the_checkpoint_file(runs: Journal, tmp_path: Path) -> None:
    cp = _cp(runs, tmp_path)
    with pytest.raises(CheckpointError, match="HMAC mismatch"):
        check_checkpoint(runs, cp, key=b"another key")
    with pytest.raises(CheckpointError, match="signed"):
        check_checkpoint(runs, cp)
    cp.write_text(cp.read_text().replace('"version": 5', '"version": 4', 1))
    with pytest.raises(CheckpointError, match="HMAC mismatch"):
        check_checkpoint(runs, cp, key=KEY)


def test_a_removed_stream_is_named(runs: Journal, tmp_path: Path) -> None:
    cp = _cp(runs, tmp_path)
    for _ in range(5):
        path, row = locate(runs, "b", 1 + _)
        rewrite_parquet(path, lambda t, r=row: drop_row(t, r))
    breaks = check_checkpoint(Journal.open(runs.path), cp, key=KEY)
    assert [(b.stream_id, b.check) for b in breaks] == [("b", "checkpoint_stream_missing")]


def test_not_a_checkpoint_is_a_clear_error(journal: Journal, tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(CheckpointError, match="not a journal checkpoint"):
        check_checkpoint(journal, bad)


def test_recorded_purges_and_archives_are_not_breaks(runs: Journal, tmp_path: Path) -> None:
    import datetime as dt

    from toolkit.journal.retention import purge_before, remove_stream_prefix

    cp = _cp(runs, tmp_path)
    remove_stream_prefix(runs, "a", 6, reason="archive")  # every event of a, anchored at v6
    purge_before(runs, dt.datetime.now(dt.UTC) + dt.timedelta(days=1), force=True)  # everything left
    fresh = Journal.open(runs.path)
    assert fresh.read_all(["event_id"]).num_rows == 0
    assert verify_journal(fresh).ok
    assert check_checkpoint(fresh, cp, key=KEY) == []
    # a purge record cannot vouch for a different head: forge the checkpoint's hash for b
    doc = json.loads(cp.read_text())
    doc["streams"]["b"]["hash"] = "f" * 64
    doc.pop("hmac_sha256")
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    assert [(b.stream_id, b.check) for b in check_checkpoint(fresh, forged)] == [("b", "checkpoint_anchor")]
