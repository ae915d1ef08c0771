"""Ctrl-C during one of the toolkit's own queries (``Session.query`` on the main thread, unwatched):
DuckDB looks at signals only when a query ends, so Ctrl-C waited for the whole query. A real SIGINT
now stops it at once; the session answers as before afterwards, and a wakeup pipe the program set
itself (an event loop's) is left as it was."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from toolkit.engines.duckdb_engine import Session, connect
from toolkit.journal import Journal

# 2,000 events joined with themselves three times: 8 * 10^9 rows to hash, minutes on these machines
RUNAWAY = (
    "SELECT count(*) AS n FROM events AS a, events AS b, events AS c "
    "WHERE hash(a.event_id, b.event_id, c.event_id) % 1000 = 0"
)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    journal = Journal.create(tmp_path_factory.mktemp("interrupt") / "j")
    journal.append("run-1", [{"event_type": "user_message", "data": {"i": i}} for i in range(2_000)])
    s = connect(journal)
    yield s
    s.close()
    journal.close()


def test_sigint_stops_an_internal_query_at_once(session: Session) -> None:
    assert threading.current_thread() is threading.main_thread()  # where Ctrl-C lands (pytest-xdist too)
    ctrl_c = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    rescue = threading.Timer(20.0, session.con.interrupt)  # before the fix: do not wait minutes for the query
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        ctrl_c.start()
        rescue.start()
        try:
            session.query(RUNAWAY)
        finally:
            rescue.cancel()
            ctrl_c.join()  # the SIGINT lands inside this block, whenever the query ends
    elapsed = time.monotonic() - started
    assert elapsed < 4, f"the query stopped {elapsed - 1:.1f} s after Ctrl-C"
    assert session.query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 2_000}]
    assert signal.set_wakeup_fd(-1) == -1  # the pipe is set only while a query runs


def test_a_wakeup_pipe_of_the_program_is_left_alone(session: Session) -> None:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    try:
        signal.set_wakeup_fd(theirs.fileno())
        try:
            assert session.query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 2_000}]
        finally:
            assert signal.set_wakeup_fd(-1) == theirs.fileno()
    finally:
        ours.close()
        theirs.close()
