"""Retention: purge old events (archive first, record what went, anchor what stays).

``purge_before(journal, before)`` removes events that occurred before ``before``:

1. refuses when ``before`` is within the journal's minimum retention (``retention_min_days`` in
   ``journal.toml``, default 183 days ≈ 6 months) unless ``force``;
2. per stream, removes only a *prefix* (versions 1..k): an event older than ``before`` that
   follows a younger one stays until what precedes it goes, so no stream gets a hole;
3. writes the removed events to a Parquet archive (temp, fsync, rename) and its SHA-256;
4. records, in the ``purges`` table of the journal itself, one row per stream: counts, time
   range, archive path and hash, the first version kept, and the **chain anchor** — the hash of
   the last removed event, which the first kept event's ``prev_hash`` must equal, so ``journal
   verify`` still checks every event that remains; and in ``purged_events`` the id of every
   removed event (no payload), so a cause naming one is not taken for a cause naming nothing
   (``journal_integrity``, ``journal chain --orphans``; see :func:`read_removals`);
5. replaces the touched partitions in one Delta commit.

The record is written before the events are removed: a crash in between leaves a journal whose
events are all there (it verifies; run the purge again). The next purge first rolls such an
unfinished purge back (``roll_back_unfinished``): records whose events are still in the journal
are removed with their archive registration and archive file, and archive files of the journal's
own ``purge-archives/`` that no record names (a kill before the records) are deleted, so the
rerun records each removal once and no copy of the events is left behind where erasure does not
look. An archive file is announced in the journal (``pending-archives/``, :func:`announce_archive`)
before it is written and settled once registered: the next purge, ``journal archive`` or redaction
deletes an announced file that was never registered wherever it lies, an ``--archive`` path
outside the journal too (:func:`remove_unregistered_archives`), if this journal announced it: a copy
of the journal directory holds its original's records, and keeps and reports the files they name
(:func:`_journal_identity`). ``remove_stream_prefix`` is the same removal for one stream (``journal archive --delete``).
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import json
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from toolkit.errors import RetentionError
from toolkit.journal.location import S3Location, refuse_inside, refuse_remote_output
from toolkit.journal.lock import write_lock
from toolkit.journal.rewrite import (
    Partition,
    append_side_rows,
    append_side_table,
    read_partitions,
    replace_partitions,
    rewrite_side_table,
)
from toolkit.journal.side_tables import read_table
from toolkit.journal.store import Journal

UTC = dt.UTC
ARCHIVE_DIR = "purge-archives"  # not "archives": that is the side table's Delta directory
PENDING_DIR = "pending-archives"  # one record per archive file being written (see announce_archive)


@dataclass
class Leftovers:
    """Archive files of runs killed before they registered them (:func:`remove_unregistered_archives`)."""

    removed: list[str] = field(default_factory=list)  # deleted: their events are still in the journal
    elsewhere: list[str] = field(default_factory=list)  # "host:path" written on another host, not reachable here
    kept: dict[str, str] = field(default_factory=dict)  # path → why: announced by another journal (this is a copy)

    def summary(self) -> dict[str, Any]:
        return {
            "unregistered_archives_removed": self.removed,
            "unregistered_archives_elsewhere": self.elsewhere,
            "unregistered_archives_kept": self.kept,
        }

    def notes(self) -> list[str]:
        """What a command says on stderr about them."""
        out = [
            f"removed {p}: an archive file written by a run killed before it registered it "
            "(its events are still in the journal; run that command again to write it again)"
            for p in self.removed
        ]
        out += [
            f"not reachable from this host: {e}, an archive file written there by a run killed before it "
            "registered it, may hold events and personal data that erasure does not reach\n"
            "Hint: run journal purge, archive or redact on that host to remove it"
            for e in self.elsewhere
        ]
        out += [
            f"kept {p}: {why}\nHint: that journal removes it on its next purge, archive or redact; if it is "
            "this journal, moved to another file system or restored from a backup, delete the file and "
            "the record by hand unless a journal registered the file (journal sql: archives)"
            for p, why in self.kept.items()
        ]
        return out


@dataclass
class PurgeResult:
    purge_id: str
    before: dt.datetime | None
    events: int = 0
    streams: int = 0
    kept_out_of_order: int = 0
    first_removed_at: dt.datetime | None = None
    last_removed_at: dt.datetime | None = None
    archive_path: str | None = None
    archive_sha256: str | None = None
    delta_version: int | None = None
    anchors: dict[str, int] = field(default_factory=dict)
    leftovers: Leftovers = field(default_factory=Leftovers)

    def summary(self) -> dict[str, object]:
        return {
            "purge_id": self.purge_id,
            "before": self.before.isoformat() if self.before else None,
            "events": self.events,
            "streams": self.streams,
            "kept_out_of_order": self.kept_out_of_order,
            "first_removed_at": self.first_removed_at.isoformat() if self.first_removed_at else None,
            "last_removed_at": self.last_removed_at.isoformat() if self.last_removed_at else None,
            "archive": self.archive_path,
            "archive_sha256": self.archive_sha256,
            "delta_version": self.delta_version,
            **self.leftovers.summary(),
        }


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_parquet_atomic(
    table: pa.Table, path: Path, written: Callable[[str], None] | None = None, *, run: str | None = None
) -> str:
    """Write ``table`` to ``path`` (temp, fsync, rename); returns the file's SHA-256. ``written``
    gets that digest before the rename (:func:`note_archive_written`). ``run`` (the record of
    :func:`announce_archive`) goes into the file's metadata, so that its digest is this run's
    alone: another run writing the same events there (a copy of the journal resuming the same
    archive) writes other bytes, which this run's record does not take for its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    if run is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"toolkit.archive_run": run.encode()})
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        digest = file_sha256(Path(tmp))
        if written is not None:
            written(digest)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


