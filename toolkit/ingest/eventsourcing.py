"""pyeventsourcing stored events (SQLite, the Django layout, PostgreSQL) → canonical journal rows.

Reads the tables the ``eventsourcing`` library writes without importing it: ``stored_events``
(+ ``stored_snapshots``) of ``eventsourcing.sqlite``, ``stored_events`` (+ ``snapshots``) of
``eventsourcing_django`` (the Evennia setup), and ``<app>_events`` (+ ``<app>_snapshots``) of
``eventsourcing.postgres`` given a ``postgresql://`` URL. The full mapping, with the outcome of each
pitfall, is in ``docs/importers/eventsourcing.md``; in short:

- a stream is an aggregate: ``stream_id`` is the originator id as a dashed UUID, ``version`` its
  ``originator_version``; ``stream_type`` is the aggregate class named by the aggregate's first
  event (``AssistantAggregate``), else ``eventsourcing``; ``--stream-type`` overrides it;
- an event is a stored event, appended in notification order (``rowid`` / ``id`` /
  ``notification_id``); its id is ``derive_id("eventsourcing", stream_id, version)``, so the
  same event read from an Evennia archive is the same event;
- the ``state`` blob is decrypted (AES-GCM, key from ``--cipher-key`` or ``CIPHER_KEY``),
  decompressed (zlib) and parsed; ``_type_``/``_data_`` wrappers become JSON values (ISO times,
  dashed UUIDs, decimal strings); its ``timestamp`` is ``occurred_at``, the rest is ``data``;
- ``source_type`` is the topic, ``event_type`` its last segment (``ToolExecuted`` → ``tool_result``);
  ``token_usage``, ``execution_time_ms``/``duration_ms``, ``tool_name``, ``success``/``error``
  fill the agent columns;
- stored snapshots are not events: they go to the journal's ``source_snapshots`` table.

>>> event_name("assistant_model:AssistantAggregate.ToolExecuted")
'ToolExecuted'
>>> stream_id_of("abd84dd3b136575cbd3ef75dc47258ba")
'abd84dd3-b136-575c-bd3e-f75dc47258ba'
>>> decode_state(b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-11-21T23:48:04+00:00"},"n":1}')
{'timestamp': datetime.datetime(2026, 11, 21, 23, 48, 4, tzinfo=datetime.timezone.utc), 'n': 1}
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import os
import sqlite3
import uuid
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from toolkit.errors import EventValidationError
from toolkit.ingest.base import (
    Importer,
    ImportFormatError,
    ImportOptions,
    Rejection,
    SourceBatch,
    derive_id,
    public_url,
    read_path,
    rows_table,
    text_of,
)
from toolkit.journal.prepare import INPUT_SCHEMA, STREAM_TYPE_RE, canonical_json, normalise_event

if TYPE_CHECKING:
    import psycopg

FAMILY = "eventsourcing"  # first part of every derived id (shared with the Evennia archive importer)
DEFAULT_STREAM_TYPE = "eventsourcing"
BATCH_ROWS = 10_000
SQLITE_MAGIC = b"SQLite format 3\x00"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

# event names whose canonical type is certain; every other name is kept as the source spells it
EVENT_TYPES: Mapping[str, str] = {
    # recorded after the tool ran, with its outcome (success, error, execution_time_ms)
    "ToolExecuted": "tool_result",
}


# ---------------------------------------------------------------------- decoding the state blob


class CipherKeyError(ImportFormatError):
    """Encrypted state without a key, or with a key that does not decrypt it."""


class _Undecodable(ValueError):
    """One row's state could not be decoded (becomes a rejection)."""


def cipher_key_of(options: ImportOptions) -> bytes | None:
    """The AES key from ``options.cipher_key`` or env ``CIPHER_KEY`` (base64 of 16, 24 or 32 bytes)."""
    text = options.cipher_key or os.environ.get("CIPHER_KEY")
    if not text:
        return None
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) not in (16, 24, 32):
        raise CipherKeyError(
            "CIPHER_KEY is not the base64 text of a 16, 24 or 32 byte AES key",
            hint="pass the value the application had in its CIPHER_KEY setting (--cipher-key or env CIPHER_KEY)",
        )
    return key


