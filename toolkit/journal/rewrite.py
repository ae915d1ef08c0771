"""Rewriting events in place — the one primitive under purge, archive ``--delete`` and redaction.

``replace_partitions`` replaces every file of the given ``(stream_type, day)`` partitions by
new rows in **one Delta commit** (an overwrite whose predicate names exactly those partitions),
so a crash leaves either the old files or the new ones, never a mix. Callers hold the journal's
write lock and record *why* (anchors, redaction records) in a side table *before* calling it,
so that every state a crash can leave verifies.

``erase_history`` then makes the replaced rows unrecoverable from the table: it vacuums every
file no longer referenced and drops the Delta log entries older than a fresh checkpoint (the
log's add actions carry per-file min/max statistics of every column, payloads included).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake

from toolkit.errors import InvalidPathError
from toolkit.journal.location import filesystem, is_remote
from toolkit.journal.prepare import STREAM_TYPE_RE
from toolkit.journal.schema import ARROW_SCHEMA, COLUMN_NAMES
from toolkit.journal.side_tables import SIDE_TABLES, side_table_uri
from toolkit.journal.store import FileInfo, Journal, writer_properties

Partition = tuple[str, dt.date]


def partition_files(journal: Journal, partitions: Iterable[Partition]) -> list[FileInfo]:
    wanted = set(partitions)
    return [f for f in journal.files() if (f.stream_type, f.day) in wanted]


def read_partitions(journal: Journal, partitions: Iterable[Partition]) -> pa.Table:
    """Every row of the partitions (all columns), ordered by stream and version."""
    files = partition_files(journal, partitions)
    if not files:
        return ARROW_SCHEMA.empty_table()
    t = pa.concat_tables([journal.read_file(f) for f in files])
    return t.sort_by([("stream_id", "ascending"), ("version", "ascending")])


def _predicate(partitions: Sequence[Partition]) -> str:
    terms = []
    for stream_type, day in sorted(partitions):
        if not STREAM_TYPE_RE.fullmatch(stream_type):  # the predicate quotes it
            raise InvalidPathError(f"partition stream_type={stream_type!r} is not a valid stream type")
        if not isinstance(day, dt.date):
            raise InvalidPathError(f"partition day={day!r} is not a date")
        terms.append(f"(stream_type = '{stream_type}' AND day = '{day.isoformat()}')")
    return " OR ".join(terms)


def replace_partitions(
    journal: Journal,
    partitions: Iterable[Partition],
    rows: pa.Table,
    *,
    operation: str,
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Replace the partitions' files by ``rows`` (which must lie in them) in one commit.

    The caller holds the write lock. Returns the new Delta version.
    """
    parts = sorted(set(partitions))
    if not parts:
        return journal.refresh()
    drop_rule_keys(journal)  # they copy ids and texts of the events replaced (rebuilt on the next re-grade)
    rows = rows.select(list(COLUMN_NAMES)).cast(ARROW_SCHEMA)
    rows = rows.sort_by([("stream_id", "ascending"), ("version", "ascending")])
    write_deltalake(
        journal.delta_table(),
        rows,
        mode="overwrite",
        predicate=_predicate(parts),
        partition_by=list(journal.config.partition_by),
        writer_properties=writer_properties(journal.config.row_group_rows),
        commit_properties=CommitProperties(
            custom_metadata={"toolkit.operation": operation, "toolkit.events": str(rows.num_rows), **(metadata or {})}
        ),
    )
    drop_rule_keys(journal)  # and those a re-grade saved meanwhile, from the events before this commit
    return journal.refresh()


RULE_KEYS_DIR: Final = "rule-keys"


def drop_rule_keys(journal: Journal) -> bool:
    """Delete the re-grade's saved keys (``toolkit.analysis.rule_keys``): they copy the events'
    ids and user texts. True when there were some."""
    if not isinstance(journal.path, Path):
        return False
    root = journal.path / RULE_KEYS_DIR
    if not root.exists():
        return False
    shutil.rmtree(root, ignore_errors=True)  # a save writing there now fails, or removes its own (it sees the commit)
    return True


