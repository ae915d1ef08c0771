"""Incremental catch-up of the per-stream built-ins equals a full rebuild, wherever the journal is cut.

The full rebuild of ``tool_calls`` runs the SQL query (DuckDB); the incremental catch-up pairs the
new events with the old open rows in Polars: every comparison here is also a differential test of
the two. A crash in the middle of a catch-up (an exception, a killed process) leaves the
checkpoint where it was, and the next catch-up finishes the job.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from helpers import at, ev
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from toolkit.analysis import projections
from toolkit.analysis.projections import catch_up
from toolkit.journal import Journal
from toolkit.journal.side_tables import projection_checkpoint, projection_files, read_projection

BUILT_INS = ("runs", "tool_calls")


def rows(journal: Journal, name: str) -> list[tuple[Any, ...]]:
    """The projection's rows as sortable tuples (None sorts first)."""
    table = read_projection(journal, name)
    assert table is not None
    return sorted(
        tuple((v is not None, v if not isinstance(v, list) else repr(v)) for v in r.values()) for r in table.to_pylist()
    )


def assert_equals_rebuild(journal: Journal, name: str) -> None:
    incremental = rows(journal, name)
    r = catch_up(journal, name, reset=True)
    assert r.rebuilt
    assert incremental == rows(journal, name)


# ------------------------------------------------------------------------------ property

_event = st.tuples(
    st.sampled_from(["s1", "s2"]),
    st.sampled_from(
        # user_message .. TickCompleted: for the runs state (custom leaves the status as it was;
        # TickCompleted is an assistant topic: the stream is folded in Python)
        [
            "tool_called",
            "tool_called",
            "tool_result",
            "tool_result",
            "llm_response",
            "error",
            "user_message",
            "plan_created",
            "llm_request",
            "custom",
            "TickCompleted",
        ]
    ),
    st.sampled_from(["search", "search", "", None]),  # "" and None: the tool is "unknown"
    st.sampled_from([None, None, "x", "y"]),  # no id: paired by order within the tool
    st.booleans(),  # the result failed
    st.sampled_from([None, 12.5]),  # duration_ms
    st.integers(0, 59),  # minute: results may be stamped before their calls
)


def _to_event(e: tuple[Any, ...]) -> dict[str, Any]:
    stream, kind, tool, call_id, failed, duration, minute = e
    out: dict[str, Any] = {**ev(kind, occurred_at=at(1, 10, minute)), "stream_id": stream}
    if kind.startswith("tool"):
        out.update(tool_name=tool, tool_call_id=call_id)
        if kind == "tool_result":
            out.update(duration_ms=duration, error="boom" if failed else None)
    elif kind == "llm_response":  # failed: the other model, with cache and reasoning tokens and a cost
        out.update(model="n" if failed else "m", tokens_in=3, tokens_out=2)
        if failed:
            out.update(tokens_cache_read=1, tokens_reasoning=1, cost_usd="0.25")
    elif kind == "error":  # with a call id it ends that call (a timeout, say)
        out.update(error="boom", tool_name=tool, tool_call_id=call_id)
    return out


_SEARCH = ("s1", "tool_called", "search", None, False, None, 0)
_FOUND = ("s1", "tool_result", "search", None, False, None, 1)
_FAILED = ("s1", "error", "search", None, False, None, 2)
_CALL_X = ("s1", "tool_called", "search", "x", False, None, 0)
_TIMEOUT_X = ("s1", "error", None, "x", False, None, 1)
_RESULT_X = ("s1", "tool_result", "search", "x", False, 12.5, 2)
_TICK = ("s1", "TickCompleted", None, None, False, None, 3)
_ANSWER = ("s1", "llm_response", None, None, False, None, 4)
_CUSTOM = ("s1", "custom", None, None, False, None, 5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(_event, min_size=2, max_size=28), cuts=st.sets(st.integers(1, 27), min_size=1, max_size=5))
@example(events=[_SEARCH, _FOUND, _SEARCH, _FOUND], cuts={2})  # k goes on after the complete pairs
@example(events=[_SEARCH, _SEARCH, _FOUND, _FOUND, _FOUND], cuts={1, 3})  # an open call, then a surplus result
@example(events=[_FOUND, _SEARCH, _FOUND], cuts={1})  # runs: a tool with results only, then calls
@example(events=[_FAILED, _FAILED, _SEARCH, _FAILED, _FAILED], cuts={2, 4})  # runs: trailing errors go on
@example(events=[_SEARCH, _TICK, _SEARCH, _SEARCH], cuts={1, 2})  # runs: a stream becomes folded in Python
@example(events=[_ANSWER, _CUSTOM], cuts={1})  # runs: the status stays "answered"
@example(events=[_CALL_X, _TIMEOUT_X, _CALL_X, _RESULT_X], cuts={1, 2, 3})  # a timeout, a retry with its id
@example(events=[_TIMEOUT_X, _RESULT_X, _CALL_X], cuts={1, 2})  # ends without a call, then the call
def test_incremental_equals_rebuild_at_random_cuts(
    tmp_path_factory: pytest.TempPathFactory, events: list[Any], cuts: set[int]
) -> None:
    journal = Journal.create(tmp_path_factory.mktemp("cut") / "j")
    try:
        bounds = [0, *sorted(c for c in cuts if c < len(events)), len(events)]
        for lo, hi in itertools.pairwise(bounds):
            journal.append_batch([_to_event(e) for e in events[lo:hi]])
            for name in BUILT_INS:
                catch_up(journal, name)
        for name in BUILT_INS:
            cp = projection_checkpoint(journal, name)
            assert cp is not None and cp.position == journal.max_position()
            assert_equals_rebuild(journal, name)
    finally:
        journal.close()


