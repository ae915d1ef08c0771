"""The `journal` command, in-process through its real entry point (exit codes, stdout/stderr)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli

from toolkit.cli.main import COMMANDS, cli
from toolkit.journal import Journal


def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    return run_cli(capsys, *argv, stdin=stdin)


EVENTS = "\n".join(
    json.dumps(e)
    for e in [
        {
            "stream_id": "run-1",
            "event_type": "user_message",
            "occurred_at": "2026-11-01T09:00:00Z",
            "data": {"text": "hi"},
        },
        {
            "stream_id": "run-1",
            "event_type": "llm_response",
            "occurred_at": "2026-11-01T09:00:01Z",
            "model": "gpt-4o",
            "tokens_in": 100,
            "tokens_out": 20,
            "cost_usd": 0.002,
            "data": {"content": "ok"},
        },
    ]
)


@pytest.fixture
def jpath(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    p = str(tmp_path / "j")
    code, _, err = run(capsys, monkeypatch, "init", p)
    assert code == 0, err
    return p


def test_help_is_instant_and_lists_every_command() -> None:
    code = (
        "import sys, toolkit.cli.main as m\n"
        "try:\n    m.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [n for n in ('duckdb', 'polars', 'pyarrow', 'deltalake') if n in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_with_an_example(name: str) -> None:
    command = cli.get_command(None, name)  # type: ignore[arg-type]
    assert command is not None and command.help
    assert "Example" in command.help, f"journal {name} --help has no example"


def test_append_streams_stats_sql_verify(
    jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, "--expected-version", "0", stdin=EVENTS)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["read"], summary["appended"], summary["rejected"]) == (2, 2, 0)
    assert summary["heads"] == {"run-1": 2}

    code, out, _ = run(capsys, monkeypatch, "streams", "-j", jpath, "--format", "json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and rows[0]["stream_id"] == "run-1" and rows[0]["events"] == 2
    assert rows[0]["tokens_in"] == 100 and rows[0]["cost_usd"] == "0.002000000"

    code, out, _ = run(capsys, monkeypatch, "stats", "-j", jpath, "run-1", "--format", "csv")
    assert code == 0 and out.split("\n\n")[1].startswith("event_type,events")

    code, out, _ = run(
        capsys,
        monkeypatch,
        "sql",
        "-j",
        jpath,
        "SELECT version FROM events WHERE stream_id = $s ORDER BY 1",
        "-p",
        "s=run-1",
        "--format",
        "csv",
    )
    assert code == 0 and out.split() == ["version", "1", "2"]

    code, out, _ = run(capsys, monkeypatch, "sql", "-j", jpath, "journal/summary_by_model", "--format", "json")
    models = {json.loads(line)["model"]: json.loads(line) for line in out.splitlines()}
    assert code == 0 and models["gpt-4o"]["llm_calls"] == 1

    code, _, err = run(capsys, monkeypatch, "verify", "-j", jpath)
    assert code == 0 and "OK" in err


def test_stats_of_an_unknown_stream_names_close_stream_ids(
    jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """journal stats run-l said only 'list streams with: journal streams'; journal replay named run-1."""
    assert run(capsys, monkeypatch, "append", "-j", jpath, stdin=EVENTS)[0] == 0
    code, out, err = run(capsys, monkeypatch, "stats", "-j", jpath, "run-l")
    assert code == 1 and out == "" and "error: no stream 'run-l'" in err and "Hint: did you mean run-1?" in err
    code, out, err = run(capsys, monkeypatch, "stats", "-j", jpath, "zzz")
    assert code == 1 and "Hint: list streams with: journal streams" in err


def test_re_append_is_idempotent_and_conflict_exits_1(
    jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = "\n".join(
        json.dumps({**json.loads(line), "event_id": f"e{i}"}) for i, line in enumerate(EVENTS.splitlines())
    )
    assert run(capsys, monkeypatch, "append", "-j", jpath, stdin=lines)[0] == 0
    code, out, _ = run(capsys, monkeypatch, "append", "-j", jpath, stdin=lines)
    assert code == 0 and json.loads(out)["skipped_duplicates"] == 2 and json.loads(out)["appended"] == 0
    first = json.loads(lines.splitlines()[0])
    code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, stdin=json.dumps({**first, "agent": "late"}))
    assert code == 0 and json.loads(out)["skipped_with_values_the_journal_lacks"] == {"agent": 1}
    assert "note: events already in the journal came again with values its copy lacks (agent ×1)" in err
    second = json.loads(lines.splitlines()[1])
    code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, stdin=json.dumps({**second, "tokens_out": 21}))
    assert code == 1 and out == ""
    assert "stdin:1: event_id 'e1' is already in the journal with different content (tokens_out: 20" in err
    code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, "--expected-version", "0", stdin=EVENTS)
    assert code == 1 and out == ""
    assert "expected version 0" in err and "at version 2" in err and "Hint:" in err


def test_bad_line_names_line_field_and_writes_nothing(
    jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = EVENTS + '\n{"stream_id": "run-1", "event_type": "x", "data": 1, "occurred_at": "2026-11-01T10:00:00"}\n'
    code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, stdin=bad)
    assert code == 1 and "stdin:3" in err and "occurred_at" in err and "no time zone" in err
    code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, stdin=EVENTS + "\n{not json\n")
    assert code == 1 and "stdin:3" in err and "not JSON" in err
    for line, kind in (("[1, 2]", "array"), ('"hi"', "string"), ("null", "null"), ("3", "number")):
        code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, stdin=EVENTS + f"\n{line}\n")
        assert code == 1 and f"error: stdin:3: not a JSON object but a JSON {kind}" in err and "Traceback" not in err
    code, out, _ = run(capsys, monkeypatch, "sql", "-j", jpath, "SELECT count(*) AS n FROM events", "--format", "csv")
    assert out.split() == ["n", "0"]


def test_duplicate_ids_and_given_versions_name_the_line(
    jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changed event id or a wrong given version said "event 1" (its index, blank lines not
    counted) instead of naming the stdin line, as every other rejected line does."""
    line = {"stream_id": "run-1", "event_type": "x", "data": 1, "event_id": "e1"}
    assert run(capsys, monkeypatch, "append", "-j", jpath, stdin=json.dumps(line))[0] == 0
    changed = "\n" + json.dumps({**line, "event_id": "e0"}) + "\n" + json.dumps({**line, "data": 2}) + "\n"
    code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, stdin=changed)
    assert code == 1 and out == "" and "error: stdin:3: event_id 'e1' is already in the journal" in err
    twins = "\n" + json.dumps({**line, "event_id": "e5"}) + "\n\n" + json.dumps({**line, "event_id": "e5", "data": 2})
    code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, stdin=twins)
    assert code == 1 and "error: stdin:4: event_id 'e5' also names line 2, with different content" in err
    versioned = "\n" + json.dumps({**line, "event_id": "e6", "version": 7})
    code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, "--expected-version", "1", stdin=versioned)
    assert code == 1 and "error: stdin:2: stream 'run-1' version 7 given, but the next version is 2" in err
    code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, stdin='\n{"stream_id": "r", "event_type": "x"}')
    assert code == 1 and "error: stdin:2: field 'data': required" in err and "event 0" not in err


