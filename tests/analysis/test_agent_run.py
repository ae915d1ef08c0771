# ruff: noqa: F811  (pytest fixtures imported from replay_fixtures are parameters here)
"""The built-in agent-run aggregate: its rules, and the vectorised states equal the Python fold."""

from __future__ import annotations

import json
from decimal import Decimal

import polars as pl
from helpers import at, build_budget_breach, build_tool_failure_loop, ev
from replay_fixtures import fresh_cache, samples_journal  # noqa: F401  (pytest fixtures)

from toolkit.analysis.agent_run import AGENT_RUN, agent_run_states, state_from_dict, state_to_dict
from toolkit.analysis.replay import read_events, state_at
from toolkit.journal import Journal

GUIDE = "bc7329a7-7f1c-5516-979c-f6e9e622dea3"  # Evennia guide-npc: failing tools, emergency stop, archived


def _fold_rows(journal: Journal) -> dict[str, dict[str, object]]:
    return {sid: {"stream_id": sid, **AGENT_RUN.fold(read_events(journal, sid)).summary()} for sid in journal.heads()}


def test_vectorised_states_equal_the_python_fold_on_every_real_sample(samples_journal: Journal) -> None:
    frame = agent_run_states(samples_journal)
    folded = _fold_rows(samples_journal)
    assert frame.height == len(folded) == len(samples_journal.heads())
    for row in frame.iter_rows(named=True):
        assert row == folded[row["stream_id"]], row["stream_id"]


