"""The README's commands run, so they cannot rot."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def env_with_venv(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AGENT_JOURNAL"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def test_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:25])
    assert "make demo" in first_screen and "make test" in first_screen


def test_task_blocks_run(tmp_path: Path) -> None:
    runnable = [b for b in blocks("bash") if "journal " in b and "make " not in b]
    assert runnable, "README lost its task examples"
    (tmp_path / "data").symlink_to(ROOT / "data")  # the examples use the bundled samples
    outputs = []
    for block in runnable:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env_with_venv(), capture_output=True, text=True
        )
        assert proc.returncode == 0, f"README block failed:\n{block}\n--- stderr:\n{proc.stderr}"
        outputs.append(proc.stdout)
    assert any("run-1" in out and "gpt-4o" in out for out in outputs)
    assert any('"imported": 34' in out and '"already_present": 34' in out for out in outputs)


def test_python_blocks_run() -> None:
    for block in blocks("python"):
        exec(compile(block, "README.md", "exec"), {})


def test_make_test_runs_lint_types_and_tests() -> None:
    out = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "ruff check" in out and "mypy" in out and "pytest" in out


def test_make_demo_builds_and_summarises(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "journal").exists():
        pytest.skip("make demo needs the project's .venv (make test creates it)")
    journal = tmp_path / "demo"
    proc = subprocess.run(
        ["make", "demo", f"JOURNAL={journal}", "RUNS=30"], cwd=ROOT, env=env_with_venv(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "tokens and cost by model" in proc.stdout
    summary = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith('{"formats"')))
    assert set(summary["formats"].values()) == {"agentstore", "eventsourcing", "evennia-archive", "otlp", "chat"}
    assert summary["imported"] > 0 and summary["rejected"] == 0
    streams = int(re.search(r"streams: (\d+)", proc.stdout).group(1))  # type: ignore[union-attr]
    assert streams >= 30 + 3  # the 30 demo runs and at least the imported sessions
    assert (journal / "journal.toml").is_file()
    reports = Path(f"{journal}-reports")  # make demo ends by writing two self-contained HTML reports
    assert f"{reports}/overview.html" in proc.stdout and (reports / "compliance.html").is_file()
    assert "window.vegaEmbed=" in (reports / "overview.html").read_text(encoding="utf-8")
