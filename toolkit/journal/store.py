"""The journal store: a directory with ``journal.toml`` and a Delta table of events.

Layout::

    JOURNAL/
      journal.toml            schema version, partitioning, retention, compaction sizes
      events/                 Delta table partitioned by stream_type, day
      positions.json          the highest position given, once a purge has removed events
      .write.lock             flock taken by every writer

Writes go through ``append`` / ``append_batch``: validate, take the write lock, check expected
versions and event-id idempotency against the stream heads, assign versions, positions,
recorded_at and the hash chain, then one Delta commit (all-or-nothing). A process killed at any
moment leaves only whole commits: Parquet files written before the commit are not in the Delta
log, so no reader sees them, and ``vacuum`` removes them.

Reads use exactly the files the Delta log lists as active, pruned by partition values and the
per-file min/max statistics of the log, then by Parquet row-group statistics. A journal opened
with ``delta_version=N`` (or ``journal.pinned()``) reads the table as it was at commit ``N`` and
nothing committed after it: the pieces of one analysis (the shards of a Dask run) read the same
events however many appends land meanwhile. It is read-only: appends, purges, redactions and
compaction refuse it (``Journal.refuse_writes``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import re
import shutil
import tempfile
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import (
    BloomFilterProperties,
    ColumnProperties,
    CommitProperties,
    DeltaTable,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import DeltaError
from deltalake.transaction import AddAction, RemoveAction

from toolkit.errors import (
    ConcurrencyError,
    DataFileError,
    EventValidationError,
    JournalExistsError,
    JournalNotFoundError,
    ToolkitError,
)
from toolkit.journal.appendworkers import (
    PARALLEL_MIN_ROWS,
    STALL_S,
    AppendWorkers,
    FileLayout,
    HashedChunks,
    Written,
    default_workers,
    gather,
    hand_out,
    pool,
    write_part,
)
from toolkit.journal.assign import KNOWN_COLUMNS, KNOWN_IDS, chain_starts, hash_chunks, number
from toolkit.journal.config import CONFIG_FILE, JournalConfig, write_atomic
from toolkit.journal.location import S3Location, check_bucket, delta_storage_options, is_remote, open_input
from toolkit.journal.lock import write_lock
from toolkit.journal.prepare import INPUT_SCHEMA, check_stream_type, events_to_table, validate_table_pending
from toolkit.journal.schema import (
    ARROW_SCHEMA,
    COLUMN_NAMES,
    PARTITION_COLUMNS,
    SCHEMA_VERSION,
)
from toolkit.journal.tracecontext import stamp_traceparent

EVENTS_TABLE = "events"
#: the highest position given before a purge removed events (which may have held it): positions
#: are never given twice, so position-ordered readers (projections, exports) never miss one
POSITIONS_FILE: Final = "positions.json"
#: batches ``append_batches`` writes ahead of their commits (the next one is validated meanwhile):
#: with two, this process and the workers go on to the next batch without waiting for each other
APPEND_FLIGHTS: Final = 2
UTC = dt.UTC


@dataclass(frozen=True)
class FileInfo:
    """One active data file as the Delta log describes it."""

    path: str  # absolute
    stream_type: str
    day: dt.date
    rows: int
    min_stream_id: str | None
    max_stream_id: str | None
    max_position: int | None


@dataclass(frozen=True)
class _Footer:
    """An open data file with its row groups' stream_id ranges (read once per file)."""

    file: pq.ParquetFile
    ranges: tuple[tuple[str | None, str | None], ...]

    @classmethod
    def load(cls, path: str) -> _Footer:
        remote = is_remote(path)
        with reading_data_file(path):
            pf = pq.ParquetFile(open_input(path), memory_map=not remote, pre_buffer=remote)
        idx = pf.schema_arrow.get_field_index("stream_id")
        if idx < 0:  # another file put in its place: no journal data file (verify names it unreadable)
            raise DataFileError.unreadable(path, "no stream_id column: not a journal data file")
        md = pf.metadata
        ranges = []
        for i in range(md.num_row_groups):
            st = md.row_group(i).column(idx).statistics
            ranges.append((st.min, st.max) if st is not None and st.has_min_max else (None, None))
        return cls(pf, tuple(ranges))

    def row_groups_holding(self, wanted: set[str]) -> list[int]:
        return [
            i
            for i, (lo, hi) in enumerate(self.ranges)
            if lo is None or hi is None or any(lo <= s <= hi for s in wanted)
        ]


@dataclass
class Head:
    stream_type: str
    version: int
    hash: str | None  # None until needed: looked up on the stream's next append
    first_day: dt.date
    last_day: dt.date


@dataclass
class AppendResult:
    """What a commit did. ``skipped`` counts events already in the journal (same id, same content)."""

    appended: int = 0
    skipped: int = 0
    streams: int = 0
    first_position: int | None = None
    last_position: int | None = None
    delta_version: int | None = None
    heads: dict[str, int] = field(default_factory=dict)
    #: by column, how many skipped events came with a value the journal's copy lacks (it keeps
    #: what it recorded first: an event id names one event)
    lacking: dict[str, int] = field(default_factory=dict)

    def lacking_note(self) -> str | None:
        """What ``lacking`` means, in a sentence (None when nothing was left out)."""
        if not self.lacking:
            return None
        cols = ", ".join(f"{c} ×{n}" for c, n in self.lacking.items())
        return (
            f"events already in the journal came again with values its copy lacks ({cols}); the journal "
            "keeps what it recorded first (an event id names one event: give a corrected event a new id)"
        )


@contextlib.contextmanager
def reading_data_file(path: str) -> Iterator[None]:
    """Turn pyarrow's errors for a data file that is missing or not readable Parquet into
    DataFileError naming it. Errors of the system (no permission, a failing disk) pass as they are."""
    try:
        yield
    except FileNotFoundError as e:
        raise DataFileError.unreadable(path, e) from e
    except pa.ArrowInvalid as e:
        raise DataFileError.unreadable(path, e) from e
    except OSError as e:
        if type(e) is not OSError or e.errno is not None:  # the system's, not a Parquet decoder's
            raise
        raise DataFileError.unreadable(path, e) from e


def log_holds(log: Path | S3Location, version: int) -> bool:
    """Whether the Delta log ``log`` still holds the commit file of ``version``: history erasure
    (``rewrite.erase_table_history``) deletes it behind a newer checkpoint, and then "no commit
    file after it" no longer means "no new commit"."""
    return (log / f"{version:020d}.json").exists()


