"""The only module that talks to Dask: run one function per stream shard on a cluster.

Work is cut into *shards* of whole streams — contiguous ranges of the sorted stream ids, so no
stream is ever split across workers and each shard's files prune by their stream_id statistics.
Each shard is one Dask task; a task whose worker dies is retried on another worker by the
scheduler (``distributed.scheduler.allowed-failures`` times); past that, or when a task raises,
``map_shards`` cancels the rest and raises ``DistributedError``: the caller records nothing, so a
run is whole or absent, never partial.

By default a ``LocalCluster`` (2 worker processes, 1 thread each) is started for the call and
closed after it; ``scheduler="tcp://host:8786"`` uses an existing cluster instead. Functions and
their arguments travel with cloudpickle (Dask's own serialisation); ``ship`` pickles a value *by
value* — user rule files are modules the workers cannot import.

>>> stream_shards(["d", "a", "e", "b", "c"], 2)
[('a', 'c', ['a', 'b', 'c']), ('d', 'e', ['d', 'e'])]
"""

from __future__ import annotations

import contextlib
import math
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from toolkit.errors import DistributedError, ToolkitError

T = TypeVar("T")
DEFAULT_WORKERS = 2
CONNECT_SECONDS = 10  # reaching a --scheduler, its handshake included
STREAMS_PER_SHARD = 20_000  # bounds a task's memory: a shard's events, not the journal's


@dataclass(frozen=True)
class ClusterSpec:
    """Where to run: an existing scheduler's address, or a LocalCluster of ``workers`` processes."""

    scheduler: str | None = None
    workers: int = DEFAULT_WORKERS
    threads_per_worker: int = 1
    memory_limit: str | None = None  # per worker, e.g. "4GiB" (Dask's default: RAM / workers)


def stream_shards(stream_ids: Sequence[str], n: int) -> list[tuple[str, str, list[str]]]:
    """``n`` contiguous groups of whole streams: (first id, last id, ids) in sorted order."""
    ids = sorted(stream_ids)
    if not ids:
        return []
    n = max(1, min(n, len(ids)))
    size = math.ceil(len(ids) / n)
    return [(chunk[0], chunk[-1], chunk) for chunk in (ids[i : i + size] for i in range(0, len(ids), size))]


def shard_count(streams: int, workers: int) -> int:
    """Two tasks per worker at least (balance, retry granularity); more for big journals (memory)."""
    return max(1, min(streams, max(2 * workers, math.ceil(streams / STREAMS_PER_SHARD))))


def worker_memory_limit() -> int | None:
    """The memory limit of the Dask worker running this code (bytes), None outside a worker."""
    try:
        from distributed import get_worker

        limit = get_worker().memory_manager.memory_limit
    except (ImportError, ValueError, AttributeError):
        return None
    return int(limit) if limit else None


def ship(value: Any) -> bytes:
    """cloudpickle ``value``, taking the code of non-importable modules it uses by value."""
    import cloudpickle  # type: ignore[import-untyped]

    registered = []
    for mod in _code_modules(value):
        with contextlib.suppress(ValueError):
            cloudpickle.register_pickle_by_value(mod)
            registered.append(mod)
    try:
        return bytes(cloudpickle.dumps(value))
    finally:
        for mod in registered:
            cloudpickle.unregister_pickle_by_value(mod)


def _code_modules(value: Any) -> set[types.ModuleType]:
    """Modules of the functions ``value`` holds that pickling by reference would not find again:
    user rule files (not importable on workers) and functions a decorator replaced by an object."""
    out = set()
    for v in vars(value).values() if hasattr(value, "__dict__") else ():
        name = getattr(v, "__module__", None)
        if not callable(v) or name not in sys.modules:
            continue
        mod = sys.modules[name]
        if getattr(mod, getattr(v, "__qualname__", ""), None) is not v or name.startswith("toolkit_user_rules_"):
            out.add(mod)
    return out


def unship(blob: bytes) -> Any:
    import cloudpickle

    return cloudpickle.loads(blob)


