"""The only module that builds Polars scans over a journal.

``scan_events`` returns a LazyFrame over the active files, pruned by partition values and
stream_id statistics before Polars sees them; filters are pushed down, and the Hive partition
columns get the pinned types of ``toolkit.journal.schema``.

>>> from toolkit.journal import Journal
>>> j = Journal.in_memory()
>>> _ = j.append("r", [{"event_type": "user_message", "data": "hi"}])
>>> scan_events(j).select("stream_id", "version").collect().rows()
[('r', 1)]
>>> j.close()
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Final

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from toolkit.engines.duckdb_engine import sha1_hexes
from toolkit.journal.hashing import polars_hash_plugin
from toolkit.journal.location import polars_storage_options
from toolkit.journal.schema import COLUMN_NAMES, POLARS_SCHEMA
from toolkit.journal.store import Journal

HIVE_SCHEMA = pl.Schema({"stream_type": POLARS_SCHEMA["stream_type"], "day": POLARS_SCHEMA["day"]})


def scan_events(
    journal: Journal,
    *,
    stream_ids: Sequence[str] | None = None,
    stream_types: Sequence[str] | None = None,
    event_types: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    after_position: int | None = None,
) -> pl.LazyFrame:
    """Events as a LazyFrame with the canonical schema; ``until`` is exclusive; ``after_position``:
    only events at later positions (files whose statistics say they hold none are not read).

    A data file of those it reads that is missing or cut short is a DataFileError naming it, here
    rather than when the frame is collected."""
    files = journal.file_paths(
        stream_types=stream_types, since=since, until=until, stream_ids=stream_ids, after_position=after_position
    )
    if not files:
        return pl.LazyFrame(schema=POLARS_SCHEMA)
    journal.check_data_files(files)  # Polars' error for a missing or cut-off file would not name it
    present = set(journal.table_columns())
    # files written before the schema grew lack the newer columns: Polars inserts nulls
    file_schema = {c: POLARS_SCHEMA[c] for c in COLUMN_NAMES if c in present and c not in HIVE_SCHEMA}
    lf = pl.scan_parquet(
        files,
        hive_partitioning=True,
        hive_schema=HIVE_SCHEMA,
        schema=file_schema,
        missing_columns="insert",
        storage_options=polars_storage_options() if journal.remote else None,
    ).select(
        [pl.col(c) if c in present else pl.lit(None, dtype=POLARS_SCHEMA[c]).alias(c) for c in COLUMN_NAMES]
    )
    if stream_ids is not None:
        lf = lf.filter(pl.col("stream_id").is_in(list(stream_ids)))
    if stream_types is not None:
        lf = lf.filter(pl.col("stream_type").is_in(list(stream_types)))
    if event_types is not None:
        lf = lf.filter(pl.col("event_type").is_in(list(event_types)))
    if since is not None:
        lf = lf.filter(pl.col("occurred_at") >= since)
    if until is not None:
        lf = lf.filter(pl.col("occurred_at") < until)
    if after_position is not None:
        lf = lf.filter(pl.col("position") > after_position)
    return lf


_PLH = polars_hash_plugin()
# the RFC 4122 variant digit (10xx) for each hex digit of a SHA-1
_VARIANT: Final = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


def uuid5_texts(namespace: bytes, names: pl.Series) -> pl.Series:
    """``str(uuid.uuid5(UUID(bytes=namespace), name))`` for each name (text), null for null, in order.

    SHA-1 by ``polars-hash`` where installed (the namespace bytes joined to each name by Arrow), else
    by DuckDB (``duckdb_engine.sha1_hexes``); both without the GIL. The UUID text is built by Polars.

    >>> import uuid
    >>> ns = uuid.NAMESPACE_URL
    >>> uuid5_texts(ns.bytes, pl.Series(["a/1", None, "é"])).to_list() == [
    ...     str(uuid.uuid5(ns, "a/1")), None, str(uuid.uuid5(ns, "é"))]
    True
    """
    if _PLH is None:
        hexes = sha1_hexes(namespace, names)
    else:
        joined = pc.binary_join_element_wise(
            pa.scalar(namespace, pa.large_binary()),
            names.to_arrow().cast(pa.large_binary()),
            pa.scalar(b"", pa.large_binary()),
        )
        hexes = pl.DataFrame({"h": pl.Series(joined)}).select(_PLH.col("h").nchash.sha1()).to_series()
    h = pl.col("h")
    return (
        pl.DataFrame({"h": hexes})
        .select(
            pl.concat_str(
                h.str.slice(0, 8),
                pl.lit("-"),
                h.str.slice(8, 4),
                pl.lit("-5"),
                h.str.slice(13, 3),
                pl.lit("-"),
                h.str.slice(16, 1).replace_strict(_VARIANT, return_dtype=pl.String),
                h.str.slice(17, 3),
                pl.lit("-"),
                h.str.slice(20, 12),
            ).alias(names.name)
        )
        .to_series()
    )
