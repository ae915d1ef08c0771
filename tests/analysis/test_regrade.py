"""journal regrade: findings written as one batch, queryable with SQL, reproducible; the summary;
stream selection; the CLI's output and exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from invariant_journals import PATTERNS, build

from toolkit.analysis.regrade import regrade
from toolkit.analysis.sql import run_sql
from toolkit.analysis.verdicts import Selection
from toolkit.cli.main import cli
from toolkit.errors import ToolkitError
from toolkit.journal import Journal
from toolkit.journal.prepare import parse_time
from toolkit.journal.side_tables import read_table

STABLE = ["inputs_sha256", "finding_id", "rule", "rule_fingerprint", "params", "severity", "kind", "stream_id",
          "stream_type", "first_failing_version", "position", "occurred_at", "event_id", "message", "evidence",
          "failing_events"]


@pytest.fixture
def patterns(tmp_path: Path) -> Iterator[Journal]:
    j = build(tmp_path / "j", *PATTERNS)
    yield j
    j.close()


def test_findings_go_to_the_findings_table_as_one_batch_and_sql_reads_them(patterns: Journal) -> None:
    result = regrade(patterns, ["budget", "exactly_once", "latency"])
    assert result.written == result.findings.num_rows == 4
    rows = run_sql(patterns, "SELECT batch_id, rule, stream_id, first_failing_version FROM findings ORDER BY rule, stream_id")
    assert {r["batch_id"] for r in rows.to_pylist()} == {result.batch_id}
    assert [(r["rule"], r["stream_id"], r["first_failing_version"]) for r in rows.to_pylist()] == [
        ("budget", "expensive", 7), ("exactly_once", "order-1-retry", 1),
        ("latency", "slow", 2), ("latency", "slow_model", 1),
    ]
    finding = next(r for r in result.findings.to_pylist() if r["rule"] == "budget")
    expensive = {r["version"]: r for r in patterns.read_stream("expensive").to_pylist()}
    assert finding["position"] == expensive[7]["position"] and finding["event_id"] == expensive[7]["event_id"]
    assert finding["occurred_at"] == parse_time("2026-03-03T08:05:00Z", "t", 0)
    assert json.loads(finding["evidence"]) == {"event_type": "llm_response", "failing_versions": [7, 8],
                                               "last_failing_version": 8}
    assert json.loads(finding["params"]) == {"max_cost_usd": 5.0, "max_tokens": None}


def test_findings_batches_are_reproducible(patterns: Journal) -> None:
    first = regrade(patterns, ["all"])
    second = regrade(patterns, ["all"])
    assert first.batch_id != second.batch_id
    assert first.findings.select(STABLE).to_pylist() == second.findings.select(STABLE).to_pylist()
    stored = read_table(patterns, "findings")
    assert stored.num_rows == 2 * first.findings.num_rows
    by_batch: dict[str, list[dict[str, object]]] = {}
    for r in stored.sort_by([("rule", "ascending"), ("finding_id", "ascending")]).select(["batch_id", *STABLE]).to_pylist():
        by_batch.setdefault(str(r.pop("batch_id")), []).append(r)
    first_batch, second_batch = by_batch.values()
    assert first_batch == second_batch


def test_new_events_change_the_inputs_and_may_change_the_findings(patterns: Journal) -> None:
    before = regrade(patterns, ["budget"], write=False)
    patterns.append("cheap", [{"event_type": "llm_response", "cost_usd": 7, "data": {}}])
    after = regrade(patterns, ["budget"], write=False)
    assert before.inputs_sha256 != after.inputs_sha256
    assert {r["stream_id"] for r in after.findings.to_pylist()} == {"expensive", "cheap"}


def test_summary_counts_streams_and_failures_per_day_since_the_first(patterns: Journal) -> None:
    s = regrade(patterns, ["budget", "latency", "exactly_once"], write=False).summary()
    assert s["streams_checked"] == 22  # 2 + 2 + 4 + 5 + 3 + 3 + 3 streams in the patterns
    assert s["streams_failing"] == 4
    assert s["first_failure"]["rule"] == "budget" and s["first_failure"]["stream_id"] == "expensive"
    assert s["failures_per_day"] == {"2026-03-03": 1, "2026-03-04": 0, "2026-03-05": 0, "2026-03-06": 0,
                                     "2026-03-07": 0, "2026-03-08": 2, "2026-03-09": 1}


def test_selection_picks_whole_streams(patterns: Journal) -> None:
    def streams(selection: Selection) -> tuple[int, set[str]]:
        r = regrade(patterns, ["latency", "budget"], selection=selection, write=False)
        return r.streams_checked, {f["stream_id"] for f in r.findings.to_pylist()}

    assert streams(Selection(streams=("slow", "quick"))) == (2, {"slow"})
    assert streams(Selection(agents=("summariser",))) == (2, {"expensive"})
    # the window selects streams with an event inside it; they are judged whole
    assert streams(Selection(since=parse_time("2026-03-03T08:04:30Z", "s", 0),
                             until=parse_time("2026-03-03T09:00:00Z", "u", 0))) == (1, {"expensive"})
    assert streams(Selection(stream_types=("other",))) == (0, set())


def test_dry_run_writes_nothing(patterns: Journal) -> None:
    regrade(patterns, ["all"], write=False)
    assert read_table(patterns, "findings").num_rows == 0


def test_a_pinned_journal_judges_but_writes_no_findings(patterns: Journal) -> None:
    """Findings are written with the redactions committed since the version judged taken to them;
    a pinned journal (read-only, as for appends) would judge an older version than the one it is
    told apart from, so it refuses to write them (it wrote them before) and judges with write=False."""
    pinned = patterns.pinned()
    with pytest.raises(ToolkitError, match="cannot write findings") as e:
        regrade(pinned, ["all"])
    assert "Hint: write findings through Journal.open(path)" in str(e.value)
    assert read_table(patterns, "findings").num_rows == 0
    judged = regrade(pinned, ["all"], write=False).findings.select(STABLE)
    assert judged.num_rows and judged == regrade(patterns, ["all"], write=False).findings.select(STABLE)


def test_every_rule_a_batch_judged_is_recorded_even_when_it_held(patterns: Journal) -> None:
    result = regrade(patterns, ["budget", "latency"], params={"max_cost_usd": "1000"})
    recorded = {r["rule"]: r for r in read_table(patterns, "regrades").to_pylist()}
    assert {r: (x["batch_id"], x["streams_failing"], x["errors"]) for r, x in recorded.items()} == {
        "budget": (result.batch_id, 0, 0), "latency": (result.batch_id, 2, 0)
    }
    assert recorded["budget"]["streams_checked"] == result.streams_checked
    graded = set(read_table(patterns, "findings").column("graded_at").to_pylist())
    assert graded == {recorded["latency"]["graded_at"]}  # one time for the whole batch
    regrade(patterns, ["budget"], write=False)
    assert read_table(patterns, "regrades").num_rows == 2


def test_cli_prints_the_summary_and_exits_3_on_findings(patterns: Journal) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["regrade", "-j", str(patterns.path), "budget", "latency"])
    assert out.exit_code == 3, out.output
    assert "streams checked: 22, failing: 3" in out.output
    assert "first failing event: expensive v7" in out.output
    ok = runner.invoke(cli, ["regrade", "-j", str(patterns.path), "budget", "-p", "max_cost_usd=100", "--format", "json"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout == "" or ok.stdout.strip() == ""
    listed = runner.invoke(cli, ["regrade", "-j", str(patterns.path), "--list", "--format", "csv"])
    assert listed.exit_code == 0 and "exactly_once,sql,critical" in listed.output


def test_cli_refuses_bad_input_with_a_hint(patterns: Journal) -> None:
    runner = CliRunner()
    none = runner.invoke(cli, ["regrade", "-j", str(patterns.path)])
    assert none.exit_code == 2 and "name one or more rules" in none.output
    when = runner.invoke(cli, ["regrade", "-j", str(patterns.path), "budget", "--since", "yesterday"])
    assert when.exit_code == 2 and "--since" in when.output
    typo = runner.invoke(cli, ["regrade", "-j", str(patterns.path), "budget", "--stream", "expensvie", "--dry-run"])
    assert typo.exit_code == 0 and "streams checked: 0" in typo.stdout
    assert "warning: the selection matched no stream" in typo.stderr


def test_cli_warns_of_each_stream_named_that_the_journal_lacks(patterns: Journal) -> None:
    """With one good and one mistyped --stream, the typo was dropped without a word (the warning
    came only when nothing at all matched): the output read as a clean bill for both."""
    streams = ["--stream", "expensive", "--stream", "expensvie"]
    out = CliRunner().invoke(cli, ["regrade", "-j", str(patterns.path), "budget", *streams, "--dry-run"])
    assert out.exit_code == 3 and "streams checked: 1" in out.stdout, out.output
    assert "warning: --stream expensvie: no stream 'expensvie'" in out.stderr
    assert "did you mean expensive" in out.stderr and "--stream expensive:" not in out.stderr


def test_python_rules_in_worker_processes_find_what_one_process_finds(patterns: Journal, tmp_path: Path) -> None:
    py = tmp_path / "rules.py"
    py.write_text(
        "from toolkit.analysis.rules import python_rule\n\n"
        "@python_rule('few_events', 'At most n events.', params='n BIGINT = 3')\n"
        "def few_events(state, p):\n"
        "    return state.events <= p['n'] or f\"{state.events} events\"\n"
    )
    names = ["budget_state", "few_events"]
    one = regrade(patterns, names, rule_files=[str(py)], workers=1, write=False).findings
    two = regrade(patterns, names, rule_files=[str(py)], workers=2, write=False).findings
    assert one.select(STABLE).to_pylist() == two.select(STABLE).to_pylist()
    assert {r["kind"] for r in two.to_pylist()} == {"violation"}
    assert {(r["rule"], r["stream_id"]) for r in two.to_pylist()} >= {("budget_state", "expensive"), ("few_events", "loop")}


@pytest.mark.slow
def test_make_demo_regrades_bisects_and_summarises(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    if not (root / ".venv" / "bin" / "journal").exists():
        pytest.skip("make demo needs the project's .venv (make test creates it)")
    env = {k: v for k, v in os.environ.items() if k != "AGENT_JOURNAL"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(["make", "demo", f"JOURNAL={tmp_path / 'demo'}", "RUNS=40"], cwd=root, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "streams checked: " in proc.stdout and "first failing event: " in proc.stdout
    assert "bisection: " in proc.stdout and "first failing version: " in proc.stdout
    assert "state before -> after" in proc.stdout


def test_findings_rows_are_built_as_the_row_by_row_formula_says(patterns: Journal) -> None:
    """Column-wise recording: evidence is json.dumps(sort_keys=True) text, ids are uuid5 of what was judged."""
    import uuid

    from toolkit.analysis.regrade import FINDING_NAMESPACE

    result = regrade(patterns, ["all"], write=False)
    rows = result.findings.to_pylist()
    assert rows
    for r in rows:
        evidence = json.loads(r["evidence"])
        assert r["evidence"] == json.dumps(evidence, sort_keys=True)
        assert evidence["failing_versions"][0] == r["first_failing_version"]
        assert r["finding_id"] == str(uuid.uuid5(
            FINDING_NAMESPACE, f"{r['rule_fingerprint']}/{r['kind']}/{r['stream_id']}/{r['first_failing_version']}"))
    assert rows == sorted(rows, key=lambda r: (r["rule"], r["stream_id"] or "", r["first_failing_version"] or 0, r["kind"]))
    summary = result.summary()
    violations = [r for r in rows if r["kind"] == "violation"]
    first = min(violations, key=lambda r: (r["occurred_at"], r["position"]))
    assert summary["first_failure"]["stream_id"] == first["stream_id"]
    assert summary["streams_failing"] == len({r["stream_id"] for r in violations})
    assert sum(summary["failures_per_day"].values()) == len(violations)


KEY_ONCE = """
import polars as pl
from toolkit.analysis.rules import polars_rule

