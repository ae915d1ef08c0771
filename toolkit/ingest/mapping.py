"""A TOML mapping file: how the records of a generic JSONL, CSV or Parquet file become canonical events.

The mapping names, for each canonical column, where its value comes from — a source column, a
JSON path into the record, or a constant — how times are written, defaults for missing values,
and which source columns go into ``data`` and ``metadata``. ``docs/importers/generic.md`` is the
reference; a small example:

.. code-block:: toml

    [columns]
    stream_id = "session"                     # a source column
    event_type = { const = "llm_response" }   # a constant
    occurred_at = "ts"
    model = "$.response.model"                # a JSON path
    tokens_in = "$.usage.prompt_tokens"

    [time]
    format = "unix_ms"                        # iso | unix_s | unix_ms | unix_us | unix_ns | strptime pattern

    [defaults]
    stream_type = "llm_calls"

    [data]
    fields = ["prompt", "completion"]         # default: every source column not mapped above

    [metadata]
    fields = ["region"]

>>> m = Mapping.from_dict({"columns": {"stream_id": "s", "event_type": {"const": "x"}, "tokens_in": "$.u.n"}})
>>> m.map_record({"s": "run-1", "u": {"n": "12"}, "text": "hi"})
{'stream_id': 'run-1', 'event_type': 'x', 'tokens_in': 12, 'data': {'text': 'hi'}, 'metadata': {}}
>>> JsonPath.parse("$.choices[0].message['content']").steps
('choices', 0, 'message', 'content')
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import tomllib
import zoneinfo
from collections.abc import Iterable
from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cached_property
from operator import methodcaller
from pathlib import Path
from typing import Any, Final

import polars as pl

from toolkit.engines.polars_engine import uuid5_texts
from toolkit.errors import ToolkitError
from toolkit.ingest.base import IMPORT_NAMESPACE
from toolkit.journal.prepare import INPUT_COLUMNS, STRING_COLUMNS
from toolkit.journal.schema import ASSIGNED_COLUMNS

MISSING: Final = object()  # a path that leads nowhere (distinct from a JSON null)

_STRING_COLUMNS: Final = frozenset(STRING_COLUMNS)
_INT_COLUMNS: Final = frozenset(
    {"version", "tokens_in", "tokens_out", "tokens_cache_read", "tokens_cache_write", "tokens_reasoning"}
)
MAPPABLE: Final = frozenset(INPUT_COLUMNS)
_IGNORED: Final = frozenset({"position", *ASSIGNED_COLUMNS})  # the journal assigns these (as journal append)


class MappingFileError(ToolkitError, ValueError):
    """The mapping file is not valid TOML or does not describe a mapping."""

    @classmethod
    def at(cls, where: str, problem: str) -> MappingFileError:
        return cls(
            f"{where}: {problem}",
            hint="see docs/importers/generic.md for the mapping-file format",
            where=where,
            problem=problem,
        )


class ValueMappingError(ValueError):
    """One record's value cannot become its canonical column (becomes a rejection, never escapes)."""


# --- JSON paths -----------------------------------------------------------------------------

