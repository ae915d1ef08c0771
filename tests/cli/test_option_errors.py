"""A malformed option value fails the same way in every command: a usage error (exit 2), one line
naming the option and the value, then a ``Hint:`` line, and no traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import pytest
from helpers import REPO, run_cli

FIXTURE = REPO / "tests" / "fixtures" / "demo-journal"
STREAM = "run-7-0000000"

# (argv after the command's -j, the option, the bad value)
BAD_TIMES = [
    (["replay", STREAM, "--since", "{v}"], "--since"),
    (["replay", STREAM, "--at", "{v}"], "--at"),
    (["state", STREAM, "--at", "{v}"], "--at"),
    (["regrade", "all", "--dry-run", "--since", "{v}"], "--since"),
    (["rollup", "--until", "{v}"], "--until"),
    (["rollup", "--cost", "repriced", "--as-of", "{v}"], "--as-of"),
    (["reprice", "--as-of", "{v}"], "--as-of"),
    (["reprice", "--since", "{v}"], "--since"),
    (["purge", "--before", "{v}"], "--before"),
    (["correlation", "session-7-0000002", "--since", "{v}"], "--since"),
    (["report", "overview", "-o", "{tmp}/o.html", "--since", "{v}"], "--since"),
    (["export-compliance", "-o", "{tmp}/bundle", "--until", "{v}"], "--until"),
]
# a time without an offset, a date that does not exist, not a time at all
TIME_VALUES = ["2026-11-01T09:00:00", "2026-13-01", "yesterday"]

# every command taking both --since and --until: argv after the command's -j, without them
RANGE_COMMANDS = [
    ["correlation", "session-7-0000002"],
    ["export-compliance", "--correlation", "session-7-0000002", "-o", "{tmp}/bundle"],
    ["regrade", "all", "--dry-run"],
    ["replay", STREAM],
    ["report", "overview", "-o", "{tmp}/o.html"],
    ["reprice"],
    ["rollup"],
]
# (--since, --until) holding no time: reversed, equal, the same instant written two ways
EMPTY_RANGES = [
    ("2026-12-01", "2026-11-01"),
    ("2026-11-01", "2026-11-01"),
    ("2026-11-01T02:00:00+02:00", "2026-11-01T00:00:00Z"),
]

BAD_PARAMS = [
    (["sql", "journal/streams", "-p", "{v}"], "limit"),
    (["report", "run", "-o", "{tmp}/o.html", "-p", f"stream={STREAM}", "-p", "{v}"], "max_events"),
    (["regrade", "budget", "--dry-run", "-p", "{v}"], "max_tokens"),
    (["bisect", "budget", STREAM, "-p", "{v}"], "max_tokens"),
]


@pytest.fixture(scope="module")
def journal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("opt") / "j"
    shutil.copytree(FIXTURE, path)
    return path


def fail(capsys: pytest.CaptureFixture[str], journal: Path, tmp: Path, argv: list[str], value: str) -> list[str]:
    """Run the command with ``value``; check the shape every bad option value must have; its two lines."""
    args = [a.format(v=value, tmp=tmp) for a in argv]
    code, out, err = run_cli(capsys, args[0], "-j", str(journal), *args[1:])
    lines = err.splitlines()
    assert (code, out) == (2, ""), (args, code, err)
    assert "Traceback" not in err and len(lines) == 2, (args, err)
    assert lines[0].startswith("error: ") and lines[1].startswith("Hint: "), (args, err)
    return lines


@pytest.mark.parametrize("value", TIME_VALUES)
@pytest.mark.parametrize(("argv", "option"), BAD_TIMES, ids=lambda x: " ".join(x) if isinstance(x, list) else x)
def test_a_bad_time_is_one_usage_error_naming_the_option_and_the_value(
    capsys: pytest.CaptureFixture[str], journal_dir: Path, tmp_path: Path, argv: list[str], option: str, value: str
) -> None:
    first, hint = fail(capsys, journal_dir, tmp_path, argv, value)
    assert option in first and repr(value) in first, first
    assert f"{option} 2026-11-01T09:00:00Z" in hint, hint  # an example of the option, with an offset


@pytest.mark.parametrize("value", TIME_VALUES)
def test_every_command_gives_the_same_message_for_a_bad_time(
    capsys: pytest.CaptureFixture[str], journal_dir: Path, tmp_path: Path, value: str
) -> None:
    """One parser: the message differs only by the option named."""
    shapes = {
        tuple(line.replace(option, "OPTION") for line in fail(capsys, journal_dir, tmp_path, argv, value))
        for argv, option in BAD_TIMES
    }
    assert len(shapes) == 1, shapes


@pytest.mark.parametrize(("argv", "param"), BAD_PARAMS, ids=lambda x: x[0] if isinstance(x, list) else x)
def test_a_bad_param_is_one_usage_error_whether_malformed_or_of_the_wrong_type(
    capsys: pytest.CaptureFixture[str], journal_dir: Path, tmp_path: Path, argv: list[str], param: str
) -> None:
    for value in (param, f"{param}=lots", f"={param}"):  # no '=', a value its type refuses, no name
        first, _hint = fail(capsys, journal_dir, tmp_path, argv, value)
        assert "-p/--param" in first and repr(value) in first, first


@pytest.mark.parametrize("query", ["rollups/usage", "rollups/totals"])
def test_sql_refuses_a_dimension_as_rollup_by_does(
    capsys: pytest.CaptureFixture[str], journal_dir: Path, tmp_path: Path, query: str
) -> None:
    from toolkit.analysis.rollup import DIMENSIONS

    first, hint = fail(capsys, journal_dir, tmp_path, ["sql", query, "-p", "{v}"], "by=model,nope")
    assert "-p/--param" in first and "'by=model,nope'" in first and "'nope' is not one of" in first, first
    assert all(d in hint for d in DIMENSIONS) and "-p by=model,tool" in hint, hint
    fail(capsys, journal_dir, tmp_path, ["rollup", "--by", "{v}"], "nope")  # the same refusal (exit 2)
    code, out, _ = run_cli(capsys, "sql", "-j", str(journal_dir), query, "-p", "by=model,day", "--format", "csv")
    assert code == 0 and out.startswith("model,") and len(out.splitlines()) > 1


@pytest.mark.parametrize("command", ["append", "import"])
@pytest.mark.parametrize("value", ["bad type!", "a/b", ""])
def test_a_stream_type_the_journal_refuses_is_a_usage_error_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, value: str
) -> None:
    """``journal append --stream-type 'bad type!'`` was appended as given: a partition folder no
    reader could find, after which every query and append of the journal failed. ``journal import``
    blamed the option's value on line 1 of the file. Both now refuse the option (exit 2)."""
    journal = tmp_path / "j"
    shutil.copytree(FIXTURE, journal)
    event = '{"stream_id": "new-run", "event_type": "user_message", "data": {}}\n'
    source = tmp_path / "events.jsonl"
    source.write_text(event)
    count = "SELECT count(*) AS n FROM events"
    _, before, _ = run_cli(capsys, "sql", "-j", str(journal), count, "--format", "csv")
    paths = [str(source)] if command == "import" else []
    code, out, err = run_cli(capsys, command, "-j", str(journal), "--stream-type", value, *paths, stdin=event)
    lines = err.splitlines()
    assert (code, out) == (2, "") and "Traceback" not in err, err
    assert lines[-2].startswith("error: ") and "--stream-type" in lines[-2] and repr(value) in lines[-2], err
    assert lines[-1] == "Hint: use letters, digits, '_', '-' and '.', e.g. agent_run", err
    code, after, err = run_cli(capsys, "sql", "-j", str(journal), count, "--format", "csv")
    assert (code, after) == (0, before), err