class Journal:
    """A canonical event journal on disk.

    >>> j = Journal.in_memory()
    >>> r = j.append("run-1", [{"event_type": "user_message", "data": {"text": "hi"}}], expected_version=0)
    >>> (r.appended, r.heads)
    (1, {'run-1': 1})
    >>> j.read_stream("run-1").column("version").to_pylist()
    [1]
    >>> j.close()
    """

    def __init__(
        self,
        path: Path | S3Location,
        config: JournalConfig,
        *,
        temporary: bool = False,
        delta_version: int | None = None,
    ) -> None:
        self.path = path
        self.config = config
        self._temporary = temporary
        self._pinned = delta_version  # read the events table at this Delta version only (read-only)
        self._dt: DeltaTable | None = None
        self._seen_version: int | None = None
        self._files: dict[str, FileInfo] = {}
        self._heads: dict[str, Head] = {}
        self._heads_scanned: set[str] = set()
        self._footers: dict[str, _Footer] = {}
        self._checked_files: set[str] = set()  # data files check_data_files found whole
        self._rg_cache: OrderedDict[tuple[str, int], pa.Table] = OrderedDict()
        self._rg_cache_bytes = 0
        self.row_group_cache_bytes = 64 << 20
        self._columns: list[str] | None = None
        self._high_water: tuple[int | None, int] = (None, 0)  # (Delta version read at, POSITIONS_FILE's value)
        #: worker processes a large append hashes and writes parts in (0: this process only)
        self.append_workers = default_workers()
        #: appends of fewer rows stay in this process
        self.parallel_append_rows = PARALLEL_MIN_ROWS
        #: a worker silent this long while its part is awaited is killed and the append fails
        self.worker_stall_s = STALL_S

    # ------------------------------------------------------------------ opening

    @property
    def events_uri(self) -> str:
        return str(self.path / EVENTS_TABLE)

    @property
    def remote(self) -> bool:
        """True for a journal in object storage (``s3://bucket/prefix``)."""
        return isinstance(self.path, S3Location)

    @property
    def storage_options(self) -> dict[str, str] | None:
        """deltalake's storage options for a remote journal (None for a local one)."""
        return delta_storage_options() if self.remote else None

    @classmethod
    def create(cls, path: str | Path, *, exist_ok: bool = False, config: JournalConfig | None = None) -> Journal:
        if is_remote(path):
            return cls._create_remote(S3Location.parse(str(path)), exist_ok=exist_ok, config=config)
        p = Path(path).expanduser().absolute()
        if (p / CONFIG_FILE).exists():
            if exist_ok:
                return cls.open(p)
            raise JournalExistsError(f"{p}: a journal already exists here", hint=f"open it with -j {p}", path=str(p))
        if p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise JournalExistsError(
                f"{p}: exists and is not an empty directory",
                hint="choose a new path for the journal",
                path=str(p),
            )
        cfg = config or JournalConfig()
        p.mkdir(parents=True, exist_ok=True)
        DeltaTable.create(
            str(p / EVENTS_TABLE),
            ARROW_SCHEMA,
            partition_by=list(cfg.partition_by),
            name="events",
            description=f"agent-journal-toolkit canonical events, schema {SCHEMA_VERSION}",
            configuration={"delta.dataSkippingStatsColumns": ",".join(STATS_COLUMNS)},
        )
        write_atomic(p / CONFIG_FILE, cfg.to_toml())  # last: a journal exists once its config does
        return cls(p, cfg)

    @classmethod
    def _create_remote(cls, loc: S3Location, *, exist_ok: bool, config: JournalConfig | None) -> Journal:
        check_bucket(loc)
        if (loc / CONFIG_FILE).is_file():
            if exist_ok:
                return cls.open(str(loc))
            raise JournalExistsError(
                f"{loc}: a journal already exists here", hint=f"open it with -j {loc}", path=str(loc)
            )
        if loc.any_children():
            raise JournalExistsError(
                f"{loc}: the prefix holds other objects", hint="choose a new prefix for the journal", path=str(loc)
            )
        cfg = config or JournalConfig()
        DeltaTable.create(
            str(loc / EVENTS_TABLE),
            ARROW_SCHEMA,
            partition_by=list(cfg.partition_by),
            name="events",
            description=f"agent-journal-toolkit canonical events, schema {SCHEMA_VERSION}",
            configuration={"delta.dataSkippingStatsColumns": ",".join(STATS_COLUMNS)},
            storage_options=delta_storage_options(),
        )
        (loc / CONFIG_FILE).write_text(cfg.to_toml())  # last: a journal exists once its config does
        return cls(loc, cfg)

    @classmethod
    def open(cls, path: str | Path, *, delta_version: int | None = None) -> Journal:
        """The journal at ``path``; with ``delta_version``, read-only and as it was at that commit."""
        if is_remote(path):
            loc = S3Location.parse(str(path))
            check_bucket(loc)
            if not (loc / CONFIG_FILE).is_file():
                raise JournalNotFoundError.at(str(loc))
            text = (loc / CONFIG_FILE).read_text()
            return cls(loc, JournalConfig.from_toml(text, origin=str(loc / CONFIG_FILE)), delta_version=delta_version)
        p = Path(path).expanduser().absolute()
        cfg_path = p / CONFIG_FILE
        if not cfg_path.is_file():
            raise JournalNotFoundError.at(str(p))
        cfg = JournalConfig.from_toml(cfg_path.read_text(encoding="utf-8"), origin=str(cfg_path))
        return cls(p, cfg, delta_version=delta_version)

    def pinned(self, delta_version: int | None = None) -> Journal:
        """A read-only view of this journal at one Delta version (default: the current one).

        Its reads never see a later commit, so every part of an analysis reads the same events.
        """
        return Journal(self.path, self.config, delta_version=self.refresh() if delta_version is None else delta_version)

    @property
    def pinned_version(self) -> int | None:
        """The Delta version a pinned journal reads (None: it follows new commits)."""
        return self._pinned

    def refuse_writes(self, operation: str) -> None:
        """A pinned journal is read-only: every write (``operation``: append, purge, …) is refused
        before it reads anything, as its heads and files are those of an older version."""
        if self._pinned is not None:
            raise ToolkitError(
                f"{self.path}: this journal object reads Delta version {self._pinned} only; it cannot {operation}",
                hint=f"{operation} through Journal.open(path) without delta_version",
            )

    @classmethod
    def in_memory(cls) -> Journal:
        """A throw-away journal in RAM (``/dev/shm`` where there is one), removed by ``close``."""
        shm = Path("/dev/shm")
        base = tempfile.mkdtemp(prefix="journal-", dir=shm if shm.is_dir() else None)
        j = cls.create(Path(base) / "journal")
        j._temporary = True
        return j

    def close(self) -> None:
        self._dt = None
        self._footers.clear()
        self._rg_cache.clear()
        self._rg_cache_bytes = 0
        if self._temporary and isinstance(self.path, Path):
            shutil.rmtree(self.path.parent, ignore_errors=True)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ Delta state

    def delta_table(self) -> DeltaTable:
        if self._dt is None:
            try:
                self._dt = DeltaTable(self.events_uri, version=self._pinned, storage_options=self.storage_options)
            except (DeltaError, OSError) as e:
                if self._pinned is not None:
                    raise JournalNotFoundError(
                        f"{self.events_uri}: the events table at Delta version {self._pinned} cannot be opened: {e}",
                        hint="its log was cut since (compact --vacuum, purge, redact); rerun the command",
                        delta_version=self._pinned,
                    ) from e
                raise JournalNotFoundError(
                    f"{self.events_uri}: the events table cannot be opened: {_without_backtrace(str(e))}",
                    hint="its Delta log (events/_delta_log) is damaged or incomplete: restore the journal from a "
                    "backup (or start another one with journal init NEW_PATH)",
                ) from e
        return self._dt

    def refresh(self) -> int:
        """Catch up with commits by any process; returns the Delta table version.

        Delta commits are the numbered files of ``_delta_log/``: when the file after the version
        already loaded does not exist there is nothing new, and one ``stat`` says so. A pinned
        journal stays at its version.
        """
        table = self.delta_table()
        if self._pinned is not None:
            if self._seen_version != self._pinned:
                self._load_files(table)
                self._seen_version = self._pinned
                self._columns = None
            return self._pinned
        if self._seen_version is not None:
            log = self.path / EVENTS_TABLE / "_delta_log"
            if not (log / f"{self._seen_version + 1:020d}.json").exists():
                if self.remote or log_holds(log, self._seen_version):  # one HEAD less on S3
                    return self._seen_version
                self._dt = None  # the log before a newer checkpoint was cut: load the table anew
                table = self.delta_table()
        table.update_incremental()
        version = int(table.version())
        if version != self._seen_version:
            self._load_files(table)
            self._seen_version = version
            self._columns = None
        return version

    def _load_files(self, table: DeltaTable) -> None:
        actions = pa.table(table.get_add_actions(flatten=True))
        cols = set(actions.column_names)

        def col(name: str) -> list[Any]:
            return actions.column(name).to_pylist() if name in cols else [None] * actions.num_rows

        root = self.events_uri
        files: dict[str, FileInfo] = {}
        for rel, st, day, rows, lo, hi, maxpos in zip(
            col("path"),
            col("partition.stream_type"),
            col("partition.day"),
            col("num_records"),
            col("min.stream_id"),
            col("max.stream_id"),
            col("max.position"),
            strict=True,
        ):
            path = f"{root}/{rel}"
            files[path] = FileInfo(path, st, day, int(rows or 0), lo, hi, maxpos)
        self._files = files
        self._footers = {p: v for p, v in self._footers.items() if p in files}

    def files(
        self,
        *,
        stream_types: Sequence[str] | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        stream_ids: Sequence[str] | None = None,
        after_position: int | None = None,
    ) -> list[FileInfo]:
        """Active data files, pruned by partition values and stream_id statistics (and, with
        ``after_position``, position statistics: only files that may hold a later position)."""
        self.refresh()
        out = []
        lo_day = since.astimezone(UTC).date() if since else None
        hi_day = until.astimezone(UTC).date() if until else None
        ids = sorted(stream_ids) if stream_ids is not None else None
        for f in self._files.values():
            if stream_types is not None and f.stream_type not in stream_types:
                continue
            if (lo_day and f.day < lo_day) or (hi_day and f.day > hi_day):
                continue
            if ids is not None and f.min_stream_id is not None and f.max_stream_id is not None:
                if not any(f.min_stream_id <= s <= f.max_stream_id for s in ids):
                    continue
            if after_position is not None and f.max_position is not None and f.max_position <= after_position:
                continue
            out.append(f)
        return sorted(out, key=lambda f: f.path)

    def file_paths(self, **filters: Any) -> list[str]:
        return [f.path for f in self.files(**filters)]

    @property
    def delta_version(self) -> int:
        return self.refresh()

    def max_position(self) -> int:
        """The highest position ever given: of the events in the journal, or of events a purge
        removed since (``POSITIONS_FILE``), so positions are never given twice."""
        version = self.refresh()
        in_files = max((f.max_position or 0 for f in self._files.values()), default=0)
        return max(in_files, self._removed_high_water(version))

    def _removed_high_water(self, version: int) -> int:
        """``POSITIONS_FILE``'s position, read again only after a new commit (a purge is one)."""
        seen, value = self._high_water
        if seen != version:
            f = self.path / POSITIONS_FILE
            value = int(json.loads(f.read_text())["max_position"]) if f.is_file() else 0
            self._high_water = (version, value)
        return value

    def keep_max_position(self) -> None:
        """Before events are removed (the write lock held): record the highest position given so far,
        which their removal may take out of the files. Written ahead of the removal's commit: if
        that never comes, the events are still there and the record says nothing new."""
        value = self.max_position()
        text = json.dumps({"max_position": value}) + "\n"
        if isinstance(self.path, Path):
            write_atomic(self.path / POSITIONS_FILE, text)
        else:
            (self.path / POSITIONS_FILE).write_text(text)
        self._high_water = (self._seen_version, value)

    # ------------------------------------------------------------------ heads

    def heads(self) -> dict[str, Head]:
        """Type, last version and day span of every stream (scans only files not seen before).

        Reads two columns of each new file; the head hash of a stream is looked up when it is
        next appended to.
        """
        self.refresh()
        new = [f for p, f in self._files.items() if p not in self._heads_scanned]
        for f in new:
            with reading_data_file(f.path):
                t = pq.read_table(open_input(f.path), columns=["stream_id", "version"])
            agg = (
                pl.from_arrow(t)  # type: ignore[union-attr]
                .lazy()
                .group_by("stream_id")
                .agg(pl.col("version").max())
                .collect()
            )
            for sid, version in agg.iter_rows():
                head = self._heads.get(sid)
                if head is None:
                    self._heads[sid] = Head(f.stream_type, version, None, f.day, f.day)
                    continue
                if version > head.version:
                    head.version, head.hash = version, None
                head.first_day = min(head.first_day, f.day)
                head.last_day = max(head.last_day, f.day)
        self._heads_scanned = set(self._files)
        return self._heads

    def stream_version(self, stream_id: str) -> int:
        head = self.heads().get(stream_id)
        return head.version if head else 0

    # ------------------------------------------------------------------ reads

    def _footer(self, path: str) -> _Footer:
        hit = self._footers.get(path)
        if hit is None:
            hit = _Footer.load(path)
            self._footers[path] = hit
        return hit

    def warm_up(self) -> int:
        """Load the stream heads and every active file's Parquet footer now.

        For long-lived readers (notebooks, services): afterwards a one-stream read opens only
        the files of the stream's type and days, whatever the stream ids look like. Without it,
        reads prune by the files' stream_id ranges only (tight for time-ordered ids such as
        UUIDv7 or the demo's run numbers, loose for random ids). Returns the number of files.
        """
        self.heads()
        for f in self.files():
            self._footer(f.path)
        return len(self._footers)

    def _row_group(self, path: str, footer: _Footer, group: int) -> pa.Table:
        """A decoded row group, from a small LRU cache (data files never change once written)."""
        key = (path, group)
        hit = self._rg_cache.get(key)
        if hit is not None:
            self._rg_cache.move_to_end(key)
            return hit
        with reading_data_file(path):
            t = footer.file.read_row_group(group)
        self._rg_cache[key] = t
        self._rg_cache_bytes += t.nbytes
        while self._rg_cache_bytes > self.row_group_cache_bytes and len(self._rg_cache) > 1:
            _, old = self._rg_cache.popitem(last=False)
            self._rg_cache_bytes -= old.nbytes
        return t

    def table_columns(self) -> list[str]:
        """Columns the Delta table has (an older minor schema may lack newer nullable ones)."""
        self.refresh()
        if self._columns is None:
            self._columns = [f.name for f in self.delta_table().schema().fields]
        return self._columns

    def _file_columns(self, pf: pq.ParquetFile, wanted: Sequence[str]) -> list[str]:
        """The wanted columns this file has (files written before a schema grew lack the new ones)."""
        present = set(pf.schema_arrow.names)
        return [c for c in wanted if c not in PARTITION_COLUMNS and c in present]

    def complete(self, table: pa.Table, f: FileInfo, columns: Sequence[str]) -> pa.Table:
        """Add partition values and columns the file predates (as nulls); conform to the schema."""
        n = table.num_rows
        for c in columns:
            if c in table.column_names:
                continue
            if c == "stream_type":
                table = table.append_column(c, pa.repeat(pa.scalar(f.stream_type, pa.string()), n))
            elif c == "day":
                table = table.append_column(c, pa.repeat(pa.scalar(f.day, pa.date32()), n))
            else:
                table = table.append_column(c, pa.nulls(n, ARROW_SCHEMA.field(c).type))
        table = table.select(list(columns))
        schema = pa.schema([ARROW_SCHEMA.field(c) for c in columns])
        if all(a.type == b.type for a, b in zip(table.schema, schema, strict=True)):
            return pa.Table.from_arrays(table.columns, schema=schema)  # only nullability differs
        return table.cast(schema)

    def read_file(self, f: FileInfo, columns: Sequence[str] | None = None) -> pa.Table:
        """One active data file with the given canonical columns (all by default)."""
        cols = list(columns) if columns is not None else list(COLUMN_NAMES)
        pf = self._footer(f.path).file
        with reading_data_file(f.path):
            t = pf.read(columns=self._file_columns(pf, cols))
        return self.complete(t, f, cols)

    def check_data_files(self, paths: Iterable[str]) -> None:
        """DataFileError naming the first of ``paths`` (local data files) that is missing or cut short.

        For readers that hand the files to another engine (Polars), whose errors do not name the
        file: a whole Parquet file ends with its footer's length and ``PAR1``. Each file is checked
        once (data files never change once written); a file damaged inside is found when read.
        """
        for path in paths:
            if path in self._checked_files or path in self._footers or is_remote(path):
                continue
            with reading_data_file(path), open(path, "rb") as fh:
                size = fh.seek(0, 2)
                fh.seek(max(size - 8, 0))
                tail = fh.read(8)
            if size < 12 or tail[4:] != b"PAR1" or int.from_bytes(tail[:4], "little") > size - 12:
                raise DataFileError.unreadable(path, f"its {size} bytes end in no Parquet footer")
            self._checked_files.add(path)

    def read_stream(
        self,
        stream_id: str,
        columns: Sequence[str] | None = None,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
    ) -> pa.Table:
        """One stream ordered by version, touching only the row groups that can hold it."""
        return self.read_streams([stream_id], columns, from_version=from_version, to_version=to_version)

    def read_streams(
        self,
        stream_ids: Sequence[str],
        columns: Sequence[str] | None = None,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
    ) -> pa.Table:
        cols = list(columns) if columns is not None else list(COLUMN_NAMES)
        unknown = [c for c in cols if c not in COLUMN_NAMES]
        if unknown:
            raise EventValidationError.field(unknown[0], 0, "not a column of the canonical schema")
        read = list(dict.fromkeys([*cols, "stream_id", "version"]))
        wanted = set(stream_ids)
        self.refresh()
        candidates = self._candidate_files(wanted)
        pieces: list[pa.Table] = []
        for f in candidates:
            footer = self._footer(f.path)
            groups = footer.row_groups_holding(wanted)
            if not groups:
                continue
            t = pa.concat_tables([self._row_group(f.path, footer, g) for g in groups])
            t = t.select([c for c in read if c in t.column_names])  # before the filter copies them
            mask = (
                pc.equal(t.column("stream_id"), next(iter(wanted)))
                if len(wanted) == 1
                else pc.is_in(t.column("stream_id"), pa.array(sorted(wanted), pa.string()))
            )
            t = t.filter(mask)
            if t.num_rows:
                pieces.append(self.complete(t, f, read))
        if not pieces:
            return pa.schema([ARROW_SCHEMA.field(c) for c in cols]).empty_table()
        out = pa.concat_tables(pieces)
        if from_version is not None or to_version is not None:
            v = out.column("version")
            mask = pc.and_(pc.greater_equal(v, from_version or 1), pc.less_equal(v, to_version or (1 << 62)))
            out = out.filter(mask)
        # inside one file a stream's rows are in version order (files are written in position
        # order or sorted by stream and version), so rows of one file rarely need sorting: only in
        # files deltalake wrote from several batches before ``one_batch`` (remote journals, and
        # appends that grew the schema)
        if len(pieces) > 1 or len(wanted) > 1 or not _ascending(out.column("version")):
            out = out.sort_by([("stream_id", "ascending"), ("version", "ascending")])
        return out.select(cols)

    def _candidate_files(self, wanted: set[str]) -> list[FileInfo]:
        # heads prune by day only while they cover every active file: another process may have
        # appended to a wanted stream, on a later day, since they were scanned
        fresh = bool(self._heads_scanned) and self._heads_scanned.issuperset(self._files)
        heads = self._heads if fresh else {}
        out = []
        for f in self._files.values():
            if f.min_stream_id is not None and f.max_stream_id is not None:
                if not any(f.min_stream_id <= s <= f.max_stream_id for s in wanted):
                    continue
            known = [heads[s] for s in wanted if s in heads]
            if known and len(known) == len(wanted):
                if not any(h.stream_type == f.stream_type and h.first_day <= f.day <= h.last_day for h in known):
                    continue
            out.append(f)
        return out

    def read_all(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole journal (tests and small journals; analysis should use the engines)."""
        cols = list(columns) if columns is not None else list(COLUMN_NAMES)
        read = list(dict.fromkeys([*cols, "position"]))  # position orders the rows
        pieces = [self.read_file(f, read) for f in self.files()]
        if not pieces:
            return pa.schema([ARROW_SCHEMA.field(c) for c in cols]).empty_table()
        return pa.concat_tables(pieces).sort_by("position").select(cols)

    # ------------------------------------------------------------------ writes

    def append(
        self,
        stream_id: str,
        events: Iterable[Mapping[str, Any]],
        *,
        expected_version: int | None = None,
        stream_type: str | None = None,
    ) -> AppendResult:
        """Append events to one stream; ``expected_version`` (0 = new stream) guards concurrency."""
        if stream_type is not None:
            check_stream_type(stream_type)
        rows = []
        for i, e in enumerate(events):
            if not isinstance(e, Mapping):
                raise EventValidationError.field("<event>", i, f"expected an object, got {type(e).__name__}")
            if e.get("stream_id", stream_id) != stream_id:
                raise EventValidationError.field(
                    "stream_id", i, f"{e.get('stream_id')!r} is not the stream {stream_id!r}"
                )
            rows.append({**e, "stream_id": stream_id})
        table = events_to_table(stamp_traceparent(rows))
        if stream_type is not None:
            table = _fill(table, "stream_type", stream_type)
        expected = {stream_id: expected_version} if expected_version is not None else None
        return self._commit(table, expected)

    def append_batch(
        self,
        events: pa.Table | Iterable[Mapping[str, Any]],
        *,
        expected_versions: Mapping[str, int] | None = None,
        stream_type: str | None = None,
    ) -> AppendResult:
        """Bulk append of many streams in one commit (importers, benchmarks)."""
        if stream_type is not None:
            check_stream_type(stream_type)
        # dict events get the active OpenTelemetry span's traceparent where they have none; Arrow
        # tables (imports) are kept as the source wrote them
        settle = None
        if isinstance(events, pa.Table):
            self._start_workers(events.num_rows)  # they start while the batch is validated and numbered
            # the JSON of data is checked while the batch is numbered; settled before anything is written
            table, settle = validate_table_pending(events)
        else:
            table = events_to_table(stamp_traceparent(events))
        try:
            if stream_type is not None:
                table = _fill(table, "stream_type", stream_type)
            result = self._commit(table, expected_versions, settle)
            if settle is not None:
                settle()  # (an empty batch commits nothing and has not waited)
            return result
        except BaseException:
            if settle is not None:
                settle()  # a validation error comes before any other
            raise

    def append_validated(self, table: pa.Table) -> AppendResult:
        """``append_batch`` of a table that ``prepare.validate_table`` returned (not checked again)."""
        if table.schema != INPUT_SCHEMA:
            raise EventValidationError.field("<table>", 0, "not a table that validate_table returned")
        self._start_workers(table.num_rows)
        return self._commit(table, None)

    def plan_validated(self, table: pa.Table) -> AppendResult:
        """What ``append_validated(table)`` would do now, writing nothing: ``appended`` and
        ``skipped`` counted, and the same errors raised (a dry run)."""
        if table.schema != INPUT_SCHEMA:
            raise EventValidationError.field("<table>", 0, "not a table that validate_table returned")
        if table.num_rows == 0:
            return AppendResult()
        batch = self._numbered(table, None)
        return AppendResult(
            appended=batch.rows.num_rows, skipped=batch.skipped, streams=len(batch.streams), lacking=batch.lacking
        )

    def _start_workers(self, rows: int) -> None:
        """Start the worker processes an append of ``rows`` rows will use (if it will)."""
        if self.remote or not self.append_workers or rows < self.parallel_append_rows:
            return
        workers = pool()
        if workers.try_acquire():
            try:
                workers.start(self.append_workers)
            finally:
                workers.release()

    def _commit(
        self, table: pa.Table, expected: Mapping[str, int] | None, settle: Callable[[], None] | None = None
    ) -> AppendResult:
        """Number and write ``table`` in one commit; ``settle`` (validation still running) is called
        before the first file is written."""
        self.refuse_writes("append")
        if table.num_rows == 0:
            return AppendResult()
        with write_lock(self.path, self.config.lock_timeout_s):
            batch = self._numbered(table, expected, settle)
            if not batch.rows.num_rows:
                return self._landed(batch, None)
            return self._landed(batch, self._write(batch.rows, chain_starts(batch.streams, self.heads())))

    def _numbered(
        self,
        table: pa.Table,
        expected: Mapping[str, int] | None,
        settle: Callable[[], None] | None = None,
        after: int | None = None,
        streams: set[str] | None = None,
    ) -> _Batch:
        """Idempotency and numbering of one batch (the write lock held); positions follow ``after``
        when a batch numbered before this one is not committed yet. ``streams``: the batch's stream
        ids, when the caller has them."""
        # each event's index in the caller's batch: error messages name it, positions follow it
        table = table.append_column("_idx", pl.int_range(0, table.num_rows, dtype=pl.Int64, eager=True).to_arrow())
        if streams is None:
            streams = set(pc.unique(table.column("stream_id")).to_pylist())
        numbered, skipped, lacking = self._number(table, streams, self.heads(), expected, after)
        if settle is not None:
            settle()
        return _Batch(numbered, streams, skipped, lacking)

    def _landed(self, batch: _Batch, written: pl.DataFrame | None) -> AppendResult:
        """The result of a batch whose rows are committed (``written``: their ``head_rows``)."""
        result = AppendResult(skipped=batch.skipped, streams=len(batch.streams), lacking=batch.lacking)
        if written is not None:
            result.delta_version = self.refresh()
            positions = batch.rows.column("position")
            result.appended = batch.rows.num_rows
            result.first_position = pc.min(positions).as_py()
            result.last_position = pc.max(positions).as_py()
            self._update_heads(written)
        heads = self._heads
        result.heads = {sid: head.version if (head := heads.get(sid)) is not None else 0 for sid in batch.streams}
        return result

    def append_batches(
        self, batches: Iterable[pa.Table], *, on_commit: Callable[[AppendResult], None] | None = None
    ) -> list[AppendResult]:
        """``append_batch`` of each Arrow table in turn (one commit each, in order), with the next
        batch validated and numbered while the one before is hashed and written.

        The same journal as the loop of ``append_batch`` calls, faster: the validation and
        numbering of a batch (a fifth of its time) no longer leave the other cores idle, and up to
        ``APPEND_FLIGHTS`` batches are written at once, so this process's writer thread and the
        workers go from one batch's part to the next without waiting for each other's or for the
        commit. A batch that touches a stream of a batch in flight waits for its commit first. When
        a batch fails (bad input, a concurrency error, a failed write or commit), the batches before
        it are committed, it and the ones after are not (the files written for the ones after it are
        deleted; those of a failed commit stay for ``vacuum``, as the commit may have happened), and
        its error is raised. The write lock is held throughout.
        ``on_commit`` is called with each batch's result as it is committed (progress bars); it
        and the batch generator must not write to this journal (``LockReentryError``).
        The next batch is taken from ``batches`` while the one before is written, so a generator
        that builds them overlaps with the writing too. Remote journals and journals whose schema
        grows append batch by batch.
        """
        self.refuse_writes("append")
        if self.remote or not set(COLUMN_NAMES).issubset(self.table_columns()):
            out = []
            for b in batches:
                out.append(self.append_batch(b))
                if on_commit is not None:
                    on_commit(out[-1])
            return out
        results = _Results(on_commit)
        flights = _Flights(self, results)
        layout = FileLayout(self.events_uri, tuple(self.config.partition_by), STATS_COLUMNS, self.config.row_group_rows)
        workers = pool() if self.append_workers else None
        if workers is not None and not workers.try_acquire():
            workers = None  # another thread of this process appends with them: this one writes here
        count = -1  # workers started (on the first batch large enough)
        try:
            with (
                write_lock(self.path, self.config.lock_timeout_s),
                ThreadPoolExecutor(1, "journal-append") as writer,
                ThreadPoolExecutor(1, "journal-append-parts") as gatherer,
            ):
                try:
                    # their threads start now: a Ctrl-C while ``submit`` waits for one to start
                    # leaves the job queued and run, its future (which commits or deletes the
                    # files) never returned
                    for executor in (writer, gatherer):
                        executor.submit(int).result()
                    for events in batches:
                        if events.num_rows == 0:
                            validate_table_pending(events)[1]()  # (as append_batch: a bad schema is an error)
                            flights.land_all()
                            results.append(AppendResult())
                            continue
                        parallel = workers is not None and events.num_rows >= self.parallel_append_rows
                        if parallel and count < 0:
                            assert workers is not None
                            count = workers.start(self.append_workers)  # they start while this batch is validated
                        batch = self._numbered_behind(flights, events)
                        flights.make_room(for_rows=batch.rows.num_rows > 0)
                        if not batch.rows.num_rows:
                            results.append(self._landed(batch, None))
                            continue
                        starts = chain_starts(batch.streams, self.heads())
                        helpers = workers if parallel else None
                        flights.add(
                            batch, self._start_write(writer, gatherer, batch.rows, starts, layout, helpers, count)
                        )
                    flights.land_all()
                except BaseException:
                    try:
                        flights.land_all()  # an error while batches before it were written: those land first
                    finally:
                        flights.abandon(layout)
                    raise
        finally:
            if workers is not None:
                workers.release()
        return results

    def _numbered_behind(self, flights: _Flights, events: pa.Table) -> _Batch:
        """``events`` validated and numbered after the batches in flight (their commits waited for
        first when it touches one of their streams: their heads are its starting point)."""
        table, settle = validate_table_pending(events)
        try:
            touched = set(pc.unique(table.column("stream_id")).to_pylist())
        except BaseException:
            settle()
            raise
        if flights.touch(touched):
            try:
                flights.land_all()
            except BaseException:
                # a batch before failed: its error, not this batch's, is the one to raise
                with contextlib.suppress(BaseException):
                    settle()
                raise
        try:
            return self._numbered(table, None, settle, flights.last_position(), touched)
        except BaseException:
            settle()  # a validation error comes before any other
            raise

    def _start_write(
        self,
        writer: ThreadPoolExecutor,
        gatherer: ThreadPoolExecutor,
        numbered: pa.Table,
        starts: dict[str, bytes],
        layout: FileLayout,
        workers: AppendWorkers | None,
        count: int,
    ) -> Future[Written]:
        """Start hashing and writing ``numbered`` behind the batches before it: the first part in
        ``writer``'s thread, the others in the workers (handed over here), gathered in ``gatherer``'s."""
        if workers is None or count < 1:
            return writer.submit(write_part, numbered, starts, layout, hash_chunks)
        first, pending, failure = hand_out(workers, count, numbered, starts, layout, self.worker_stall_s)
        if failure is None:
            try:
                local = writer.submit(write_part, first, starts, layout, hash_chunks)
            except BaseException as e:
                failure = e
            else:
                return gatherer.submit(gather, local.result, pending, layout, self.worker_stall_s)
        # the workers answer the parts of the batches before first: the parts handed out are
        # gathered in the thread that reads those answers, after them (read here, those answers
        # were taken for these parts')
        gatherer.submit(gather, failure, pending, layout, self.worker_stall_s).result()  # raises the failure
        raise failure  # (for the type checker: gather raised it)

    def _write(self, numbered: pa.Table, starts: dict[str, bytes]) -> pl.DataFrame:
        """Hash and write ``numbered`` in one Delta commit; returns the new stream heads (``head_rows``).

        Local journals: ``_write_files`` then one commit of its add actions. Remote journals and
        tables whose schema grows: deltalake's writer, fed the hashed rows as one batch (``one_batch``).
        """
        grows = not set(COLUMN_NAMES).issubset(self.table_columns())
        if self.remote or grows:
            return self._write_deltalake(numbered, starts, grows, _append_properties(numbered.num_rows))
        actions, heads = self._write_files(numbered, starts)
        self._commit_actions(actions, _append_properties(numbered.num_rows))
        return heads

    def _write_files(
        self, numbered: pa.Table, starts: dict[str, bytes]
    ) -> tuple[list[AddAction | RemoveAction], pl.DataFrame]:
        """Hash ``numbered`` chunk by chunk while the chunks before are written: the add actions of
        its Parquet files (nothing committed) and the new stream heads.

        A thread computes the digests and the chain (Python and Polars) and hands each chunk to
        pyarrow's Parquet writer (it releases the GIL while it encodes, so hashing and writing
        overlap). A large append is cut into parts of whole streams, hashed and written by this
        process and worker processes at once (``appendworkers``).
        """
        layout = FileLayout(self.events_uri, tuple(self.config.partition_by), STATS_COLUMNS, self.config.row_group_rows)
        workers = pool() if self.append_workers and numbered.num_rows >= self.parallel_append_rows else None
        if workers is None or not workers.try_acquire():
            return write_part(numbered, starts, layout, hash_chunks)
        try:
            return self._write_parts(workers, numbered, starts, layout)
        finally:
            workers.release()

    def _write_parts(
        self, workers: AppendWorkers, numbered: pa.Table, starts: dict[str, bytes], layout: FileLayout
    ) -> Written:
        """``write_part`` of each part of ``numbered``: the first here, the others in workers."""
        count = workers.start(self.append_workers)
        first, pending, failure = hand_out(workers, count, numbered, starts, layout, self.worker_stall_s)
        local = failure or (lambda: write_part(first, starts, layout, hash_chunks))
        return gather(local, pending, layout, self.worker_stall_s)

    def _commit_actions(self, actions: list[AddAction | RemoveAction], properties: CommitProperties) -> None:
        self.delta_table().create_write_transaction(
            actions,
            mode="append",
            schema=ARROW_SCHEMA,
            partition_by=list(self.config.partition_by),
            commit_properties=properties,
        )

    def _write_deltalake(
        self, numbered: pa.Table, starts: dict[str, bytes], grows: bool, properties: CommitProperties
    ) -> pl.DataFrame:
        chunks = HashedChunks(numbered, starts, hash_chunks)
        try:
            write_deltalake(
                self.delta_table(),
                one_batch(pa.concat_tables(list(chunks))),  # hashed whole first: one batch keeps the row order
                mode="append",
                schema_mode="merge" if grows else None,  # a newer minor schema adds nullable columns
                partition_by=list(self.config.partition_by),
                writer_properties=append_writer_properties(self.config.row_group_rows),
                commit_properties=properties,
            )
        except BaseException:
            failure = chunks.stop()  # the hashing failure is the cause
            if failure is not None:
                raise failure from None
            raise
        chunks.stop()
        return chunks.heads()

    def _fill_head_hashes(self, stream_ids: list[str]) -> None:
        """Look up the last hash of streams whose head hash is not known yet."""
        if not stream_ids:
            return
        tails = self.read_streams(
            stream_ids, ["stream_id", "version", "hash"], from_version=min(self._heads[s].version for s in stream_ids)
        )
        last = pl.from_arrow(tails).group_by("stream_id").agg(pl.col("hash").sort_by("version").last())  # type: ignore[union-attr]
        for sid, h in last.iter_rows():
            self._heads[sid].hash = h
        missing = [s for s in stream_ids if self._heads[s].hash is None]
        if missing:  # never chain from genesis by mistake
            raise JournalNotFoundError(
                f"stream {missing[0]!r}: its last event cannot be read from the journal files",
                hint="run journal verify; the journal's files may have been removed by hand",
            )

    def _update_heads(self, written: pl.DataFrame) -> None:
        """Take in the ``head_rows`` of the rows just committed."""
        columns = [written.get_column(c).to_list() for c in ("stream_id", "stream_type", "version", "hash", "lo", "hi")]
        heads = self._heads
        with _collector_paused():
            for sid, st, version, h, lo, hi in zip(*columns, strict=True):
                head = heads.get(sid)
                if head is None:
                    heads[sid] = Head(st, version, h, lo, hi)
                else:
                    head.version, head.hash = version, h
                    head.first_day, head.last_day = min(head.first_day, lo), max(head.last_day, hi)
        # the files just written hold nothing the heads do not know
        self._heads_scanned = set(self._files)

    def _number(
        self,
        table: pa.Table,
        streams: set[str],
        heads: dict[str, Head],
        expected: Mapping[str, int] | None,
        after: int | None = None,
    ) -> tuple[pa.Table, int, dict[str, int]]:
        """Idempotency and numbering (``assign.number``), then the expected versions.

        A stream whose events in this batch are all already in the journal (same ids, same
        content) passes its expected-version check: that is a retry of an append that happened.
        """
        existing = sorted(streams & heads.keys())
        known = None
        if existing and table.column("event_id").null_count < table.num_rows:
            known = self.read_streams(existing, KNOWN_IDS)
        self._fill_head_hashes([s for s in existing if heads[s].hash is None])
        last = self.max_position() if after is None else max(after, self.max_position())
        prepared, skipped, lacking = number(
            table, heads, known, last, _now(), lambda streams: self.read_streams(streams, KNOWN_COLUMNS)
        )
        if expected:
            new_streams = set(pc.unique(prepared.column("stream_id")).to_pylist())
            for sid, exp in expected.items():
                actual = heads[sid].version if sid in heads else 0
                retried = sid in streams and sid not in new_streams
                if exp != actual and not retried:
                    raise ConcurrencyError.mismatch(sid, exp, actual)
        return prepared, skipped, lacking


# Columns whose per-file min/max the Delta log keeps (file pruning). Not the payloads or free text:
# their statistics would copy personal data into the log (beyond the reach of redaction) and bloat it.
STATS_COLUMNS = tuple(
    c
    for c in COLUMN_NAMES
    if c not in {"data", "metadata", "error", "payload_sha256", "prev_hash", "hash", *PARTITION_COLUMNS}
)


#: columns with bloom filters in the files that stay (DuckDB point lookups)
BLOOM_COLUMNS: Final = ("stream_id", "event_id")


def writer_properties(row_group_rows: int) -> WriterProperties:
    """Files that stay, written by deltalake (remote compaction): ZSTD and bloom filters."""
    bloom = ColumnProperties(bloom_filter_properties=BloomFilterProperties(True, fpp=0.01))
    return WriterProperties(
        compression="ZSTD",
        max_row_group_size=row_group_rows,
        column_properties={c: bloom for c in BLOOM_COLUMNS},
    )


def one_batch(table: pa.Table) -> pa.RecordBatchReader:
    """``table`` as a stream of one record batch: the input deltalake's writer keeps in order.

    deltalake (1.6.6) deals the batches of its input round-robin to one task per core and writes
    a partition's rows task after task, so with several batches a file holds, say, batches 1, 3,
    5, then 0, 2, 4: out of position (or stream and version) order, which the readers rely on.
    One batch stays in order, also when a partition is split into several files by size. String
    columns too long for 32-bit offsets become large strings (Delta has one string type).
    """
    for i, f in enumerate(table.schema):
        if f.type == pa.string() and (pc.sum(pc.binary_length(table.column(i))).as_py() or 0) >= 1 << 31:
            table = table.set_column(i, f.with_type(pa.large_string()), table.column(i).cast(pa.large_string()))
    table = table.combine_chunks()
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())


def append_writer_properties(row_group_rows: int) -> WriterProperties:
    """Files appends write: cheap to write (Snappy, no bloom filters); compaction rewrites them."""
    return WriterProperties(compression="SNAPPY", max_row_group_size=row_group_rows)


class _Results(list[AppendResult]):
    """The results of ``append_batches``, each handed to ``on_commit`` as it is added."""

    def __init__(self, on_commit: Callable[[AppendResult], None] | None) -> None:
        super().__init__()
        self.on_commit = on_commit

    def append(self, result: AppendResult) -> None:
        super().append(result)
        if self.on_commit is not None:
            self.on_commit(result)


@dataclass
class _Batch:
    """A batch numbered and not committed yet: its rows, the streams it touched, the events skipped."""

    rows: pa.Table
    streams: set[str]
    skipped: int
    lacking: dict[str, int]


class _Flights:
    """The batches of an ``append_batches`` written or being written, committed in order."""

    def __init__(self, journal: Journal, results: _Results) -> None:
        self.journal = journal
        self.results = results
        self.queue: deque[tuple[_Batch, Future[Written]]] = deque()
        self.failed = False  # a batch's write or commit failed: the ones after it are not committed

    def add(self, batch: _Batch, written: Future[Written]) -> None:
        self.queue.append((batch, written))

    def touch(self, streams: set[str]) -> bool:
        return any(batch.streams & streams for batch, _ in self.queue)

    def last_position(self) -> int | None:
        """The last position given to a batch in flight (the next batch's positions follow it)."""
        return pc.max(self.queue[-1][0].rows.column("position")).as_py() if self.queue else None

    def make_room(self, *, for_rows: bool) -> None:
        """Commit the oldest batches until another may be written (all of them before a batch with
        nothing to write, whose result must come after theirs)."""
        while len(self.queue) >= (APPEND_FLIGHTS if for_rows else 1):
            self.land()

    def land(self) -> None:
        """Commit the oldest batch in flight once its files are written."""
        batch, future = self.queue[0]
        try:
            actions, written = future.result()
        except BaseException:
            if future.done() and (future.cancelled() or future.exception() is not None):
                self.queue.popleft()  # its write failed: nothing to commit (its files are removed)
                self.failed = True
            # else interrupted while waiting (Ctrl-C): the batch stays in flight, and the caller's
            # handler waits for it and commits it rather than leave its files uncommitted
            raise
        self.queue.popleft()
        try:
            self.journal._commit_actions(actions, _append_properties(batch.rows.num_rows))
            self.results.append(self.journal._landed(batch, written))
        except BaseException:
            self.failed = True  # (or its on_commit callback)
            raise

    def land_all(self) -> None:
        while self.queue and not self.failed:
            self.land()

    def abandon(self, layout: FileLayout) -> None:
        """After a failed batch: those written after it are never committed; their files go."""
        while self.queue:
            _, future = self.queue.popleft()
            with contextlib.suppress(BaseException):
                layout.remove(future.result()[0])


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile: creating thousands of heads (no cycles among them)
    set off full collections over every object of the process (a third of the time of an update)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _append_properties(events: int) -> CommitProperties:
    return CommitProperties(
        custom_metadata={
            "toolkit.operation": "append",
            "toolkit.schema_version": SCHEMA_VERSION,
            "toolkit.events": str(events),
        }
    )


def _ascending(values: pa.ChunkedArray) -> bool:
    """Whether ``values`` increase strictly (one stream's rows in version order)."""
    return len(values) < 2 or bool(pc.all(pc.greater(values[1:], values[:-1])).as_py())


def _now() -> dt.datetime:
    """The ``recorded_at`` of an append (one clock read per commit)."""
    return dt.datetime.now(UTC)


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def _without_backtrace(text: str) -> str:
    r"""A deltalake error's text without the Rust backtrace it carries when RUST_BACKTRACE is set.

    >>> _without_backtrace("Kernel error: bad\n   0: <unknown>\n   1: start_thread\n")
    'Kernel error: bad'
    """
    lines = text.splitlines()
    cut = next((i for i, line in enumerate(lines) if re.match(r"\s*0: ", line)), len(lines))
    return "\n".join(lines[:cut]).rstrip()


def _fill(table: pa.Table, name: str, value: str) -> pa.Table:
    col = pc.fill_null(table.column(name), value)
    return _replace(table, name, col)