def append_side_rows(journal: Journal, name: str, rows: Sequence[Mapping[str, Any]]) -> int:
    """Append to a side table while the caller already holds the write lock (one commit)."""
    if not rows:
        return 0
    schema = SIDE_TABLES[name]
    now = dt.datetime.now(dt.UTC)
    first = schema.names[0]
    table = pa.Table.from_pylist([{first: now, **r} for r in rows], schema=schema)
    _write_side_table(journal, name, table, mode="append", operation=f"append {name}")
    return len(rows)


def append_side_table(journal: Journal, name: str, table: pa.Table) -> int:
    """Append an Arrow table of the side table's columns but its time column (filled with now), while
    the caller holds the write lock (one commit)."""
    if table.num_rows == 0:
        return 0
    schema = SIDE_TABLES[name]
    now = pa.array([dt.datetime.now(dt.UTC)] * table.num_rows, schema.field(0).type)
    table = table.add_column(0, schema.field(0), now).select(schema.names).cast(schema)
    _write_side_table(journal, name, table, mode="append", operation=f"append {name}")
    return int(table.num_rows)


def rewrite_side_table(journal: Journal, name: str, table: pa.Table, operation: str) -> None:
    """Replace a side table's rows (one commit) while the caller holds the write lock."""
    _write_side_table(journal, name, table.cast(SIDE_TABLES[name]), mode="overwrite", operation=f"{operation} {name}")


def _write_side_table(
    journal: Journal, name: str, table: pa.Table, *, mode: Literal["append", "overwrite"], operation: str
) -> None:
    """One commit to the side table ``name``, local or on object storage. A table written before
    a nullable column was added gains it (as ``side_tables.append_table`` does): an append merges
    the schemas, a rewrite (of rows read conformed to today's schema) replaces it."""
    write_deltalake(
        side_table_uri(journal, name),
        table,
        storage_options=journal.storage_options,
        mode=mode,
        schema_mode="merge" if mode == "append" else "overwrite",
        commit_properties=CommitProperties(custom_metadata={"toolkit.operation": operation}),
    )


def erase_table_history(uri: str, storage_options: dict[str, str] | None = None) -> list[str]:
    """Vacuum every unreferenced file of the Delta table at ``uri`` and drop its log entries
    before a new checkpoint; returns the data files deleted. The caller holds the write lock.
    ``storage_options``: the journal's, for a table on object storage.

    The log is cut by hand (``cleanup_metadata`` only follows ``delta.logRetentionDuration``,
    and lowering that table property would outlive a kill between setting and restoring it)."""
    table = DeltaTable(uri, storage_options=storage_options)
    stale = table.vacuum(retention_hours=0, dry_run=True, enforce_retention_duration=False, full=True)
    # the files of remove actions a checkpoint keeps are listed again though long deleted
    deleted = stale if is_remote(uri) else [f for f in stale if (Path(uri) / f).exists()]
    table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False, full=True)
    if table.metadata().configuration.get("delta.logRetentionDuration") == _ZERO_RETENTION:
        # left by an erasure of an earlier release killed half-way: back to Delta's default
        table.alter.set_table_properties({"delta.logRetentionDuration": "interval 30 days"})
        table = DeltaTable(uri, storage_options=storage_options)
    table.create_checkpoint()
    checkpoint = table.version()
    log = uri.removeprefix("s3://") + "/_delta_log"
    fs = filesystem() if is_remote(uri) else None
    paths = fs.ls(log, detail=False) if fs is not None else [str(p) for p in Path(log).iterdir()]
    for path in paths:
        m = _LOG_ENTRY.fullmatch(path.rsplit("/", 1)[-1])
        if m is not None and int(m.group(1)) < checkpoint:
            if fs is not None:
                fs.rm(path)
            else:
                os.unlink(path)
    return list(deleted)


_ZERO_RETENTION = "interval 0 seconds"
_LOG_ENTRY = re.compile(r"(\d{20})\.(?:json|crc|checkpoint\b.*\.parquet)")


def erase_history(journal: Journal) -> list[str]:
    """``erase_table_history`` of the events table. Time travel to earlier versions is gone
    afterwards (that is the point). The caller holds the write lock."""
    deleted = erase_table_history(journal.events_uri, journal.storage_options)
    journal._dt = None  # the handle predates the cleanup
    journal.refresh()
    return deleted


def erase_side_table_history(journal: Journal, name: str) -> list[str]:
    """``erase_table_history`` of the side table ``name``. The caller holds the write lock."""
    return erase_table_history(side_table_uri(journal, name), journal.storage_options)
