# ruff: noqa: F811  (pytest fixtures imported from invariant_journals are parameters here)
"""Each built-in rule on the fixture journal of the pattern it exists to catch; vectorised == Python;
rule definitions, parameters, fingerprints and bad rules."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import build_tool_failure_loop, run_cli, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st
from invariant_journals import PATTERNS, build, demo, everything  # noqa: F401  (pytest fixtures)

from toolkit.analysis.invariants import REFERENCE_COLUMNS, REFERENCES
from toolkit.analysis.regrade import regrade
from toolkit.analysis.rules import Rule, RuleSet, load_rule_file, sql_rule_from_text
from toolkit.analysis.verdicts import polars_verdicts
from toolkit.engines.duckdb_engine import connect
from toolkit.errors import RuleDefinitionError, RuleNotFoundError
from toolkit.journal import Journal


def failures(journal: Journal, rule: str, **params: Any) -> dict[str, tuple[int, int]]:
    """stream -> (first failing version, failing events) of one rule's violations."""
    result = regrade(journal, [rule], params=params, write=False)
    rows = result.findings.to_pylist()
    assert all(r["kind"] == "violation" for r in rows), rows
    return {r["stream_id"]: (r["first_failing_version"], r["failing_events"]) for r in rows}


@pytest.fixture(scope="module")
def journals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Journal]]:
    root = tmp_path_factory.mktemp("patterns")
    out = {name: build(root / name, name) for name in PATTERNS}
    yield out
    for j in out.values():
        j.close()


def test_no_tool_failure_loop_catches_the_same_failing_call_repeated(journals: dict[str, Journal]) -> None:
    j = journals["tool_failure_loop"]
    # loop: shell failed at v3, again with the same args at v6 and v8; varied_retry changed its args
    assert failures(j, "no_tool_failure_loop") == {"loop": (6, 2)}
    assert failures(j, "no_tool_failure_loop", times=3) == {"loop": (8, 1)}


def test_no_tool_failure_loop_names_the_tool_of_the_call_when_results_carry_none() -> None:
    """Importers often leave tool_name off results: the loop is the call's tool failing again with
    the same arguments (results without a name once never matched, so no loop was seen), and two
    different tools failing with the same arguments are not a loop."""
    def call(cid: str, tool: str) -> dict[str, Any]:
        return {"event_type": "tool_called", "tool_name": tool, "tool_call_id": cid, "data": {"args": {"q": 1}}}

    def result(cid: str) -> dict[str, Any]:
        return {"event_type": "tool_result", "tool_call_id": cid, "is_error": True, "data": {"error": "boom"}}

    loop = [call("c1", "shell"), result("c1"), call("c2", "shell"), result("c2")]
    varied = [call("d1", "shell"), result("d1"), call("d2", "http"), result("d2")]
    rows = [{**e, "stream_id": "loop"} for e in loop] + [{**e, "stream_id": "varied"} for e in varied]
    with Journal.in_memory() as j:
        j.append_batch(rows, stream_type="agent_run")
        assert failures(j, "no_tool_failure_loop") == {"loop": (4, 1)}
        finding = regrade(j, ["no_tool_failure_loop"], write=False).findings.to_pylist()[0]
        assert finding["message"] == "tool shell failed 2 times in a row with the same arguments"
        rule = RuleSet.load().get("no_tool_failure_loop")
        bound = rule.bind({})
        assert _verdicts(j, rule, bound) == _reference(j, "no_tool_failure_loop", bound)
        assert ("loop", 4, False) in _reference(j, "no_tool_failure_loop", bound)


def test_budget_breaks_at_version_7_and_stays_broken(journals: dict[str, Journal]) -> None:
    j = journals["budget_breach_at_v7"]
    assert failures(j, "budget") == {"expensive": (7, 2)}  # 1.5 + 1.75 + 1.5 + 0.5 = 5.25 > 5
    assert failures(j, "budget", max_cost_usd="3") == {"expensive": (5, 4)}
    assert failures(j, "budget", max_cost_usd="100", max_tokens="300000") == {"expensive": (6, 3)}
    assert failures(j, "budget_state") == failures(j, "budget")


