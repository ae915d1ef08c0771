"""``journal archive STREAM -o FILE``: export a stream, append its tombstone, optionally delete it.

As the Evennia AI assistant does with ``AssistantArchived``: the tombstone event
(``stream_archived``, data ``{reason, archive_path, format, final_stats}``) is appended *first*,
so the archive holds the whole stream including the fact that it was archived. The archive is a
Parquet file of every column (``parquet``) or an Evennia archive JSON document
(``evennia-archive``); its SHA-256 is registered in the journal's ``archives`` table so erasure
requests reach it later. The file is announced in the journal before it is written (a run killed
before registering it leaves a file the next purge, archive or redaction deletes:
``retention.remove_unregistered_archives``), all under one hold of the write lock. With ``delete`` every event before the tombstone is removed (one Delta
commit) and a purge record anchors the tombstone's ``prev_hash``, so the stream still verifies.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import RetentionError, StreamNotFoundError
from toolkit.journal.location import refuse_remote_output
from toolkit.journal.lock import write_lock
from toolkit.journal.retention import (
    Leftovers,
    announce_archive,
    file_sha256,
    note_archive_written,
    record_archive,
    remove_stream_prefix,
    remove_unregistered_archives,
    settle_archive,
    write_parquet_atomic,
)
from toolkit.journal.side_tables import read_table
from toolkit.journal.store import Journal

FORMATS = ("parquet", "evennia-archive")
TOMBSTONE = "stream_archived"


@dataclass
class ArchiveResult:
    stream_id: str
    path: str
    format: str
    events: int
    sha256: str
    tombstone_version: int
    deleted: int = 0
    leftovers: Leftovers = field(default_factory=Leftovers)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "leftovers"} | self.leftovers.summary()


def _subject_versions(events: Any) -> dict[str, list[int]]:
    """sha256(subject_id) → versions: lets erasure find a subject's entries in a JSON archive."""
    from toolkit.journal.redaction import subject_digest

    out: dict[str, list[int]] = {}
    for subject, version in zip(
        events.column("subject_id").to_pylist(), events.column("version").to_pylist(), strict=True
    ):
        if subject is not None:
            out.setdefault(subject_digest(subject), []).append(version)
    return out


def archive_stream(
    journal: Journal,
    stream_id: str,
    output: str | Path,
    *,
    fmt: str = "parquet",
    delete: bool = False,
    reason: str | None = None,
    force: bool = False,
) -> ArchiveResult:
    if fmt not in FORMATS:
        raise RetentionError(f"cannot archive as {fmt!r}", hint=f"formats: {', '.join(FORMATS)}")
    refuse_remote_output(output, "-o/--output")
    out = Path(output).expanduser().absolute()
    journal.refuse_writes("archive")
    # held whole (the writes inside pass through): no other run removes the file as a leftover
    # between its announcement and its registration
    with write_lock(journal.path, journal.config.lock_timeout_s, nested=True):
        journal.refresh()
        leftovers = remove_unregistered_archives(journal)
        result = _archive_stream(journal, stream_id, out, fmt=fmt, delete=delete, reason=reason, force=force)
    result.leftovers = leftovers
    return result


def _archive_stream(
    journal: Journal, stream_id: str, out: Path, *, fmt: str, delete: bool, reason: str | None, force: bool
) -> ArchiveResult:
    head = journal.read_stream(
        stream_id, ["version", "event_id", "event_type", "data", "correlation_id", "stream_type", "subject_id", "agent"]
    )
    if head.num_rows == 0:
        raise StreamNotFoundError(
            f"no stream {stream_id!r} in {journal.path}", hint="journal streams lists the streams", stream_id=stream_id
        )
    last = head.slice(head.num_rows - 1).to_pylist()[0]
    # a run killed after its tombstone is resumed: the same file is rewritten, no second tombstone
    resume = last["event_type"] == TOMBSTONE and _names(last["data"], out, fmt)
    if resume and head.num_rows == 1 and int(last["version"]) > 1:
        raise RetentionError(
            f"stream {stream_id!r} was archived to {out} and its events were deleted already",
            hint="nothing is left to archive; the archive file and the purge record hold them",
        )
    if out.is_dir() or (out.exists() and not force and not resume):
        raise RetentionError(
            f"{out}: exists already", hint="choose a new file for the archive, or pass --force to replace it"
        )
    if not resume:
        _append_tombstone(journal, stream_id, last, out, fmt, reason, head.num_rows)
    events = journal.read_stream(stream_id)
    tombstone_version = int(events.column("version")[-1].as_py())
    registered = [a["sha256"] for a in read_table(journal, "archives").to_pylist() if a["path"] == str(out)]
    if resume and registered and out.is_file() and file_sha256(out) == registered[-1]:
        # the killed run wrote and registered it: kept (rewritten, it would carry this run's id)
        digest = registered[-1]
    else:
        digest = _write_archive(journal, events, out, fmt, stream_id, registered)
    result = ArchiveResult(stream_id, str(out), fmt, events.num_rows, digest, tombstone_version)
    if delete:
        result.deleted = remove_stream_prefix(journal, stream_id, tombstone_version, reason="archive").events
    return result


def _write_archive(journal: Journal, events: Any, out: Path, fmt: str, stream_id: str, registered: list[str]) -> str:
    """Announce, write and register the archive file (unless registered with its digest); returns
    its SHA-256."""
    out.parent.mkdir(parents=True, exist_ok=True)
    record = announce_archive(journal, out, f"archive {stream_id}")
    if fmt == "parquet":
        write_parquet_atomic(events, out, written=lambda digest: note_archive_written(record, digest), run=record.name)
    else:
        from toolkit.ingest.evennia_archive import export_evennia_archive

        # named as write_parquet_atomic names its temp files: a kill leaves nothing the next run misses
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp") as tmp:
            (written,) = export_evennia_archive(journal, [stream_id], tmp)
            note_archive_written(record, file_sha256(written))
            shutil.move(str(written), out)
    digest = file_sha256(out)
    if not registered or registered[-1] != digest:
        first_version = int(events.column("version")[0].as_py())
        record_archive(
            journal,
            kind="stream",
            path=out,
            fmt=fmt,
            events=events.num_rows,
            stream_ids=[stream_id],
            note=json.dumps({"first_version": first_version, "subject_versions": _subject_versions(events)}),
        )
    settle_archive(record)
    return digest


def _names(data: str, out: Path, fmt: str) -> bool:
    """Whether a tombstone's data names this archive file and format."""
    d = json.loads(data)
    return isinstance(d, dict) and d.get("archive_path") == str(out) and d.get("format") == fmt


def _append_tombstone(
    journal: Journal, stream_id: str, last: dict[str, Any], out: Path, fmt: str, reason: str | None, events: int
) -> None:
    tombstone = {
        "event_type": TOMBSTONE,
        "source_type": "AssistantArchived",
        "causation_id": last["event_id"],
        "correlation_id": last["correlation_id"],
        "subject_id": last["subject_id"],
        "agent": last["agent"],
        "data": {
            "reason": reason or "archived",
            "archive_path": str(out),
            "format": fmt,
            "final_stats": {"events": events + 1, "last_version": last["version"] + 1},
        },
    }
    journal.append(stream_id, [tombstone], expected_version=last["version"], stream_type=last["stream_type"])