@contextlib.contextmanager
def client(spec: ClusterSpec) -> Iterator[Any]:
    """A connected ``distributed.Client`` (and its LocalCluster, when no scheduler is given)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as e:
        raise DistributedError(
            "--engine dask needs dask.distributed", hint="pip install 'agent-journal-toolkit[dask]'"
        ) from e
    if spec.scheduler:
        try:
            _reach(spec.scheduler)
            c = Client(spec.scheduler, timeout=f"{CONNECT_SECONDS}s")  # type: ignore[no-untyped-call]
        except (OSError, ValueError) as e:  # a malformed address, no listener, or a listener that is no Dask scheduler
            raise DistributedError(
                f"cannot reach the Dask scheduler at {spec.scheduler}: {e}",
                hint="check --scheduler ADDRESS (tcp://host:8786, not the dashboard's port) or leave it out for a local cluster",
            ) from e
        with c:
            yield c
        return
    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=spec.workers,
        threads_per_worker=spec.threads_per_worker,
        processes=True,
        dashboard_address="127.0.0.1:0",
        host="127.0.0.1",
        memory_limit=spec.memory_limit or "auto",
        silence_logs=50,
    )
    try:
        with Client(cluster) as c:  # type: ignore[no-untyped-call]
            yield c
    finally:
        cluster.close()


def _reach(address: str) -> None:
    """Open and close one Dask connection to ``address`` within ``CONNECT_SECONDS``, handshake included.

    ``Client(timeout=...)`` bounds the TCP connect only: a listener that is no Dask scheduler (the
    dashboard's HTTP port, another service) accepts and never answers, and the client waited for
    its handshake forever (or read an answer as a frame length: MemoryError).
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm.core import connect

    async def hello() -> None:
        try:
            comm = await asyncio.wait_for(connect(address, timeout=CONNECT_SECONDS), CONNECT_SECONDS)  # type: ignore[no-untyped-call]
        except TimeoutError as e:  # connected (connect's own timeout is an OSError), then silence
            raise OSError(f"a listener accepted the connection but no Dask scheduler answered within {CONNECT_SECONDS} s") from e
        except (OSError, ValueError):  # nothing listening; a malformed address
            raise
        except Exception as e:  # an answer that is no Dask frame (read as a huge length: MemoryError)
            raise OSError(f"the listener answered, but not as a Dask scheduler ({type(e).__name__})") from e
        await comm.close()

    with ThreadPoolExecutor(1, "journal-dask-reach") as pool:  # its own event loop, whatever the caller runs
        pool.submit(asyncio.run, hello()).result()


def map_shards(
    fn: Callable[..., T],
    tasks: Sequence[tuple[Any, ...]],
    spec: ClusterSpec,
    *,
    progress: Callable[[int, int], None] | None = None,
    label: str = "shard",
) -> list[T]:
    """``[fn(*args) for args in tasks]`` on the cluster, in order; all or nothing.

    ``progress(done, total)`` is called as tasks finish. A ``ToolkitError`` raised by a task is
    re-raised as is (bad input); any other failure — a worker that died more often than the
    scheduler retries, a lost connection — becomes ``DistributedError`` naming the task.
    """
    if not tasks:
        return []
    from distributed import as_completed

    with client(spec) as c:
        futures = [c.submit(fn, *args, pure=False, key=f"{label}-{i}") for i, args in enumerate(tasks)]
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        done = 0
        try:
            for fut in as_completed(futures):  # type: ignore[no-untyped-call]
                results[index[fut.key]] = fut.result()
                done += 1
                if progress:
                    progress(done, len(futures))
        except ToolkitError:
            c.cancel(futures)
            raise
        except Exception as e:
            c.cancel(futures)
            raise DistributedError(
                f"the distributed run failed ({type(e).__name__}: {e}); nothing was recorded",
                hint="rerun; a task whose worker keeps dying (memory?) needs more memory per worker or smaller shards",
            ) from e
    return results


__all__ = ["ClusterSpec", "client", "map_shards", "shard_count", "ship", "stream_shards", "unship"]