# ------------------------------------------------------------------------------ pairing


def test_a_result_in_a_later_batch_completes_its_open_call(journal: Journal) -> None:
    journal.append_batch(
        [
            {**ev("tool_called", tool_name="a", tool_call_id="x", occurred_at=at(1, 10, 0)), "stream_id": "r"},
            {**ev("tool_called", tool_name="b", occurred_at=at(1, 10, 0)), "stream_id": "r"},
            {**ev("tool_result", tool_name="c", occurred_at=at(1, 10, 0)), "stream_id": "r"},  # orphan
            {**ev("tool_called", tool_name="a", tool_call_id="w", occurred_at=at(1, 10, 0)), "stream_id": "done"},
            {**ev("tool_result", tool_name="a", tool_call_id="w", occurred_at=at(1, 10, 1)), "stream_id": "done"},
        ]
    )
    catch_up(journal, "tool_calls")
    before = projection_files(journal, "tool_calls")
    journal.append_batch(
        [
            {**ev("tool_result", tool_name="a", tool_call_id="x", occurred_at=at(1, 10, 2)), "stream_id": "r"},
            {**ev("tool_result", tool_name="a", tool_call_id="x", occurred_at=at(1, 10, 3)), "stream_id": "r"},  # dup
            {**ev("tool_result", tool_name="b", error="no", occurred_at=at(1, 10, 5)), "stream_id": "r"},
            {**ev("tool_called", tool_name="c", occurred_at=at(1, 10, 6)), "stream_id": "r"},  # pairs the orphan
            {**ev("tool_called", tool_name="n", tool_call_id="v", occurred_at=at(1, 11, 0)), "stream_id": "new"},
        ]
    )
    r = catch_up(journal, "tool_calls")
    assert not r.rebuilt and (r.events, r.streams) == (5, 2)
    got = {
        (x["stream_id"], x["call_key"], x["called_version"]): x
        for x in read_projection(journal, "tool_calls").to_pylist()
    }
    x = got[("r", "x", 1)]
    assert (x["result_version"], x["outcome"], x["latency_ms"]) == (4, "ok", 120_000.0)
    dup = got[("r", "x", None)]
    assert (dup["result_version"], dup["outcome"]) == (5, "ok")
    assert (got[("r", "b#1", 2)]["outcome"], got[("r", "b#1", 2)]["error"]) == ("error", "no")
    c = got[("r", "c#1", 7)]
    assert (c["result_version"], c["latency_ms"]) == (3, -360_000.0)  # its result came first
    assert got[("new", "v", 1)]["outcome"] == "pending"
    assert len(got) == 6
    # the file holding stream "r" was replaced; no row of it was lost or doubled
    after = projection_files(journal, "tool_calls")
    assert {f.path for f in before}.isdisjoint({f.path for f in after})
    assert_equals_rebuild(journal, "tool_calls")


# Hand-made journals named after the pattern they encode: one stream each, its events, and the
# rows expected by (call_key, called_version): (result_version, outcome, latency_ms, error, tool_name).
_Expected = dict[tuple[str, int | None], tuple[int | None, str, float | None, str | None, str]]
_TIMEOUT = "timeout after 30000 ms"