def test_tool_result_pairing_finds_orphans_missing_and_double_results(journals: dict[str, Journal]) -> None:
    assert failures(journals["orphan_tool_result"], "tool_result_pairing") == {
        "orphan": (1, 1),  # a result for a call never made
        "unanswered": (1, 1),  # a call that never got its result
        "answered_twice": (1, 2),  # the call got two results: the call and the second result fail
    }


def test_confirmation_before_write_needs_a_clear_yes_in_the_latest_user_message(journals: dict[str, Journal]) -> None:
    j = journals["unconfirmed_write"]
    # confirmed: "Yes, send it"; refused: "No, don't"; hedged: "Sure, but wait"; stale_yes: the yes was
    # for an earlier message; unprompted: no user message at all. draft_email has no side effect.
    assert failures(j, "confirmation_before_write") == {
        "refused": (2, 1),
        "hedged": (2, 1),
        "stale_yes": (4, 1),
        "unprompted": (1, 1),
    }
    named = failures(j, "confirmation_before_write", tools="draft_email")
    assert named == {"confirmed": (2, 1)}  # only the named tools count as writes
    strict = failures(j, "confirmation_before_write", confirm_pattern="(?i)send it")
    assert "confirmed" not in strict and "stale_yes" in strict


@pytest.mark.parametrize("reply", ["yes, but don’t send it", "Ok. I can’t afford it though", "sure, it isn’t final"])
def test_confirmation_before_write_hears_a_negation_typed_with_a_typographic_apostrophe(reply: str) -> None:
    rows = [
        {"stream_id": "s", "event_type": "user_message", "data": {"text": reply}},
        {"stream_id": "s", "event_type": "tool_called", "tool_name": "send_email", "tool_call_id": "c1",
         "idempotency_key": "k1", "data": {"args": {}}},
    ]
    with Journal.in_memory() as j:
        j.append_batch(rows, stream_type="agent_run")
        assert failures(j, "confirmation_before_write") == {"s": (2, 1)}
        j.append_batch([{**rows[0], "data": {"text": reply.replace("’", "'")}}, {**rows[1], "tool_call_id": "c2",
                        "idempotency_key": "k2"}], stream_type="agent_run")
        assert failures(j, "confirmation_before_write") == {"s": (2, 2)}  # and with a straight one


def test_journal_integrity_checks_causes_point_to_earlier_events(journals: dict[str, Journal]) -> None:
    j = journals["broken_causation"]
    assert failures(j, "journal_integrity") == {"from_the_future": (1, 1), "unknown_cause": (2, 1)}
    assert failures(j, "journal_integrity", allow_unknown_causes="true") == {"from_the_future": (1, 1)}


def test_journal_integrity_finds_a_version_gap_written_behind_the_journals_back(tmp_path: Path) -> None:
    from helpers import locate, rewrite_parquet, set_cell

    j = build(tmp_path / "j", "budget_breach_at_v7")
    path, row = locate(j, "expensive", 4)
    rewrite_parquet(path, lambda t: set_cell(t, "version", row, 40))
    assert failures(Journal.open(j.path), "journal_integrity") == {"expensive": (5, 2)}  # v4 missing: 40, then 5


def test_latency_bounds_tools_and_llm_calls_separately(journals: dict[str, Journal]) -> None:
    j = journals["slow_tool"]
    assert failures(j, "latency") == {"slow": (2, 1), "slow_model": (1, 1)}
    assert failures(j, "latency", max_tool_ms="200") == {"slow": (2, 1), "slow_model": (1, 1), "quick": (1, 1)}
    assert failures(j, "latency", max_tool_ms="1e9", max_llm_ms="1e9") == {}


def test_exactly_once_finds_the_doorbell_rung_twice(journals: dict[str, Journal]) -> None:
    j = journals["doorbell_rung_twice"]
    assert failures(j, "exactly_once") == {"order-1-retry": (1, 1)}
    finding = regrade(j, ["exactly_once"], write=False).findings.to_pylist()[0]
    assert "charge-order-1 already used by order-1 version 1" in finding["message"]


# ---------------------------------------------------------------------- vectorised == Python


def _verdicts(journal: Journal, rule: Rule, bound: dict[str, Any]) -> set[tuple[str, int, bool]]:
    if rule.kind == "sql":
        session = connect(journal)
        try:
            rows = session.query(rule.sql or "", bound).to_pylist()
        finally:
            session.close()
    else:
        rows = polars_verdicts(journal, rule, bound).collect().to_dicts()
    return {(r["stream_id"], r["version"], r["holds"]) for r in rows if r["holds"] is not None}


