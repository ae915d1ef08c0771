"""CSV and Parquet: the importer contract (canonical columns and mapped), locations, samples."""

from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from importer_contract import ImporterContract

from toolkit.errors import ToolkitError
from toolkit.ingest.base import ImportOptions, derive_id
from toolkit.ingest.runner import import_paths
from toolkit.journal import Journal
from toolkit.journal.side_tables import read_table

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples" / "generic"

CANONICAL_CSV = (
    "\n".join(
        [
            "stream_id,event_type,occurred_at,model,tokens_in,cost_usd,is_error,data",
            'run-1,user_message,2026-11-01T09:00:00Z,,,,,"{""text"": ""hi""}"',
            'run-1,llm_response,2026-11-01T09:00:01Z,gpt-4o,12,0.0039,false,"""ok"""',
            "run-2,error,2026-11-01T09:00:02+01:00,,,,,",
        ]
    )
    + "\n"
)

MAPPED_CSV = """session,when,what,model,in,out,text
s1,01/11/2026 10:00,llm_response,gpt-4o,100,20,"hello, world"
s1,01/11/2026 10:01,tool_called,,,,"multi
line cell"
s2,02/11/2026 08:30,llm_response,gpt-4o-mini,5,1,
"""
CSV_MAPPING = """
[columns]
stream_id = "session"
event_type = "what"
occurred_at = "when"
model = "model"
tokens_in = "in"
tokens_out = "out"

[time]
format = "%d/%m/%Y %H:%M"
zone = "Europe/Berlin"

[defaults]
stream_type = "calls"
"""


class TestCanonicalCsv(ImporterContract):
    fmt = "csv"
    expected_events = 3
    expected_rejections = 3

    def make_export(self, tmp_path: Path) -> Path:
        path = tmp_path / "events.csv"
        path.write_text(CANONICAL_CSV)
        return path

    def make_damaged(self, tmp_path: Path) -> Path:
        path = tmp_path / "damaged.csv"
        lines = CANONICAL_CSV.splitlines()
        lines.insert(2, "run-1,user_message")  # too few cells
        lines.insert(3, "run-1,user_message,2026-11-01T09:00:00,,,,,1")  # no time zone
        body = "\n".join(lines).encode() + b"\nrun-3,user_message,,,,,,\xff\xfe\n"  # not UTF-8
        path.write_bytes(body)
        return path


class TestMappedCsv(ImporterContract):
    fmt = "csv"
    expected_events = 3
    expected_rejections = 2

    def make_export(self, tmp_path: Path) -> Path:
        path = tmp_path / "calls.csv"
        path.write_text(MAPPED_CSV)
        (tmp_path / "calls.mapping.toml").write_text(CSV_MAPPING)
        return path

    def make_damaged(self, tmp_path: Path) -> Path:
        path = tmp_path / "calls.tsv"
        rows = [r.replace(",", "\t") for r in MAPPED_CSV.replace('"hello, world"', "hello").splitlines()]
        rows.insert(2, "s1\tyesterday\tllm_response\tgpt-4o\t1\t1\tx")  # no such time
        rows.insert(3, "s1\t01/11/2026 10:02\tllm_response\tgpt-4o\tmany\t1\tx")  # not a number
        path.write_text("\n".join(rows) + "\n")
        (tmp_path / "calls.mapping.toml").write_text(CSV_MAPPING)
        return path


def write_usage_parquet(path: Path, rows: int = 4, bad: bool = False) -> Path:
    """Parquet with a nested struct and a timestamp column (also writes the sample's shape)."""
    t0 = dt.datetime(2026, 11, 5, 12, tzinfo=dt.UTC)
    table = pa.table(
        {
            "call_id": [f"call-{i}" for i in range(rows)],
            "conversation": [f"conv-{i // 2}" for i in range(rows)],
            "at": pa.array([t0 + dt.timedelta(seconds=i) for i in range(rows)], pa.timestamp("ms", tz="UTC")),
            "usage": [
                {"input": 100 + i, "output": 10 - i if not bad or i != 1 else -5, "model": "gpt-4o"}
                for i in range(rows)
            ],
            "ok": [i != 3 for i in range(rows)],
            "note": [None if i % 2 else f"note {i}" for i in range(rows)],
        }
    )
    pq.write_table(table, path)
    return path


PARQUET_MAPPING = """
[columns]
stream_id = "conversation"
event_type = { const = "llm_response" }
occurred_at = "at"
model = "$.usage.model"
tokens_in = "$.usage.input"
tokens_out = "$.usage.output"

[defaults]
stream_type = "usage"

[data]
fields = ["note", "ok"]

[metadata]
fields = { call = "call_id" }
"""


