"""Fixtures the report tests share."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from toolkit.journal import Journal

DEMO_FIXTURE = Path(__file__).parents[1] / "fixtures" / "demo-journal"


@pytest.fixture
def demo(tmp_path: Path) -> Journal:
    """A copy of the committed demo journal this test may change (modules that only read it
    define a module-wide one of the same name)."""
    shutil.copytree(DEMO_FIXTURE, tmp_path / "demo")
    return Journal.open(tmp_path / "demo")
