"""verify: a changed byte in a Parquet file is named by stream, version and check."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import drop_row, ev, locate, rewrite_parquet, set_cell

from toolkit.journal import Journal
from toolkit.journal.integrity import Break, breaks_table, verify_journal


@pytest.fixture
def two_runs(journal: Journal) -> Journal:
    """Streams a and b, five events each, over three commits (so over several files)."""
    for start, stop in ((1, 3), (3, 5), (5, 6)):
        journal.append_batch(
            [
                {"stream_id": s, **ev("tool_called", {"n": n}, tool_name="shell", tokens_in=n, cost_usd="0.5")}
                for n in range(start, stop)
                for s in ("a", "b")
            ]
        )
    return journal


def _tamper(journal: Journal, stream_id: str, version: int, column: str, value: Any) -> None:
    path, row = locate(journal, stream_id, version)
    rewrite_parquet(path, lambda t: set_cell(t, column, row, value))


def _only_break(journal: Journal) -> Break:
    report = verify_journal(Journal.open(journal.path))
    assert report.breaks is not None and len(report.breaks) == 1, report.breaks
    return report.breaks[0]


def test_untouched_journal_verifies(two_runs: Journal) -> None:
    report = verify_journal(two_runs)
    assert (report.ok, report.streams, report.events, report.breaks) == (True, 2, 10, [])
    assert breaks_table(report).num_rows == 0


def test_a_data_file_replaced_by_another_parquet_file_is_an_unreadable_file_break(two_runs: Journal) -> None:
    """A Parquet file without the journal's columns in a data file's place: verify crashed with an
    IndexError (the footer reader looked for stream_id statistics at column -1)."""
    path, _ = locate(two_runs, "a", 1)
    pq.write_table(pa.table({"a": [1]}), path)
    report = verify_journal(Journal.open(two_runs.path))
    assert report.breaks is not None
    unreadable = [b for b in report.breaks if b.check == "unreadable_file"]
    assert len(unreadable) == 1 and unreadable[0].stream_id == path and "not a journal data file" in unreadable[0].found
    # its events are missing from both chains: each stream now starts at version 3
    assert sorted((b.stream_id, b.check, b.found) for b in report.breaks if b.check != "unreadable_file") == [
        ("a", "version", "3"), ("b", "version", "3")
    ]


def test_one_changed_byte_of_data_is_a_payload_break_at_that_version(two_runs: Journal) -> None:
    path, row = locate(two_runs, "a", 3)
    assert pq.read_table(path).column("data")[row].as_py() == '{"n":3}'
    _tamper(two_runs, "a", 3, "data", '{"n":4}')
    b = _only_break(two_runs)
    assert (b.stream_id, b.version, b.check) == ("a", 3, "payload")
    assert breaks_table(verify_journal(two_runs)).to_pylist()[0]["check"] == "payload"


def test_changed_metadata_is_a_payload_break(two_runs: Journal) -> None:
    _tamper(two_runs, "b", 5, "metadata", '{"redacted":false}')
    b = _only_break(two_runs)
    assert (b.stream_id, b.version, b.check) == ("b", 5, "payload")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("tool_name", "rm"),
        ("tool_name", None),
        ("occurred_at", dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
        ("event_type", "tool_result"),
        ("tokens_in", 4),
        ("cost_usd", Decimal("0.500000001")),
        ("is_error", True),
        ("event_id", "forged"),
        ("position", 999),
        ("model", "gpt-test"),
    ],
)
def test_changed_envelope_column_is_a_hash_break_at_that_version(two_runs: Journal, column: str, value: Any) -> None:
    _tamper(two_runs, "b", 2, column, value)
    b = _only_break(two_runs)
    assert (b.stream_id, b.version, b.check) == ("b", 2, "hash")


def test_replaced_payload_digest_is_a_payload_break(two_runs: Journal) -> None:
    _tamper(two_runs, "a", 1, "payload_sha256", "0" * 64)
    b = _only_break(two_runs)
    assert (b.stream_id, b.version, b.check) == ("a", 1, "payload")


def test_deleted_event_is_a_version_break(two_runs: Journal) -> None:
    path, row = locate(two_runs, "a", 3)
    rewrite_parquet(path, lambda t: drop_row(t, row))
    b = _only_break(two_runs)
    assert (b.stream_id, b.version, b.check, b.expected, b.found) == ("a", 4, "version", "3", "4")


def test_deleted_first_event_is_a_version_break(two_runs: Journal) -> None:
    path, row = locate(two_runs, "b", 1)
    rewrite_parquet(path, lambda t: drop_row(t, row))
    b = _only_break(two_runs)
    assert (b.stream_id, b.version, b.check, b.expected) == ("b", 2, "version", "1")


def test_deleted_and_renumbered_event_is_a_prev_hash_break(two_runs: Journal) -> None:
    path, row = locate(two_runs, "a", 3)
    rewrite_parquet(path, lambda t: drop_row(t, row))
    for version in (4, 5):
        _tamper(two_runs, "a", version, "version", version - 1)
    b = _only_break(two_runs)
    assert (b.stream_id, b.version, b.check) == ("a", 3, "prev_hash")


def test_duplicated_event_is_reported(two_runs: Journal) -> None:
    path, row = locate(two_runs, "b", 5)
    rewrite_parquet(path, lambda t: pa.concat_tables([t, t.slice(row, 1)]))
    report = verify_journal(Journal.open(two_runs.path))
    checks = {(b.stream_id, b.version, b.check) for b in report.breaks or []}
    assert ("b", 5, "version") in checks
    assert {"duplicate_event_id", "duplicate_position"} <= {b.check for b in report.breaks or []}


def test_breaks_in_two_streams_are_both_named(two_runs: Journal) -> None:
    _tamper(two_runs, "a", 2, "data", '{"n":0}')
    _tamper(two_runs, "b", 4, "tool_name", "curl")
    report = verify_journal(Journal.open(two_runs.path))
    assert [(b.stream_id, b.version, b.check) for b in report.breaks or []] == [("a", 2, "payload"), ("b", 4, "hash")]


def test_a_separator_inside_a_value_cannot_impersonate_another_column() -> None:
    import pyarrow as pa

    from toolkit.journal.hashing import envelope_texts

    honest = pa.table({"model": ["x"], "tool_name": ["y"]})
    forged = pa.table({"model": ["x\x1ftool_name=y"], "tool_name": pa.array([None], pa.string())})
    assert envelope_texts(honest).to_pylist() != envelope_texts(forged).to_pylist()


def test_token_counts_no_sum_can_hold_are_findings_not_breaks(
    journal: Journal, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A journal written before import and append refused counts above 10^12 verified OK; their
    int64 sums wrap in rollups and budget rules. verify names each (stream, version, column, value)."""
    from helpers import run_cli

    from toolkit.journal import prepare

    with monkeypatch.context() as m:
        m.setattr(prepare, "MAX_TOKENS", 2**63 - 1)  # as before the limit
        journal.append("r", [ev("llm_response", tokens_in=5), ev("llm_response", tokens_in=2**62, tokens_out=2**62)])
        journal.append("s", [ev("llm_response", tokens_reasoning=10**12 + 1), ev("llm_response", tokens_in=10**12)])
    code, out, err = run_cli(capsys, "verify", "-j", str(journal.path), "--format", "csv")
    assert code == 3 and "chains OK; 3 token counts above 10^12" in err
    assert out.splitlines()[1].startswith("r,2,token_count,tokens_in at most 1000000000000") and str(2**62) in out
    report = verify_journal(Journal.open(journal.path))
    assert report.ok and report.breaks == [] and not report.clean  # every chain verifies
    assert [(f.stream_id, f.version, f.column, f.value) for f in report.token_counts] == [
        ("r", 2, "tokens_in", 2**62), ("r", 2, "tokens_out", 2**62), ("s", 1, "tokens_reasoning", 10**12 + 1)
    ]
    assert "more than 1,000,000,000,000 tokens in one event" in report.token_counts[0].reason