class TestMappedParquet(ImporterContract):
    fmt = "parquet"
    expected_events = 4
    expected_rejections = 1

    def make_export(self, tmp_path: Path) -> Path:
        (tmp_path / "usage.mapping.toml").write_text(PARQUET_MAPPING)
        return write_usage_parquet(tmp_path / "usage.parquet")

    def make_damaged(self, tmp_path: Path) -> Path:
        (tmp_path / "usage.mapping.toml").write_text(PARQUET_MAPPING)
        return write_usage_parquet(tmp_path / "usage.parquet", bad=True)


class TestCanonicalParquet(ImporterContract):
    fmt = "parquet"
    expected_events = 2

    def make_export(self, tmp_path: Path) -> Path:
        path = tmp_path / "events.parquet"
        t = dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC)
        pq.write_table(
            pa.table(
                {
                    "stream_id": ["r1", "r1"],
                    "event_type": ["user_message", "llm_response"],
                    "occurred_at": pa.array([t, t], pa.timestamp("us", tz="UTC")),
                    "data": ['{"text": "hi"}', '"ok"'],
                    "tokens_in": pa.array([None, 7], pa.int64()),
                }
            ),
            path,
        )
        return path

    def make_damaged(self, tmp_path: Path) -> Path:
        path = tmp_path / "events.parquet"
        pq.write_table(
            pa.table({"stream_id": ["r1", "", "r2"], "event_type": ["x", "x", "x"], "data": ["1", "2", "{"]}), path
        )
        return path

    expected_rejections = 2


def test_csv_values_and_locations(tmp_path: Path, journal: Journal) -> None:
    path = TestMappedCsv().make_export(tmp_path)
    import_paths(journal, [str(path)])
    rows = sorted(journal.read_all().to_pylist(), key=lambda r: r["occurred_at"])
    assert [r["occurred_at"] for r in rows] == [
        dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC),  # 10:00 in Berlin (CET)
        dt.datetime(2026, 11, 1, 9, 1, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 2, 7, 30, tzinfo=dt.UTC),
    ]
    assert [json.loads(r["data"]) for r in rows] == [
        {"text": "hello, world"},
        {"text": "multi\nline cell"},
        {"text": None},
    ]
    assert [r["source"] for r in rows] == [f"csv:{path}:2", f"csv:{path}:3", f"csv:{path}:5"]
    assert rows[0]["event_id"] == derive_id("csv", "calls.csv", 2, _csv_digest(MAPPED_CSV.splitlines()[1]))
    assert {r["stream_type"] for r in rows} == {"calls"} and rows[0]["tokens_in"] == 100


def _csv_digest(line: str) -> str:
    import csv
    import hashlib

    cells = next(csv.reader([line]))
    return hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode()).hexdigest()


def test_csv_rejections_name_the_line(tmp_path: Path, journal: Journal) -> None:
    path = TestCanonicalCsv().make_damaged(tmp_path)
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert [(r.location, r.reason) for r in report.rejections] == [
        ("line 3", "expected 8 cells (the header's), got 2"),
        ("line 4", "field 'occurred_at': time has no zone ('2026-11-01T09:00:00'); set zone in the mapping's [time]"),
        ("line 7", "not UTF-8"),
    ]


def test_csv_without_mapping_needs_canonical_headers(tmp_path: Path, journal: Journal) -> None:
    path = tmp_path / "calls.csv"
    path.write_text(MAPPED_CSV)
    with pytest.raises(ToolkitError, match="'session' is not a canonical column") as caught:
        import_paths(journal, [str(path)])
    assert "--mapping" in str(caught.value)


def test_mapping_option_wins_over_sidecar(tmp_path: Path, journal: Journal) -> None:
    path = TestMappedCsv().make_export(tmp_path)
    other = tmp_path / "other.toml"
    other.write_text(CSV_MAPPING.replace('stream_type = "calls"', 'stream_type = "other"'))
    import_paths(journal, [str(path)], options=ImportOptions(mapping=other))
    assert set(journal.read_all(["stream_type"]).column("stream_type").to_pylist()) == {"other"}


