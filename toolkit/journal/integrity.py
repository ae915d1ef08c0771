"""``verify``: recompute every stream's hash chain and name the first broken event.

Checks, in order, for each event of each stream (ordered by version):

1. ``version``   — versions run 1, 2, 3, … without gaps or repeats;
2. ``payload``   — ``payload_sha256`` matches the stored data and metadata;
3. ``prev_hash`` — points at the previous event's hash (genesis for the first);
4. ``hash``      — matches the recomputed SHA-256 over the envelope, payload digest and prev_hash.

Journal-wide: no event_id or position appears twice. A break is a finding (a row), not an
exception; ``journal verify`` exits 3 when there is any.

Not a break, but a finding too (exit 3): an event with a token count above ``MAX_TOKENS`` (10^12),
which import and append refuse since int64 sums of such counts can wrap in rollups and budget
rules; journals written before may hold some. One vectorised predicate per token column finds them.

Two records of the journal itself change what is expected, and only in these ways:

- a **purge anchor** (``purges`` table, written by ``journal purge`` and ``journal archive
  --delete``) lets a stream start at ``first_kept_version`` instead of 1, provided that event's
  ``prev_hash`` is the anchor (the hash of the last removed event); the rest is checked as usual;
- a **redaction record** (``redactions`` table) lets an event's payload differ from its digest
  when the stored data and metadata are *exactly* the record's marker and the stored digest is
  the one recorded; the event counts as ``redacted``. Any other difference is tampering.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from toolkit.errors import DataFileError
from toolkit.journal import hashing
from toolkit.journal.prepare import MAX_TOKENS, TOKEN_COLUMNS
from toolkit.journal.redaction import redaction_records
from toolkit.journal.retention import purge_anchors
from toolkit.journal.schema import ARROW_SCHEMA, GENESIS_HASH
from toolkit.journal.store import Journal


@dataclass(frozen=True)
class Break:
    stream_id: str
    version: int | None
    check: str  # version | payload | prev_hash | hash | duplicate_event_id | duplicate_position | unreadable_file | checkpoint_*
    expected: str
    found: str


@dataclass(frozen=True)
class TokenCountFinding:
    """An event whose token count is above ``MAX_TOKENS``: its chain may verify, its sums can wrap."""

    stream_id: str
    version: int
    column: str  # tokens_in | tokens_out | tokens_cache_read | tokens_cache_write | tokens_reasoning
    value: int

    @property
    def reason(self) -> str:
        return (
            f"{self.column} = {self.value:,} is more than {MAX_TOKENS:,} tokens in one event: int64 sums of it can "
            "wrap in rollups and budget rules (import and append refuse such counts)"
        )


@dataclass
class VerifyReport:
    streams: int = 0
    events: int = 0
    breaks: list[Break] | None = None
    redacted: int = 0  # events whose payload was redacted by a recorded erasure
    anchored: int = 0  # streams that start after a recorded purge
    token_counts: list[TokenCountFinding] = field(default_factory=list)  # not breaks: findings all the same

    @property
    def ok(self) -> bool:
        """No break: every chain verifies (token count findings aside; see ``clean``)."""
        return not self.breaks

    @property
    def clean(self) -> bool:
        """No break and no finding: what ``journal verify`` exits 0 on."""
        return self.ok and not self.token_counts


def _read_stream_type(journal: Journal, stream_type: str, breaks: list[Break]) -> pa.Table:
    """Every readable file of one stream type; a file that cannot be read is a break naming it."""
    pieces = []
    for f in journal.files(stream_types=[stream_type]):
        try:
            pieces.append(journal.read_file(f))
        except (OSError, pa.ArrowException) as e:
            reason = e.context["reason"] if isinstance(e, DataFileError) else str(e)  # the path is the Break's
            breaks.append(Break(f.path, None, "unreadable_file", "a readable Parquet data file", reason[:200]))
    if not pieces:
        return ARROW_SCHEMA.empty_table()
    return pa.concat_tables(pieces).sort_by([("stream_id", "ascending"), ("version", "ascending")])


#: a verify that found breaks while writers committed is run again, at most this many times
VERIFY_ATTEMPTS = 3


def verify_journal(journal: Journal, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Verify all streams, one stream type at a time (chains never cross stream types).

    Verify reads without the write lock. When it finds breaks and the journal got a commit while
    it read (a redaction vacuums the files it replaced, a purge removes events after verify read
    its anchors), the breaks may be of no single version of the journal: it verifies again."""
    for _ in range(VERIFY_ATTEMPTS):
        version = journal.refresh()
        report = _verify_once(journal, progress)
        if report.ok or journal.refresh() == version:
            break
    return report