def _reference(journal: Journal, name: str, bound: dict[str, Any]) -> set[tuple[str, int, bool]]:
    rows = journal.read_all(list(REFERENCE_COLUMNS)).sort_by("position").to_pylist()
    return {(s, v, ok) for s, v, ok, _ in REFERENCES[name](rows, bound)}


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("where", ["patterns", "demo"])
def test_vectorised_rule_equals_the_plain_python_loop(
    name: str, where: str, everything: Journal, demo: Journal
) -> None:
    journal = everything if where == "patterns" else demo
    rule = RuleSet.load().get(name)
    bound = rule.bind({"max_cost_usd": "1"} if name == "budget" else {})
    vectorised = _verdicts(journal, rule, bound)
    assert vectorised == _reference(journal, name, bound)
    assert vectorised, "the rule judged nothing: the comparison would be empty"


def test_sql_budget_and_python_budget_state_agree_on_the_demo(demo: Journal) -> None:
    for limit in ("0.5", "2", "5"):
        assert failures(demo, "budget", max_cost_usd=limit) == failures(demo, "budget_state", max_cost_usd=limit)


# ---------------------------------------------------------------------- definitions and bad rules


def test_every_builtin_is_registered_with_a_description_and_severity() -> None:
    rules = RuleSet.load().rules
    wanted = {"no_tool_failure_loop", "budget", "tool_result_pairing", "confirmation_before_write",
              "journal_integrity", "latency", "exactly_once"}
    assert wanted <= set(rules)
    for r in rules.values():
        assert r.description and r.severity in {"info", "warning", "error", "critical"}
    assert rules["budget"].monotone and not rules["latency"].monotone


def test_fingerprint_covers_code_and_parameters() -> None:
    budget = RuleSet.load().get("budget")
    assert budget.fingerprint(budget.bind({})) == budget.fingerprint(budget.bind({"max_cost_usd": "5"}))
    assert budget.fingerprint(budget.bind({})) != budget.fingerprint(budget.bind({"max_cost_usd": "4"}))
    edited = sql_rule_from_text("budget", (budget.sql or "").replace("<=", "<"), "edited.sql")
    assert edited.fingerprint(edited.bind({})) != budget.fingerprint(budget.bind({}))


def test_fingerprint_covers_the_rule_file_and_what_the_rule_reads(tmp_path: Path) -> None:
    """A module constant or helper the function uses is part of its code; so are its columns."""
    text = textwrap.dedent('''
        from toolkit.analysis.rules import polars_rule
        import polars as pl

        LIMIT = 3

        @polars_rule("few_errors", "At most LIMIT errors.", columns=("is_error",))
        def few_errors(events, p):
            return pl.col("is_error").cum_sum().over("stream_id") <= LIMIT
    ''')

    def fingerprint(name: str, source: str) -> str:
        path = tmp_path / name
        path.write_text(source)
        rule = next(r for r in load_rule_file(path) if r.name == "few_errors")
        return rule.fingerprint(rule.bind({}))

    base = fingerprint("a.py", text)
    assert fingerprint("b.py", text) == base  # the same code elsewhere judges the same way
    assert fingerprint("c.py", text.replace("LIMIT = 3", "LIMIT = 4")) != base
    assert fingerprint("d.py", text.replace('columns=("is_error",)', 'columns=("is_error", "model")')) != base


def test_parameters_that_cannot_be_meant_are_refused() -> None:
    rules = RuleSet.load()
    for value in ("nan", "inf", "-Infinity"):
        with pytest.raises(RuleDefinitionError, match=f"max_cost_usd: '{value}' is not a finite DOUBLE"):
            rules.get("budget").bind({"max_cost_usd": value})
    for times in ("0", "-2"):
        with pytest.raises(RuleDefinitionError, match=f"times must be at least 1, not {times}"):
            rules.get("no_tool_failure_loop").bind({"times": times})
    assert rules.get("no_tool_failure_loop").bind({"times": "1"}) == {"times": 1}


