"""What the run explorer, causation, re-grade and compliance views compute: checked against the
journal itself (the replay API, the events), on the demo fixture journal and hand-made runs."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, build_budget_breach, build_tool_failure_loop, ev
from overview_fixtures import build_flaky_deploy

from toolkit.analysis.agent_run import AGENT_RUN
from toolkit.analysis.causation import walk_chain
from toolkit.analysis.regrade_trends import failing_runs, failing_runs_by_day, first_failures_by_day, regrade_rules
from toolkit.analysis.replay import diff_states, locate, state_at
from toolkit.analysis.run_explorer import (
    explore_step,
    failing_events,
    find_runs,
    list_correlations,
    list_failing_rules,
    run_failures,
    run_steps,
    version_at_text,
)
from toolkit.errors import ReplayError, ReportError, StreamNotFoundError, VersionNotFoundError
from toolkit.journal import Journal
from toolkit.journal.retention import purge_before
from toolkit.reports import charts
from toolkit.reports.charts import chart_spec
from toolkit.reports.html import render_html
from toolkit.reports.report_catalog import build_report
from toolkit.reports.report_causation import chain_layout, chain_list
from toolkit.reports.report_compliance import actions_table, compliance_selection, explained_events

FIXTURE = REPO / "tests" / "fixtures" / "demo-journal"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Journal:
    copy = tmp_path_factory.mktemp("content") / "demo-journal"
    shutil.copytree(FIXTURE, copy)
    return Journal.open(copy)


@pytest.fixture
def small(tmp_path: Path) -> Journal:
    j = Journal.create(tmp_path / "small")
    build_tool_failure_loop(j)
    build_budget_breach(j)
    build_flaky_deploy(j)
    return j


# ---------------------------------------------------------------------- run explorer


def test_find_runs_filters(small: Journal) -> None:
    assert sorted(find_runs(small).column("stream_id").to_pylist()) == [
        "budget_breach",
        "flaky_deploy",
        "tool_failure_loop",
    ]
    assert find_runs(small, status="aborted").column("stream_id").to_pylist() == ["flaky_deploy"]
    assert find_runs(small, min_cost_usd=1).column("stream_id").to_pylist() == ["budget_breach"]
    assert find_runs(small, agent="deployer").column("stream_id").to_pylist() == ["flaky_deploy"]
    assert find_runs(small, search="loop").column("stream_id").to_pylist() == ["tool_failure_loop"]
    assert find_runs(small, search="%").num_rows == 0  # a value, not a LIKE pattern
    late = find_runs(small, since=dt.datetime(2026, 3, 4, tzinfo=dt.UTC))
    assert late.column("stream_id").to_pylist() == ["budget_breach"]  # 23:45 New York = next UTC day
    newest_first = find_runs(small).column("last_at").to_pylist()
    assert newest_first == sorted(newest_first, reverse=True)


def test_failing_rule_filter_reads_the_latest_findings(small: Journal) -> None:
    assert list_failing_rules(small) == [] and find_runs(small, rule="budget").num_rows == 0
    regrade_rules(small, ["budget", "no_tool_failure_loop"], params={"max_cost_usd": "1"}, write=True)
    assert list_failing_rules(small) == ["budget", "no_tool_failure_loop"]
    assert find_runs(small, rule="no_tool_failure_loop").column("stream_id").to_pylist() == ["tool_failure_loop"]
    rows = {r["stream_id"]: r["failing_rules"] for r in find_runs(small).to_pylist()}
    assert rows["budget_breach"] == "budget" and rows["flaky_deploy"] is None
    failures = run_failures(small, "budget_breach").to_pylist()
    assert [(f["rule"], f["first_failing_version"]) for f in failures] == [("budget", 2)]
    # a later batch of the same rule supersedes the earlier one
    regrade_rules(small, ["budget"], params={"max_cost_usd": "0.03"}, write=True)
    assert sorted(find_runs(small, rule="budget").column("stream_id").to_pylist()) == [
        "budget_breach",
        "tool_failure_loop",
    ]
    regrade_rules(small, ["budget"], params={"max_cost_usd": "1"}, write=True)
    assert find_runs(small, rule="budget").column("stream_id").to_pylist() == ["budget_breach"]
    assert list_failing_rules(small) == ["budget", "no_tool_failure_loop"]


def test_explore_step_is_the_replay_state(demo: Journal) -> None:
    stream = "run-7-0000012"  # the budget breach: a long run
    last = demo.read_stream(stream, ["version"]).num_rows
    for v in (1, 2, 40, last):
        step = explore_step(demo, stream, v)
        assert step.state == AGENT_RUN.to_dict(state_at(demo, stream, version=v))
        assert [c.path for c in step.changes] == [c.path for c in diff_states(demo, stream, v - 1, v)]
        assert step.event["version"] == v and step.last_version == last
    with pytest.raises(VersionNotFoundError, match=rf"1\.\.{last}"):
        explore_step(demo, stream, last + 1)
    with pytest.raises(StreamNotFoundError):
        explore_step(demo, "no-such-run", 1)


def test_a_typed_time_resolves_as_journal_state_at_does(demo: Journal) -> None:
    stream = "run-7-0000012"
    events = demo.read_stream(stream, ["version", "occurred_at"]).to_pylist()
    tenth = events[9]["occurred_at"]
    assert version_at_text(demo, stream, tenth.isoformat()) == (locate(demo, stream, at=tenth).version, None)
    assert version_at_text(demo, stream, tenth.isoformat())[0] >= 10
    naive = tenth.replace(tzinfo=None).isoformat(sep=" ")  # the explorer asks for UTC: no offset is UTC
    assert version_at_text(demo, stream, naive) == version_at_text(demo, stream, tenth.isoformat().replace("+00:00", "Z"))
    assert version_at_text(demo, stream, "2100-01-01")[0] == len(events)  # a bare date: midnight UTC
    version, note = version_at_text(demo, stream, "2000-01-01")
    assert version == 0 and note is not None and "before the stream's first event" in note
    with pytest.raises(ReplayError, match="'half past nine' is not a time") as e:
        version_at_text(demo, stream, " half past nine ")
    assert e.value.hint is not None and "2026-10-02T14:03:00Z" in e.value.hint


def test_run_steps_fold_once_and_agree_with_explore_step(demo: Journal) -> None:
    steps = list(run_steps(demo, "run-7-0000003"))
    assert [s.version for s in steps] == list(range(1, len(steps) + 1))
    for s in (steps[0], steps[len(steps) // 2], steps[-1]):
        one = explore_step(demo, "run-7-0000003", s.version)
        assert s.state == one.state and s.changes == one.changes and s.explanation == one.explanation
    assert len(list(run_steps(demo, "run-7-0000003", max_events=5))) == 5


def test_run_report_lists_every_step_and_the_final_state(demo: Journal) -> None:
    report = build_report(demo, "run", {"stream": "run-7-0000012"})
    last = demo.read_stream("run-7-0000012", ["version"]).num_rows
    page = render_html(report, bundle_js="")
    final = json.loads(report.sections[-1].blocks[0].text)  # type: ignore[union-attr]
    assert final["version"] == last and Decimal(final["cost_usd"]) > 5
    assert f"State after version {last}" in page
    changes = report.sections[3].blocks[0].table.to_pylist()  # type: ignore[union-attr]
    assert {c["version"] for c in changes} == set(range(1, last + 1))  # every step changes at least the event count
    assert not any(c["field"].endswith("_us") for c in changes)
    with pytest.raises(StreamNotFoundError, match="did you mean"):
        build_report(demo, "run", {"stream": "run-7-000001"})
    with pytest.raises(ReportError, match="needs parameter stream"):
        build_report(demo, "run", {})


def chart_points(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every data row a Vega-Lite spec carries (altair may hoist inline values into ``datasets``)."""
    rows = [r for values in spec.get("datasets", {}).values() for r in values]
    for layer in [spec, *spec.get("layer", [])]:
        rows += layer.get("data", {}).get("values", [])
    return rows


