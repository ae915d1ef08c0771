"""--engine dask: the same findings and rollups as one machine; all or nothing when workers die."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

pytest.importorskip("distributed")

from toolkit.analysis.distributed import dask_runner, rollup_dask
from toolkit.analysis.regrade import regrade
from toolkit.analysis.rollup import rollup
from toolkit.analysis.verdicts import Selection
from toolkit.cli.main import cli
from toolkit.engines.dask_engine import ClusterSpec, stream_shards
from toolkit.errors import DistributedError
from toolkit.journal import Journal
from toolkit.journal.side_tables import read_table

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "demo-journal"
STABLE = ["finding_id", "kind", "rule", "rule_fingerprint", "params", "stream_id", "first_failing_version",
          "position", "occurred_at", "event_id", "message", "evidence", "failing_events", "inputs_sha256"]

FEW_EVENTS = """
from toolkit.analysis.rules import python_rule

@python_rule('few_events', 'At most n events.', params='n BIGINT = 30')
def few_events(state, p):
    return state.events <= p['n'] or f"{state.events} events"
"""

DIES = """
import os
from toolkit.analysis.rules import python_rule

@python_rule('dies', 'Kills its worker process the first time (or every time) it runs.', params='n BIGINT = 30')
def dies(state, p):
    marker = os.environ['TOOLKIT_TEST_KILL_MARKER']
    if os.environ.get('TOOLKIT_TEST_KILL_MODE') == 'always' or not os.path.exists(marker):
        open(marker, 'w').close()
        os._exit(1)
    return state.events <= p['n'] or f"{state.events} events"
"""


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """One 2-worker LocalCluster for the parity tests, reached by address (the --scheduler path)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=50
    ) as cluster:
        yield str(cluster.scheduler_address)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Journal]:
    shutil.copytree(FIXTURE, tmp_path / "j")
    j = Journal.open(tmp_path / "j")
    yield j
    j.close()


def test_shards_are_whole_streams_in_order() -> None:
    ids = [f"s{i:03d}" for i in range(10)]
    shards = stream_shards(list(reversed(ids)), 3)
    assert [chunk for _, _, chunk in shards] == [ids[0:4], ids[4:8], ids[8:10]]
    assert all(first == chunk[0] and last == chunk[-1] for first, last, chunk in shards)


def test_regrade_on_dask_records_the_same_findings(demo: Journal, scheduler: str, tmp_path: Path) -> None:
    rules_py = tmp_path / "rules.py"
    rules_py.write_text(FEW_EVENTS, encoding="utf-8")  # a user rule: shipped to workers by value
    names = ["all"]
    local = regrade(demo, names, write=False)
    done: list[tuple[int, int]] = []
    spec = ClusterSpec(scheduler=scheduler)
    dask = regrade(demo, names, runner=dask_runner(spec, progress=lambda d, t: done.append((d, t))))
    assert dask.findings.num_rows > 0 and dask.written == dask.findings.num_rows
    assert local.findings.select(STABLE).to_pylist() == dask.findings.select(STABLE).to_pylist()
    assert done and done[-1][0] == done[-1][1] > 2  # progress per task, several shards
    recorded = read_table(demo, "findings")
    assert set(recorded.column("batch_id").to_pylist()) == {dask.batch_id}

    user = ["few_events", "budget_state"]
    one = regrade(demo, user, rule_files=[str(rules_py)], write=False, workers=1)
    many = regrade(demo, user, rule_files=[str(rules_py)], write=False, runner=dask_runner(spec))
    assert {r["rule"] for r in many.findings.to_pylist()} == {"few_events", "budget_state"}
    assert one.findings.select(STABLE).to_pylist() == many.findings.select(STABLE).to_pylist()


KEY_ONCE = """
import polars as pl
from toolkit.analysis.rules import polars_rule

@polars_rule('key_once_in_journal', 'No idempotency key is used twice anywhere in the journal.',
             columns=('idempotency_key',))
def key_once_in_journal(events, p):
    return pl.col('idempotency_key').is_null() | ~pl.col('idempotency_key').is_duplicated()
"""


