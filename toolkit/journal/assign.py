"""Numbering a validated batch against the stream heads, column-wise.

Given the caller's events (``INPUT_SCHEMA`` plus ``_idx``, each event's index in the batch)
and the heads of the streams they touch, decide which events are new (event-id idempotency),
check given versions, give each new event its version, stream type, event id, position,
recorded_at and day (``number``, whole batch), then payload digests and the hash chain chunk by
chunk (``hash_chunks``, which the store runs beside the Parquet writer). Everything but the SHA-256
calls and UUIDv5 of id-less events runs vectorised (Polars / Arrow).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, Protocol

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from toolkit.errors import ConcurrencyError, DuplicateEventError, EventValidationError
from toolkit.journal import hashing
from toolkit.journal.prepare import DEFAULT_STREAM_TYPE
from toolkit.journal.schema import ARROW_SCHEMA, COLUMN_NAMES, ENVELOPE_COLUMNS

# event ids the journal derives: uuid5(EVENT_NAMESPACE, "<stream_id>/<version>")
EVENT_NAMESPACE = uuid.UUID("6f1c7a52-3b4e-5d8a-9c0e-7a1b2c3d4e5f")
_DUP_HINT = "an event id names one event: give the changed event a new id"

# What an event id stands for besides its stream, type and payload: an id sent again must not
# contradict the values stored in these columns (both given and different), or it is a
# DuplicateEventError naming the first such column. A value missing on one side is no
# contradiction (an OTLP span exported before its root learns its correlation later: the journal
# keeps what it recorded first). Not compared: what the journal assigns (position, recorded_at,
# hashes), what a retry of the same event may stamp anew (its time: ``occurred_at`` defaults to
# now, chat transcripts without times get import-time ones, senders re-stamp; its trace context: a
# retry is a new span), where it came from (``source``: another copy of the file;
# ``source_type``: the same event exported by two systems names its type in each one's way) and
# its stream's type (a property of the stream, fixed by its first event: importers name a default
# one when ``--stream-type`` is not given, so a rerun without the option is the same import).
_UNCLAIMED: Final = frozenset(
    {
        "occurred_at",
        "recorded_at",
        "position",
        "source",
        "source_type",
        "stream_type",
        "traceparent",
        "trace_id",
        "span_id",
    }
)
CLAIMED_COLUMNS: Final = tuple(
    c for c in ENVELOPE_COLUMNS if c not in {"stream_id", "event_type", "event_id"} and c not in _UNCLAIMED
)
#: what ``number`` needs of the journal's events in the batch's streams: their ids, and for the
#: streams holding an id sent again (``Details``) what those events say
KNOWN_IDS: Final = ("stream_id", "event_id")
KNOWN_COLUMNS: Final = (*KNOWN_IDS, "payload_sha256", "event_type", *CLAIMED_COLUMNS)
Details = Callable[[list[str]], pa.Table]


class StreamHead(Protocol):
    stream_type: str
    version: int
    hash: str | None  # known for every stream assign touches


def derived_event_id(stream_id: str, version: int) -> str:
    """The id of an event that came without one.

    >>> derived_event_id("run-1", 1)
    '681fd092-7e2d-5289-b37c-7b45e56d1762'
    """
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{stream_id}/{version}"))


def chain_starts(streams: Iterable[str], heads: Mapping[str, StreamHead]) -> dict[str, bytes]:
    """The raw head hash of every one of ``streams`` (a batch's) that already has events."""
    return {s: bytes.fromhex(h) for s in streams if s in heads and (h := heads[s].hash) is not None}


def number(
    table: pa.Table,
    heads: Mapping[str, StreamHead],
    known: pa.Table | None,
    max_position: int,
    now: dt.datetime,
    details: Details | None = None,
) -> tuple[pa.Table, int, dict[str, int]]:
    """Idempotency and numbering of the whole batch: (new rows, without digests; events skipped;
    by column, how many skipped events came with a value the event kept lacks).

    Payload digests are computed here only for events whose id is already in the journal or
    appears twice in the batch; ``hash_chunks`` computes the rest. ``known``: the ``KNOWN_IDS``
    (or all ``KNOWN_COLUMNS``) of the journal's events in the batch's streams; ``details`` reads
    the ``KNOWN_COLUMNS`` of some streams, asked only when an id is sent again (rare: most appends
    bring new events to running streams, and reading two columns of a long stream is cheaper).
    """
    keys = pl.DataFrame(
        {
            "stream_id": table.column("stream_id"),
            "_idx": table.column("_idx"),
            "event_id": table.column("event_id"),
            "given_version": table.column("version"),
            "stream_type": table.column("stream_type"),
            "event_type": table.column("event_type"),
        }
    )
    keys, skipped, lacking = _drop_known(keys, known, table, details)
    keys, twins, twins_lacking = _drop_batch_twins(keys, table)
    skipped += twins
    for c, n in twins_lacking.items():
        lacking[c] = lacking.get(c, 0) + n
    if keys.height == 0:
        return ARROW_SCHEMA.empty_table(), skipped, lacking

    touched = keys.get_column("stream_id").unique().to_list()
    head_rows = [(s, heads[s].version, heads[s].stream_type) for s in touched if s in heads]
    head_frame = pl.DataFrame(
        head_rows,
        schema={"stream_id": pl.String, "head_version": pl.Int64, "head_type": pl.String},
        orient="row",
    )
    # rows stay in the caller's order: that is commit (position) order, and within a stream
    # it is version order
    # each stream's events in a run of rows (the usual batch): windows over the run number
    # instead of hashing the stream id strings
    runs = keys.get_column("stream_id").rle_id()
    group = "_run" if runs[-1] + 1 == len(touched) else "stream_id"
    keys = keys.with_columns(_run=runs).join(head_frame, on="stream_id", how="left", maintain_order="left")
    keys = keys.with_columns(
        version=pl.col("head_version").fill_null(0) + pl.int_range(1, pl.len() + 1).over(group),
        final_type=pl.coalesce(
            pl.col("head_type"),
            pl.col("stream_type").drop_nulls().first().over(group),
            pl.lit(DEFAULT_STREAM_TYPE),
        ),
        position=pl.int_range(max_position + 1, max_position + 1 + pl.len(), dtype=pl.Int64),
    ).drop("_run")
    _check_versions(keys)
    _check_types(keys)
    event_ids = keys.get_column("event_id")
    if event_ids.null_count():
        ids = event_ids.to_list()
        for i, (sid, v) in enumerate(keys.select("stream_id", "version").iter_rows()):
            if ids[i] is None:
                ids[i] = derived_event_id(sid, v)
        event_ids = pl.Series("event_id", ids, dtype=pl.String)

    out = table if keys.height == table.num_rows else table.take(keys.get_column("_idx").to_arrow())
    out = _set(out, "version", keys.get_column("version").to_arrow())
    out = _set(out, "stream_type", keys.get_column("final_type").to_arrow())
    out = _set(out, "event_id", event_ids.to_arrow())
    out = _set(out, "position", keys.get_column("position").to_arrow())
    out = out.append_column(
        "recorded_at", pa.repeat(pa.scalar(now, ARROW_SCHEMA.field("recorded_at").type), out.num_rows)
    )
    out = out.append_column("day", pc.cast(out.column("occurred_at"), pa.date32()))  # the column is UTC
    return out, skipped, lacking


def hash_chunks(numbered: pa.Table, starts: dict[str, bytes], chunk_rows: int = 1 << 16) -> Iterator[pa.Table]:
    """Payload digests and the hash chain of ``number``'s rows, in chunks of ``chunk_rows``.

    Yields tables in ``ARROW_SCHEMA``. ``starts`` (raw head hashes by stream) carries the chain
    from one chunk to the next and is updated.
    """
    for offset in range(0, numbered.num_rows, chunk_rows):
        chunk = numbered.slice(offset, chunk_rows)
        payloads = hashing.payload_column(chunk.column("data"), chunk.column("metadata"))
        chunk = _set(chunk, "payload_sha256", payloads)
        prevs, hashes = hashing.link(
            pl.Series(chunk.column("stream_id")).to_list(), hashing.chain_messages(chunk, payloads), starts
        )
        chunk = chunk.append_column("prev_hash", prevs).append_column("hash", hashes)
        yield chunk.select(list(COLUMN_NAMES)).cast(ARROW_SCHEMA)


def _set(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    values = pc.cast(values, ARROW_SCHEMA.field(name).type)  # Polars hands out large_string
    i = table.schema.get_field_index(name)
    return table.set_column(i, name, values) if i >= 0 else table.append_column(name, values)


def _with_payloads(rows: pl.DataFrame, table: pa.Table) -> pl.DataFrame:
    """``rows`` (holding ``_idx``) with the payload digest of those events of ``table``."""
    picked = table.select(["data", "metadata"]).take(rows.get_column("_idx").to_arrow())
    return rows.with_columns(
        payload=pl.Series(hashing.payload_column(picked.column("data"), picked.column("metadata")))
    )


def _drop_known(
    keys: pl.DataFrame, known: pa.Table | None, table: pa.Table, details: Details | None
) -> tuple[pl.DataFrame, int, dict[str, int]]:
    """Skip events whose id is already in the journal with the same content; refuse changed ones."""
    if known is None or known.num_rows == 0:
        return keys, 0, {}
    ids = pl.DataFrame(known.select(list(KNOWN_IDS)))
    sent_again = ids.filter(pl.col("event_id").is_in(keys.get_column("event_id").implode()))
    if sent_again.height == 0:
        return keys, 0, {}  # the usual case: new events of running streams
    if details is not None:
        known = details(sorted(set(sent_again.get_column("stream_id").to_list())))
    k = pl.DataFrame(_typed(known, list(KNOWN_COLUMNS))).rename(
        {"stream_id": "k_stream", "payload_sha256": "k_payload", "event_type": "k_type"}
    )
    hit = keys.select("_idx", "event_id", "stream_id", "event_type").join(k, on="event_id", how="inner")
    if hit.height == 0:
        return keys, 0, {}
    hit = _with_payloads(hit, table)
    changed = hit.filter(
        (pl.col("k_stream") != pl.col("stream_id"))
        | (pl.col("k_payload") != pl.col("payload"))
        | (pl.col("k_type") != pl.col("event_type"))
    ).sort("_idx")
    if changed.height:
        row = changed.row(0, named=True)
        where = f" (stream {row['k_stream']!r})" if row["k_stream"] != row["stream_id"] else ""
        raise DuplicateEventError(
            f"event {row['_idx']}: event_id {row['event_id']!r} is already in the journal "
            f"with different content{where}",
            hint=_DUP_HINT,
            event_id=row["event_id"],
            index=row["_idx"],
        )
    claims = _claims(table, hit.get_column("_idx"))
    found = _first_change(claims, hit)
    if found is not None:
        idx, column, was, now_ = found
        event_id = hit.filter(pl.col("_idx") == idx).item(0, "event_id")
        raise DuplicateEventError(
            f"event {idx}: event_id {event_id!r} is already in the journal with different content "
            f"({column}: {was} in the journal, {now_} here)",
            hint=_DUP_HINT,
            event_id=event_id,
            index=idx,
            column=column,
        )
    dropped = keys.filter(~pl.col("_idx").is_in(hit.get_column("_idx").implode()))
    return dropped, hit.height, _lacking(claims, hit)


def _typed(table: pa.Table, names: list[str]) -> pa.Table:
    """``names`` of ``table`` in the journal's types (columns an older table lacks: null)."""
    cols = [
        table.column(n) if n in table.column_names else pa.nulls(table.num_rows, ARROW_SCHEMA.field(n).type)
        for n in names
    ]
    return pa.table(cols, names=names).cast(pa.schema([ARROW_SCHEMA.field(n).with_nullable(True) for n in names]))


def _claims(table: pa.Table, idx: pl.Series) -> pl.DataFrame:
    """The CLAIMED_COLUMNS of the caller's rows ``idx``, in that order."""
    present = [c for c in CLAIMED_COLUMNS if c in table.column_names]
    return pl.DataFrame(_typed(table.select(present).take(idx.to_arrow()), list(CLAIMED_COLUMNS)))


def _first_change(new: pl.DataFrame, old: pl.DataFrame) -> tuple[int, str, str, str] | None:
    """The row of ``new`` with the lowest ``_idx`` (rows aligned with ``old``, which holds it)
    whose claims contradict ``old``'s: (its ``_idx``, the first such column, old value, new value)."""
    differs = pl.DataFrame(
        {c: (new.get_column(c) != old.get_column(c)).fill_null(False) for c in CLAIMED_COLUMNS}
    ).with_columns(_idx=old.get_column("_idx"), _row=pl.int_range(0, old.height))
    rows = differs.filter(pl.any_horizontal(list(CLAIMED_COLUMNS)))
    if rows.height == 0:
        return None
    first = rows.sort("_idx").row(0, named=True)
    i = first["_row"]
    column = next(c for c in CLAIMED_COLUMNS if first[c])
    return first["_idx"], column, _shown(old.item(i, column)), _shown(new.item(i, column))


def _lacking(new: pl.DataFrame, kept: pl.DataFrame) -> dict[str, int]:
    """By column, how many rows of ``new`` hold a value where the aligned row of ``kept`` has none."""
    counts = pl.DataFrame(
        {c: new.get_column(c).is_not_null() & kept.get_column(c).is_null() for c in CLAIMED_COLUMNS}
    ).sum()
    return {c: n for c, n in counts.row(0, named=True).items() if n}


def _shown(value: Any) -> str:
    return "null" if value is None else repr(value) if isinstance(value, str) else str(value)


def _drop_batch_twins(keys: pl.DataFrame, table: pa.Table) -> tuple[pl.DataFrame, int, dict[str, int]]:
    """The same id twice in one batch: identical → keep the first; different → refuse."""
    with_id = keys.filter(pl.col("event_id").is_not_null())
    ids = with_id.get_column("event_id")
    if ids.n_unique() == ids.len():  # the usual case, cheaper to learn than which ids repeat
        return keys, 0, {}
    dup = with_id.filter(pl.col("event_id").is_duplicated())
    if dup.height == 0:
        return keys, 0, {}
    dup = (
        _with_payloads(dup, table)
        .sort("_idx")
        .with_columns(
            first_idx=pl.col("_idx").first().over("event_id"),
            differs=(pl.struct("stream_id", "payload", "event_type").n_unique().over("event_id") > 1),
        )
    )
    bad = dup.filter(pl.col("differs") & (pl.col("_idx") != pl.col("first_idx")))
    if bad.height:
        row = bad.row(0, named=True)
        raise DuplicateEventError(
            f"event {row['_idx']}: event_id {row['event_id']!r} also names event {row['first_idx']} "
            "of this batch, with different content",
            hint=_DUP_HINT,
            event_id=row["event_id"],
            index=row["_idx"],
            first_index=row["first_idx"],
        )
    later = dup.filter(pl.col("_idx") != pl.col("first_idx")).select("_idx", "first_idx", "event_id")
    later_claims = _claims(table, later.get_column("_idx"))
    first_claims = _claims(table, later.get_column("first_idx")).with_columns(_idx=later.get_column("_idx"))
    found = _first_change(later_claims, first_claims)
    if found is not None:
        idx, column, was, now_ = found
        row = later.filter(pl.col("_idx") == idx).row(0, named=True)
        raise DuplicateEventError(
            f"event {idx}: event_id {row['event_id']!r} also names event {row['first_idx']} of this batch, "
            f"with different content ({column}: {was} there, {now_} here)",
            hint=_DUP_HINT,
            event_id=row["event_id"],
            index=idx,
            first_index=row["first_idx"],
            column=column,
        )
    drop = later.get_column("_idx")
    return keys.filter(~pl.col("_idx").is_in(drop.implode())), drop.len(), _lacking(later_claims, first_claims)


def _check_versions(keys: pl.DataFrame) -> None:
    bad = keys.filter(pl.col("given_version").is_not_null() & (pl.col("given_version") != pl.col("version")))
    if bad.height:
        row = bad.sort("_idx").row(0, named=True)
        raise ConcurrencyError(
            f"event {row['_idx']}: stream {row['stream_id']!r} version {row['given_version']} given, "
            f"but the next version is {row['version']}",
            hint="leave version out to let the journal number events, or pass the stream's next version",
            stream_id=row["stream_id"],
            expected=row["given_version"] - 1,
            actual=row["version"] - 1,
            index=row["_idx"],
        )


def _check_types(keys: pl.DataFrame) -> None:
    bad = keys.filter(pl.col("stream_type").is_not_null() & (pl.col("stream_type") != pl.col("final_type")))
    if bad.height:
        row = bad.sort("_idx").row(0, named=True)
        raise EventValidationError.field(
            "stream_type",
            row["_idx"],
            f"stream {row['stream_id']!r} is of type {row['final_type']!r}, not {row['stream_type']!r}",
            hint="a stream keeps the type of its first event; leave stream_type out or use a new stream id",
        )
