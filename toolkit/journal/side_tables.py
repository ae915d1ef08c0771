"""Tables the toolkit keeps beside the events, inside the journal directory.

Each is a small Delta table under ``JOURNAL/<name>/`` with a fixed schema, appended to under the
journal's write lock, and a view of the same name in every SQL session:

- ``quarantine``: records an import rejected, verbatim, with where they came from and why;
- ``source_snapshots``: snapshots found in a source (not events), kept with their version;
- ``snapshots``: aggregate states the toolkit took (stream, version, aggregate, reducer
  fingerprint, state as JSON), so ``state_at`` need not fold from version 1;
- ``projection_checkpoints``: how far each projection has read (last position, fingerprint);
- ``findings``: what ``journal regrade`` found, one batch per run (``toolkit.analysis.regrade``);
  ``regrades``: each rule a batch judged, with the streams it checked and found failing, and its
  selection (the filters, and the stream ids it checked unless it checked every stream).
- ``purges``: what ``journal purge`` / ``archive --delete`` removed, with each stream's chain
  anchor; ``purged_events``: the ids of the events each purge removed; ``redactions``: one row
  per redacted event; ``archives``: archive files the toolkit wrote
  (``toolkit.journal.retention`` / ``redaction``).

Projections keep their read models in tables of their own schema, ``projection_<name>``
(:func:`write_projection`); every such table on disk is a view of that name too, whether or not
the code that defines it is loaded.

>>> from toolkit.journal import Journal
>>> j = Journal.in_memory()
>>> append_rows(j, "quarantine", [{"format": "jsonl", "source": "x.jsonl", "location": "line 3",
...                                "reason": "not JSON", "record": "{oops"}])
1
>>> read_table(j, "quarantine").column("reason").to_pylist()
['not JSON']
>>> j.close()
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.transaction import AddAction, RemoveAction

from toolkit.errors import ToolkitError
from toolkit.journal.location import open_input
from toolkit.journal.lock import write_lock
from toolkit.journal.schema import TIMESTAMP
from toolkit.journal.store import Journal

SIDE_TABLES: Final[dict[str, pa.Schema]] = {
    "quarantine": pa.schema(
        [
            pa.field("quarantined_at", TIMESTAMP, nullable=False),
            pa.field("format", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("location", pa.string(), nullable=False),
            pa.field("reason", pa.string(), nullable=False),
            pa.field("record", pa.string()),
        ]
    ),
    "source_snapshots": pa.schema(
        [
            pa.field("recorded_at", TIMESTAMP, nullable=False),
            pa.field("format", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("stream_id", pa.string(), nullable=False),
            pa.field("version", pa.int64(), nullable=False),
            pa.field("topic", pa.string()),
            pa.field("taken_at", TIMESTAMP),
            pa.field("state", pa.string(), nullable=False),
        ]
    ),
    "snapshots": pa.schema(
        [
            pa.field("taken_at", TIMESTAMP, nullable=False),
            pa.field("stream_id", pa.string(), nullable=False),
            pa.field("version", pa.int64(), nullable=False),
            pa.field("aggregate", pa.string(), nullable=False),
            pa.field("fingerprint", pa.string(), nullable=False),
            pa.field("state", pa.string(), nullable=False),
        ]
    ),
    "projection_checkpoints": pa.schema(
        [
            pa.field("updated_at", TIMESTAMP, nullable=False),
            pa.field("projection", pa.string(), nullable=False),
            pa.field("fingerprint", pa.string(), nullable=False),
            pa.field("position", pa.int64(), nullable=False),
            pa.field("events", pa.int64(), nullable=False),
            pa.field("rows", pa.int64(), nullable=False),
            pa.field("reset", pa.bool_(), nullable=False),
        ]
    ),
    # one row per rule and failing stream; one run of journal regrade = one batch_id
    "findings": pa.schema(
        [
            pa.field("graded_at", TIMESTAMP, nullable=False),
            pa.field("batch_id", pa.string(), nullable=False),
            pa.field("inputs_sha256", pa.string(), nullable=False),
            pa.field("finding_id", pa.string(), nullable=False),
            pa.field("rule", pa.string(), nullable=False),
            pa.field("rule_fingerprint", pa.string(), nullable=False),
            pa.field("params", pa.string(), nullable=False),
            pa.field("severity", pa.string(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("stream_id", pa.string()),
            pa.field("stream_type", pa.string()),
            pa.field("first_failing_version", pa.int64()),
            pa.field("position", pa.int64()),
            pa.field("occurred_at", TIMESTAMP),
            pa.field("event_id", pa.string()),
            pa.field("message", pa.string()),
            pa.field("evidence", pa.string(), nullable=False),
            pa.field("failing_events", pa.int64()),
        ]
    ),
    # one row per rule a batch judged, failing or not: a rule that held leaves no finding, and
    # journal bisect --from-findings must not take an older batch for its latest re-grade
    "regrades": pa.schema(
        [
            pa.field("graded_at", TIMESTAMP, nullable=False),
            pa.field("batch_id", pa.string(), nullable=False),
            pa.field("rule", pa.string(), nullable=False),
            pa.field("rule_fingerprint", pa.string(), nullable=False),
            pa.field("params", pa.string(), nullable=False),  # as in findings: the bound parameters, JSON
            pa.field("streams_checked", pa.int64(), nullable=False),
            pa.field("streams_failing", pa.int64(), nullable=False),
            pa.field("errors", pa.int64(), nullable=False),
            # added later (nullable: rows written before have none): the batch's filters as JSON
            # (Selection.describe), and the streams it checked (null: every stream of the journal)
            pa.field("selection", pa.string()),
            pa.field("stream_ids", pa.list_(pa.string())),
        ]
    ),
    # issue 7: purge and archive --delete record what they removed, with the chain anchor
    # (the hash of the last removed event) that lets verify check what remains
    "purges": pa.schema(
        [
            pa.field("purged_at", TIMESTAMP, nullable=False),
            pa.field("purge_id", pa.string(), nullable=False),
            pa.field("reason", pa.string(), nullable=False),
            pa.field("stream_id", pa.string(), nullable=False),
            pa.field("first_kept_version", pa.int64(), nullable=False),
            pa.field("anchor_hash", pa.string(), nullable=False),
            pa.field("removed_events", pa.int64(), nullable=False),
            pa.field("first_removed_at", TIMESTAMP),
            pa.field("last_removed_at", TIMESTAMP),
            pa.field("before", TIMESTAMP),
            pa.field("archive_path", pa.string()),
            pa.field("archive_sha256", pa.string()),
        ]
    ),
    # one row per event a purge removed (written after its purges rows, from the version that added
    # it on): the event ids only (pseudonymous, no payload), so a cause naming a removed event is
    # told from one naming no event at all (journal_integrity, journal chain --orphans); a purge
    # with no rows here was recorded before
    "purged_events": pa.schema(
        [
            pa.field("purged_at", TIMESTAMP, nullable=False),
            pa.field("purge_id", pa.string(), nullable=False),
            pa.field("stream_id", pa.string(), nullable=False),
            pa.field("version", pa.int64(), nullable=False),
            pa.field("event_id", pa.string(), nullable=False),
        ]
    ),
    # issue 7: one row per redacted event; the payload digest stays, the text is the marker
    "redactions": pa.schema(
        [
            pa.field("redacted_at", TIMESTAMP, nullable=False),
            pa.field("redaction_id", pa.string(), nullable=False),
            pa.field("subject_sha256", pa.string(), nullable=False),
            pa.field("stream_id", pa.string(), nullable=False),
            pa.field("version", pa.int64(), nullable=False),
            pa.field("event_id", pa.string(), nullable=False),
            pa.field("payload_sha256", pa.string(), nullable=False),
            pa.field("marker", pa.string(), nullable=False),
            pa.field("reason", pa.string()),
        ]
    ),
    # issue 7: archives the toolkit wrote (purge, journal archive), so erasure reaches them too
    "archives": pa.schema(
        [
            pa.field("archived_at", TIMESTAMP, nullable=False),
            pa.field("archive_id", pa.string(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("format", pa.string(), nullable=False),
            pa.field("sha256", pa.string(), nullable=False),
            pa.field("events", pa.int64(), nullable=False),
            pa.field("stream_ids", pa.string(), nullable=False),
            pa.field("note", pa.string()),
        ]
    ),
}

PROJECTION_PREFIX: Final = "projection_"
_PROJECTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _file_paths(table: DeltaTable) -> list[str]:
    """The table's active files as paths to open: deltalake percent-encodes its ``file_uris``
    (``my%20journal/findings/part-0.parquet``), which no reader finds under a path with a space."""
    return [unquote(u) for u in table.file_uris()]


def side_table_uri(journal: Journal, name: str) -> str:
    """Where the side table ``name`` lives: ``JOURNAL/<name>`` (a directory, or an ``s3://`` prefix
    of a remote journal, reached with ``journal.storage_options``)."""
    if name not in SIDE_TABLES:
        raise ToolkitError(f"no side table {name!r}", hint=f"known: {', '.join(SIDE_TABLES)}")
    return str(journal.path / name)


def side_table_exists(journal: Journal, name: str) -> bool:
    """Whether the side table ``name`` was written yet."""
    return bool(DeltaTable.is_deltatable(side_table_uri(journal, name), storage_options=journal.storage_options))


def projection_table(name: str) -> str:
    """The table name of projection ``name`` (validated: it becomes a directory and a SQL view)."""
    if not _PROJECTION_NAME.fullmatch(name) or name == "checkpoints":
        raise ToolkitError(
            f"projection name {name!r}: use lower-case letters, digits and '_', starting with a letter",
            hint="e.g. tool_calls",
            name=name,
        )
    return PROJECTION_PREFIX + name


@dataclass(frozen=True)
class Checkpoint:
    """How far a projection has read: written in the same Delta commit as its rows."""

    position: int
    fingerprint: str
    delta_version: int
    removals: str = ""  # the journal's purges when it was written (a digest; "": none)


def write_projection(
    journal: Journal,
    name: str,
    table: pa.Table,
    *,
    overwrite: bool = False,
    checkpoint: Mapping[str, Any] | None = None,
) -> int:
    """Append rows to (or replace) the Delta table ``projection_<name>``; returns the rows written.

    ``overwrite`` replaces the whole table and its schema (a rebuild). ``checkpoint``
    (``position``, ``fingerprint``, ``removals``) goes into the same commit, so rows and checkpoint agree.
    """
    uri = str(journal.path / projection_table(name))
    meta = {"toolkit.operation": f"{'rebuild' if overwrite else 'append'} {name}"}
    if checkpoint is not None:
        meta["toolkit.position"] = str(int(checkpoint["position"]))
        meta["toolkit.fingerprint"] = str(checkpoint["fingerprint"])
        meta["toolkit.removals"] = str(checkpoint.get("removals", ""))
    with write_lock(journal.path, journal.config.lock_timeout_s):
        write_deltalake(
            uri,
            table,
            storage_options=journal.storage_options,
            mode="overwrite" if overwrite else "append",
            schema_mode="overwrite" if overwrite else None,
            commit_properties=CommitProperties(custom_metadata=meta),
        )
    return int(table.num_rows)


def projection_checkpoint(journal: Journal, name: str) -> Checkpoint | None:
    """The checkpoint of the last commit of ``projection_<name>`` (None: never built)."""
    uri = str(journal.path / projection_table(name))
    if not DeltaTable.is_deltatable(uri, storage_options=journal.storage_options):
        return None
    last = DeltaTable(uri, storage_options=journal.storage_options).history(1)
    if not last or "toolkit.position" not in last[0]:
        return None
    entry = last[0]
    return Checkpoint(
        int(entry["toolkit.position"]),
        str(entry.get("toolkit.fingerprint", "")),
        int(entry["version"]),
        str(entry.get("toolkit.removals", "")),
    )


@dataclass(frozen=True)
class ProjectionFile:
    """One active data file of a projection table."""

    path: str  # relative to the table, as the Delta log names it
    uri: str  # absolute, for reading
    rows: int
    size: int


def projection_files(journal: Journal, name: str) -> list[ProjectionFile]:
    """The active files of ``projection_<name>`` (none when it was never built)."""
    uri = str(journal.path / projection_table(name))
    if not DeltaTable.is_deltatable(uri, storage_options=journal.storage_options):
        return []
    dt_ = DeltaTable(uri, storage_options=journal.storage_options)
    actions = pa.table(dt_.get_add_actions(flatten=True)).select(["path", "size_bytes", "num_records"])
    return [
        ProjectionFile(
            str(a["path"]), f"{uri.rstrip('/')}/{a['path']}", int(a["num_records"] or 0), int(a["size_bytes"])
        )
        for a in actions.to_pylist()
    ]


def read_projection_files(
    files: Sequence[ProjectionFile], schema: pa.Schema, columns: Sequence[str] | None = None
) -> pa.Table:
    """The rows of some files of a projection table, with ``schema``'s types (all columns by default)."""
    names = list(columns) if columns is not None else schema.names
    target = pa.schema([schema.field(c) for c in names])
    if not files:
        return target.empty_table()
    return pa.concat_tables([pq.read_table(open_input(f.uri), columns=names).cast(target) for f in files])


