"""Time limits on user SQL (``journal sql --timeout``, ``sql_timeout_s`` in journal.toml, SQL rules of
``journal regrade`` and ``journal bisect``) and Ctrl-C during a query (user SQL, and the toolkit's own
queries), on a real journal through the real entry point."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, run_cli

from toolkit.analysis.pricing import CSV_COLUMNS
from toolkit.journal import Journal
from toolkit.journal.config import JournalConfig

# 2,000 events joined with themselves three times: 8 * 10^9 rows to hash, minutes on these machines
RUNAWAY = (
    "SELECT count(*) AS n FROM events AS a, events AS b, events AS c "
    "WHERE hash(a.event_id, b.event_id, c.event_id) % 1000 = 0"
)


def make_journal(path: Path, config: JournalConfig | None = None) -> str:
    j = Journal.create(path, config=config)
    j.append("run-1", [{"event_type": "user_message", "data": {"i": i}} for i in range(2_000)])
    j.close()
    return str(path)


@pytest.fixture(scope="module")
def jpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_journal(tmp_path_factory.mktemp("timeout") / "j")


def test_sql_timeout_stops_a_runaway_query(jpath: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A cross join of events with itself ran until killed: --timeout 1 stops it within seconds, exit 4,
    one error line naming the limit and a Hint."""
    started = time.monotonic()
    code, out, err = run_cli(capsys, "sql", "-j", jpath, RUNAWAY, "--timeout", "1")
    elapsed = time.monotonic() - started
    assert code == 4, err
    assert elapsed < 10, f"stopped after {elapsed:.1f} s"
    lines = err.splitlines()
    assert lines[0] == "error: the query ran past its time limit of 1 s and was stopped", err
    assert lines[1].startswith("Hint: give it longer (--timeout SECONDS") and "LIMIT" in lines[1]
    assert out == ""


def test_sql_under_its_time_limit_is_unaffected(jpath: str, capsys: pytest.CaptureFixture[str]) -> None:
    for limit in ("30", "0"):  # 0: no limit
        code, out, err = run_cli(
            capsys, "sql", "-j", jpath, "SELECT count(*) AS n FROM events", "--timeout", limit, "--format", "csv"
        )
        assert code == 0, err
        assert out.split() == ["n", "2000"]


def test_the_journal_config_sets_the_default_time_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = make_journal(tmp_path / "j", JournalConfig(sql_timeout_s=1))
    started = time.monotonic()
    code, _, err = run_cli(capsys, "sql", "-j", path, RUNAWAY)
    assert code == 4 and "time limit of 1 s" in err and time.monotonic() - started < 10, err
    code, out, err = run_cli(capsys, "sql", "-j", path, "SELECT count(*) AS n FROM events", "--format", "csv")
    assert code == 0 and out.split() == ["n", "2000"], err


def test_a_bad_time_limit_in_the_journal_config_names_the_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_journal(tmp_path / "j")
    toml = Path(path) / "journal.toml"
    toml.write_text(toml.read_text().replace("sql_timeout_s = 0.0", 'sql_timeout_s = "ten"'))
    code, _, err = run_cli(capsys, "sql", "-j", path, "SELECT 1")
    lines = err.splitlines()
    assert code == 1 and "journal.toml: sql_timeout_s = 'ten': not a number of seconds" in lines[0], err
    assert lines[1].startswith("Hint: give the time limit of a query in seconds")


def test_ctrl_c_stops_a_running_query(jpath: str) -> None:
    """DuckDB looks at signals only when a query ends: Ctrl-C left a runaway query running for minutes.
    It now stops it at once; the command says Aborted."""
    _interrupted_after_5_s(["sql", "-j", jpath, RUNAWAY])


