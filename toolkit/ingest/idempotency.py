"""Fill ``idempotency_key`` at import from a configurable source field (``--idempotency-key FIELD``).

A side effect's dispatch id lives wherever the source put it: a canonical column
(``tool_call_id``, ``correlation_id``, ...) or a field of the payload or metadata, named with a
dotted path (``data.dispatch_id``, ``metadata.outbox.message_id``). Events that already carry an
``idempotency_key`` keep it; events without the field keep null. ``journal regrade exactly_once``
then finds the doorbell rung twice.

>>> import pyarrow as pa
>>> t = pa.table({"data": ['{"dispatch_id": "d-1"}', '{"other": 1}'], "idempotency_key": [None, None]})
>>> fill_idempotency_key(t, "data.dispatch_id").column("idempotency_key").to_pylist()
['d-1', None]
"""

from __future__ import annotations

import re

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from toolkit.ingest.base import ImportFormatError
from toolkit.journal.schema import COLUMN_NAMES

_PATH = re.compile(r"^(data|metadata)((?:\.[A-Za-z_][A-Za-z0-9_-]*)+)$")
_COLUMNS = frozenset(c for c in COLUMN_NAMES if c not in {"idempotency_key", "data", "metadata"})


def check_field(field: str) -> None:
    if field in _COLUMNS or _PATH.fullmatch(field):
        return
    raise ImportFormatError(
        f"--idempotency-key {field!r}: not a canonical column nor a data./metadata. path",
        hint="e.g. --idempotency-key data.dispatch_id, metadata.outbox_id or tool_call_id",
        field=field,
    )


def fill_idempotency_key(table: pa.Table, field: str) -> pa.Table:
    """``table`` with null idempotency keys filled from ``field`` (see the module docstring)."""
    check_field(field)
    m = _PATH.fullmatch(field)
    if m:
        column, path = m.group(1), "$" + m.group(2)
        if column not in table.column_names:
            return table
        values = pl.Series(table.column(column).combine_chunks()).str.json_path_match(path)
        source = pc.cast(values.to_arrow(), pa.string())
    else:
        if field not in table.column_names:
            return table
        source = pc.cast(table.column(field), pa.string())
    if "idempotency_key" in table.column_names:
        i = table.schema.get_field_index("idempotency_key")
        given = pc.cast(table.column(i), pa.string())
        return table.set_column(i, pa.field("idempotency_key", pa.string()), pc.coalesce(given, source))
    return table.append_column(pa.field("idempotency_key", pa.string()), source)
