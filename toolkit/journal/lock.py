"""The journal's write lock: one writer at a time per journal directory.

Delta appends by two writers never conflict with each other, so Delta alone cannot keep
(stream_id, version) and position unique; every write (append, compact, vacuum) takes this
``flock`` for its read-heads → write → commit section. The kernel drops the lock when the
process dies, so a SIGKILL never leaves a stale lock. Multi-host writers need one writer
per journal or an external lock (see README, "Writers").

On object storage (an ``s3://`` journal) there is no flock: the lock is an object
``PREFIX/.write.lock`` created with a conditional PUT (``If-None-Match: *``), so exactly one of
several writers on any number of hosts creates it. It holds the owner and a lease that a
heartbeat thread renews while the writer works; a lock whose lease ran out (its writer died)
is deleted by the next writer. Release deletes it only while it is still the owner's. This is
the locking that makes deltalake's plain-PUT commits safe on S3 (see ``location.py``).

A thread that asks again for a lock it holds (an ``on_commit`` callback or the batch generator
of ``append_batches`` writing to the journal being appended to) would wait for itself until the
timeout: it gets ``LockReentryError`` at once. Other threads of the process wait as other
processes do. A read → plan → write operation (snapshots, projection catch-up, quarantine rows)
holds the lock over the whole of it with ``write_lock(..., nested=True)``, so nothing is written
between what it read and what it writes; the writes it makes itself then pass through (each
still refusing its own callbacks' writes).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from toolkit.errors import LockReentryError, LockTimeoutError
from toolkit.journal.location import S3Location, filesystem

LOCK_FILE = ".write.lock"
LEASE_S = 60.0  # a remote lock not renewed for this long belongs to a dead writer


_HELD: dict[str, tuple[int, bool]] = {}  # lock path -> (the thread holding it, whether it allows nesting)
_HELD_GUARD = threading.Lock()


@contextmanager
def write_lock(journal_dir: Path | S3Location, timeout_s: float, *, nested: bool = False) -> Iterator[None]:
    """Hold the journal's write lock. ``nested``: the holder's own writes inside take it again
    without waiting (a read → plan → write operation held whole, see the module docstring)."""
    key = (
        str(journal_dir / LOCK_FILE)
        if isinstance(journal_dir, S3Location)
        else os.path.realpath(journal_dir / LOCK_FILE)
    )
    me = threading.get_ident()
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None and held[0] == me:
            if not held[1]:
                raise LockReentryError(
                    f"{journal_dir}: this thread already holds the journal's write lock",
                    hint="a callback or batch generator of an append must not write to the journal being "
                    "appended to; write after the append returns",
                    path=key,
                )
            _HELD[key] = (me, nested)
    if held is not None and held[0] == me:
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD[key] = held
        return
    with _local_or_remote(journal_dir, timeout_s):
        with _HELD_GUARD:
            _HELD[key] = (me, nested)
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD.pop(key, None)


@contextmanager
def _local_or_remote(journal_dir: Path | S3Location, timeout_s: float) -> Iterator[None]:
    if isinstance(journal_dir, S3Location):
        with remote_write_lock(journal_dir, timeout_s):
            yield
        return
    path = journal_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    with _HELD_GUARD:
                        holder = (
                            "another thread of this process" if os.path.realpath(path) in _HELD else "another process"
                        )
                    raise LockTimeoutError(
                        f"{journal_dir}: {holder} held the write lock for {timeout_s:.0f}s",
                        hint="wait for the other writer (import, compact) to finish and retry",
                        path=str(path),
                    ) from None
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _lock_body(owner: str, lease_s: float) -> bytes:
    now = time.time()
    return json.dumps(
        {
            "owner": owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(),
            "expires": now + lease_s,
        }
    ).encode()


def _read_lock(fs: object, key: str) -> dict[str, object] | None:
    try:
        body = json.loads(fs.cat_file(key))  # type: ignore[attr-defined]
    except (FileNotFoundError, ValueError):
        return None
    return body if isinstance(body, dict) else None


@contextmanager
def remote_write_lock(root: S3Location, timeout_s: float, *, lease_s: float = LEASE_S) -> Iterator[None]:
    """The lock object of an object-store journal (conditional PUT + renewed lease)."""
    fs = filesystem()
    key = (root / LOCK_FILE).fs_path
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        try:
            fs.pipe_file(key, _lock_body(owner, lease_s), mode="create")
            break
        except FileExistsError:
            held = _read_lock(fs, key)
            if held is not None and float(str(held.get("expires", 0))) < time.time():
                with contextlib.suppress(FileNotFoundError):
                    fs.rm_file(key)  # the lease ran out: its writer is gone
                continue
            if time.monotonic() > deadline:
                who = f" by {held.get('host')} pid {held.get('pid')}" if held else ""
                raise LockTimeoutError(
                    f"{root}: the write lock was held{who} for {timeout_s:.0f}s",
                    hint=f"wait for the other writer to finish; a dead writer's lock expires after {lease_s:.0f}s",
                    path=str(root / LOCK_FILE),
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lease_s / 4):
            held = _read_lock(fs, key)
            if held is None or held.get("owner") != owner:
                return
            fs.pipe_file(key, _lock_body(owner, lease_s))

    heartbeat = threading.Thread(target=renew, name="journal-lock-lease", daemon=True)
    heartbeat.start()
    try:
        yield
    finally:
        stop.set()
        heartbeat.join()
        held = _read_lock(fs, key)
        if held is not None and held.get("owner") == owner:
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(key)
