"""Allocator settings: keep freed pages for a while instead of giving them back at once.

Polars' jemalloc returns freed pages to the system after 0.5 s and Arrow's mimalloc after 10 ms,
so work done in rounds (the batches of an import, the chunks of an append's hash chain) faults
the same memory in again and again: a 1M-event append spent 0.75 s of its 4 s in the kernel,
150k page faults. With jemalloc's own default of 10 s (its background thread still returns idle
memory) and 1 s for mimalloc it takes 50k faults and 0.4 s (BENCHMARKS.md, issue 2).

The allocators read these variables when they first allocate, so ``toolkit`` sets them on import
(``setdefault``: a value the user set wins); in a process that used Polars or Arrow before
importing ``toolkit`` they change nothing. Append worker processes get them, and the glibc
heap's, from their start (``RUNTIME_ENV`` and ``WORKER_ENV``).
"""

from __future__ import annotations

import os
from typing import Final

#: read by the allocators at their first allocation: effective when set before Polars / Arrow load
RUNTIME_ENV: Final = {
    "_RJEM_MALLOC_CONF": "dirty_decay_ms:10000,muzzy_decay_ms:10000",  # Polars' jemalloc
    "MIMALLOC_PURGE_DELAY": "1000",  # Arrow's default memory pool (mimalloc), in ms
}
#: for worker processes the toolkit starts: also glibc's heap (Python objects), read at exec only
WORKER_ENV: Final = {
    **RUNTIME_ENV,
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    "MALLOC_MMAP_THRESHOLD_": str(1 << 30),
}


#: the settings the user made: those in the environment when ``toolkit`` was imported (a library may
#: set them later for its own processes: Dask's nanny puts MALLOC_TRIM_THRESHOLD_=65536 in this
#: process's environment when it starts a worker, and the append workers must not inherit that)
USER_SET: Final = frozenset(name for name in WORKER_ENV if name in os.environ)


def apply(env: dict[str, str] | os._Environ[str], settings: dict[str, str]) -> None:
    """Set each of ``settings`` in ``env`` unless it is set there already."""
    for name, value in settings.items():
        env.setdefault(name, value)


#: what Polars' ``__init__`` puts in ``_RJEM_MALLOC_CONF`` when the user set nothing
POLARS_JEMALLOC_DEFAULT: Final = "dirty_decay_ms:500,muzzy_decay_ms:1000"


def apply_worker(env: dict[str, str]) -> None:
    """``WORKER_ENV`` in the environment of a worker process about to start.

    When Polars was imported before ``toolkit``, this process's ``_RJEM_MALLOC_CONF`` holds Polars'
    own default, not a user's choice: the worker (a new process) gets the toolkit's setting after
    it (jemalloc takes the last value of a repeated key).
    """
    apply(env, WORKER_ENV)
    for name in WORKER_ENV.keys() - RUNTIME_ENV.keys() - USER_SET:  # glibc's: only the user's choice wins
        env[name] = WORKER_ENV[name]
    if env["_RJEM_MALLOC_CONF"] == POLARS_JEMALLOC_DEFAULT:
        env["_RJEM_MALLOC_CONF"] += "," + WORKER_ENV["_RJEM_MALLOC_CONF"]