def test_parquet_nested_paths_and_rows(tmp_path: Path, journal: Journal) -> None:
    path = TestMappedParquet().make_export(tmp_path)
    import_paths(journal, [str(path)])
    rows = sorted(journal.read_all().to_pylist(), key=lambda r: r["occurred_at"])
    assert [(r["stream_id"], r["model"], r["tokens_in"], r["tokens_out"]) for r in rows] == [
        ("conv-0", "gpt-4o", 100, 10),
        ("conv-0", "gpt-4o", 101, 9),
        ("conv-1", "gpt-4o", 102, 8),
        ("conv-1", "gpt-4o", 103, 7),
    ]
    assert json.loads(rows[0]["data"]) == {"note": "note 0", "ok": True}
    assert json.loads(rows[3]["metadata"]) == {"call": "call-3"}
    assert rows[1]["source"] == f"parquet:{path}:2"
    damaged = TestMappedParquet().make_damaged(tmp_path / "x" if (tmp_path / "x").mkdir() is None else tmp_path)
    report = import_paths(journal, [str(damaged)], on_error="quarantine")
    assert [(r.location, r.reason) for r in report.rejections] == [
        ("row 2", "field 'tokens_out': must not be negative, got -5")
    ]


def test_not_a_parquet_file_is_a_toolkit_error(tmp_path: Path, journal: Journal) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(ToolkitError, match="cannot read as Parquet"):
        import_paths(journal, [str(path)], fmt="parquet")


def test_bundled_generic_samples_import(journal: Journal) -> None:
    expected = {"llm-calls.csv": ("csv", 4), "gateway-log.jsonl": ("jsonl", 3), "usage.parquet": ("parquet", 4)}
    for name, (fmt, events) in expected.items():
        path = SAMPLES / name
        report = import_paths(journal, [str(path)])
        assert (report.formats[str(path)], report.imported, report.rejected) == (fmt, events, 0)
    calls = journal.read_all().to_pylist()
    errors = [r for r in calls if r["is_error"]]
    assert [(r["stream_id"], r["error"]) for r in errors] == [("sess-002", "rate limited (429)")]
    costs = {r["cost_usd"] for r in calls if r["stream_id"] == "sess-001"}
    assert Decimal("0.004120000") in costs


def test_a_table_exported_from_a_journal_imports_again(tmp_path: Path, journal: Journal) -> None:
    """Columns the journal assigns are ignored; ids, payloads and times round-trip."""
    source = Journal.in_memory()
    source.append(
        "run-1", [{"event_type": "user_message", "data": {"text": "hi"}, "occurred_at": "2026-11-01T09:00:00Z"}]
    )
    exported = source.read_all()
    source.close()
    path = tmp_path / "export.parquet"
    pq.write_table(exported, path)
    report = import_paths(journal, [str(path)])
    assert (report.imported, report.rejected) == (1, 0)
    back = journal.read_all().to_pylist()[0]
    original = exported.to_pylist()[0]
    assert [back[k] for k in ("event_id", "stream_id", "event_type", "occurred_at", "data", "payload_sha256")] == [
        original[k] for k in ("event_id", "stream_id", "event_type", "occurred_at", "data", "payload_sha256")
    ]


def test_json_text_cells_are_kept_verbatim(tmp_path: Path, journal: Journal) -> None:
    path = tmp_path / "events.csv"
    path.write_text('stream_id,event_type,data,metadata\nr,x,"{""b"": 1, ""a"": 2}",\n')
    import_paths(journal, [str(path)])
    assert journal.read_all(["data", "metadata"]).to_pylist() == [{"data": '{"b": 1, "a": 2}', "metadata": "{}"}]


def test_a_directory_does_not_follow_symlinks_out_of_it(tmp_path: Path, journal: Journal) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.csv").write_text(CANONICAL_CSV)
    (tmp_path / "imp").mkdir()
    (tmp_path / "imp" / "events.csv").write_text(CANONICAL_CSV.replace("run-", "own-"))
    (tmp_path / "imp" / "linked.csv").symlink_to(tmp_path / "outside" / "secret.csv")
    report = import_paths(journal, [str(tmp_path / "imp")], fmt="csv", on_error="quarantine")
    assert report.imported == 3
    assert set(journal.read_all(["stream_id"]).column("stream_id").to_pylist()) == {"own-1", "own-2"}
    assert any(n.startswith(f"{tmp_path / 'imp' / 'linked.csv'}: not read: a symlink") for n in report.notes)


