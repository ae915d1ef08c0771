"""journal bisect: binary search == linear scan on monotone rules (property test), the fallback to a
linear scan, what it prints (event, explanation, states), global bisection, evaluation counts and
the one journal version every probe reads whatever commits meanwhile."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from invariant_journals import build

from toolkit.analysis.bisection import bisect_global, bisect_stream, max_evaluations, search_first_failure
from toolkit.cli.main import cli
from toolkit.errors import RuleDefinitionError, RuleEvaluationError, StreamNotFoundError
from toolkit.journal import Journal
from toolkit.journal.retention import purge_before


def _expected_first(costs: list[Decimal], limit: Decimal) -> int | None:
    total = Decimal(0)
    for i, c in enumerate(costs, start=1):
        total += c
        if total > limit:
            return i
    return None


@settings(max_examples=20, deadline=None)
@given(
    costs=st.lists(st.decimals(min_value=0, max_value=3, places=2), min_size=1, max_size=40),
    limit=st.decimals(min_value=0, max_value=20, places=1),
    rule=st.sampled_from(["budget", "budget_state"]),
)
def test_bisection_equals_linear_scan_on_monotone_rules(costs: list[Decimal], limit: Decimal, rule: str) -> None:
    with Journal.in_memory() as j:
        j.append("run", [{"event_type": "llm_response", "cost_usd": str(c), "data": {}} for c in costs])
        params = {"max_cost_usd": str(limit)}
        fast = bisect_stream(j, rule, "run", params=params)
        slow = bisect_stream(j, rule, "run", params=params, force_linear=True)
    assert fast.method == "bisection" and slow.method == "linear scan"
    assert fast.version == slow.version == _expected_first(costs, limit)
    assert fast.evaluations <= max_evaluations(len(costs))


def test_search_uses_at_most_one_plus_log2_n_evaluations() -> None:
    for n in (1, 2, 3, 17, 1000, 100_000):
        for first in {1, n // 3 or 1, n}:
            calls: list[int] = []

            def probe(v: int, f: int = first, seen: list[int] = calls) -> bool:
                seen.append(v)
                return v < f

            found, evaluations = search_first_failure(n, probe)
            assert found == first and evaluations == len(calls) <= max_evaluations(n) <= 18
    assert max_evaluations(100_000) == 18


def test_a_long_real_stream_bisects_in_few_evaluations(tmp_path: Path) -> None:
    j = Journal.create(tmp_path / "j")
    n = 2_000
    j.append("long", [{"event_type": "llm_response", "cost_usd": "0.01", "data": {}} for _ in range(n)])
    result = bisect_stream(j, "budget", "long", params={"max_cost_usd": "12.345"})
    assert result.version == 1235 and result.evaluations <= max_evaluations(n) == 12
    assert result.probes[0][0] == n  # the head first: does the rule fail at all?


def test_what_a_bisection_reports(tmp_path: Path) -> None:
    j = build(tmp_path / "j", "budget_breach_at_v7")
    result = bisect_stream(j, "budget", "expensive")
    assert (result.version, result.method) == (7, "bisection")
    assert result.message == "cumulative cost $5.250000000 exceeds $5.0"
    assert result.event is not None and result.event["version"] == 7 and result.event["event_type"] == "llm_response"
    assert result.explanation is not None and result.explanation["title"]
    assert Decimal(result.state_before["cost_usd"]) == Decimal("4.75")
    assert Decimal(result.state_after["cost_usd"]) == Decimal("5.25")
    holds = bisect_stream(j, "budget", "cheap")
    assert holds.version is None and holds.evaluations == 1 and holds.event is None


def test_rules_not_declared_monotone_get_a_linear_scan(tmp_path: Path) -> None:
    j = build(tmp_path / "j", "tool_failure_loop")
    result = bisect_stream(j, "no_tool_failure_loop", "loop")
    assert (result.method, result.version) == ("linear scan", 6)
    assert result.note is not None and "does not declare itself monotone" in result.note
    assert result.message == "tool shell failed 2 times in a row with the same arguments"


def test_evidence_against_monotonicity_falls_back_to_a_linear_scan(tmp_path: Path) -> None:
    """A refund (negative cost) brings the run back under budget: 'budget' is not monotone here."""
    j = Journal.create(tmp_path / "j")
    costs = ["1", "5", "-4", "0.5", "0.5", "0.5"]
    j.append("refunded", [{"event_type": "llm_response", "cost_usd": c, "data": {}} for c in costs])
    result = bisect_stream(j, "budget", "refunded")
    assert result.method == "linear scan" and result.version == 2
    assert result.note is not None and "evidence against monotonicity" in result.note


def test_a_python_rule_is_not_bisected_over_a_refund(tmp_path: Path) -> None:
    """budget_state's probes see only states: the refund's state (back under budget) at the end
    would hide the failure at version 1. A stream with a negative cost gets a linear scan."""
    j = Journal.create(tmp_path / "j")
    j.append("refunded", [{"event_type": "llm_response", "cost_usd": c, "data": {}} for c in ("6", "-3", "1")])
    j.append("plain", [{"event_type": "llm_response", "cost_usd": c, "data": {}} for c in ("1", "6", "1")])
    result = bisect_stream(j, "budget_state", "refunded")
    assert (result.method, result.version) == ("linear scan", 1)
    assert result.note is not None and "negative cost" in result.note
    assert result.message is not None and "exceeds" in result.message
    result = bisect_stream(j, "budget_state", "plain")  # no refund: bisected as before
    assert (result.method, result.version) == ("bisection", 2)
    j.close()


def test_bad_bisect_input(tmp_path: Path) -> None:
    j = build(tmp_path / "j", "budget_breach_at_v7")
    with pytest.raises(StreamNotFoundError, match="no stream 'nobody'"):
        bisect_stream(j, "budget", "nobody")
    with pytest.raises(RuleDefinitionError, match="judges each stream"):
        bisect_global(j, "budget")
    # -p as journal regrade takes it: rule.name=value for one rule (the one bisected), winning over name=value
    at_2_5 = bisect_stream(j, "budget", "expensive", params={"max_cost_usd": "2.5"}).version
    assert at_2_5 is not None and at_2_5 < 7
    for params in ({"budget.max_cost_usd": "2.5"}, {"budget.max_cost_usd": "2.5", "max_cost_usd": "5"}):
        assert bisect_stream(j, "budget", "expensive", params=params).version == at_2_5, params
    with pytest.raises(RuleDefinitionError, match=r"no chosen rule takes parameter 'latency\.max_cost_usd'"):
        bisect_stream(j, "budget", "expensive", params={"latency.max_cost_usd": "2.5"})


RAISING_RULES = '''
from toolkit.analysis.rules import polars_rule, python_rule

@python_rule("fragile", "Raises on the run's fifth event.", monotone=True)
def fragile(state, p):
    if state.events >= 5:
        raise ZeroDivisionError("no good")
    return True

@python_rule("fragile_scan", "Raises on the run's fifth event; not monotone.")
def fragile_scan(state, p):
    if state.events >= 5:
        raise ZeroDivisionError("no good")
    return True

@polars_rule("broken_polars", "Reads a column that does not exist.", columns=("event_type",), monotone=True)
def broken_polars(events, p):
    import polars as pl
    return pl.col("no_such_column") > 1
'''


@pytest.mark.parametrize(("rule", "where"), [
    ("fragile", "ZeroDivisionError: no good judging stream expensive at version 8"),  # the first probe: all 8
    ("fragile_scan", "ZeroDivisionError: no good judging stream expensive at version 5"),
    ("broken_polars", "ColumnNotFoundError"),
])
def test_a_rule_that_raises_stops_the_bisection_with_an_error_naming_where(
    rule: str, where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers import run_cli

    j = build(tmp_path / "j", "budget_breach_at_v7")
    py = tmp_path / "raising.py"
    py.write_text(textwrap.dedent(RAISING_RULES))
    with pytest.raises(RuleEvaluationError, match=f"rule {rule} raised .*{where}"):
        bisect_stream(j, rule, "expensive", rule_files=(str(py),))
    code, _out, err = run_cli(capsys, "bisect", "-j", str(j.path), rule, "expensive", "--rules", str(py))
    assert code == 1 and "Traceback" not in err and err.startswith(f"error: rule {rule} raised"), err
    assert "journal regrade" in err  # the hint


GLOBAL_RULES = '''
from toolkit.analysis.aggregates import Aggregate
from toolkit.analysis.rules import python_rule

def count_failures(state, event):
    if event.event_type == "tool_result" and event.is_error:
        state[event.tool_name] = state.get(event.tool_name, 0) + 1
    return state

TOOL_FAILURES = Aggregate("tool_failures", initial=dict, reducer=count_failures, copy=dict)

@python_rule("shell_failures", "The shell tool failed at most twice, journal-wide.", scope="global",
             aggregate=TOOL_FAILURES, monotone=True, params="max_failures BIGINT = 2")
def shell_failures(state, p):
    return state.get("shell", 0) <= p["max_failures"] or f"shell failed {state['shell']} times"
'''

GLOBAL_SQL = """-- summary: At most two failing tool results in the whole journal so far.
-- params: max_failures BIGINT = 2
-- scope: global
-- monotone: true
SELECT stream_id, version,
       count(*) FILTER (WHERE is_error) OVER (ORDER BY position) <= $max_failures AS holds,
       CAST(count(*) FILTER (WHERE is_error) OVER (ORDER BY position) AS VARCHAR) || ' failures' AS message