@pytest.mark.parametrize(
    ("argv", "option", "known"),
    [
        (["import", "--from", "{v}", "{tmp}/events.jsonl"], "--from", "formats: auto, agentstore"),
        (["export", STREAM, "--to", "{v}", "-o", "{tmp}/out"], "--to", "formats: agentstore, evennia-archive, jsonl"),
    ],
    ids=["import", "export"],
)
def test_an_unknown_format_is_a_usage_error_listing_the_formats(
    capsys: pytest.CaptureFixture[str], journal_dir: Path, tmp_path: Path, argv: list[str], option: str, known: str
) -> None:
    """--from xml / --to xml exited 1 like a failure of the work, not 2 like every other bad option value."""
    (tmp_path / "events.jsonl").write_text('{"stream_id": "s", "event_type": "x", "data": {}}\n')
    first, hint = fail(capsys, journal_dir, tmp_path, argv, "xml")
    assert option in first and "'xml'" in first, first
    assert hint.startswith(f"Hint: {known}"), hint


def test_snapshot_every_below_one_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], journal_dir: Path, tmp_path: Path
) -> None:
    first, hint = fail(capsys, journal_dir, tmp_path, ["snapshot", "--every", "{v}"], "0")
    assert "--every" in first and "positive interval" in first and hint == "Hint: e.g. --every 1000", first


@pytest.mark.parametrize(
    ("extra", "reason"),
    [(["--from", "xml"], "'xml': not a format"), (["--from", "jsonl"], "no such file"), ([], "no such file")],
)
def test_an_import_refused_before_reading_makes_no_journal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str], reason: str
) -> None:
    """journal import made the journal at -j first, then found the format unknown or the file missing:
    a failed command left an empty journal behind (and a mistyped -j became a new journal)."""
    journal = tmp_path / "new-journal"
    code, out, err = run_cli(capsys, "import", "-j", str(journal), *extra, str(tmp_path / "missing.jsonl"))
    assert code in (1, 2) and out == "" and reason in err and "Hint: " in err, err
    assert not journal.exists()


