"""verify-export checks what a bundle derives from its events: each kind of derived content
(titles, summaries, causation links, run summaries and replayed states, report.html, the
manifest's run list) edited in an unsigned bundle whose digests the forger recomputed is named,
and nothing else is; untouched bundles of every shape still verify clean."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from bundle_forgery import forge_file, forge_manifest, forge_table, rederive

from toolkit.journal import Journal
from toolkit.journal.retention import purge_before
from toolkit.reports.compliance import Selection, export_compliance
from toolkit.reports.compliance_verify import verify_bundle

SESSION = "session-7-0000002"  # run-7-0000002, then its follow-up run-7-0000003
FOLLOW_UP = "run-7-0000003"  # its first event's cause is run-7-0000002's last
TOTAL = object()  # stands for the run's total of the column in the journal


def run_total(journal: Journal, stream: str, column: str) -> str:
    """What a run's summary says for a summed column, read from the journal's events."""
    values = journal.read_stream(stream, [column]).column(column).to_pylist()
    return str(sum(v for v in values if v is not None))


@pytest.fixture
def bundle(demo: Journal, tmp_path: Path) -> Path:
    export_compliance(demo, Selection(correlation_id=SESSION), tmp_path / "bundle")
    return tmp_path / "bundle"


def problems(bundle: Path, journal: Journal | None = None) -> list[tuple[str, str, str, str]]:
    return [(p.where, p.check, p.expected, p.found) for p in verify_bundle(bundle, journal=journal).problems]


def at_row(stream: str, version: int, column: str, value: object) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """A change of one cell of the row of (stream, version), for events (or of the effect's, for links)."""

    def change(f: pl.DataFrame) -> pl.DataFrame:
        s, v = ("effect_stream_id", "effect_version") if "effect_stream_id" in f.columns else ("stream_id", "version")
        hit = (pl.col(s) == stream) & (pl.col(v) == version)
        return f.with_columns(pl.when(hit).then(pl.lit(value, dtype=f.schema[column])).otherwise(pl.col(column)).alias(column))

    return change


def _sessions_since(demo: Journal) -> Selection:
    """The session from run-7-0000002's fifth event on: a run cut short, a whole one."""
    t = demo.read_stream("run-7-0000002", ["occurred_at"]).column("occurred_at")[4].as_py()
    return Selection(correlation_id=SESSION, since=t)


@pytest.mark.parametrize(
    "selection",
    [
        lambda _: Selection(correlation_id=SESSION),  # two whole runs, causes inside
        lambda _: Selection(stream_ids=(FOLLOW_UP,)),  # a cause outside the bundle
        _sessions_since,  # a run exported in part: no replayed state
        lambda _: Selection(correlation_id=SESSION, since=dt.datetime(2030, 1, 1, tzinfo=dt.UTC)),  # empty
        lambda _: Selection(subject_id="user-0001"),
    ],
    ids=["session", "outside-cause", "partial-run", "empty", "subject"],
)
def test_an_untouched_bundle_verifies_clean_with_its_derived_content_checked(
    demo: Journal, tmp_path: Path, selection: Callable[[Journal], Selection]
) -> None:
    export_compliance(demo, selection(demo), tmp_path / "b")
    for journal in (None, demo):
        report = verify_bundle(tmp_path / "b", journal=journal)
        assert report.ok, report.problems
        assert report.derived_checked


@pytest.mark.parametrize("column", ["title", "summary"])
def test_an_edited_title_or_summary_is_named(bundle: Path, column: str) -> None:
    was = pl.read_parquet(bundle / "events.parquet").filter(pl.col("stream_id") == "run-7-0000002", pl.col("version") == 1)
    forge_table(bundle, at_row("run-7-0000002", 1, column, "The user asked for nothing"))
    assert problems(bundle) == [
        ("events.parquet run-7-0000002:v1", f"derived_{column}", f'"{was[column][0]}"', '"The user asked for nothing"')
    ]


@pytest.mark.parametrize(
    ("change", "expected", "found"),
    [
        (at_row(FOLLOW_UP, 1, "cause_event_type", "user_message"), 'cause_event_type = "llm_response"', 'cause_event_type = "user_message"'),
        (at_row(FOLLOW_UP, 1, "cause_stream_id", "run-7-0000009"), 'cause_stream_id = "run-7-0000002"', 'cause_stream_id = "run-7-0000009"'),
        (at_row(FOLLOW_UP, 1, "orphan", True), "orphan = false", "orphan = true"),
        (lambda f: f.filter(~((pl.col("effect_stream_id") == FOLLOW_UP) & (pl.col("effect_version") == 1))), "a row", "absent"),
        (lambda f: pl.concat([f, f.filter(pl.col("effect_stream_id") == FOLLOW_UP, pl.col("effect_version") == 1)]), "no such row", "an extra row"),
    ],
    ids=["cause-type", "cause-stream", "orphan", "dropped", "added"],
)
def test_an_edited_causation_link_is_named(
    bundle: Path, change: Callable[[pl.DataFrame], pl.DataFrame], expected: str, found: str
) -> None:
    forge_table(bundle, change, "causation")
    assert problems(bundle) == [(f"causation.parquet {FOLLOW_UP}:v1", "derived_link", expected, found)]


def test_a_link_to_a_cause_outside_the_bundle_is_checked_against_the_journal(demo: Journal, tmp_path: Path) -> None:
    """Without the journal the bundle's word is all there is about a cause outside it (but the
    page, rendered from the original, no longer matches); with it, the link is named."""
    last = demo.read_stream("run-7-0000002", ["version"]).num_rows  # the answer FOLLOW_UP answers
    export_compliance(demo, Selection(stream_ids=(FOLLOW_UP,)), tmp_path / "b")
    forge_table(tmp_path / "b", at_row(FOLLOW_UP, 1, "cause_version", last - 1), "causation")
    assert [p[:2] for p in problems(tmp_path / "b")] == [("report.html", "derived_report")]
    assert problems(tmp_path / "b", demo) == [
        (f"causation.parquet {FOLLOW_UP}:v1", "derived_link", f"cause_version = {last}", f"cause_version = {last - 1}")
    ]


@pytest.mark.parametrize(
    ("column", "value", "expected", "found"),
    [
        ("status", "aborted", '"answered"', '"aborted"'),  # the replayed state
        ("tokens_in", 1, TOTAL, "1"),
        ("cost_usd", Decimal("0.000000001"), TOTAL, "0.000000001"),
        ("outcome", "ended with an error: refused", '"completed"', '"ended with an error: refused"'),  # the events alone
        ("whole_run", False, "true", "false"),
    ],
)
def test_an_edited_run_summary_is_named(
    bundle: Path, demo: Journal, column: str, value: object, expected: object, found: str
) -> None:
    if expected is TOTAL:
        expected = run_total(demo, "run-7-0000002", column)
    forge_table(bundle, at_row_of_run("run-7-0000002", column, value), "runs")
    assert problems(bundle) == [("runs.parquet run-7-0000002", "derived_run", f"{column} = {expected}", f"{column} = {found}")]


def at_row_of_run(stream: str, column: str, value: object) -> Callable[[pl.DataFrame], pl.DataFrame]:
    def change(f: pl.DataFrame) -> pl.DataFrame:
        hit = pl.col("stream_id") == stream
        return f.with_columns(pl.when(hit).then(pl.lit(value, dtype=f.schema[column])).otherwise(pl.col(column)).alias(column))

    return change


def test_a_bundle_exported_before_run_costs_were_widened_still_verifies(bundle: Path, demo: Journal) -> None:
    """Before a run's cost could pass 1e9 USD, the export wrote runs.parquet's cost_usd as a
    Decimal(18, 9) (now a Decimal(38, 9)), with the same CSV and JSON copies. Such a bundle (its
    runs cast back, digests recomputed) verifies clean; an edited cost in it is still named."""
    copies = [(bundle / f"runs.{ext}").read_text(encoding="utf-8") for ext in ("csv", "json")]
    forge_table(bundle, lambda f: f.with_columns(pl.col("cost_usd").cast(pl.Decimal(18, 9))), "runs")
    assert pl.read_parquet(bundle / "runs.parquet").schema["cost_usd"] == pl.Decimal(18, 9)
    assert [(bundle / f"runs.{ext}").read_text(encoding="utf-8") for ext in ("csv", "json")] == copies
    assert problems(bundle) == [] and problems(bundle, demo) == []
    forge_table(bundle, at_row_of_run("run-7-0000002", "cost_usd", Decimal("0.000000001")), "runs")
    assert problems(bundle) == [
        (
            "runs.parquet run-7-0000002",
            "derived_run",
            f"cost_usd = {run_total(demo, 'run-7-0000002', 'cost_usd')}",
            "cost_usd = 0.000000001",
        )
    ]


def test_a_run_state_added_to_a_run_exported_in_part_is_named(demo: Journal, tmp_path: Path) -> None:
    """A run the selection took part of has no replayed state; one filled in is named."""
    export_compliance(demo, _sessions_since(demo), tmp_path / "b")
    forge_table(tmp_path / "b", at_row_of_run("run-7-0000002", "status", "answered"), "runs")
    assert problems(tmp_path / "b") == [("runs.parquet run-7-0000002", "derived_run", "status = null", 'status = "answered"')]


def test_an_edited_report_is_named(bundle: Path) -> None:
    page = (bundle / "report.html").read_text(encoding="utf-8")
    line = next(i for i, text in enumerate(page.splitlines(), 1) if "Is PR 1258 in acme/payments safe to merge" in text)
    forge_file(bundle, "report.html", lambda p: p.replace("Is PR 1258 in acme/payments safe to merge", "Merge PR 1258 now", 1))
    assert problems(bundle) == [("report.html", "derived_report", "the page rendered again from the events", f"differs from line {line}")]


def test_a_report_left_out_of_the_manifest_is_named(bundle: Path) -> None:
    (bundle / "report.html").unlink()
    forge_manifest(bundle, lambda m: m["files"].pop("report.html"))  # type: ignore[attr-defined]
    assert [p[:2] for p in problems(bundle)] == [("report.html", "missing_file")]


def test_a_reordered_run_list_is_named(bundle: Path) -> None:
    forge_manifest(bundle, lambda m: m["streams"].reverse())  # type: ignore[attr-defined]
    assert [p[:2] for p in problems(bundle)] == [("manifest.json", "derived_streams"), ("report.html", "derived_report")]


def test_a_cause_purged_or_appended_since_the_export_is_taken_as_it_was(journal: Journal, tmp_path: Path) -> None:
    """A cause outside the bundle that a recorded purge removed since is taken as the bundle names
    it; one appended since (an orphan at export) is not there yet at the manifest's position."""
    old = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    journal.append("asked", [{"event_type": "user_message", "event_id": "q", "data": {"text": "refund"}, "occurred_at": old}])
    journal.append("acted", [
        {"event_type": "tool_called", "event_id": "t", "causation_id": "q", "correlation_id": "c", "data": {}},
        {"event_type": "tool_result", "event_id": "r", "causation_id": "late", "correlation_id": "c", "data": {}},
    ])
    export_compliance(journal, Selection(correlation_id="c"), tmp_path / "b")
    purge_before(journal, dt.datetime(2025, 2, 1, tzinfo=dt.UTC), force=True)
    journal.append("asked", [{"event_type": "custom", "event_id": "late", "data": {}}])
    report = verify_bundle(tmp_path / "b", journal=Journal.open(journal.path))
    assert report.ok and report.derived_checked, report.problems


def test_a_run_passed_off_as_whole_is_named_against_the_journal(demo: Journal, tmp_path: Path) -> None:
    """Whether a run is exported whole rests on the manifest's head: one moved back to the last
    exported event, with a replayed state and page to match, is consistent in itself; the journal
    still holds the later events the export saw."""
    t = demo.read_stream("run-7-0000002", ["occurred_at"]).column("occurred_at")[9].as_py()
    export_compliance(demo, Selection(correlation_id=SESSION, until=t), tmp_path / "b")

    def head_at_last_export(m: dict[str, object]) -> None:
        h = m["chain_heads"]["run-7-0000002"]  # type: ignore[index]
        h.update(head_version=h["last_exported_version"], head_hash=h["last_exported_hash"])

    forge_manifest(tmp_path / "b", head_at_last_export)
    rederive(tmp_path / "b")
    assert pl.read_parquet(tmp_path / "b" / "runs.parquet")["whole_run"].to_list() == [True]
    assert verify_bundle(tmp_path / "b").ok
    assert [p[:2] for p in problems(tmp_path / "b", demo)] == [("run-7-0000002:v9", "journal_head")]


def test_an_event_row_repeated_in_the_bundle_is_named_at_its_version(bundle: Path) -> None:
    """A copy of one event row (manifest, titles, links, runs and page derived again): its hash and
    chain links are the original's, so only its repetition gives it away."""
    forge_table(bundle, lambda f: pl.concat([f, f.filter((pl.col("stream_id") == "run-7-0000002") & (pl.col("version") == 3))]))
    rederive(bundle)
    found = problems(bundle)
    assert ("run-7-0000002:v3", "duplicate_row", "one row per stream version", "a second row") in found, found