def test_a_polars_rule_looking_across_shards_sees_every_selected_stream(
    scheduler: str, tmp_path: Path
) -> None:
    """A Polars expression without .over("stream_id") sees every selected event on one machine; the
    streams that share a key (the first and the last of eight) fall in different shards on Dask."""
    j = Journal.create(tmp_path / "j")
    for i in range(8):
        key = "K-1" if i in (0, 7) else None
        j.append(f"s{i}", [{"event_type": "tool_called", "tool_name": "send", "tool_call_id": f"c{i}",
                            "idempotency_key": key, "data": {}, "occurred_at": f"2026-11-0{1 + i}T10:00:00Z"}])
    assert stream_shards([f"s{i}" for i in range(8)], 4)[0] == ("s0", "s1", ["s0", "s1"])  # s7: the last shard
    rules_py = tmp_path / "key_once.py"
    rules_py.write_text(KEY_ONCE, encoding="utf-8")
    names, files = ["key_once_in_journal", "exactly_once"], [str(rules_py)]
    local = regrade(j, names, rule_files=files, write=False)
    dask = regrade(j, names, rule_files=files, write=False, runner=dask_runner(ClusterSpec(scheduler=scheduler)))
    assert [(r["rule"], r["stream_id"]) for r in local.findings.to_pylist()] == [
        ("exactly_once", "s7"), ("key_once_in_journal", "s0"), ("key_once_in_journal", "s7")]
    assert local.findings.select(STABLE).to_pylist() == dask.findings.select(STABLE).to_pylist()
    j.close()


@pytest.mark.parametrize(("by", "cost"), [(["model", "day"], "recorded"), (["agent", "week"], "repriced"), (["stream"], "recorded")])
def test_rollup_on_dask_equals_one_machine(demo: Journal, scheduler: str, by: list[str], cost: str) -> None:
    local = rollup(demo, by, cost=cost)  # type: ignore[arg-type]
    dask = rollup_dask(demo, by, cost=cost, spec=ClusterSpec(scheduler=scheduler))  # type: ignore[arg-type]
    assert local.num_rows > 1
    assert dask.schema == local.schema
    assert dask.to_pylist() == local.to_pylist()


def test_cli_engine_dask(demo: Journal, scheduler: str) -> None:
    runner = CliRunner()
    args = ["-j", str(demo.path), "--format", "csv"]
    one = runner.invoke(cli, ["rollup", "--by", "model,day", *args])
    two = runner.invoke(cli, ["rollup", "--by", "model,day", "--engine", "dask", "--scheduler", scheduler, *args])
    assert one.exit_code == two.exit_code == 0, two.output
    assert one.stdout == two.stdout
    r = runner.invoke(cli, ["regrade", "budget", "--dry-run", "--engine", "dask", "--scheduler", scheduler, *args])
    assert r.exit_code == 3, r.output
    bad = runner.invoke(cli, ["rollup", "top-runs", "--engine", "dask", "--scheduler", scheduler, *args])
    assert bad.exit_code == 2 and "usage rollup" in bad.output


