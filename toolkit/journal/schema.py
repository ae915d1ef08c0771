"""Canonical event schema v1 — the public contract users write SQL against.

Defined once, here. DuckDB and Polars read the journal with exactly these types
(``ARROW_SCHEMA``, ``POLARS_SCHEMA``, ``DUCKDB_TYPES`` and ``HIVE_TYPES`` all derive from ``COLUMNS``).

The schema grows only by adding nullable columns (minor version). Older journals read
with nulls in the new columns; a journal written by a newer *major* version is refused.

>>> SCHEMA_VERSION
'1.0'
>>> [c.name for c in COLUMNS][:4]
['stream_id', 'stream_type', 'version', 'position']
>>> PARTITION_COLUMNS
('stream_type', 'day')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import polars as pl
import pyarrow as pa

SCHEMA_VERSION: Final = "1.0"
SCHEMA_MAJOR: Final = 1

TIMESTAMP = pa.timestamp("us", tz="UTC")
COST = pa.decimal128(18, 9)


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    required: bool
    doc: str


COLUMNS: Final[tuple[Column, ...]] = (
    Column("stream_id", pa.string(), True, "one agent run / session / aggregate instance"),
    Column("stream_type", pa.string(), True, "kind of stream (partition column)"),
    Column("version", pa.int64(), True, "1-based, contiguous within the stream"),
    Column("position", pa.int64(), True, "global, strictly increasing in commit order"),
    Column("event_id", pa.string(), True, "unique; from the source or a deterministic UUIDv5"),
    Column("event_type", pa.string(), True, "canonical type or the source's own name"),
    Column("source_type", pa.string(), False, "the original type / topic name in the source"),
    Column("occurred_at", TIMESTAMP, True, "when it happened (UTC)"),
    Column("recorded_at", TIMESTAMP, True, "when it entered this journal (UTC)"),
    Column("correlation_id", pa.string(), False, "logical request / user session"),
    Column("causation_id", pa.string(), False, "event_id (or command id) of the cause"),
    Column("traceparent", pa.string(), False, "W3C traceparent"),
    Column("trace_id", pa.string(), False, "parsed from traceparent"),
    Column("span_id", pa.string(), False, "parsed from traceparent"),
    Column("model", pa.string(), False, "LLM model name"),
    Column("tool_name", pa.string(), False, "tool called"),
    Column("tokens_in", pa.int64(), False, "input tokens, cache tokens included (OTel GenAI)"),
    Column("tokens_out", pa.int64(), False, "output tokens, reasoning tokens included"),
    Column("tokens_cache_read", pa.int64(), False, "input tokens read from cache"),
    Column("tokens_cache_write", pa.int64(), False, "input tokens written to cache"),
    Column("tokens_reasoning", pa.int64(), False, "output tokens spent reasoning"),
    Column("cost_usd", COST, False, "cost as recorded by the source"),
    Column("duration_ms", pa.float64(), False, "latency"),
    Column("is_error", pa.bool_(), True, "the event reports a failure"),
    Column("error", pa.string(), False, "error message"),
    Column("data", pa.string(), True, "payload, JSON text"),
    Column("metadata", pa.string(), True, "other metadata, JSON object text"),
    Column("agent", pa.string(), False, "agent name or kind"),
    Column("subject_id", pa.string(), False, "person or account the events concern"),
    Column("tool_call_id", pa.string(), False, "links tool_called to tool_result"),
    Column("idempotency_key", pa.string(), False, "dispatch / command id of a side effect"),
    Column("source", pa.string(), False, "where the row came from (importer, file, line)"),
    Column("payload_sha256", pa.string(), True, "SHA-256 of the canonical data+metadata"),
    Column("prev_hash", pa.string(), True, "hash of the previous event of the stream"),
    Column("hash", pa.string(), True, "SHA-256 chain over envelope, payload and prev_hash"),
    Column("day", pa.date32(), True, "UTC date of occurred_at (partition column)"),
)

COLUMN_NAMES: Final = tuple(c.name for c in COLUMNS)
REQUIRED: Final = frozenset(c.name for c in COLUMNS if c.required)
PARTITION_COLUMNS: Final = ("stream_type", "day")

ARROW_SCHEMA: Final = pa.schema(
    [pa.field(c.name, c.type, nullable=not c.required) for c in COLUMNS],
    metadata={"toolkit.schema_version": SCHEMA_VERSION},
)

_DUCKDB: dict[pa.DataType, str] = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.date32(): "DATE",
    TIMESTAMP: "TIMESTAMPTZ",
    COST: "DECIMAL(18, 9)",
}
DUCKDB_TYPES: Final = {c.name: _DUCKDB[c.type] for c in COLUMNS}

# Delta keeps partition values out of the data files; every reader pins their types here.
HIVE_TYPES: Final = {name: DUCKDB_TYPES[name] for name in ("stream_type", "day")}

_POLARS: dict[pa.DataType, pl.DataType] = {
    pa.string(): pl.String(),
    pa.int64(): pl.Int64(),
    pa.float64(): pl.Float64(),
    pa.bool_(): pl.Boolean(),
    pa.date32(): pl.Date(),
    TIMESTAMP: pl.Datetime("us", "UTC"),
    COST: pl.Decimal(18, 9),
}
POLARS_SCHEMA: Final = pl.Schema({c.name: _POLARS[c.type] for c in COLUMNS})

CANONICAL_EVENT_TYPES: Final = (
    "user_message",
    "plan_created",
    "llm_request",
    "llm_response",
    "tool_called",
    "tool_result",
    "state_updated",
    "error",
    "custom",
)

# Columns the hash chain covers besides payload_sha256 and prev_hash. Everything a user could
# alter to change the story is here; data/metadata are covered through payload_sha256 so that
# payloads can later be redacted without breaking the chain.
ENVELOPE_COLUMNS: Final = tuple(
    c.name for c in COLUMNS if c.name not in {"data", "metadata", "payload_sha256", "prev_hash", "hash", "day"}
)

# Filled by the journal, never taken from the caller.
ASSIGNED_COLUMNS: Final = frozenset({"recorded_at", "payload_sha256", "prev_hash", "hash", "day"})

GENESIS_HASH: Final = "0" * 64
