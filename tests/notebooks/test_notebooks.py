"""Every notebook runs as a plain script on the demo journal (a failing cell fails the run) and passes `marimo check`."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from browser import NOTEBOOKS, REPO, require_marimo
from helpers import ev

from toolkit.journal import Journal
from toolkit.reports.charts import MAX_CHART_ROWS
from toolkit.reports.report_catalog import NOTEBOOKS as CATALOG
from toolkit.reports.report_catalog import notebook_argv, notebook_journal, notebook_path

FIXTURE = REPO / "tests" / "fixtures" / "demo-journal"


@pytest.fixture(scope="module")
def demo_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("nb") / "demo-journal"
    shutil.copytree(FIXTURE, copy)  # notebooks may write (bundles, snapshots): never into the committed copy
    return copy


def test_every_catalog_notebook_has_a_file() -> None:
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.py")) == sorted(CATALOG)


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_notebook_runs_as_a_script(name: str, demo_journal: Path, tmp_path: Path) -> None:
    require_marimo()
    proc = subprocess.run(
        [sys.executable, str(NOTEBOOKS / f"{name}.py"), "--journal", str(demo_journal)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{name}.py failed as a script:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


def test_a_failing_cell_fails_the_script(tmp_path: Path) -> None:
    require_marimo()
    proc = subprocess.run(
        [sys.executable, str(NOTEBOOKS / "overview.py"), "--journal", str(tmp_path / "no-journal")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "no journal at" in proc.stderr


def test_marimo_check_passes() -> None:
    require_marimo()
    proc = subprocess.run(
        [sys.executable, "-m", "marimo", "check", "--strict", *sorted(map(str, NOTEBOOKS.glob("*.py")))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_notebook_command_line(demo_journal: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from toolkit.reports.report_catalog import notebook_env

    require_marimo()
    argv = notebook_argv("run-explorer", port=2799, headless=True)
    assert argv[1:4] == ["-m", "marimo", "run"] and argv[4] == str(notebook_path("run_explorer"))
    assert "--headless" in argv and "127.0.0.1" in argv and "--" not in argv
    # the journal goes in the environment, absolute: marimo's own parsing of `-- --journal PATH` splits
    # a path at its first '=' and turns a path of digits into a number
    monkeypatch.chdir(demo_journal.parent)
    assert notebook_env("demo-journal")["AGENT_JOURNAL"] == str(demo_journal.absolute())
    assert notebook_env("s3://bucket/j")["AGENT_JOURNAL"] == "s3://bucket/j"
    assert notebook_journal(str(demo_journal)).path.resolve() == demo_journal.resolve()


def test_run_explorer_runs_on_a_run_longer_than_a_chart_takes(tmp_path: Path) -> None:
    require_marimo()
    j = Journal.create(tmp_path / "long")
    start = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    kinds = ["user_message", "llm_response", "tool_called", "tool_result"]
    j.append(
        "long-run",
        [ev(kinds[i % 4], occurred_at=start + dt.timedelta(seconds=i)) for i in range(MAX_CHART_ROWS + 1_000)],
    )
    j.close()
    proc = subprocess.run(
        [sys.executable, str(NOTEBOOKS / "run_explorer.py"), "--journal", str(tmp_path / "long")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"run_explorer.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


def test_unknown_notebook_lists_the_known_ones() -> None:
    from toolkit.errors import ReportError

    with pytest.raises(ReportError, match="no notebook named 'nope'") as e:
        notebook_path("nope")
    assert "overview" in str(e.value)
