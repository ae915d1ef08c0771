"""Each notebook served by `marimo run --headless` on localhost, opened in a real headless chromium.

Checks the cells ran (no error), every Vega view drew marks, and (run explorer) that moving the
version slider changes the state shown. One full-page PNG per notebook is kept under
test-artifacts/screenshots/. Every server the test starts is stopped.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import socket
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
from helpers import build_tool_failure_loop, ev

from toolkit.ingest.runner import import_paths
from toolkit.journal import Journal

pytestmark = [pytest.mark.service, pytest.mark.slow]

FIXTURE = REPO / "tests" / "fixtures" / "demo-journal"

# minimum number of charts each notebook shows on the demo journal with its default picks
CHARTS = {"overview": 10, "run_explorer": 1, "causation": 1, "regrade": 1, "compliance": 1}


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


def shown_version(page: Any) -> tuple[int, str]:
    """The version the explorer says it shows, and the state text under it."""
    text = page.locator("[data-testid='run-state']").first.inner_text()
    m = re.search(r"State after version (\d+)", text)
    assert m, text
    return int(m.group(1)), text


def move_the_slider(page: Any) -> None:
    """Press End on the run explorer's version slider; the state shown must follow."""
    page.locator("[data-testid='run-state']").first.wait_for(timeout=60_000)
    before_version, before = shown_version(page)
    thumb = page.get_by_role("slider").first
    thumb.focus()
    thumb.press("End")
    after_version, after = before_version, before
    for _ in range(240):
        after_version, after = shown_version(page)
        if after_version != before_version:
            break
        page.wait_for_timeout(250)
    assert after_version > before_version, f"the slider did not move the state: {before_version} → {after_version}"
    assert after != before
    assert f"Event at version {after_version} of {after_version}" in after  # End: the last version


def jump_to_a_time(page: Any) -> None:
    """Type a time into the run explorer: the state shown is the one ``journal state --at`` gives
    (a time before the run: its first version); text that is not a time is said so."""
    box = page.get_by_placeholder("2026-10-02T14:03:00Z")
    box.fill("2000-01-01")
    box.press("Enter")
    version = -1
    for _ in range(240):
        version, _ = shown_version(page)
        if version == 1:
            break
        page.wait_for_timeout(250)
    assert version == 1, f"a time before the run did not show its first version: {version}"
    box.fill("half past nine")
    box.press("Enter")
    page.get_by_text("'half past nine' is not a time").first.wait_for(timeout=60_000)


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_notebook_renders_in_a_browser(name: str, browser: Any, demo_journal: Path) -> None:
    with marimo_app(NOTEBOOKS / f"{name}.py", demo_journal) as url:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        page = open_app(browser, url)
        try:
            marks = wait_for_charts(page, CHARTS[name])
            assert sum(marks) > 0
            screenshot(page, f"notebook-{name}")
            if name == "run_explorer":
                move_the_slider(page)
                wait_for_charts(page, CHARTS[name])  # the timeline redrawn with the new version
                screenshot(page, "notebook-run_explorer-scrubbed")
                jump_to_a_time(page)
        finally:
            page.close()
    with socket.socket() as s:  # the server (journal notebook and its marimo) is gone: the port is free
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_notebook_opens_the_journal_it_is_given_whatever_its_path(browser: Any, tmp_path: Path) -> None:
    """A path with '=' (a Hive-style directory) and spaces: marimo's `-- --journal` parsing cut it at the '='."""
    path = tmp_path / "day=2026-03-02" / "my journal"
    j = Journal.create(path)
    build_tool_failure_loop(j)
    j.close()
    with marimo_app(NOTEBOOKS / "overview.py", path) as url:
        page = open_app(browser, url)
        try:
            wait_for_charts(page, 1)
            text = page.evaluate("document.body.innerText")
            assert str(path) in text and "demo-journal" not in text, text[:2000]
        finally:
            page.close()


def test_overview_of_chat_transcripts_draws_no_empty_chart(browser: Any, tmp_path: Path) -> None:
    """No model, tokens, cost or duration recorded: every chart shown drew marks; the rest say why."""
    j = Journal.create(tmp_path / "chat")
    import_paths(j, [str(REPO / "data" / "samples" / "chat" / "eval-runs.json")])
    j.close()
    with marimo_app(NOTEBOOKS / "overview.py", tmp_path / "chat") as url:
        page = open_app(browser, url)
        try:
            page.get_by_text("No costs recorded in this range.").first.wait_for(timeout=90_000)
            marks = wait_for_charts(page, 4)  # events, runs, error rate per day; tool calls
            assert all(m > 0 for m in marks)
            text = page.evaluate("document.body.innerText")
            assert "No tokens recorded in this range." in text and "No LLM call names a model" in text
            screenshot(page, "notebook-overview-chat-only")
        finally:
            page.close()


def test_regrade_shows_a_run_id_as_written(browser: Any, tmp_path: Path) -> None:
    """A failing run whose id looks like Markdown and HTML: shown as its text, not as an image and italics."""
    run_id = '<img src="x" alt="IMG">loop *not italic*'
    j = Journal.create(tmp_path / "j")
    start = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    j.append(
        run_id,
        [
            ev(
                kind,
                {"cmd": "kubectl apply"},
                tool_name="shell",
                tool_call_id=f"c{i}",
                occurred_at=start + dt.timedelta(minutes=i),
                **({"error": "connection refused"} if kind == "tool_result" else {}),
            )
            for i in range(3)
            for kind in ("tool_called", "tool_result")
        ],
    )
    j.close()
    with marimo_app(NOTEBOOKS / "regrade.py", tmp_path / "j") as url:
        page = open_app(browser, url)
        try:
            heading = page.get_by_text("first failing version").first
            heading.wait_for(timeout=120_000)
            assert f"{run_id}: first failing version" in heading.inner_text()
            assert page.locator("img[alt='IMG']").count() == 0
        finally:
            page.close()
