"""Erasure: redact the payloads of one subject's events, keep the skeleton and a record.

``redact_subject(journal, subject_id)``:

1. finds the subject's events (``subject_id`` column) not redacted yet;
2. records one row per event in the ``redactions`` table: the redaction id, the SHA-256 of the
   subject id (the record does not name the person), the event, its payload digest and the
   marker text that replaces the payload;
3. replaces ``data`` and ``metadata`` of those events by the marker ``{"redacted":"<id>"}`` in
   one Delta commit. Every other column, ``payload_sha256`` and the hash chain stay, so the
   chain of what happened still verifies; ``journal verify`` reports the event as *redacted*
   (its record matches and its text is exactly the marker) rather than as tampered with;
4. rewrites the archives the toolkit wrote (``archives`` table: purge archives, ``journal
   archive`` files) that hold the subject's events, and registers their new digests (after
   rolling back a purge killed before its commit, whose archive may be registered nowhere,
   deleting the archive files a purge or ``journal archive`` killed before registering them left
   wherever they lie (``retention.remove_unregistered_archives``), and removing the rows a
   compaction killed half-way spilled to ``.compact-tmp``);
   removes the snapshot rows of the subject's streams and drops projections (rebuilt on next
   use); replaces the messages of the findings of the subject's streams (a rule's message may
   quote a payload), and of the rule errors (no stream) that quote a text of the redacted
   payloads (``payload_texts``), by the marker (``scrub_findings``, which a ``journal regrade``
   that read the payloads before the redaction applies to the findings it writes after it) —
   before the payloads are replaced, while their texts can still be read; counts, or with
   ``quarantine=True`` replaces by the marker, the quarantined records that mention the subject id;
5. erases history (``rewrite.erase_history``): vacuums the replaced files and drops the Delta
   log entries whose statistics still hold the old payloads (of the events table and of every
   side table it changed). Time travel before the redaction is gone.

The record is committed before the payloads are replaced, so a crash leaves either the old
payloads (which still match their digests: the journal verifies; run the redaction again) or
the redacted ones. What the redaction does not reach is listed in the README.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from toolkit.errors import RetentionError
from toolkit.journal.location import S3Location, filesystem
from toolkit.journal.lock import write_lock
from toolkit.journal.maintenance import SPILL_DIR
from toolkit.journal.retention import (
    Leftovers,
    file_sha256,
    new_id,
    remove_unregistered_archives,
    roll_back_unfinished,
    write_parquet_atomic,
)
from toolkit.journal.rewrite import (
    Partition,
    append_side_rows,
    erase_history,
    erase_side_table_history,
    read_partitions,
    replace_partitions,
    rewrite_side_table,
)
from toolkit.journal.side_tables import SIDE_TABLES, read_table, side_table_exists
from toolkit.journal.store import Journal


@dataclass
class RedactionResult:
    redaction_id: str
    events: int = 0
    streams: int = 0
    already_redacted: int = 0
    archives_rewritten: list[str] = field(default_factory=list)
    derived_dropped: list[str] = field(default_factory=list)
    findings_redacted: int = 0
    quarantine_redacted: int = 0
    quarantine_kept: int = 0  # quarantined records that mention the subject, kept (no ``quarantine=True``)
    files_erased: int = 0
    delta_version: int | None = None
    leftovers: Leftovers = field(default_factory=Leftovers)

    def summary(self) -> dict[str, Any]:
        return {
            "redaction_id": self.redaction_id,
            "events": self.events,
            "streams": self.streams,
            "already_redacted": self.already_redacted,
            "archives_rewritten": self.archives_rewritten,
            "derived_dropped": self.derived_dropped,
            "findings_redacted": self.findings_redacted,
            "quarantine_redacted": self.quarantine_redacted,
            "quarantine_kept": self.quarantine_kept,
            "files_erased": self.files_erased,
            "delta_version": self.delta_version,
            **self.leftovers.summary(),
        }


def subject_digest(subject_id: str) -> str:
    """How redaction records name a subject: SHA-256 of the id (check with the id in hand).

    >>> subject_digest("user-0001")[:12]
    '8b5f2503d0b7'
    """
    return hashlib.sha256(subject_id.encode()).hexdigest()


def marker_for(redaction_id: str) -> str:
    return json.dumps({"redacted": redaction_id}, separators=(",", ":"))


def redaction_records(journal: Journal) -> dict[tuple[str, int], set[tuple[str, str]]]:
    """(stream_id, version) → {(payload_sha256, marker)} of every redaction record.

    An event can have several records when a redaction was interrupted and run again.
    """
    t = read_table(journal, "redactions")
    out: dict[tuple[str, int], set[tuple[str, str]]] = {}
    for s, v, p, m in zip(
        t.column("stream_id").to_pylist(),
        t.column("version").to_pylist(),
        t.column("payload_sha256").to_pylist(),
        t.column("marker").to_pylist(),
        strict=True,
    ):
        out.setdefault((s, v), set()).add((p, m))
    return out


def _subject_partitions(journal: Journal, subject_id: str) -> set[Partition]:
    parts: set[Partition] = set()
    for f in journal.files():
        if (f.stream_type, f.day) in parts:
            continue
        col = journal.read_file(f, ["subject_id"]).column("subject_id")
        if pc.any(pc.equal(col, subject_id)).as_py():
            parts.add((f.stream_type, f.day))
    return parts


def _redact_rows(table: pa.Table, mask: pa.Array, marker: str) -> pa.Table:
    for name in ("data", "metadata"):
        i = table.schema.get_field_index(name)
        values = pc.if_else(mask, pa.scalar(marker, pa.string()), table.column(name))
        table = table.set_column(i, table.schema.field(i), values)
    return table


def redact_subject(
    journal: Journal, subject_id: str, *, reason: str | None = None, erase: bool = True, quarantine: bool = False
) -> RedactionResult:
    """Redact every payload of ``subject_id``'s events (see the module docstring).

    ``quarantine``: also replace the quarantined records (rejected import input) that mention the
    subject id as a word by the marker; without it they are only counted (``quarantine_kept``)."""
    if not subject_id.strip():
        raise RetentionError("no subject id given", hint="journal redact --subject USER_ID")
    result = RedactionResult(new_id("redaction"))
    journal.refuse_writes("redact")
    marker = marker_for(result.redaction_id)
    with write_lock(journal.path, journal.config.lock_timeout_s):
        journal.refresh()
        # a purge killed before its commit left an archive of events still in the journal, maybe
        # unregistered (killed before its records): erasure would not look there
        roll_back_unfinished(journal)
        # and archive files a purge or archive killed before registering them, wherever they lie
        result.leftovers = remove_unregistered_archives(journal)
        if isinstance(journal.path, Path):  # rows a compaction killed half-way spilled (compactions hold the lock)
            shutil.rmtree(journal.path / SPILL_DIR, ignore_errors=True)
        parts = _subject_partitions(journal, subject_id)
        table = read_partitions(journal, parts)
        mine = pc.fill_null(pc.equal(table.column("subject_id"), subject_id), False)
        done = redaction_records(journal)
        already = pa.array(
            [any(d == m for _, m in done.get((s, v), ())) for s, v, d in _triples(table, mine)], pa.bool_()
        )
        mask = _expand(mine, already)
        result.already_redacted = pc.sum(pc.cast(already, pa.int64())).as_py() or 0
        hits = table.filter(mask)
        if hits.num_rows == 0 and result.already_redacted == 0:
            raise RetentionError(
                f"no events with subject_id {subject_id!r} in the journal",
                hint='subject ids are matched exactly; journal sql "SELECT DISTINCT subject_id FROM events" lists them',
                subject_id=subject_id,
            )
        if hits.num_rows:
            digest = subject_digest(subject_id)
            append_side_rows(
                journal,
                "redactions",
                [
                    {
                        "redaction_id": result.redaction_id,
                        "subject_sha256": digest,
                        "stream_id": r["stream_id"],
                        "version": r["version"],
                        "event_id": r["event_id"],
                        "payload_sha256": r["payload_sha256"],
                        "marker": marker,
                        "reason": reason,
                    }
                    for r in hits.select(["stream_id", "version", "event_id", "payload_sha256"]).to_pylist()
                ],
            )
        streams = sorted(set(table.filter(mine).column("stream_id").to_pylist()))
        # before the payloads go: a rule's error (no stream) is found by the payload text it quotes,
        # which a run killed after replacing them could no longer read
        quoted = itertools.chain(payload_texts(hits), _archived_texts(journal, subject_id))
        result.findings_redacted = _redact_findings(journal, streams, marker, quoted, erase=erase)
        if hits.num_rows:
            touched: set[Partition] = set(
                zip(hits.column("stream_type").to_pylist(), hits.column("day").to_pylist(), strict=True)
            )
            # only the partitions with events to redact: one whose events were redacted before
            # (a second request) stays as it is
            in_touched = pc.is_in(
                pc.binary_join_element_wise(
                    table.column("stream_type"), pc.cast(table.column("day"), pa.string()), "|"
                ),
                pa.array(sorted(f"{st}|{d.isoformat()}" for st, d in touched), pa.string()),
            )
            result.delta_version = replace_partitions(
                journal,
                touched,
                _redact_rows(table, mask, marker).filter(in_touched),
                operation=f"redact {result.redaction_id}",
                metadata={"toolkit.redaction": result.redaction_id},
            )
            result.events = hits.num_rows
            result.streams = len(set(hits.column("stream_id").to_pylist()))
        result.archives_rewritten = _rewrite_archives(journal, subject_id, marker)
        result.derived_dropped = _drop_derived(journal, streams, erase=erase)
        mentions = _redact_quarantine(journal, subject_id, marker, redact=quarantine, erase=erase)
        result.quarantine_redacted, result.quarantine_kept = (mentions, 0) if quarantine else (0, mentions)
        if erase:
            result.files_erased = len(erase_history(journal))
    return result


def _drop_derived(journal: Journal, stream_ids: list[str], *, erase: bool) -> list[str]:
    """Derived copies of the payloads: snapshot rows of the subject's streams (aggregate states,
    sources' snapshots) are removed; projections (read models) are dropped, to be rebuilt from
    the redacted events on their next use. Returns what was dropped."""
    dropped: list[str] = []
    wanted = pa.array(stream_ids, pa.string())
    for name in ("snapshots", "source_snapshots"):
        if name not in SIDE_TABLES or not side_table_exists(journal, name):
            continue
        t = read_table(journal, name)
        keep = pc.invert(pc.is_in(t.column("stream_id"), wanted))
        if pc.all(keep).as_py() not in (True, None):
            rewrite_side_table(journal, name, t.filter(keep), "redact")
            dropped.append(f"{name}: {t.num_rows - t.filter(keep).num_rows} rows")
        if erase:  # also when the rows are gone already: a run killed after dropping them left the history
            erase_side_table_history(journal, name)
    if isinstance(journal.path, S3Location):  # tables an earlier release built there (none is built now)
        for o in sorted(journal.path.iterdir(), key=str):
            if o.name.startswith("projection_") and o.name not in SIDE_TABLES:
                filesystem().rm(o.fs_path, recursive=True)
                dropped.append(o.name)
    for p in sorted(journal.path.iterdir()) if isinstance(journal.path, Path) else []:
        if p.is_dir() and p.name.startswith("projection_") and p.name not in SIDE_TABLES:
            # renamed first, so a kill while removing it leaves no half of a table under its name
            gone = p.with_name(_DROPPED + p.name)
            if gone.exists():
                shutil.rmtree(gone)
            p.rename(gone)
            shutil.rmtree(gone)
            dropped.append(p.name)
        elif p.is_dir() and p.name.startswith(_DROPPED):
            shutil.rmtree(p)  # a run killed while removing it
    return dropped


_DROPPED = ".dropped-"


def _redact_findings(
    journal: Journal, stream_ids: list[str], marker: str, quoted: Iterable[str], *, erase: bool
) -> int:
    """The findings of the subject's streams, and the rule errors (no stream) that quote one of the
    ``quoted`` texts of the redacted payloads (:func:`payload_texts`), keep their verdict but not
    their text (:func:`scrub_findings`); returns the rows changed. The table's history goes too
    (its log's statistics hold the first characters of each message)."""
    if not side_table_exists(journal, "findings"):
        return 0
    t, changed = scrub_findings(
        read_table(journal, "findings"), dict.fromkeys(stream_ids, marker), marker, quoting=quoted
    )
    if changed:
        rewrite_side_table(journal, "findings", t, "redact")
    if erase:  # also when the rows were changed by a run killed before it erased their history
        erase_side_table_history(journal, "findings")
    return changed


def scrub_findings(
    findings: pa.Table,
    markers: Mapping[str, str],
    unattributed: str | None = None,
    quoting: Iterable[str] | None = None,
) -> tuple[pa.Table, int]:
    """``findings`` (rows of the findings table) with the text of the rows of the streams in
    ``markers`` replaced by that stream's marker, and how many rows changed. They keep their
    verdict (rule, stream, version, kind, ids) but not their text: a rule's message may quote the
    payload (``'wrote ' || data``), and a Python rule's error, kept in the evidence, may too.
    ``unattributed``: the marker for the rows of no stream too (a rule that raised: its error may
    quote a payload read before a redaction, see ``regrade``); with ``quoting`` (texts of the
    redacted payloads, :func:`payload_texts`) only for those whose message or error contains one
    (``quoting`` is gone through once, and only when there are such rows: :func:`_quoting`).

    >>> t = pa.table({"stream_id": ["a", "b"], "message": ["wrote x", "wrote y"],
    ...               "evidence": ['{"error": null}', '{"error": "bad y"}']})
    >>> t, n = scrub_findings(t, {"b": marker_for("r1")})
    >>> n, t.column("message").to_pylist(), json.loads(t.column("evidence")[1].as_py())["error"]
    (1, ['wrote x', '{"redacted":"r1"}'], '{"redacted":"r1"}')
    >>> t = pa.table({"stream_id": pa.array([None, None], pa.string()), "message": ["rule a raised bad Alice", "rule b raised"],
    ...               "evidence": ['{"error": "bad Alice"}', '{"error": "timeout"}']})
    >>> t, n = scrub_findings(t, {}, marker_for("r1"), quoting={"Alice"})
    >>> n, t.column("message").to_pylist()
    (1, ['{"redacted":"r1"}', 'rule b raised'])
    """
    if (not markers and unattributed is None) or findings.num_rows == 0:  # no redaction: most regrades
        return findings, 0
    stream_ids = findings.column("stream_id").combine_chunks()
    mine = pc.fill_null(pc.is_in(stream_ids, pa.array(sorted(markers), pa.string())), False)
    if unattributed is not None:
        mine = pc.or_(mine, pc.is_null(stream_ids))
    rows = pc.indices_nonzero(mine)
    if len(rows) == 0:
        return findings, 0
    # only the rows of redacted streams become Python values (a re-grade writes 10^5-10^6 findings)
    streams = pc.take(stream_ids, rows).to_pylist()
    messages = pc.take(findings.column("message"), rows).to_pylist()
    evidence = pc.take(findings.column("evidence"), rows).to_pylist()
    docs = [json.loads(e) for e in evidence]
    if quoting is not None:
        errors = [k for k, stream in enumerate(streams) if stream is None]
        quoted = {errors[j] for j in _quoting([_said(messages[k], docs[k]) for k in errors], quoting)}
    changed = 0
    for k, stream in enumerate(streams):
        before, marker = (messages[k], evidence[k]), unattributed if stream is None else markers[stream]
        doc = docs[k]
        if stream is None and quoting is not None and k not in quoted:
            continue  # a rule error that quotes none of the redacted payloads keeps its text
        if messages[k] is not None and not _is_marker(messages[k]):
            messages[k] = marker
        if isinstance(doc, dict) and doc.get("error") is not None and not _is_marker(doc["error"]):
            evidence[k] = json.dumps({**doc, "error": marker}, sort_keys=True)
        changed += int((messages[k], evidence[k]) != before)
    if changed:
        for name, values in (("message", messages), ("evidence", evidence)):
            i = findings.schema.get_field_index(name)
            column = pc.replace_with_mask(findings.column(name).combine_chunks(), mine, pa.array(values, pa.string()))
            findings = findings.set_column(i, findings.schema.field(i), column)
    return findings, changed


MIN_QUOTED_CHARS = 4  # shorter texts ("ok", "en", "42") are in many error messages by chance


def payload_texts(events: pa.Table) -> Iterator[str]:
    """The texts a finding could quote of these events' payloads: every string and number in their
    ``data`` and ``metadata`` (JSON) of at least ``MIN_QUOTED_CHARS`` characters, a string also as
    JSON and Python's ``repr`` write it inside quotes (an error may quote the JSON text or a dict).
    Yielded one by one (a text may come again), read only as far as they are asked for: a subject's
    10^6 events hold some 5·10^6 of them, and most journals have no rule error to check.

    >>> sorted(set(payload_texts(pa.table({"data": ['{"text": "Alice", "n": 12345, "ok": true}'],
    ...                                    "metadata": ['{"ip": "10.0.0.7", "k": "ab"}']}))))
    ['10.0.0.7', '12345', 'Alice']
    >>> sorted(set(payload_texts(pa.table({"data": ['{"name": "Zoë Ng"}'], "metadata": [None]}))))
    ['Zo\\\\u00eb Ng', 'Zoë Ng']
    """
    for name in ("data", "metadata"):
        for raw in events.column(name).to_pylist():
            try:
                values = [json.loads(raw)] if raw is not None else []
            except ValueError:  # not JSON: the text as a whole
                if len(raw) >= MIN_QUOTED_CHARS:
                    yield raw
                continue
            while values:
                value = values.pop()
                if isinstance(value, dict):
                    values.extend(value.values())
                elif isinstance(value, list):
                    values.extend(value)
                elif isinstance(value, str | int | float) and not isinstance(value, bool):
                    text = value if isinstance(value, str) else json.dumps(value)
                    if len(text) >= MIN_QUOTED_CHARS:
                        yield text
                        if isinstance(value, str) and not _written_as_is(value):
                            yield from {
                                json.dumps(value)[1:-1],
                                json.dumps(value, ensure_ascii=False)[1:-1],
                                repr(value)[1:-1],
                            } - {text}


def _written_as_is(text: str) -> bool:
    """Whether JSON and ``repr`` write ``text`` inside quotes as it is (printable ASCII, no quote
    or backslash): most payload strings, which need no other spelling."""
    return text.isascii() and text.isprintable() and not any(c in text for c in "\"'\\")


def _said(message: str | None, evidence: object) -> list[str]:
    """A finding's message and error (evidence), the texts that may quote a payload."""
    error = evidence.get("error") if isinstance(evidence, dict) else None
    return [t for t in (message, error) if isinstance(t, str)]


def _quoting(said: Sequence[Sequence[str]], texts: Iterable[str]) -> set[int]:
    """The indexes of ``said`` (each finding's strings, :func:`_said`) where a string contains one
    of ``texts``, in one pass over the texts: each is looked for only in the strings that hold its
    first ``MIN_QUOTED_CHARS`` characters (checking every text in every finding took minutes under
    the write lock for 10^2 rule errors of a subject with 10^6 events)."""
    strings = sorted({s for ss in said for s in ss})  # the same error, batch after batch: once
    if not strings:
        return set()
    n = MIN_QUOTED_CHARS
    at: dict[str, set[int]] = {}
    for j, s in enumerate(strings):
        for i in range(len(s) - n + 1):
            at.setdefault(s[i : i + n], set()).add(j)
    found: set[int] = set()
    for text in texts:
        candidates = at.get(text[:n], ()) if len(text) >= n else range(len(strings))
        found.update(j for j in candidates if j not in found and text in strings[j])
        if len(found) == len(strings):
            break
    quoting = {strings[j] for j in found}
    return {k for k, ss in enumerate(said) if any(s in quoting for s in ss)}


def redaction_ids(journal: Journal) -> set[str]:
    """The ids of the redactions recorded in the journal."""
    return set(pc.unique(read_table(journal, "redactions").column("redaction_id")).to_pylist())


def redacted_streams(journal: Journal) -> tuple[dict[str, str], dict[str, str]]:
    """stream → marker of the latest redaction of each redacted stream, and stream → that
    redaction's id (one row per stream, not per redacted event)."""
    t = pl.DataFrame(read_table(journal, "redactions").select(["redacted_at", "stream_id", "marker", "redaction_id"]))
    latest = t.sort("redacted_at").group_by("stream_id").last()
    streams = latest.get_column("stream_id").to_list()
    markers = dict(zip(streams, latest.get_column("marker").to_list(), strict=True))
    return markers, dict(zip(streams, latest.get_column("redaction_id").to_list(), strict=True))


def _redact_quarantine(journal: Journal, subject_id: str, marker: str, *, redact: bool, erase: bool) -> int:
    """Quarantined records that mention ``subject_id`` as a word (a rejected line of the subject's
    events carries the id): replaced by the marker when ``redact``; returns how many."""
    if not side_table_exists(journal, "quarantine"):
        return 0
    t = read_table(journal, "quarantine")
    word = re.compile(rf"(?<![\w.@-]){re.escape(subject_id)}(?![\w.@-])")
    records = t.column("record").to_pylist()
    hits = [i for i, r in enumerate(records) if r is not None and word.search(r)]
    if hits and redact:
        for i in hits:
            records[i] = marker
        i = t.schema.get_field_index("record")
        rewrite_side_table(
            journal, "quarantine", t.set_column(i, t.schema.field(i), pa.array(records, pa.string())), "redact"
        )
    if redact and erase:  # the log's statistics hold the first characters of each record
        erase_side_table_history(journal, "quarantine")
    return len(hits)


_MARKER_RE = r'^\{"redacted":"[^"]*"\}$'  # marker_for's text


def _is_marker(text: object) -> bool:
    try:
        doc = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return False
    return isinstance(doc, dict) and set(doc) == {"redacted"}


def _triples(table: pa.Table, mine: pa.Array) -> list[tuple[str, int, str]]:
    sub = table.filter(mine).select(["stream_id", "version", "data"])
    return list(
        zip(
            sub.column("stream_id").to_pylist(),
            sub.column("version").to_pylist(),
            sub.column("data").to_pylist(),
            strict=True,
        )
    )


def _expand(mine: pa.Array, already_in_mine: pa.Array) -> pa.Array:
    """``mine`` with the rows already redacted (given only for the rows of ``mine``) turned off."""
    flags = iter(already_in_mine.to_pylist())
    return pa.array([bool(m) and not next(flags) for m in mine.to_pylist()], pa.bool_())


def _latest_archives(journal: Journal) -> list[tuple[Path, dict[str, Any]]]:
    """The archive files the toolkit registered that are there, each with its newest registration."""
    archives = sorted(read_table(journal, "archives").to_pylist(), key=lambda a: a["archived_at"])
    latest: dict[str, dict[str, Any]] = {}
    for a in archives:
        latest[a["path"]] = a  # the newest registration of each file
    return [(Path(path), a) for path, a in sorted(latest.items()) if Path(path).is_file()]


def _unredacted(t: pa.Table, subject_id: str) -> pa.Array:
    """The rows of an archive (Parquet) that are the subject's and not redacted yet."""
    mask = pc.fill_null(pc.equal(t.column("subject_id"), subject_id), False)
    # rows an earlier redaction took keep its marker (the file is not rewritten again)
    return pc.and_(mask, pc.invert(pc.fill_null(pc.match_substring_regex(t.column("data"), _MARKER_RE), False)))


def _evennia_entries(path: Path, a: dict[str, Any], subject_id: str) -> tuple[dict[str, Any], int, list[int]]:
    """An Evennia archive of one stream, its first version and the subject's versions: its i-th
    entry is version ``first_version + i``; the registration lists the versions of each subject
    (by digest)."""
    note = json.loads(a["note"] or "{}")
    versions = note.get("subject_versions", {}).get(subject_digest(subject_id), [])
    return json.loads(path.read_text(encoding="utf-8")), int(note.get("first_version", 1)), versions


def _archived_texts(journal: Journal, subject_id: str) -> Iterator[str]:
    """:func:`payload_texts` of the subject's archived events not redacted yet (a rule's error may
    quote an event a purge has since moved to its archive), each archive read when its turn comes."""
    for p, a in _latest_archives(journal):
        if a["format"] == "parquet":
            t = pq.read_table(p)
            yield from payload_texts(t.filter(_unredacted(t, subject_id)))
        elif a["format"] == "evennia-archive":
            doc, first, versions = _evennia_entries(p, a, subject_id)
            events = doc.get("events") or []
            data = [json.dumps(events[v - first].get("data")) for v in versions if 0 <= v - first < len(events)]
            data = [d for d in data if not _is_marker(d)]  # redacted before
            yield from payload_texts(
                pa.table({"data": pa.array(data, pa.string()), "metadata": pa.nulls(len(data), pa.string())})
            )


def _rewrite_archives(journal: Journal, subject_id: str, marker: str) -> list[str]:
    """Redact the subject's events in every archive the toolkit registered (latest entry per path)."""
    rewritten = []
    for p, a in _latest_archives(journal):
        path = str(p)
        changed = False
        if a["format"] == "parquet":
            t = pq.read_table(p)
            mask = _unredacted(t, subject_id)
            if pc.any(mask).as_py():
                write_parquet_atomic(_redact_rows(t, mask, marker), p)
                changed = True
        elif a["format"] == "evennia-archive":
            changed = _redact_evennia(p, *_evennia_entries(p, a, subject_id), marker)
        if changed:
            append_side_rows(
                journal,
                "archives",
                [{**{k: v for k, v in a.items() if k != "archived_at"}, "sha256": file_sha256(p)}],
            )
            rewritten.append(path)
    return rewritten


def _redact_evennia(path: Path, doc: dict[str, Any], first_version: int, versions: list[int], marker: str) -> bool:
    """The subject's ``versions`` of the Evennia archive ``doc`` read from ``path`` (:func:`_evennia_entries`)."""
    events = doc.get("events") or []
    changed = False
    for v in versions:
        i = v - first_version
        if 0 <= i < len(events) and not _is_marker(json.dumps(events[i].get("data"))):
            events[i]["data"] = json.loads(marker)
            changed = True
    if changed:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return changed


__all__ = [
    "RedactionResult",
    "marker_for",
    "redact_subject",
    "redacted_streams",
    "redaction_ids",
    "redaction_records",
    "scrub_findings",
    "subject_digest",
]
