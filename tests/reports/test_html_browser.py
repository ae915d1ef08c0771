"""Every `journal report` HTML opened from a file:// URL in headless chromium with the network off.

The page must make no request other than to its own file, and every chart must render (each
Vega view drew marks). One full-page PNG per report is kept under test-artifacts/screenshots/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import REPO, launch_browser, require_browser, screenshot, wait_for_charts

from toolkit.journal import Journal
from toolkit.reports.html import write_html
from toolkit.reports.report_catalog import REPORTS, build_report

pytestmark = [pytest.mark.service, pytest.mark.slow]

FIXTURE = REPO / "tests" / "fixtures" / "demo-journal"

# parameters that pick something real in the demo fixture, and the least number of charts then shown
REPORT_ARGS: dict[str, tuple[dict[str, str], int]] = {
    "overview": ({}, 10),
    "run": ({"stream": "run-7-0000012"}, 1),
    "causation": ({"event": "the middle event of run-7-0000012"}, 2),  # chain graph and trace timeline (_real_args)
    "regrade": ({"rules": "budget,latency"}, 3),
    "compliance": ({"subject": "user-0004", "since": "2026-10-01", "until": "2026-10-15"}, 1),
}


@pytest.fixture(scope="module")
def demo_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("rep-browser") / "demo-journal"
    shutil.copytree(FIXTURE, copy)
    return copy


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    with launch_browser() as b:
        yield b


def _real_args(journal: Journal, args: dict[str, str]) -> dict[str, str]:
    """``args`` with the causation report's event taken from the fixture (its ids change whenever
    the demo generator does): the middle event of run-7-0000012, caused and causing."""
    if args.get("event") != "the middle event of run-7-0000012":
        return args
    ids = journal.read_stream("run-7-0000012", ["event_id"]).column("event_id").to_pylist()
    return {**args, "event": ids[len(ids) // 2]}


def test_every_report_is_covered() -> None:
    assert sorted(REPORT_ARGS) == sorted(REPORTS)


@pytest.mark.parametrize("name", sorted(REPORT_ARGS))
def test_report_renders_offline_from_file(name: str, browser: Any, demo_journal: Path, tmp_path: Path) -> None:
    args, min_charts = REPORT_ARGS[name]
    journal = Journal.open(demo_journal)
    out = write_html(build_report(journal, name, _real_args(journal, args)), tmp_path / f"{name}.html")
    context = browser.new_context(offline=True, viewport={"width": 1200, "height": 900})
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://") else route.abort())
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(out.as_uri())
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-vega-spec]')].every(e => e.dataset.rendered)", timeout=60_000
        )
        failed = page.locator("[data-rendered='error']").count()
        assert failed == 0, page.locator("[data-rendered='error']").first.inner_text()
        marks = wait_for_charts(page, min_charts, timeout=30)
        assert all(m > 0 for m in marks)
        assert errors == []
        assert [u for u in requests if not u.startswith("file://")] == []
        screenshot(page, f"report-{name}")
    finally:
        context.close()
