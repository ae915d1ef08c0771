# ruff: noqa: F811  (pytest fixtures imported from replay_fixtures are parameters here)
"""journal replay / state / snapshot / project through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from helpers import build_tool_failure_loop, run_cli
from replay_fixtures import fresh_cache, samples_journal  # noqa: F401  (pytest fixtures)

from toolkit.analysis.run_story import story_of_run
from toolkit.journal import Journal


def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str, stdin: str = ""
) -> tuple[int, str, str]:
    return run_cli(capsys, *argv, stdin=stdin)


def test_replay_state_snapshot_project(
    journal: Journal, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    build_tool_failure_loop(journal)
    j = str(journal.path)
    code, out, _ = run(
        capsys, monkeypatch, "replay", "-j", j, "tool_failure_loop", "--format", "json", "--to-version", "5"
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["title"] for r in rows][-2:] == ["Tool called", "Tool failed"]
    code, out, _ = run(
        capsys,
        monkeypatch,
        "replay",
        "-j",
        j,
        "tool_failure_loop",
        "--type",
        "llm_response",
        "--since",
        "2026-03-02T09:04:00Z",
        "--format",
        "csv",
    )
    assert code == 0 and len(out.splitlines()) == 1 + 2
    code, out, err = run(
        capsys, monkeypatch, "state", "-j", j, "tool_failure_loop", "--version", "5", "--format", "json"
    )
    assert code == 0 and json.loads(out)["tool_failures"] == {"shell": 1} and "version 5 of 13" in err
    code, out, _ = run(
        capsys,
        monkeypatch,
        "state",
        "-j",
        j,
        "tool_failure_loop",
        "--diff-from",
        "3",
        "--version",
        "4",
        "--format",
        "csv",
    )
    assert code == 0 and "tools_called.shell,,1" in out
    code, out, err = run(capsys, monkeypatch, "state", "-j", j, "tool_failure_loop", "--at", "2026-01-01")
    assert code == 0 and "initial state" in err
    code, out, _ = run(capsys, monkeypatch, "snapshot", "-j", j, "--every", "4")
    assert code == 0 and json.loads(out)["written"] == 3
    code, _, err = run(capsys, monkeypatch, "state", "-j", j, "tool_failure_loop", "--version", "9")
    assert code == 0 and "from the snapshot at version 8" in err
    code, out, _ = run(capsys, monkeypatch, "project", "-j", j)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and {x["projection"] for x in lines} >= {"runs", "tool_calls"}
    code, out, _ = run(capsys, monkeypatch, "project", "-j", j, "runs")
    assert code == 0 and json.loads(out)["reason"] == "up to date"


def test_bad_input_exit_codes(
    journal: Journal, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    build_tool_failure_loop(journal)
    j = str(journal.path)
    code, _, err = run(capsys, monkeypatch, "state", "-j", j, "tool_failure_lop")
    assert code == 1 and "did you mean tool_failure_loop" in err
    code, _, err = run(capsys, monkeypatch, "state", "-j", j, "tool_failure_loop", "--version", "20")
    assert code == 1 and "versions 1..13" in err and "Hint:" in err
    code, _, err = run(capsys, monkeypatch, "replay", "-j", j, "tool_failure_loop", "--since", "yesterday")
    assert code == 2 and "ISO 8601" in err
    code, _, err = run(capsys, monkeypatch, "state", "-j", j, "tool_failure_loop", "--at", "2026-03-02T09:00:00")
    assert code == 2 and "no time zone" in err
    code, _, err = run(capsys, monkeypatch, "snapshot", "-j", j, "--every", "0")
    assert code == 2 and "--every" in err and "positive interval" in err
    code, _, err = run(capsys, monkeypatch, "project", "-j", j, "nope")
    assert code == 1 and "no projection 'nope'" in err


def test_replay_names_the_types_a_stream_lacks(
    journal: Journal, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """journal replay --type tool_caled printed an empty timeline and nothing else."""
    build_tool_failure_loop(journal)
    j = str(journal.path)
    code, out, err = run(
        capsys, monkeypatch, "replay", "-j", j, "tool_failure_loop", "--type", "tool_caled,tool_result"
    )
    assert code == 0 and "note: stream tool_failure_loop has no event of type tool_caled (its types: " in err
    assert "tool_called" in err.split("its types:")[1] and "Tool failed" in out
    code, out, err = run(capsys, monkeypatch, "replay", "-j", j, "tool_failure_loop", "--type", "tool_called")
    assert code == 0 and "no event of type" not in err and "Tool called" in out


def test_journal_demo_tells_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, monkeypatch, "demo", "-j", str(tmp_path / "demo"), "--runs", "40", "--seed", "3")
    assert code == 0 and "one run, explained: journal replay run-" in out
    assert "Model answered" in out and "its state at versions" in out and "status" in out


def test_story_of_a_real_sample(samples_journal: Journal) -> None:
    story = story_of_run(samples_journal, "c5541406-7d8d-407f-a0bf-aa20908fc83b")
    assert story.versions == (6, 13) and story.timeline.height == 13
    row = dict(zip(story.states["field"], story.states["v6"], strict=True))
    assert (row["status"], row["errors"], row["tool_failures"]) == ("aborted", "1", "run_tests 1")
    assert story.states.filter(pl.col("field") == "status")["v13"].item() == "answered"


def test_state_of_a_purged_version_is_an_error(
    journal: Journal, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """journal state --version 2 after versions 1-3 were purged printed a blank state and exited 0."""
    import datetime as dt

    from toolkit.journal.retention import purge_before

    old = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
    journal.append(
        "r",
        [{"event_type": "user_message", "data": {}, "occurred_at": old + dt.timedelta(days=20 * i)} for i in range(6)],
    )
    purge_before(journal, dt.datetime(2025, 3, 1, tzinfo=dt.UTC), now=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    j = str(journal.path)
    code, out, err = run(capsys, monkeypatch, "state", "-j", j, "r", "--version", "2")
    assert code == 1 and out == "" and "version 2 was purged on" in err and "by retention" in err
    assert "versions 4..6 remain" in err and "Hint: ask for a version between 4 and 6" in err
    code, out, err = run(capsys, monkeypatch, "state", "-j", j, "r", "--format", "json")
    assert code == 0 and json.loads(out)["events"] == 3 and "note: versions 1..3 were purged" in err


def test_replay_of_a_purged_run_says_where_its_timeline_starts(
    journal: Journal, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """journal replay --to-version 2 after versions 1-3 were purged printed an empty timeline, no word why."""
    import datetime as dt

    from toolkit.journal.retention import purge_before

    old = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
    journal.append(
        "r",
        [{"event_type": "user_message", "data": {}, "occurred_at": old + dt.timedelta(days=20 * i)} for i in range(6)],
    )
    journal.append("kept", [{"event_type": "user_message", "data": {}}])
    purge_before(journal, dt.datetime(2025, 3, 1, tzinfo=dt.UTC), now=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    j = str(journal.path)
    code, out, err = run(capsys, monkeypatch, "replay", "-j", j, "r", "--to-version", "2", "--format", "json")
    assert code == 0 and out.strip() == ""  # JSON lines: no event up to version 2
    assert (
        "note: versions 1..3 were purged on " in err
        and "by retention" in err
        and "the timeline starts at version 4" in err
    )
    code, out, err = run(capsys, monkeypatch, "replay", "-j", j, "kept")
    assert code == 0 and "note:" not in err


def test_at_a_time_is_the_longest_prefix_that_occurred_by_then_everywhere(
    journal: Journal, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 3 carries a late clock (09:30, after version 4's 09:20). --at 09:25 folded up to
    version 4 (the last event at or before the time), a state holding an event that occurred at
    09:30; it is now the state after version 2, the longest prefix whose events all occurred by
    09:25, and state_at, journal state --at, journal replay --at and the run explorer agree."""
    import datetime as dt

    from helpers import ev

    from toolkit.analysis.replay import fold_to, replay, state_at
    from toolkit.analysis.run_explorer import explore_step
    from toolkit.errors import VersionPurgedError
    from toolkit.journal.retention import remove_stream_prefix

    def t(minute: int) -> dt.datetime:
        return dt.datetime(2026, 3, 2, 9, minute, tzinfo=dt.UTC)

    events = [
        ev("user_message", {"text": "book"}, occurred_at=t(0)),
        ev("tool_called", tool_name="book", occurred_at=t(10)),
        ev("tool_result", tool_name="book", occurred_at=t(30)),  # a source clock out of order
        ev("llm_response", model="m", tokens_in=7, occurred_at=t(20)),
        ev("llm_response", model="m", tokens_in=9, occurred_at=t(40)),
    ]
    journal.append("ooo", events)
    journal.append("cut", events)
    j = str(journal.path)
    for minute, version in ((5, 1), (25, 2), (30, 4), (45, 5)):
        at = t(minute)
        result = fold_to(journal, "ooo", at=at)
        assert result.version == version, minute
        assert result.state == state_at(journal, "ooo", version=version)  # a state the run really had
        assert ("out of version order" in str(result.note)) == (minute == 25)
        assert replay(journal, "ooo", at=at)["version"].to_list() == list(range(1, version + 1))
        assert explore_step(journal, "ooo", at=at).version == version
        iso = at.isoformat().replace("+00:00", "Z")
        code, out, err = run(capsys, monkeypatch, "state", "-j", j, "ooo", "--at", iso, "--format", "json")
        assert code == 0 and f"state at version {version} of 5" in err and json.loads(out)["version"] == version
        assert ("version 4 at 2026-03-02T09:20:00+00:00" in err) == (minute == 25), err
        code, out, err = run(capsys, monkeypatch, "replay", "-j", j, "ooo", "--at", iso, "--format", "json")
        assert code == 0 and [json.loads(line)["version"] for line in out.splitlines()] == list(range(1, version + 1))
        assert ("out of version order" in err) == (minute == 25)
    # versions 1-3 removed (archive --delete): at 09:25 the prefix ends inside them, not at version 4
    remove_stream_prefix(journal, "cut", 4, reason="archive")
    with pytest.raises(VersionPurgedError, match=r"falls in versions 1\.\.3"):
        state_at(journal, "cut", at=t(25))
    assert fold_to(journal, "cut", at=t(30)).version == 4