@polars_rule('key_once_in_journal', 'No idempotency key is used twice anywhere in the journal.',
             columns=('idempotency_key',))
def key_once_in_journal(events, p):
    return pl.col('idempotency_key').is_null() | ~pl.col('idempotency_key').is_duplicated()
"""


def shared_key_journal(path: Path) -> Journal:
    """s0 and s2 use the idempotency key K-1; s1 uses none."""
    j = Journal.create(path)
    for i in range(3):
        j.append(f"s{i}", [{"event_type": "tool_called", "tool_name": "send", "tool_call_id": f"c{i}", "data": {},
                            "idempotency_key": "K-1" if i != 1 else None, "occurred_at": f"2026-11-0{1 + i}T10:00:00Z"}])
    return j


def test_a_polars_rule_looking_across_streams_gives_a_selected_stream_its_verdict_in_the_whole_journal(
    tmp_path: Path,
) -> None:
    """--stream s0 judged s0 among the selected events only: the key s2 shares with it was not seen and
    s0 passed, though the full re-grade fails it. The rule now sees the whole journal; the selection
    only chooses which streams are reported."""
    j = shared_key_journal(tmp_path / "j")
    rules_py = tmp_path / "key_once.py"
    rules_py.write_text(KEY_ONCE, encoding="utf-8")
    files = [str(rules_py)]
    full = regrade(j, ["key_once_in_journal"], rule_files=files, write=False).findings
    assert full.column("stream_id").to_pylist() == ["s0", "s2"]
    for streams in (("s0",), ("s0", "s1"), ("s1",)):
        picked = regrade(j, ["key_once_in_journal"], rule_files=files, selection=Selection(streams=streams), write=False)
        expected = [r for r in full.select(STABLE[1:]).to_pylist() if r["stream_id"] in streams]
        assert picked.findings.select(STABLE[1:]).to_pylist() == expected, streams
    r = CliRunner().invoke(cli, ["regrade", "-j", str(j.path), "key_once_in_journal", "--rules", str(rules_py),
                                 "--stream", "s2", "--dry-run", "--format", "csv"])
    assert r.exit_code == 3, r.output  # findings present
    assert "s2" in r.stdout and "s0" not in r.stdout
    j.close()