def test_list_parameters_hold_items_of_their_type(tmp_path: Path, journals: dict[str, Journal]) -> None:
    """-p versions=2,3 for a BIGINT[] gave a Python rule ["2", "3"]: no int version was ever in it,
    so the rule held everywhere; a batch's ["2", "3"] (bisect --from-findings) as well."""
    py = tmp_path / "lists.py"
    py.write_text(textwrap.dedent('''
        from toolkit.analysis.rules import python_rule

        @python_rule("not_at", "The run never reaches these versions.", params="versions BIGINT[] = NULL")
        def not_at(state, p):
            return state.version not in (p["versions"] or ()) or f"reached version {state.version}"
    '''))
    rule = RuleSet.load([py]).get("not_at")
    assert rule.bind({"versions": "2, 3"}) == rule.bind({"versions": ["2", "3"]}) == {"versions": [2, 3]}
    assert rule.bind({}) == {"versions": None}
    with pytest.raises(RuleDefinitionError, match="versions: 'x' is not a BIGINT"):
        rule.bind({"versions": "2,x"})
    assert RuleSet.load().get("confirmation_before_write").bind({"tools": "a, b"})["tools"] == ["a", "b"]
    result = regrade(journals["slow_tool"], ["not_at"], params={"versions": "2,3"}, rule_files=[str(py)], write=False)
    assert {(r["stream_id"], r["first_failing_version"]) for r in result.findings.to_pylist()} == {("slow", 2)}


def test_unknown_rule_lists_the_known_ones(journals: dict[str, Journal]) -> None:
    with pytest.raises(RuleNotFoundError, match="no rule 'budgett'; known rules: budget, ") as e:
        regrade(journals["slow_tool"], ["budgett"], write=False)
    assert "Hint:" in str(e.value)


def test_parameters_are_checked(journals: dict[str, Journal]) -> None:
    j = journals["slow_tool"]
    with pytest.raises(RuleDefinitionError, match="no chosen rule takes parameter 'colour'"):
        regrade(j, ["latency"], params={"colour": "red"}, write=False)
    with pytest.raises(RuleDefinitionError, match="max_tool_ms: 'slow' is not a DOUBLE"):
        regrade(j, ["latency"], params={"max_tool_ms": "slow"}, write=False)
    # rule.param=value targets one rule when several share a parameter name
    both = regrade(j, ["budget", "budget_state"], params={"budget.max_cost_usd": "0"}, write=False)
    assert {r["rule"] for r in both.findings.to_pylist()} == set()  # no costs in slow_tool: nothing above 0


def test_a_targeted_parameter_wins_over_the_shared_one_in_any_order(journals: dict[str, Journal]) -> None:
    """``-p budget.max_cost_usd=5 -p max_cost_usd=0`` gave budget 0: the later, shared value overwrote
    the one meant for budget alone."""
    j = journals["budget_breach_at_v7"]
    for params in ({"budget.max_cost_usd": "5", "max_cost_usd": "1000"}, {"max_cost_usd": "1000", "budget.max_cost_usd": "5"}):
        result = regrade(j, ["budget", "budget_state"], params=params, write=False)
        assert {(r["rule"], r["stream_id"]) for r in result.findings.to_pylist()} == {("budget", "expensive")}, params
        assert {r["rule"]: r["params"] for r in result.rules} == {
            "budget": '{"max_cost_usd": 5.0, "max_tokens": null}',
            "budget_state": '{"max_cost_usd": 1000.0, "max_tokens": null}',
        }


def test_sql_rule_without_the_required_columns_names_what_is_missing(tmp_path: Path, journals: dict[str, Journal]) -> None:
    path = tmp_path / "half.sql"
    path.write_text("-- summary: forgets holds\nSELECT stream_id, version FROM events\n")
    with pytest.raises(RuleDefinitionError, match=r"does not return the column\(s\) holds; it returns stream_id, version"):
        regrade(journals["slow_tool"], ["half"], rule_files=[str(path)], write=False)