def test_run_report_of_a_long_run_charts_version_ranges(tmp_path: Path) -> None:
    j = Journal.create(tmp_path / "long")
    n = charts.MAX_CHART_ROWS + 1_000  # more events than a chart takes
    kinds = ["user_message", "llm_response", "tool_called", "tool_result"]
    start = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    j.append(
        "long-run",
        [
            ev(kinds[i % 4], {"i": i}, occurred_at=start + dt.timedelta(seconds=i), is_error=i == 4_321)
            for i in range(n)
        ],
    )
    report = build_report(j, "run", {"stream": "long-run", "max_events": "50"})  # was: ChartDataError
    page = render_html(report, bundle_js="")
    from toolkit.analysis.run_explorer import TIMELINE_POINTS

    (timeline,) = report.charts()
    points = [p for p in chart_points(chart_spec(timeline.chart)) if "event_type" in p]
    assert len(points) <= TIMELINE_POINTS
    assert sum(int(p["title"].split()[0]) for p in points) == n  # every event is in one point
    assert sorted({p["event_type"] for p in points}) == sorted(kinds)
    assert [p["title"] for p in points if p["is_error"]] != []  # the one failed event still shows
    assert "State after version 50" in page


def test_run_report_finds_its_run_among_runs_whose_ids_contain_it(tmp_path: Path) -> None:
    j = Journal.create(tmp_path / "many")
    start = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    j.append("run-1", [ev("llm_response", model="m", cost_usd="0.5", agent="first", occurred_at=start)])
    j.append_batch(  # 60 later runs whose ids contain "run-1": more than a page of the run search
        [
            ev("user_message", stream_id=f"run-1{i:02d}", agent="later", occurred_at=start + dt.timedelta(hours=i + 1))
            for i in range(60)
        ]
    )
    figures = report_figures(build_report(j, "run", {"stream": "run-1"}))
    assert figures["agent"] == "first" and figures["recorded cost"] == "$0.5000" and figures["events"] == "1"
    assert figures["first → last (UTC)"].startswith("2026-03-02 09:00:00")


