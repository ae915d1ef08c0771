"""Every file under queries/: its header matches what DuckDB parses, and it runs on a fixture journal."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal

import pytest
from cost_fixtures import build_chat_outcomes, build_goals_and_ticks
from helpers import build_budget_breach, build_tool_failure_loop
from overview_fixtures import build_flaky_deploy

from toolkit.analysis.pricing import cost_session
from toolkit.engines.duckdb_engine import Session
from toolkit.engines.queries import Param, Query, catalog, get_query, parse_query, queries_dir
from toolkit.errors import QueryError, QueryNotFoundError
from toolkit.journal import Journal

QUERIES = sorted(catalog())

# plausible values for the fixture journal, by parameter name, then by type
BY_NAME = {
    "stream_id": "tool_failure_loop",
    "stream_ids": "tool_failure_loop",
    "stream_type": "agent_run",
    "model": "gpt-test",
    "limit": "5",
    "since": "2026-03-01T00:00:00Z",
    "until": "2026-04-01T00:00:00Z",
    "by": "model,day,agent",
    "agent": "deployer",
    "min_cost_usd": "0.01",
    "status": "aborted",
    "search": "deploy",
    "run_id": "flaky_deploy",
    "event_type": "tool_result",
}
BY_TYPE = {
    "VARCHAR": "agent_run",
    "BIGINT": "10",
    "INTEGER": "10",
    "DOUBLE": "1.5",
    "BOOLEAN": "true",
    "DATE": "2026-03-02",
    "TIMESTAMPTZ": "2026-03-01T00:00:00Z",
    "TIMESTAMP WITH TIME ZONE": "2026-03-01T00:00:00Z",
}
DUCKDB_SPELLING = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE", "INT": "INTEGER", "FLOAT": "REAL"}


def _value(p: Param) -> str:
    return (
        BY_NAME.get(p.name) or BY_TYPE.get(p.type.upper()) or pytest.fail(f"no plausible value for {p.name} {p.type}")
    )


def _returns(q: Query) -> list[tuple[str, str]]:
    """``-- returns: a TYPE, b DECIMAL(18,9)`` as [(name, DuckDB type)]."""
    out = []
    for part in re.split(r",\s*(?![^()]*\))", q.returns):
        name, _, type_ = part.strip().partition(" ")
        type_ = type_.strip().upper().replace(" ", "")
        out.append((name, DUCKDB_SPELLING.get(type_, type_)))
    return out


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    j = Journal.create(tmp_path_factory.mktemp("catalog") / "j")
    build_tool_failure_loop(j)
    build_budget_breach(j)
    build_goals_and_ticks(j)
    build_chat_outcomes(j)
    build_flaky_deploy(j)
    s = cost_session(j)  # the views costs/ and rollups/ queries read: prices, priced_events, cost_events
    yield s
    s.close()
    j.close()


def test_the_catalog_is_every_sql_file_under_queries() -> None:
    files = sorted(p.relative_to(queries_dir()).with_suffix("").as_posix() for p in queries_dir().rglob("*.sql"))
    assert QUERIES == files and len(files) >= 3


@pytest.mark.parametrize("name", QUERIES)
def test_header_params_are_the_parameters_duckdb_parses(session: Session, name: str) -> None:
    q = get_query(name)
    assert q.summary and q.returns, f"{q.path}: header needs summary and returns"
    assert sorted(p.name for p in q.params) == session.parameters(q.sql)


@pytest.mark.parametrize("name", QUERIES)
@pytest.mark.parametrize("optional", ["defaults", "all-given"])
def test_query_runs_and_returns_the_header_columns(session: Session, name: str, optional: str) -> None:
    q = get_query(name)
    given = {p.name: _value(p) for p in q.params if p.default is None or optional == "all-given"}
    params = q.bind(given)
    rel = session.con.sql(q.sql, params=params or None)
    types = [str(t).replace(" ", "").upper() for t in rel.types]
    assert list(zip(rel.columns, [DUCKDB_SPELLING.get(t, t) for t in types], strict=True)) == [
        (n, t.replace(" ", "")) for n, t in _returns(q)
    ]
    table = session.query(q.sql, params)
    assert table.column_names == [n for n, _ in _returns(q)]
    assert table.num_rows >= 1, f"{name} returned nothing on the fixture journal with {given}"


def test_stream_stats_counts_the_failure_loop(session: Session) -> None:
    q = get_query("journal/stream_stats")
    rows = {r["event_type"]: r for r in session.query(q.sql, q.bind({"stream_id": "tool_failure_loop"})).to_pylist()}
    assert rows["tool_result"]["errors"] == 3 and rows["tool_result"]["events"] == 3
    assert rows["llm_response"]["tokens_in"] == 1000 + 1001 + 1002
    assert rows["llm_response"]["cost_usd"] == Decimal("0.0375")
    assert rows["user_message"]["first_version"] == 1


def test_summary_by_model_respects_since_and_until(session: Session) -> None:
    q = get_query("journal/summary_by_model")
    every = {r["model"]: r for r in session.query(q.sql, q.bind({})).to_pylist()}
    assert every["big-model"]["cost_usd"] == Decimal("3.25") and every["gpt-test"]["llm_calls"] == 3
    late = session.query(q.sql, q.bind({"since": "2026-03-03"})).to_pylist()
    assert {r["model"] for r in late} == {"big-model", "(none)"}


def test_binding_refuses_unknown_and_missing_parameters() -> None:
    q = get_query("journal/stream_stats")
    with pytest.raises(QueryError, match="needs parameter stream_id"):
        q.bind({})
    with pytest.raises(QueryError, match="no parameter 'colour'"):
        q.bind({"stream_id": "x", "colour": "red"})
    limit = parse_query("x/y", "-- summary: s\n-- params: n BIGINT\n-- returns: n BIGINT\nSELECT $n AS n")
    with pytest.raises(QueryError, match="not a BIGINT"):
        limit.bind({"n": "ten"})


def test_unknown_query_name_is_not_found() -> None:
    with pytest.raises(QueryNotFoundError):
        get_query("journal/no_such_query")


def test_a_parameter_with_choices_refuses_another_value() -> None:
    from toolkit.analysis.rollup import DIMENSIONS

    for name in ("rollups/usage", "rollups/totals"):  # the header lists what rollup --by takes
        (by,) = [p for p in get_query(name).params if p.name == "by"]
        assert by.choices == tuple(DIMENSIONS)
    q = parse_query("x/y", "-- summary: s\n-- params: by VARCHAR[] IN (a, b) = a\n-- returns: n BIGINT\nSELECT 1 AS n")
    assert q.bind({}) == {"by": ["a"]} and q.bind({"by": "b,a"}) == {"by": ["b", "a"]}
    with pytest.raises(QueryError, match="'c' is not one of a, b") as e:
        q.bind({"by": "a,c"})
    assert e.value.context["value"] == "a,c"
