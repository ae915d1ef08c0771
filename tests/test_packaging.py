"""The wheel carries what the code reads at run time: the SQL catalog, the price table, the notebooks.

Builds the wheel from a copy of this checkout's sources (pip, as a user would), unpacks it into a temporary directory and asks the installed copy where its queries,
prices and notebooks are: inside the package, not in a source checkout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json
from toolkit.analysis.pricing import default_prices_path
from toolkit.engines.queries import catalog, queries_dir
from toolkit.reports.report_catalog import notebooks_dir
print(json.dumps({"queries": str(queries_dir()), "catalog": sorted(catalog()), "prices": str(default_prices_path()),
                  "prices_exist": default_prices_path().is_file(), "notebooks": sorted(p.name for p in notebooks_dir().glob("*.py"))}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # build from a copy of what the wheel is made of, so the build leaves nothing in the checkout
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("toolkit", "queries", "notebooks", "data/prices"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "__marimo__"))
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (whl,) = out.glob("*.whl")
    return whl


def test_the_wheel_holds_queries_prices_and_notebooks(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    sql = {n.removeprefix("toolkit/queries/") for n in names if n.startswith("toolkit/queries/")}
    assert sql == {str(p.relative_to(ROOT / "queries")) for p in (ROOT / "queries").rglob("*.sql")}
    assert "toolkit/data/prices/prices.csv" in names
    assert {n for n in names if n.startswith("toolkit/notebooks/") and n.endswith(".py")} == {
        f"toolkit/notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.py")
    }
    assert not any(n.startswith(("tests/", "bench/", "data/samples", "toolkit/data/samples")) for n in names)


def test_an_installed_copy_finds_them_inside_the_package(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # another distribution's top-level queries/ beside the package: not the toolkit's catalog
    (site / "queries" / "invariants").mkdir(parents=True)
    (site / "queries" / "invariants" / "budget.sql").write_text("SELECT 1 AS other\n")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    assert found["queries"] == str(site / "toolkit" / "queries")
    assert "invariants/budget" in found["catalog"] and "rollups/usage" in found["catalog"]
    assert found["prices"] == str(site / "toolkit" / "data" / "prices" / "prices.csv") and found["prices_exist"]
    assert "overview.py" in found["notebooks"]


APPEND_PROBE = """
import json, sys
import pyarrow as pa
import toolkit
from toolkit.journal import Journal
from toolkit.journal.appendworkers import pool
from toolkit.journal.integrity import verify_journal
j = Journal.create(sys.argv[1])
j.append_workers, j.parallel_append_rows = 1, 1
n = 3000
j.append_batch(pa.table({
    "stream_id": [f"run-{i % 30:02d}" for i in range(n)],
    "stream_type": ["agent_run"] * n,
    "event_type": ["tool_called"] * n,
    "data": [f'{{"i":{i}}}' for i in range(n)],
    "occurred_at": pa.array([1_795_000_000_000_000 + i for i in range(n)], pa.timestamp("us", tz="UTC")),
}))
pids = pool().pids()
report = verify_journal(j)
print(json.dumps({"toolkit": toolkit.__file__, "workers": len(pids), "events": report.events, "ok": report.ok}))
"""


def test_an_installed_copy_appends_with_worker_processes_running_its_own_code(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", APPEND_PROBE, str(tmp_path / "journal")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    assert found["toolkit"] == str(site / "toolkit" / "__init__.py")
    assert found["workers"] == 1 and found["ok"] and found["events"] == 3000
