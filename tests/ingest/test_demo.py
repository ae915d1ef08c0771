"""The demo fleet: deterministic, valid canonical events, and the forensic patterns it promises.

One demo journal (400 runs in several commits) is written once into a real Delta table and read
back; every test below checks one property of what the journal holds.
"""

from __future__ import annotations

import datetime as dt
import doctest
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from toolkit.analysis.invariants import DEFAULT_REJECT
from toolkit.analysis.regrade import regrade
from toolkit.ingest import demo
from toolkit.ingest.demo import (
    BUDGET_USD,
    DEFAULT_START,
    DEMO_PRICES,
    DEMO_SCHEMA,
    DemoSummary,
    cost_usd,
    estimate_events,
    generate_demo,
    write_demo,
)
from toolkit.journal import Journal
from toolkit.journal.integrity import verify_journal
from toolkit.journal.prepare import INPUT_SCHEMA, canonical_json

RUNS = 400
BATCH = 2_000  # several commits for 400 runs
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")
SIDE_EFFECT_TOOLS = {name for name, tool in demo._TOOLS.items() if tool.side_effect}
TRANSIENT = set(demo._TRANSIENT_ERRORS)  # errors a retry usually gets past


@dataclass(frozen=True)
class Written:
    journal: Journal
    summary: DemoSummary
    progress: list[int]


@pytest.fixture(scope="module")
def written() -> Iterator[Written]:
    journal = Journal.in_memory()
    seen: list[int] = []
    summary = write_demo(journal, RUNS, seed=7, progress=seen.append, batch_events=BATCH)
    yield Written(journal, summary, seen)
    journal.close()


@pytest.fixture(scope="module")
def demo_journal(written: Written) -> Journal:
    return written.journal