def replace_projection_files(
    journal: Journal,
    name: str,
    rows: pa.Table,
    *,
    remove: Sequence[ProjectionFile],
    checkpoint: Mapping[str, Any],
) -> int:
    """One Delta commit: add ``rows`` as a new file, drop the files ``remove``, record ``checkpoint``.

    The new file is written before the commit and is invisible until it: a crash before the
    commit leaves the table and its checkpoint as they were (an unreferenced file at most), so
    the checkpoint never runs ahead of the rows. Returns the rows added.
    """
    uri = str(journal.path / projection_table(name))
    if not DeltaTable.is_deltatable(uri, storage_options=journal.storage_options):
        raise ToolkitError(f"projection {name!r} has no table yet", hint="build it first: journal project NAME --reset")
    meta = {
        "toolkit.operation": f"catch up {name}",
        "toolkit.position": str(int(checkpoint["position"])),
        "toolkit.fingerprint": str(checkpoint["fingerprint"]),
        "toolkit.removals": str(checkpoint.get("removals", "")),
    }
    now_ms = int(time.time() * 1000)
    actions: list[AddAction | RemoveAction] = [
        RemoveAction(f.path, data_change=True, deletion_timestamp=now_ms, size=f.size, partition_values={})
        for f in remove
    ]
    with write_lock(journal.path, journal.config.lock_timeout_s):
        table = DeltaTable(uri, storage_options=journal.storage_options)
        if rows.num_rows:
            rel = f"part-{uuid.uuid4()}.snappy.parquet"
            target = f"{uri.rstrip('/')}/{rel}"
            if journal.remote:
                from toolkit.journal.location import filesystem

                with filesystem().open(target.split("://", 1)[1], "wb") as out:
                    pq.write_table(rows, out, compression="snappy")
                size = int(filesystem().size(target.split("://", 1)[1]))
            else:
                pq.write_table(rows, target, compression="snappy")
                size = Path(target).stat().st_size
            stats = {"numRecords": rows.num_rows}
            actions.append(AddAction(rel, size, {}, now_ms, True, json.dumps(stats)))
        table.create_write_transaction(
            actions,
            "append",
            schema=pa.schema(table.schema().to_arrow()),
            commit_properties=CommitProperties(custom_metadata=meta),
        )
    return int(rows.num_rows)