def test_a_rule_whose_holds_is_no_boolean_is_refused_naming_its_type(
    tmp_path: Path, journals: dict[str, Journal], capsys: pytest.CaptureFixture[str]
) -> None:
    """holds as a number was cast: 0 failed, any other number held (version - 1 failed every run at
    version 1), though a Python rule returning 1 is an error; text failed only when it was no
    'true'/'false'. A holds column that is no boolean is now refused, as a missing one is."""
    sql = tmp_path / "counted.sql"
    sql.write_text("-- summary: holds is a count.\nSELECT stream_id, version, version - 1 AS holds FROM events\n")
    py = tmp_path / "counted.py"
    py.write_text(textwrap.dedent('''
        import polars as pl
        from toolkit.analysis.rules import polars_rule

        @polars_rule("counted_polars", "holds is a count.")
        def counted_polars(events, p):
            return pl.col("version") - 1

        @polars_rule("named_polars", "holds is text.", columns=("event_type",))
        def named_polars(events, p):
            return pl.col("event_type")
    '''))
    j = journals["budget_breach_at_v7"]
    for rule, dtype in (("counted", "int64"), ("counted_polars", "Int64"), ("named_polars", "String")):
        with pytest.raises(RuleDefinitionError, match=f"rule {rule} .* returns holds as {dtype}, not a boolean"):
            regrade(j, [rule, "budget"], rule_files=[str(sql), str(py)], write=False)
    code, _out, err = run_cli(capsys, "regrade", "-j", str(j.path), "counted", "--rules", str(sql), "--dry-run")
    assert code == 1 and "returns holds as int64, not a boolean" in err and "Hint:" in err
    # null holds (no verdict) is a boolean's null, and a NULL column says nothing at all
    sql.write_text("-- summary: says nothing.\nSELECT stream_id, version, NULL AS holds FROM events\n")
    assert regrade(j, ["counted"], rule_files=[str(sql)], write=False).findings.num_rows == 0


def test_a_rule_returning_two_verdicts_for_one_event_counts_the_event_once(tmp_path: Path, journals: dict[str, Journal]) -> None:
    """A SQL rule with a UNION ALL (or a join) gave the expensive run 4 failing events out of 8 and
    evidence [7, 7, 8, 8]; its events 7 and 8 fail, each once. The same for a Polars LazyFrame."""
    sql = tmp_path / "twice_sql.sql"
    sql.write_text(
        "-- summary: Each event judged twice.\n"
        "SELECT stream_id, version, version < 7 AS holds FROM events\n"
        "UNION ALL SELECT stream_id, version, version < 7 AS holds FROM events\n"
    )
    py = tmp_path / "twice.py"
    py.write_text(textwrap.dedent('''
        import polars as pl
        from toolkit.analysis.rules import polars_rule

        @polars_rule("twice_polars", "Each event judged twice.")
        def twice_polars(events, p):
            once = events.select("stream_id", "version", holds=pl.col("version") < 7)
            return pl.concat([once, once])
    '''))
    j = journals["budget_breach_at_v7"]
    result = regrade(j, ["twice_sql", "twice_polars"], rule_files=[str(sql), str(py)], write=False)
    rows = {(r["rule"], r["stream_id"]): r for r in result.findings.to_pylist()}
    for rule in ("twice_sql", "twice_polars"):
        found = rows[(rule, "expensive")]
        assert (found["first_failing_version"], found["failing_events"]) == (7, 2), rule
        assert json.loads(found["evidence"])["failing_versions"] == [7, 8], rule


def test_user_rules_from_sql_and_python_files(tmp_path: Path, journals: dict[str, Journal]) -> None:
    sql = tmp_path / "no_big_model.sql"
    sql.write_text(
        "-- summary: The big model is never used.\n-- params: model VARCHAR = big-model\n-- severity: warning\n"
        "SELECT stream_id, version, model IS DISTINCT FROM $model AS holds, 'used ' || model AS message FROM events\n"
    )
    py = tmp_path / "my_rules.py"
    py.write_text(textwrap.dedent('''
        import polars as pl
        from toolkit.analysis.rules import polars_rule, python_rule

        @polars_rule("short_tools", "Tools answer in under a bound.", params="max_ms DOUBLE = 1000",
                     columns=("event_type", "duration_ms"))
        def short_tools(events, p):
            return (pl.col("event_type") != "tool_result") | (pl.col("duration_ms").fill_null(0) <= p["max_ms"])

        @python_rule("few_events", "A run has at most n events.", params="n BIGINT = 2")
        def few_events(state, p):
            return state.events <= p["n"] or f"{state.events} events"
    '''))
    j = journals["slow_tool"]
    result = regrade(j, ["no_big_model", "short_tools", "few_events"], rule_files=[str(sql), str(py)], write=False)
    got = {(r["rule"], r["stream_id"], r["first_failing_version"], r["message"]) for r in result.findings.to_pylist()}
    assert got == {
        ("no_big_model", "slow_model", 1, "used big-model"),
        ("short_tools", "slow", 2, None),
        ("few_events", "slow", 3, "3 events"),
    }
    assert {r.name for r in load_rule_file(py)} == {"short_tools", "few_events"}


