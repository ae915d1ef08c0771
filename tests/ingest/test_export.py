"""``journal export``: what the importers read back (round trips on the columns each format carries)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit.cli.cmd_export import command as export_command
from toolkit.ingest.export import EXPORTERS, ExportError, StreamNotFoundError, export_streams, exporter
from toolkit.ingest.runner import import_paths
from toolkit.journal import Journal
from toolkit.journal.prepare import INPUT_COLUMNS

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples" / "agentstore"
FIXTURE = REPO / "tests" / "fixtures" / "demo-journal"
# what AgentStore can carry (docs/importers/agentstore.md lists the rest)
CARRIED = [
    "stream_id",
    "version",
    "event_type",
    "occurred_at",
    "model",
    "tool_name",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "duration_ms",
    "is_error",
    "data",
]


def rows(journal: Journal, columns: list[str]) -> list[dict[str, Any]]:
    table = journal.read_all(columns)
    return sorted(table.to_pylist(), key=lambda r: (r["stream_id"], r.get("version") or 0))


def streams_of(journal: Journal) -> list[str]:
    return sorted(set(journal.read_all(["stream_id"]).column("stream_id").to_pylist()))


@pytest.fixture
def imported(journal: Journal) -> Journal:
    """The real AgentStore samples, pitfalls included (the glued line quarantined)."""
    import_paths(journal, [str(SAMPLES / "sample-data"), str(SAMPLES / "pitfall-samples")], on_error="quarantine")
    return journal


def test_agentstore_round_trip_of_imported_sessions_is_the_same_events(imported: Journal, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = export_streams(imported, streams_of(imported), "agentstore", out)
    assert report.events == 80 and len(report.files) == 2 * 5
    assert sorted(p.name for p in (out / "events").iterdir())[0] == "c5541406-7d8d-407f-a0bf-aa20908fc83b.jsonl"
    assert (out / "snapshots").is_dir()
    again = import_paths(imported, [str(out)])  # same ids, same content: nothing new
    assert (again.imported, again.already_present, again.rejected) == (0, 80, 0)
    with Journal.in_memory() as fresh:
        import_paths(fresh, [str(out)])
        everything = [*CARRIED, "event_id", "metadata", "stream_type", "source_type", "error"]
        assert rows(fresh, everything) == rows(imported, everything)


def test_agentstore_export_restores_session_name_and_labels(imported: Journal, tmp_path: Path) -> None:
    export_streams(imported, ["e7caa82b-39db-44ed-833d-def6ffbe37ca"], "agentstore", tmp_path / "out")
    session = json.loads((tmp_path / "out" / "sessions" / "e7caa82b-39db-44ed-833d-def6ffbe37ca.json").read_text())
    assert session == {
        "id": "e7caa82b-39db-44ed-833d-def6ffbe37ca",
        "name": "flight-search",
        "created_at": "2026-11-21T23:43:22.242784823Z",
        "updated_at": "2026-11-21T23:43:22.997749Z",
        "event_count": 16,
        "labels": {"agent": "travel", "env": "demo"},
    }
    first = (tmp_path / "out" / "events" / "e7caa82b-39db-44ed-833d-def6ffbe37ca.jsonl").read_text().splitlines()[0]
    assert list(json.loads(first)) == ["session_id", "sequence_number", "type", "payload", "timestamp", "metadata"]


def test_agentstore_export_keeps_duplicate_sequence_numbers(imported: Journal, tmp_path: Path) -> None:
    export_streams(imported, ["two-writers-demo"], "agentstore", tmp_path / "out")
    lines = (tmp_path / "out" / "events" / "two-writers-demo.jsonl").read_text().splitlines()
    assert [json.loads(x)["sequence_number"] for x in lines[:3]] == [1, 1, 2]


events_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "event_type": st.sampled_from(
                ["user_message", "llm_request", "llm_response", "tool_called", "error", "memory_compacted"]
            ),
            "data": st.recursive(
                st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
                lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                max_leaves=6,
            ),
            "occurred_at": st.datetimes(
                min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
            ),
            "model": st.none() | st.sampled_from(["gpt-4o", "claude"]),
            "tool_name": st.none() | st.text(min_size=1, max_size=6),
            "tokens_in": st.none() | st.integers(0, 10**9),
            "tokens_out": st.none() | st.integers(0, 10**9),
            "cost_usd": st.none() | st.decimals(min_value=0, max_value=1000, places=9, allow_nan=False),
            "duration_ms": st.none() | st.integers(0, 10**7).map(float),
        }
    ),
    min_size=1,
    max_size=6,
)


@given(events=events_strategy)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_agentstore_round_trip_of_any_events_on_the_carried_columns(events: list[dict[str, Any]]) -> None:
    import tempfile

    with Journal.in_memory() as source, Journal.in_memory() as back, tempfile.TemporaryDirectory() as tmp:
        source.append("run-1", events, expected_version=0)
        export_streams(source, ["run-1"], "agentstore", Path(tmp) / "out")
        import_paths(back, [str(Path(tmp) / "out")])
        got, want = rows(back, CARRIED), rows(source, CARRIED)
        for g, w in zip(got, want, strict=True):
            assert json.loads(g.pop("data")) == json.loads(w.pop("data"))
        assert got == want


def test_agentstore_export_of_a_foreign_stream_documents_its_losses(tmp_path: Path, journal: Journal) -> None:
    journal.append(
        "run-1",
        [
            {
                "event_type": "llm_response",
                "data": {"content": "ok"},
                "occurred_at": "2026-11-01T09:00:00.123456789Z",
                "tokens_in": 100,
                "tokens_cache_read": 40,
                "duration_ms": 812.6,
                "cost_usd": "0.0039",
                "correlation_id": "req-9",
                "metadata": {"region": "eu"},
            }
        ],
        stream_type="agent_run",
    )
    export_streams(journal, ["run-1"], "agentstore", tmp_path / "out")
    line = json.loads((tmp_path / "out" / "events" / "run-1.jsonl").read_text())
    assert line["sequence_number"] == 1 and line["timestamp"] == "2026-11-01T09:00:00.123456Z"
    assert line["metadata"] == {"tokens_in": 100, "duration_ms": 813, "cost_usd": 0.0039, "region": "eu"}
    with Journal.in_memory() as back:
        import_paths(back, [str(tmp_path / "out")])
        (row,) = back.read_all(
            ["stream_type", "tokens_cache_read", "correlation_id", "cost_usd", "metadata"]
        ).to_pylist()
        assert row["stream_type"] == "agent_session"  # not carried
        assert (row["tokens_cache_read"], row["correlation_id"]) == (None, None)  # not carried
        assert row["cost_usd"] == Decimal("0.003900000")
        assert json.loads(row["metadata"]) == {"region": "eu", "source_sequence_number": 1}


def test_jsonl_round_trip_carries_every_input_column_and_the_ids(tmp_path: Path) -> None:
    with Journal.open(FIXTURE) as fixture:
        wanted = streams_of(fixture)[:6]
        report = export_streams(fixture, wanted, "jsonl", tmp_path / "out")
        assert report.files == [str(tmp_path / "out" / "events.jsonl")]
        columns = [c for c in INPUT_COLUMNS if c != "version"] + ["version"]
        want = [r for r in rows(fixture, columns) if r["stream_id"] in wanted]
    with Journal.in_memory() as back:
        first = import_paths(back, [str(tmp_path / "out")], fmt="jsonl")
        assert first.imported == report.events == len(want)
        assert rows(back, columns) == want
        again = import_paths(back, [str(tmp_path / "out")], fmt="jsonl")
        assert (again.imported, again.already_present) == (0, len(want))


def test_jsonl_export_of_imported_agentstore_events_reads_back_into_the_same_journal(
    imported: Journal, tmp_path: Path
) -> None:
    export_streams(imported, streams_of(imported), "jsonl", tmp_path / "out")
    again = import_paths(imported, [str(tmp_path / "out")], fmt="jsonl")
    assert (again.imported, again.already_present) == (0, 80)


def test_export_refuses_what_it_cannot_do(imported: Journal, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="cannot export to 'parquet'") as caught:
        export_streams(imported, ["edge-cases"], "parquet", tmp_path / "a")
    assert caught.value.hint and "agentstore" in caught.value.hint
    with pytest.raises(StreamNotFoundError, match="no stream 'nope'"):
        export_streams(imported, ["edge-cases", "nope"], "jsonl", tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("x")
    with pytest.raises(ExportError, match="not empty"):
        export_streams(imported, ["edge-cases"], "jsonl", tmp_path / "c")
    assert export_streams(imported, ["edge-cases"], "jsonl", tmp_path / "c", overwrite=True).events == 5
    with Journal.in_memory() as j:
        j.append("a/b", [{"event_type": "x", "data": 1}])
        with pytest.raises(ExportError, match="cannot be an AgentStore session"):
            export_streams(j, ["a/b"], "agentstore", tmp_path / "d")


def test_a_new_format_is_one_registered_function(imported: Journal, tmp_path: Path) -> None:
    @exporter("count")
    def write_count(events: Any, out: Path, ctx: Any) -> list[Path]:
        path = out / "count.txt"
        path.write_text(str(events.num_rows))
        return [path]

    try:
        report = export_streams(imported, ["edge-cases"], "count", tmp_path / "out")
        assert (tmp_path / "out" / "count.txt").read_text() == "5" == str(report.events)
    finally:
        del EXPORTERS["count"]


def test_cli_export(imported: Journal, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(
        export_command, ["-j", str(imported.path), "edge-cases", "--to", "agentstore", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["format"], summary["streams"], summary["events"]) == ("agentstore", 1, 5)
    assert (out / "events" / "edge-cases.jsonl").exists()
    refused = runner.invoke(
        export_command, ["-j", str(imported.path), "edge-cases", "--to", "agentstore", "-o", str(out)]
    )
    assert refused.exit_code != 0 and "not empty" in str(refused.exception)
    assert "Examples" in runner.invoke(export_command, ["--help"]).output


def test_an_unknown_format_names_every_format_export_writes(tmp_path: Path) -> None:
    """The hint of journal export --to nope said 'formats: agentstore, jsonl': evennia-archive,
    whose writer loads with its importer, was left out until something had imported it."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolkit.cli",
            "export",
            "-j",
            str(FIXTURE),
            "run-7-0000001",
            "--to",
            "nope",
            "-o",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2 and "--to: 'nope': not a format journal export writes" in out.stderr, out.stderr
    assert "Hint: formats: agentstore, evennia-archive, jsonl" in out.stderr, out.stderr