@pytest.mark.parametrize(
    "field",
    [
        {"stream_id": None},
        {"event_type": ""},
        {"tokens_in": -1},
        {"tokens_out": 1.5},
        {"cost_usd": "abc"},
        {"duration_ms": "1"},
        {"is_error": 1},
        {"version": 0},
        {"model": 5},
    ],
)
def test_every_rejected_field_ends_in_a_hint(
    field: dict[str, object], jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Errors of these fields were one line with no Hint: line (only occurred_at, data, metadata
    and stream_type had one)."""
    line = json.dumps({k: v for k, v in {"stream_id": "r", "event_type": "x", "data": 1, **field}.items() if v is not None})
    code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, stdin=line)
    lines = err.splitlines()
    assert code == 1 and out == "" and len(lines) == 2, err
    assert lines[0].startswith(f"error: stdin:1: field {next(iter(field))!r}") and lines[1].startswith("Hint: ")


def test_bytes_that_are_no_utf8_name_the_line_and_a_byte_order_mark_is_read(
    jpath: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A byte that is no UTF-8 ended in a UnicodeDecodeError traceback; a file starting with a
    byte order mark (as Windows tools write) was refused as 'not JSON: Unexpected UTF-8 BOM'."""
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(EVENTS.encode() + b'\n{"stream_id": "run-1", "event_type": "x", "data": "\xff"}\n')
    code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, "-i", str(bad))
    assert code == 1 and out == "" and f"error: {bad}:3: not UTF-8 text: byte 0xff at column 52" in err
    assert "Hint:" in err and "Traceback" not in err
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + EVENTS.encode("utf-8"))
    code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, "-i", str(bom))
    assert code == 0 and json.loads(out)["appended"] == 2, err


