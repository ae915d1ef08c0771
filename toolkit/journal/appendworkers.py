"""The write stage of an append: hash chain and Parquet files, in this process and in workers.

``HashedChunks`` runs ``assign.hash_chunks`` in a thread while the caller writes the chunks
already hashed (pyarrow's Parquet writer releases the GIL while it encodes). ``write_part`` does
that for one set of rows into ``AppendFiles`` and returns the files' add actions and the new
stream heads (``head_rows``); nothing is committed.

A large append also keeps the other cores busy: ``split_by_stream`` cuts the numbered rows into
parts of whole streams (a chain never crosses streams), contiguous ranges of stream ids of about
equal size, and ``hand_out`` gives every part but the first to a worker process, which runs
``write_part`` on it while this process runs it on the first; ``gather`` collects them. The
caller commits all parts' add actions in one Delta transaction, or, when any part failed,
deletes the files of the others and raises the first failure. A worker takes its requests in
order and answers them in order, so ``append_batches`` hands it the next batch's part while the
one before is still written. A worker is a ``python -c`` child started on first use and kept
for the next appends; it reads its part in place from an Arrow IPC stream in memory (a
``memfd`` it opens through ``/proc``, so nothing is left behind when either side dies; the
appending process writes the next parts of the append into the same pages) and answers with
pickles on a pipe of their own (what it prints goes to stderr), each pickle framed by its
length. A worker whose parent died stops at the next chunk, deletes its files and exits; files
it wrote that were never committed are orphans ``vacuum`` removes, as after any crash.

A worker also says "alive" after every chunk it has written. One that says nothing for
``STALL_S`` seconds while its answer is awaited (stopped, deadlocked, stuck on a dead mount) is
killed and the append fails with nothing committed: the journal's write lock is not held forever.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import mmap
import os
import pickle
import queue
import select
import signal
import site
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from deltalake.transaction import AddAction, RemoveAction

from toolkit import allocators
from toolkit.errors import ToolkitError
from toolkit.journal.appendfiles import AppendFiles
from toolkit.journal.assign import hash_chunks
from toolkit.journal.schema import ARROW_SCHEMA

#: appends of fewer rows are hashed and written in this process only (a part's set-up costs more)
PARALLEL_MIN_ROWS: Final = 50_000

#: the appending process's share of a 2-part append while its worker is still starting
STARTING_SHARE: Final = float(os.environ.get("TOOLKIT_STARTING_SHARE", "0.7"))

#: a worker without a request for this long returns its free memory to the system
IDLE_RELEASE_S: Final = 2.0

#: a worker whose answer is awaited and that sends nothing for this long (it says "alive" after
#: every chunk of ≈ 64k rows) is taken for hung, killed, and the append fails
STALL_S: Final = float(os.environ.get("TOOLKIT_WORKER_STALL_S", "300"))

_FRAME = struct.Struct("<Q")  # each message: its length, then its pickle

Hasher = Callable[[pa.Table, dict[str, bytes]], Iterator[pa.Table]]
HEAD_COLUMNS: Final = ("stream_id", "stream_type", "version", "hash", "day")


class AppendWorkerError(ToolkitError, RuntimeError):
    """A worker process hashing part of an append died without an answer; nothing was committed."""


def default_workers() -> int:
    """Worker processes a large append uses besides this one: one per further core (at most 3)."""
    return max(0, min(len(os.sched_getaffinity(0)) - 1, 3))


@dataclass(frozen=True)
class FileLayout:
    """Where and how ``AppendFiles`` writes one append (a worker gets it with its part)."""

    root: str
    partition_by: tuple[str, ...]
    stats_columns: tuple[str, ...]
    row_group_rows: int

    def files(self) -> AppendFiles:
        return AppendFiles(
            Path(self.root), ARROW_SCHEMA, list(self.partition_by), self.stats_columns, self.row_group_rows
        )

    def remove(self, actions: list[AddAction | RemoveAction]) -> None:
        """Delete the files of uncommitted add actions."""
        for a in actions:
            if isinstance(a, AddAction):
                (Path(self.root) / a.path).unlink(missing_ok=True)


def head_rows(table: pa.Table | pl.DataFrame) -> pl.DataFrame:
    """Per stream of ``table``: type, last version and its hash, first and last day.

    Takes rows with ``HEAD_COLUMNS`` or frames ``head_rows`` returned (disjoint or not).
    """
    frame = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table.select(list(HEAD_COLUMNS)))
    assert isinstance(frame, pl.DataFrame)
    if "lo" not in frame.columns:
        frame = frame.with_columns(lo=pl.col("day"), hi=pl.col("day")).drop("day")
    return frame.group_by("stream_id").agg(
        pl.col("stream_type").first(),
        pl.col("hash").sort_by("version").last(),
        pl.col("version").max(),
        pl.col("lo").min(),
        pl.col("hi").max(),
    )


class HashedChunks:
    """``hasher(numbered, starts)``'s chunks, computed in a thread while the caller consumes the ones before.

    Iterating yields the chunks and then raises the hashing thread's failure, if any. ``stop``
    must be called in every case (it unblocks and joins the thread and returns its failure).
    """

    def __init__(self, numbered: pa.Table, starts: dict[str, bytes], hasher: Hasher) -> None:
        self._chunks: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
        self._failure: list[BaseException] = []
        self._heads: list[pa.Table] = []
        self._thread = threading.Thread(
            target=self._produce, args=(numbered, starts, hasher), name="journal-hash-chain", daemon=True
        )
        self._thread.start()

    def _produce(self, numbered: pa.Table, starts: dict[str, bytes], hasher: Hasher) -> None:
        try:
            for chunk in hasher(numbered, starts):
                self._heads.append(chunk.select(list(HEAD_COLUMNS)))
                self._chunks.put(chunk)
        except BaseException as e:  # handed to the consumer's side
            self._failure.append(e)
        finally:
            self._chunks.put(None)

    def __iter__(self) -> Iterator[pa.Table]:
        while (chunk := self._chunks.get()) is not None:
            yield chunk
        if self._failure:
            raise self._failure[0]

    def stop(self) -> BaseException | None:
        while self._thread.is_alive():  # unblock the producer so it can finish
            with contextlib.suppress(queue.Empty):
                self._chunks.get(timeout=0.05)
        self._thread.join()
        return self._failure[0] if self._failure else None

    def heads(self) -> pl.DataFrame:
        """``head_rows`` of every chunk hashed."""
        return head_rows(pa.concat_tables(self._heads))


def write_part(
    numbered: pa.Table,
    starts: dict[str, bytes],
    layout: FileLayout,
    hasher: Hasher = hash_chunks,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[list[AddAction | RemoveAction], pl.DataFrame]:
    """Hash ``numbered`` and write its Parquet files: (add actions, ``head_rows``); nothing committed.

    On any failure the files written are deleted and the hashing failure, if there was one,
    is raised (it is the cause of the others).
    """
    files = layout.files()
    chunks = HashedChunks(numbered, starts, hasher)
    try:
        for chunk in chunks:
            files.add(chunk)
            if cancelled is not None and cancelled():
                raise SystemExit("the appending process is gone")
        actions = files.close()
    except BaseException:
        files.abort()
        failure = chunks.stop()
        if failure is not None:
            raise failure from None
        raise
    chunks.stop()
    return actions, chunks.heads()


def split_by_stream(numbered: pa.Table, parts: int, first_share: float | None = None) -> list[pa.Table]:
    """``numbered`` cut into up to ``parts`` tables of whole streams, by stream id range.

    The first part holds about ``first_share`` of the rows (default: an equal share), the others
    equal shares of the rest. Rows keep their order inside each part. Fewer parts come back when
    there are fewer streams.
    """
    first = 1 / parts if first_share is None else first_share
    cuts = [first + (1 - first) * k / (parts - 1) for k in range(parts - 1)] if parts > 1 else []
    sid = pl.Series("stream_id", numbered.column("stream_id"))
    counts = sid.value_counts(name="n").sort("stream_id")
    before = (counts.get_column("n").cum_sum() - counts.get_column("n")) / numbered.num_rows
    part_of = pl.sum_horizontal([pl.lit(0, pl.Int32), *((pl.col("before") >= c).cast(pl.Int32) for c in cuts)])
    counts = counts.with_columns(before=before).with_columns(part=part_of)
    if counts.get_column("part").n_unique() == 1:
        return [numbered]
    part = sid.to_frame().join(counts.select("stream_id", "part"), on="stream_id", how="left", maintain_order="left")
    col = part.get_column("part")
    out = []
    if col.is_sorted():  # each part is a run of rows: slices, no copy
        bounds = (
            col.to_frame().with_row_index().group_by("part", maintain_order=True).agg(pl.col("index").first(), pl.len())
        )
        for _, first, n in bounds.iter_rows():
            out.append(numbered.slice(first, n))
        return out
    arrow = col.to_arrow()
    for p in col.unique().sort().to_list():
        out.append(numbered.filter(pc.equal(arrow, p)))
    return out


Written = tuple[list[AddAction | RemoveAction], pl.DataFrame]  # add actions, ``head_rows``


def hand_out(
    workers: AppendWorkers,
    count: int,
    numbered: pa.Table,
    starts: dict[str, bytes],
    layout: FileLayout,
    stall_s: float = STALL_S,
) -> tuple[pa.Table, list[Pending], BaseException | None]:
    """Cut ``numbered`` into ``count + 1`` parts of whole streams and hand all but the first to the
    workers: the first part (this process writes it), the parts handed out, and the failure (Ctrl-C
    included) that stopped the handing out, if one did.

    After a failure the caller must ``gather(failure, pending, …)``, so no answer is left for a
    later part to take for its own, and in the thread that reads the workers' answers to parts
    handed out before (``append_batches``: the batch before), as those answers come first.
    """
    parts = split_by_stream(numbered, count + 1, workers.first_share(count))
    pending: list[Pending] = []
    try:
        for i, part in enumerate(parts[1:]):
            pending.append(workers.submit(i, part, starts, layout, stall_s))
    except BaseException as e:
        return parts[0], pending, e
    return parts[0], pending, None


def gather(
    first: Callable[[], Written] | BaseException, pending: list[Pending], layout: FileLayout, stall_s: float
) -> Written:
    """The first part's result (``first()``, writing it or waiting for it) and each worker's: every
    add action and the new stream heads. When any failed (``first`` may be a failure already), the
    files of the others are deleted and the first failure is raised, after every worker answered."""
    failure = first if isinstance(first, BaseException) else None
    done: list[Written] = []
    if not isinstance(first, BaseException):
        try:
            done.append(first())
        except BaseException as e:
            failure = e
    for p in pending:  # every worker answers (or is killed) before this ends
        try:
            done.append(p.result(stall_s))
        except BaseException as e:
            failure = failure or e
    if failure is not None:
        for actions, _ in done:
            layout.remove(actions)
        raise failure
    return [a for actions, _ in done for a in actions], head_rows(pl.concat([heads for _, heads in done]))


# ---------------------------------------------------------------------- worker processes


@dataclass(frozen=True)
class _Request:
    table_path: str  # an Arrow IPC stream in a memfd (``/proc/<pid>/fd/<n>``), or an IPC file
    temporary: bool  # an IPC file the worker removes once it has mapped it
    starts: dict[str, bytes]
    layout: FileLayout
    parent: int


class _Shared:
    """A memfd this process writes parts into (an Arrow IPC stream from its start), kept for the
    next parts: writing into pages it holds already is a copy, where a new memfd's pages were
    zeroed by the kernel first (≈ 25 ms per 100k events, on this process's critical path)."""

    def __init__(self) -> None:
        self.fd = os.memfd_create("journal-append-part")
        self.path = f"/proc/{os.getpid()}/fd/{self.fd}"
        self.size = 0
        self.map: mmap.mmap | None = None
        self.busy = False  # a worker may be reading it

    def write(self, part: pa.Table) -> None:
        sink = pa.MockOutputStream()  # the stream's size: sizes only, nothing copied
        with ipc.new_stream(sink, part.schema) as w:
            w.write_table(part)
        if sink.size() > self.size or self.map is None:
            self.size = max(sink.size(), self.size + self.size // 4)
            os.ftruncate(self.fd, self.size)
            self.map = mmap.mmap(self.fd, self.size)
        with ipc.new_stream(pa.FixedSizeBufferWriter(pa.py_buffer(self.map)), part.schema) as w:
            w.write_table(part)

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            if self.map is not None:
                self.map.close()
        os.close(self.fd)


def _memfds() -> bool:
    return hasattr(os, "memfd_create") and Path(f"/proc/{os.getpid()}/fd").is_dir()


def _site_dirs() -> set[str]:
    paths = sysconfig.get_paths()
    dirs = {paths["purelib"], paths["platlib"], *site.getsitepackages()}
    return {str(Path(d).resolve()) for d in dirs}


class _Worker:
    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # this toolkit, not another installed one
        env = dict(os.environ)
        # a checkout goes first on the worker's path; an installed toolkit is found in its site-packages
        # already (put first, it would come before the standard library there)
        if root not in _site_dirs():
            env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        # its allocators keep freed pages: each part reuses the pages of the one before instead of
        # faulting them in again (a third of the worker's CPU time went to the kernel)
        allocators.apply_worker(env)
        # answers on a pipe of their own: text printed at start-up (a sitecustomize) cannot garble them
        answers, write_end = os.pipe()
        try:
            self.proc = subprocess.Popen(
                # -P: not the working directory first on sys.path (its own toolkit/ or queue.py would be imported)
                [sys.executable, "-P", "-c", f"from toolkit.journal.appendworkers import serve; serve({write_end})"],
                stdin=subprocess.PIPE,
                stdout=2,  # anything printed goes to stderr
                pass_fds=(write_end,),
                env=env,
            )
        except BaseException:
            os.close(answers)
            raise
        finally:
            os.close(write_end)
        self.answers = answers  # read with select and os.read: a stalled worker is noticed
        self.owed = 0  # requests sent whose answers have not been read (answered in order)
        self.ready = False  # its start-up message was read: it has imported its code
        self.beats = 0  # "alive" messages read (one per chunk written)

    def started(self) -> bool:
        """Whether the worker has finished starting (reads its start-up message if it has come)."""
        if self.ready or self.owed:
            return self.ready
        try:
            if select.select([self.answers], [], [], 0)[0]:  # nothing was asked: it can only be that message
                self.ready = self._read(STALL_S) == _READY
        except (OSError, ValueError):  # no select on pipes here: take it as started
            return True
        except (EOFError, TimeoutError):  # it died (or hangs) starting: the next request finds out
            return False
        return self.ready

    def read_answer(self, stall_s: float = STALL_S) -> Any:
        """The next answer on the pipe, after the start-up message and the "alive" messages.

        Raises EOFError when the worker died, TimeoutError when it sent nothing for ``stall_s``.
        """
        while True:
            answer = self._read(stall_s)
            if answer == _ALIVE:
                self.beats += 1
            elif answer == _READY:
                self.ready = True
            else:
                return answer

    def send(self, request: bytes, stall_s: float) -> None:
        """Write ``request`` to the worker's stdin; TimeoutError when it takes nothing for ``stall_s``."""
        assert self.proc.stdin is not None
        fd, view = self.proc.stdin.fileno(), memoryview(request)
        while view:
            if not select.select([], [fd], [], stall_s)[1]:
                raise TimeoutError(stall_s)
            view = view[os.write(fd, view[: select.PIPE_BUF]) :]  # no more than fits: never blocks

    def _read(self, stall_s: float) -> Any:
        (size,) = _FRAME.unpack(self._read_exactly(_FRAME.size, stall_s))
        return pickle.loads(self._read_exactly(size, stall_s))

    def _read_exactly(self, n: int, stall_s: float) -> bytes:
        parts: list[bytes] = []
        deadline = time.monotonic() + stall_s
        while n:
            if not select.select([self.answers], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError(stall_s)
            chunk = os.read(self.answers, min(n, 1 << 20))
            if not chunk:
                raise EOFError
            parts.append(chunk)
            n -= len(chunk)
            deadline = time.monotonic() + stall_s  # bytes came: it is alive
        return b"".join(parts)

    @property
    def usable(self) -> bool:
        """Alive, and not holding an answer nobody read (it would be taken for the next part's)."""
        return not self.owed and self.proc.poll() is None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        self._close_pipes()

    def forget(self) -> None:
        """In a forked child: close its copies of the pipes (the worker sees its parent's end)."""
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        answers, self.answers = self.answers, -1
        if answers >= 0:
            with contextlib.suppress(OSError):
                os.close(answers)

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # end of requests: the worker exits
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_pipes()


def _stalled(worker: _Worker, stall_s: float) -> AppendWorkerError:
    return AppendWorkerError(
        f"the append worker (pid {worker.proc.pid}) did not respond for {stall_s:g} s and was killed",
        hint="nothing was committed; run the append again (a slow disk? raise TOOLKIT_WORKER_STALL_S, "
        "or set Journal.append_workers = 0 to append in this process only)",
    )


class Pending:
    """A part handed to a worker; ``result`` waits for its add actions and heads (or raises its failure)."""

    def __init__(self, worker: _Worker, keep: _Shared | str) -> None:
        self._worker = worker
        self._keep: _Shared | str | None = keep  # the memfd (or temporary file) is kept until the answer

    def result(self, stall_s: float = STALL_S) -> tuple[list[AddAction | RemoveAction], pl.DataFrame]:
        """The worker's add actions and heads; it is killed when it sends nothing for ``stall_s``."""
        try:
            try:
                if self._worker.answers < 0:  # killed after an earlier part of its failed
                    raise EOFError
                answer = self._worker.read_answer(stall_s)
                self._worker.owed -= 1
            except EOFError:
                code = self._worker.proc.wait()
                raise AppendWorkerError(
                    f"the append worker (pid {self._worker.proc.pid}) exited with code {code} before answering",
                    hint="nothing was committed; run the append again",
                ) from None
            except TimeoutError:
                raise _stalled(self._worker, stall_s) from None
        except BaseException:
            self._worker.kill()  # its state is unknown: a new worker serves the next append
            raise
        finally:
            self._release()
        if answer[0] == "error":
            error: BaseException = answer[1]
            error.add_note(f"raised in the append worker process (pid {self._worker.proc.pid}):\n{answer[2]}")
            raise error
        actions, heads = answer[1]
        return actions, heads

    def _release(self) -> None:
        keep, self._keep = self._keep, None
        if isinstance(keep, _Shared):
            keep.busy = False  # answered (or killed): the worker is done with it
        elif isinstance(keep, str):
            Path(keep).unlink(missing_ok=True)


class AppendWorkers:
    """Worker processes for the parts of large appends, started on first use and reused.

    One user at a time (``try_acquire`` / ``release``): a second thread appending meanwhile
    hashes in its own process.
    """

    def __init__(self) -> None:
        self._workers: list[_Worker] = []
        self._shared: list[_Shared] = []  # memfds parts are written into, reused within an append
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        return self._lock.acquire(blocking=False)

    def release(self) -> None:
        """Let another append use the workers; the memory of the parts handed over is given back."""
        self._drop_shared()
        self._lock.release()

    def _drop_shared(self) -> None:
        for shared in [b for b in self._shared if not b.busy]:
            shared.close()
            self._shared.remove(shared)

    def start(self, count: int) -> int:
        """Have ``count`` live workers (started in the background: ``submit`` waits for none).

        Returns how many there are: fewer when no more can be started (an embedding interpreter's
        ``sys.executable`` that does not run): the parts they do not take are written by the caller.
        """
        for w in self._workers:
            if not w.usable:
                w.kill()
        self._workers = [w for w in self._workers if w.alive]
        while len(self._workers) < count:
            try:
                self._workers.append(_Worker())
            except OSError:
                break
        return min(count, len(self._workers))

    def first_share(self, count: int) -> float | None:
        """The appending process's share of the rows when ``count`` workers take the other parts:
        an equal share (None) once they have started, else more (a worker still starting takes
        ≈ 0.3 s to import its code, during which it writes nothing)."""
        if all(w.started() for w in self._workers[:count]):
            return None
        return min(0.9, STARTING_SHARE * 2 / (count + 1))

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    def submit(
        self, index: int, part: pa.Table, starts: dict[str, bytes], layout: FileLayout, stall_s: float = STALL_S
    ) -> Pending:
        """Hand ``part`` to worker ``index`` (``start`` made it); one that takes nothing for ``stall_s`` is killed."""
        worker = self._workers[index]
        keep: _Shared | str
        if _memfds():
            keep = next((b for b in self._shared if not b.busy), None) or self._new_shared()
            keep.busy, path, temporary = True, keep.path, False
        else:
            fd, keep = tempfile.mkstemp(prefix="journal-append-part-", suffix=".arrow")
            os.close(fd)
            path, temporary = keep, True
        sending = False  # nothing sent yet: the worker goes on with the parts it has (of batches before)
        try:
            if isinstance(keep, _Shared):
                keep.write(part)
            else:
                with pa.OSFile(path, "wb") as f, ipc.new_file(f, part.schema) as w:
                    w.write_table(part)
            request = pickle.dumps(_Request(path, temporary, starts, layout, os.getpid()))
            assert worker.proc.stdin is not None
            try:
                sending = True  # from here a request may be cut short: the worker's state is unknown
                worker.owed += 1
                worker.send(request, stall_s)
            except BrokenPipeError as e:
                raise AppendWorkerError(
                    f"the append worker (pid {worker.proc.pid}) exited with code {worker.proc.wait()}",
                    hint="nothing was committed; run the append again",
                ) from e
            except TimeoutError:
                raise _stalled(worker, stall_s) from None
        except BaseException:
            if sending:
                worker.kill()
            if isinstance(keep, _Shared):
                keep.busy = False  # its worker is gone, or never had it
            else:
                Path(keep).unlink(missing_ok=True)
            raise
        return Pending(worker, keep)

    def _new_shared(self) -> _Shared:
        self._shared.append(_Shared())
        return self._shared[-1]

    def close(self) -> None:
        for w in self._workers:
            w.close()
        self._workers = []
        self._drop_shared()


_POOL: AppendWorkers | None = None
_POOL_LOCK = threading.Lock()  # two threads appending at once get the same pool


def pool() -> AppendWorkers:
    """The process's worker pool (closed at exit)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = AppendWorkers()
            atexit.register(_POOL.close)
        return _POOL


def _forget_in_child() -> None:
    """A forked child does not own its parent's workers: it drops its copies of their pipes (while it
    held them, a worker would not see its parent exit) and starts its own if it appends."""
    global _POOL, _POOL_LOCK
    _POOL_LOCK = threading.Lock()  # another thread of the parent may have held it at the fork
    if _POOL is not None:
        for w in _POOL._workers:
            w.forget()
        for shared in _POOL._shared:
            shared.close()
        _POOL._workers, _POOL._shared = [], []
        _POOL = None


os.register_at_fork(after_in_child=_forget_in_child)


_READY: Final = ("ready",)  # a worker's first message
_ALIVE: Final = ("alive",)  # sent after every chunk written


def _send(answers: Any, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    answers.write(_FRAME.pack(len(data)) + data)
    answers.flush()


def _picklable(error: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def _answer(request: _Request, answers: Any) -> tuple[list[AddAction | RemoveAction], pl.DataFrame]:
    source = pa.memory_map(request.table_path)  # read in place: the columns are views of its pages
    if request.temporary:
        Path(request.table_path).unlink(missing_ok=True)
        part = ipc.open_file(source).read_all()
    else:
        part = ipc.open_stream(source).read_all()  # (what follows the stream is an older part's)

    def cancelled() -> bool:  # after every chunk written
        if os.getppid() != request.parent:
            return True
        _send(answers, _ALIVE)
        return False

    return write_part(part, request.starts, request.layout, cancelled=cancelled)


def _release_memory() -> None:
    """Give free memory back to the system: Arrow's pool, and the C heap (Python objects) on glibc.
    (Polars' jemalloc returns its own pages in the background.)"""
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def serve(answers_fd: int) -> None:
    """A worker's loop: one ``_Request`` after another on stdin, one answer each on ``answers_fd``, until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the appending process's to handle
    answers = os.fdopen(answers_fd, "wb")
    requests = sys.stdin.buffer
    _send(answers, _READY)  # its code is imported: the appending process may give it a full share
    while True:
        # idle for a while (not between the batches of an import): give the memory back
        if not select.select([requests], [], [], IDLE_RELEASE_S)[0]:
            _release_memory()
        try:
            request: _Request = pickle.load(requests)
        except EOFError:
            return
        try:
            answer: tuple[Any, ...] = ("ok", _answer(request, answers))
        except BrokenPipeError:  # the appending process is gone (an "alive" found no reader)
            return
        except BaseException as e:  # the appending process raises it
            if isinstance(e, SystemExit):
                return
            answer = ("error", _picklable(e), traceback.format_exc())
        try:
            _send(answers, answer)
        except BrokenPipeError:  # the appending process is gone
            return