class _Cipher:
    """AES-GCM as ``eventsourcing.cipher.AESCipher`` writes it: nonce(12) ‖ tag(16) ‖ ciphertext."""

    def __init__(self, key: bytes) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise CipherKeyError(
                "decrypting eventsourcing state needs the 'cryptography' package",
                hint="pip install cryptography",
            ) from e
        self._aes = AESGCM(key)

    def decrypt(self, blob: bytes) -> bytes | None:
        from cryptography.exceptions import InvalidTag

        if len(blob) < 28:
            return None
        try:
            return self._aes.decrypt(blob[:12], blob[28:] + blob[12:28], None)
        except InvalidTag:
            return None


def _transcoded(d: dict[str, Any]) -> Any:
    """``json`` object hook: the library's default transcodings, any other dict unchanged."""
    if len(d) != 2 or "_type_" not in d or "_data_" not in d:
        return d
    kind, value = d["_type_"], d["_data_"]
    try:
        if kind == "datetime_iso":
            return dt.datetime.fromisoformat(value)
        if kind == "uuid_hex":
            return uuid.UUID(hex=value)
        if kind == "decimal_str":
            return Decimal(value)
    except (TypeError, ValueError, ArithmeticError) as e:
        raise _Undecodable(f"bad {kind} value {value!r}") from e
    return d  # registered by the application: cannot be decoded generically, kept as it is


class _NeedsKey(_Undecodable):
    """Neither JSON nor zlib, even after decrypting with the key given (if any)."""


def decode_state(state: bytes | memoryview | str, cipher: _Cipher | None = None) -> Any:
    """The stored ``state`` as Python values (spec 2.6): decrypt, decompress, parse, untranscode."""
    b = state.encode("utf-8") if isinstance(state, str) else bytes(state)
    if b[:1] != b"{" and cipher is not None:
        b = cipher.decrypt(b) or b  # compressed-only rows of a store that later enabled the cipher
    if b[:1] != b"{":
        try:
            b = zlib.decompress(b)
        except zlib.error:
            try:  # JSON that is not an object ("[1,2,3]"): said as such by the caller, not "encrypted"
                return json.loads(b.decode("utf-8"), object_hook=_transcoded)
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                pass
            if cipher is None:
                raise _NeedsKey("state is neither JSON nor zlib: it looks encrypted (AES-GCM)") from None
            raise _NeedsKey("state does not decrypt with the given CIPHER_KEY (wrong key, or a damaged row)") from None
    try:
        return json.loads(b.decode("utf-8"), object_hook=_transcoded)
    except UnicodeDecodeError as e:
        raise _Undecodable(f"state is not UTF-8: {e}") from e
    except json.JSONDecodeError as e:
        raise _Undecodable(f"state is not JSON: {e}") from e


def plain(value: Any) -> Any:
    """Decoded values as JSON values: times in ISO 8601, UUIDs dashed, decimals as strings.

    >>> plain({"at": dt.datetime(2026, 12, 1, 18, tzinfo=dt.UTC), "cost": Decimal("0.0031")})
    {'at': '2026-12-01T18:00:00+00:00', 'cost': '0.0031'}
    """
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    return value


# ---------------------------------------------------------------------- mapping (shared with the archive)


def stream_id_of(originator_id: object) -> str:
    """Originator ids as dashed UUIDs (32-hex in SQLite/Django, uuid in Postgres); other text unchanged."""
    if isinstance(originator_id, uuid.UUID):
        return str(originator_id)
    text = str(originator_id).strip()
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


def event_name(topic: str) -> str:
    """The event class name of a topic (``module:Aggregate.Event``) or of a short name."""
    return topic.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def event_type_of(name: str) -> str:
    return EVENT_TYPES.get(name, name)


def event_id_of(stream_id: str, version: int) -> str:
    """The id of an aggregate's event, whichever export it arrives through.

    >>> event_id_of("abd84dd3-b136-575c-bd3e-f75dc47258ba", 10) == derive_id("eventsourcing", "abd84dd3-b136-575c-bd3e-f75dc47258ba", 10)
    True
    """
    return derive_id(FAMILY, stream_id, version)


@dataclass(frozen=True)
class StreamInfo:
    """What the aggregate's first event says about the whole stream."""

    stream_type: str = DEFAULT_STREAM_TYPE
    agent: str | None = None

    @classmethod
    def of_created(cls, data: Any, override: str | None = None, agent: str | None = None) -> StreamInfo:
        """From the ``data`` of version 1 (``originator_topic`` names the aggregate class)."""
        stream_type = override or DEFAULT_STREAM_TYPE
        if isinstance(data, Mapping):
            topic = data.get("originator_topic")
            if override is None and isinstance(topic, str):
                name = event_name(topic)
                if STREAM_TYPE_RE.fullmatch(name):
                    stream_type = name
            key = data.get("assistant_key")
            if agent is None and isinstance(key, str) and key:
                agent = key
        return cls(stream_type, agent)