def timeout_then_retry() -> tuple[list[dict[str, Any]], _Expected]:
    """A call times out (an error event naming its id) and is retried with a new id; another times
    out and its retry reuses the id. An error naming no call id (a rate limit) ends no call."""
    events = [
        ev("tool_called", tool_name="search", tool_call_id="c1", occurred_at=at(1, 10, 0)),
        ev("error", tool_name="search", tool_call_id="c1", error=_TIMEOUT, occurred_at=at(1, 10, 1)),
        ev("tool_called", tool_name="search", tool_call_id="c2", occurred_at=at(1, 10, 2)),
        ev("tool_result", tool_name="search", tool_call_id="c2", duration_ms=900.0, occurred_at=at(1, 10, 3)),
        ev("tool_called", tool_name="fetch", tool_call_id="f1", occurred_at=at(1, 10, 4)),
        ev("error", tool_call_id="f1", error=_TIMEOUT, occurred_at=at(1, 10, 6)),  # names no tool
        ev("tool_called", tool_name="fetch", tool_call_id="f1", occurred_at=at(1, 10, 7)),
        ev("error", error="429 Too Many Requests", occurred_at=at(1, 10, 8)),
        ev("tool_result", tool_name="fetch", tool_call_id="f1", duration_ms=400.0, occurred_at=at(1, 10, 9)),
    ]
    return events, {
        ("c1", 1): (2, "error", 60_000.0, _TIMEOUT, "search"),
        ("c2", 3): (4, "ok", 900.0, None, "search"),
        ("f1", 5): (6, "error", 120_000.0, _TIMEOUT, "fetch"),
        ("f1", 7): (9, "ok", 400.0, None, "fetch"),
    }


def result_naming_an_unknown_call() -> tuple[list[dict[str, Any]], _Expected]:
    """A result and an error naming ids no call has: rows without a call; the call stays open."""
    events = [
        ev("tool_called", tool_name="search", tool_call_id="s1", occurred_at=at(1, 10, 0)),
        ev("tool_result", tool_name="search", tool_call_id="s9", duration_ms=5.0, occurred_at=at(1, 10, 1)),
        ev("error", tool_name="search", tool_call_id="s8", error=_TIMEOUT, occurred_at=at(1, 10, 2)),
    ]
    return events, {
        ("s1", 1): (None, "pending", None, None, "search"),
        ("s9", None): (2, "ok", 5.0, None, "search"),
        ("s8", None): (3, "error", None, _TIMEOUT, "search"),
    }


def two_calls_in_flight_of_one_tool() -> tuple[list[dict[str, Any]], _Expected]:
    """Two calls of one tool in flight: the later finishes first, the earlier times out; a call of
    the tool without id is never ended by a result or error naming another call."""
    events = [
        ev("tool_called", tool_name="search", tool_call_id="a", occurred_at=at(1, 10, 0)),
        ev("tool_called", tool_name="search", tool_call_id="b", occurred_at=at(1, 10, 1)),
        ev("tool_called", tool_name="search", occurred_at=at(1, 10, 2)),
        ev("tool_result", tool_name="search", tool_call_id="b", duration_ms=20.0, occurred_at=at(1, 10, 3)),
        ev("error", tool_name="search", tool_call_id="a", error=_TIMEOUT, occurred_at=at(1, 10, 5)),
    ]
    return events, {
        ("a", 1): (5, "error", 300_000.0, _TIMEOUT, "search"),
        ("b", 2): (4, "ok", 20.0, None, "search"),
        ("search#1", 3): (None, "pending", None, None, "search"),
    }


def _tool_call_rows(journal: Journal, stream: str) -> _Expected:
    table = read_projection(journal, "tool_calls")
    assert table is not None
    return {
        (r["call_key"], r["called_version"]): (
            r["result_version"],
            r["outcome"],
            r["latency_ms"],
            r["error"],
            r["tool_name"],
        )
        for r in table.to_pylist()
        if r["stream_id"] == stream
    }


@pytest.mark.parametrize(
    "pattern", [timeout_then_retry, result_naming_an_unknown_call, two_calls_in_flight_of_one_tool]
)
def test_tool_calls_pair_each_call_with_the_event_naming_it(journal: Journal, pattern: Any) -> None:
    """Built at once (the SQL) and caught up one event at a time (Polars), the rows are the same."""
    stream = pattern.__name__
    events, expected = pattern()
    journal.append(stream, events)
    catch_up(journal, "tool_calls")
    assert _tool_call_rows(journal, stream) == expected
    caught_up = Journal.create(journal.path.parent / "one_at_a_time")
    try:
        for e in events:
            caught_up.append(stream, [e])
            r = catch_up(caught_up, "tool_calls")
        assert not r.rebuilt and r.from_position == len(events) - 1
        assert _tool_call_rows(caught_up, stream) == expected
        assert_equals_rebuild(caught_up, "tool_calls")
    finally:
        caught_up.close()