def test_bad_rule_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    empty = tmp_path / "nothing.py"
    empty.write_text("x = 1\n")
    with pytest.raises(RuleDefinitionError, match="defines no rule"):
        load_rule_file(empty)
    leaving = tmp_path / "leaving.py"
    leaving.write_text("import sys\nsys.exit(0)\n")  # would end journal regrade with 0 and no findings
    with pytest.raises(RuleDefinitionError, match="loading the rules failed: SystemExit"):
        load_rule_file(leaving)
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(RuleDefinitionError, match="loading the rules failed: RuntimeError: boom"):
        load_rule_file(broken)
    with pytest.raises(RuleDefinitionError, match="no such rule file"):
        load_rule_file(tmp_path / "absent.sql")
    twice = tmp_path / "twice.py"  # the second rule silently replaced the first
    twice.write_text(textwrap.dedent('''
        from toolkit.analysis.rules import python_rule

        @python_rule("few_events", "At most 2 events.")
        def few(state, p):
            return state.events <= 2

        @python_rule("few_events", "At most 3 events.")
        def fewer(state, p):
            return state.events <= 3

        alias = fewer  # one rule under two variable names is still one rule
    '''))
    with pytest.raises(RuleDefinitionError, match="defines rule 'few_events' twice"):
        load_rule_file(twice)
    once = tmp_path / "once.py"
    once.write_text(twice.read_text().replace('@python_rule("few_events", "At most 2', '@python_rule("two_events", "At most 2'))
    assert sorted(r.name for r in load_rule_file(once)) == ["few_events", "two_events"]
    headless = tmp_path / "headless.sql"
    headless.write_text("SELECT 1\n")
    with pytest.raises(RuleDefinitionError, match="summary"):
        load_rule_file(headless)
    wrong = tmp_path / "wrong.sql"
    wrong.write_text("-- summary: s\n-- severity: fatal\nSELECT 1\n")
    with pytest.raises(RuleDefinitionError, match="severity 'fatal' is not one of"):
        load_rule_file(wrong)


HIDDEN_COPY = """\
-- summary: every event has a type
SELECT stream_id, version, event_type IS NOT NULL AS holds FROM events);
COPY (SELECT 'x' AS a) TO '{target}' (FORMAT csv);
SELECT * FROM (SELECT stream_id, version, event_type IS NOT NULL AS holds FROM events
"""


@pytest.mark.parametrize("target", ["journal.toml", "events/_delta_log/00000000000000000099.json"])
def test_a_sql_rule_that_hides_a_write_behind_a_parenthesis_is_refused_and_writes_nothing(
    tmp_path: Path, capsys: Any, target: str
) -> None:
    """The rule runs wrapped (``SELECT * FROM (<rule>) ...``): a ")" and ";" in its text made a
    second statement, and the sandbox lets DuckDB write inside the journal directory."""
    j = Journal.create(tmp_path / "j")
    build_tool_failure_loop(j)
    before = snapshot(j)
    toml = (j.path / "journal.toml").read_text()
    rule = tmp_path / "hide.sql"
    rule.write_text(HIDDEN_COPY.format(target=j.path / target))
    with pytest.raises(RuleDefinitionError, match=r"hide\.sql: (cannot parse SQL|one SELECT statement expected)"):
        load_rule_file(rule)
    code, _out, err = run_cli(capsys, "regrade", "hide", "--rules", str(rule), "-j", str(j.path))
    assert code == 1 and "hide.sql" in err and "Hint:" in err
    assert not (j.path / target).exists() or (j.path / "journal.toml").read_text() == toml
    assert snapshot(j) == before
    # one statement that is not a SELECT is refused as well
    rule.write_text(f"-- summary: s\nCOPY (SELECT 1 AS holds) TO '{j.path}/x.csv'\n")
    with pytest.raises(RuleDefinitionError, match="one SELECT statement expected, found COPY"):
        load_rule_file(rule)
    assert not (j.path / "x.csv").exists()
    # nor a COPY as a CTE body (DuckDB 2 parses that statement as a SELECT)
    rule.write_text(f"-- summary: s\nWITH w AS (COPY events TO '{j.path}/x.csv') SELECT 1 AS holds FROM w\n")
    with pytest.raises(RuleDefinitionError, match="one SELECT statement expected, found COPY in a WITH clause"):
        load_rule_file(rule)
    assert not (j.path / "x.csv").exists()


