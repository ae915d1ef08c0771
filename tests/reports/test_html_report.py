"""HTML reports: self-contained, escaped, built from the analysis tables; charts export to PNG/SVG/JSON."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import REPO, build_budget_breach, build_tool_failure_loop

from toolkit.analysis.overview import overview_tables
from toolkit.errors import ChartDataError, ReportError
from toolkit.ingest.demo import generate_demo
from toolkit.ingest.runner import import_paths
from toolkit.journal import Journal
from toolkit.reports import charts
from toolkit.reports.html import ChartBlock, Report, Section, TableBlock, Text, render_html, save_charts, write_html
from toolkit.reports.report_catalog import REPORTS, build_report
from toolkit.reports.report_overview import build_overview_report

FIXTURE = REPO / "tests" / "fixtures" / "demo-journal"
JOURNAL_BIN = Path(sys.executable).parent / "journal"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Journal:
    copy = tmp_path_factory.mktemp("rep") / "demo-journal"
    shutil.copytree(FIXTURE, copy)
    return Journal.open(copy)


def external_urls(page: str) -> set[str]:
    """URLs the page could load: src/href attributes and CSS url(...) (the Vega bundle's strings aside)."""
    found = set(re.findall(r"""(?:src|href)\s*=\s*["']((?:https?:)?//[^"']+)""", page))
    found |= set(re.findall(r"""url\(\s*["']?((?:https?:)?//[^)"']+)""", page))
    found |= set(re.findall(r"""@import\s+["']?((?:https?:)?//[^"';]+)""", page))
    return found


def test_overview_report_is_self_contained(demo: Journal, tmp_path: Path) -> None:
    out = write_html(build_overview_report(demo), tmp_path / "overview.html")
    page = out.read_text(encoding="utf-8")
    assert external_urls(page) == set()
    assert "<script src" not in page and "cdn." not in page
    assert "window.vegaEmbed=" in page  # the libraries are inlined
    specs = re.findall(r'<script type="application/json" id="spec-\d+">(.*?)</script>', page)
    assert len(specs) >= 10
    for s in specs:
        spec = json.loads(s)
        assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")  # an identifier, never fetched


def test_overview_numbers_match_the_journal(demo: Journal) -> None:
    o = overview_tables(demo)
    events = demo.read_all(["stream_id", "cost_usd", "is_error", "tool_name", "event_type", "occurred_at"]).to_pylist()
    assert o.totals["events"] == len(events) == sum(t.num_rows for t in generate_demo(runs=40, seed=7))
    assert o.totals["runs"] == len({e["stream_id"] for e in events})
    assert o.totals["cost_usd"] == sum((e["cost_usd"] or Decimal(0)) for e in events)
    assert o.totals["errors"] == sum(e["is_error"] for e in events)
    assert sum(o.by_day.column("events").to_pylist()) == len(events)
    by_tool = {r["tool_name"]: r["calls"] for r in o.by_tool.to_pylist()}
    for tool, calls in by_tool.items():
        assert calls == sum(1 for e in events if e["tool_name"] == tool and e["event_type"] == "tool_called")
    costs = o.costliest_runs.column("cost_usd").to_pylist()
    assert costs == sorted(costs, reverse=True) and len(costs) == 10


def test_overview_filters_are_bound_not_pasted(demo: Journal) -> None:
    since = dt.datetime(2026, 10, 5, tzinfo=dt.UTC)
    o = overview_tables(demo, since=since, agent="support-triage' OR '1'='1")
    assert o.totals["events"] == 0  # a quote in a value is a value
    o = overview_tables(demo, since=since, until=since + dt.timedelta(days=2), agent="support-triage")
    assert set(o.by_agent.column("agent").to_pylist()) >= {"support-triage"}
    assert all(since.date() <= d < (since + dt.timedelta(days=2)).date() for d in o.by_day.column("day").to_pylist())
    assert o.totals["events"] == sum(o.by_day.column("events").to_pylist()) > 0


def test_fixture_patterns_show_up(tmp_path: Path) -> None:
    j = Journal.create(tmp_path / "j")
    build_tool_failure_loop(j)
    build_budget_breach(j)
    o = overview_tables(j)
    tools = {r["tool_name"]: r for r in o.by_tool.to_pylist()}
    assert tools["shell"]["calls"] == 3 and tools["shell"]["failures"] == 3 and tools["shell"]["failure_rate"] == 1.0
    assert o.costliest_runs.column("stream_id").to_pylist()[0] == "budget_breach"
    assert o.top_errors.to_pylist()[0]["error"] == "connection refused"
    # the budget breach happened at 23:45 New York time: the next UTC day
    assert dt.date(2026, 3, 4) in o.cost_by_model_day.column("day").to_pylist()
    j.close()


def test_text_from_the_journal_is_escaped() -> None:
    evil = "<script>alert(1)</script>"
    report = Report(
        "t",
        evil,
        subject=evil,
        sections=[
            Section(evil, [Text(evil), TableBlock(evil, pa.table({"x": [evil]}))]),
            Section(
                "chart",
                [ChartBlock("c", charts.ranked_bars(pa.table({"k": [f"</script>{evil}"], "v": [1]}), "k", "v", evil))],
            ),
        ],
    )
    page = render_html(report, bundle_js="/* bundle */")
    assert "<script>alert" not in page
    assert page.count("</script>") == 3  # the spec's JSON, the bundle and the embed script: nothing closed early


def test_empty_range_still_renders(demo: Journal, tmp_path: Path) -> None:
    r = build_overview_report(demo, since=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    page = render_html(r, bundle_js="")
    assert "No events in this range." in page and "no events" in page


def test_overview_of_chat_transcripts_says_what_was_not_recorded(tmp_path: Path) -> None:
    """Chat transcripts carry no model, tokens, cost or duration: no empty or all-zero chart, a sentence instead."""
    j = Journal.create(tmp_path / "chat")
    import_paths(j, [str(REPO / "data" / "samples" / "chat" / "eval-runs.json")])
    page = render_html(build_overview_report(j), bundle_js="")
    specs = [json.loads(s) for s in re.findall(r'<script type="application/json" id="spec-\d+">(.*?)</script>', page)]
    assert len(specs) >= 4  # events and runs per day, error rate, tool calls
    for spec in specs:
        rows = [r for values in spec.get("datasets", {}).values() for r in values] + spec.get("data", {}).get(
            "values", []
        )
        assert rows, f"an empty chart: {spec.get('title')}"
    for sentence in (
        "No costs recorded in this range.",
        "No tokens recorded in this range.",
        "No LLM or tool call with a duration in this range.",
        "No LLM call names a model in this range.",
    ):
        assert sentence in page
    assert "No events in this range." not in page  # there are events: that is not what is missing


def test_charts_refuse_unaggregated_data() -> None:
    big = pa.table(
        {"day": [dt.date(2026, 1, 1)] * (charts.MAX_CHART_ROWS + 1), "events": [1] * (charts.MAX_CHART_ROWS + 1)}
    )
    with pytest.raises(ChartDataError, match="aggregate first"):
        charts.daily_bars(big, "events", "too many")
    with pytest.raises(ChartDataError, match="no column 'nope'"):
        charts.daily_bars(pa.table({"day": [dt.date(2026, 1, 1)]}), "nope", "x")


def test_charts_save_as_png_svg_and_json(demo: Journal, tmp_path: Path) -> None:
    report = build_overview_report(demo)
    pngs = save_charts(report, tmp_path / "png", "png")
    assert len(pngs) == len(report.charts()) >= 10
    assert all(p.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    svg = charts.save_chart(report.charts()[0].chart, tmp_path / "c.svg").read_text()
    assert svg.startswith("<svg") and "role-mark" in svg
    spec = json.loads(charts.save_chart(report.charts()[0].chart, tmp_path / "c.json").read_text())
    assert spec["mark"]["type"] == "bar"
    with pytest.raises(ChartDataError, match=r"cannot save a chart as \.gif"):
        charts.save_chart(report.charts()[0].chart, tmp_path / "c.gif")


def test_report_parameters_are_checked(demo: Journal) -> None:
    with pytest.raises(ReportError, match="no parameter 'nope'"):
        build_report(demo, "overview", {"nope": "1"})
    with pytest.raises(ReportError, match=r"parameter since: not an ISO 8601 time \('yesterday'\)"):
        build_report(demo, "overview", {"since": "yesterday"})
    with pytest.raises(ReportError, match=r"parameter since: timestamp has no time zone \('2026-10-01T00:00:00'\)"):
        build_report(demo, "overview", {"since": "2026-10-01T00:00:00"})
    with pytest.raises(ReportError, match="no report named 'x'") as e:
        build_report(demo, "x", {})
    assert "overview" in str(e.value)
    assert build_report(demo, "overview", {"top": "3"}).params["since"] is None


def test_write_html_refuses_a_non_html_path(demo: Journal, tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"\.html"):
        write_html(build_overview_report(demo), tmp_path / "report.pdf")


def test_cli_report_writes_html_and_charts(demo: Journal, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "overview.html"
    proc = subprocess.run(
        [
            str(JOURNAL_BIN),
            "report",
            "overview",
            "-j",
            str(demo.path),
            "--since",
            "2026-10-05",
            "-p",
            "top=3",
            "-o",
            str(out),
            "--charts",
            str(tmp_path / "charts"),
            "--chart-format",
            "svg",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == str(out) and out.is_file()
    assert len(list((tmp_path / "charts").glob("overview-*.svg"))) >= 9
    bad = subprocess.run(
        [str(JOURNAL_BIN), "report", "overview", "-j", str(demo.path), "-o", str(out), "-p", "x=1"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "no parameter 'x'" in bad.stderr and "Hint:" in bad.stderr
    listed = subprocess.run([str(JOURNAL_BIN), "report", "--list"], capture_output=True, text=True)
    assert all(name in listed.stdout for name in REPORTS)


def test_recorded_vs_repriced_covers_the_recorded_cost(demo: Journal) -> None:
    from toolkit.analysis.overview import recorded_vs_repriced

    by_model, by_day = recorded_vs_repriced(demo)
    o = overview_tables(demo)
    assert sum(by_model.column("recorded_cost_usd").to_pylist()) == o.totals["cost_usd"]
    assert set(by_model.column("model").to_pylist()) == set(o.by_model.column("model").to_pylist())
    assert sum(by_day.column("repriced_cost_usd").to_pylist()) == sum(by_model.column("repriced_cost_usd").to_pylist())
    report = build_overview_report(demo)
    assert any(s.title == "Recorded vs repriced cost" for s in report.sections)
