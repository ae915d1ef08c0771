"""--plugins: user aggregates, projections and explainers from a file, used by the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import build_tool_failure_loop, run_cli
from replay_fixtures import fresh_cache  # noqa: F401  (pytest fixtures)

from toolkit.analysis.plugins import load_plugins
from toolkit.errors import PluginError
from toolkit.journal import Journal

PLUGIN = '''
import pyarrow as pa
from toolkit.analysis.aggregates import Aggregate
from toolkit.analysis.explain import Explanation, register_explainer
from toolkit.analysis.projections import Projection

SHELL_RUNS = Aggregate("shell_runs", initial=lambda: 0,
                       reducer=lambda n, e: n + (e.tool_name == "shell" and e.event_type == "tool_called"),
                       from_dict=int)

def _calls(e, emit):
    if e.event_type == "tool_called":
        emit({"stream_id": e.stream_id, "tool": e.tool_name})

CALLS = Projection("plugin_calls", pa.schema([("stream_id", pa.string()), ("tool", pa.string())]), handler=_calls)

@register_explainer("tool_called")
def _shell(e):
    return Explanation("Ran a command", str(e.get("tool_name")), ("shell",))
'''


def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    return run_cli(capsys, *argv, stdin=stdin)


def test_a_plugin_file_extends_state_project_replay_and_snapshot(
    journal: Journal, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    build_tool_failure_loop(journal)
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(PLUGIN)
    j = str(journal.path)
    code, out, err = run(capsys, monkeypatch, "state", "-j", j, "tool_failure_loop", "--aggregate", "shell_runs",
                         "--plugins", str(plugin), "--format", "json")
    assert code == 0 and json.loads(out) == 3 and "shell_runs" in err
    code, out, _ = run(capsys, monkeypatch, "project", "-j", j, "plugin_calls", "--plugins", str(plugin))
    assert code == 0 and json.loads(out)["rows"] == 3
    code, out, _ = run(capsys, monkeypatch, "sql", "-j", j, "SELECT count(*) AS n FROM projection_plugin_calls", "--format", "csv")
    assert code == 0 and out.splitlines()[-1] == "3"
    code, out, _ = run(capsys, monkeypatch, "replay", "-j", j, "tool_failure_loop", "--plugins", str(plugin),
                       "--type", "tool_called", "--format", "csv")
    assert code == 0 and out.count("Ran a command") == 3
    code, out, _ = run(capsys, monkeypatch, "snapshot", "-j", j, "--every", "5", "--aggregate", "shell_runs",
                       "--plugins", str(plugin))
    assert code == 0 and json.loads(out)["written"] == 2
    import importlib

    import toolkit.analysis.explain as ex

    importlib.reload(ex)


def test_bad_plugins_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="no such file"):
        load_plugins([str(tmp_path / "missing.py")])
    broken = tmp_path / "broken.py"
    broken.write_text("raise ValueError('half written')\n")
    with pytest.raises(PluginError, match="ValueError: half written"):
        load_plugins([str(broken)])
    with pytest.raises(PluginError, match="cannot import module"):
        load_plugins(["no_such_module_anywhere"])


def test_a_plugin_that_fails_to_import_is_named_with_file_and_line(tmp_path: Path) -> None:
    cases = {
        "undefined.py": ("from toolkit.analysis.aggregates import Aggregate\n\n"
                         "AGG = Aggregate('a', initial=lambda: 0, reducer=missing_reducer)\n", 3, "NameError"),
        "bad_name.py": ("from toolkit.analysis.aggregates import Aggregate\n"
                        "AGG = Aggregate('no spaces!', initial=lambda: 0, reducer=lambda n, e: n)\n", 2, "ValueError"),
        "syntax.py": ("x = 1\ndef f(:\n    pass\n", 2, "SyntaxError"),
    }
    for name, (source, line, kind) in cases.items():
        (tmp_path / name).write_text(source)
        with pytest.raises(PluginError, match=f"importing it failed at {tmp_path / name}:{line}: {kind}"):
            load_plugins([str(tmp_path / name)])