def test_replay_at_a_time_inside_purged_versions_is_the_error_state_gives(
    journal: Journal, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Versions 1-3 removed, version 3 had occurred at 09:30: the state at 09:25 is a state inside
    them (VersionPurgedError), but replay --at 09:25 showed version 4 (09:20), an event that follows
    one that occurred after 09:25, so the timeline did not stop where journal state --at stops."""
    from helpers import build_cut_with_a_late_clock

    from toolkit.analysis.replay import replay, state_at
    from toolkit.errors import VersionPurgedError

    t = build_cut_with_a_late_clock(journal)
    with pytest.raises(VersionPurgedError, match=r"falls in versions 1\.\.3"):
        state_at(journal, "cut", at=t(25))
    with pytest.raises(VersionPurgedError, match=r"falls in versions 1\.\.3"):
        replay(journal, "cut", at=t(25))
    j = str(journal.path)
    code, out, err = run(capsys, monkeypatch, "replay", "-j", j, "cut", "--at", "2026-03-02T09:25:00Z")
    assert code == 1 and out == "" and "falls in versions 1..3" in err and "Hint:" in err
    assert replay(journal, "cut", at=t(30))["version"].to_list() == [4]  # every removed event by then
    assert replay(journal, "cut", at=t(45))["version"].to_list() == [4, 5]
    assert replay(journal, "cut", to_version=5)["version"].to_list() == [4, 5]