def read_projection(journal: Journal, name: str) -> pa.Table | None:
    """The rows of ``projection_<name>`` (None when it was never built)."""
    uri = str(journal.path / projection_table(name))
    if not DeltaTable.is_deltatable(uri, storage_options=journal.storage_options):
        return None
    dt_ = DeltaTable(uri, storage_options=journal.storage_options)
    schema = pa.schema(dt_.schema().to_arrow())
    files = _file_paths(dt_)
    if not files:
        return schema.empty_table()
    return pa.concat_tables([pq.read_table(open_input(f)).select(schema.names).cast(schema) for f in files])


def drop_projection(journal: Journal, name: str) -> bool:
    """Remove ``projection_<name>`` from disk (its checkpoint rows stay as history)."""
    path = journal.path / projection_table(name)
    if not path.exists():
        return False
    if not isinstance(path, Path):  # projections are built on local journals only
        return False
    with write_lock(journal.path, journal.config.lock_timeout_s):
        shutil.rmtree(path)
    return True


def projection_tables(journal: Journal) -> dict[str, tuple[list[str], pa.Schema]]:
    """Every ``projection_*`` Delta table on disk as (files, schema)."""
    out: dict[str, tuple[list[str], pa.Schema]] = {}
    root = journal.path
    if not isinstance(root, Path) or not root.is_dir():  # projections are built on local journals only
        return out
    for p in sorted(root.iterdir()):
        if not (p.is_dir() and p.name.startswith(PROJECTION_PREFIX) and p.name not in SIDE_TABLES):
            continue
        if not _PROJECTION_NAME.fullmatch(p.name[len(PROJECTION_PREFIX) :]) or not DeltaTable.is_deltatable(str(p)):
            continue
        table = DeltaTable(str(p))
        out[p.name] = (_file_paths(table), pa.schema(table.schema().to_arrow()))
    return out


