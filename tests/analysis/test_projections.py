"""Projections: incremental catch-up equals a full rebuild; checkpoints; views in journal sql."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from helpers import at, build_budget_breach, build_tool_failure_loop, ev
from replay_fixtures import fresh_cache  # noqa: F401  (pytest fixtures)

from toolkit.analysis.agent_run import agent_run_states
from toolkit.analysis.aggregates import Event
from toolkit.analysis.plugins import load_plugins
from toolkit.analysis.projections import Emit, Projection, catch_up, get_projection
from toolkit.engines.duckdb_engine import connect
from toolkit.errors import ReplayError
from toolkit.journal import Journal
from toolkit.journal.retention import purge_before
from toolkit.journal.side_tables import projection_checkpoint, read_projection, read_table


def _sorted(t: pa.Table | None, keys: list[str]) -> list[dict[str, Any]]:
    assert t is not None
    return t.sort_by([(k, "ascending") for k in keys]).to_pylist()


def _errors_by_stream(e: Event, emit: Emit) -> None:
    if e.is_error:
        emit({"stream_id": e.stream_id, "version": e.version, "what": e.error or e.event_type})


ERRORS = Projection(
    "errors_seen",
    pa.schema([("stream_id", pa.string()), ("version", pa.int64()), ("what", pa.string())]),
    handler=_errors_by_stream,
)


def _last_event(e: Event, emit: Emit) -> None:
    emit({"stream_id": e.stream_id, "last_type": e.event_type, "version": e.version})


LAST = Projection(
    "last_event",
    pa.schema([("stream_id", pa.string()), ("last_type", pa.string()), ("version", pa.int64())]),
    handler=_last_event,
    key=("stream_id",),
)

BATCHES = [
    [("a", ev("user_message", occurred_at=at(1))), ("a", ev("tool_called", tool_name="t", tool_call_id="1"))],
    [("a", ev("tool_result", tool_name="t", tool_call_id="1", error="bad")), ("b", ev("tool_called", tool_name="u"))],
    [("b", ev("tool_result", tool_name="u")), ("a", ev("llm_response", model="m")), ("c", ev("error", {"e": 1}))],
]


@pytest.mark.parametrize("projection", ["runs", "tool_calls", ERRORS, LAST])
def test_incremental_catch_up_equals_a_full_rebuild(journal: Journal, projection: str | Projection) -> None:
    build_tool_failure_loop(journal)
    name = projection if isinstance(projection, str) else projection.name
    key = {"runs": ["stream_id"], "tool_calls": ["stream_id", "call_key"]}.get(name, ["stream_id", "version"])
    first = catch_up(journal, projection)
    assert first.rebuilt and first.events == 13
    for batch in BATCHES:
        journal.append_batch([{**e, "stream_id": sid} for sid, e in batch])
        r = catch_up(journal, projection)
        assert not r.rebuilt and r.events == len(batch)
    assert catch_up(journal, projection).reason == "up to date"
    incremental = _sorted(read_projection(journal, name), key)
    rebuilt = catch_up(journal, projection, reset=True)
    assert rebuilt.rebuilt and rebuilt.events == 13 + sum(map(len, BATCHES))
    assert incremental == _sorted(read_projection(journal, name), key)
    cp = projection_checkpoint(journal, name)
    assert cp is not None and cp.position == journal.max_position()


@pytest.mark.parametrize("projection", ["runs", "tool_calls", ERRORS, LAST])
def test_catch_up_after_a_purge_equals_a_full_rebuild(journal: Journal, projection: str | Projection) -> None:
    """The purge removed run b (the last positions) and a's first call: the rows kept them, and
    the event appended next got b's old position, at the checkpoint, so it was never read."""
    name = projection if isinstance(projection, str) else projection.name
    key = {"runs": ["stream_id"], "tool_calls": ["stream_id", "call_key"]}.get(name, ["stream_id", "version"])
    old = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
    journal.append("a", [ev("tool_called", tool_name="t", tool_call_id="1", occurred_at=old),
                         ev("tool_result", tool_name="t", tool_call_id="1", error="bad", occurred_at=old),
                         ev("tool_called", tool_name="t", tool_call_id="2", occurred_at=at(1))])
    journal.append("b", [ev("error", occurred_at=old)])
    catch_up(journal, projection)
    purge_before(journal, dt.datetime(2025, 3, 1, tzinfo=dt.UTC), now=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    journal.append("a", [ev("tool_result", tool_name="t", tool_call_id="2", error="worse", occurred_at=at(2))])
    r = catch_up(journal, projection)
    assert r.rebuilt and "purged" in r.reason
    caught_up = _sorted(read_projection(journal, name), key)
    catch_up(journal, projection, reset=True)
    assert caught_up == _sorted(read_projection(journal, name), key)
    journal.append("b", [ev("error", {"e": 2}, occurred_at=at(3))])
    assert not catch_up(journal, projection).rebuilt  # once rebuilt, caught up as before


def test_runs_projection_is_the_agent_run_state_and_a_sql_view(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    build_budget_breach(journal)
    catch_up(journal, "runs")
    catch_up(journal, "tool_calls")
    expected = agent_run_states(journal).to_arrow()
    got = read_projection(journal, "runs")
    assert got is not None and got.column("stream_id").to_pylist() == expected.column("stream_id").to_pylist()
    assert got.column("cost_usd").to_pylist() == expected.column("cost_usd").to_pylist()
    s = connect(journal)
    try:
        rows = s.query("SELECT stream_id, tool_calls FROM projection_runs ORDER BY stream_id").to_pylist()
        calls = s.query(
            "SELECT outcome, count(*) AS n, min(latency_ms) AS ms FROM projection_tool_calls GROUP BY ALL"
        ).to_pylist()
        history = s.query("SELECT projection, position FROM projection_checkpoints ORDER BY projection").to_pylist()
    finally:
        s.close()
    assert {r["stream_id"]: r["tool_calls"] for r in rows}["tool_failure_loop"] == 3
    assert calls == [{"outcome": "error", "n": 3, "ms": 0.0}]
    assert [h["projection"] for h in history] == ["runs", "tool_calls"]
    assert read_table(journal, "projection_checkpoints").num_rows == 2


def test_tool_calls_pairs_by_id_and_by_order(journal: Journal) -> None:
    journal.append(
        "r",
        [
            ev("tool_called", tool_name="a", tool_call_id="x", occurred_at=at(1, 10, 0)),
            ev("tool_called", tool_name="b", occurred_at=at(1, 10, 0)),
            ev("tool_result", tool_name="b", occurred_at=at(1, 10, 2)),
            ev("tool_result", tool_name="a", tool_call_id="x", error="no", occurred_at=at(1, 10, 1)),
            ev("tool_called", tool_name="b", occurred_at=at(1, 10, 3)),
            ev("tool_result", tool_name="c", duration_ms=12.5, occurred_at=at(1, 10, 3)),  # result only
        ],
    )
    catch_up(journal, "tool_calls")
    rows = {r["call_key"]: r for r in _sorted(read_projection(journal, "tool_calls"), ["call_key"])}
    assert (rows["x"]["outcome"], rows["x"]["latency_ms"]) == ("error", 60_000.0)
    assert (rows["b#1"]["outcome"], rows["b#1"]["latency_ms"]) == ("ok", 120_000.0)
    assert rows["b#2"]["outcome"] == "pending" and rows["b#2"]["result_version"] is None
    assert (rows["c#1"]["outcome"], rows["c#1"]["called_version"], rows["c#1"]["latency_ms"]) == ("ok", None, 12.5)


def test_changed_projection_code_rebuilds(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    catch_up(journal, ERRORS)

    def only_tools(e: Event, emit: Emit) -> None:
        if e.is_error and e.tool_name:
            emit({"stream_id": e.stream_id, "version": e.version, "what": "tool"})

    changed = Projection(ERRORS.name, ERRORS.schema, handler=only_tools)
    r = catch_up(journal, changed)
    assert r.rebuilt and "changed" in r.reason


def test_a_changed_constant_in_the_handler_file_rebuilds(journal: Journal, tmp_path: Path) -> None:
    """Rows written with FACTOR = 1 next to rows with FACTOR = 10 are what no rebuild gives."""
    source = (
        "import pyarrow as pa\n"
        "from toolkit.analysis.projections import Projection\n"
        "FACTOR = 1\n"
        "def _weigh(e, emit):\n"
        "    emit({'stream_id': e.stream_id, 'version': e.version, 'w': e.version * FACTOR})\n"
        "WEIGHTS = Projection('weights', pa.schema([('stream_id', pa.string()), ('version', pa.int64()),\n"
        "                     ('w', pa.int64())]), handler=_weigh, key=('stream_id', 'version'))\n"
    )

    def load(text: str, name: str) -> Projection:
        (tmp_path / name).write_text(text)
        load_plugins([str(tmp_path / name)])
        return get_projection("weights")

    journal.append("r", [ev("custom", occurred_at=at(1)), ev("custom", occurred_at=at(2))])
    catch_up(journal, load(source, "a.py"))
    journal.append("r", [ev("custom", occurred_at=at(3))])
    r = catch_up(journal, load(source.replace("FACTOR = 1", "FACTOR = 10"), "b.py"))
    assert r.rebuilt and "changed" in r.reason
    assert read_projection(journal, "weights").sort_by("version").column("w").to_pylist() == [10, 20, 30]


def test_bad_projections_are_refused(journal: Journal) -> None:
    with pytest.raises(Exception, match="projection name"):
        Projection("Bad Name", ERRORS.schema, handler=_errors_by_stream)
    with pytest.raises(ReplayError, match="exactly one"):
        Projection("x", ERRORS.schema)
    build_tool_failure_loop(journal)

    def wrong(e: Event, emit: Emit) -> None:
        emit({"nope": 1})

    with pytest.raises(ReplayError, match="does not fit its schema"):
        catch_up(journal, Projection("wrong", ERRORS.schema, handler=wrong))

    def crash(e: Event, emit: Emit) -> None:
        raise RuntimeError("bug")

    with pytest.raises(ReplayError, match="stream 'tool_failure_loop' version 1"):
        catch_up(journal, Projection("crash", ERRORS.schema, handler=crash))
    assert read_projection(journal, "crash") is None
    with pytest.raises(ReplayError, match="no projection"):
        catch_up(journal, "nope")


def test_two_catch_ups_at_once_add_each_row_once(journal: Journal) -> None:
    """A catch-up reads its checkpoint, folds and writes under one hold of the write lock: the
    second one waits and finds the projection up to date (before, both added the new rows)."""
    import threading

    build_tool_failure_loop(journal)
    armed, first_fold, other_done = threading.Event(), threading.Event(), threading.Event()

    def slow_errors(e: Event, emit: Emit) -> None:
        if armed.is_set() and not first_fold.is_set():
            first_fold.set()
            other_done.wait(3)  # the other catch-up ran to its end here before the fix
        _errors_by_stream(e, emit)

    slow = Projection("errors_slow", ERRORS.schema, handler=slow_errors)
    catch_up(journal, slow)
    journal.append_batch([{**e, "stream_id": sid} for sid, e in BATCHES[1] + BATCHES[2]])
    armed.set()
    reports: list[Any] = []
    a = threading.Thread(target=lambda: reports.append(catch_up(journal, slow)))
    a.start()
    assert first_fold.wait(10)
    b = threading.Thread(target=lambda: (reports.append(catch_up(Journal.open(journal.path), slow)), other_done.set()))
    b.start()
    a.join(30)
    b.join(30)
    assert sorted(r.events for r in reports) == [0, 5]
    rows = _sorted(read_projection(journal, "errors_slow"), ["stream_id", "version"])
    assert rows == _sorted(catch_up(journal, slow, reset=True) and read_projection(journal, "errors_slow"), ["stream_id", "version"])
