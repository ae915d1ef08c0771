"""The journal's write lock: one writer at a time per journal directory.

Delta appends by two writers never conflict with each other, so Delta alone cannot keep
(stream_id, version) and position unique; every write (append, compact, vacuum) takes this
``flock`` for its read-heads → write → commit section. The kernel drops the lock when the
process dies, so a SIGKILL never leaves a stale lock. Multi-host writers need one writer
per journal or an external lock (see README, "Writers").
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from toolkit.errors import LockTimeoutError

LOCK_FILE = ".write.lock"


@contextmanager
def write_lock(journal_dir: Path, timeout_s: float) -> Iterator[None]:
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
                    raise LockTimeoutError(
                        f"{journal_dir}: another process held the write lock for {timeout_s:.0f}s",
                        hint="wait for the other writer (import, compact) to finish and retry",
                        path=str(path),
                    ) from None
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)  # closing releases the flock
