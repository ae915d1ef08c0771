"""Payload digests and the per-stream SHA-256 hash chain.

``payload_sha256 = hex(sha256(data ␞ metadata))`` over the stored JSON text.

Each event's ``hash = hex(sha256(raw(prev_hash) ‖ payload_sha256 ‖ envelope))``, where
``raw(prev_hash)`` is the 32 bytes of the previous event's hash (``GENESIS_HASH`` for the first
event of a stream) and the envelope lists every *non-null* column of ``ENVELOPE_COLUMNS`` as
``name=text``, in schema order, joined by U+001F. Integers and timestamps (µs since the epoch)
are decimal text, floats the decimal text of their IEEE-754 bits, booleans ``t``/``f``; inside
string values U+001E and U+001F are escaped by a leading U+001E, so no value can shift into its
neighbour. Null columns are left out, so a journal whose schema grew by a nullable column
(a minor version) still verifies the hashes of events written before. Because data and metadata
enter only through their digest, a payload can be redacted later (digest kept, text replaced)
without breaking the chain.

Encodings are built column-wise with Polars. Payload digests are computed vectorised by the
``polars-hash`` plugin (Rust, no GIL) where it is installed, else by ``hashlib`` row by row (the
same digests); the chain's SHA-256 calls run per event (each needs the one before).

>>> import pyarrow as pa
>>> payload_digests(pa.array(['{"a":1}']), pa.array(['{}']))[0]
'f54345ec070c887c989171a34ca59fb2489d6d3cb5656034743a5ac6c77830f5'
"""

from __future__ import annotations

import hashlib
import importlib
from operator import methodcaller
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from toolkit.journal.schema import ENVELOPE_COLUMNS, GENESIS_HASH

_sha256 = hashlib.sha256
_hexdigest = methodcaller("hexdigest")
_NULL = "\x1e"
_SEP = "\x1f"
_GENESIS = bytes.fromhex(GENESIS_HASH)


def polars_hash_plugin() -> Any:
    """The ``polars-hash`` plugin (vectorised SHA-256), or None: ``hashlib`` gives the same digests."""
    try:
        return importlib.import_module("polars_hash")
    except ImportError:
        return None


_plh = polars_hash_plugin()


def _series(col: pa.Array | pa.ChunkedArray) -> pl.Series:
    return pl.Series(col)  # zero-copy where Arrow allows


def payload_digests(data: pa.Array | pa.ChunkedArray, metadata: pa.Array | pa.ChunkedArray) -> list[str]:
    """The hex digest of every event's payload."""
    return payload_column(data, metadata).to_pylist()  # type: ignore[no-any-return]


