"""journal_integrity after retention: the cuts the toolkit recorded (``journal purge``, ``journal
archive --delete``) are no violations, real gaps and unknown causes in the same journal still are,
and the SQL rule, the shared pass and the plain-Python reference agree; ``journal chain --orphans``
agrees with them."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import drop_row, ev, locate, rewrite_parquet, run_cli

from toolkit.analysis.causation import find_orphans, find_purged_causes, walk_chain
from toolkit.analysis.invariants import REFERENCE_COLUMNS, ref_journal_integrity
from toolkit.analysis.regrade import regrade
from toolkit.analysis.rules import RuleSet
from toolkit.analysis.shared_pass import frame_failures, frame_verdicts, load_frame
from toolkit.analysis.verdicts import Selection, sql_failures
from toolkit.engines.duckdb_engine import connect
from toolkit.journal import Journal
from toolkit.journal.retention import read_removals
from toolkit.journal.side_tables import read_table
from toolkit.reports.causation_tree import render_chain

UTC = dt.UTC
OLD = dt.datetime(2025, 1, 10, 12, tzinfo=UTC)
BEFORE = "2025-03-01T00:00:00Z"  # days 0..49 after OLD go
YOUNG = dt.datetime(2026, 10, 1, 12, tzinfo=UTC)
RULE = "journal_integrity"

# what the rule must find whatever the purges recorded: gaps the toolkit did not cut
REAL_GAPS = {
    "gap": (4, "version 4 follows 2"),  # v3 lost from the middle
    "late_start": (2, "version 2 follows 0"),  # v1 lost, no purge
    "cut_then_gap": (4, "version 4 follows 0"),  # a purge kept v3 on, and v3 was lost after it
}
UNKNOWN_CAUSE = {"young_bad": (2, "causation_id cmd-405 names no event in the journal")}


def _old(day: int, **fields: Any) -> dict[str, Any]:
    return ev("custom", {"day": day}, occurred_at=OLD + dt.timedelta(days=day), **fields)


def _young(minute: int, **fields: Any) -> dict[str, Any]:
    return ev("custom", {"minute": minute}, occurred_at=YOUNG + dt.timedelta(minutes=minute), **fields)


@pytest.fixture
def retention_cuts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Journal:
    """The README's retention steps on a small journal, then damage the toolkit did not do.

    gone: old only (the purge removes it whole). span: s1-s3 old (removed), s4 caused by s3, s5 by
    g2 of gone (both causes removed). span_bad: like span, and its v4 names a cause that never
    existed. archived: archived with --delete (its tombstone's cause is the removed v3).
    cut_then_gap: the purge keeps v3 on, then v3 is lost. gap, late_start, young_bad: never purged;
    a lost middle event, a lost first event, a cause that never existed.
    """
    path = tmp_path / "retention_cuts"
    j = Journal.create(path)
    j.append("gone", [_old(0, event_id="g1"), _old(1, event_id="g2", causation_id="g1")])
    j.append(
        "span",
        [_old(0, event_id="s1")]
        + [_old(20 * i, event_id=f"s{i + 1}", causation_id=f"s{i}") for i in (1, 2)]
        + [_old(60, event_id="s4", causation_id="s3"), _old(80, event_id="s5", causation_id="g2")],
    )
    j.append(
        "span_bad",
        [
            _old(0, event_id="t1"),
            _old(20, event_id="t2", causation_id="t1"),
            _old(80, event_id="t3", causation_id="t2"),
            _old(90, event_id="t4", causation_id="cmd-404"),
        ],
    )
    j.append("cut_then_gap", [_old(d, event_id=f"u{i + 1}") for i, d in enumerate((0, 20, 60, 80, 100))])
    j.append(
        "archived", [_young(0, event_id="a1")] + [_young(i, event_id=f"a{i + 1}", causation_id=f"a{i}") for i in (1, 2)]
    )
    j.append("gap", [_young(i, event_id=f"p{i + 1}") for i in range(4)])
    j.append("late_start", [_young(i, event_id=f"l{i + 1}") for i in range(3)])
    j.append("young_bad", [_young(0, event_id="y1"), _young(1, event_id="y2", causation_id="cmd-405")])
    j.close()
    archive = tmp_path / "archived.parquet"
    code, _, err = run_cli(
        capsys, "archive", "archived", "-j", str(path), "-o", str(archive), "--delete", "--reason", "closed"
    )
    assert code == 0, err
    code, _, err = run_cli(capsys, "purge", "-j", str(path), "--before", BEFORE)
    assert code == 0, err
    j = Journal.open(path)
    for sid, version in (("gap", 3), ("late_start", 1), ("cut_then_gap", 3)):
        file, row = locate(j, sid, version)
        rewrite_parquet(file, lambda t, row=row: drop_row(t, row))
    return Journal.open(path)


def _three_ways(j: Journal) -> dict[str, tuple[int, str]]:
    """The rule's verdicts by SQL, shared pass and reference (asserted equal) and its failures by
    SQL and shared pass (asserted equal, messages included): stream -> (first failing version, message)."""
    rule = RuleSet.load().get(RULE)
    bound = rule.bind({})
    session = connect(j)
    try:
        sql = {(r["stream_id"], r["version"], r["holds"]) for r in session.query(rule.sql or "", bound).to_pylist()}
        sql_rows = sql_failures(session, rule, bound, Selection()).to_pylist()
    finally:
        session.close()
    frame = load_frame(j, [RULE])
    shared = set(frame_verdicts(frame, RULE, bound).rows())
    rows = j.read_all(list(REFERENCE_COLUMNS)).sort_by("position").to_pylist()
    reference = {(s, v, ok) for s, v, ok, _ in ref_journal_integrity(rows, bound, read_removals(j))}
    assert sql == shared == reference
    assert frame_failures(frame, RULE, bound).to_pylist() == sql_rows
    return {r["stream_id"]: (r["version"], r["message"]) for r in sql_rows}


def test_recorded_purges_are_no_violations_and_real_gaps_still_are(retention_cuts: Journal) -> None:
    j = retention_cuts
    left = {(r["stream_id"], r["version"]) for r in j.read_all(["stream_id", "version"]).to_pylist()}
    assert {("span", 4), ("span", 5), ("archived", 4), ("span_bad", 3), ("cut_then_gap", 4)} <= left
    assert not {("gone", 1), ("span", 3), ("archived", 3)} & left
    expected = {**REAL_GAPS, **UNKNOWN_CAUSE, "span_bad": (4, "causation_id cmd-404 names no event in the journal")}
    assert _three_ways(j) == expected
    findings = regrade(j, [RULE], write=False).findings.to_pylist()
    assert {r["stream_id"]: (r["first_failing_version"], r["message"]) for r in findings} == expected


def test_purges_recorded_before_their_event_ids_excuse_unknown_causes_of_the_streams_they_cut(
    retention_cuts: Journal,
) -> None:
    """A journal purged by a toolkit that did not record the removed ids (no purged_events table):
    an unknown cause of a kept event of a cut stream is taken as removed (span_bad's cmd-404 too:
    the documented limit); gaps, and unknown causes elsewhere, are still found."""
    shutil.rmtree(retention_cuts.path / "purged_events")
    j = Journal.open(retention_cuts.path)
    assert read_table(j, "purged_events").num_rows == 0 and read_table(j, "purges").num_rows
    assert _three_ways(j) == {**REAL_GAPS, **UNKNOWN_CAUSE}


def test_chain_orphans_names_the_purge_that_removed_a_cause(
    retention_cuts: Journal, capsys: pytest.CaptureFixture[str]
) -> None:
    j = retention_cuts
    purges = read_table(j, "purges").to_pylist()
    retention_id = next(r["purge_id"] for r in purges if r["reason"] == "retention")
    archive_id = next(r["purge_id"] for r in purges if r["reason"] == "archive")
    assert sorted(find_orphans(j).select("event_id", "missing_cause").rows()) == [("t4", "cmd-404"), ("y2", "cmd-405")]
    purged = find_purged_causes(j).select("stream_id", "version", "missing_cause", "removed_by").rows()
    tombstone = next(r for r in purged if r[0] == "archived")
    assert sorted(purged) == sorted(
        [
            ("span", 4, "s3", retention_id),
            ("span", 5, "g2", retention_id),
            ("span_bad", 3, "t2", retention_id),
            tombstone,
        ]
    )
    assert tombstone[1:] == (4, "a3", archive_id)
    code, out, err = run_cli(capsys, "chain", "--orphans", "-j", str(j.path), "--format", "csv")
    assert code == 3
    assert sorted(line.split(",")[2] for line in out.splitlines()[1:]) == ["t4", "y2"]
    assert f"3 events whose cause was removed by purge {retention_id}" in err
    assert f"1 events whose cause was removed by purge {archive_id}" in err
    chain = walk_chain(j, "s5", direction="up")
    assert chain.orphans.height == 0
    assert chain.purged.select("event_id", "missing_cause", "removed_by").rows() == [("s5", "g2", retention_id)]
    assert any(f"its cause g2 was removed by purge {retention_id}" in line for line in render_chain(chain))


def test_the_removed_event_ids_are_read_only_when_a_cause_is_unknown(
    retention_cuts: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """purged_events holds one row per removed event: the shared pass read it whenever it judged
    journal_integrity on a purged journal. It is read now only when some cause is not in the
    journal, and the verdicts are those of the whole journal's check."""
    import toolkit.journal.retention as retention

    read: list[str] = []
    real = retention.read_table

    def counting(journal: Journal, name: str) -> Any:
        read.append(name)
        return real(journal, name)

    monkeypatch.setattr(retention, "read_table", counting)
    bound = RuleSet.load().get(RULE).bind({})
    whole = {(s, v, ok) for s, v, ok in frame_verdicts(load_frame(retention_cuts, [RULE]), RULE, bound).rows()}
    assert read.count("purged_events") == 1  # span's causes were removed: looked up by their ids
    read.clear()
    clean = ["cut_then_gap", "gap", "late_start"]  # cut by a purge or damaged, but every cause is there
    frame = load_frame(retention_cuts, [RULE], stream_ids=clean)
    verdicts = set(frame_verdicts(frame, RULE, bound).rows())
    assert read == ["purges"]
    assert verdicts == {row for row in whole if row[0] in clean} and any(not ok for _, _, ok in verdicts)


def test_chain_orphans_scans_the_journal_once(retention_cuts: Journal, capsys: pytest.CaptureFixture[str]) -> None:
    """journal chain --orphans found the orphans and then the purged causes, each with a scan of
    the whole journal; it scans once now, and says the same."""
    import toolkit.analysis.causation as causation

    scans: list[object] = []
    real = causation.scan_events

    def counting(*args: Any, **kwargs: Any) -> Any:
        scans.append(args)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(causation, "scan_events", counting)
        code, out, err = run_cli(capsys, "chain", "--orphans", "-j", str(retention_cuts.path), "--format", "csv")
    assert len(scans) == 1
    assert code == 3 and sorted(line.split(",")[2] for line in out.splitlines()[1:]) == ["t4", "y2"]
    assert find_purged_causes(retention_cuts).height == 4 and "3 events whose cause was removed by purge" in err
    assert err.count("events whose cause was removed by purge") == 2  # the retention purge's and the archive's
