"""The issue-7 commands through the real entry point: chain, trace, correlation, checkpoint,
verify --checkpoint, purge, archive, redact, export-compliance, verify-export."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import pyarrow.compute as pc
import pytest
from helpers import drop_row, locate, rewrite_parquet, run_cli

from toolkit.journal import Journal

FIXTURE = Path(__file__).parents[1] / "fixtures" / "demo-journal"
# run-7-0000005: book_flight, after the user confirmed it, → HTTP 503; the agent's next turn retries it
FAILED_TOOL = "8c24ab68-39d3-5393-8f68-000000000013"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run_cli(capsys, *argv)


def chain_length(journal: Path, event_id: str | None) -> int:
    """Events from ``event_id`` up to its root cause, itself included, by the journal's causation ids."""
    rows = Journal.open(journal).read_all(["event_id", "causation_id"]).to_pylist()
    causes = {r["event_id"]: r["causation_id"] for r in rows}
    n = 0
    while event_id is not None:
        n, event_id = n + 1, causes[event_id]
    return n


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(FIXTURE, tmp_path / "demo")
    monkeypatch.setenv("AGENT_JOURNAL", str(tmp_path / "demo"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return tmp_path / "demo"


def test_chain_tree_json_and_unknown_id(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = chain_length(demo, FAILED_TOOL)
    code, out, err = run(capsys, "chain", FAILED_TOOL, "--up")
    assert code == 0 and f"chain: {events} events, 0 orphans, 0 cycles" in err
    lines = out.splitlines()
    assert "Book me a flight" in lines[0] and "▶" in lines[-1] and "503" in lines[-1]
    assert any("Shall I go ahead?" in line for line in lines)  # the agent asked before booking
    code, out, _ = run(capsys, "chain", FAILED_TOOL, "--both", "--format", "json")
    graph = json.loads(out)
    assert graph["focus"] == FAILED_TOOL and len(graph["edges"]) == len(graph["nodes"]) - 1
    code, out, err = run(capsys, "chain", FAILED_TOOL.replace("8c24", "8c25"))  # a typo
    assert code == 1 and "no event" in err and "Hint: did you mean" in err and FAILED_TOOL in err


def test_chain_down_from_a_failed_call_reaches_the_retry_that_booked(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "chain", FAILED_TOOL, "--down", "--depth", "4")
    lines = out.splitlines()
    assert code == 0 and "▶" in lines[0] and "503" in lines[0]
    # the next turn: the model asked again, called book_flight with the same arguments, and it worked
    calls = [line for line in lines if "Tool called: book_flight(" in line]
    failed = next(
        r for r in Journal.open(demo).read_stream("run-7-0000005").to_pylist() if r["tool_name"] == "book_flight"
    )
    assert len(calls) == 1 and all(f"{k}={v}" in calls[0] for k, v in json.loads(failed["data"])["args"].items())
    assert "Tool returned: book_flight" in lines[-2] and "confirmed" in lines[-2], out


def test_chain_refuses_two_directions_as_a_usage_error(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, up, _ = run(capsys, "chain", FAILED_TOOL, "--up", "--format", "csv")
    _, both, _ = run(capsys, "chain", FAILED_TOOL, "--format", "csv")
    assert len(up.splitlines()) < len(both.splitlines())  # the default is both ways
    for flags in (["--up", "--down"], ["--down", "--both"]):
        code, out, err = run(capsys, "chain", FAILED_TOOL, *flags)
        lines = err.splitlines()
        assert (code, out, len(lines)) == (2, "", 2), err
        assert lines[0] == f"error: {', '.join(flags)} exclude each other: give one direction (default --both)"
        assert lines[1].startswith("Hint: usage: journal chain")


def test_chain_names_a_cause_id_another_stream_carries_too(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = chain_length(demo, FAILED_TOOL)  # before the copy: the chain keeps to the call's own stream
    j = Journal.open(demo)
    cause = next(
        r["causation_id"] for r in j.read_all(["event_id", "causation_id"]).to_pylist() if r["event_id"] == FAILED_TOOL
    )
    j.append("reimported", [{"event_type": "tool_called", "event_id": cause, "data": {}}])  # the same id again
    j.close()
    code, out, err = run(capsys, "chain", FAILED_TOOL, "--up")
    assert code == 0 and f"chain: {events} events, 0 orphans, 0 cycles, 1 ambiguous ids" in err
    assert "⚠ ambiguous id: an event in stream reimported has it too; the chain takes this one" in out
    assert "reimported v1" not in out  # the copy in the failed call's own stream is its cause
    code, out, _ = run(capsys, "chain", FAILED_TOOL, "--format", "json")
    assert [(a["event_id"], a["also_in"]) for a in json.loads(out)["ambiguous"]] == [(cause, ["reimported"])]


def test_trace_and_correlation(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace_id = Journal.open(demo).read_stream("run-7-0000005", ["trace_id"]).column("trace_id")[0].as_py()
    code, out, err = run(capsys, "trace", trace_id, "--format", "csv")
    assert code == 0 and "trace:" in err and out.count("\n") > 5
    code, out, err = run(capsys, "correlation", "session-7-0000002", "--format", "json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and {r["stream_id"] for r in rows} == {"run-7-0000002", "run-7-0000003"}
    code, _, err = run(capsys, "correlation", "session-7-0000002", "--since", "yesterday")
    assert code == 2 and "ISO 8601" in err


def test_checkpoint_then_verify_names_a_dropped_last_event(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_HMAC_KEY", "0123456789abcdef0123456789abcdef")
    cp = tmp_path / "safe" / "heads.json"
    code, _, err = run(capsys, "checkpoint", "-o", str(cp), "--key-env", "JOURNAL_HMAC_KEY")
    assert code == 0 and "HMAC-signed" in err
    code, _, err = run(capsys, "verify", "--checkpoint", str(cp), "--key-env", "JOURNAL_HMAC_KEY")
    assert code == 0 and "OK" in err
    journal = Journal.open(demo)
    path, row = locate(journal, "run-7-0000005", journal.stream_version("run-7-0000005"))
    rewrite_parquet(path, lambda t: drop_row(t, row))
    code, out, err = run(capsys, "verify", "--checkpoint", str(cp), "--key-env", "JOURNAL_HMAC_KEY", "--format", "csv")
    assert code == 3 and "1 broken" in err
    assert "run-7-0000005" in out and "checkpoint_truncated" in out
    code, _, err = run(capsys, "verify", "--checkpoint", str(cp))
    assert code == 1 and "HMAC-signed" in err and "Hint:" in err


def test_a_checkpoint_is_not_replaced_silently(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cp = tmp_path / "safe" / "heads.json"
    assert run(capsys, "checkpoint", "-o", str(cp))[0] == 0
    before = cp.read_text()
    code, _, err = run(capsys, "checkpoint", "-o", str(cp))
    assert code == 1 and "exists already" in err and "--force" in err
    assert cp.read_text() == before
    assert run(capsys, "checkpoint", "-o", str(cp), "--force")[0] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["sql", "SELECT 1 AS x", "--format", "csv", "-o", "{j}/journal.toml"],
        ["sql", "SELECT 1 AS x", "--format", "parquet", "-o", "{j}/events/x.parquet"],
        ["checkpoint", "-o", "{j}/heads.json"],
        ["streams", "--format", "json", "-o", "{j}/../{name}/journal.toml"],
        ["export-compliance", "--stream", "run-7-0000005", "-o", "{j}/bundle"],
        ["report", "overview", "--charts", "{j}/events/_delta_log", "--chart-format", "json"],
        ["report", "overview", "--charts", "{j}/charts", "--chart-format", "svg"],
        # a purge archive named like the next Delta commit: the journal could no longer be opened
        ["purge", "--before", "2026-10-02", "--force", "--archive", "{j}/events/_delta_log/00000000000000000009.json"],
        ["purge", "--before", "2026-10-02", "--force", "--archive", "{j}/../{name}/journal.toml.parquet"],
    ],
)
def test_output_inside_the_journal_is_refused(demo: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """-o into the journal directory replaced its own files (journal.toml: every later command failed)."""
    toml = (demo / "journal.toml").read_text()
    files = sorted(p.relative_to(demo) for p in demo.rglob("*"))
    code, _, err = run(capsys, *(a.format(j=demo, name=demo.name) for a in argv))
    assert code == 1 and "is inside the journal" in err and "Hint:" in err
    assert (demo / "journal.toml").read_text() == toml
    assert sorted(p.relative_to(demo) for p in demo.rglob("*")) == files


def test_a_parquet_output_url_is_the_local_path_the_check_saw(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o file:///JOURNAL/events/<active file>.parquet: the -o check took it for a path relative to the
    working directory, pyarrow for a URL, and the journal's own Parquet file was overwritten."""
    monkeypatch.chdir(tmp_path)
    active = sorted((demo / "events").rglob("*.parquet"))[0]
    files = {p.relative_to(demo): p.read_bytes() for p in demo.rglob("*") if p.is_file()}
    code, _, err = run(capsys, "sql", "SELECT 1 AS x", "--format", "parquet", "-o", f"file://{active}")
    assert code == 0, err
    assert {p.relative_to(demo): p.read_bytes() for p in demo.rglob("*") if p.is_file()} == files
    assert Path(f"file:{active}").is_file()  # where csv and json write the same -o
    assert run(capsys, "verify")[0] == 0


@pytest.mark.parametrize(
    ("argv", "linked", "written"),
    [
        (["sql", "SELECT 1 AS x", "--format", "csv", "-o", "{out}/x.csv"], "journal.toml", "x.csv"),
        (["sql", "SELECT 1 AS x", "--format", "parquet", "-o", "{out}/x.parquet"], "events", "x.parquet"),
        (["sql", "SELECT 1 AS x", "-o", "{out}/x.txt"], "quarantine", "x.txt"),
        (["stats", "run-7-0000005", "--format", "json", "-o", "{out}/s.json"], "_delta_log", "s.json"),
        (["chain", FAILED_TOOL, "--format", "json", "-o", "{out}/c.json"], "journal.toml", "c.json"),
        (["export", "run-7-0000005", "--to", "jsonl", "--force", "-o", "{out}"], "events", "events.jsonl"),
        (["report", "overview", "--charts", "{out}", "--chart-format", "json"], "quarantine", "overview-*.json"),
    ],
)
def test_an_output_hard_linked_to_a_journal_file_is_replaced_not_written_through(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], linked: str, written: str
) -> None:
    """-o OUT where OUT is a hard link to a journal file passed the inside-the-journal check (the
    link has its own path) and the output was written through it into the journal's file."""
    from toolkit.journal.side_tables import append_rows

    j = Journal.open(demo)
    rejected = {"format": "jsonl", "source": "x.jsonl", "location": "line 3", "reason": "not JSON", "record": "{"}
    append_rows(j, "quarantine", [rejected])
    j.close()
    targets = {
        "journal.toml": demo / "journal.toml",
        "events": sorted((demo / "events").rglob("*.parquet"))[0],
        "quarantine": sorted((demo / "quarantine").rglob("*.parquet"))[0],
        "_delta_log": sorted((demo / "events" / "_delta_log").glob("*.json"))[-1],
    }
    files = {p.relative_to(demo): p.read_bytes() for p in demo.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    out.mkdir()
    names = [written]
    if "*" in written:  # one link per chart the report saves
        assert run(capsys, *(a.format(out=tmp_path / "charts") for a in argv))[0] == 0
        names = [p.name for p in (tmp_path / "charts").iterdir()]
    for name in names:
        os.link(targets[linked], out / name)
    code, _, err = run(capsys, *(a.format(out=out) for a in argv))
    assert code == 0, err
    assert {p.relative_to(demo): p.read_bytes() for p in demo.rglob("*") if p.is_file()} == files
    assert run(capsys, "verify")[0] == 0
    for name in names:  # the output is there, a file of its own
        assert (out / name).stat().st_nlink == 1
        assert (out / name).read_bytes() != files[targets[linked].relative_to(demo)]
    assert targets[linked].stat().st_nlink == 1


@pytest.mark.parametrize(
    ("argv", "written"),
    [
        (["export", "run-7-0000005", "--to", "jsonl", "--force", "-o", "{out}"], "events.jsonl"),
        (["report", "overview", "--charts", "{out}", "--chart-format", "json"], "overview-events_per_day.json"),
    ],
)
def test_an_output_symlinked_into_the_journal_is_refused(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], written: str
) -> None:
    """A symbolic link left in an export or --charts directory (outside the journal), to journal.toml,
    had the output written through it into the journal (journal.toml became JSON lines or a chart)."""
    files = {p.relative_to(demo): p.read_bytes() for p in demo.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    out.mkdir()
    (out / written).symlink_to(demo / "journal.toml")
    code, _, err = run(capsys, *(a.format(out=out) for a in argv))
    assert code == 1 and f"{written}: is inside the journal" in err and "journal.toml)" in err and "Hint:" in err
    assert {p.relative_to(demo): p.read_bytes() for p in demo.rglob("*") if p.is_file()} == files
    assert run(capsys, "verify")[0] == 0


@pytest.mark.parametrize(
    ("there", "said"),
    [
        ("nothing", "x.csv: a file appeared there between the check"),
        ("a file of its own", "x.csv: a file was replaced there between the check"),
        ("a hard link", "journal.toml: is inside the journal"),  # replaced, not written in place
    ],
)
def test_an_output_swapped_for_a_link_into_the_journal_after_its_check_is_not_written_through(
    demo: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    there: str,
    said: str,
) -> None:
    """-o OUT was checked (not inside a journal), then opened by its name: a symbolic link to
    journal.toml put at OUT between the two had the output written through it (journal.toml
    emptied and overwritten), or, for a hard link (whose output replaces it), journal.toml
    replaced by the output. The file opened must now be the one checked."""
    import toolkit.journal.location as location

    files = {p.relative_to(demo): p.read_bytes() for p in demo.rglob("*") if p.is_file()}
    out = tmp_path / "x.csv"
    if there != "nothing":
        out.write_text("old\n")
    if there == "a hard link":
        os.link(out, tmp_path / "other.csv")
    check = location.refuse_journal_file

    def checked_then_swapped(path: str | Path) -> None:
        check(path)
        if Path(path) == out:
            out.unlink(missing_ok=True)
            out.symlink_to(demo / "journal.toml")

    monkeypatch.setattr(location, "refuse_journal_file", checked_then_swapped)
    code, _, err = run(capsys, "sql", "SELECT 1 AS x", "--format", "csv", "-o", str(out))
    assert code == 1 and said in err and "Hint:" in err
    assert {p.relative_to(demo): p.read_bytes() for p in demo.rglob("*") if p.is_file()} == files
    assert run(capsys, "verify")[0] == 0


def test_a_report_is_not_written_through_a_link_at_its_temporary_name(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """report -o R.html wrote to the fixed name .R.html.tmp first: a hard link placed there (to
    journal.toml) had the report written through it into the journal."""
    toml = (demo / "journal.toml").read_bytes()
    os.link(demo / "journal.toml", tmp_path / ".r.html.tmp")
    code, _, err = run(capsys, "report", "run", "-p", "stream=run-7-0000005", "-o", str(tmp_path / "r.html"))
    assert code == 0, err
    assert (demo / "journal.toml").read_bytes() == toml and run(capsys, "verify")[0] == 0
    assert "<html" in (tmp_path / "r.html").read_text()


def test_purge_refuses_recent_events(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "purge", "--before", "2026-10-02")
    assert code == 1 and "minimum retention" in err and "Hint:" in err
    code, out, _ = run(capsys, "purge", "--before", "2026-10-02", "--force")
    result = json.loads(out)
    assert code == 0 and result["events"] > 0 and Path(result["archive"]).is_file()
    code, _, err = run(capsys, "verify")
    assert code == 0, err


def test_purge_with_nothing_to_remove_writes_and_prints_no_record(
    demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from toolkit.journal.side_tables import read_table

    before = Journal.open(demo)
    version, purges = before.delta_version, read_table(before, "purges").num_rows
    code, out, err = run(capsys, "purge", "--before", "2000-01-01", "--force")
    assert code == 0 and out == "" and "purge: nothing to purge: no events before 2000-01-01" in err
    after = Journal.open(demo)
    assert after.delta_version == version and read_table(after, "purges").num_rows == purges


def test_archive_and_redact(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "archive", "run-7-0000001", "-o", str(tmp_path / "a.parquet"), "--delete")
    assert code == 0 and json.loads(out)["deleted"] > 0
    code, out, _ = run(capsys, "redact", "--subject", "user-0001", "--reason", "test request")
    assert code == 0 and json.loads(out)["events"] > 0
    code, _, err = run(capsys, "verify")
    assert code == 0 and "redacted events" in err and "after a purge" in err
    code, _, err = run(capsys, "redact", "--subject", "nobody")
    assert code == 1 and "no events with subject_id" in err


def test_export_and_verify_export(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "bundle"
    code, out, err = run(capsys, "export-compliance", "--correlation", "session-7-0000002", "-o", str(out_dir))
    session = pc.equal(Journal.open(demo).read_all(["correlation_id"]).column("correlation_id"), "session-7-0000002")
    assert code == 0 and json.loads(out)["events"] == pc.sum(session).as_py() > 0
    code, _, err = run(capsys, "verify-export", str(out_dir), "-j", str(demo))
    assert code == 0 and "checked against the journal: OK" in err
    (out_dir / "runs.csv").write_text("changed\n")
    code, out, err = run(capsys, "verify-export", str(out_dir), "--format", "csv")
    assert code == 3 and "runs.csv,sha256" in out
    code, out, err = run(capsys, "export-compliance", "--correlation", "no-such", "-o", str(tmp_path / "empty"))
    assert code == 0 and "empty and still verifiable" in err
    code, _, err = run(capsys, "verify-export", str(tmp_path / "empty"))
    assert code == 0 and "empty bundle" in err
    code, _, err = run(capsys, "export-compliance", "-o", str(tmp_path / "none"))
    assert code == 1 and "exactly one" in err


def test_export_compliance_names_a_stream_the_journal_lacks(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "export-compliance", "--stream", "run-7-000005", "-o", str(tmp_path / "typo"))
    assert code == 0 and json.loads(out)["events"] == 0 and "empty and still verifiable" in err
    assert "warning: --stream run-7-000005: no stream 'run-7-000005'" in err and "(did you mean run-7-00000" in err
    code, out, err = run(
        capsys, "export-compliance", "--stream", "run-7-0000005", "--stream", "nope", "-o", str(tmp_path / "one")
    )
    assert code == 0 and json.loads(out)["events"] > 0 and "warning: --stream nope: no stream 'nope'" in err
    assert "run-7-0000005:" not in err  # the stream it has is not named


def test_verify_export_of_a_folder_without_manifest_is_one_line_and_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "not-a-bundle").mkdir()
    code, out, err = run(capsys, "verify-export", str(tmp_path / "not-a-bundle"))
    lines = err.splitlines()
    assert code == 1 and out == "" and len(lines) == 2 and "Errno" not in err
    assert lines[0] == f"error: {tmp_path / 'not-a-bundle'}: not a compliance bundle: it has no manifest.json"
    assert lines[1].startswith("Hint: a bundle folder holds manifest.json") and "journal export-compliance" in lines[1]


def test_verify_export_names_derived_content_edited_with_its_digest(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from toolkit.journal.retention import file_sha256

    out_dir = tmp_path / "bundle"
    run(capsys, "export-compliance", "--correlation", "session-7-0000002", "-o", str(out_dir))
    page = out_dir / "report.html"
    page.write_text(page.read_text(encoding="utf-8").replace("safe to merge", "fine to merge", 1), encoding="utf-8")
    m = json.loads((out_dir / "manifest.json").read_text())
    m["files"]["report.html"]["sha256"] = file_sha256(page)
    (out_dir / "manifest.json").write_text(json.dumps(m))
    code, out, err = run(capsys, "verify-export", str(out_dir), "--format", "csv")
    assert code == 3 and "report.html,derived_report," in out and "1 problems" in err and "Hint" not in err
    m["toolkit_version"] = "0.0.1"
    (out_dir / "manifest.json").write_text(json.dumps(m))
    code, out, err = run(capsys, "verify-export", str(out_dir), "--format", "csv")
    assert code == 3 and "Hint: the bundle was written by toolkit 0.0.1" in err


def test_chain_orphans_lists_every_orphan(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "chain", "--orphans")
    assert code == 0 and "orphans: 0" in err
    Journal.open(demo).append("lost", [{"event_type": "custom", "data": {}, "causation_id": "gone-1"}])
    code, out, err = run(capsys, "chain", "--orphans", "--format", "csv")
    assert code == 3 and "lost,1," in out and "gone-1" in out
    code, _, err = run(capsys, "chain")
    assert code == 2 and "EVENT_ID" in err
