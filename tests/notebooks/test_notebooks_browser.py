"""Each notebook served by `marimo run --headless` on localhost, opened in a real headless chromium.

Checks the cells ran (no error), every Vega view drew marks, and (run explorer) that moving the
version slider changes the state shown. One full-page PNG per notebook is kept under
test-artifacts/screenshots/. Every server the test starts is stopped.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import (
    NOTEBOOKS,
    REPO,
    launch_browser,
    marimo_app,
    require_browser,
    require_marimo,
    screenshot,
    wait_for_charts,
)

pytestmark = [pytest.mark.service, pytest.mark.slow]

FIXTURE = REPO / "tests" / "fixtures" / "demo-journal"

# minimum number of charts each notebook shows on the demo journal with its default picks
CHARTS = {"overview": 9, "run_explorer": 1, "causation": 1, "regrade": 1, "compliance": 1}


@pytest.fixture(scope="module")
def demo_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("nb-browser") / "demo-journal"
    shutil.copytree(FIXTURE, copy)
    return copy


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    require_marimo()
    with launch_browser() as b:
        yield b


def open_app(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    return page


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_notebook_renders_in_a_browser(name: str, browser: Any, demo_journal: Path) -> None:
    with marimo_app(NOTEBOOKS / f"{name}.py", demo_journal) as url:
        page = open_app(browser, url)
        try:
            marks = wait_for_charts(page, CHARTS[name])
            assert sum(marks) > 0
            screenshot(page, f"notebook-{name}")
        finally:
            page.close()


def shown_version(page: Any) -> tuple[int, str]:
    """The version the explorer says it shows, and the state text under it."""
    text = page.locator("[data-testid='run-state']").first.inner_text()
    m = re.search(r"State after version (\d+)", text)
    assert m, text
    return int(m.group(1)), text


def test_run_explorer_slider_changes_the_state(browser: Any, demo_journal: Path) -> None:
    with marimo_app(NOTEBOOKS / "run_explorer.py", demo_journal) as url:
        page = open_app(browser, url)
        try:
            wait_for_charts(page, CHARTS["run_explorer"])
            page.locator("[data-testid='run-state']").first.wait_for(timeout=60_000)
            before_version, before = shown_version(page)
            thumb = page.get_by_role("slider").first
            thumb.focus()
            thumb.press("End")
            page.wait_for_function("() => true", timeout=1000)  # let the key event reach the kernel before polling
            for _ in range(120):
                after_version, after = shown_version(page)
                if after_version != before_version:
                    break
                page.wait_for_timeout(250)
            assert after_version > before_version, f"slider did not move the state: {before_version} → {after_version}"
            assert after != before
            screenshot(page, "notebook-run_explorer-scrubbed")
        finally:
            page.close()