@pytest.fixture(scope="module")
def rows(demo_journal: Journal) -> list[dict[str, Any]]:
    return demo_journal.read_all().to_pylist()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def runs(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Events of each run, by version."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: (r["stream_id"], r["version"])):
        out[r["stream_id"]].append(r)
    return dict(out)


def scenario(run: list[dict[str, Any]]) -> str:
    return json.loads(run[0]["metadata"])["demo_scenario"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------- determinism and shape


def test_same_seed_same_tables_other_seed_other_tables() -> None:
    first = list(generate_demo(60, seed=11))
    again = list(generate_demo(60, seed=11))
    other = list(generate_demo(60, seed=12))
    assert len(first) == len(again) and all(a.equals(b) for a, b in zip(first, again, strict=True))
    assert not pa.concat_tables(first).equals(pa.concat_tables(other))


def test_output_does_not_depend_on_the_batch_size() -> None:
    whole = pa.concat_tables(generate_demo(60, seed=3))
    pieces = list(generate_demo(60, seed=3, batch_events=100))
    assert len(pieces) > 5
    assert pa.concat_tables(pieces).equals(whole)


def test_tables_have_the_input_schema_types_and_never_split_a_run() -> None:
    tables = list(generate_demo(80, batch_events=300))
    owners: dict[str, int] = {}
    for i, t in enumerate(tables):
        assert t.schema.equals(DEMO_SCHEMA)
        for field in t.schema:
            assert field.type == INPUT_SCHEMA.field(field.name).type, field.name
        for sid in set(t.column("stream_id").to_pylist()):
            assert owners.setdefault(sid, i) == i, f"{sid} is split between tables"
    assert len(owners) == 80


def test_the_default_start_is_fixed_and_start_and_days_place_the_runs() -> None:
    t = pa.concat_tables(generate_demo(30))
    assert min(t.column("occurred_at").to_pylist()) >= DEFAULT_START
    start = dt.datetime(2027, 2, 1, 9, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    t = pa.concat_tables(generate_demo(30, start=start, days=2))
    times = t.column("occurred_at").to_pylist()
    assert start <= min(times) and max(times) < start + dt.timedelta(days=2)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next(generate_demo(1, start=dt.datetime(2026, 1, 1)))
    with pytest.raises(ValueError, match="days"):
        next(generate_demo(1, days=0))
    assert list(generate_demo(0)) == []


def test_module_doctests() -> None:
    assert doctest.testmod(demo).failed == 0


# ---------------------------------------------------------------------- the journal


def test_write_demo_reports_what_it_wrote(written: Written) -> None:
    summary, progress = written.summary, written.progress
    assert summary.runs == summary.streams == RUNS
    assert summary.appended == summary.events == sum(progress) and summary.skipped == 0
    assert len(progress) > 2 and all(n >= BATCH for n in progress[:-1])
    assert abs(summary.events - estimate_events(RUNS)) < 0.1 * summary.events
    assert 1 < summary.sessions < RUNS
    assert summary.first_day == DEFAULT_START.date()
    assert summary.last_day == DEFAULT_START.date() + dt.timedelta(days=13)


def test_the_journal_holds_every_run_with_contiguous_versions(
    demo_journal: Journal, rows: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]
) -> None:
    assert len(runs) == RUNS
    assert {r["stream_type"] for r in rows} == {"agent_run"}
    for sid, events in runs.items():
        assert [e["version"] for e in events] == list(range(1, len(events) + 1)), sid
    assert len({r["event_id"] for r in rows}) == len(rows)
    assert verify_journal(demo_journal).ok


def test_writing_the_same_demo_again_appends_nothing() -> None:
    with Journal.in_memory() as journal:
        first = write_demo(journal, 12, seed=5)
        again = write_demo(journal, 12, seed=5)
        assert first.appended == first.events > 0
        assert again.appended == 0 and again.skipped == again.events == first.events


def test_runs_follow_the_agent_loop_in_time_order(runs: dict[str, list[dict[str, Any]]]) -> None:
    for sid, events in runs.items():
        types = [e["event_type"] for e in events]
        assert types[:2] == ["user_message", "plan_created"], sid
        assert types[-2:] == ["llm_request", "llm_response"], sid
        assert json.loads(events[-1]["data"])["finish_reason"] in {"stop", "end_turn"}
        times = [e["occurred_at"] for e in events]
        assert all(a < b for a, b in pairwise(times)), f"{sid}: time goes back"
        assert len({e["agent"] for e in events}) == 1 and len({e["subject_id"] for e in events}) == 1
        assert re.fullmatch(r"user-\d{4,}", events[0]["subject_id"])


def test_causation_points_into_the_run_or_at_the_previous_answer(
    rows: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]
) -> None:
    by_id = {r["event_id"]: r for r in rows}
    follow_ups = 0
    for sid, events in runs.items():
        ids = {e["event_id"] for e in events}
        for e in events[1:]:
            assert e["causation_id"] in ids, f"{sid} v{e['version']}"
            assert by_id[e["causation_id"]]["version"] < e["version"]
        cause = events[0]["causation_id"]
        if cause is not None:  # a follow-up run answers the previous run's final answer
            follow_ups += 1
            prev = by_id[cause]
            assert prev["stream_id"] != sid and prev["event_type"] == "llm_response"
            assert prev["correlation_id"] == events[0]["correlation_id"]
            assert prev["occurred_at"] < events[0]["occurred_at"]
    assert follow_ups > 0


def test_sessions_span_one_to_three_runs(runs: dict[str, list[dict[str, Any]]]) -> None:
    per_session = Counter(events[0]["correlation_id"] for events in runs.values())
    assert set(per_session.values()) == {1, 2, 3}


def test_every_tool_call_has_exactly_one_result(rows: list[dict[str, Any]]) -> None:
    called = {r["tool_call_id"]: r for r in rows if r["event_type"] == "tool_called"}
    results = Counter(r["tool_call_id"] for r in rows if r["event_type"] == "tool_result")
    assert called and set(results) == set(called) and set(results.values()) == {1}
    for r in rows:
        if r["event_type"] == "tool_result":
            call = called[r["tool_call_id"]]
            assert (r["stream_id"], r["tool_name"]) == (call["stream_id"], call["tool_name"])
            assert r["causation_id"] == call["event_id"]
            assert r["occurred_at"] > call["occurred_at"] and r["duration_ms"] > 0
            assert r["is_error"] == (r["error"] is not None)
            assert "args" in json.loads(call["data"])
            assert ("error" if r["is_error"] else "result") in json.loads(r["data"])


def test_side_effects_carry_idempotency_keys(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        expected = r["event_type"] == "tool_called" and r["tool_name"] in SIDE_EFFECT_TOOLS
        assert (r["idempotency_key"] is not None) == expected, r["event_id"]


def test_token_counts_follow_otel_semantics_and_cost_matches_the_prices(
    rows: list[dict[str, Any]],
) -> None:
    responses = [r for r in rows if r["event_type"] == "llm_response"]
    assert {r["model"] for r in responses} == set(DEMO_PRICES)
    for r in responses:
        cache = (r["tokens_cache_read"] or 0) + (r["tokens_cache_write"] or 0)
        assert 0 <= cache <= r["tokens_in"]
        assert 0 <= (r["tokens_reasoning"] or 0) <= r["tokens_out"]
        assert r["cost_usd"] == cost_usd(
            r["model"], r["tokens_in"], r["tokens_out"], r["tokens_cache_read"] or 0, r["tokens_cache_write"] or 0
        )
        assert r["duration_ms"] > 0
    assert any(r["tokens_reasoning"] for r in responses if r["model"] == "o3-mini")
    assert any(r["tokens_cache_read"] for r in responses) and any(r["tokens_cache_write"] for r in responses)
    others = [r for r in rows if r["event_type"] not in ("llm_response", "llm_request")]
    assert all(r["model"] is None and r["tokens_in"] is None and r["cost_usd"] is None for r in others)


def test_a_few_percent_of_runs_breach_the_budget(runs: dict[str, list[dict[str, Any]]]) -> None:
    spent = {sid: sum((e["cost_usd"] or Decimal(0)) for e in events) for sid, events in runs.items()}
    over = {sid for sid, usd in spent.items() if usd > BUDGET_USD}
    assert 0.01 * RUNS <= len(over) <= 0.08 * RUNS
    assert over == {sid for sid, events in runs.items() if scenario(events) == "budget_breach"}
    assert sorted(spent.values())[RUNS // 2] < Decimal("0.5")  # the typical run is cheap


def failing_repeats(events: list[dict[str, Any]]) -> int:
    """The longest series of consecutive tool calls with the same tool and arguments that all fail."""
    results = {e["tool_call_id"]: e for e in events if e["event_type"] == "tool_result"}
    best = run = 0
    previous: tuple[str, str] | None = None
    for e in events:
        if e["event_type"] != "tool_called":
            continue
        call = (e["tool_name"], e["data"])
        failed = results[e["tool_call_id"]]["is_error"]
        run = (run + 1 if call == previous else 1) if failed else 0
        previous = call if failed else None
        best = max(best, run)
    return best


def test_a_few_percent_of_runs_retry_a_failing_call_with_the_same_arguments(
    demo_journal: Journal, runs: dict[str, list[dict[str, Any]]]
) -> None:
    loops = {sid: failing_repeats(events) for sid, events in runs.items()}
    stuck = {sid for sid, n in loops.items() if n >= 2}
    looping = {sid for sid, events in runs.items() if scenario(events) == "retry_loop"}
    assert 0.01 * RUNS <= len(looping) <= 0.08 * RUNS
    assert looping <= stuck
    assert {loops[sid] for sid in looping} <= {2, 3, 4}
    # elsewhere only a rare retry after a transient error that failed again: twice, then no more
    for sid in stuck - looping:
        assert loops[sid] == 2 and scenario(runs[sid]) == "normal", sid
        assert {e["error"] for e in runs[sid] if e["event_type"] == "tool_result" and e["is_error"]} <= TRANSIENT
    assert len(stuck - looping) < len(looping)
    for sid in stuck:  # the agent gives up with an error event
        assert any(e["event_type"] == "error" and "identical arguments" in e["error"] for e in runs[sid])
    found = regrade(demo_journal, ["no_tool_failure_loop"], write=False).findings.to_pylist()
    assert {f["stream_id"] for f in found} == stuck  # which is what the built-in rule flags


def retry_turn(events: list[dict[str, Any]], failed: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool calls of the first turn after the ``failed`` tool_result (none: no turn came)."""
    later = [e for e in events[failed["version"] :] if e["event_type"] == "tool_called"]
    return [e for e in later if later and e["causation_id"] == later[0]["causation_id"]]


def test_a_call_that_failed_with_a_transient_error_is_retried_with_the_same_arguments(
    rows: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]
) -> None:
    by_id = {r["event_id"]: r for r in rows}
    succeeded = failed_again = side_effects = 0
    for sid, events in runs.items():
        for result in events:
            if result["event_type"] != "tool_result" or result["error"] not in TRANSIENT:
                continue
            call = by_id[result["causation_id"]]
            earlier = [e for e in events[: call["version"]] if e["event_type"] == "tool_result" and e["is_error"]]
            if earlier and by_id[earlier[-1]["causation_id"]]["data"] == call["data"]:
                continue  # itself a retry (that failed again): judged below
            # the next turn calls the same tool with the same arguments under a new call id
            (retry,) = [
                e
                for e in retry_turn(events, result)
                if (e["tool_name"], e["data"]) == (call["tool_name"], call["data"])
            ]
            assert retry["tool_call_id"] != call["tool_call_id"], sid
            if call["idempotency_key"] is not None:  # a new key: exactly_once stays quiet
                side_effects += 1
                assert retry["idempotency_key"] not in (None, call["idempotency_key"]), sid
            # caused by the failed result: response ← request (← rate limited ← request) ← result
            request = by_id[by_id[retry["causation_id"]]["causation_id"]]
            while by_id[request["causation_id"]]["event_type"] == "error":
                request = by_id[by_id[request["causation_id"]]["causation_id"]]
            cause = by_id[request["causation_id"]]
            assert cause["event_type"] == "tool_result" and cause["error"] in TRANSIENT, sid
            outcome = next(
                e for e in events if e["event_type"] == "tool_result" and e["tool_call_id"] == retry["tool_call_id"]
            )
            if outcome["is_error"]:
                failed_again += 1
                assert outcome["error"] in TRANSIENT and scenario(events) == "normal", sid
                assert not retry_turn(events, outcome), sid  # no third try: the agent gives up
            else:
                succeeded += 1
    assert succeeded > 10 * failed_again > 0 and side_effects > 0


def test_a_run_whose_call_failed_twice_never_claims_success(runs: dict[str, list[dict[str, Any]]]) -> None:
    agents = {a.name: a for a in demo._AGENTS}
    gave_up = 0
    for sid, events in runs.items():
        exhausted = [e for e in events if e["event_type"] == "error" and "identical arguments" in e["error"]]
        if not exhausted:
            continue
        after = events[exhausted[0]["version"] :]
        assert not [e for e in after if e["event_type"] == "tool_called"], sid  # nothing more is tried
        answer = after[-1]
        assert answer["event_type"] == "llm_response", sid
        text = json.loads(answer["data"])["text"]
        assert text.startswith("Sorry, I could not finish this") and "Done" not in text, text
        successes = agents[events[0]["agent"]].answers  # no success answer, with any slot values
        assert not any(re.fullmatch(".*".join(map(re.escape, re.split(r"%\(\w+\)s", a))), text) for a in successes)
        if scenario(events) == "normal":
            gave_up += 1
            tool = json.loads(exhausted[0]["data"])["tool"]
            assert f"{tool} failed twice (" in text, text
    assert gave_up > 0


def test_a_timed_out_call_took_the_timeout_which_the_latency_rule_does_not_flag(
    demo_journal: Journal, rows: list[dict[str, Any]]
) -> None:
    called = {r["tool_call_id"]: r for r in rows if r["event_type"] == "tool_called"}
    timeouts = [r for r in rows if r["event_type"] == "tool_result" and r["error"] == "timeout after 30000 ms"]
    assert timeouts
    for r in timeouts:
        assert r["duration_ms"] == 30_000.0, r["event_id"]
        assert r["occurred_at"] - called[r["tool_call_id"]]["occurred_at"] >= dt.timedelta(milliseconds=30_000)
    timed_out = {(r["stream_id"], r["version"]) for r in timeouts}

    def flagged(**params: float) -> set[tuple[str, int]]:
        found = regrade(demo_journal, ["latency"], params=params, write=False).findings.to_pylist()
        return {(f["stream_id"], v) for f in found for v in json.loads(f["evidence"])["failing_versions"]}

    assert not flagged() & timed_out  # a timeout at the bound (max_tool_ms 30000) does not exceed it
    assert timed_out <= flagged(max_tool_ms=29_999.0)  # and the rule does see them


def test_exactly_once_fails_only_on_retry_loops_that_reuse_their_key(
    demo_journal: Journal, runs: dict[str, list[dict[str, Any]]]
) -> None:
    found = regrade(demo_journal, ["exactly_once"], write=False).findings.to_pylist()
    assert found and all(f["kind"] == "violation" for f in found)
    for f in found:  # retries after a transient error use a new key, so they are never among them
        assert scenario(runs[f["stream_id"]]) == "retry_loop", f["stream_id"]


def test_occasional_errors_are_flagged(rows: list[dict[str, Any]]) -> None:
    errors = [r for r in rows if r["event_type"] == "error"]
    assert errors and all(r["is_error"] and r["error"] for r in errors)
    assert any(json.loads(r["data"]).get("status") == 429 for r in errors)
    assert 0 < sum(r["is_error"] for r in rows) < 0.1 * len(rows)


def test_the_fleet_spreads_over_days_agents_and_models(rows: list[dict[str, Any]]) -> None:
    days = Counter(r["day"] for r in rows)
    assert len(days) == 14
    assert len({r["agent"] for r in rows}) == 5
    assert len({r["model"] for r in rows if r["model"]}) == 5


def test_traceparents_parse_one_trace_per_run_and_a_span_per_event(
    runs: dict[str, list[dict[str, Any]]],
) -> None:
    traces = set()
    for events in runs.values():
        for e in events:
            m = TRACEPARENT.fullmatch(e["traceparent"])
            assert m is not None, e["traceparent"]
            assert (m.group(1), m.group(2)) == (e["trace_id"], e["span_id"])
        assert len({e["trace_id"] for e in events}) == 1
        assert len({e["span_id"] for e in events}) == len(events)
        assert "0" * 16 not in {e["span_id"] for e in events}
        traces.add(events[0]["trace_id"])
    assert len(traces) == len(runs)


def test_payloads_are_canonical_json(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        assert canonical_json(json.loads(r["data"])) == r["data"]
        assert canonical_json(json.loads(r["metadata"])) == r["metadata"]
    texts = [json.loads(r["data"])["text"] for r in rows if r["event_type"] == "user_message"]
    assert any('"' in t or "\\" in t for t in texts)  # escaping is exercised


def template_contexts(tables: Any) -> list[dict[str, str]]:
    """Contexts of one agent: one drawn, then each pool value in turn."""
    first = DEFAULT_START.date()
    dates = [(first + dt.timedelta(days=i)).isoformat() for i in range(80)]
    at_us = int(DEFAULT_START.timestamp()) * 1_000_000
    base = demo._DemoGenerator._context(tables, random.Random(0).random, 41, at_us, first, dates)
    base.update(ref="0A1B2C", ref2="00ff00ff00ff", num="12345")
    return [{**base, slot: value} for slot, pool in tables.pools.items() for value in pool]


@pytest.mark.parametrize("agent", demo._AGENTS, ids=lambda a: a.name)
def test_every_template_renders_canonical_json_with_every_pool_value(agent: Any) -> None:
    tables = demo._prepare_agent(agent)
    for ctx in template_contexts(tables):
        for tool in tables.tools:
            for template in (tool.call_data, tool.result_data, tool.stuck_data, tool.state):
                if template is not None:
                    text = template % ctx
                    assert canonical_json(json.loads(text)) == text, (tool.name, text)
        texts = (*tables.asks, *tables.follow_ups, *tables.answers)
        texts += tuple(t for tool in tables.writes for t in (tool.ask_text, tool.held_text))
        for template in texts:
            assert isinstance(json.loads(f'"{template % ctx}"'), str)


# ---------------------------------------------------------------------- confirmation before side effects

SIDE_EFFECTS = [tool for tool in demo._TOOLS.values() if tool.side_effect]
CONFIRMING = {data for tool in SIDE_EFFECTS for data in tool.yes_data}
DECLINING = {data for tool in SIDE_EFFECTS for data in tool.no_data}
HASTY_AGENTS = {a.name for a in demo._AGENTS if a.confirms < 1}  # agents whose policy skips asking


def unconfirmed(journal: Journal) -> dict[str, int]:
    """stream -> first failing version of the built-in rule with its default patterns."""
    rows = regrade(journal, ["confirmation_before_write"], write=False).findings.to_pylist()
    assert all(r["kind"] == "violation" for r in rows), rows
    return {r["stream_id"]: r["first_failing_version"] for r in rows}


def test_every_text_a_user_writes_is_read_as_intended_by_the_rule_defaults() -> None:
    """A reply to the agent's question confirms or declines as meant; a request that starts a run
    (every template with every pool value) is no confirmation, so a write straight after it fails."""
    texts: dict[str, str] = {}  # stream -> user_message data
    for tool in SIDE_EFFECTS:
        assert tool.ask and tool.yes and tool.no and tool.held, tool.name
        texts.update({f"yes/{tool.name}/{i}": d for i, d in enumerate(tool.yes_data)})
        texts.update({f"no/{tool.name}/{i}": d for i, d in enumerate(tool.no_data)})
    for agent in demo._AGENTS:
        tables = demo._prepare_agent(agent)
        for ctx in template_contexts(tables):
            for template in (*tables.asks, *tables.follow_ups):
                text = template % ctx
                texts[f"request/{agent.name}/{len(texts)}"] = f'{{"role":"user","text":"{text}"}}'
    rows = []
    for sid, data in texts.items():
        rows.append({"stream_id": sid, "event_type": "user_message", "data": json.loads(data)})
        rows.append(
            {
                "stream_id": sid,
                "event_type": "tool_called",
                "tool_name": "send_email",
                "tool_call_id": f"c-{sid}",
                "idempotency_key": f"k-{sid}",
                "data": {"args": {}},
            }
        )
    with Journal.in_memory() as journal:
        journal.append_batch(rows, stream_type="agent_run")
        assert set(unconfirmed(journal)) == {sid for sid in texts if not sid.startswith("yes/")}
    # the reject pattern hears every decline itself, not just a missing yes
    reject = re.compile(DEFAULT_REJECT.removeprefix("(?i)"), re.IGNORECASE)
    assert all(reject.search(d) for d in DECLINING)


def test_the_confirmation_rule_fails_on_a_few_percent_of_runs_where_a_user_would_look(
    demo_journal: Journal, runs: dict[str, list[dict[str, Any]]]
) -> None:
    failing = set(unconfirmed(demo_journal))
    skipped = {sid for sid, events in runs.items() if scenario(events) == "skipped_confirmation"}
    hasty = {sid for sid, events in runs.items() if events[0]["agent"] in HASTY_AGENTS}
    assert 0.01 * RUNS <= len(failing) <= 0.08 * RUNS
    assert 0.01 * RUNS <= len(skipped) <= 0.05 * RUNS
    assert skipped <= failing  # every run of the scenario has a side effect and skips the question
    assert failing <= skipped | hasty  # elsewhere only the agents whose policy skips asking fail
    assert failing & hasty - skipped  # and they do
    writers = {sid for sid, events in runs.items() if any(e["idempotency_key"] for e in events)}
    assert len(failing) < 0.1 * len(writers)  # most runs that write asked first
    # the rule's other built-in texts: each failing run's first unconfirmed write follows the
    # run's request or a decline, never a yes
    for sid, version in unconfirmed(demo_journal).items():
        before = [e for e in runs[sid][: version - 1] if e["event_type"] == "user_message"]
        assert before[-1]["data"] not in CONFIRMING, sid


def test_the_agent_asks_the_user_replies_and_a_declined_write_is_not_made(
    runs: dict[str, list[dict[str, Any]]],
) -> None:
    by_id = {e["event_id"]: e for events in runs.values() for e in events}
    declined = confirmed = asked_anyway = 0
    for sid, events in runs.items():
        replies = [e for e in events[1:] if e["event_type"] == "user_message"]
        assert len(replies) <= 1, sid  # one question per run, before its first side effect
        if not replies:
            continue
        reply = replies[0]
        question = by_id[reply["causation_id"]]  # the reply answers the agent's question
        assert question["event_type"] == "llm_response" and question["stream_id"] == sid
        assert json.loads(question["data"])["text"].endswith("?") and question["cost_usd"] > 0
        after = events[reply["version"] :]
        assert after[0]["event_type"] == "llm_request" and after[0]["causation_id"] == reply["event_id"]
        writes_after = [e for e in after if e["idempotency_key"]]
        writes_before = [e for e in events[: reply["version"]] if e["idempotency_key"]]
        assert not writes_before, sid  # asked before the first side effect
        if reply["data"] in CONFIRMING:
            confirmed += 1
            assert writes_after, sid
        else:
            assert reply["data"] in DECLINING, reply["data"]
            if scenario(events) == "skipped_confirmation":
                asked_anyway += 1
                assert writes_after, sid  # the misbehaving agent writes anyway
            else:
                declined += 1
                assert not writes_after, sid  # a well-behaved agent does not: it calls no tool
                assert {e["event_type"] for e in after} <= {"llm_request", "error", "llm_response"}, sid
                assert after[-1]["event_type"] == "llm_response", sid  # and answers
    assert confirmed > 4 * declined > 0 and asked_anyway > 0


def test_a_demo_journal_of_an_earlier_generator_is_named_with_a_way_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the generator changed (runs got a confirmation exchange), `make demo` on the demo journal
    an earlier version wrote failed with 'event_id ... is already in the journal with different
    content' and a hint to give the event a new id: no word of what to do with a demo journal."""
    from helpers import run_cli

    rows = next(generate_demo(2, seed=7)).to_pylist()
    j = Journal.create(tmp_path / "demo")
    keep = ("event_id", "event_type", "occurred_at", "stream_type")
    for first in [r for i, r in enumerate(rows) if i == 0 or rows[i - 1]["stream_id"] != r["stream_id"]]:  # both runs
        j.append(
            first["stream_id"], [{**{k: first[k] for k in keep}, "data": {"text": "what an earlier generator wrote"}}]
        )
    code, _, err = run_cli(capsys, "demo", "-j", str(j.path), "--runs", "2", "--seed", "7")
    assert code == 1
    assert f"{j.path} holds demo runs of seed 7 that an earlier version of the demo generator wrote" in err
    assert f"Hint: the demo journal is generated data: delete it (rm -rf {j.path})" in err


def test_a_demo_journal_of_another_runs_count_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same seed with another --runs spreads the runs over the days differently: the same event
    ids get other times. `journal demo --runs 5` on a demo journal written with --runs 3 blamed an
    earlier version of the demo generator; it names the --runs the journal holds and how to go on."""
    from helpers import run_cli

    path = tmp_path / "demo"
    assert run_cli(capsys, "demo", "-j", str(path), "--runs", "3", "--seed", "7")[0] == 0
    code, _, err = run_cli(capsys, "demo", "-j", str(path), "--runs", "5", "--seed", "7")
    assert code == 1
    assert "earlier version" not in err.splitlines()[0]
    assert f"{path} holds 3 demo runs of seed 7 (journal demo --runs 3)" in err
    assert "Hint: " in err and "--runs 3 --seed 7" in err and f"rm -rf {path}" in err
    assert run_cli(capsys, "demo", "-j", str(path), "--runs", "3", "--seed", "7")[0] == 0  # the way on it names