def test_regrade_records_a_sql_rule_past_its_time_limit_as_a_rule_error(
    jpath: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = tmp_path / "runaway.sql"
    rule.write_text(
        "-- summary: every event has a partner (a join of events with itself, three times)\n"
        "SELECT a.stream_id, a.version, count(*) > 0 AS holds\n"
        "FROM events AS a, events AS b, events AS c\n"
        "WHERE hash(a.event_id, b.event_id, c.event_id) % 1000 = 0\n"
        "GROUP BY ALL\n",
        encoding="utf-8",
    )
    started = time.monotonic()
    code, out, err = run_cli(
        capsys,
        "regrade",
        "-j",
        jpath,
        "runaway",
        "--rules",
        str(rule),
        "--timeout",
        "1",
        "--dry-run",
        "--format",
        "json",
    )
    assert time.monotonic() - started < 15, err
    assert code == 3, err
    (finding,) = map(json.loads, out.splitlines())  # json lines
    assert finding["kind"] == "error" and finding["rule"] == "runaway"
    assert "QueryTimeoutError: the query ran past its time limit of 1 s" in finding["message"]


def runaway_rule(directory: Path, scope: str) -> Path:
    """A SQL rule (monotone, of ``scope``) whose first probe runs for minutes: a triple self join."""
    rule = directory / f"runaway_{scope}.sql"
    rule.write_text(
        f"-- summary: every event has a partner (a join of events with itself, three times)\n"
        f"-- monotone: true\n-- scope: {scope}\n"
        "SELECT a.stream_id, a.version, count(*) > 0 AS holds\n"
        "FROM events AS a, events AS b, events AS c\n"
        "WHERE hash(a.event_id, b.event_id, c.event_id) % 1000 = 0\n"
        "GROUP BY ALL\n",
        encoding="utf-8",
    )
    return rule


@pytest.mark.parametrize("scope", ["stream", "global"])
@pytest.mark.parametrize("limit_from", ["--timeout", "journal.toml"])
def test_bisect_stops_a_sql_rule_probe_past_its_time_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scope: str, limit_from: str
) -> None:
    """journal bisect of a SQL rule had no time limit: a runaway probe ran until killed. --timeout 1 (or
    sql_timeout_s = 1 in journal.toml) now stops it within seconds: exit 4, one line naming the limit."""
    config = JournalConfig(sql_timeout_s=1) if limit_from == "journal.toml" else None
    path = make_journal(tmp_path / "j", config)
    rule = runaway_rule(tmp_path, scope)
    target = ["run-1"] if scope == "stream" else ["--global"]
    limit = ["--timeout", "1"] if limit_from == "--timeout" else []
    started = time.monotonic()
    code, out, err = run_cli(capsys, "bisect", "-j", path, rule.stem, *target, "--rules", str(rule), *limit)
    elapsed = time.monotonic() - started
    assert code == 4, err
    assert elapsed < 15, f"stopped after {elapsed:.1f} s"
    lines = err.splitlines()
    assert lines[0] == "error: the query ran past its time limit of 1 s and was stopped", err
    assert lines[1].startswith("Hint: give it longer (--timeout SECONDS"), err
    assert out == ""


def test_bisect_under_its_time_limit_is_unaffected(
    jpath: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = tmp_path / "few_events.sql"
    rule.write_text(
        "-- summary: a stream holds while it has at most 1,000 events\n-- monotone: true\n"
        "SELECT stream_id, version, version <= 1000 AS holds FROM events\n",
        encoding="utf-8",
    )
    code, out, err = run_cli(
        capsys, "bisect", "-j", jpath, "few_events", "run-1", "--rules", str(rule), "--timeout", "30"
    )
    assert code == 3, err
    assert "first failing version: 1001" in out, out


def test_ctrl_c_stops_a_running_bisect_probe(jpath: str, tmp_path: Path) -> None:
    """A bisect probe runs watched, as journal sql does: Ctrl-C stops it at once, the command says Aborted."""
    rule = runaway_rule(tmp_path, "stream")
    argv = ["bisect", "-j", jpath, rule.stem, "run-1", "--rules", str(rule)]
    _interrupted_after_5_s(argv)


def test_ctrl_c_stops_a_running_rollup_query(tmp_path: Path) -> None:
    """The toolkit's own queries ran unwatched: Ctrl-C during journal rollup waited for the whole query
    (minutes on a large journal). Made slow here on purpose: 40,000 models, each tried against 20 regex
    price rows (DuckDB compiles a pattern read from a column for each pair it tries: 800,000
    compilations, minutes; each short, as DuckDB notices an interrupt between batches of pairs). It now
    stops at once with Aborted. (journal rollup writes nothing: no Hint)."""
    journal = Journal.create(tmp_path / "j")
    journal.append(
        "run-1",
        [
            {"event_type": "llm_response", "data": {}, "model": f"model-{i}", "tokens_in": 10, "tokens_out": 1}
            for i in range(40_000)
        ],
        stream_type="agent_run",
    )
    journal.close()
    prices = tmp_path / "prices.csv"
    rows = [
        f'"m{i}[a-z0-9]{{0,100}}",regex,acme,2026-01-01,,1.00,2.00,,,,,https://example.com/p,2026-01-01'
        for i in range(20)
    ]
    prices.write_text(",".join(CSV_COLUMNS) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    argv = ["rollup", "-j", str(journal.path), "--cost", "repriced", "--prices", str(prices)]
    err = _interrupted_after_5_s(argv)
    assert "Hint:" not in err and "Traceback" not in err, err


def _interrupted_after_5_s(argv: list[str]) -> str:
    """Run ``journal ARGV`` as a terminal starts it, send it SIGINT after 5 s (imports, opening the
    journal, then its query runs): it must end at once (within 3 s) with Aborted., exit 1. Its stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolkit.cli", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        time.sleep(5)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        _, err = proc.communicate(timeout=15)
        elapsed = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1 and err.strip().endswith("Aborted."), err
    assert elapsed < 3, f"ended {elapsed:.1f} s after Ctrl-C"
    return err