def test_a_worker_killed_mid_regrade_is_retried(demo: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules_py = tmp_path / "dies.py"
    rules_py.write_text(DIES, encoding="utf-8")
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("TOOLKIT_TEST_KILL_MARKER", str(marker))
    result = regrade(demo, ["dies"], rule_files=[str(rules_py)], runner=dask_runner(ClusterSpec()))
    assert marker.exists()  # a worker did die
    local = regrade(demo, ["dies"], rule_files=[str(rules_py)], write=False, workers=1)
    assert local.findings.num_rows > 0
    assert local.findings.select(STABLE).to_pylist() == result.findings.select(STABLE).to_pylist()
    assert read_table(demo, "findings").num_rows == result.written


def test_workers_dying_every_time_fail_the_run_with_nothing_recorded(
    demo: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dask

    rules_py = tmp_path / "dies.py"
    rules_py.write_text(DIES, encoding="utf-8")
    monkeypatch.setenv("TOOLKIT_TEST_KILL_MARKER", str(tmp_path / "m"))
    monkeypatch.setenv("TOOLKIT_TEST_KILL_MODE", "always")
    before = read_table(demo, "findings").num_rows
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with pytest.raises(DistributedError, match="nothing was recorded"):
            regrade(demo, ["dies", "budget"], rule_files=[str(rules_py)], runner=dask_runner(ClusterSpec()))
    assert read_table(demo, "findings").num_rows == before == 0
    assert isinstance(read_table(demo, "findings"), pa.Table)


def test_unreachable_scheduler_is_a_clear_error(demo: Journal) -> None:
    from toolkit.engines.dask_engine import map_shards

    with pytest.raises(DistributedError, match=r"tcp://127\.0\.0\.1:9"):
        map_shards(abs, [(1,)], ClusterSpec(scheduler="tcp://127.0.0.1:9"))


@pytest.mark.parametrize("listener", ["silent", "http", "malformed"])
def test_a_scheduler_address_that_is_no_dask_scheduler_is_a_clear_error(
    listener: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--scheduler pointing at a listener that is no Dask scheduler (the dashboard's HTTP port, any
    other service) or a malformed address fails within seconds, naming the address; it used to wait
    for a handshake forever, or read an HTTP answer as a frame length (MemoryError), or raise a bare
    ValueError with a traceback."""
    import socket
    import threading

    from toolkit.engines import dask_engine

    monkeypatch.setattr(dask_engine, "CONNECT_SECONDS", 2, raising=False)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            accepted.append(conn)
            if listener == "http":
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    address = f"http://127.0.0.1:{port}" if listener == "malformed" else f"tcp://127.0.0.1:{port}"
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            dask_engine.map_shards(abs, [(1,)], ClusterSpec(scheduler=address))
            outcome.append(None)
        except BaseException as e:  # the test inspects whatever was raised
            outcome.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(30)
    server.close()
    for conn in accepted:
        conn.close()
    assert outcome, f"--scheduler {address} ({listener}) still waiting after 30 s"
    assert isinstance(outcome[0], DistributedError), repr(outcome[0])
    assert address in str(outcome[0]) and "Hint: check --scheduler" in str(outcome[0])


def test_sql_rules_on_a_worker_run_within_its_memory_share(demo: Journal, scheduler: str) -> None:
    """A worker's DuckDB session spills beyond half the worker's memory limit (not DuckDB's default
    of 80 % of the machine, which killed the journal-wide SQL task of a 100M-event journal)."""
    from distributed import Client

    from toolkit.engines.dask_engine import worker_memory_limit

    assert worker_memory_limit() is None  # not on a worker

    def on_worker(uri: str) -> tuple[int | None, str, bool]:
        from toolkit.engines import duckdb_engine

        limit = worker_memory_limit()
        session = duckdb_engine.connect(Journal.open(uri), memory_limit_bytes=limit // 2 if limit else None)
        setting = session.query("SELECT current_setting('memory_limit') AS m").column("m")[0].as_py()
        spill = session.spill_dir
        session.close()
        return limit, setting, spill is not None and not Path(spill).exists()  # removed (or never made)

    with Client(scheduler) as c:
        limit, setting, removed = c.submit(on_worker, str(demo.path), pure=False).result()
    assert limit and limit > 0
    value, unit = setting.split()
    assert unit == "GiB" and abs(float(value) - limit / 2 / 2**30) <= 0.1, setting  # half the worker's share
    assert removed  # the spill directory goes with the session


def _priced_runs(path: Path) -> Journal:
    """Eight runs s0..s7 of two LLM calls each (with cost), one day apart."""
    j = Journal.create(path)
    for i in range(8):
        j.append(f"s{i}", [
            {"event_type": "user_message", "agent": "a", "data": {"text": "hi"}, "occurred_at": f"2026-11-0{1 + i}T10:00:00Z"},
            {"event_type": "llm_response", "model": "m", "tokens_in": 10, "tokens_out": 5, "cost_usd": "0.5",
             "data": {"text": "yo"}, "occurred_at": f"2026-11-0{1 + i}T10:00:01Z"},
        ])
    return j


class AppendWhenTasksArrive:
    """A scheduler plugin that appends to the journal when the first tasks reach the scheduler:
    after the driver planned the run, before any task has started."""

    def __init__(self, path: Path) -> None:
        self.path, self.appended, self.errors = path, 0, []  # type: ignore[var-annotated]

    def update_graph(self, scheduler: object, **_: object) -> None:
        if self.appended:
            return
        try:
            with Journal.open(self.path) as j:  # a later event of s5 (over budget: 3 events) and a new run s5a
                late = {"event_type": "llm_response", "model": "m", "tokens_in": 7, "tokens_out": 1, "cost_usd": "2",
                        "data": {"text": "more"}, "occurred_at": "2026-11-06T11:00:00Z"}
                self.appended += j.append("s5", [late]).appended
                self.appended += j.append("s5a", [{**late, "agent": "a"}]).appended
        except Exception as e:  # the scheduler only logs a plugin's error: keep it for the test
            self.errors.append(e)


def test_dask_tasks_read_the_version_the_run_was_planned_at(tmp_path: Path) -> None:
    """An append committed between planning and the tasks is in no shard: re-grade and rollup equal
    the results at the planned version (tasks used to open the journal's current version, so the
    shard holding s5 counted its new event and s5a, some shards did not)."""
    from distributed import LocalCluster, SchedulerPlugin

    j = _priced_runs(tmp_path / "j")
    rules_py = tmp_path / "rules.py"
    rules_py.write_text(FEW_EVENTS, encoding="utf-8")
    names, files, params = ["few_events", "budget"], [str(rules_py)], {"n": 2, "max_cost_usd": 1.0}
    runs = {  # (at the planned version, on Dask with an append landing after planning)
        "regrade": lambda spec: regrade(j, names, rule_files=files, params=params, write=False, runner=spec and dask_runner(spec)),
        "rollup": lambda spec: rollup_dask(j, ["model", "day"], spec=spec) if spec else rollup(j, ["model", "day"]),
    }
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=50) as cluster:
        spec = ClusterSpec(scheduler=str(cluster.scheduler_address))
        for name, run in runs.items():
            planned = run(None)
            plugin = type("Plugin", (AppendWhenTasksArrive, SchedulerPlugin), {})(tmp_path / "j")
            cluster.scheduler.add_plugin(plugin, name="append-when-tasks-arrive")
            on_dask = run(spec)
            cluster.scheduler.remove_plugin("append-when-tasks-arrive")
            assert plugin.errors == [] and plugin.appended == 2, name  # the appends did land mid-run
            after = run(None)  # at the journal's version now, the appends are seen
            if name == "regrade":
                assert planned.findings.num_rows == 0 < after.findings.num_rows
                assert on_dask.findings.select(STABLE).to_pylist() == planned.findings.select(STABLE).to_pylist()
            else:
                assert on_dask.to_pylist() == planned.to_pylist() != after.to_pylist()
    j.close()


def test_a_polars_rule_looking_across_streams_judges_a_selection_in_the_whole_journal(
    scheduler: str, tmp_path: Path
) -> None:
    """--stream s0 --engine dask: s0 shares its key with s7, which is not selected; s0 fails as in the
    full run (the task judged the selected events only, and s0 passed)."""
    j = Journal.create(tmp_path / "j")
    for i in range(8):
        j.append(f"s{i}", [{"event_type": "tool_called", "tool_name": "send", "tool_call_id": f"c{i}", "data": {},
                            "idempotency_key": "K-1" if i in (0, 7) else None, "occurred_at": f"2026-11-0{1 + i}T10:00:00Z"}])
    rules_py = tmp_path / "key_once.py"
    rules_py.write_text(KEY_ONCE, encoding="utf-8")
    names, files, spec = ["key_once_in_journal"], [str(rules_py)], ClusterSpec(scheduler=scheduler)
    full = regrade(j, names, rule_files=files, write=False, runner=dask_runner(spec)).findings
    picked = regrade(j, names, rule_files=files, write=False, runner=dask_runner(spec), selection=Selection(streams=("s0", "s3")))
    assert full.column("stream_id").to_pylist() == ["s0", "s7"]
    assert picked.findings.select(STABLE[:-1]).to_pylist() == full.select(STABLE[:-1]).slice(0, 1).to_pylist()
    j.close()


def test_a_sql_rule_past_its_time_limit_on_a_worker_is_a_rule_error(
    demo: Journal, scheduler: str, tmp_path: Path
) -> None:
    """--timeout reached no worker: a runaway SQL rule ran on its Dask worker until killed. Each of its
    queries is now stopped after the limit there too, and the rule is a finding of kind error."""
    import time

    rule = tmp_path / "runaway.sql"
    rule.write_text(
        "-- summary: every event has partners (events joined with themselves four times)\n"
        "SELECT a.stream_id, a.version, count(*) > 0 AS holds\n"
        "FROM events AS a, events AS b, events AS c, events AS d\n"
        "WHERE hash(a.event_id, b.event_id, c.event_id, d.event_id) % 1000 = 0\n"
        "GROUP BY ALL\n",
        encoding="utf-8",
    )
    started = time.monotonic()
    runner = dask_runner(ClusterSpec(scheduler=scheduler), time_limit_s=1)
    result = regrade(demo, ["runaway"], rule_files=[str(rule)], write=False, runner=runner)
    assert time.monotonic() - started < 30
    (finding,) = result.findings.to_pylist()
    assert finding["kind"] == "error"
    assert "QueryTimeoutError: the query ran past its time limit of 1 s" in finding["message"]