def new_id(prefix: str) -> str:
    return f"{prefix}-{dt.datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def check_retention(journal: Journal, before: dt.datetime, *, force: bool, now: dt.datetime | None = None) -> None:
    """Refuse a cut-off inside the minimum retention unless ``force``."""
    now = now or dt.datetime.now(UTC)
    days = journal.config.retention_min_days
    limit = now - dt.timedelta(days=days)
    if before > limit and not force:
        raise RetentionError(
            f"refusing to purge events younger than the journal's minimum retention of {days} days: "
            f"--before {before.isoformat()} is after {limit.isoformat(timespec='seconds')}",
            hint=f"purge --before {limit.date().isoformat()} or earlier, change retention_min_days in "
            "journal.toml, or pass --force if the law or a contract requires it",
            before=before.isoformat(),
            retention_min_days=days,
        )


def _cuts(journal: Journal, candidates: pa.Table) -> dict[str, int]:
    """Per stream, the first version that stays: the lowest version that is not a candidate."""
    streams = sorted(set(candidates.column("stream_id").to_pylist()))
    everything = pl.DataFrame(journal.read_streams(streams, ["stream_id", "version"]))
    cand = pl.DataFrame(candidates.select(["stream_id", "version"])).with_columns(c=pl.lit(True))
    marked = everything.join(cand, on=["stream_id", "version"], how="left")
    agg = marked.group_by("stream_id").agg(
        pl.col("version").filter(pl.col("c").is_null()).min().alias("first_kept"),
        (pl.col("version").max() + 1).alias("end"),
    )
    return {sid: int(fk if fk is not None else end) for sid, fk, end in agg.iter_rows()}


def _below_cut(table: pa.Table, cuts: Mapping[str, int]) -> pa.Array:
    """Rows whose version is below their stream's cut (streams without a cut: none)."""
    cut = pl.DataFrame(
        {"stream_id": list(cuts), "cut": list(cuts.values())}, schema={"stream_id": pl.String, "cut": pl.Int64}
    )
    frame = pl.DataFrame(table.select(["stream_id", "version"]))
    joined = frame.join(cut, on="stream_id", how="left", maintain_order="left")
    return joined.select(pl.col("version") < pl.col("cut").fill_null(0)).to_series().to_arrow()