def test_run_report_of_a_purged_run_starts_at_the_first_version_kept(tmp_path: Path) -> None:
    j = Journal.create(tmp_path / "purged")
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    j.append("p-run", [ev("user_message", {"i": i}, occurred_at=start + dt.timedelta(days=i)) for i in range(6)])
    purge_before(j, start + dt.timedelta(days=3), force=True)  # versions 1-3 go; 4-6 stay
    report = build_report(j, "run", {"stream": "p-run"})
    assert report.sections[-1].blocks[0].title == "State after version 6"  # type: ignore[union-attr]
    assert json.loads(report.sections[-1].blocks[0].text)["version"] == 6  # type: ignore[union-attr]
    capped = build_report(j, "run", {"stream": "p-run", "max_events": "2"})
    changes = capped.sections[3].blocks[0].table.to_pylist()  # type: ignore[union-attr]
    assert sorted({c["version"] for c in changes}) == [4, 5]
    assert capped.sections[-1].blocks[0].title == "State after version 5"  # type: ignore[union-attr]


def report_figures(report: Any) -> dict[str, Any]:
    return dict(report.sections[0].blocks[0].values)


# ---------------------------------------------------------------------- causation


def test_causation_graph_reaches_the_user_message_across_runs(demo: Journal) -> None:
    failed = failing_events(demo, event_type="tool_result", limit=5).to_pylist()
    assert failed and all(r["event_type"] == "tool_result" for r in failed)
    chain = walk_chain(demo, failed[0]["event_id"], direction="up")
    nodes, edges = chain_layout(chain)
    listed = chain_list(chain).to_pylist()
    assert listed[0]["event"].strip() == "User said"  # the root input comes first
    assert nodes.num_rows == chain.nodes.height and edges.num_rows == chain.nodes.height - 1  # a path
    assert sorted(nodes.column("y").to_pylist()) == list(range(nodes.num_rows))  # one row per event
    lanes = {r["group"]: r["x"] for r in nodes.to_pylist()}
    assert sorted(lanes.values()) == list(range(len(lanes)))  # one lane per stream


def test_causation_report_has_the_trace(demo: Journal) -> None:
    failed = failing_events(demo, limit=1).to_pylist()[0]
    report = build_report(demo, "causation", {"event": failed["event_id"], "depth": "3"})
    titles = [s.title for s in report.sections]
    assert titles == ["Summary", "Causation chain", "Orphans and cycles", "Trace"]
    assert "stopped at the depth limit" in render_html(report, bundle_js="")


# ---------------------------------------------------------------------- re-grade


