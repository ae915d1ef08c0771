# ruff: noqa: F811  (pytest fixtures imported from invariant_journals are parameters here)
"""Saved rule keys: the shared pass judged over what the first re-grade saved gives exactly the
failures the rules' own SQL/Polars definitions give, and stale or removed keys are never read."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from invariant_journals import demo, everything  # noqa: F401  (pytest fixtures)
from test_invariants import HISTORIES, HISTORY_RULES, _reference, history_journal
from test_shared_pass import PARAMS, _per_rule

from toolkit.analysis import regrade as regrade_module
from toolkit.analysis import rule_keys, shared_pass
from toolkit.analysis.rules import RuleSet
from toolkit.analysis.shared_pass import BUILTIN_COLUMNS, Frame, frame_failures, frame_verdicts, load_frame
from toolkit.journal import Journal, rewrite
from toolkit.journal.maintenance import compact
from toolkit.journal.redaction import redact_subject
from toolkit.journal.retention import remove_stream_prefix


def _copy(journal: Journal, tmp_path: Path) -> Journal:
    assert isinstance(journal.path, Path)
    shutil.copytree(journal.path, tmp_path / "j", ignore=shutil.ignore_patterns(rule_keys.KEYS_DIR))
    return Journal.open(tmp_path / "j")


@contextmanager
def _saved_frame(journal: Journal) -> Iterator[Frame]:
    frame = rule_keys.load_saved(journal)
    assert frame is not None and "cause" in frame.s.columns  # the saved frame, not a read of the journal
    try:
        yield frame
    finally:
        frame.o.close()


def _builtins() -> list[Any]:
    return [r for r in RuleSet.load().rules.values() if r.name in BUILTIN_COLUMNS]


def _grade(journal: Journal) -> dict[str, list[dict[str, Any]]]:
    rules = _builtins()
    out = shared_pass.shared_failures(journal, rules, {r.name: r.bind(PARAMS.get(r.name, {})) for r in rules})
    return {r.name: (t.to_pylist() if t is not None else [e]) for r, (t, e) in zip(rules, out, strict=True)}


@pytest.fixture(scope="module")
def saved(everything: Journal, demo: Journal, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Journal]:
    """Copies of the pattern and demo journals with keys saved by a first whole-journal grade."""
    out = {}
    for where, journal in (("patterns", everything), ("demo", demo)):
        copy = _copy(journal, tmp_path_factory.mktemp(where))
        assert rule_keys.load_saved(copy) is None
        _grade(copy)  # reads the journal, saves the keys
        out[where] = copy
    return out


@pytest.mark.parametrize("name", sorted(BUILTIN_COLUMNS))
@pytest.mark.parametrize("where", ["patterns", "demo"])
def test_failures_over_saved_keys_equal_the_rules_own_definitions(name: str, where: str, saved: dict[str, Journal]) -> None:
    journal = saved[where]
    bound = RuleSet.load().get(name).bind(PARAMS.get(name, {}))
    with _saved_frame(journal) as frame:
        got = frame_failures(frame, name, bound).to_pylist()
    assert got == _per_rule(journal, name, bound)
    assert got == frame_failures(load_frame(journal, [name]), name, bound).to_pylist()
    if where == "patterns":
        assert got, "no stream fails: the comparison would be empty"


def test_ids_that_are_not_uuids_come_back_as_written(tmp_path: Path) -> None:
    ids = [
        "evt-1", "7F4A7B60-5193-57C2-8A9C-D2439C000001", "7f4a7b60-5193-57c2-8a9c-d2439c000002",
        "7f4a7b60-5193-57c2-8a9c-d2439c00000", "ffffffff-ffff-ffff-ffff-ffffffffffff", "00000000-0000-0000-0000-000000000000",
        "7f4a7b60+5193-57c2-8a9c-d2439c000003", "7f4a7b60-+193-57c2-8a9c-d2439c000004",
    ]
    journal = Journal.create(tmp_path / "j")
    journal.append("run-1", [{"event_type": "error", "event_id": i, "data": {"n": n}} for n, i in enumerate(ids)], expected_version=0)
    journal.append("run-2", [{"event_type": "error", "event_id": ids[1], "data": None}], expected_version=0)  # used twice
    _grade(journal)
    with _saved_frame(journal) as frame:
        assert sorted(frame.o.take("event_id", frame.s.get_column("orig")).to_list()) == sorted([*ids, ids[1]])
    failures = _grade(journal)["journal_integrity"]
    assert {f["message"] for f in failures} == {f"event_id {ids[1]} used 2 times"}
    assert failures == _per_rule(journal, "journal_integrity", RuleSet.load().get("journal_integrity").bind({}))


def test_an_append_is_judged_over_the_keys_and_the_events_appended_since(
    demo: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = _copy(demo, tmp_path)
    before = _grade(journal)
    folder = rule_keys.saved_folder(journal)
    assert folder is not None
    stream = "run-appended-after-keys"
    journal.append(stream, [{"event_type": "tool_result", "tool_name": "search", "tool_call_id": "never-called", "data": None}], expected_version=0)
    assert rule_keys.saved_folder(journal) is None  # not the journal's events any more
    tailed = _tailed(journal)
    tailed.o.close()
    after = _grade(journal)
    assert stream not in {r["stream_id"] for r in before["tool_result_pairing"]}
    assert stream in {r["stream_id"] for r in after["tool_result_pairing"]}
    assert (folder.parent / "CURRENT").read_text().strip() == folder.name  # judged over them, not saved again
    monkeypatch.setattr(rule_keys, "TAIL_SHARE", 0.0)  # no tail: read and saved anew
    assert _grade(journal) == after
    again = rule_keys.saved_folder(journal)
    assert again is not None and again != folder and not folder.exists()  # saved anew, the old ones removed
    assert json.loads((again / "manifest.json").read_text())["delta_version"] == journal.delta_version
    assert _grade(journal) == after


def _two_files_a_partition(tmp_path: Path) -> Journal:
    """A journal whose one partition holds two files (two appends), keys saved by a grade."""
    journal = Journal.create(tmp_path / "j")
    for n in range(2):
        journal.append(
            "run-1",
            [
                {"event_type": "tool_called", "tool_name": "search", "tool_call_id": f"c{n}", "data": {"q": n}},
                {"event_type": "tool_result", "tool_name": "search", "tool_call_id": f"c{n}", "data": None},
                {"event_type": "tool_result", "tool_name": "search", "tool_call_id": "orphan", "data": None},
            ],
            stream_type="agent_run",
        )
    assert len(journal.files()) == 2
    _grade(journal)
    return journal


def test_a_compaction_keeps_the_keys(demo: Journal, tmp_path: Path) -> None:
    """journal compact rewrites the same rows into other files: the keys (which copy the events,
    not the files) are read across its commits, and judge as a read of the compacted journal."""
    journal = _copy(demo, tmp_path)
    before = _grade(journal)
    folder = rule_keys.saved_folder(journal)
    saved_at = journal.delta_version
    assert folder is not None
    result = compact(journal, full=True)
    assert result.partitions > 1 and journal.delta_version == saved_at + result.partitions
    assert rule_keys.saved_folder(journal) == folder
    assert _grade(journal) == before
    assert rule_keys.saved_folder(journal) == folder  # read, not saved again
    shared_pass.SAVED_KEYS = False
    try:
        assert _grade(journal) == before  # the compacted journal's own events
    finally:
        shared_pass.SAVED_KEYS = True


def test_another_engines_optimize_keeps_the_keys_and_a_later_append_does_not(tmp_path: Path) -> None:
    journal = _two_files_a_partition(tmp_path)
    before = _grade(journal)
    folder = rule_keys.saved_folder(journal)
    assert folder is not None
    metrics = journal.delta_table().optimize.compact()  # deltalake's OPTIMIZE: dataChange false
    assert metrics["numFilesRemoved"] == 2 and len(journal.files()) == 1
    assert rule_keys.saved_folder(journal) == folder and _grade(journal) == before
    journal.append("run-1", [{"event_type": "tool_result", "tool_name": "search", "tool_call_id": "late", "data": None}])
    assert rule_keys.saved_folder(journal) is None  # an append after the compaction: a tail
    after = _grade(journal)
    assert len(after["tool_result_pairing"]) == len(before["tool_result_pairing"])  # run-1 failed already
    frame = _tailed(journal)
    try:
        _same_as_a_read(journal, frame)
    finally:
        frame.o.close()


def test_a_commit_that_changes_the_table_or_an_unreadable_log_entry_makes_the_keys_stale(tmp_path: Path) -> None:
    journal = _two_files_a_partition(tmp_path)
    assert rule_keys.saved_folder(journal) is not None
    journal.delta_table().alter.set_table_properties({"delta.logRetentionDuration": "interval 60 days"})
    assert rule_keys.saved_folder(journal) is None  # a metaData action: not known to keep the rows
    _grade(journal)
    folder = rule_keys.saved_folder(journal)
    assert folder is not None
    compact(journal, full=True)
    entry = Path(journal.events_uri) / "_delta_log" / f"{journal.delta_version:020d}.json"
    text = entry.read_text()
    changed = text.replace('"dataChange":false', '"dataChange":true').replace('"toolkit.operation":"compact"', '"toolkit.operation":"x"')
    assert changed.count('"dataChange":true') > text.count('"dataChange":true') and '"x"' in changed
    entry.write_text(changed)
    assert rule_keys.saved_folder(journal) is None  # the same commit, no longer a compaction
    entry.write_text(text)
    assert rule_keys.saved_folder(journal) == folder  # a compaction again


def test_keys_of_another_table_at_the_same_version_are_not_read(demo: Journal, tmp_path: Path) -> None:
    journal = _copy(demo, tmp_path)
    _grade(journal)
    other = Journal.create(tmp_path / "other")
    other.append("run-x", [{"event_type": "user_message", "data": {"text": "hi"}}], expected_version=0)
    assert isinstance(journal.path, Path) and isinstance(other.path, Path)
    shutil.copytree(journal.path / rule_keys.KEYS_DIR, other.path / rule_keys.KEYS_DIR)
    folder = rule_keys.saved_folder(journal)
    assert folder is not None
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["delta_version"] = other.delta_version
    moved = other.path / rule_keys.KEYS_DIR / folder.name / "manifest.json"
    moved.write_text(json.dumps(manifest))
    assert rule_keys.load_saved(other) is None  # same version, another events table


def test_damaged_keys_are_read_from_the_journal_again(demo: Journal, tmp_path: Path) -> None:
    journal = _copy(demo, tmp_path)
    first = _grade(journal)
    folder = rule_keys.saved_folder(journal)
    assert folder is not None
    (folder / "keys.parquet").write_bytes(b"PAR1 cut short")
    assert rule_keys.load_saved(journal) is None
    assert _grade(journal) == first
    with _saved_frame(journal):
        pass


@pytest.mark.parametrize("how", ["purge", "redact"])
def test_a_purge_or_a_redaction_deletes_the_keys(how: str, demo: Journal, tmp_path: Path) -> None:
    journal = _copy(demo, tmp_path)
    _grade(journal)
    assert isinstance(journal.path, Path) and (journal.path / rule_keys.KEYS_DIR).exists()
    stream = sorted(journal.heads())[0]
    if how == "purge":
        remove_stream_prefix(journal, stream, 2, reason="test")
    else:
        subjects = journal.read_all(["subject_id"]).column("subject_id").drop_null()
        redact_subject(journal, subjects[0].as_py())
    assert not (journal.path / rule_keys.KEYS_DIR).exists()


def test_a_grade_reading_keys_a_later_save_replaces_still_reads_its_own(demo: Journal, tmp_path: Path) -> None:
    journal = _copy(demo, tmp_path)
    first = _grade(journal)
    name = "tool_result_pairing"
    bound = RuleSet.load().get(name).bind({})
    with _saved_frame(journal) as frame:
        old = rule_keys.saved_folder(journal)
        assert old is not None
        killed = old.parent / ".0123.tmp"  # a save killed long ago, and one another process is writing now
        writing = old.parent / ".4567.tmp"
        killed.mkdir()
        writing.mkdir()
        os.utime(killed, (time.time() - 7200, time.time() - 7200))
        assert rule_keys.save_frame(journal, load_frame(journal, sorted(BUILTIN_COLUMNS))) is not None
        assert not old.exists() and not killed.exists() and writing.exists()
        # the strings this grade had not read yet come from the files it opened
        assert frame_failures(frame, name, bound).to_pylist() == first[name]


def test_journal_regrade_saves_the_keys_and_reads_them_next_time(demo: Journal, tmp_path: Path) -> None:
    journal = _copy(demo, tmp_path)

    def findings() -> list[dict[str, Any]]:
        result = regrade_module.regrade(journal, ["all"], write=False)
        return sorted(result.findings.drop_columns(["batch_id"]).to_pylist(), key=lambda r: (r["rule"], r["stream_id"] or ""))

    first = findings()
    folder = rule_keys.saved_folder(journal)
    assert folder is not None  # the regrade (which reads one pinned version) saved them
    read: list[Path] = []
    load = rule_keys.load_saved
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rule_keys, "load_saved", lambda j: read.append(folder) or load(j))
        assert findings() == first
    assert read and rule_keys.saved_folder(journal) == folder  # read, not saved again
    shared_pass.SAVED_KEYS = False
    try:
        assert findings() == first
    finally:
        shared_pass.SAVED_KEYS = True


def test_a_journal_pinned_to_an_older_version_saves_no_keys(demo: Journal, tmp_path: Path) -> None:
    journal = _copy(demo, tmp_path)
    old = journal.delta_version
    journal.append("run-later", [{"event_type": "user_message", "data": {"text": "hi"}}], expected_version=0)
    pinned = journal.pinned(old)
    _grade(pinned)
    assert rule_keys.saved_folder(pinned) is None and rule_keys.saved_folder(journal) is None
    _grade(journal.pinned())  # the latest version, pinned: saved, and read by the journal itself
    assert rule_keys.saved_folder(journal) is not None


@pytest.mark.parametrize("name", sorted(BUILTIN_COLUMNS))
def test_strings_read_from_their_row_groups_only_are_those_of_the_whole_column(
    name: str, demo: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = _copy(demo, tmp_path)
    monkeypatch.setattr(rule_keys, "GROUP_ROWS", 4)  # a few failing events touch a few groups of 4 rows
    _grade(journal)
    bound = RuleSet.load().get(name).bind(PARAMS.get(name, {}))
    reads: list[str] = []
    with _saved_frame(journal) as frame:
        read = frame.o.read_row_groups  # type: ignore[attr-defined]
        monkeypatch.setattr(frame.o, "read_row_groups", lambda *a: reads.append(a[1]) or read(*a))
        got = frame_failures(frame, name, bound).to_pylist()
    assert got == _per_rule(journal, name, bound)
    if got and len(got) < 10:
        assert reads  # some strings came from their row groups only


def test_a_journal_of_more_event_types_than_a_byte_holds_keeps_every_type(tmp_path: Path) -> None:
    # sorted by name, the tool events come after 300 custom types: their codes pass 255
    journal = Journal.create(tmp_path / "j")
    journal.append("run-types", [{"event_type": f"custom-{i:03d}", "data": None} for i in range(300)], expected_version=0)
    journal.append(
        "run-orphan", [{"event_type": "tool_result", "tool_name": "search", "tool_call_id": "c-1", "data": None}], expected_version=0
    )
    _grade(journal)
    bound = RuleSet.load().get("tool_result_pairing").bind({})
    with _saved_frame(journal) as frame:
        got = frame_failures(frame, "tool_result_pairing", bound).to_pylist()
    assert got == _per_rule(journal, "tool_result_pairing", bound)
    assert [r["stream_id"] for r in got] == ["run-orphan"]


def test_an_append_while_a_grade_reads_the_journal_is_not_hidden_by_the_keys_it_saves(
    demo: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = _copy(demo, tmp_path)
    stream = "run-appended-during-the-read"
    read = shared_pass.load_frame

    def read_then_another_process_appends(*args: Any, **kwargs: Any) -> Frame:
        frame = read(*args, **kwargs)
        assert isinstance(journal.path, Path)
        other = Journal.open(journal.path)  # another writer, between this grade's read and its save
        other.append(stream, [{"event_type": "tool_result", "tool_call_id": "never-called", "data": None}], expected_version=0)
        return frame

    monkeypatch.setattr(shared_pass, "load_frame", read_then_another_process_appends)
    _grade(journal)
    monkeypatch.setattr(shared_pass, "load_frame", read)
    after = _grade(journal)  # the journal's latest version: it holds the appended stream
    assert stream in {r["stream_id"] for r in after["tool_result_pairing"]}


def _secrets_journal(path: Path) -> Journal:
    journal = Journal.create(path)
    journal.append("run-a", [{"event_type": "user_message", "event_id": f"secret-{v}", "data": {"text": "hi"}} for v in (1, 2, 3)])
    journal.append("run-b", [{"event_type": "user_message", "event_id": "b-1", "data": {"text": "hi"}}])
    return journal


def _saved_event_ids(journal: Journal) -> set[str]:
    """The event ids of every strings file under rule-keys (current, stale, half-written)."""
    assert isinstance(journal.path, Path)
    found: set[str] = set()
    for f in (journal.path / rule_keys.KEYS_DIR).rglob("strings.parquet"):
        found |= {i for i in pq.read_table(f, columns=["event_id"]).column("event_id").to_pylist() if i is not None}
    return found


def _another_process_saves(journal: Journal) -> None:
    assert isinstance(journal.path, Path)
    view = Journal.open(journal.path).pinned()
    rule_keys.save_frame(view, load_frame(view, sorted(BUILTIN_COLUMNS)))


def test_keys_saved_between_a_purges_drop_and_its_commit_are_deleted_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = _secrets_journal(tmp_path / "j")
    commit = rewrite.write_deltalake

    def a_grade_saves_then_the_purge_commits(*args: Any, **kwargs: Any) -> Any:
        _another_process_saves(journal)
        assert "secret-1" in _saved_event_ids(journal)
        return commit(*args, **kwargs)

    monkeypatch.setattr(rewrite, "write_deltalake", a_grade_saves_then_the_purge_commits)
    remove_stream_prefix(journal, "run-a", 3, reason="test")
    assert not _saved_event_ids(journal) & {"secret-1", "secret-2"}


def test_keys_a_grade_saves_while_a_purge_commits_are_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = _secrets_journal(tmp_path / "j")
    resolve = rule_keys.integrity_base

    def the_purge_commits_while_the_keys_are_built(frame: Frame) -> Any:
        monkeypatch.setattr(rule_keys, "integrity_base", resolve)
        remove_stream_prefix(Journal.open(tmp_path / "j"), "run-a", 3, reason="test")
        return resolve(frame)

    monkeypatch.setattr(rule_keys, "integrity_base", the_purge_commits_while_the_keys_are_built)
    _another_process_saves(journal)  # it found the journal at its latest version before the purge
    assert not _saved_event_ids(journal) & {"secret-1", "secret-2"}
    assert rule_keys.saved_folder(journal) is None


def test_a_save_finishing_after_another_keeps_the_keys_current_names(demo: Journal, tmp_path: Path) -> None:
    journal = _copy(demo, tmp_path)
    _grade(journal)
    ours = rule_keys.saved_folder(journal)
    assert ours is not None
    # another process's save wrote its keys and pointed CURRENT at them after ours did
    theirs = ours.parent / "their-keys"
    shutil.copytree(ours, theirs)
    (ours.parent / "CURRENT").write_text(theirs.name + "\n")
    rule_keys._remove_others(ours.parent, ours.name)  # our save's clean-up runs last
    assert rule_keys.saved_folder(journal) == theirs
    with _saved_frame(journal):
        pass


def test_a_manifest_without_its_vocabularies_is_read_as_damaged(demo: Journal, tmp_path: Path) -> None:
    journal = _copy(demo, tmp_path)
    first = _grade(journal)
    folder = rule_keys.saved_folder(journal)
    assert folder is not None
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["tool_names"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert rule_keys.load_saved(journal) is None
    assert _grade(journal) == first


@pytest.mark.parametrize("threshold, flag, saved", [(1, "--rule-keys", True), (1, "--no-rule-keys", False), (10**9, "--rule-keys", False)])
def test_journal_import_of_a_large_journal_saves_the_keys_the_first_regrade_reads(
    threshold: int, flag: str, saved: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers import run_cli

    monkeypatch.setattr(rule_keys, "KEYS_AT_IMPORT", threshold)  # "large": at least this many events
    sample = Path(__file__).resolve().parents[2] / "data" / "samples" / "generic" / "gateway-log.jsonl"
    mapping = sample.with_name("gateway-log.mapping.toml")
    code, out, err = run_cli(capsys, "import", "-j", str(tmp_path / "j"), str(sample), "--mapping", str(mapping), flag)
    assert code == 0, err
    journal = Journal.open(tmp_path / "j")
    assert json.loads(out)["imported"] > 0
    assert (rule_keys.saved_folder(journal) is not None) is saved
    assert ("rule keys saved for journal regrade" in err) is saved
    if saved:  # the first re-grade reads them, and finds what a read of the events finds
        with _saved_frame(journal):
            pass
        read: list[bool] = []
        load = rule_keys.load_saved
        monkeypatch.setattr(rule_keys, "load_saved", lambda j: read.append(True) or load(j))
        assert _grade(journal) == _grade_without_keys(journal) and read


def test_a_small_import_after_the_keys_were_saved_leaves_them_to_serve_with_the_events_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers import run_cli

    monkeypatch.setattr(rule_keys, "KEYS_AT_IMPORT", 1)
    monkeypatch.setattr(rule_keys, "TAIL_SHARE", 1.0)  # the sample holds 3 events: one more is a third
    sample = Path(__file__).resolve().parents[2] / "data" / "samples" / "generic" / "gateway-log.jsonl"
    mapping = sample.with_name("gateway-log.mapping.toml")
    code, _, err = run_cli(capsys, "import", "-j", str(tmp_path / "j"), str(sample), "--mapping", str(mapping))
    assert code == 0 and "rule keys saved" in err, err
    journal = Journal.open(tmp_path / "j")
    folder = rule_keys.saved_folder(journal)
    assert folder is not None
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"stream_id": "run-late", "event_type": "user_message", "data": {"text": "hi"}}) + "\n")
    code, out, err = run_cli(capsys, "import", "-j", str(tmp_path / "j"), str(more), "--from", "jsonl")
    assert code == 0 and json.loads(out)["imported"] == 1, err
    assert "serve journal regrade with the events imported since" in err and "rule keys saved" not in err
    assert rule_keys.serving(journal) == folder and rule_keys.saved_folder(journal) is None
    frame = _tailed(journal)
    frame.o.close()


def _grade_without_keys(journal: Journal) -> dict[str, list[dict[str, Any]]]:
    shared_pass.SAVED_KEYS = False
    try:
        return _grade(journal)
    finally:
        shared_pass.SAVED_KEYS = True


@settings(max_examples=25, deadline=None)
@given(streams=HISTORIES)
def test_saved_keys_judge_random_tool_histories_as_the_python_references(streams: list[list[dict[str, Any]]]) -> None:
    with history_journal(streams) as j:
        assert rule_keys.prepare(j) is not None
        with _saved_frame(j) as frame:
            for name in HISTORY_RULES:
                bound = RuleSet.load().get(name).bind({})
                got = {(s, v, ok) for s, v, ok in frame_verdicts(frame, name, bound).rows() if ok is not None}
                assert got == _reference(j, name, bound), name


def test_journal_import_saves_no_keys_for_a_journal_regrade_judges_in_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over the shared pass's memory budget a re-grade reads the journal in shards of streams and
    never the keys: the import does not load the whole journal in memory to save them."""
    from helpers import run_cli

    monkeypatch.setattr(rule_keys, "KEYS_AT_IMPORT", 1)
    monkeypatch.setattr(shared_pass, "SHARD_EVENTS", 2)  # the budget: the sample holds more events
    sample = Path(__file__).resolve().parents[2] / "data" / "samples" / "generic" / "gateway-log.jsonl"
    mapping = sample.with_name("gateway-log.mapping.toml")
    code, out, err = run_cli(capsys, "import", "-j", str(tmp_path / "j"), str(sample), "--mapping", str(mapping))
    assert code == 0, err
    journal = Journal.open(tmp_path / "j")
    assert json.loads(out)["imported"] > shared_pass.SHARD_EVENTS
    assert rule_keys.saved_folder(journal) is None and "rule keys saved" not in err
    assert not (tmp_path / "j" / rule_keys.KEYS_DIR).exists()
    code, out, err = run_cli(capsys, "regrade", "-j", str(tmp_path / "j"), "all")  # in shards: no keys
    assert code in (0, 3), err
    assert rule_keys.saved_folder(journal) is None