FROM events WHERE event_type = 'tool_result'
"""


def test_global_bisection_over_the_journal_in_position_order(tmp_path: Path) -> None:
    j = build(tmp_path / "j", "budget_breach_at_v7", "tool_failure_loop")
    py = tmp_path / "global_rules.py"
    py.write_text(textwrap.dedent(GLOBAL_RULES))
    sql = tmp_path / "few_tool_failures.sql"
    sql.write_text(GLOBAL_SQL)
    # the third shell failure is the loop stream's version 8; positions count on from the first pattern's 10
    third = next(r["position"] for r in j.read_stream("loop").to_pylist() if r["version"] == 8)
    for rule, files in (("shell_failures", (str(py),)), ("few_tool_failures", (str(sql),))):
        result = bisect_global(j, rule, rule_files=files)
        assert (result.method, result.version) == ("bisection", third), rule
        assert result.event is not None and result.event["stream_id"] == "loop"
        linear = bisect_global(j, rule, rule_files=files, force_linear=True)
        assert linear.version == third
        for found in (result, linear):  # the rule's message, and the journal-wide state of a Python rule
            assert found.message == ("shell failed 3 times" if rule == "shell_failures" else "3 failures"), rule
            if rule == "shell_failures":
                assert (found.state_before, found.state_after) == ({"shell": 2}, {"shell": 3})
    assert bisect_global(j, "shell_failures", rule_files=(str(py),), params={"max_failures": "5"}).version is None  # 3 in loop + 2 in varied_retry
    with pytest.raises(RuleDefinitionError, match="journal bisect shell_failures --global"):
        bisect_stream(j, "shell_failures", "loop", rule_files=(str(py),))


GLOBAL_POLARS = '''
import polars as pl
from toolkit.analysis.rules import polars_rule

@polars_rule("few_tool_failures_pl", "At most max_failures failing tool results in the journal so far.",
             scope="global", monotone={monotone}, params="max_failures BIGINT = 2", columns=("event_type", "is_error"),
             event_types=("tool_result",))
def few_tool_failures_pl(events, p):
    failures = pl.col("is_error").cast(pl.Int64).cum_sum()
    return failures <= p["max_failures"], failures.cast(pl.String) + " failures"
'''


@pytest.mark.parametrize("monotone", [True, False])
def test_global_bisection_of_a_polars_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str], monotone: bool) -> None:
    """polars_rule(scope="global") was accepted, but bisect --global only knew SQL and Python rules:
    an AssertionError traceback (or 'rule ... raised AssertionError' when monotone)."""
    from helpers import run_cli

    j = build(tmp_path / "j", "budget_breach_at_v7", "tool_failure_loop")
    py = tmp_path / "global_polars.py"
    py.write_text(GLOBAL_POLARS.format(monotone=monotone))
    third = next(r["position"] for r in j.read_stream("loop").to_pylist() if r["version"] == 8)
    result = bisect_global(j, "few_tool_failures_pl", rule_files=(str(py),))
    assert (result.method, result.version, result.message) == (
        "bisection" if monotone else "linear scan", third, "3 failures"
    )
    assert result.event is not None and result.event["stream_id"] == "loop"
    assert bisect_global(j, "few_tool_failures_pl", rule_files=(str(py),), force_linear=True).version == third
    code, out, err = run_cli(capsys, "bisect", "-j", str(j.path), "few_tool_failures_pl", "--global", "--rules", str(py))
    assert code == 3 and f"first failing position: {third}" in out, err
    code, out, err = run_cli(capsys, "bisect", "-j", str(j.path), "few_tool_failures_pl", "--global", "--rules", str(py),
                             "--format", "json")
    doc = json.loads(out)
    assert code == 3 and (doc["first_failing"], doc["journal_version"]) == (third, j.delta_version), err


def _count_scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one at every scan of the journal a Polars rule's verdicts make."""
    import toolkit.analysis.verdicts as verdicts

    scans: list[int] = []
    scan_events = verdicts.scan_events

    def counted(*args: object, **kwargs: object) -> object:
        scans.append(1)
        return scan_events(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(verdicts, "scan_events", counted)
    return scans


def test_a_global_polars_bisection_reads_the_journal_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each probe of a global Polars rule scanned the journal twice (its events, then every event's
    position); the bisection now reads the rule's events once and judges every probe on them."""
    j = build(tmp_path / "j", "budget_breach_at_v7", "tool_failure_loop")
    py = tmp_path / "global_polars.py"
    py.write_text(GLOBAL_POLARS.format(monotone=True))
    scans = _count_scans(monkeypatch)
    held = bisect_global(j, "few_tool_failures_pl", rule_files=(str(py),))
    assert held.method == "bisection" and held.evaluations > 2 and len(scans) == 1
    monkeypatch.undo()
    linear = bisect_global(j, "few_tool_failures_pl", rule_files=(str(py),), force_linear=True)
    assert (held.version, held.message) == (linear.version, linear.message) and held.version is not None


def test_cli_bisect_prints_the_event_its_explanation_and_the_states(tmp_path: Path) -> None:
    j = build(tmp_path / "j", "budget_breach_at_v7")
    runner = CliRunner()
    out = runner.invoke(cli, ["bisect", "-j", str(j.path), "budget", "expensive"])
    assert out.exit_code == 3, out.output
    assert "bisection: " in out.output and "rule evaluations over 8 events of stream expensive" in out.output
    assert "first failing version: 7" in out.output and "explanation: " in out.output
    assert "cost_usd: 4.750000000 -> 5.250000000" in out.output
    assert f"journal version {j.delta_version} (as the bisection began" in out.output
    fine = runner.invoke(cli, ["bisect", "-j", str(j.path), "budget", "cheap"])
    assert fine.exit_code == 0 and "holds throughout" in fine.output
    usage = runner.invoke(cli, ["bisect", "-j", str(j.path), "budget"])
    assert usage.exit_code == 2 and "--global" in usage.output


@pytest.mark.parametrize("rule", ["budget", "budget_state"])
def test_a_purged_prefix_is_judged_as_nothing_and_has_no_state_before(tmp_path: Path, rule: str) -> None:
    """Versions 1-3 were purged: the Python twin judges them as the SQL rule does (nothing left to
    judge) instead of stopping at the purged state, and no blank state poses as the one before v4."""
    j = Journal.create(tmp_path / "j")
    old = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
    llm = {"event_type": "llm_response", "cost_usd": "1", "data": {}}
    j.append("run", [{**llm, "occurred_at": old + dt.timedelta(days=20 * i)} for i in range(6)])
    purge_before(j, dt.datetime(2025, 3, 1, tzinfo=dt.UTC), now=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    result = bisect_stream(Journal.open(j.path), rule, "run", params={"max_cost_usd": "0.5"})
    assert result.version == 4 and result.state_before is None and result.state_after is not None


def test_from_findings_takes_the_rules_latest_regrade_even_when_it_found_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A re-grade in which budget held wrote no finding of it: --from-findings bisected the older
    batch's stream and called that batch the latest."""
    from helpers import run_cli

    from toolkit.analysis.regrade import regrade

    j = build(tmp_path / "j", "budget_breach_at_v7", "slow_tool")
    failing = regrade(j, ["budget"]).batch_id
    held = regrade(j, ["budget"], params={"max_cost_usd": "1000"}).batch_id
    regrade(j, ["latency"])  # a later batch that did not judge budget
    code, out, err = run_cli(capsys, "bisect", "-j", str(j.path), "budget", "--from-findings")
    assert code == 0 and out == ""
    assert f"rule budget held in its latest re-grade (batch {held}, graded " in err and "nothing to bisect" in err
    assert f"journal bisect budget --from-findings --batch {failing}" in err
    code, out, err = run_cli(capsys, "bisect", "-j", str(j.path), "budget", "--from-findings", "--batch", failing)
    assert code == 3 and "first failing version: 7" in out
    assert f"bisecting expensive: the first failing stream of budget's re-grade (batch {failing}, graded " in err
    assert f"not its latest (batch {held}, graded " in err
    code, _, err = run_cli(capsys, "bisect", "-j", str(j.path), "budget", "--from-findings", "--batch", "nope")
    assert code == 2 and "no findings batch nope judged rule budget" in err
    code, _, err = run_cli(capsys, "bisect", "-j", str(j.path), "budget", "expensive", "--batch", failing)
    assert code == 2 and "--batch goes with --from-findings" in err
    from toolkit.analysis.regrade import graded_batches

    assert [(b.batch_id, b.stream_id) for b in graded_batches(j, "budget")] == [(held, None), (failing, "expensive")]


def test_from_findings_judges_the_stream_with_the_batchs_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's pair: regrade budget -p max_cost_usd=2.5, then bisect budget --from-findings.
    The bisection used the default limit (5), under which the stream failing at 2.5 holds
    throughout; it now binds the batch's parameters unless -p is given."""
    from helpers import run_cli

    from toolkit.analysis.regrade import regrade

    j = build(tmp_path / "j", "budget_breach_at_v7")
    limit = bisect_stream(j, "budget", "expensive", params={"max_cost_usd": "2.5"}).version
    assert limit is not None and limit < 7  # the fixture crosses 2.5 before it crosses the default 5
    batch = regrade(j, ["budget"], params={"max_cost_usd": "2.5"}).batch_id
    code, out, err = run_cli(capsys, "bisect", "-j", str(j.path), "budget", "--from-findings")
    assert code == 3 and f"first failing version: {limit}" in out, out + err
    assert f"(batch {batch}, graded " in err and "with the batch's parameters: " in err and "max_cost_usd=2.5" in err
    code, out, err = run_cli(capsys, "bisect", "-j", str(j.path), "budget", "--from-findings", "-p", "max_cost_usd=5")
    assert code == 3 and "first failing version: 7" in out
    assert "note: judged with the parameters given by -p, not the batch's (" in err


def test_from_findings_says_which_streams_the_batch_graded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--from-findings takes the rule's latest batch whatever it selected; a regrade limited to one
    stream was announced as the rule's latest re-grade like a full one, so one stream's verdict
    passed for the journal's. It now names the selection the batch graded."""
    from helpers import run_cli

    j = build(tmp_path / "j", "budget_breach_at_v7", "slow_tool")
    code, _, _ = run_cli(capsys, "regrade", "-j", str(j.path), "budget")
    assert code == 3
    since = ("--since", "2026-01-01")
    code, _, _ = run_cli(capsys, "regrade", "-j", str(j.path), "budget", "--stream", "expensive", *since)
    assert code == 3
    code, out, err = run_cli(capsys, "bisect", "-j", str(j.path), "budget", "--from-findings")
    assert code == 3 and "first failing version: 7" in out
    assert "bisecting expensive: the first failing stream of budget's latest re-grade (batch " in err
    assert "; it graded only the streams matching --stream expensive --since 2026-01-01T00:00:00+00:00)" in err
    code, _, _ = run_cli(capsys, "regrade", "-j", str(j.path), "budget", "--stream", "slow_tool", "--agent", "a b")
    assert code == 0  # budget held on the streams it graded (none: no agent 'a b')
    code, out, err = run_cli(capsys, "bisect", "-j", str(j.path), "budget", "--from-findings")
    assert code == 0 and out == ""
    assert "; it graded only the streams matching --agent 'a b' --stream slow_tool): no stream of the 0 it" in err
    assert "an earlier re-grade (batch " in err and "streams matching --stream expensive --since 2026" in err
    run_cli(capsys, "regrade", "-j", str(j.path), "budget")
    code, _, err = run_cli(capsys, "bisect", "-j", str(j.path), "budget", "--from-findings")
    assert code == 3 and "budget's latest re-grade (batch " in err and ", of every stream)" in err, err


KEY_FIRST_POLARS = '''
import polars as pl
from toolkit.analysis.rules import polars_rule

@polars_rule("key_first_in_journal", "A run uses no idempotency key that any run used before it.",
             monotone={monotone}, columns=("idempotency_key",))
def key_first_in_journal(events, p):
    ok = pl.col("idempotency_key").is_null() | pl.col("idempotency_key").is_first_distinct()  # in the journal
    return events.with_columns(ok=ok.cast(pl.Int8)).select(
        "stream_id", "version", holds=pl.col("ok").cum_min().over("stream_id") == 1
    )
'''

KEY_FIRST_SQL = """-- summary: A run uses no idempotency key that any run used before it.
-- returns: stream_id VARCHAR, version BIGINT, holds BOOLEAN
-- severity: error
-- monotone: {monotone}
SELECT stream_id, version,
       bool_and(idempotency_key IS NULL OR first_use) OVER (PARTITION BY stream_id ORDER BY version) AS holds
FROM (SELECT *, position = min(position) OVER (PARTITION BY idempotency_key) AS first_use FROM events)
"""


@pytest.mark.parametrize("monotone", [True, False])
def test_bisecting_a_polars_rule_that_looks_across_streams_sees_the_other_streams(tmp_path: Path, monotone: bool) -> None:
    """bisect judged a Polars rule on the bisected stream's events alone (and cut every stream at the
    probed version): run b reuses the key run a used first, so b fails from its 2nd version, but
    bisect said the rule holds throughout. SQL probes keep every other stream visible; so do Polars
    probes now, and both give the same answer."""
    j = Journal.create(tmp_path / "j")
    j.append("a", [{"event_type": "tool_called", "idempotency_key": "K-1", "data": {}}])
    j.append("b", [{"event_type": "tool_called", "idempotency_key": k, "data": {}} for k in (None, "K-1", "K-2")])
    j.append("a", [{"event_type": "tool_called", "data": {}} for _ in range(3)])  # a gets versions past b's
    py = tmp_path / "key_first.py"
    py.write_text(KEY_FIRST_POLARS.format(monotone=monotone))
    sql = tmp_path / "key_first_in_journal_sql.sql"
    sql.write_text(KEY_FIRST_SQL.format(monotone=str(monotone).lower()))
    files = (str(py), str(sql))
    for rule in ("key_first_in_journal", "key_first_in_journal_sql"):
        found = bisect_stream(j, rule, "b", rule_files=files)
        assert (found.method, found.version) == ("bisection" if monotone else "linear scan", 2), rule
        assert bisect_stream(j, rule, "a", rule_files=files).version is None, rule
    j.close()


KEY_UNIQUE_POLARS = '''
import polars as pl
from toolkit.analysis.rules import polars_rule

@polars_rule("key_unique_in_journal", "No idempotency key of a run is used by any other event of the journal.",
             monotone=True, columns=("idempotency_key",), event_types=("tool_called",))
def key_unique_in_journal(events, p):
    key = pl.col("idempotency_key")
    ok = (key.is_null() | ~key.is_duplicated()).cast(pl.Int8)  # over the whole journal, later events too
    return events.with_columns(ok=ok, shared=pl.when(~ok.cast(pl.Boolean)).then(key)).select(
        "stream_id", "version", holds=pl.col("ok").cum_min().over("stream_id") == 1,
        message=pl.format("key {} used elsewhere", pl.col("shared").forward_fill().over("stream_id")),
    )

@polars_rule("key_here_declared_monotone", "This event carries no key reused elsewhere (not monotone).",
             monotone=True, columns=("idempotency_key",), event_types=("tool_called",))
def key_here_declared_monotone(events, p):
    key = pl.col("idempotency_key")
    return key.is_null() | ~key.is_duplicated(), pl.format("key {}", key)
'''


@pytest.mark.parametrize(("rule", "stream", "version", "method", "message"), [
    ("key_unique_in_journal", "b", 12, "bisection", "key K-1 used elsewhere"),  # reuses a key a used before it
    ("key_unique_in_journal", "c", 30, "bisection", "key K-2 used elsewhere"),  # a uses c's key after it: it counts
    ("key_unique_in_journal", "d", None, "bisection", None),
    ("key_here_declared_monotone", "b", 12, "linear scan", "key K-1"),  # evidence against monotonicity
])
def test_a_polars_bisection_reads_the_journal_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rule: str,
    stream: str,
    version: int | None,
    method: str,
    message: str | None,
) -> None:
    """Each probe of a Polars rule scanned the whole journal again (18 scans for 100,000 events);
    the bisection now reads it once and judges every probe, and the linear scan after a fallback,
    on that frame: one scan, the same probes, versions and messages as a scan per probe."""

    j = Journal.create(tmp_path / "j")
    call = {"event_type": "tool_called", "data": {}}
    j.append("a", [{**call, "idempotency_key": "K-1"}])
    for sid, at, key in (("b", 12, "K-1"), ("c", 30, "K-2"), ("d", 0, None)):
        j.append(sid, [{**call, "idempotency_key": key if v == at else None} for v in range(1, 41)])
    j.append("a", [{**call, "idempotency_key": "K-2"}])  # after c's K-2, in position order
    py = tmp_path / "keys.py"
    py.write_text(KEY_UNIQUE_POLARS)
    scans = _count_scans(monkeypatch)
    held = bisect_stream(j, rule, stream, rule_files=(str(py),))
    held_scans = len(scans)
    scans.clear()
    each = bisect_stream(j, rule, stream, rule_files=(str(py),), hold_bytes_max=0)  # a scan per probe, as before
    assert (held.method, held.version, held.message) == (method, version, message)
    assert held.summary() == each.summary() and held.probes == each.probes
    assert held_scans == 1
    # a scan per probe (d: one, it holds at its head); the fallback: the probe that saw evidence, then the linear scan
    assert len(scans) == (2 if method == "linear scan" else len(each.probes))
    j.close()


APPENDING_POLARS = KEY_UNIQUE_POLARS + '''
from toolkit.journal import Journal

@polars_rule("key_unique_while_appending", "key_unique_in_journal, appending to the journal as it is judged.",
             monotone=True, columns=("idempotency_key",), event_types=("tool_called",))
def key_unique_while_appending(events, p):
    journal = Journal.open(JOURNAL_PATH)  # another writer: its append lands while the bisection runs
    journal.append("x", [{"event_type": "tool_called", "idempotency_key": "K-3", "data": {}}])
    return key_unique_in_journal.polars(events, p)
'''


@pytest.mark.parametrize("hold_bytes_max", [2**30, 0])
def test_every_probe_of_a_polars_bisection_sees_one_delta_version(tmp_path: Path, hold_bytes_max: int) -> None:
    """The probes of a Polars rule each scanned the journal as it then was: an append landing
    during the bisection (run x reusing c's key K-3 at version 10) was seen by the later probes
    only, which put c's first failure at 10 while its earlier probes had found the journal without
    it. Every probe now reads the Delta version current when the bisection started (held in memory
    or, above hold_bytes_max, scanned again), where c first fails at 30 (K-2, which a uses later)."""
    j = Journal.create(tmp_path / "j")
    call = {"event_type": "tool_called", "data": {}}
    keys = {10: "K-3", 30: "K-2"}
    j.append("c", [{**call, "idempotency_key": keys.get(v)} for v in range(1, 41)])
    j.append("a", [{**call, "idempotency_key": "K-2"}])
    py = tmp_path / "appending.py"
    py.write_text(APPENDING_POLARS.replace("JOURNAL_PATH", repr(str(j.path))))
    found = bisect_stream(j, "key_unique_while_appending", "c", rule_files=(str(py),), hold_bytes_max=hold_bytes_max)
    assert (found.method, found.version, found.message) == ("bisection", 30, "key K-2 used elsewhere")
    assert j.stream_version("x") == found.evaluations  # the appends landed: one per probe
    j.close()


KEY_UNIQUE_SQL = """-- summary: No idempotency key of a run is used by any other event of the journal (later ones too).
-- returns: stream_id VARCHAR, version BIGINT, holds BOOLEAN, message VARCHAR
-- monotone: true
SELECT stream_id, version,
       bool_and(idempotency_key IS NULL OR uses = 1) OVER (PARTITION BY stream_id ORDER BY version) AS holds,
       'key ' || max(CASE WHEN uses > 1 THEN idempotency_key END) OVER (PARTITION BY stream_id ORDER BY version)
           || ' used elsewhere' AS message
FROM (SELECT *, count(*) OVER (PARTITION BY idempotency_key) AS uses FROM events)
"""


def _another_writer_appends(monkeypatch: pytest.MonkeyPatch, path: Path, stream_id: str, rows: list[dict[str, object]]) -> list[int]:
    """Another writer (its own Journal) appends ``rows`` to ``stream_id`` each time a bisection has
    read a stream's head and after each of its probes; returns the Delta versions it committed."""
    import toolkit.analysis.bisection as bisection

    committed: list[int] = []

    def append() -> None:
        committed.append(Journal.open(path).append(stream_id, rows).delta_version)

    def then_append(real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            result = real(*args, **kwargs)
            append()
            return result

        return wrapped

    monkeypatch.setattr(Journal, "stream_version", then_append(Journal.stream_version))
    monkeypatch.setattr(bisection, "_probe_stream", then_append(bisection._probe_stream))
    return committed


@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("kind", ["sql", "python"])
def test_a_bisection_judges_the_journal_as_it_began_whatever_commits_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, linear: bool
) -> None:
    """Only Polars probes read a pinned Delta version: a SQL bisection opened its session after
    reading the stream's head, so run x, committed in between and reusing c's key K-3 at version
    10, moved c's first failure from 30 to 10; a Python bisection read the head, then the stream
    again for its refund check and linear scan, so a refund and an expensive call appended to the
    run in between turned "holds throughout" over its 3 versions into "fails at version 5" of 3.
    Every read of a bisection (head, probes, linear scan, event, states) now sees the Delta version
    it began at, and it says which: the answer is that of a bisection before the appends."""
    j = Journal.create(tmp_path / "j")
    if kind == "sql":
        call = {"event_type": "tool_called", "data": {}}
        j.append("c", [{**call, "idempotency_key": {10: "K-3", 30: "K-2"}.get(v)} for v in range(1, 41)])
        j.append("a", [{**call, "idempotency_key": "K-2"}])  # after c's K-2: it counts (the rule looks ahead)
        (tmp_path / "key_unique_sql.sql").write_text(KEY_UNIQUE_SQL)
        rule, stream, params, files = "key_unique_sql", "c", {}, (str(tmp_path / "key_unique_sql.sql"),)
        expected: tuple[int | None, str | None] = (30, "key K-2 used elsewhere")
        writer: tuple[str, list[dict[str, object]]] = ("x", [{**call, "idempotency_key": "K-3"}])
    else:
        llm = {"event_type": "llm_response", "data": {}}
        j.append("run", [{**llm, "cost_usd": "1"} for _ in range(3)])
        rule, stream, params, files = "budget_state", "run", {"max_cost_usd": "5"}, ()
        expected = (None, None)
        writer = ("run", [{**llm, "cost_usd": "-1"}, {**llm, "cost_usd": "10"}])
    began = j.delta_version
    before = bisect_stream(j, rule, stream, params=params, rule_files=files, force_linear=linear)
    assert (before.version, before.message, before.journal_version) == (*expected, began)

    committed = _another_writer_appends(monkeypatch, j.path, *writer)
    during = bisect_stream(j, rule, stream, params=params, rule_files=files, force_linear=linear)
    assert committed and committed[-1] == j.delta_version > began  # the appends landed while it ran
    assert during.summary() == before.summary() and during.probes == before.probes
    assert (during.event, during.state_before, during.state_after) == (before.event, before.state_before, before.state_after)
    monkeypatch.undo()
    after = bisect_stream(j, rule, stream, params=params, rule_files=files, force_linear=linear)
    assert after.journal_version == j.delta_version and after.summary() != before.summary()  # the appends do count now