def payload_column(data: pa.Array | pa.ChunkedArray, metadata: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``payload_digests`` as an Arrow string array."""
    frame = pl.DataFrame({"d": _series(data), "m": _series(metadata)})
    if _plh is None:
        return _payload_column_hashlib(frame)
    digests = frame.select(_plh.concat_str("d", "m", separator=_NULL).chash.sha2_256()).to_series()
    return digests.to_arrow().cast(pa.string())


def _payload_column_hashlib(frame: pl.DataFrame) -> pa.Array:
    joined = frame.select(pl.concat_str("d", "m", separator=_NULL).cast(pl.Binary)).to_series()
    return pa.array(list(map(_hexdigest, map(_sha256, joined.to_list()))), pa.string())


def _value_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """The text of a column's values, null where the value is null."""
    t = col.type
    if pa.types.is_string_view(t):
        col, t = col.cast(pa.large_string()), pa.large_string()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if _may_hold_separators(col):  # only then: the regex pass is costly
            col = pc.replace_substring_regex(col, pattern="([\x1e\x1f])", replacement="\x1e\\1")
        return col
    if pa.types.is_timestamp(t):
        return pc.cast(pc.cast(col, pa.timestamp("us", tz=t.tz), safe=False).cast(pa.int64()), pa.string())
    if pa.types.is_boolean(t):
        return pc.if_else(col, "t", "f")
    if pa.types.is_floating(t):
        return pc.cast(_float_bits(col), pa.string())
    if pa.types.is_decimal(t):  # Arrow would write 0E-9 for zero: Polars writes every decimal place
        return pa.chunked_array([pl.Series(c).cast(pl.String).to_arrow() for c in col.chunks], pa.large_string())
    return pc.cast(col, pa.string())  # integers


def _float_bits(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """The IEEE-754 bits of a float column as int64, so the text never depends on a float formatter."""
    col = col.cast(pa.float64())
    return pa.chunked_array(
        [pa.Array.from_buffers(pa.int64(), len(c), c.buffers(), c.null_count, c.offset) for c in col.chunks],
        pa.int64(),
    )


def _may_hold_separators(col: pa.ChunkedArray) -> bool:
    """Whether some value holds U+001E or U+001F: one ``memchr`` over the bytes of the values.

    (Bytes of null values may be scanned too: a false alarm only costs the escaping pass.)
    """
    for chunk in col.chunks:
        _, offsets, data = chunk.buffers()
        if data is None or offsets is None or len(chunk) == 0:
            continue
        bounds = memoryview(offsets).cast("q" if pa.types.is_large_string(chunk.type) else "i")
        lo, hi = bounds[chunk.offset], bounds[chunk.offset + len(chunk)]
        text = data.slice(lo, hi - lo).to_pybytes()
        if text.find(b"\x1e") >= 0 or text.find(b"\x1f") >= 0:
            return True
    return False


def _envelope(table: pa.Table, lead: pa.ChunkedArray | None = None) -> pa.ChunkedArray:
    """The envelope of every row of ``table`` (``lead``'s value in front of it, when given), as text.

    One ``binary_join_element_wise`` of literals and values, nulls skipped: a column without
    nulls contributes ``SEP name=`` and its value; a column with some nulls contributes
    ``SEP name=value``, which is null where the value is. That is the text of joining the
    non-null ``name=value`` pairs by the separator, without the costly null-skipping join.
    (Arrow's kernels: the Polars ``concat_str`` of the same parts took 1.6 times as long.)
    """
    n = table.num_rows
    present = [
        (name, table.column(name))
        for name in ENVELOPE_COLUMNS
        if name in table.column_names and table.column(name).null_count < n
    ]
    texts = [(name, _value_text(col), col.null_count > 0) for name, col in present]
    kind = pa.large_string() if _too_long_for_int32(texts, lead) else pa.string()
    empty = pa.scalar("", kind)
    texts = [(name, v if v.type == kind else v.cast(kind), nulls) for name, v, nulls in texts]
    parts: list[pa.ChunkedArray | pa.Scalar] = [] if lead is None else [lead.cast(kind)]
    if texts and texts[0][2]:  # no required column leads (never in a journal): the plain join
        pairs = [pc.binary_join_element_wise(pa.scalar(f"{name}=", kind), v, empty) for name, v, _ in texts]
        # Arrow (26) drops the rows whose values are all null from a null-skipping join: a last
        # empty value keeps every row, and leaves a separator to cut where some pair was joined
        joined = pc.binary_join_element_wise(*pairs, empty, pa.scalar(_SEP, kind), null_handling="skip")
        parts.append(pc.utf8_slice_codeunits(joined, 0, -1))
    else:
        for i, (name, v, nulls) in enumerate(texts):
            label = pa.scalar(f"{_SEP if i else ''}{name}=", kind)
            parts += [pc.binary_join_element_wise(label, v, empty)] if nulls else [label, v]
    if not any(isinstance(part, pa.ChunkedArray) for part in parts):
        return pa.chunked_array([pa.array([""] * n, kind)], kind)
    out = pc.binary_join_element_wise(*parts, empty, null_handling="skip")
    return out if isinstance(out, pa.ChunkedArray) else pa.chunked_array([out], kind)


def _too_long_for_int32(texts: list[tuple[str, pa.ChunkedArray, bool]], lead: pa.ChunkedArray | None) -> bool:
    """Whether the joined text of some chunk may not fit 32-bit offsets."""
    size = sum(v.nbytes + v.length() * (len(name) + 2) for name, v, _ in texts)
    return bool(size + (lead.nbytes if lead is not None else 0) >= (1 << 31) - 1)


def envelope_texts(table: pa.Table) -> pa.ChunkedArray:
    """The envelope of every row as text (see the module docstring).

    >>> import pyarrow as pa
    >>> envelope_texts(pa.table({"stream_id": ["r"], "version": [1], "agent": [None]})).to_pylist() == [
    ...     "stream_id=r" + chr(0x1F) + "version=1"]
    True
    >>> envelope_texts(pa.table({"stream_id": ["r", "s"], "agent": [None, "a"], "tokens_in": [1, None]})).to_pylist() == [
    ...     "stream_id=r" + chr(0x1F) + "tokens_in=1", "stream_id=s" + chr(0x1F) + "agent=a"]
    True
    """
    return _envelope(table)


def chain_messages(table: pa.Table, payloads: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """``payload_sha256 ‖ envelope`` of every row: what each chain link hashes after the previous hash."""
    return _envelope(table, payloads if isinstance(payloads, pa.ChunkedArray) else pa.chunked_array([payloads]))


def _is_large(t: pa.DataType) -> bool:
    return bool(pa.types.is_large_binary(t) or pa.types.is_large_string(t))


def link(
    stream_ids: list[str], messages: pa.Array | pa.ChunkedArray, heads: dict[str, bytes]
) -> tuple[pa.Array, pa.Array]:
    """The chain over ``messages`` (rows in version order per stream); ``heads`` (raw hashes) is updated.

    Each message is read in place from its chunk's buffer (no Python object per message: 64k
    of them, ≈ 40 MB, were allocated and freed per chunk; no chunks joined first either).
    Returns the hex ``prev_hash`` and ``hash`` columns.
    """
    chunks = messages.chunks if isinstance(messages, pa.ChunkedArray) else [messages]
    prevs: list[bytes] = []
    digests: list[bytes] = []
    add_prev, add = prevs.append, digests.append
    current: str | None = None
    prev = _GENESIS
    row = 0
    for chunk in chunks:
        bounds, text = _in_place(chunk)
        lo = bounds[0]
        for sid, hi in zip(stream_ids[row : row + len(chunk)], bounds[1:], strict=True):
            if sid != current:
                if current is not None:
                    heads[current] = prev
                current = sid
                prev = heads.get(sid, _GENESIS)
            add_prev(prev)
            h = _sha256(prev)
            h.update(text[lo:hi])  # in place: prev + message would copy the message first (≈ 0.15 µs)
            prev = h.digest()
            lo = hi
            add(prev)
        row += len(chunk)
    if row != len(stream_ids):
        raise ValueError(f"{len(stream_ids)} stream ids for {row} messages")
    if current is not None:
        heads[current] = prev
    out = pl.DataFrame({"prev": pl.Series(prevs, dtype=pl.Binary), "hash": pl.Series(digests, dtype=pl.Binary)})
    out = out.select(pl.all().bin.encode("hex"))
    return out.get_column("prev").to_arrow().cast(pa.string()), out.get_column("hash").to_arrow().cast(pa.string())


def _in_place(chunk: pa.Array) -> tuple[memoryview, memoryview]:
    """The offsets of ``chunk``'s values (one more than its length) and the bytes they index."""
    if not (pa.types.is_binary(chunk.type) or pa.types.is_string(chunk.type) or _is_large(chunk.type)):
        chunk = chunk.cast(pa.large_binary())  # a view type has no offsets buffer to read
    _, offsets, data = chunk.buffers()
    wide = _is_large(chunk.type)
    bounds = memoryview(offsets).cast("q" if wide else "i")[chunk.offset : chunk.offset + len(chunk) + 1]
    return bounds, memoryview(data if data is not None else b"")


def event_hash(prev_hash: str, payload_sha256: str, envelope: str) -> str:
    """One event's hash, recomputed (verify)."""
    return _sha256(bytes.fromhex(prev_hash) + f"{payload_sha256}{envelope}".encode()).hexdigest()