def test_a_save_that_fails_leaves_the_regrade_reading_the_events(
    demo: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = _copy(demo, tmp_path)

    def broken(*_args: Any) -> None:
        raise pl.exceptions.ComputeError("no room for the keys")

    monkeypatch.setattr(rule_keys, "save_frame", broken)
    assert _grade(journal) == _grade_without_keys(journal)
    assert rule_keys.saved_folder(journal) is None


# ---------------------------------------------------------------------- keys and the events appended since

UNKNOWN_UUID = "7c9e6679-7425-40de-944b-e07fc1f66afe"


def _tailed(journal: Journal) -> Frame:
    frame = rule_keys.load_saved(journal, tail_share=100)
    assert frame is not None and isinstance(frame.o, rule_keys.TailedStrings)
    return frame


def _same_as_a_read(journal: Journal, frame: Frame, sql_too: bool = False) -> None:
    """Every built-in judges ``frame`` (keys and the tail) as a read of the journal (and as its own
    SQL/Polars definition)."""
    for name in sorted(BUILTIN_COLUMNS):
        bound = RuleSet.load().get(name).bind(PARAMS.get(name, {}))
        got = frame_failures(frame, name, bound).to_pylist()
        assert got == frame_failures(load_frame(journal, [name]), name, bound).to_pylist(), name
        if sql_too:
            assert got == _per_rule(journal, name, bound), name


def test_keys_and_the_events_appended_since_judge_as_a_read_of_the_journal(demo: Journal, tmp_path: Path) -> None:
    """Appended after the keys were saved: events of saved streams (a result for a saved call, a
    second result, a call made again) and of new ones, an id a saved event holds already, causes
    naming saved events, and events a saved cause named before they existed."""
    journal = _copy(demo, tmp_path)
    journal.append("run-waiting", [
        {"event_type": "user_message", "data": {"text": "hi"}, "causation_id": "later-text-id"},
        {"event_type": "user_message", "data": {"text": "hi again"}, "causation_id": UNKNOWN_UUID},
    ], expected_version=0)
    before = _grade(journal)
    saved = rule_keys.saved_folder(journal)
    assert saved is not None
    rows = journal.read_all(["stream_id", "event_id", "event_type", "tool_call_id", "tool_name"]).to_pylist()
    call = next(r for r in rows if r["event_type"] == "tool_called" and r["tool_call_id"])
    reused = rows[5]["event_id"]
    journal.append(call["stream_id"], [
        {"event_type": "tool_result", "tool_name": call["tool_name"], "tool_call_id": call["tool_call_id"], "data": None,
         "duration_ms": 9000.0},
        {"event_type": "llm_response", "model": "m", "data": {}, "cost_usd": "2.5", "tokens_in": 10, "tokens_out": 5},
        {"event_type": "tool_called", "tool_name": call["tool_name"], "tool_call_id": call["tool_call_id"], "data": {"q": 1}},
        {"event_type": "user_message", "data": {"text": "yes, send it"}},
        {"event_type": "tool_called", "tool_name": "send_email", "tool_call_id": "new-call", "data": {"to": "x"},
         "idempotency_key": "k-new"},
    ])
    journal.append("run-new", [
        {"event_type": "user_message", "event_id": "later-text-id", "data": {"text": "hi"}},
        {"event_type": "llm_response", "event_id": UNKNOWN_UUID, "data": {}, "causation_id": rows[0]["event_id"]},
        {"event_type": "tool_result", "event_id": reused, "tool_call_id": "orphan", "data": None, "causation_id": reused},
        {"event_type": "tool_called", "tool_name": "send_email", "tool_call_id": "c9", "data": {}, "idempotency_key": "k-new"},
    ], expected_version=0)
    frame = _tailed(journal)
    try:
        _same_as_a_read(journal, frame, sql_too=True)
    finally:
        frame.o.close()
    after = _grade(journal)
    assert after != before and rule_keys.saved_folder(journal) is None  # judged over the tail, nothing saved
    assert any(r["stream_id"] == "run-new" for r in after["journal_integrity"])


@settings(max_examples=25, deadline=None)
@given(before=HISTORIES, appended=HISTORIES, offset=st.integers(0, 3))
def test_keys_and_random_appended_histories_judge_as_a_read(
    before: list[list[dict[str, Any]]], appended: list[list[dict[str, Any]]], offset: int
) -> None:
    with history_journal(before) as j:
        assert rule_keys.prepare(j) is not None
        # saved streams go on (s0-s2), new ones start (from s3; offset 3: only new ones)
        rows = [{**e, "stream_id": f"s{i + offset}"} for i, events in enumerate(appended) for e in events]
        j.append_batch(rows, stream_type="agent_run")
        frame = _tailed(j)
        try:
            _same_as_a_read(j, frame)
            for name in HISTORY_RULES:
                bound = RuleSet.load().get(name).bind({})
                got = {(s, v, ok) for s, v, ok in frame_verdicts(frame, name, bound).rows() if ok is not None}
                assert got == _reference(j, name, bound), name
        finally:
            frame.o.close()


def test_a_tail_over_its_share_is_read_with_the_journal_and_saved(demo: Journal, tmp_path: Path) -> None:
    journal = _copy(demo, tmp_path)
    before = _grade(journal)
    saved = rule_keys.saved_folder(journal)
    events = shared_pass.journal_events(journal)
    journal.append("run-late", [{"event_type": "tool_result", "tool_call_id": "x", "data": None}], expected_version=0)
    assert rule_keys.load_saved(journal, tail_share=0.5 / events) is None  # one event is over half an event's share
    frame = rule_keys.load_saved(journal)  # the default share
    assert frame is not None and isinstance(frame.o, rule_keys.TailedStrings)
    frame.o.close()
    many = [{"event_type": "user_message", "data": {"i": i}} for i in range(int(events * rule_keys.TAIL_SHARE) + 1)]
    journal.append("run-many", many, expected_version=0)
    assert rule_keys.load_saved(journal) is None
    after = _grade(journal)  # read and saved anew
    assert len(after["tool_result_pairing"]) == len(before["tool_result_pairing"]) + 1
    assert rule_keys.saved_folder(journal) not in (None, saved)


def test_the_log_after_the_keys_is_read_once(demo: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the commits after the keys did is kept beside them: the next re-grade reads only the
    log entries after it, and a journal pinned before it reads from the keys' own version."""
    journal = _copy(demo, tmp_path)
    _grade(journal)
    folder = rule_keys.saved_folder(journal)
    assert folder is not None
    saved_at = journal.delta_version
    journal.append("run-a", [{"event_type": "user_message", "data": {"text": "hi"}}], expected_version=0)
    first = journal.delta_version
    calls: list[tuple[int, int]] = []
    since = rule_keys._since
    monkeypatch.setattr(rule_keys, "_since", lambda j, a, b, before="kept": calls.append((a, b)) or since(j, a, b, before))
    assert rule_keys.serving(journal) == folder
    assert json.loads((folder / "log.json").read_text()) == {"through": first, "since": "appended"}
    compact(journal, full=True)
    journal.append("run-b", [{"event_type": "user_message", "data": {"text": "hey"}}], expected_version=0)
    assert rule_keys.serving(journal) == folder
    assert calls == [(saved_at, first), (first, journal.delta_version)]
    assert rule_keys.serving(journal.pinned(first)) == folder and calls[-1] == (saved_at, first)  # the memo is past it
    assert rule_keys.serving(journal.pinned(saved_at)) == folder and calls[-1] == (saved_at, saved_at)
    frame = _tailed(journal)
    try:
        _same_as_a_read(journal, frame)
    finally:
        frame.o.close()