def _millis(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def agent_columns(data: Any) -> dict[str, Any]:
    """Agent-native columns from an event's attributes (any event class, any missing field).

    >>> agent_columns({"tool_name": "dig", "success": False, "error": "no exit", "execution_time_ms": 41})
    {'tool_name': 'dig', 'duration_ms': 41.0, 'is_error': True, 'error': 'no exit'}
    >>> agent_columns({"token_usage": {"prompt": 1320, "completion": 45}, "duration_ms": 980})
    {'tokens_in': 1320, 'tokens_out': 45, 'duration_ms': 980.0, 'is_error': False}
    """
    if not isinstance(data, Mapping):
        return {"is_error": False}
    out: dict[str, Any] = {}
    tool = data.get("tool_name")
    if isinstance(tool, str) and tool:
        out["tool_name"] = tool
    usage = data.get("token_usage")
    if isinstance(usage, Mapping):
        for column, key in (("tokens_in", "prompt"), ("tokens_out", "completion")):
            n = usage.get(key)
            # a number goes to the column as given: normalise_event rejects a negative or
            # fractional count (the event is rejected, with its row); other types stay in data only
            if isinstance(n, int | float) and not isinstance(n, bool):
                out[column] = n
    duration = _millis(data.get("execution_time_ms"))
    if duration is None:
        duration = _millis(data.get("duration_ms"))
    if duration is not None:
        out["duration_ms"] = duration
    raw_error = data.get("error")
    error = None if raw_error is None or raw_error == "" else raw_error
    success = data.get("success")
    out["is_error"] = (not success) if isinstance(success, bool) else error is not None
    if error is not None:
        out["error"] = error if isinstance(error, str) else canonical_json(error)
    return out


def event_row(
    *,
    stream_id: str,
    version: int,
    topic: str,
    occurred_at: Any,
    data: Any,
    source: str,
    info: StreamInfo,
) -> dict[str, Any]:
    """One canonical event (input of ``normalise_event``) from a decoded aggregate event."""
    return {
        "stream_id": stream_id,
        "stream_type": info.stream_type,
        "version": version,
        "event_id": event_id_of(stream_id, version),
        "event_type": event_type_of(event_name(topic)),
        "source_type": topic,
        "occurred_at": occurred_at,
        "data": data,
        "agent": info.agent,
        "source": source,
        **agent_columns(data),
    }


@dataclass
class VersionCheck:
    """Journal versions must equal the source's: after a rejected or missing version of a
    stream, its later events are rejected too (quarantined with the reason), never renumbered."""

    last: dict[str, int] = field(default_factory=dict)
    broken: dict[str, int] = field(default_factory=dict)

    def problem(self, stream_id: str, version: int) -> str | None:
        if stream_id in self.broken:
            return (
                f"follows version {self.broken[stream_id]} of aggregate {stream_id}, which was rejected; "
                "journal versions must equal the source's"
            )
        last = self.last.get(stream_id)
        if last is not None and version != last + 1:
            return f"version {version} of aggregate {stream_id} follows version {last}: versions must be contiguous"
        return None

    def accept(self, stream_id: str, version: int) -> None:
        self.last[stream_id] = version

    def reject(self, stream_id: str, version: int) -> None:
        self.broken.setdefault(stream_id, version)


def reason_of(e: EventValidationError) -> str:
    return str(e).split("\n", 1)[0].split(": ", 1)[-1]


# ---------------------------------------------------------------------- stores


@dataclass(frozen=True)
class StoredRecord:
    """One row of an events or snapshots table, undecoded."""

    notification_id: int | None
    application_name: str | None
    originator_id: Any
    originator_version: Any
    topic: Any
    state: Any


@dataclass(frozen=True)
class EventTable:
    """An events table (one application, or the Django table shared by several) and its snapshots."""

    label: str  # table name as shown in locations
    source: str  # "eventsourcing:<where>?table=…" (no credentials)
    key: tuple[str, ...]  # how the store finds it again
    id_column: str  # rowid / id / notification_id
    snapshot_label: str | None


class _Store(Protocol):
    where: str

    def event_tables(self, application: str | None) -> list[EventTable]: ...
    def events(self, table: EventTable, application: str | None) -> Iterator[StoredRecord]: ...
    def snapshots(self, table: EventTable, application: str | None) -> Iterator[StoredRecord]: ...
    def applications(self, table: EventTable) -> list[str]: ...
    def close(self) -> None: ...


# Table names are fixed in the SQLite layouts, so every query is a constant.
_SQLITE_EVENTS = "SELECT rowid, NULL, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"
_SQLITE_SNAPSHOTS = (
    "SELECT NULL, NULL, originator_id, originator_version, topic, state FROM stored_snapshots "
    "ORDER BY originator_id, originator_version"
)
_DJANGO_EVENTS = (
    "SELECT id, application_name, originator_id, originator_version, topic, state FROM stored_events ORDER BY id"
)
_DJANGO_EVENTS_OF = (
    "SELECT id, application_name, originator_id, originator_version, topic, state FROM stored_events "
    "WHERE application_name = ? ORDER BY id"
)
_DJANGO_SNAPSHOTS = (
    "SELECT NULL, application_name, originator_id, originator_version, topic, state FROM snapshots "
    "ORDER BY application_name, originator_id, originator_version"
)
_DJANGO_SNAPSHOTS_OF = (
    "SELECT NULL, application_name, originator_id, originator_version, topic, state FROM snapshots "
    "WHERE application_name = ? ORDER BY originator_id, originator_version"
)
_DJANGO_APPLICATIONS = "SELECT DISTINCT application_name FROM stored_events ORDER BY application_name"


def _wal_file(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _sqlite_uri(path: Path) -> str:
    """Read-only URI. Without a non-empty -wal the file is opened immutable: nothing is created
    beside it (a plain read-only open leaves -wal/-shm files next to the source)."""
    wal = _wal_file(path)
    live = wal.exists() and wal.stat().st_size > 0
    return path.as_uri() + ("?mode=ro" if live else "?immutable=1")


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def _wal_mode(path: Path) -> bool:
    """The header says WAL (file format read/write versions 2)."""
    with path.open("rb") as f:
        header = f.read(20)
    return len(header) == 20 and header[18] == 2 and header[19] == 2


class _SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.where = str(self.path)
        try:
            self.conn = sqlite3.connect(_sqlite_uri(self.path), uri=True, isolation_level=None)
            self.conn.execute("BEGIN")  # one read transaction: events and snapshots agree
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as e:
            raise self._unreadable(e) from e
        if "stored_events" not in tables:
            self.close()
            raise self._missing_table(tables)
        columns = {r[1] for r in self.conn.execute("PRAGMA table_info(stored_events)")}
        self.django = "application_name" in columns
        snapshots = "snapshots" if self.django else "stored_snapshots"
        self.snapshot_table = snapshots if snapshots in tables else None

    def _unreadable(self, e: sqlite3.Error) -> ImportFormatError:
        damaged = isinstance(e, sqlite3.DatabaseError) and "malformed" in str(e)
        return ImportFormatError(
            f"{self.where}: cannot read it as SQLite: {e}"
            + (" (the file is damaged or cut short: an interrupted copy or download?)" if damaged else ""),
            hint="copy the database again from where the application writes it (with its -wal file, if any)"
            if damaged
            else f"if {self.path.name}-wal exists, close the application or checkpoint the database "
            f"(sqlite3 {self.path.name} 'PRAGMA wal_checkpoint(TRUNCATE)'), or copy the files to a writable directory",
            path=self.where,
        )

    def _missing_table(self, tables: set[str]) -> ImportFormatError:
        wal = _wal_file(self.path)
        name = self.path.name
        if wal.exists() and wal.stat().st_size > 0:
            return ImportFormatError(
                f"{self.where}: no stored_events table, although {wal.name} exists beside it: the events are "
                "probably in that write-ahead log, which SQLite could not apply to this copy",
                hint=f"copy {name}, {name}-wal and {name}-shm together while the application is stopped, or "
                f"checkpoint the original first (sqlite3 {name} 'PRAGMA wal_checkpoint(TRUNCATE)'), then import again",
                path=self.where,
            )
        if _wal_mode(self.path):
            return ImportFormatError(
                f"{self.where}: no stored_events table, and the database is in WAL mode with no {name}-wal "
                "beside it: it was probably copied while the application had it open, and its events were "
                "left behind in the original's -wal file",
                hint=f"copy {name}-wal and {name}-shm together with {name} (or checkpoint the original first: "
                f"sqlite3 {name} 'PRAGMA wal_checkpoint(TRUNCATE)'), then import again",
                path=self.where,
            )
        return ImportFormatError(
            f"{self.where}: not an eventsourcing database: no stored_events table"
            + (f" (tables: {', '.join(sorted(tables))})" if tables else " (no tables)"),
            hint="point at the database the application's SQLITE_DBNAME (or Django DATABASES) names",
            path=self.where,
        )

    def _source(self, table: str, application: str | None) -> str:
        query = f"table={table}" + (f"&application_name={quote(application)}" if application else "")
        return f"{FAMILY}:{self.where}?{query}"

    def event_tables(self, application: str | None) -> list[EventTable]:
        snap = self.snapshot_table
        if self.django:
            return [EventTable("stored_events", self._source("stored_events", application), (), "id", snap)]
        return [EventTable("stored_events", self._source("stored_events", None), (), "rowid", snap)]

    def applications(self, table: EventTable) -> list[str]:
        if not self.django:
            return []
        try:
            return [r[0] for r in self.conn.execute(_DJANGO_APPLICATIONS)]
        except sqlite3.Error as e:
            raise self._unreadable(e) from e

    def events(self, table: EventTable, application: str | None) -> Iterator[StoredRecord]:
        yield from self._records(application, _SQLITE_EVENTS, _DJANGO_EVENTS_OF, _DJANGO_EVENTS)

    def snapshots(self, table: EventTable, application: str | None) -> Iterator[StoredRecord]:
        if self.snapshot_table is not None:
            yield from self._records(application, _SQLITE_SNAPSHOTS, _DJANGO_SNAPSHOTS_OF, _DJANGO_SNAPSHOTS)

    def _records(self, application: str | None, plain: str, of_application: str, every: str) -> Iterator[StoredRecord]:
        """The rows of the query for this layout (plain table; Django: one application's, or all);
        a damaged page past the first ones, found only when a row on it is read, is the file's error."""
        try:
            if not self.django:
                cur = self.conn.execute(plain)
            elif application:
                cur = self.conn.execute(of_application, (application,))
            else:
                cur = self.conn.execute(every)
            while rows := cur.fetchmany(1000):
                for r in rows:
                    yield StoredRecord(*r)
        except sqlite3.Error as e:
            raise self._unreadable(e) from e

    def close(self) -> None:
        try:
            self.conn.close()
        except (AttributeError, sqlite3.Error):
            pass


# Tables in the connection's search path that have the stored-event columns; identifiers
# come from the catalog and are quoted with psycopg.sql, never formatted from user input.
_PG_CATALOG = """
SELECT table_schema, table_name,
       bool_or(column_name = 'notification_id') AS has_notification_id,
       bool_or(column_name = 'application_name') AND bool_or(column_name = 'id') AS django
FROM information_schema.columns
WHERE table_schema = ANY (current_schemas(false))
GROUP BY table_schema, table_name
HAVING bool_or(column_name = 'originator_id') AND bool_or(column_name = 'originator_version')
   AND bool_or(column_name = 'topic') AND bool_or(column_name = 'state')
ORDER BY array_position(current_schemas(false), table_schema::name), table_name
"""


class _PostgresStore:
    def __init__(self, url: str) -> None:
        self.where = public_url(url)
        try:
            import psycopg
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise ImportFormatError(
                "reading PostgreSQL needs the 'psycopg' package", hint="pip install 'psycopg[binary]'"
            ) from e
        self._psycopg = psycopg
        try:
            self.conn: psycopg.Connection[Any] = psycopg.connect(url, autocommit=False)
            self.conn.read_only = True
            self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # one snapshot for all reads
            with self.conn.cursor() as cur:
                cur.execute(_PG_CATALOG)
                self.catalog = [(str(s), str(t), bool(n), bool(d)) for s, t, n, d in cur.fetchall()]
        except psycopg.Error as e:
            raise ImportFormatError(
                f"{self.where}: cannot read the database: {str(e).strip()}",
                hint="check the URL, that the server is running and that the role may read the tables",
                path=self.where,
            ) from e
        self._cursors = 0

    def _source(self, schema: str, table: str, application: str | None) -> str:
        query = f"table={schema}.{table}" + (f"&application_name={quote(application)}" if application else "")
        return f"{FAMILY}:{self.where}?{query}"

    def event_tables(self, application: str | None) -> list[EventTable]:
        names = {(s, t) for s, t, _, _ in self.catalog}
        out = []
        for schema, table, has_notification_id, django in self.catalog:
            if django and table == "stored_events":
                snap = "snapshots" if (schema, "snapshots") in names else None
                label = f"{schema}.{table}"
                out.append(
                    EventTable(label, self._source(schema, table, application), (schema, table, snap or ""), "id", snap)
                )
            elif has_notification_id and table.endswith("_events"):
                prefix = table.removesuffix("_events")
                if application and prefix != application.lower():
                    continue
                snap = f"{prefix}_snapshots" if (schema, f"{prefix}_snapshots") in names else None
                out.append(
                    EventTable(
                        f"{schema}.{table}",
                        self._source(schema, table, None),
                        (schema, table, snap or ""),
                        "notification_id",
                        snap,
                    )
                )
        return out

    def _cursor_name(self) -> str:
        self._cursors += 1
        return f"toolkit_eventsourcing_{self._cursors}"

    def _read(self, query: Any, params: Sequence[Any] = ()) -> Iterator[StoredRecord]:
        try:
            with self.conn.cursor(name=self._cursor_name()) as cur:
                cur.itersize = 2000
                cur.execute(query, params)
                for r in cur:
                    yield StoredRecord(*r)
        except self._psycopg.Error as e:
            raise ImportFormatError(f"{self.where}: reading failed: {str(e).strip()}", path=self.where) from e

    def applications(self, table: EventTable) -> list[str]:
        if table.id_column != "id":
            return []
        from psycopg import sql

        schema, name, _ = table.key
        q = sql.SQL("SELECT DISTINCT application_name FROM {}.{} ORDER BY 1").format(
            sql.Identifier(schema), sql.Identifier(name)
        )
        with self.conn.cursor() as cur:
            cur.execute(q)
            return [str(r[0]) for r in cur.fetchall()]

    def events(self, table: EventTable, application: str | None) -> Iterator[StoredRecord]:
        from psycopg import sql

        schema, name, _ = table.key
        target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        if table.id_column == "id":  # Django layout
            where = sql.SQL("WHERE application_name = %s") if application else sql.SQL("")
            q = sql.SQL(
                "SELECT id, application_name, originator_id::text, originator_version, topic, state "
                "FROM {} {} ORDER BY id"
            ).format(target, where)
            yield from self._read(q, (application,) if application else ())
        else:
            q = sql.SQL(
                "SELECT notification_id, NULL, originator_id::text, originator_version, topic, state "
                "FROM {} ORDER BY notification_id"
            ).format(target)
            yield from self._read(q)

    def snapshots(self, table: EventTable, application: str | None) -> Iterator[StoredRecord]:
        from psycopg import sql

        schema, _, snap = table.key
        if not snap:
            return
        target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(snap))
        if table.id_column == "id":
            where = sql.SQL("WHERE application_name = %s") if application else sql.SQL("")
            q = sql.SQL(
                "SELECT NULL, application_name, originator_id::text, originator_version, topic, state "
                "FROM {} {} ORDER BY application_name, originator_id, originator_version"
            ).format(target, where)
            yield from self._read(q, (application,) if application else ())
        else:
            q = sql.SQL(
                "SELECT NULL, NULL, originator_id::text, originator_version, topic, state "
                "FROM {} ORDER BY originator_id, originator_version"
            ).format(target)
            yield from self._read(q)

    def close(self) -> None:
        try:
            self.conn.rollback()
            self.conn.close()
        except (AttributeError, self._psycopg.Error):
            pass


def _open_store(path: str) -> _Store:
    if path.startswith(POSTGRES_SCHEMES):
        return _PostgresStore(path)
    p = read_path(path)
    if not p.is_file() or not _is_sqlite(p):
        raise ImportFormatError(
            f"{path}: not a SQLite database or a postgresql:// URL",
            hint="eventsourcing reads the SQLite file of SQLITE_DBNAME / the Django database, or a PostgreSQL URL",
            path=path,
        )
    return _SqliteStore(p)


# ---------------------------------------------------------------------- the importer


@dataclass
class _Decoder:
    """Decodes rows; the first row that needs a key decides whether the whole store is unreadable."""

    where: str
    cipher: _Cipher | None
    decoded: int = 0

    def __call__(self, record: StoredRecord) -> Any:
        try:
            value = decode_state(record.state if record.state is not None else b"", self.cipher)
        except _NeedsKey as e:
            if self.decoded == 0:  # the first row decides: the whole store is unreadable
                raise self._key_error(str(e)) from None
            raise
        self.decoded += 1
        return value

    def _key_error(self, reason: str) -> CipherKeyError:
        if self.cipher is None:
            return CipherKeyError(
                f"{self.where}: stored state is encrypted (neither JSON nor zlib: AES-GCM) and no key was given",
                hint="pass the application's CIPHER_KEY: --cipher-key KEY or env CIPHER_KEY=KEY (base64 AES key)",
                path=self.where,
            )
        return CipherKeyError(
            f"{self.where}: stored state does not decrypt with the given CIPHER_KEY",
            hint="check that CIPHER_KEY (--cipher-key) is the key the application wrote these events with",
            path=self.where,
        )


def _location(table: EventTable, record: StoredRecord) -> str:
    where = f"{table.label} {table.id_column} {record.notification_id}"
    return f"{where} (originator {record.originator_id}, version {record.originator_version})"


def _version(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


class EventsourcingImporter(Importer):
    name = "eventsourcing"
    description = "pyeventsourcing stored events: SQLite (plain, zlib, AES), Django layout, postgresql:// URL"

    def sniff(self, path: str) -> bool:
        if path.startswith(POSTGRES_SCHEMES):
            return True
        p = Path(path)
        if not p.is_file() or not _is_sqlite(p):
            return False
        try:
            conn = sqlite3.connect(p.resolve().as_uri() + "?immutable=1", uri=True)
            try:
                names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                conn.close()
        except sqlite3.Error:  # a SQLite file it cannot read (cut short, damaged): claim it to say why
            return True
        # an empty schema in WAL mode is the copy whose events stayed in the -wal: claim it to explain
        return "stored_events" in names or (not names and _wal_mode(p))

    def batches(self, path: str, options: ImportOptions) -> Iterator[SourceBatch]:
        key = cipher_key_of(options)
        application = str(options.extra.get("application_name") or "") or None
        store = _open_store(path)
        try:
            decode = _Decoder(store.where, _Cipher(key) if key else None)
            tables = store.event_tables(application)
            if not tables:
                raise ImportFormatError(
                    f"{store.where}: no eventsourcing events table"
                    + (f" for application {application!r}" if application else "")
                    + " in the connection's search path",
                    hint="eventsourcing.postgres tables are <application>_events with a notification_id column; "
                    "name their schema in the URL (…?options=-csearch_path%3Dmyschema) or check application_name",
                    path=store.where,
                )
            for table in tables:
                yield from self._table(store, table, application, decode, options)
        finally:
            store.close()

    def _table(
        self, store: _Store, table: EventTable, application: str | None, decode: _Decoder, options: ImportOptions
    ) -> Iterator[SourceBatch]:
        notes: list[str] = []
        apps = store.applications(table)
        if application and table.id_column == "id" and application not in apps:
            raise ImportFormatError(
                f"{table.source}: no events of application {application!r}",
                hint=f"applications in this table: {', '.join(apps) or 'none'}",
                path=store.where,
            )
        if application and table.id_column == "rowid":
            notes.append(f"{table.source}: application_name {application!r} ignored (this layout has no such column)")
        if len(apps) > 1 and not application:
            notes.append(
                f"{table.source}: {len(apps)} applications share the table ({', '.join(map(str, apps))}); all were imported "
                "(choose one with the application_name option)"
            )
        now = dt.datetime.now(dt.UTC)
        infos: dict[str, StreamInfo] = {}
        versions = VersionCheck()
        rows: list[dict[str, Any]] = []
        rejections: list[Rejection] = []
        read = 0
        for record in store.events(table, application):
            read += 1
            row = self._event(record, table, decode, infos, versions, options, now, rejections)
            if row is not None:
                rows.append(row)
            if read % BATCH_ROWS == 0:
                table, unstorable = rows_table(rows, INPUT_SCHEMA, self.name)
                yield SourceBatch(table, [*rejections, *unstorable], read, notes)
                rows, rejections, read, notes = [], [], 0, []
        if read == 0:
            notes.append(f"{table.source}: no stored events")
        snapshots, snap_rejections = self._snapshots(store, table, application, decode)
        read += len(snap_rejections)  # a snapshot kept is not read as an event; a rejected one is counted
        if snapshots:
            notes.append(
                f"{table.source}: {len(snapshots)} stored snapshots kept aside in source_snapshots (they are not events)"
            )
        table, unstorable = rows_table(rows, INPUT_SCHEMA, self.name)
        yield SourceBatch(table, [*rejections, *unstorable, *snap_rejections], read, notes, snapshots)

    @staticmethod
    def _event(
        record: StoredRecord,
        table: EventTable,
        decode: _Decoder,
        infos: dict[str, StreamInfo],
        versions: VersionCheck,
        options: ImportOptions,
        now: dt.datetime,
        rejections: list[Rejection],
    ) -> dict[str, Any] | None:
        stream_id = stream_id_of(record.originator_id)
        version = _version(record.originator_version)

        def reject(reason: str) -> None:
            if version is not None:
                versions.reject(stream_id, version)
            state = record.state if isinstance(record.state, bytes | str | None) else bytes(record.state)
            rejections.append(Rejection(table.source, _location(table, record), reason, text_of(state)))

        if record.originator_id is None or not stream_id or version is None or not isinstance(record.topic, str):
            reject("originator_id, originator_version (a positive integer) and topic are required")
            return None
        problem = versions.problem(stream_id, version)
        if problem:
            reject(problem)
            return None
        try:
            payload = decode(record)
        except _Undecodable as e:
            reject(str(e))
            return None
        if not isinstance(payload, dict):
            reject(f"state is not a JSON object but {type(payload).__name__}")
            return None
        occurred = payload.pop("timestamp", None)
        if occurred is None:
            reject("state has no timestamp")
            return None
        data = plain(payload)
        if version == 1:
            infos[stream_id] = StreamInfo.of_created(data, options.stream_type)
        info = infos.get(stream_id) or StreamInfo(options.stream_type or DEFAULT_STREAM_TYPE)
        source = f"{table.source}&{table.id_column}={record.notification_id}"
        candidate = event_row(
            stream_id=stream_id,
            version=version,
            topic=record.topic,
            occurred_at=occurred,
            data=data,
            source=source,
            info=info,
        )
        try:
            row = normalise_event(candidate, 0, now)
        except EventValidationError as e:
            reject(reason_of(e))
            return None
        versions.accept(stream_id, version)
        return row

    @staticmethod
    def _snapshots(
        store: _Store, table: EventTable, application: str | None, decode: _Decoder
    ) -> tuple[list[dict[str, Any]], list[Rejection]]:
        if table.snapshot_label is None:
            return [], []
        snap_source = f"{FAMILY}:{store.where}?table={table.snapshot_label}" + (
            f"&application_name={quote(application)}" if application else ""
        )
        rows: list[dict[str, Any]] = []
        rejections: list[Rejection] = []
        for i, record in enumerate(store.snapshots(table, application), start=1):
            location = f"{table.snapshot_label} row {i} (originator {record.originator_id}, version {record.originator_version})"
            version = _version(record.originator_version)
            try:
                payload = decode(record)
                if version is None or not isinstance(payload, dict):
                    raise _Undecodable("a snapshot needs a positive originator_version and a JSON object state")
                taken = payload.pop("timestamp", None)
                if isinstance(taken, str):
                    taken = dt.datetime.fromisoformat(taken)
                if isinstance(taken, dt.datetime) and taken.tzinfo is None:
                    raise _Undecodable("snapshot timestamp has no time zone")
                state = canonical_json(plain(payload))
            except CipherKeyError:
                raise
            except (_Undecodable, ValueError, TypeError) as e:
                raw = record.state if isinstance(record.state, bytes | str | None) else bytes(record.state)
                rejections.append(Rejection(snap_source, location, str(e), text_of(raw)))
                continue
            rows.append(
                {
                    "source": snap_source,
                    "stream_id": stream_id_of(record.originator_id),
                    "version": version,
                    "topic": record.topic if isinstance(record.topic, str) else None,
                    "taken_at": taken.astimezone(dt.UTC) if isinstance(taken, dt.datetime) else None,
                    "state": state,
                }
            )
        return rows, rejections