@pytest.mark.parametrize("value", ["data..", "nope_col", ""])
def test_an_idempotency_key_that_names_no_field_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], journal_dir: Path, tmp_path: Path, value: str
) -> None:
    """--idempotency-key data.. exited 1 after sniffing the files; '' was taken as no option at all."""
    (tmp_path / "events.jsonl").write_text('{"stream_id": "s", "event_type": "x", "data": {}}\n')
    argv = ["import", "--idempotency-key", "{v}", "{tmp}/events.jsonl"]
    first, hint = fail(capsys, journal_dir, tmp_path, argv, value)
    assert "--idempotency-key" in first and repr(value) in first and "not a canonical column" in first, first
    assert hint.startswith("Hint: e.g. --idempotency-key data.dispatch_id"), hint


def test_every_command_taking_since_and_until_is_checked_for_an_empty_range() -> None:
    """A new command with --since/--until joins RANGE_COMMANDS (and so the test below)."""
    from toolkit.cli.main import COMMANDS, cli

    ctx = click.Context(cli)
    taking = {
        name for name in COMMANDS if {"since", "until"} <= {p.name for p in (cli.get_command(ctx, name) or cli).params}
    }
    assert taking == {argv[0] for argv in RANGE_COMMANDS}


@pytest.mark.parametrize(("since", "until"), EMPTY_RANGES, ids=["reversed", "equal", "equal-offset"])
@pytest.mark.parametrize("argv", RANGE_COMMANDS, ids=lambda argv: argv[0])
def test_since_not_before_until_is_one_usage_error_naming_both(
    capsys: pytest.CaptureFixture[str], journal_dir: Path, tmp_path: Path, argv: list[str], since: str, until: str
) -> None:
    """journal rollup --since 2026-12-01 --until 2026-11-01 warned and exited 0 with nothing; the
    other commands ran over an empty window. Every one now refuses it (exit 2), in either option order,
    before anything is read or written."""
    for order in (["--since", since, "--until", until], ["--until", until, "--since", since]):
        first, hint = fail(capsys, journal_dir, tmp_path, [*argv, *order], "")
        assert f"--since {since!r} is not before --until {until!r}" in first, first
        if since == "2026-12-01":
            assert (
                hint == "Hint: --since is the start (inclusive), --until the end (exclusive): "
                "--since 2026-11-01 --until 2026-12-01"
            ), hint
        else:
            assert hint == "Hint: --until is exclusive: one day is --since 2026-11-01 --until 2026-11-02", hint
        assert list(tmp_path.iterdir()) == []


# how journal report is given each end of its range: both -p, or one -p and one option
REPORT_RANGE_FORMS = [("since", "until"), ("--since", "until"), ("since", "--until")]


@pytest.mark.parametrize(("since", "until"), EMPTY_RANGES, ids=["reversed", "equal", "equal-offset"])
@pytest.mark.parametrize(("since_as", "until_as"), REPORT_RANGE_FORMS, ids=lambda name: name)
@pytest.mark.parametrize("report", ["overview", "regrade", "compliance"])
def test_report_params_since_not_before_until_are_the_same_usage_error(
    capsys: pytest.CaptureFixture[str],
    journal_dir: Path,
    tmp_path: Path,
    report: str,
    since_as: str,
    until_as: str,
    since: str,
    until: str,
) -> None:
    """journal report overview -p since=2026-12-01 -p until=2026-11-01 wrote an empty report and
    exited 0. The range given as report parameters (or one of them) now goes through the check of
    --since/--until: the same usage error (exit 2), each end named as it was given, and no file."""

    def given(name: str, value: str) -> list[str]:
        return [name, value] if name.startswith("--") else ["-p", f"{name}={value}"]

    def spelled(name: str, value: str) -> str:
        return f"{name} {value}" if name.startswith("--") else f"-p {name}={value}"

    argv = ["report", report, "-o", "{tmp}/o.html", *(["-p", "subject=user-0001"] if report == "compliance" else [])]
    first, hint = fail(capsys, journal_dir, tmp_path, [*argv, *given(since_as, since), *given(until_as, until)], "")
    assert f"{spelled(since_as, repr(since))} is not before {spelled(until_as, repr(until))}" in first, first
    assert first.endswith(": the range holds no time"), first
    s, u = spelled(since_as, "").strip(" ="), spelled(until_as, "").strip(" =")
    if since == "2026-12-01":
        assert hint == (
            f"Hint: {s} is the start (inclusive), {u} the end (exclusive): "
            f"{spelled(since_as, '2026-11-01')} {spelled(until_as, '2026-12-01')}"
        ), hint
    else:
        assert (
            hint
            == f"Hint: {u} is exclusive: one day is {spelled(since_as, '2026-11-01')} {spelled(until_as, '2026-11-02')}"
        )
    assert list(tmp_path.iterdir()) == []


def test_report_params_holding_time_still_write_the_report(
    capsys: pytest.CaptureFixture[str], journal_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o.html"
    code, stdout, err = run_cli(
        capsys,
        "report",
        "-j",
        str(journal_dir),
        "overview",
        "-p",
        "since=2026-11-01",
        "-p",
        "until=2026-11-02",
        "-o",
        str(out),
    )
    assert (code, stdout.strip(), err) == (0, str(out), "") and out.stat().st_size > 0