def test_new_streams_only_append_a_file(journal: Journal) -> None:
    journal.append_batch([{**ev("tool_called", tool_name="a"), "stream_id": "old"}])
    for name in BUILT_INS:
        catch_up(journal, name)
    before = {name: {f.path for f in projection_files(journal, name)} for name in BUILT_INS}
    journal.append_batch([{**ev("tool_result", tool_name="a"), "stream_id": "fresh"}])
    for name in BUILT_INS:
        r = catch_up(journal, name)
        assert (r.events, r.streams) == (1, 1)
        after = {f.path for f in projection_files(journal, name)}
        assert before[name] < after and len(after) == len(before[name]) + 1
        assert_equals_rebuild(journal, name)


def test_many_catch_ups_keep_few_files(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(projections, "MAX_FILES", 4)
    journal.append_batch([{**ev("tool_called", tool_name="a", tool_call_id="0"), "stream_id": "s0"}])
    catch_up(journal, "tool_calls")
    for i in range(1, 9):
        journal.append_batch([{**ev("tool_called", tool_name="a", tool_call_id=str(i)), "stream_id": f"s{i}"}])
        catch_up(journal, "tool_calls")
        assert len(projection_files(journal, "tool_calls")) <= 4
    assert len(rows(journal, "tool_calls")) == 9
    assert_equals_rebuild(journal, "tool_calls")


# ------------------------------------------------------------------------------ crashes


def _two_batches(journal: Journal) -> None:
    journal.append_batch(
        [
            {**ev("tool_called", tool_name="a", tool_call_id="x"), "stream_id": "r"},
            {**ev("llm_response", model="m", tokens_in=5), "stream_id": "r"},
        ]
    )
    for name in BUILT_INS:
        catch_up(journal, name)
    journal.append_batch(
        [
            {**ev("tool_result", tool_name="a", tool_call_id="x"), "stream_id": "r"},
            {**ev("tool_called", tool_name="b"), "stream_id": "q"},
        ]
    )


@pytest.mark.parametrize("name", BUILT_INS)
def test_an_exception_mid_catch_up_leaves_checkpoint_and_rows(
    journal: Journal, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    _two_batches(journal)
    cp = projection_checkpoint(journal, name)
    before = rows(journal, name)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    # the new file is written, then the commit fails
    monkeypatch.setattr("deltalake.DeltaTable.create_write_transaction", fail)
    with pytest.raises(OSError, match="disk full"):
        catch_up(journal, name)
    monkeypatch.undo()
    assert projection_checkpoint(journal, name) == cp
    assert rows(journal, name) == before
    r = catch_up(journal, name)
    assert not r.rebuilt and r.events == 2
    assert_equals_rebuild(journal, name)


_KILLED = textwrap.dedent(
    """
    import os, signal, sys
    import deltalake
    from toolkit.analysis.projections import catch_up
    from toolkit.journal import Journal

    def die(*args, **kwargs):  # the new file is on disk; the commit never happens
        os.kill(os.getpid(), signal.SIGKILL)

    deltalake.DeltaTable.create_write_transaction = die
    catch_up(Journal.open(sys.argv[1]), sys.argv[2])
    """
)


@pytest.mark.parametrize("name", BUILT_INS)
def test_a_killed_catch_up_leaves_checkpoint_and_rows(journal: Journal, name: str) -> None:
    _two_batches(journal)
    cp = projection_checkpoint(journal, name)
    before = rows(journal, name)
    files_before = set(Path(journal.path, f"projection_{name}").glob("*.parquet"))
    done = subprocess.run([sys.executable, "-c", _KILLED, str(journal.path), name], capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()
    assert (
        len(set(Path(journal.path, f"projection_{name}").glob("*.parquet")) - files_before) == 1
    )  # written, not committed
    reopened = Journal.open(journal.path)
    assert projection_checkpoint(reopened, name) == cp
    assert rows(reopened, name) == before
    r = catch_up(reopened, name)
    assert not r.rebuilt and r.events == 2
    assert_equals_rebuild(reopened, name)
    reopened.close()


def test_rows_of_the_read_new_events(journal: Journal) -> None:
    journal.append_batch([{**ev("user_message"), "stream_id": "a"}, {**ev("user_message"), "stream_id": "b"}])
    start = journal.max_position()
    journal.append_batch([{**ev("user_message"), "stream_id": "a"}])
    got = projections.read_new_events(journal, start, journal.max_position(), ["event_type"])
    assert got.events.select(["stream_id", "version"]).to_pylist() == [{"stream_id": "a", "version": 2}]
    assert isinstance(got.events, pa.Table) and len(got.files) == 1
