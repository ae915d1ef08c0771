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


def _float_bits(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The IEEE-754 bits of a float column as int64, so the text never depends on a float formatter."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return pa.Array.from_buffers(pa.int64(), len(arr), arr.buffers(), arr.null_count, arr.offset)


def _value_text(name: str, dtype: pl.DataType, escape: bool) -> pl.Expr:
    """The text of a column's value, null where the value is null."""
    e = pl.col(name)
    if dtype == pl.String:
        if escape:  # only when some value holds a separator: the regex pass is costly
            e = e.str.replace_all("([\x1e\x1f])", "\x1e$1")
        return e
    if isinstance(dtype, pl.Datetime):
        return e.dt.epoch("us").cast(pl.String)
    if dtype == pl.Boolean:
        return pl.when(e).then(pl.lit("t")).when(e.not_()).then(pl.lit("f"))
    return e.cast(pl.String)  # integers (floats arrive as their bits), decimals


def _envelope_frame(table: pa.Table) -> tuple[pl.DataFrame, set[str]]:
    """The envelope columns of ``table`` for Polars, and the names of those whose text may hold a separator."""
    cols = {}
    escape = set()
    for name in ENVELOPE_COLUMNS:
        if name not in table.column_names:  # a column newer than this table: null
            continue
        col = table.column(name)
        cols[name] = _series(_float_bits(col) if pa.types.is_floating(col.type) else col)
        if (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)) and _may_hold_separators(col):
            escape.add(name)
    return pl.DataFrame(cols), escape


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


def _envelope(frame: pl.DataFrame, escape: set[str], lead: str | None = None) -> pl.Series:
    """The envelope of every row (``lead``'s value in front of it, when given), as text.

    One ``concat_str`` of literals and values, nulls skipped: a column without nulls
    contributes ``SEP name=`` and its value; a column with some nulls contributes
    ``SEP name=value``, which is null where the value is. That is the text of joining the
    non-null ``name=value`` pairs by the separator, without the costly null-skipping join.
    String values of the columns in ``escape`` have their separators escaped.
    """
    names = [n for n in frame.columns if n != lead]
    nulls = dict(zip(frame.columns, frame.null_count().row(0), strict=True))
    present = [n for n in names if nulls[n] < frame.height]
    parts: list[pl.Expr] = [pl.col(lead)] if lead else []
    if present and nulls[present[0]]:  # no required column leads (never in a journal): the plain join
        pairs = [pl.concat_str(pl.lit(f"{n}="), _value_text(n, frame.schema[n], n in escape)) for n in present]
        parts.append(pl.concat_str(pairs, separator=_SEP, ignore_nulls=True).fill_null(""))
    else:
        for i, n in enumerate(present):
            label = pl.lit(f"{_SEP if i else ''}{n}=")
            value = _value_text(n, frame.schema[n], n in escape)
            parts += [pl.concat_str(label, value)] if nulls[n] else [label, value]
    expr = pl.concat_str(parts, ignore_nulls=True) if parts else pl.repeat("", pl.len(), dtype=pl.String)
    return frame.select(expr.alias("envelope")).to_series()


def envelope_texts(table: pa.Table) -> pl.Series:
    """The envelope of every row as text (see the module docstring).

    >>> import pyarrow as pa
    >>> envelope_texts(pa.table({"stream_id": ["r"], "version": [1], "agent": [None]})).to_list() == [
    ...     "stream_id=r" + chr(0x1F) + "version=1"]
    True
    >>> envelope_texts(pa.table({"stream_id": ["r", "s"], "agent": [None, "a"], "tokens_in": [1, None]})).to_list() == [
    ...     "stream_id=r" + chr(0x1F) + "tokens_in=1", "stream_id=s" + chr(0x1F) + "agent=a"]
    True
    """
    return _envelope(*_envelope_frame(table))


def chain_messages(table: pa.Table, payloads: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``payload_sha256 ‖ envelope`` of every row (one binary array): what each chain link hashes
    after the previous hash."""
    frame, escape = _envelope_frame(table)
    frame = frame.with_columns(_payload=_series(payloads))
    return _envelope(frame, escape, lead="_payload").cast(pl.Binary).rechunk().to_arrow()


def _is_large(t: pa.DataType) -> bool:
    return bool(pa.types.is_large_binary(t) or pa.types.is_large_string(t))


def link(stream_ids: list[str], messages: pa.Array, heads: dict[str, bytes]) -> tuple[pa.Array, pa.Array]:
    """The chain over ``messages`` (rows in version order per stream); ``heads`` (raw hashes) is updated.

    Each message is read in place from the array's buffer (no Python object per message: 64k
    of them, ≈ 40 MB, were allocated and freed per chunk). Returns the hex ``prev_hash`` and
    ``hash`` columns.
    """
    if not (pa.types.is_binary(messages.type) or pa.types.is_string(messages.type) or _is_large(messages.type)):
        messages = messages.cast(pa.large_binary())  # a view type has no offsets buffer to read
    _, offsets, data = messages.buffers()
    wide = _is_large(messages.type)
    bounds = memoryview(offsets).cast("q" if wide else "i")[messages.offset : messages.offset + len(messages) + 1]
    text = memoryview(data if data is not None else b"")
    prevs: list[bytes] = []
    digests: list[bytes] = []
    add_prev, add = prevs.append, digests.append
    current: str | None = None
    prev = _GENESIS
    lo = bounds[0]
    for sid, hi in zip(stream_ids, bounds[1:], strict=True):
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
    if current is not None:
        heads[current] = prev
    out = pl.DataFrame({"prev": pl.Series(prevs, dtype=pl.Binary), "hash": pl.Series(digests, dtype=pl.Binary)})
    out = out.select(pl.all().bin.encode("hex"))
    return out.get_column("prev").to_arrow().cast(pa.string()), out.get_column("hash").to_arrow().cast(pa.string())


def event_hash(prev_hash: str, payload_sha256: str, envelope: str) -> str:
    """One event's hash, recomputed (verify)."""
    return _sha256(bytes.fromhex(prev_hash) + f"{payload_sha256}{envelope}".encode()).hexdigest()