_STEP = re.compile(
    r"""\.(?P<key>[^.\[\]'"]+)        # .key
      | \[(?P<index>-?\d+)\]          # [3]
      | \[(?P<q>['"])(?P<quoted>(?:(?!(?P=q)).)*)(?P=q)\]   # ['key with . or spaces']
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class JsonPath:
    """A small, safe JSON path: ``$``, ``.key``, ``[index]`` and ``['quoted key']``; nothing else.

    A bare name (``"session"``) is the top-level field of that name.

    >>> JsonPath.parse("$.usage.prompt_tokens").get({"usage": {"prompt_tokens": 7}})
    7
    >>> JsonPath.parse("$.items[-1]").get({"items": [1, 2, 3]})
    3
    >>> JsonPath.parse("$.a.b").get({"a": 1}) is MISSING
    True
    """

    text: str
    steps: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: str) -> JsonPath:
        if not text.startswith("$"):
            if not text:
                raise ValueError("an empty column name")
            return cls(text, (text,))
        steps: list[str | int] = []
        pos = 1
        while pos < len(text):
            m = _STEP.match(text, pos)
            if m is None:
                raise ValueError(
                    f"cannot read the JSON path {text!r} at character {pos + 1} "
                    "(supported: $.key, [index], ['quoted key'])"
                )
            if m.group("key") is not None:
                steps.append(m.group("key"))
            elif m.group("index") is not None:
                steps.append(int(m.group("index")))
            else:
                steps.append(m.group("quoted"))
            pos = m.end()
        return cls(text, tuple(steps))

    @property
    def name(self) -> str:
        """The key this path's value gets inside ``data``/``metadata`` (its last key)."""
        for step in reversed(self.steps):
            if isinstance(step, str):
                return step
        return self.text

    @property
    def top(self) -> str | None:
        """The top-level source column the path starts at."""
        return self.steps[0] if self.steps and isinstance(self.steps[0], str) else None

    def get(self, record: Any) -> Any:
        value = record
        for step in self.steps:
            if isinstance(step, int):
                if not isinstance(value, list) or not -len(value) <= step < len(value):
                    return MISSING
                value = value[step]
            else:
                if not isinstance(value, AnyMapping) or step not in value:
                    return MISSING
                value = value[step]
        return value


# --- sources of a column --------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where one value comes from: a path into the record (a column is a one-step path) or a constant."""

    path: JsonPath | None = None
    const: Any = None
    json: bool = False  # the source value is JSON text to parse (CSV cells, Parquet strings)

    def get(self, record: AnyMapping[str, Any]) -> Any:
        if self.path is None:
            return self.const
        value = self.path.get(record)
        if self.json and isinstance(value, str | bytes):
            try:
                return json.loads(value)
            except ValueError as e:
                raise ValueMappingError(f"{self.path.text}: not JSON text: {e}") from None
        return value

    @classmethod
    def parse(cls, spec: Any, where: str) -> Source:
        if isinstance(spec, str):
            return cls(path=_path(spec, where))
        if isinstance(spec, dict):
            keys = set(spec)
            if keys == {"const"}:
                return cls(const=spec["const"])
            if keys <= {"column", "json"} and "column" in keys:
                return cls(path=JsonPath(str(spec["column"]), (str(spec["column"]),)), json=_bool(spec, "json", where))
            if keys <= {"path", "json"} and "path" in keys:
                return cls(path=_path(str(spec["path"]), where), json=_bool(spec, "json", where))
        raise MappingFileError.at(
            where,
            f"expected a column name, a JSON path ($.a.b), {{ const = … }}, {{ column = … }} or {{ path = … }}; got {spec!r}",
        )


def _path(text: str, where: str) -> JsonPath:
    try:
        return JsonPath.parse(text)
    except ValueError as e:
        raise MappingFileError.at(where, str(e)) from None


def _bool(spec: dict[str, Any], key: str, where: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise MappingFileError.at(where, f"{key} must be true or false")
    return value


# --- times ----------------------------------------------------------------------------------

_UNIX_SCALE: Final = {"unix_s": 1, "unix_ms": 1_000, "unix_us": 1_000_000, "unix_ns": 1_000_000_000}
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class TimeFormat:
    """How ``occurred_at`` is written in the source: ``iso``, ``unix_s|ms|us|ns`` or a strptime pattern.

    A time must say its zone: ISO text with an offset, a pattern with ``%z``, or ``zone`` given for
    times written without one. Unix times are UTC.

    >>> TimeFormat.parse_spec({"format": "unix_ms"}).parse(1700000000123)
    datetime.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=datetime.timezone.utc)
    >>> TimeFormat.parse_spec({"format": "%d/%m/%Y %H:%M", "zone": "Europe/Berlin"}).parse("01/11/2026 10:00")
    datetime.datetime(2026, 11, 1, 9, 0, tzinfo=datetime.timezone.utc)
    """

    kind: str = "iso"
    pattern: str | None = None
    zone: dt.tzinfo | None = None

    @classmethod
    def parse_spec(cls, spec: Any, where: str = "[time]") -> TimeFormat:
        if not isinstance(spec, dict):
            raise MappingFileError.at(where, "expected a table with format (and zone)")
        unknown = set(spec) - {"format", "zone"}
        if unknown:
            raise MappingFileError.at(where, f"unknown key {sorted(unknown)[0]!r} (keys: format, zone)")
        fmt = spec.get("format", "iso")
        if not isinstance(fmt, str) or not fmt:
            raise MappingFileError.at(where, "format must be a non-empty string")
        zone = _zone(spec.get("zone"), where)
        if fmt == "iso" or fmt in _UNIX_SCALE:
            return cls(fmt, None, zone)
        if "%" not in fmt:
            raise MappingFileError.at(
                where, f"unknown time format {fmt!r} (iso, unix_s, unix_ms, unix_us, unix_ns or a strptime pattern)"
            )
        if "%z" not in fmt and zone is None:
            raise MappingFileError.at(
                where, f"the pattern {fmt!r} has no zone: add %z to it, or set zone = 'UTC' (or an IANA name / offset)"
            )
        return cls("strptime", fmt, zone)

    def parse(self, value: Any) -> dt.datetime:
        if isinstance(value, dt.datetime):
            ts = value
        elif self.kind in _UNIX_SCALE:
            number, scale = _number(value), _UNIX_SCALE[self.kind]
            micros = number * 1_000_000 // scale if isinstance(number, int) else number * (1_000_000 / scale)
            try:
                ts = _EPOCH + dt.timedelta(microseconds=micros)
            except OverflowError:
                raise ValueMappingError(f"time out of range ({value!r} as {self.kind})") from None
        elif not isinstance(value, str):
            raise ValueMappingError(f"expected a time text, got {type(value).__name__}")
        elif self.kind == "strptime":
            assert self.pattern is not None
            try:
                ts = dt.datetime.strptime(value.strip(), self.pattern)
            except ValueError as e:
                raise ValueMappingError(f"time {value!r} does not match {self.pattern!r}: {e}") from None
        else:
            text = value.strip()
            try:
                ts = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" and text else text)
            except ValueError:
                m = re.match(r"^(.*[T ]\d\d:\d\d:\d\d)\.(\d{7,9})(Z|[+-]\d\d:?\d\d)?$", text)
                if not m:
                    raise ValueMappingError(f"not an ISO 8601 time ({value!r})") from None
                tz = "+00:00" if m.group(3) == "Z" else (m.group(3) or "")
                ts = dt.datetime.fromisoformat(f"{m.group(1)}.{m.group(2)[:6]}{tz}")
        if ts.tzinfo is None or ts.utcoffset() is None:
            if self.zone is None:
                raise ValueMappingError(f"time has no zone ({value!r}); set zone in the mapping's [time]")
            ts = ts.replace(tzinfo=self.zone)
        try:
            return ts.astimezone(dt.UTC)
        except OverflowError:
            raise ValueMappingError(f"time out of range ({value!r})") from None


def _zone(value: Any, where: str) -> dt.tzinfo | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MappingFileError.at(where, "zone must be a string ('UTC', '+02:00' or an IANA name)")
    if value.upper() in ("UTC", "Z"):
        return dt.UTC
    m = re.fullmatch(r"([+-])(\d\d):?(\d\d)", value)
    if m:
        delta = dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
        return dt.timezone(-delta if m.group(1) == "-" else delta)
    try:
        return zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise MappingFileError.at(where, f"unknown time zone {value!r}") from None


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueMappingError(f"expected a number, got {value!r}")
    number: int | float
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        try:
            number = float(text)
        except ValueError:
            raise ValueMappingError(f"expected a number, got {value!r}") from None
    else:
        raise ValueMappingError(f"expected a number, got {type(value).__name__}")
    if not math.isfinite(number):
        raise ValueMappingError(f"expected a finite number, got {value!r}")
    return number


# --- value coercion per canonical column ----------------------------------------------------


def _coerce(column: str, value: Any, time: TimeFormat) -> Any:
    """A source value as the canonical column's Python value (``normalise_event`` validates the rest)."""
    if value is None:
        return None
    if column in _STRING_COLUMNS:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float | Decimal):
            return str(value)
        raise ValueMappingError(f"expected a string, got {type(value).__name__}")
    if column in _INT_COLUMNS:
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
        if isinstance(value, str):
            raise ValueMappingError(f"expected an integer, got {value!r}")
        return value  # normalise_event checks ints and integral floats
    if column == "occurred_at":
        return time.parse(value)
    if column == "cost_usd":
        if isinstance(value, str):
            try:
                return Decimal(value.strip())
            except InvalidOperation:
                raise ValueMappingError(f"expected a number, got {value!r}") from None
        return value
    if column == "duration_ms":
        return float(_number(value))
    if column == "is_error":
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no", ""):
                return False
            raise ValueMappingError(f"expected true or false, got {value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)
        return value
    return value  # data (any JSON value), metadata (checked by normalise_event)


def _json_value(value: Any) -> Any:
    """A source value as a JSON value for ``data``/``metadata`` (times and decimals as text)."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


# --- the mapping ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fields:
    """Source values gathered into a JSON object: ``key -> source``; ``rest`` adds every unused column."""

    fields: tuple[tuple[str, Source], ...] = ()
    rest: bool = False

    @classmethod
    def parse(cls, spec: Any, where: str, rest_default: bool) -> Fields:
        if spec is None:
            return cls((), rest_default)
        if not isinstance(spec, dict) or set(spec) - {"fields", "rest"}:
            raise MappingFileError.at(
                where, "expected fields = [...] or { key = source, ... } and optional rest = true"
            )
        raw = spec.get("fields", [])
        out: list[tuple[str, Source]] = []
        if isinstance(raw, list):
            for item in raw:
                if not isinstance(item, str):
                    raise MappingFileError.at(where, f"fields entries are column names or JSON paths, got {item!r}")
                path = _path(item, where)
                out.append((path.name, Source(path=path)))
        elif isinstance(raw, dict):
            out = [(str(k), Source.parse(v, f"{where} fields.{k}")) for k, v in raw.items()]
        else:
            raise MappingFileError.at(where, "fields must be a list or a table")
        rest = spec.get("rest", False)
        if not isinstance(rest, bool):
            raise MappingFileError.at(where, "rest must be true or false")
        return cls(tuple(out), rest)

    def gather(self, record: AnyMapping[str, Any], used: frozenset[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.rest:
            out.update((k, _json_value(v)) for k, v in record.items() if k not in used)
        for key, source in self.fields:
            value = source.get(record)
            if value is not MISSING:
                out[key] = _json_value(value)
        return out


@dataclass(frozen=True)
class Mapping:
    """A parsed mapping file (see the module docstring)."""

    columns: dict[str, Source] = field(default_factory=dict)
    time: TimeFormat = field(default_factory=TimeFormat)
    defaults: dict[str, Any] = field(default_factory=dict)
    data: Fields = field(default_factory=lambda: Fields((), True))
    metadata: Fields = field(default_factory=Fields)
    where: str = "mapping"

    @classmethod
    def load(cls, path: Path) -> Mapping:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise MappingFileError.at(str(path), f"cannot read: {e.strerror or e}") from e
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise MappingFileError.at(str(path), f"not valid TOML: {e}") from e
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: AnyMapping[str, Any], where: str = "mapping") -> Mapping:
        unknown = set(raw) - {"columns", "time", "defaults", "data", "metadata"}
        if unknown:
            raise MappingFileError.at(
                where, f"unknown section [{sorted(unknown)[0]}] (sections: columns, time, defaults, data, metadata)"
            )
        cols = raw.get("columns", {})
        if not isinstance(cols, dict):
            raise MappingFileError.at(where, "[columns] must be a table: canonical column = source")
        columns: dict[str, Source] = {}
        for name, spec in cols.items():
            if name not in MAPPABLE:
                raise MappingFileError.at(f"{where} [columns]", f"{name!r} is not a canonical column")
            columns[name] = Source.parse(spec, f"{where} [columns] {name}")
        defaults = raw.get("defaults", {})
        if not isinstance(defaults, dict) or set(defaults) - MAPPABLE:
            bad = sorted(set(defaults) - MAPPABLE)[0] if isinstance(defaults, dict) else "[defaults]"
            raise MappingFileError.at(f"{where} [defaults]", f"{bad!r} is not a canonical column")
        for name in ("stream_id", "event_type"):
            if name not in columns and name not in defaults:
                raise MappingFileError.at(where, f"{name} is required: map it in [columns] or give it in [defaults]")
        time = TimeFormat.parse_spec(raw.get("time", {}), f"{where} [time]")
        data_default = "data" not in columns
        data = Fields.parse(raw.get("data"), f"{where} [data]", rest_default=data_default)
        if "data" in columns and (data.fields or data.rest):
            raise MappingFileError.at(where, "data is mapped in [columns]; drop the [data] section (or the mapping)")
        metadata = Fields.parse(raw.get("metadata"), f"{where} [metadata]", rest_default=False)
        if "metadata" in columns and (metadata.fields or metadata.rest):
            raise MappingFileError.at(where, "metadata is mapped in [columns]; drop the [metadata] section")
        return cls(columns, time, dict(defaults), data, metadata, where)

    @classmethod
    def identity(cls, names: Iterable[str], where: str) -> Mapping:
        """Columns named like canonical columns map to them (``data``/``metadata`` hold JSON text).

        Columns the journal assigns (``position``, ``recorded_at``, hashes, ``day``) are ignored,
        so a table exported from a journal imports again.
        """
        names = list(names)
        unknown = [n for n in names if n not in MAPPABLE and n not in _IGNORED]
        if unknown:
            raise MappingFileError(
                f"{where}: column {unknown[0]!r} is not a canonical column",
                hint="give a mapping file (--mapping FILE) that says where each column goes; see docs/importers/generic.md",
                where=where,
            )
        columns = {n: Source(path=JsonPath(n, (n,)), json=n in ("data", "metadata")) for n in names if n in MAPPABLE}
        return cls(columns, TimeFormat(), {}, Fields(), Fields(), where)

    @cached_property
    def used(self) -> frozenset[str]:
        """Top-level source columns read by [columns] and [metadata] (not repeated in ``data``'s rest)."""
        tops = {s.path.top for s in self.columns.values() if s.path is not None}
        tops |= {s.path.top for _, s in self.metadata.fields if s.path is not None}
        tops |= {s.path.top for _, s in self.data.fields if s.path is not None}
        return frozenset(t for t in tops if t is not None)

    def constant(self, column: str, value: Any) -> Any:
        """A constant (``const`` or a default) as the column's value; ``ValueMappingError`` if it does not fit."""
        return _json_value(value) if column in ("data", "metadata") else _coerce(column, value, self.time)

    def map_record(self, record: AnyMapping[str, Any]) -> dict[str, Any]:
        """One source record as an event dict for ``normalise_event``; ``ValueMappingError`` names the column."""
        event: dict[str, Any] = {}
        for name, source in self.columns.items():
            value = source.get(record)
            if value is MISSING:
                value = None
            try:
                value = _coerce(name, value, self.time) if name not in ("data", "metadata") else _json_value(value)
            except ValueMappingError as e:
                raise ValueMappingError(f"field {name!r}: {e}") from None
            if value is not None:
                event[name] = value
        for name, value in self.defaults.items():
            if event.get(name) is None:
                try:
                    event[name] = _coerce(name, value, self.time)
                except ValueMappingError as e:
                    raise ValueMappingError(f"default {name!r}: {e}") from None
        used = self.used
        if "data" not in self.columns:
            event["data"] = self.data.gather(record, used)
        elif "data" not in event:
            event["data"] = None
        if "metadata" not in self.columns:
            event["metadata"] = self.metadata.gather(record, used)
        return event


def sidecar(file: Path) -> Path:
    """The mapping file used for ``file`` when none is given: ``<file stem>.mapping.toml`` beside it."""
    return file.parent / f"{file.stem}.mapping.toml"


def mapping_for(file: Path, given: Path | None) -> Mapping | None:
    """The mapping of one input file: the one given (``--mapping``), else its sidecar, else None."""
    if given is not None:
        return Mapping.load(given)
    side = sidecar(file)
    return Mapping.load(side) if side.is_file() else None


# --- ids and digests (vectorised) -----------------------------------------------------------

_hexdigest = methodcaller("hexdigest")


def sha256_hex(texts: pl.Series) -> pl.Series:
    """SHA-256 hex digest of each UTF-8 text (C-level loop; no Python per row).

    >>> sha256_hex(pl.Series(["abc"])).item() == hashlib.sha256(b"abc").hexdigest()
    True
    """
    blobs = texts.cast(pl.Binary).to_list()
    return pl.Series(list(map(_hexdigest, map(hashlib.sha256, blobs))), dtype=pl.String)


def derive_ids(parts: pl.DataFrame) -> pl.Series:
    """``derive_id(*row)`` for every row of ``parts`` (columns in order), vectorised.

    >>> from toolkit.ingest.base import derive_id
    >>> frame = pl.DataFrame({"a": ["jsonl", "jsonl"], "b": ["run-1", "x/y"], "c": [3, 4]})
    >>> derive_ids(frame).to_list() == [derive_id("jsonl", "run-1", 3), derive_id("jsonl", "x/y", 4)]
    True
    """
    names = parts.select(pl.concat_str([pl.col(c).cast(pl.String) for c in parts.columns], separator="/"))
    return uuid5_texts(IMPORT_NAMESPACE.bytes, names.to_series()).rename("event_id")


def row_digest(record: Any) -> str:
    """SHA-256 of a record's canonical JSON (values JSON cannot hold are written as text)."""
    text = json.dumps(_json_value(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


__all__ = [
    "MISSING",
    "Fields",
    "JsonPath",
    "Mapping",
    "MappingFileError",
    "Source",
    "TimeFormat",
    "ValueMappingError",
    "derive_ids",
    "mapping_for",
    "row_digest",
    "sha256_hex",
    "sidecar",
]
