"""A real headless browser for the notebook and report tests: the system chromium driven by playwright.

Nothing is downloaded: playwright starts ``/usr/bin/chromium`` (``.ci/run`` installs Debian's
``chromium``; ``$CHROMIUM`` overrides the path). When playwright, chromium or marimo is absent
the tests skip with the reason; under CI (``REQUIRE_SERVICES=1``) such a skip fails.

Also: :func:`marimo_app` serves a notebook with ``marimo run --headless`` on 127.0.0.1 and stops
it afterwards; :func:`vega_marks` counts the marks each rendered Vega view drew; screenshots go
to ``test-artifacts/screenshots/`` (gitignored; ``$TOOLKIT_TEST_ARTIFACTS`` overrides).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = Path(os.environ.get("TOOLKIT_TEST_ARTIFACTS") or REPO / "test-artifacts")


def chromium_path() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_browser() -> str:
    """The chromium executable, or skip the test saying what is missing."""
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    path = chromium_path()
    if path is None:
        pytest.skip("chromium is not installed (apt-get install chromium chromium-driver; .ci/run does)")
    return path


def require_marimo() -> None:
    if importlib.util.find_spec("marimo") is None:
        pytest.skip("marimo is not installed (pip install -e '.[notebooks]')")


@contextlib.contextmanager
def launch_browser() -> Iterator[Any]:
    """A headless chromium (the system one) under playwright."""
    executable = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def marimo_app(notebook: Path, journal: Path, *, edit: bool = False, timeout: float = 60) -> Iterator[str]:
    """Serve ``notebook`` with ``journal notebook NAME --headless`` (``marimo run`` on 127.0.0.1; with
    ``edit``, marimo's editor and its access token); yield its URL; stop everything it started."""
    require_marimo()
    port = free_port()
    log = ARTIFACTS / "logs" / f"marimo-{notebook.stem}-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    journal_cli = Path(sys.executable).parent / "journal"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(journal_cli),
                "notebook",
                notebook.stem,
                "-j",
                str(journal),
                "--port",
                str(port),
                "--headless",
                *(["--edit"] if edit else []),
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with everything it started
        )
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"marimo exited with {proc.returncode}:\n{log.read_text()}")
                token = re.search(r"access_token=([\w-]+)", log.read_text())
                if edit and token:
                    url = f"http://127.0.0.1:{port}/?access_token={token.group(1)}"
                try:
                    with urllib.request.urlopen(url, timeout=2) as r:
                        if r.status == 200 and (token or not edit):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"marimo did not answer on {url} within {timeout}s:\n{log.read_text()}")
                time.sleep(0.2)
            yield url
        finally:
            stop_group(proc)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    """SIGTERM the server's process group (journal notebook and the marimo it started), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.poll()
        if not group_alive(proc.pid):
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def vega_marks(page: Any) -> list[int]:
    """Marks drawn by each Vega view on the page (playwright's locators pierce shadow roots)."""
    views = page.locator(".vega-embed")
    counts = []
    for i in range(views.count()):
        counts.append(
            views.nth(i)
            .locator("svg .role-mark path, svg .role-mark line, svg .role-mark circle, svg .role-mark text")
            .count()
        )
    return counts


def wait_for_charts(page: Any, expected: int, *, timeout: float = 90) -> list[int]:
    """Wait until at least ``expected`` Vega views are on the page and every one drew marks."""
    deadline = time.monotonic() + timeout
    counts: list[int] = []
    while time.monotonic() < deadline:
        text = page.evaluate("document.body.innerText")
        assert "An internal error occurred" not in text, text[:2000]
        counts = vega_marks(page)
        if len(counts) >= expected and all(c > 0 for c in counts):
            return counts
        page.wait_for_timeout(500)
    raise AssertionError(f"expected {expected} Vega views with marks, got marks per view {counts}")


def screenshot(page: Any, name: str) -> Path:
    path = ARTIFACTS / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