def _remove(
    journal: Journal,
    table: pa.Table,
    cuts: Mapping[str, int],
    *,
    purge_id: str,
    reason: str,
    before: dt.datetime | None,
    archive: Path | None,
    result: PurgeResult,
) -> None:
    """Under the write lock: archive, record anchors, replace partitions (one commit)."""
    remove_mask = _below_cut(table, cuts)
    removed = table.filter(remove_mask)
    if removed.num_rows == 0:
        return
    removed = removed.sort_by([("stream_id", "ascending"), ("version", "ascending")])
    journal.keep_max_position()  # the removed events may hold the highest position given
    record = None
    if archive is not None:
        record = announced = announce_archive(journal, archive, f"purge {purge_id}")
        result.archive_path = str(archive)
        result.archive_sha256 = write_parquet_atomic(
            removed, archive, written=lambda digest: note_archive_written(announced, digest), run=announced.name
        )
    agg = (
        pl.DataFrame(removed.select(["stream_id", "version", "hash", "occurred_at"]))
        .group_by("stream_id")
        .agg(
            pl.len().alias("n"),
            pl.col("hash").sort_by("version").last().alias("anchor"),
            pl.col("version").max().alias("last_version"),
            pl.col("occurred_at").min().alias("lo"),
            pl.col("occurred_at").max().alias("hi"),
        )
        .sort("stream_id")
    )
    rows = []
    for sid, n, anchor, last_version, lo, hi in agg.iter_rows():
        rows.append(
            {
                "purge_id": purge_id,
                "reason": reason,
                "stream_id": sid,
                "first_kept_version": last_version + 1,
                "anchor_hash": anchor,
                "removed_events": n,
                "first_removed_at": lo,
                "last_removed_at": hi,
                "before": before,
                "archive_path": result.archive_path,
                "archive_sha256": result.archive_sha256,
            }
        )
        result.anchors[sid] = last_version + 1
    append_side_rows(journal, "purges", rows)
    ids = removed.select(["stream_id", "version", "event_id"])
    append_side_table(journal, "purged_events", ids.add_column(0, "purge_id", pa.array([purge_id] * ids.num_rows)))
    if archive is not None:
        append_side_rows(
            journal,
            "archives",
            [
                {
                    "archive_id": purge_id,
                    "kind": reason,
                    "path": str(archive),
                    "format": "parquet",
                    "sha256": result.archive_sha256,
                    "events": removed.num_rows,
                    "stream_ids": ",".join(agg.get_column("stream_id").to_list()),
                    "note": f"events removed by {purge_id}",
                }
            ],
        )
    kept = table.filter(pc.invert(remove_mask))
    partitions: set[Partition] = set(
        zip(removed.column("stream_type").to_pylist(), removed.column("day").to_pylist(), strict=True)
    )
    in_parts = pc.is_in(
        pc.binary_join_element_wise(kept.column("stream_type"), pc.cast(kept.column("day"), pa.string()), "|"),
        pa.array(sorted(f"{st}|{d.isoformat()}" for st, d in partitions), pa.string()),
    )
    result.delta_version = replace_partitions(
        journal, partitions, kept.filter(in_parts), operation=f"purge {purge_id}", metadata={"toolkit.purge": purge_id}
    )
    if record is not None:
        settle_archive(record)
    result.events = removed.num_rows
    result.streams = agg.height
    times = removed.column("occurred_at")
    result.first_removed_at = pc.min(times).as_py()
    result.last_removed_at = pc.max(times).as_py()


def check_archive_path(journal: Journal, archive: str | Path) -> Path:
    """The ``--archive`` path: outside the journal directory, or a file of its own ``purge-archives/``
    (elsewhere inside it, e.g. ``events/_delta_log/<next version>.json``, the archive took the name
    of a journal file and the journal could no longer be opened)."""
    refuse_remote_output(archive, "--archive")
    path = Path(archive).expanduser().absolute()
    if isinstance(journal.path, Path) and path.resolve().parent != (journal.path / ARCHIVE_DIR).resolve():
        refuse_inside(
            path,
            journal.path,
            hint=f"write --archive outside the journal directory, or leave it out: the default is {ARCHIVE_DIR}/ in it",
        )
    return path


def default_archive(journal: Journal, purge_id: str) -> Path:
    if not isinstance(journal.path, Path):
        raise RetentionError(
            f"{journal.path}: purge archives of an s3:// journal need a local path",
            hint="pass --archive PATH",
        )
    return journal.path / ARCHIVE_DIR / f"{purge_id}.parquet"