def test_vectorised_states_equal_the_fold_on_hand_made_runs(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    build_budget_breach(journal)
    journal.append(
        "mixed",
        [
            ev("tool_result", tool_name="grep", occurred_at=at(3)),  # a result nobody called
            ev("tool_called", tool_name="grep", occurred_at=at(3)),
            ev("error", {"error": "boom"}, tool_name="grep", occurred_at=at(3, 13)),
            ev("error", {"error": "boom"}, occurred_at=at(3, 14)),
            ev("llm_response", model="", occurred_at=at(3, 15)),
            ev("tool_called", tool_name="", occurred_at=at(3, 16)),
            ev("error", {"x": 1}, occurred_at=at(3, 17)),
        ],
    )
    frame = agent_run_states(journal)
    folded = _fold_rows(journal)
    for row in frame.iter_rows(named=True):
        assert row == folded[row["stream_id"]], row["stream_id"]
    only = agent_run_states(journal, ["mixed"])
    assert only["stream_id"].to_list() == ["mixed"] and only.row(0, named=True) == folded["mixed"]


def test_failure_loop_state(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    s = state_at(journal, "tool_failure_loop")
    assert (s.events, s.tool_calls, s.tool_failures, s.llm_calls) == (13, {"shell": 3}, {"shell": 3}, {"gpt-test": 3})
    assert (s.tokens_in, s.tokens_cache_read, s.cost_usd) == (3003, 600, Decimal("0.0375"))
    assert (s.errors, s.consecutive_errors, s.status, s.last_tool) == (3, 1, "running", "shell")


def test_evennia_assistant_goals_stop_and_archive(samples_journal: Journal) -> None:
    at7 = state_at(samples_journal, GUIDE, version=7)
    assert at7.emergency_stop and at7.status == "aborted" and at7.consecutive_errors == 0
    assert at7.tool_failures == {"web_search": 3} and at7.tool_calls == {"say": 1, "web_search": 3}
    at6 = state_at(samples_journal, GUIDE, version=6)
    assert at6.consecutive_errors == 3 and not at6.emergency_stop
    end = state_at(samples_journal, GUIDE)
    assert end.status == "archived" and not end.emergency_stop and end.ticks == 4
    assert end.model == "claude-3-5-sonnet" and end.llm_calls == {"claude-3-5-haiku": 1, "claude-3-5-sonnet": 3}
    assert list(end.goals) == ["goal-1"] and end.goals["goal-1"].status == "created"
    # the archived final stats the source itself recorded agree with the fold
    assert (end.tokens_in, end.tokens_out) == (6652, 292)


def test_state_round_trips_through_json(samples_journal: Journal) -> None:
    for sid in samples_journal.heads():
        s = state_at(samples_journal, sid)
        assert state_from_dict(state_to_dict(s)) == s


# ---------------------------------------------------------------------------- a response asking for tools

# the payload of a run's last event, an llm_response: (run, payload, status)
LAST_RESPONSES = [
    ("openai_tool_calls", {"finish_reason": "tool_calls", "tool_calls": [{"id": "c1", "name": "search"}]}, "running"),
    ("anthropic_tool_use", {"stop_reason": "tool_use", "content": [{"type": "tool_use", "name": "search"}]}, "running"),
    ("demo_anthropic_tool_use", {"finish_reason": "tool_use", "tool_calls": [{"id": "t1", "name": "search"}]}, "running"),
    ("otlp_finish_reasons", {"finish_reasons": ["tool_calls"], "output_messages": "[]"}, "running"),
    ("tool_calls_listed_only", {"tool_calls": [{"id": "c2"}]}, "running"),
    ("openai_stop", {"finish_reason": "stop", "text": "Booked."}, "answered"),
    ("anthropic_end_turn", {"stop_reason": "end_turn", "content": "Booked."}, "answered"),
    ("otlp_stop", {"finish_reasons": ["stop"]}, "answered"),
    ("no_tool_calls", {"finish_reason": "stop", "tool_calls": []}, "answered"),
]


def _cut_after_last_response(journal: Journal) -> None:
    """One run per case: the user asks, the model responds with the case's payload, and the run
    stops there (a crash, a kill)."""
    for sid, payload, _ in LAST_RESPONSES:
        journal.append(sid, [
            ev("user_message", {"text": "Book me a flight"}, agent="a", occurred_at=at(4)),
            ev("llm_response", payload, model="m", tokens_in=10, occurred_at=at(4, 12, 1)),
        ])


def test_a_run_cut_off_after_a_response_asking_for_tools_is_running_in_every_implementation(journal: Journal) -> None:
    from toolkit.analysis import state_rules
    from toolkit.analysis.run_explorer import find_runs

    _cut_after_last_response(journal)
    want = {sid: status for sid, _, status in LAST_RESPONSES}
    folded = {sid: row["status"] for sid, row in _fold_rows(journal).items()}
    vectorised = dict(agent_run_states(journal).select("stream_id", "status").iter_rows())
    explorer = dict(zip(*find_runs(journal).select(["stream_id", "status"]).to_pydict().values(), strict=True))
    frame = state_rules.with_stream_key(state_rules._read(journal, sorted(want), state_rules.STATE_COLUMNS))
    versions_2 = frame.select(pl.arg_where(pl.col("version") == 2)).to_series()
    view = state_rules.RunStateView.over(frame, versions_2, state_rules.tools_of(journal))()
    columns = {}
    for k, sid in enumerate(frame.filter(pl.col("version") == 2)["stream_id"].to_list()):
        view.at = k
        columns[sid] = view.status
    assert folded == vectorised == explorer == columns == want


def test_the_three_rules_of_a_response_asking_for_tools_agree() -> None:
    """agent_run.requests_tools, its Polars form (column-wise states) and its SQL (the macro both
    queries call) on payloads of every source and odd ones."""
    from toolkit.analysis import state_rules
    from toolkit.analysis.agent_run import TOOL_CALL_FINISH_REASONS, requests_tools
    from toolkit.engines.duckdb_engine import MACROS, query_tables
    from toolkit.engines.queries import get_query

    payloads = [json.dumps(p) for _, p, _ in LAST_RESPONSES] + [
        '{"finish_reason":"tool\\u005fcalls"}', '{"tool_calls":[null]}', '{"tool_calls":"[x]"}', '{"tool_calls":{}}',
        '{"finish_reasons":"[\\"tool_use\\"]"}', '{"finish_reasons":[null,"tool_use"]}', '{"finish_reasons":[1,["tool_use"]]}',
        '{"finish_reasons":["a,b","tool_use"]}', '{"finish_reason":null}', '{"finish_reason":["tool_calls"]}',
        '{"tool_calls": [ ] }', '"tool_calls"', '["tool_calls"]', "not json", "", None,
    ]
    expected = [requests_tools(None if p is None else _parse(p)) for p in payloads]
    assert expected.count(True) >= 8 and expected.count(False) >= 8
    frame = pl.DataFrame({"event_type": ["llm_response"] * len(payloads), "data": payloads})
    assert frame.select(state_rules.requests_tools()).to_series().to_list() == expected
    for name in ("replay/agent_runs_by_stream", "explorer/runs"):
        assert "requests_tools(data)" in get_query(name).sql
    (macro,) = [m for m in MACROS if "requests_tools" in m]
    assert all(f"'{r}'" in macro for r in TOOL_CALL_FINISH_REASONS)
    got = query_tables({"t": frame.with_row_index("i").to_arrow()}, "SELECT requests_tools(data) AS r FROM t ORDER BY i")
    assert got.column("r").to_pylist() == expected


def _parse(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text
