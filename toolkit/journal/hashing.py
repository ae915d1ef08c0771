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

Encodings are built column-wise with Arrow compute; only the SHA-256 calls run per event.

>>> import pyarrow as pa
>>> payload_digests(pa.array(['{"a":1}']), pa.array(['{}']))[0]
'f54345ec070c887c989171a34ca59fb2489d6d3cb5656034743a5ac6c77830f5'
"""

from __future__ import annotations

import hashlib
from operator import methodcaller

import polars as pl
import pyarrow as pa

from toolkit.journal.schema import ENVELOPE_COLUMNS, GENESIS_HASH

_sha256 = hashlib.sha256
_hexdigest = methodcaller("hexdigest")
_NULL = "\x1e"
_SEP = "\x1f"
_GENESIS = bytes.fromhex(GENESIS_HASH)


def _series(col: pa.Array | pa.ChunkedArray) -> pl.Series:
    return pl.Series(col)  # zero-copy where Arrow allows


def payload_digests(data: pa.Array | pa.ChunkedArray, metadata: pa.Array | pa.ChunkedArray) -> list[str]:
    joined = pl.DataFrame({"d": _series(data), "m": _series(metadata)}).select(
        pl.concat_str("d", "m", separator=_NULL).cast(pl.Binary)
    )
    return list(map(_hexdigest, map(_sha256, joined.to_series().to_list())))


def _float_bits(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The IEEE-754 bits of a float column as int64, so the text never depends on a float formatter."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return pa.Array.from_buffers(pa.int64(), len(arr), arr.buffers(), arr.null_count, arr.offset)


def _text(name: str, dtype: pl.DataType, escape: bool) -> pl.Expr:
    """``name=text`` of a column's value, null where the value is null."""
    e = pl.col(name)
    if dtype == pl.String:
        if escape:  # only when some value holds a separator: the regex pass is costly
            e = e.str.replace_all("([\x1e\x1f])", "\x1e$1")
    elif isinstance(dtype, pl.Datetime):
        e = e.dt.epoch("us").cast(pl.String)
    elif dtype == pl.Boolean:
        e = pl.when(e).then(pl.lit("t")).when(e.not_()).then(pl.lit("f"))
    else:  # integers (floats arrive as their bits), decimals
        e = e.cast(pl.String)
    return pl.concat_str(pl.lit(f"{name}="), e)  # null stays null


def _envelope_frame(table: pa.Table) -> pl.DataFrame:
    cols = {}
    for name in ENVELOPE_COLUMNS:
        if name not in table.column_names:  # a column newer than this table: null
            continue
        col = table.column(name)
        cols[name] = _series(_float_bits(col) if pa.types.is_floating(col.type) else col)
    return pl.DataFrame(cols)


def envelope_texts(table: pa.Table) -> pl.Series:
    """The envelope of every row as text (see the module docstring).

    >>> import pyarrow as pa
    >>> envelope_texts(pa.table({"stream_id": ["r"], "version": [1], "agent": [None]})).to_list() == [
    ...     "stream_id=r" + chr(0x1F) + "version=1"]
    True
    """
    frame = _envelope_frame(table)
    present = [n for n in frame.columns if frame.get_column(n).null_count() < frame.height]
    strings = [n for n in present if frame.schema[n] == pl.String]
    holds = frame.select(pl.col(strings).str.contains("[\x1e\x1f]").any()).row(0) if strings else ()
    needs_escape = {n for n, h in zip(strings, holds, strict=True) if h}
    exprs = [_text(n, frame.schema[n], n in needs_escape) for n in present]
    if not exprs:
        return pl.Series("envelope", [""] * table.num_rows, dtype=pl.String)
    return frame.select(pl.concat_str(exprs, separator=_SEP, ignore_nulls=True).alias("envelope")).to_series()


def chain_hashes(
    stream_ids: pa.Array | pa.ChunkedArray,
    payloads: pa.Array | pa.ChunkedArray,
    envelopes: pl.Series,
    start: dict[str, str],
) -> tuple[pa.Array, pa.Array]:
    """Chain rows given in version order per stream (streams may interleave).

    ``start`` gives the head hash of streams that already have events. Returns the
    ``prev_hash`` and ``hash`` columns.
    """
    frame = pl.DataFrame({"sid": _series(stream_ids), "p": _series(payloads), "e": envelopes})
    messages = frame.select(pl.concat_str("p", "e").cast(pl.Binary)).to_series().to_list()
    heads = {sid: bytes.fromhex(h) for sid, h in start.items()}
    digests: list[bytes] = []
    add = digests.append
    current: str | None = None
    prev = _GENESIS
    for sid, msg in zip(frame.get_column("sid").to_list(), messages, strict=True):
        if sid != current:
            if current is not None:
                heads[current] = prev
            current = sid
            prev = heads.get(sid, _GENESIS)
        prev = _sha256(prev + msg).digest()
        add(prev)
    firsts = {sid: start.get(sid, GENESIS_HASH) for sid in frame.get_column("sid").unique().to_list()}
    out = frame.select("sid").with_columns(hash=pl.Series(digests, dtype=pl.Binary).bin.encode("hex"))
    out = out.with_columns(
        prev_hash=pl.col("hash").shift(1).over("sid").fill_null(pl.col("sid").replace_strict(firsts, return_dtype=pl.String))
    )
    return out.get_column("prev_hash").to_arrow().cast(pa.string()), out.get_column("hash").to_arrow().cast(pa.string())


def event_hash(prev_hash: str, payload_sha256: str, envelope: str) -> str:
    """One event's hash, recomputed (verify)."""
    return _sha256(bytes.fromhex(prev_hash) + f"{payload_sha256}{envelope}".encode()).hexdigest()