def _journal_identity(journal: Journal) -> dict[str, Any]:
    """Which journal announces an archive file (:func:`announce_archive`): its path, and for a local
    journal the device and inode of its directory. A copy of the directory (``cp -r``,
    ``shutil.copytree``, rsync, a restored backup) is a new directory, with a new inode, holding
    the same files: the pending records and anything written in the journal (the Delta table's
    id, a random id) are copied along, so none of them tells a copy from its original. A rename
    or move on the same file system keeps the inode: the journal still knows its records. An
    ``s3://`` journal has no inode: its URL (a copy is another prefix; S3 renames by copying)."""
    if isinstance(journal.path, S3Location):
        return {"journal": str(journal.path)}
    st = os.stat(journal.path)
    return {"journal": str(journal.path), "journal_inode": [st.st_dev, st.st_ino]}


def _announced_here(journal: Journal, doc: Mapping[str, Any]) -> bool:
    """Whether this journal wrote the record ``doc`` (not the original of which it is a copy)."""
    if "journal" not in doc:  # written before records named their journal: taken as this one's
        return True
    mine = _journal_identity(journal)
    if "journal_inode" in mine:  # the path may have changed (a rename); the inode has not
        return bool(doc.get("journal_inode") == mine["journal_inode"])
    return bool(doc["journal"] == mine["journal"])


def _settled_by_its_journal(doc: Mapping[str, Any], record: Path | S3Location) -> bool:
    """Whether the (local) journal that wrote the record ``doc`` is where it was and no longer holds
    it: it deleted its file or registered it, and the copy's record has nothing left to say."""
    inode = doc.get("journal_inode")
    if inode is None:
        return False
    owner = Path(doc["journal"])
    try:
        st = os.stat(owner)
    except OSError:
        return False
    return [st.st_dev, st.st_ino] == inode and not (owner / PENDING_DIR / record.name).exists()


def announce_archive(journal: Journal, path: Path, operation: str) -> Path | S3Location:
    """Record inside the journal, before a byte of it is written, that ``operation`` is about to
    write the archive file ``path``: a run killed before it registers the file (``archives``)
    leaves this record, by which the next purge, archive or redaction finds the file wherever it
    lies (:func:`remove_unregistered_archives`). Call it under the write lock; :func:`settle_archive`
    removes the record once the file is registered. The record names the journal that wrote it
    (:func:`_journal_identity`), so that a copy of the journal leaves the file alone. Returns the
    record."""
    doc = {
        "path": str(path),
        **_journal_identity(journal),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "operation": operation,
        "announced_at": dt.datetime.now(UTC).isoformat(),
        "sha256": None,  # the archive's digest, once written and before it is renamed to path (note_archive_written)
    }
    record = journal.path / PENDING_DIR / f"{uuid.uuid4().hex}.json"
    _write_record(record, doc)
    return record


def note_archive_written(record: Path | S3Location, digest: str) -> None:
    """The archive :func:`announce_archive` announced is written, under a temp name: its SHA-256
    goes into the record before the file is renamed to its path, so that only a file with these
    bytes is taken for it there (a run killed before the rename leaves whatever the path held,
    or a file the user puts there later)."""
    doc = json.loads(record.read_text())
    doc["sha256"] = digest
    _write_record(record, doc)