def test_a_rule_that_raises_is_an_error_finding_not_a_crash(tmp_path: Path, journals: dict[str, Journal]) -> None:
    py = tmp_path / "raising.py"
    py.write_text(textwrap.dedent('''
        from toolkit.analysis.rules import python_rule, polars_rule

        @python_rule("fragile", "Raises on the run's second event.")
        def fragile(state, p):
            if state.events == 2:
                raise ZeroDivisionError("no good")
            return True

        @polars_rule("broken_polars", "Reads a column that does not exist.", columns=("event_type",))
        def broken_polars(events, p):
            import polars as pl
            return pl.col("no_such_column") > 1
    '''))
    j = journals["slow_tool"]
    result = regrade(j, ["fragile", "broken_polars", "latency"], rule_files=[str(py)], write=False)
    rows = result.findings.to_pylist()
    fragile = sorted((r["stream_id"], r["first_failing_version"]) for r in rows if r["rule"] == "fragile")
    assert fragile == [("slow", 2)]  # the only stream with two events; the others were judged fine
    assert all(r["kind"] == "error" for r in rows if r["rule"] in {"fragile", "broken_polars"})
    assert "ZeroDivisionError: no good" in next(r["message"] for r in rows if r["rule"] == "fragile")
    assert "no_such_column" in next(r["message"] for r in rows if r["rule"] == "broken_polars")
    assert {r["stream_id"] for r in rows if r["rule"] == "latency"} == {"slow", "slow_model"}  # the rest still ran
    assert result.summary()["errors"] == 2


# ---------------------------------------------------------------------- differential property test

PHRASES = ["yes, send it", "no, don't", "ok go ahead", "wait", "Sure, but not yet", "what now?", "approved",
           "yes, but don’t send it", "ok, but I can’t pay yet"]
_event = st.one_of(
    st.builds(lambda t: {"event_type": "user_message", "data": {"text": t}}, st.sampled_from(PHRASES)),
    st.builds(
        lambda tool, cid, args, key: {"event_type": "tool_called", "tool_name": tool, "tool_call_id": cid,
                                      "idempotency_key": key, "data": {"args": args}},
        st.sampled_from(["search", "send_email", None]), st.sampled_from(["c1", "c2", "c3", None]),
        st.sampled_from(["x", "y"]), st.sampled_from([None, None, "k1", "k2"]),
    ),
    st.builds(
        lambda tool, cid, err: {"event_type": "tool_result", "tool_name": tool, "tool_call_id": cid,
                                "is_error": err, "data": {"ok": not err}},
        st.sampled_from(["search", "send_email", None]), st.sampled_from(["c1", "c2", "c3", None]), st.booleans(),
    ),
)


# random tool histories: a few streams of events of the kinds above
HISTORIES = st.lists(st.lists(_event, min_size=1, max_size=12), min_size=1, max_size=3)
HISTORY_RULES = ("no_tool_failure_loop", "confirmation_before_write", "tool_result_pairing", "exactly_once")


def history_journal(streams: list[list[dict[str, Any]]]) -> Journal:
    """An in-memory journal of the streams (``s0``, ``s1``, …) of ``HISTORIES``."""
    j = Journal.in_memory()
    j.append_batch([{**e, "stream_id": f"s{i}"} for i, events in enumerate(streams) for e in events], stream_type="agent_run")
    return j


@settings(max_examples=25, deadline=None)
@given(streams=HISTORIES)
def test_vectorised_equals_python_on_random_tool_histories(streams: list[list[dict[str, Any]]]) -> None:
    with history_journal(streams) as j:
        for name in HISTORY_RULES:
            rule = RuleSet.load().get(name)
            bound = rule.bind({})
            assert _verdicts(j, rule, bound) == _reference(j, name, bound), name