def append_rows(journal: Journal, name: str, rows: Sequence[Mapping[str, Any]]) -> int:
    """Append rows (one commit); the time column is filled with now when absent."""
    if not rows:
        return 0
    schema = SIDE_TABLES[name]
    now = dt.datetime.now(dt.UTC)
    first = schema.names[0]
    return append_table(journal, name, pa.Table.from_pylist([{first: now, **r} for r in rows], schema=schema))


def append_table(journal: Journal, name: str, table: pa.Table) -> int:
    """Append an Arrow table (one commit); without the time column it is filled with now."""
    if table.num_rows == 0:
        return 0
    schema = SIDE_TABLES[name]
    first = schema.names[0]
    if first not in table.column_names:
        now = dt.datetime.now(dt.UTC)
        table = table.add_column(0, first, pa.array([now] * table.num_rows, schema.field(first).type))
    table = table.select(schema.names).cast(schema)
    uri = side_table_uri(journal, name)
    with write_lock(journal.path, journal.config.lock_timeout_s):
        write_deltalake(
            uri,
            table,
            storage_options=journal.storage_options,
            mode="append",
            schema_mode="merge",  # a table written before a nullable column was added gains it
            commit_properties=CommitProperties(custom_metadata={"toolkit.operation": f"append {name}"}),
        )
    return int(table.num_rows)


def table_files(journal: Journal, name: str) -> list[str]:
    """Active files of a side table (none when it does not exist yet)."""
    uri = side_table_uri(journal, name)
    if not DeltaTable.is_deltatable(uri, storage_options=journal.storage_options):
        return []
    return _file_paths(DeltaTable(uri, storage_options=journal.storage_options))


def read_table(journal: Journal, name: str) -> pa.Table:
    uri = side_table_uri(journal, name)
    if not DeltaTable.is_deltatable(uri, storage_options=journal.storage_options):
        return SIDE_TABLES[name].empty_table()
    files = _file_paths(DeltaTable(uri, storage_options=journal.storage_options))
    schema = SIDE_TABLES[name]
    if not files:
        return schema.empty_table()
    return pa.concat_tables([_conform(pq.read_table(open_input(f)), schema) for f in files])


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A side table file as ``schema``: the nullable columns added after it was written are null."""
    for field in schema:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table.select(schema.names).cast(schema)


def side_views(journal: Journal) -> dict[str, tuple[list[str], pa.Schema]]:
    """Every side table and projection table as (files, schema), for the SQL session's views."""
    views = {name: (table_files(journal, name), schema) for name, schema in SIDE_TABLES.items()}
    views.update(projection_tables(journal))
    return views