def test_two_imports_at_once_quarantine_each_rejection_once(
    tmp_path: Path, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check for rows already quarantined and the append run under one hold of the write
    lock: the second import waits, then finds them (before, both added them)."""
    import threading

    import toolkit.ingest.runner as runner

    path = TestCanonicalCsv().make_damaged(tmp_path)
    real = runner.read_table
    first_check, other_done = threading.Event(), threading.Event()

    def slow_read(j: Journal, name: str) -> Any:
        table = real(j, name)
        if name == "quarantine" and not first_check.is_set():
            first_check.set()
            other_done.wait(3)  # the other import ran to its end here before the fix
        return table

    monkeypatch.setattr(runner, "read_table", slow_read)
    a = threading.Thread(target=import_paths, args=(journal, [str(path)]), kwargs={"on_error": "quarantine"})
    a.start()
    assert first_check.wait(20)
    b = threading.Thread(
        target=lambda: (import_paths(Journal.open(journal.path), [str(path)], on_error="quarantine"), other_done.set())
    )
    b.start()
    a.join(30)
    b.join(30)
    rows = read_table(Journal.open(journal.path), "quarantine").to_pylist()
    assert sorted(r["location"] for r in rows) == ["line 3", "line 4", "line 7"]


def test_csv_quarantine_keeps_each_rejected_record_as_the_file_holds_it(tmp_path: Path, journal: Journal) -> None:
    """Quoted cells, embedded commas and line breaks, spaces and CRLF endings: the quarantined
    text is the record's own text (hex of its bytes when not UTF-8), at its first line, so the
    record fixed in place imports as the file meant it."""
    good = 'run-1,user_message,2026-11-01T09:00:00Z,"{""text"": ""hi""}"'
    no_zone = ' run-1 ,user_message,2026-11-01T09:00:01 ,"{""text"": ""a, b""}"'
    multi_line = '"run-1","user_message","2026-11-01T09:00:02","{""text"":\r\n ""two lines""}"'
    short = 'run-1,user_message,"a, ""b"""'
    not_utf8 = b'run-2,user_message,"2026-11-01T09:00:04Z","\xff"'
    body = "\r\n".join(["stream_id,event_type,occurred_at,data", good, no_zone, multi_line, short]).encode()
    path = tmp_path / "events.csv"
    path.write_bytes(body + b"\r\n" + not_utf8 + b"\r\n")
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert (report.read, report.imported, report.rejected, report.quarantined) == (5, 1, 4, 4)
    rows = read_table(journal, "quarantine").select(["source", "location", "record"]).to_pylist()
    assert sorted((r["location"], r["record"]) for r in rows) == [
        ("line 3", no_zone),
        ("line 4", multi_line),
        ("line 6", short),
        ("line 7", "hex:" + not_utf8.hex()),
    ]
    assert {r["source"] for r in rows} == {str(path)}

    fixed = tmp_path / "fixed.csv"
    by_line = {r["location"]: r["record"] for r in rows}
    records = [by_line["line 3"].replace("09:00:01 ", "09:00:01Z"), by_line["line 4"].replace('02"', '02Z"')]
    fixed.write_text("\r\n".join(["stream_id,event_type,occurred_at,data", *records]) + "\r\n", newline="")
    again = import_paths(journal, [str(fixed)])
    assert (again.imported, again.rejected) == (2, 0)
    texts = sorted(json.loads(r["data"])["text"] for r in journal.read_all(["data"]).to_pylist())
    assert texts == ["a, b", "hi", "two lines"]


def test_csv_refusals_name_the_line_not_the_rows_source_cell(tmp_path: Path, journal: Journal) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,stream_id,event_type,occurred_at,data,source\n"
        "a,run-1,user_message,2026-11-01T09:00:00Z,1,crm-export\n"
        "a,run-1,user_message,2026-11-01T09:00:01Z,2,crm-export\n"
    )
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert (report.imported, report.rejected) == (1, 1)
    assert [(r.source, r.location) for r in report.rejections] == [(str(path), "line 3")]
    assert journal.read_all(["source"]).column("source").to_pylist() == ["crm-export"]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("latin1.csv", "stream_id,événement\nr,x\n".encode("latin-1"), "line 1: the header is not UTF-8"),
        ("twice.csv", b"stream_id,event_type,stream_id\nr,x,r\n", "line 1: column 'stream_id' appears twice"),
        ("fifo.csv", None, "not a regular file or directory"),
    ],
)
def test_a_csv_the_importer_cannot_read_is_an_error_that_ends_in_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes | None, reason: str
) -> None:
    """A header that is not UTF-8, a column named twice, a named pipe: the error named the file and
    the reason but gave no Hint line as every other error does."""
    from helpers import run_cli

    source = tmp_path / name
    if content is None:
        os.mkfifo(source)
    else:
        source.write_bytes(content)
    journal = tmp_path / "j"
    code, out, err = run_cli(capsys, "import", "-j", str(journal), "--from", "csv", str(source))
    lines = err.splitlines()
    assert (code, out) == (1, "") and "Traceback" not in err, err
    assert lines[0].startswith("error: ") and reason in lines[0] and str(tmp_path) in lines[0], err
    assert len(lines) == 2 and lines[1].startswith("Hint: ") and len(lines[1]) > len("Hint: "), err
    assert Journal.open(journal).read_all(["event_id"]).num_rows == 0
