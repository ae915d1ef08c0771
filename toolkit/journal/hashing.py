"""Payload digests and the per-stream SHA-256 hash chain.

``payload_sha256 = hex(sha256(data ␞ metadata))`` over the stored JSON text.

Each event's ``hash = hex(sha256(raw(prev_hash) ‖ payload_sha256 ‖ envelope))``, where
``raw(prev_hash)`` is the 32 bytes of the previous event's hash (``GENESIS_HASH`` for the first
event of a stream) and the envelope is every column of ``ENVELOPE_COLUMNS`` as text joined by
U+001F. Integers and timestamps (µs since the epoch) are decimal text, floats the decimal text
of their IEEE-754 bits, booleans ``t``/``f``, null is U+001E alone; inside string values
U+001E and U+001F are escaped by a leading U+001E, so no value can shift into its neighbour.
Because data and metadata enter only through their digest, a payload can be redacted later
(digest kept, text replaced) without breaking the chain.

Encodings are built column-wise with Arrow compute; only the SHA-256 calls run per event.

>>> import pyarrow as pa
>>> payload_digests(pa.array(['{"a":1}']), pa.array(['{}']))[0]
'f54345ec070c887c989171a34ca59fb2489d6d3cb5656034743a5ac6c77830f5'
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from operator import methodcaller

import pyarrow as pa
import pyarrow.compute as pc

from toolkit.journal.schema import ENVELOPE_COLUMNS, GENESIS_HASH

_sha256 = hashlib.sha256
_hexdigest = methodcaller("hexdigest")
_NULL = "\x1e"
_SEP = "\x1f"


def payload_digests(data: pa.Array | pa.ChunkedArray, metadata: pa.Array | pa.ChunkedArray) -> list[str]:
    joined = pc.cast(pc.binary_join_element_wise(data, metadata, _NULL), pa.binary())
    return list(map(_hexdigest, map(_sha256, joined.to_pylist())))


def _as_text(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    t = col.type
    if pa.types.is_string(t):
        if pc.any(pc.match_substring_regex(col, "[\x1e\x1f]")).as_py():
            col = pc.replace_substring_regex(col, "([\x1e\x1f])", "\x1e\\1")
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


def envelope_texts(table: pa.Table) -> pa.ChunkedArray | pa.Array:
    """The envelope of every row as text (see the module docstring)."""
    parts: list[pa.ChunkedArray | pa.Array | pa.Scalar] = []
    for name in ENVELOPE_COLUMNS:
        col = table.column(name)
        if col.null_count == len(col):
            parts.append(pa.scalar(_NULL))
        else:
            parts.append(pc.fill_null(_as_text(col), _NULL) if col.null_count else _as_text(col))
    return pc.binary_join_element_wise(*parts, _SEP)


def chain_hashes(
    stream_ids: Sequence[str],
    payloads: pa.Array | pa.ChunkedArray,
    envelopes: pa.Array | pa.ChunkedArray,
    start: dict[str, str],
) -> tuple[list[str], list[str]]:
    """Chain rows given in version order per stream (streams may interleave).

    ``start`` gives the head hash of streams that already have events. Returns the
    ``prev_hash`` and ``hash`` of every row.
    """
    messages = pc.cast(pc.binary_join_element_wise(payloads, envelopes, ""), pa.binary()).to_pylist()
    heads = {sid: bytes.fromhex(h) for sid, h in start.items()}
    genesis = bytes.fromhex(GENESIS_HASH)
    prevs: list[bytes] = []
    digests: list[bytes] = []
    add_prev, add_digest, get = prevs.append, digests.append, heads.get
    for sid, msg in zip(stream_ids, messages, strict=True):
        prev = get(sid, genesis)
        d = _sha256(prev + msg).digest()
        heads[sid] = d
        add_prev(prev)
        add_digest(d)
    return list(map(bytes.hex, prevs)), list(map(bytes.hex, digests))


def event_hash(prev_hash: str, payload_sha256: str, envelope: str) -> str:
    """One event's hash, recomputed (verify)."""
    return _sha256(bytes.fromhex(prev_hash) + f"{payload_sha256}{envelope}".encode()).hexdigest()