def test_expected_version_names_the_line_without_or_with_another_stream_id(
    jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --expected-version, lines without stream_id were appended to a stream named 'None';
    lines of two streams were refused naming neither the line nor the streams."""
    code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, "--expected-version", "0", stdin='{"event_type": "x", "data": 1}')
    assert code == 1 and out == "" and "error: stdin:1: field 'stream_id': required" in err and "Hint:" in err
    two = '{"stream_id": "a", "event_type": "x", "data": 1}\n\n{"stream_id": "b", "event_type": "x", "data": 1}\n'
    code, out, err = run(capsys, monkeypatch, "append", "-j", jpath, "--expected-version", "0", stdin=two)
    assert code == 2 and out == "" and "stdin:3: stream_id 'b' is not 'a' of line 1" in err
    code, out, _ = run(capsys, monkeypatch, "sql", "-j", jpath, "SELECT count(*) AS n FROM events", "--format", "csv")
    assert out.split() == ["n", "0"]


def test_table_cells_are_data_not_markup_and_numbers_keep_their_digits(
    jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value like "[/x]" once crashed rich and "[red]" vanished; 0.0321 printed as 0.0 and a
    cost of $0.0000002 as "0."."""
    query = ("SELECT '[/x]' AS closing, '[red]alert[/red]' AS styled, 0.0321::DOUBLE AS rate, "
             "0.0000002::DECIMAL(18, 9) AS cost, 1234.56::DOUBLE AS ms")
    code, out, err = run(capsys, monkeypatch, "sql", "-j", jpath, query)
    assert code == 0, err
    row = next(line for line in out.splitlines() if "[/x]" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells == ["[/x]", "[red]alert[/red]", "0.0321", "0.0000002", "1,234.6"]


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "parquet"])
def test_output_into_a_missing_folder_creates_it_and_a_bad_one_is_refused(
    fmt: str, jpath: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "new" / "folder" / f"out.{fmt}"
    code, out, err = run(capsys, monkeypatch, "sql", "-j", jpath, "SELECT 1 AS x", "--format", fmt, "-o", str(target))
    assert code == 0 and out == "" and target.stat().st_size > 0, err
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = run(capsys, monkeypatch, "sql", "-j", jpath, "SELECT 1", "--format", fmt, "-o", str(blocker / "x"))
    assert code == 1 and f"error: cannot write {blocker / 'x'}" in err and "Traceback" not in err


def test_verify_exits_3_on_tampering(
    jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from toolkit.journal import Journal

    assert run(capsys, monkeypatch, "append", "-j", jpath, stdin=EVENTS)[0] == 0
    f = Journal.open(jpath).files()[0].path
    t = pq.read_table(f)
    data = t.column("data").to_pylist()
    data[0] = data[0].replace("hi", "ho")
    pq.write_table(t.set_column(t.schema.get_field_index("data"), "data", pa.array(data)), f)
    code, out, err = run(capsys, monkeypatch, "verify", "-j", jpath, "--format", "csv")
    assert code == 3 and "1 broken" in err
    assert out.splitlines()[1].startswith("run-1,1,payload,")


def test_sql_sandbox_and_usage_errors(
    jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, monkeypatch, "sql", "-j", jpath, "SELECT * FROM read_csv('/etc/passwd')")
    assert code == 1 and "refused" in err and "Hint:" in err
    code, _, err = run(capsys, monkeypatch, "sql", "-j", jpath, "COPY (SELECT 1) TO 'x.csv'")
    assert code == 1 and "not allowed" in err
    code, _, err = run(capsys, monkeypatch, "sql", "-j", jpath, "journal/stream_stats")
    assert code == 1 and "needs parameter stream_id" in err
    code, _, _ = run(capsys, monkeypatch, "sql", "-j", jpath, "SELECT 1", "-p", "novalue")
    assert code == 2
    code, _, err = run(capsys, monkeypatch, "streams", "-j", str(Path(jpath).parent / "nope"))
    assert code == 1 and "journal init" in err


def test_compact_keeps_events_and_vacuums(
    jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        lines = json.dumps({"stream_id": f"s{i}", "event_type": "x", "occurred_at": "2026-11-01T10:00:00Z", "data": i})
        assert run(capsys, monkeypatch, "append", "-j", jpath, stdin=lines)[0] == 0
    code, _, err = run(capsys, monkeypatch, "compact", "-j", jpath, "--retain-hours", "0")
    assert code == 1 and "files ->" not in err and "--force" in err  # refused before compacting
    code, _, err = run(capsys, monkeypatch, "compact", "-j", jpath, "--retain-hours", "0", "--force")
    assert code == 0 and "3 files -> 1" in err and "deleted 3" in err
    assert run(capsys, monkeypatch, "verify", "-j", jpath)[0] == 0


def test_compact_refuses_a_negative_retention_before_compacting(
    jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--retain-hours -5 --force compacted, then ended in deltalake's ValueError traceback."""
    for i in range(2):
        lines = json.dumps({"stream_id": f"s{i}", "event_type": "x", "occurred_at": "2026-11-01T10:00:00Z", "data": i})
        assert run(capsys, monkeypatch, "append", "-j", jpath, stdin=lines)[0] == 0
    code, _, err = run(capsys, monkeypatch, "compact", "-j", jpath, "--retain-hours", "-5", "--force")
    assert code == 2 and "--retain-hours" in err and "compacted" not in err and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    plain = subprocess.run([sys.executable, "-m", "toolkit.cli", "streams", "-j", missing], capture_output=True, text=True)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr and "Hint:" in plain.stderr
    debug = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "--debug", "streams", "-j", missing], capture_output=True, text=True
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "JournalNotFoundError" in debug.stderr


def test_stats_shows_a_zero_cost_as_a_number(jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream without cost printed 'cost_usd: 0E-9' (the str of a zero DECIMAL(18,9))."""
    line = json.dumps({"stream_id": "free", "event_type": "user_message", "data": {"text": "hi"}}) + "\n"
    assert run(capsys, monkeypatch, "append", "-j", jpath, stdin=line)[0] == 0
    code, out, _ = run(capsys, monkeypatch, "stats", "-j", jpath, "free")
    cost = next(x for x in out.splitlines() if "cost_usd" in x)
    assert code == 0 and cost.split(":", 1)[1].strip() == "0.000000000", cost


def test_stats_csv_json_and_parquet_carry_the_summary_the_table_shows(
    jpath: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--format csv/json (and -o FILE) wrote only the events by type: the summary the table shows
    (events, version, first/last time, tokens, cost, head hash) was dropped."""
    import csv
    import io

    import pyarrow.parquet as pq

    assert run(capsys, monkeypatch, "append", "-j", jpath, stdin=EVENTS)[0] == 0
    code, out, _ = run(capsys, monkeypatch, "stats", "-j", jpath, "run-1")
    shown = dict(line.split(": ", 1) for line in out.split("\n\n", 1)[0].splitlines())
    shown = {k.strip(): v for k, v in shown.items()}
    head = Journal.open(jpath).read_stream("run-1", ["version", "hash", "occurred_at"]).to_pylist()
    assert code == 0 and shown["head_hash"] == head[-1]["hash"]
    assert shown["first_at"] == head[0]["occurred_at"].isoformat()
    query = ("sql", "-j", jpath, "journal/stream_stats", "-p", "stream_id=run-1", "--format", "json")
    code, out, _ = run(capsys, monkeypatch, *query)
    by_type = [json.loads(line) for line in out.splitlines()]

    code, out, _ = run(capsys, monkeypatch, "stats", "-j", jpath, "run-1", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and {k: "" if v is None else str(v) for k, v in doc["summary"].items()} == shown
    assert doc["by_event_type"] == by_type

    code, out, _ = run(capsys, monkeypatch, "stats", "-j", jpath, "run-1", "--format", "csv")
    summary_part, rows_part = out.split("\n\n")
    assert code == 0 and dict(list(csv.reader(io.StringIO(summary_part)))[1:]) == shown
    rows = list(csv.DictReader(io.StringIO(rows_part)))
    assert [r["event_type"] for r in rows] == [r["event_type"] for r in by_type]
    assert sum(int(r["tokens_in"]) for r in rows) == int(shown["tokens_in"])

    table_file, parquet_file = tmp_path / "stats.txt", tmp_path / "stats.parquet"
    assert run(capsys, monkeypatch, "stats", "-j", jpath, "run-1", "-o", str(table_file))[0] == 0
    assert all(f"{k}: {v}" in table_file.read_text() for k, v in shown.items())
    argv = ("stats", "-j", jpath, "run-1", "--format", "parquet", "-o", str(parquet_file))
    assert run(capsys, monkeypatch, *argv)[0] == 0
    meta = json.loads(pq.read_schema(parquet_file).metadata[b"summary"])
    assert {k: "" if v is None else str(v) for k, v in meta.items()} == shown
    assert pq.read_table(parquet_file).num_rows == len(by_type)


def test_streams_says_when_its_limit_cuts_the_list(jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    lines = "".join(json.dumps({"stream_id": s, "event_type": "user_message", "data": {}}) + "\n" for s in ("a", "b"))
    assert run(capsys, monkeypatch, "append", "-j", jpath, stdin=lines)[0] == 0
    code, out, err = run(capsys, monkeypatch, "streams", "-j", jpath, "--limit", "1", "--format", "json")
    assert code == 0 and len(out.splitlines()) == 1 and "note: the first 1 streams only" in err
    code, out, err = run(capsys, monkeypatch, "streams", "-j", jpath, "--limit", "2", "--format", "json")
    assert code == 0 and len(out.splitlines()) == 2 and "note:" not in err


def test_stats_names_the_agent_of_a_stream_whose_later_events_leave_it_out(
    jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's run-1 names its agent on its first event only: journal streams showed
    flight-booker, journal stats an empty agent (it took the agent of the last event)."""
    lines = [
        {"stream_id": "run-1", "agent": "flight-booker", "event_type": "user_message", "data": {"text": "hi"}},
        {"stream_id": "run-1", "event_type": "tool_called", "tool_name": "search_flights", "data": {}},
    ]
    stdin = "\n".join(json.dumps(line) for line in lines)
    assert run(capsys, monkeypatch, "append", "-j", jpath, stdin=stdin)[0] == 0
    code, out, _ = run(capsys, monkeypatch, "streams", "-j", jpath, "--format", "json")
    assert code == 0 and json.loads(out)["agent"] == "flight-booker"
    code, out, _ = run(capsys, monkeypatch, "stats", "-j", jpath, "run-1", "--format", "json")
    assert code == 0 and json.loads(out)["summary"]["agent"] == "flight-booker"


def test_a_file_operation_the_system_refuses_is_one_error_naming_the_path_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError no library call translated (a file where a folder should be, no permission, a full
    disk) ended in a traceback; it is now one line naming the path and the reason, then a Hint (exit 1)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, out, err = run(capsys, monkeypatch, "init", str(blocker / "j"))
    assert (code, out) == (1, "") and "Traceback" not in err, err
    assert err.splitlines() == [
        f"error: {blocker / 'j'}: Not a directory",
        "Hint: a file is where a folder should be, or a folder where a file should be: choose another path",
    ]
    debug = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "--debug", "init", str(blocker / "j")], capture_output=True, text=True
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "NotADirectoryError" in debug.stderr


def test_a_journal_whose_write_lock_cannot_be_opened_refuses_the_import_and_writes_nothing(
    jpath: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = Path(jpath) / ".write.lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()  # what root sees where another user sees "Permission denied": os.open refuses it
    source = tmp_path / "events.jsonl"
    source.write_text(EVENTS + "\n")
    code, out, err = run(capsys, monkeypatch, "import", "-j", jpath, str(source))
    lines = err.splitlines()
    assert (code, out) == (1, "") and "Traceback" not in err, err
    assert lines[-2] == f"error: {lock}: Is a directory" and lines[-1].startswith("Hint: "), err
    assert Journal.open(jpath).read_all(["event_id"]).num_rows == 0
    code, out, err = run(capsys, monkeypatch, "import", "-j", jpath, "--dry-run", str(source))  # reading still works
    assert code == 0 and json.loads(out)["imported"] == 2, err


def test_a_journal_with_a_missing_data_file_or_a_damaged_log_is_one_error_with_a_hint(
    jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data file the log lists deleted: the SQL session's error had no Hint. A damaged commit file of
    the Delta log: the error carried deltalake's Rust backtrace (with RUST_BACKTRACE set) and a Hint to
    start a new journal, as if there were nothing to restore."""
    code, _, err = run(capsys, monkeypatch, "append", "-j", jpath, stdin=EVENTS)
    assert code == 0, err
    data = next((Path(jpath) / "events").rglob("*.parquet"))
    data.rename(data.with_suffix(".moved"))
    code, out, err = run(capsys, monkeypatch, "streams", "-j", jpath)
    lines = err.splitlines()
    assert (code, out) == (1, "") and len(lines) == 2 and lines[0].startswith("error: cannot open a SQL session"), err
    assert lines[1].startswith("Hint: a data file the journal lists is missing or damaged: journal verify"), err
    data.with_suffix(".moved").rename(data)
    log = sorted((Path(jpath) / "events" / "_delta_log").glob("*.json"))[-1]
    log.write_text(log.read_text() + "{garbage\n")
    env = {**os.environ, "RUST_BACKTRACE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "streams", "-j", jpath], capture_output=True, text=True, env=env
    )
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and len(lines) == 2, done.stderr
    assert lines[0].startswith(f"error: {Path(jpath).resolve() / 'events'}: the events table cannot be opened"), lines
    assert lines[1].startswith("Hint: its Delta log (events/_delta_log) is damaged or incomplete: restore"), lines


@pytest.mark.parametrize("damage", ["cut short", "deleted"])
def test_a_missing_or_cut_off_data_file_is_one_error_naming_it_for_every_reader(
    jpath: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """The readers other than the SQL session (the journal's own Parquet reads behind replay, state,
    stats and bisect; Polars scans behind rules, chain and correlation) ended in a pyarrow or Polars
    traceback, or an OSError line whose Hint did not say what to do."""
    code, _, err = run(capsys, monkeypatch, "append", "-j", jpath, stdin=EVENTS)
    assert code == 0, err
    data = next((Path(jpath) / "events").rglob("*.parquet"))
    if damage == "deleted":
        data.unlink()
    else:
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    commands = [
        ("bisect", "no_tool_failure_loop", "run-1"),  # a Polars rule
        ("regrade", "no_tool_failure_loop", "budget_state"),  # built-ins of the shared pass
        ("replay", "run-1"),
        ("state", "run-1"),
        ("stats", "run-1"),
        ("chain", "--orphans"),  # a Polars scan first
        ("correlation", "no-such-request"),
    ]
    for argv in commands:
        code, out, err = run(capsys, monkeypatch, *argv, "-j", jpath)
        lines = err.splitlines()
        assert (code, out, len(lines)) == (1, "", 2), (argv, err)
        assert lines[0].startswith("error: ") and str(data) in lines[0], (argv, err)
        assert lines[1].startswith("Hint: ") and "journal verify names the streams" in lines[1], (argv, err)
        assert "restore that file from a backup" in lines[1], (argv, err)
    code, out, _ = run(capsys, monkeypatch, "verify", "-j", jpath, "--format", "json")
    assert code == 3 and "unreadable_file" in out and str(data) in out, out