def test_regrade_trends_count_what_the_findings_say(demo: Journal) -> None:
    result = regrade_rules(demo, ["budget", "latency"])
    violations = [r for r in result.findings.to_pylist() if r["kind"] == "violation"]
    by_day = first_failures_by_day(result.findings)
    assert sum(by_day.column("runs").to_pylist()) == len(violations)
    per_day = failing_runs_by_day(demo, result.findings)
    assert sum(per_day.column("runs").to_pylist()) == 40
    assert sum(per_day.column("failing_runs").to_pylist()) == len({r["stream_id"] for r in violations})
    listed = failing_runs(result)
    assert listed.num_rows == len(violations) and listed.column("occurred_at").to_pylist() == sorted(
        listed.column("occurred_at").to_pylist()
    )
    assert list_failing_rules(demo) == []  # nothing was written


def test_regrade_report_of_runs_that_hold_every_rule_draws_no_empty_chart(tmp_path: Path) -> None:
    j = Journal.create(tmp_path / "clean")
    j.append("only-run", [ev("user_message", {"text": "hi"}, occurred_at=dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC))])
    report = build_report(j, "regrade", {})
    page = render_html(report, bundle_js="")
    assert "No run fails a chosen rule in this range." in page
    assert report.charts() != []  # runs started per day, share failing
    for chart in report.charts():
        assert chart_points(chart_spec(chart.chart)), f"an empty chart: {chart.name}"
    empty_range = build_report(j, "regrade", {"since": "2030-01-01"})
    assert empty_range.charts() == [] and "No run started in this range." in render_html(empty_range, bundle_js="")


# ---------------------------------------------------------------------- compliance


def test_compliance_actions_are_the_subjects_events_in_order(demo: Journal) -> None:
    selection = compliance_selection(subject="user-0001", since=dt.datetime(2026, 10, 1, tzinfo=dt.UTC))
    events = explained_events(demo, selection)
    every = [r for r in demo.read_all(["subject_id", "event_id"]).to_pylist() if r["subject_id"] == "user-0001"]
    assert events.height == len(every) > 0
    from toolkit.reports.compliance import causation_links

    table = actions_table(events, causation_links(demo, events)).to_pylist()
    times = [r["occurred_at"] for r in table]
    assert times == sorted(times)
    assert table[0]["who"] == "user user-0001" and table[1]["because of"] == table[0]["what"]
    corr = list_correlations(demo, limit=1).to_pylist()[0]
    report = build_report(demo, "compliance", {"correlation": corr["correlation_id"]})
    assert f"{corr['events']:,}" in render_html(report, bundle_js="")
    with pytest.raises(ReportError, match="exactly one"):
        build_report(demo, "compliance", {"correlation": "a", "subject": "b"})


def test_a_chain_longer_than_a_chart_holds_is_charted_nearest_the_focus(tmp_path: Path) -> None:
    # one run of 6,000 events, each caused by the one before: the walk from the middle finds them all
    j = Journal.create(tmp_path / "long")
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    j.append("run-long", [
        {"event_type": "tool_called" if i % 2 else "llm_response", "event_id": f"long-{i:05d}",
         "causation_id": f"long-{i - 1:05d}" if i else None, "occurred_at": start + dt.timedelta(seconds=i),
         "data": {"i": i}}
        for i in range(6_000)
    ])
    chain = walk_chain(j, "long-03000", depth=10_000)
    assert chain.nodes.height == 6_000
    nodes, edges = chain_layout(chain)
    assert nodes.num_rows == charts.MAX_CHART_ROWS and edges.num_rows == charts.MAX_CHART_ROWS - 1
    charted = {r["id"] for r in nodes.to_pylist()}
    depth = dict(zip(chain.nodes.get_column("event_id").to_list(), chain.nodes.get_column("depth").to_list(), strict=True))
    left_out = set(depth) - charted
    assert "long-03000" in charted and len(left_out) == 1_000
    assert max(abs(depth[e]) for e in charted) <= min(abs(depth[e]) for e in left_out)  # the nearest are drawn
    report = build_report(j, "causation", {"event": "long-03000", "depth": "10000"})
    page = render_html(report, bundle_js="")
    assert "The chain has 6,000 events, more than a chart holds (5,000)" in page
    assert len(chain_list(chain)) == 6_000  # the list keeps every event