def _verify_once(journal: Journal, progress: Callable[[int], None] | None) -> VerifyReport:
    report = VerifyReport(breaks=[])
    assert report.breaks is not None
    anchors = purge_anchors(journal)
    redactions = redaction_records(journal)
    stream_types = sorted({f.stream_type for f in journal.files()})
    seen_ids: dict[str, str] = {}
    positions: set[int] = set()
    for st in stream_types:
        t = _read_stream_type(journal, st, report.breaks)
        report.events += t.num_rows
        report.breaks.extend(_verify_table(t, report, anchors, redactions))
        report.token_counts.extend(_token_counts(t))
        for sid, eid, pos in zip(
            t.column("stream_id").to_pylist(),
            t.column("event_id").to_pylist(),
            t.column("position").to_pylist(),
            strict=True,
        ):
            if eid in seen_ids:
                report.breaks.append(
                    Break(sid, None, "duplicate_event_id", "unique", f"{eid} (also in {seen_ids[eid]})")
                )
            seen_ids[eid] = sid
            if pos in positions:
                report.breaks.append(Break(sid, None, "duplicate_position", "unique", str(pos)))
            positions.add(pos)
        if progress:
            progress(t.num_rows)
    return report


def _verify_table(
    t: pa.Table,
    report: VerifyReport,
    anchors: dict[str, dict[int, str]] | None = None,
    redactions: dict[tuple[str, int], set[tuple[str, str]]] | None = None,
) -> list[Break]:
    anchors = anchors or {}
    redactions = redactions or {}
    data, metadata = t.column("data"), t.column("metadata")
    sids = t.column("stream_id").to_pylist()
    versions = t.column("version").to_pylist()
    stored_payload = t.column("payload_sha256").to_pylist()
    prevs = t.column("prev_hash").to_pylist()
    hashes = t.column("hash").to_pylist()
    payloads = hashing.payload_digests(t.column("data"), t.column("metadata"))
    envelopes = hashing.envelope_texts(t).to_pylist()
    breaks: list[Break] = []
    broken: set[str] = set()
    current: str | None = None
    expect_version = 1
    expect_prev = GENESIS_HASH
    for i, sid in enumerate(sids):
        if sid != current:
            current, expect_version, expect_prev = sid, 1, GENESIS_HASH
            report.streams += 1
            anchor = anchors.get(sid, {}).get(versions[i])
            if versions[i] != 1 and anchor is not None:  # starts after a recorded purge
                expect_version, expect_prev = versions[i], anchor
                report.anchored += 1
        if sid in broken:
            continue
        v = versions[i]
        found: Break | None = None
        if v != expect_version:
            found = Break(sid, v, "version", str(expect_version), str(v))
        elif payloads[i] != stored_payload[i]:
            records = redactions.get((sid, v))
            if records and (stored_payload[i], data[i].as_py()) in records and data[i].as_py() == metadata[i].as_py():
                report.redacted += 1
            else:
                found = Break(sid, v, "payload", stored_payload[i], payloads[i])
        if found:
            pass
        elif prevs[i] != expect_prev:
            found = Break(sid, v, "prev_hash", expect_prev, prevs[i])
        else:
            h = hashing.event_hash(prevs[i], stored_payload[i], envelopes[i])
            if h != hashes[i]:
                found = Break(sid, v, "hash", h, hashes[i])
        if found:
            breaks.append(found)
            broken.add(sid)
            continue
        expect_version = v + 1
        expect_prev = hashes[i]
    return breaks


def _token_counts(t: pa.Table) -> list[TokenCountFinding]:
    """Events with a token count above ``MAX_TOKENS``: one column predicate each, rows only for hits."""
    found = []
    limit = pa.scalar(MAX_TOKENS, pa.int64())
    for column in TOKEN_COLUMNS:
        hits = t.filter(pc.fill_null(pc.greater(t.column(column), limit), False))
        for sid, v, n in zip(
            hits.column("stream_id").to_pylist(), hits.column("version").to_pylist(), hits.column(column).to_pylist(), strict=True
        ):
            found.append(TokenCountFinding(sid, v, column, n))
    return sorted(found, key=lambda f: (f.stream_id, f.version, TOKEN_COLUMNS.index(f.column)))


def breaks_table(report: VerifyReport) -> pa.Table:
    rows = [b.__dict__ for b in report.breaks or []]
    schema = pa.schema(
        [
            ("stream_id", pa.string()),
            ("version", pa.int64()),
            ("check", pa.string()),
            ("expected", pa.string()),
            ("found", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def problems_table(report: VerifyReport) -> pa.Table:
    """``breaks_table`` and then the token count findings, as rows of check ``token_count``."""
    tokens = [
        {"stream_id": f.stream_id, "version": f.version, "check": "token_count",
         "expected": f"{f.column} at most {MAX_TOKENS} (int64 sums of more can wrap in rollups and budget rules)",
         "found": str(f.value)}
        for f in report.token_counts
    ]
    breaks = breaks_table(report)
    return pa.concat_tables([breaks, pa.Table.from_pylist(tokens, schema=breaks.schema)])


__all__ = ["Break", "TokenCountFinding", "VerifyReport", "breaks_table", "problems_table", "verify_journal"]