def _write_record(record: Path | S3Location, doc: dict[str, Any]) -> None:
    if isinstance(record, S3Location):
        record.write_text(json.dumps(doc))  # one PUT: the object appears whole or not at all
        return
    record.parent.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=record.parent, prefix=".", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, record)
    dir_fd = os.open(record.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the record is on disk before the archive file is begun
    finally:
        os.close(dir_fd)


def settle_archive(record: Path | S3Location) -> None:
    """The archive :func:`announce_archive` announced is registered: its record goes."""
    record.unlink(missing_ok=True)


def remove_unregistered_archives(journal: Journal) -> Leftovers:
    """Under the write lock: the archive files announced (:func:`announce_archive`) by runs killed
    before they registered them. Such a file holds events that are all still in the journal (each
    removal is committed after its archive is registered), personal data included, where erasure
    does not look: it is deleted, with the temp files of its write, wherever it lies (an
    ``--archive`` path outside the journal too), if it is that file: the one with the digest its run
    recorded before the rename (:func:`note_archive_written`), not a file put at the path since. A file registered with its digest since (a run
    killed after registering it) stays. A file written on another host (the local ``--archive``
    path of an ``s3://`` journal) is not reached from here: its record stays and it is reported
    (``elsewhere``, ``host:path``) until a purge, archive or redaction on that host removes it."""
    found = Leftovers()
    folder = journal.path / PENDING_DIR
    if isinstance(folder, Path) and not folder.is_dir():
        return found
    records = _pending_records(journal)
    if not records:
        return found
    registered = {
        (a["path"], a["sha256"]) for a in read_table(journal, "archives").select(["path", "sha256"]).to_pylist()
    }
    here = socket.gethostname()
    for record, doc in records:
        path, host, operation = Path(doc["path"]), str(doc["host"]), str(doc["operation"])
        if not _announced_here(journal, doc):  # a copy of the journal that wrote it: the file is that one's
            if _settled_by_its_journal(doc, record):
                settle_archive(record)
            else:
                found.kept[str(path)] = (
                    f"an archive file {operation} of the journal at {doc['journal']} was writing when it was "
                    "killed; this journal holds its record as a copy of that one, and the file is that "
                    "journal's (it may be registered there)"
                )
            continue
        if host != here:  # the path names a file of that host's (one here by that name is another's)
            found.elsewhere.append(f"{host}:{path}")
            continue
        # only the archive the run wrote: the file with the digest it recorded before the rename (none:
        # the archive never reached the path, which holds the user's file or nothing)
        written = doc.get("sha256")
        unregistered = (
            written is not None
            and path.is_file()
            and file_sha256(path) == written
            and (str(path), written) not in registered
        )
        leftovers = [path] if unregistered else []
        if path.parent.is_dir():  # the temp files of its write (a kill before the rename)
            leftovers += path.parent.glob(f".{glob.escape(path.name)}.*.tmp")
        for f in leftovers:
            try:
                shutil.rmtree(f) if f.is_dir() else f.unlink(missing_ok=True)
            except OSError as e:
                raise RetentionError(
                    f"{f}: cannot delete this archive file of {operation}, killed before it registered it "
                    f"({e.strerror}); it holds events that erasure does not reach",
                    hint="delete it by hand (its events are still in the journal) and run the command again",
                    path=str(f),
                ) from e
        if leftovers:  # the file, or what its write left
            found.removed.append(str(path))
        settle_archive(record)
    if isinstance(folder, Path):  # the temp files of records (a kill before their rename)
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
    return found


def _pending_records(journal: Journal) -> list[tuple[Path | S3Location, dict[str, Any]]]:
    """The records of :func:`announce_archive` in the journal, each with what it says."""
    folder = journal.path / PENDING_DIR
    if isinstance(folder, Path) and not folder.is_dir():
        return []
    out = []
    for record in sorted((r for r in folder.iterdir() if r.name.endswith(".json")), key=str):
        try:
            doc = json.loads(record.read_text())
            if not isinstance(doc, dict) or not all(isinstance(doc[k], str) for k in ("path", "host", "operation")):
                raise TypeError("path, host and operation must be strings")
        except (ValueError, KeyError, TypeError) as e:
            raise RetentionError(
                f"{record}: unreadable record of an archive file being written ({e})",
                hint="it names the archive file a killed purge or archive wrote: delete that file and the record",
                path=str(record),
            ) from e
        out.append((record, doc))
    return out


def roll_back_unfinished(journal: Journal) -> list[str]:
    """Under the write lock: undo what purges killed before their commit left (see the module
    docstring); returns the purge ids rolled back."""
    purges = read_table(journal, "purges")
    pending: set[str] = set()
    if purges.num_rows:
        # every purge rolls back the one before it first: only the latest can be unfinished
        latest = purges.column("purge_id")[
            pc.index(purges.column("purged_at"), pc.max(purges.column("purged_at"))).as_py()
        ]
        mine = purges.filter(pc.equal(purges.column("purge_id"), latest))
        first_kept = pl.DataFrame(mine.select(["purge_id", "stream_id", "first_kept_version"]))
        streams = first_kept.get_column("stream_id").unique().sort().to_list()
        lowest = (
            pl.DataFrame(journal.read_streams(streams, ["stream_id", "version"]))
            .group_by("stream_id")
            .agg(pl.col("version").min().alias("lowest"))
        )
        still_there = first_kept.join(lowest, on="stream_id").filter(pl.col("lowest") < pl.col("first_kept_version"))
        pending = set(still_there.get_column("purge_id").to_list())
    # a copy of the journal holds the records of its original's purge: the archive file is the original's
    theirs = (
        {doc["path"] for _, doc in _pending_records(journal) if not _announced_here(journal, doc)} if pending else set()
    )
    for row in purges.filter(pc.is_in(purges.column("purge_id"), pa.array(sorted(pending), pa.string()))).to_pylist():
        path = row["archive_path"]
        if path and path not in theirs and Path(path).is_file() and file_sha256(path) == row["archive_sha256"]:
            Path(path).unlink()  # a copy of events that are still in the journal
    if pending:
        ids = pa.array(sorted(pending), pa.string())
        for name, column in (("purged_events", "purge_id"), ("archives", "archive_id"), ("purges", "purge_id")):
            t = read_table(journal, name)
            rewrite_side_table(journal, name, t.filter(pc.invert(pc.is_in(t.column(column), ids))), "roll back")
    if isinstance(journal.path, Path) and (journal.path / ARCHIVE_DIR).is_dir():
        paths = read_table(journal, "purges").column("archive_path").to_pylist()
        named = {Path(p).name for p in paths + read_table(journal, "archives").column("path").to_pylist() if p}
        for f in (journal.path / ARCHIVE_DIR).iterdir():
            if f.name not in named and (f.name.startswith("purge-") or f.name.startswith(".purge-")):
                f.unlink()  # written by a purge killed before its records: its events were never removed
    return sorted(pending)


def purge_before(
    journal: Journal,
    before: dt.datetime,
    *,
    force: bool = False,
    archive: str | Path | None = None,
    now: dt.datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> PurgeResult:
    """Remove events that occurred before ``before`` (see the module docstring)."""
    if before.tzinfo is None:
        raise RetentionError("--before needs a time zone", hint="e.g. --before 2026-05-01T00:00:00Z")
    before = before.astimezone(UTC)
    journal.refuse_writes("purge")
    if archive is not None:
        archive = check_archive_path(journal, archive)
    check_retention(journal, before, force=force, now=now)
    purge_id = new_id("purge")
    result = PurgeResult(purge_id, before)
    with write_lock(journal.path, journal.config.lock_timeout_s):
        journal.refresh()
        roll_back_unfinished(journal)
        result.leftovers = remove_unregistered_archives(journal)
        parts = {(f.stream_type, f.day) for f in journal.files() if f.day <= before.date()}
        table = read_partitions(journal, parts)
        old = table.filter(
            pc.less(table.column("occurred_at"), pa.scalar(before, table.schema.field("occurred_at").type))
        )
        if old.num_rows == 0:
            return result
        cuts = _cuts(journal, old)
        result.kept_out_of_order = old.num_rows - pc.sum(_below_cut(old, cuts)).as_py()
        path = Path(archive).expanduser().absolute() if archive else default_archive(journal, purge_id)
        if path.exists():
            raise RetentionError(f"{path}: the archive file exists already", hint="choose another --archive path")
        if progress:
            progress(f"archiving {old.num_rows} events to {path}")
        _remove(journal, table, cuts, purge_id=purge_id, reason="retention", before=before, archive=path, result=result)
    return result


def remove_stream_prefix(journal: Journal, stream_id: str, first_kept_version: int, *, reason: str) -> PurgeResult:
    """Remove versions ``1 .. first_kept_version - 1`` of one stream (already archived by the caller)."""
    journal.refuse_writes("purge")
    purge_id = new_id(reason)
    result = PurgeResult(purge_id, None)
    with write_lock(journal.path, journal.config.lock_timeout_s):
        journal.refresh()
        roll_back_unfinished(journal)
        events = journal.read_stream(stream_id, ["stream_type", "day", "version"])
        parts = set(zip(events.column("stream_type").to_pylist(), events.column("day").to_pylist(), strict=True))
        table = read_partitions(journal, parts)
        _remove(
            journal,
            table,
            {stream_id: first_kept_version},
            purge_id=purge_id,
            reason=reason,
            before=None,
            archive=None,
            result=result,
        )
    return result


def record_archive(
    journal: Journal, *, kind: str, path: Path, fmt: str, events: int, stream_ids: list[str], note: str | None = None
) -> str:
    """Register an archive file the toolkit wrote (erasure rewrites it later); returns its id."""
    archive_id = new_id("archive")
    with write_lock(journal.path, journal.config.lock_timeout_s):
        append_side_rows(
            journal,
            "archives",
            [
                {
                    "archive_id": archive_id,
                    "kind": kind,
                    "path": str(path),
                    "format": fmt,
                    "sha256": file_sha256(path),
                    "events": events,
                    "stream_ids": ",".join(stream_ids),
                    "note": note,
                }
            ],
        )
    return archive_id


def purge_anchors(journal: Journal) -> dict[str, dict[int, str]]:
    """stream_id → {first kept version: anchor hash} from every purge record."""
    t = read_table(journal, "purges")
    out: dict[str, dict[int, str]] = {}
    for sid, v, h in zip(
        t.column("stream_id").to_pylist(),
        t.column("first_kept_version").to_pylist(),
        t.column("anchor_hash").to_pylist(),
        strict=True,
    ):
        out.setdefault(sid, {})[v] = h
    return out


@dataclass(frozen=True)
class Removals:
    """What the purges recorded about the events they removed, as the integrity rule and the
    causation chain read it (:func:`read_removals`).

    ``kept``: (stream_id, first_kept_version) of every purge record — a stream may start there
    instead of at version 1. ``ids``: (event_id, purge_id) of every removed event of the purges
    that recorded their ids (``purged_events``). ``unrecorded``: (stream_id, first_kept_version,
    purge_id) per stream cut by a purge recorded before that, its lowest first kept version: an
    unknown cause of an event of that stream at or after it is taken as removed by that purge
    (the ids are not known; a cause that never existed is not told apart there). ``ids`` and
    ``unrecorded`` read ``purged_events`` (one row per removed event) when first asked for, so a
    check with no unknown cause to look up reads only the purge records.
    """

    kept: pl.DataFrame
    purges: pl.DataFrame  # purge_id, stream_id, first_kept_version of every purge record
    read_ids: Callable[[], pl.DataFrame] = field(repr=False, compare=False)  # purged_events' event_id, purge_id

    @property
    def empty(self) -> bool:
        return self.kept.height == 0

    @cached_property
    def _recorded(self) -> pl.DataFrame:
        return self.read_ids()

    @cached_property
    def ids(self) -> pl.DataFrame:
        return self._recorded.sort("purge_id").unique("event_id", keep="first", maintain_order=True)

    @cached_property
    def unrecorded(self) -> pl.DataFrame:
        recorded = self._recorded.get_column("purge_id").unique().implode()
        return (
            self.purges.filter(~pl.col("purge_id").is_in(recorded))
            .sort("first_kept_version", "purge_id")
            .group_by("stream_id", maintain_order=True)
            .first()
            .select("stream_id", "first_kept_version", "purge_id")
        )

    def removed_by(self, rows: pl.DataFrame, cause: str = "causation_id") -> pl.Series:
        """Per row of ``rows`` (``stream_id``, ``version`` and the ``cause`` column, a cause not in
        the journal): the purge that removed that cause, or null when no purge record says so."""
        frame = rows.select(pl.col("stream_id"), pl.col("version"), pl.col(cause).alias("cause"))
        by_id = frame.join(self.ids, left_on="cause", right_on="event_id", how="left", maintain_order="left")
        by_stream = frame.join(self.unrecorded, on="stream_id", how="left", maintain_order="left")
        unrecorded = pl.when(pl.col("version") >= pl.col("first_kept_version")).then(pl.col("purge_id"))
        return pl.Series("purge_id", by_id.get_column("purge_id")).fill_null(by_stream.select(unrecorded).to_series())


def read_removals(journal: Journal) -> Removals:
    """The journal's purge records as :class:`Removals` (the ``purges`` table; ``purged_events``
    when its ids are first needed)."""
    purges = pl.DataFrame(read_table(journal, "purges").select(["purge_id", "stream_id", "first_kept_version"]))
    return Removals(
        kept=purges.select("stream_id", "first_kept_version").unique().sort("stream_id", "first_kept_version"),
        purges=purges,
        read_ids=lambda: pl.DataFrame(read_table(journal, "purged_events").select(["event_id", "purge_id"])),
    )


__all__ = [
    "Leftovers",
    "PurgeResult",
    "Removals",
    "announce_archive",
    "check_retention",
    "file_sha256",
    "note_archive_written",
    "purge_anchors",
    "purge_before",
    "read_removals",
    "record_archive",
    "remove_stream_prefix",
    "remove_unregistered_archives",
    "roll_back_unfinished",
    "settle_archive",
    "write_parquet_atomic",
]
