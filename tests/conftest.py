"""Fixtures shared by every test: real journals on disk, a non-UTC time zone, hypothesis profiles."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from toolkit.journal import Journal

# CI: the same examples every run; locally: fresh examples, as many.
settings.register_profile("ci", derandomize=True, max_examples=30, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """An empty journal on disk."""
    j = Journal.create(tmp_path / "j")
    yield j
    j.close()


@pytest.fixture
def new_york_tz() -> Iterator[str]:
    """Run the test with the machine's time zone set to America/New_York (UTC-5/-4)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield "America/New_York"
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


# Tests that need a real service (PostgreSQL, a browser, the project's .venv) skip with a reason
# when it is absent. Under CI (.ci/run sets REQUIRE_SERVICES=1) such a skip is a failure.
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if REQUIRE_SERVICES and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped under REQUIRE_SERVICES=1 (CI must run every test): {reason}"
