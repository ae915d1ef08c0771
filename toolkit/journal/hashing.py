"""Payload digests and the per-stream SHA-256 hash chain.

``payload_sha256 = sha256(data ␞ metadata)`` over the stored JSON text. Each event's
``hash = sha256(prev_hash ‖ payload_sha256 ‖ envelope)`` where the envelope is every
column in ``ENVELOPE_COLUMNS`` encoded length-prefixed (``<bytes>:<text>``, ``-`` for null),
so no value can shift into its neighbour. The first event of a stream chains from
``GENESIS_HASH``. Because data and metadata enter only through their digest, a payload can
be redacted later (digest kept, text replaced) without breaking the chain.

Encodings are built column-wise with Arrow compute; only the SHA-256 calls run per event.

>>> import pyarrow as pa
>>> payload_digests(pa.array(['{"a":1}']), pa.array(['{}']))[0]
'f54345ec070c887c989171a34ca59fb2489d6d3cb5656034743a5ac6c77830f5'
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from toolkit.journal.schema import ENVELOPE_COLUMNS, GENESIS_HASH

_sha256 = hashlib.sha256


def payload_digests(data: pa.Array | pa.ChunkedArray, metadata: pa.Array | pa.ChunkedArray) -> list[str]:
    joined = pc.binary_join_element_wise(data, metadata, "\x1e")
    return [_sha256(s.encode()).hexdigest() for s in joined.to_pylist()]


def _as_text(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    t = col.type
    if pa.types.is_string(t):
        return col
    if pa.types.is_timestamp(t):
        return pc.cast(pc.cast(col, pa.int64()), pa.string())
    if pa.types.is_floating(t):
        # the IEEE-754 bits, so the text never depends on a float formatter
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        bits = pa.Array.from_buffers(pa.int64(), len(arr), arr.buffers(), arr.null_count, arr.offset)
        return pc.cast(bits, pa.string())
    if pa.types.is_boolean(t):
        return pc.if_else(col, "t", "f")
    return pc.cast(col, pa.string())


def envelope_texts(table: pa.Table) -> list[str]:
    """Length-prefixed encoding of the envelope columns, one string per row."""
    parts = []
    for name in ENVELOPE_COLUMNS:
        text = _as_text(table.column(name))
        prefixed = pc.binary_join_element_wise(pc.cast(pc.binary_length(text), pa.string()), text, ":")
        parts.append(pc.fill_null(prefixed, "-"))
    return pc.binary_join_element_wise(*parts, "\x1f").to_pylist()  # type: ignore[no-any-return]


def chain_hashes(
    stream_ids: Sequence[str],
    payloads: Sequence[str],
    envelopes: Sequence[str],
    start: dict[str, str],
) -> tuple[list[str], list[str]]:
    """Chain rows sorted by (stream_id, version); ``start`` gives each stream's head hash."""
    prevs: list[str] = []
    hashes: list[str] = []
    current_stream: str | None = None
    prev = GENESIS_HASH
    for sid, payload, env in zip(stream_ids, payloads, envelopes, strict=True):
        if sid != current_stream:
            current_stream = sid
            prev = start.get(sid, GENESIS_HASH)
        prevs.append(prev)
        prev = _sha256(f"{prev}{payload}{env}".encode()).hexdigest()
        hashes.append(prev)
    return prevs, hashes
