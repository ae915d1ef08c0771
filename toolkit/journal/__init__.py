"""The store: canonical schema, Delta table on partitioned Parquet, append, hash chain, locking."""

from toolkit.journal.config import JournalConfig
from toolkit.journal.schema import ARROW_SCHEMA, COLUMN_NAMES, POLARS_SCHEMA, SCHEMA_VERSION
from toolkit.journal.store import AppendResult, FileInfo, Head, Journal

__all__ = [
    "ARROW_SCHEMA",
    "COLUMN_NAMES",
    "POLARS_SCHEMA",
    "SCHEMA_VERSION",
    "AppendResult",
    "FileInfo",
    "Head",
    "Journal",
    "JournalConfig",
]
