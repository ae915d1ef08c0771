"""OTLP/JSON traces (and their logs) of LLM agents, read with the OpenTelemetry GenAI conventions.

Input: the Collector ``file`` exporter's JSONL (one ``TracesData`` / ``LogsData`` object per
line, traces and logs may share a file), or one JSON document (``{"resourceSpans": [...]}``,
protobuf JSON mapping, possibly pretty-printed), or a directory of such files (files that are not
OTLP are skipped with a note). Spans are grouped by trace over everything the path holds, so a
trace split across lines or files is one tree.

Mapping (the full table, with every quirk, is ``docs/importers/otlp.md``):

* stream = one root span (an agent invocation): ``stream_id = "<trace id>-<root span id>"``,
  ``stream_type = "otel_trace"``; every descendant span belongs to its root's stream. Spans whose
  parent is not in the export go to the stream named by that missing parent's id (children are
  exported before their parents, so a partial export lands where the complete one will).
* a span = two events, at its start and its end time (ns → µs UTC), ids
  ``derive_id("otlp", trace_id, span_id, "start" | "end")``; a span without an end time gives its
  start event only. ``gen_ai.operation.name`` picks the types: chat / text_completion /
  generate_content / embeddings → ``llm_request`` + ``llm_response`` (model and tokens on the
  response); execute_tool → ``tool_called`` + ``tool_result``; invoke_agent → ``user_message``
  (the input the agent was invoked with) + ``custom``; anything else → ``custom`` + ``custom``.
  ``source_type`` is the operation name (``span`` without one). Types, data and metadata depend on
  the span alone, so re-importing a grown export never changes an event already imported.
* tokens (OTel semantics: cache part of input, reasoning part of output) only where they are
  reported deepest: on LLM responses, or on a span's end event when no span below it reports
  usage; usage an agent span repeats from its children stays only in its metadata attributes.
* causation: a start event → its parent span's start event; an end event → its own start event; a
  tool call → the ``llm_response`` whose output requested that ``gen_ai.tool.call.id`` when the
  trace has it. ``correlation_id`` = ``gen_ai.conversation.id`` (the span's, an ancestor's, or the
  only one in the stream); ``agent`` = ``gen_ai.agent.name`` likewise.
* a log record linked to an imported span → one ``custom`` event (``source_type`` = its event name)
  in that span's stream, caused by the span's start event; content-derived id, so importing the
  logs later adds events without touching the span events.

>>> decode_id("Mc0Pb4MJ3e+HOkJLywBXaw==", 16, "traceId")
'31cd0f6f8309ddef873a424bcb00576b'
>>> decode_id("31CD0F6F8309DDEF873A424BCB00576B", 16, "traceId")
'31cd0f6f8309ddef873a424bcb00576b'
>>> event_types("execute_tool")
('tool_called', 'tool_result')
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow as pa

from toolkit.ingest.base import (
    Importer,
    ImportFormatError,
    ImportOptions,
    Rejection,
    SourceBatch,
    derive_id,
    files_below,
    non_utf8_field,
    read_path,
    text_of,
)
from toolkit.journal.prepare import INPUT_SCHEMA, canonical_json

STREAM_TYPE = "otel_trace"
BATCH_EVENTS = 100_000
SUFFIXES = (".json", ".jsonl", ".ndjson")

LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
TOOL_OPERATIONS = frozenset({"execute_tool"})

# canonical token column -> attribute names, first present wins (current convention first)
TOKEN_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "tokens_in": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
    "tokens_out": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
    "tokens_cache_read": ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"),
    "tokens_cache_write": (
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
        "gen_ai.usage.cache_write.input_tokens",
        "gen_ai.usage.cache_write_input_tokens",
    ),
    "tokens_reasoning": ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens"),
}
_USAGE_KEYS = frozenset(k for names in TOKEN_ATTRIBUTES.values() for k in names)

# content attributes (JSON text on spans, structured values in logs) -> key in the event's data
_START_CONTENT = {
    "gen_ai.input.messages": "input_messages",
    "gen_ai.system_instructions": "system_instructions",
    "gen_ai.tool.definitions": "tool_definitions",
    "gen_ai.tool.call.arguments": "arguments",
    "gen_ai.prompt": "prompt",
}
_END_CONTENT = {
    "gen_ai.output.messages": "output_messages",
    "gen_ai.tool.call.result": "result",
    "gen_ai.response.finish_reasons": "finish_reasons",
    "gen_ai.completion": "completion",
}

_SPAN_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS_CODES = {0: "UNSET", 1: "OK", 2: "ERROR"}
_SEVERITY_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")  # 1-4, 5-8, ... 21-24

_HEX = re.compile(r"[0-9a-fA-F]+")
_INT = re.compile(r"-?[0-9]{1,20}")
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_CLASS_REPR = re.compile(r"^<class '(.+)'>$")
_SNIFF = re.compile(
    rb'^\s*(?:\[\s*)?\{\s*(?:"(?:resourceSpans|resource_spans|resourceLogs|resource_logs)"\s*:'
    rb'|"trace"\s*:\s*\{\s*"(?:resourceSpans|resource_spans)"'
    rb'|"batches"\s*:\s*\[\s*\{\s*"(?:resource|scopeSpans|instrumentationLibrarySpans)")'
)
_SNAKE: dict[str, str] = {}
_INT64_MAX = (1 << 63) - 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_DEPTH = 64  # nesting of AnyValues


class _Bad(Exception):
    """A record this importer cannot read; becomes a ``Rejection`` with its location."""


def event_types(operation: str | None) -> tuple[str, str]:
    """(start event type, end event type) of a span with this ``gen_ai.operation.name``.

    Only the span's own operation decides (never its place in the tree), so an event keeps its
    type when an export grows and is imported again.

    >>> event_types("chat"), event_types("invoke_agent")
    (('llm_request', 'llm_response'), ('user_message', 'custom'))
    >>> event_types(None)
    ('custom', 'custom')
    """
    if operation in LLM_OPERATIONS:
        return "llm_request", "llm_response"
    if operation in TOOL_OPERATIONS:
        return "tool_called", "tool_result"
    if operation == "invoke_agent":
        return "user_message", "custom"
    return "custom", "custom"


def decode_id(value: Any, nbytes: int, what: str) -> str:
    """A trace (16 bytes) or span (8 bytes) id in hex or (standard or URL-safe) base64 → lowercase hex.

    Length decides: 2·n hex digits, else base64 of n bytes. A missing, malformed or all-zero id
    raises (and becomes a rejection naming ``what``).
    """
    hexid = _hex_id(value, nbytes, what)
    if hexid is None:
        raise _Bad(f"{what} is missing")
    if hexid == "0" * (2 * nbytes):
        raise _Bad(f"{what} is all zeros (invalid)")
    return hexid


def _optional_id(value: Any, nbytes: int, what: str) -> str | None:
    """A parent span id or a log record's ids: missing, empty or all zeros mean "none"."""
    hexid = _hex_id(value, nbytes, what)
    return None if hexid is None or hexid == "0" * (2 * nbytes) else hexid


def _hex_id(value: Any, nbytes: int, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Bad(f"{what}: expected a string, got {_type(value)}")
    if len(value) == 2 * nbytes and _HEX.fullmatch(value):
        return value.lower()
    text = value.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != nbytes:
        raise _Bad(f"{what}: {_short(value)} is neither {2 * nbytes} hex digits nor base64 of {nbytes} bytes")
    return raw.hex()


# ------------------------------------------------------------------------------------- records


@dataclass
class _Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int | None
    status: str
    status_message: str | None
    attrs: dict[str, Any]
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]
    trace_state: str | None
    flags: int | None
    resource: dict[str, Any]
    scope: dict[str, Any]
    source: str = ""  # "otlp:<file>:<line>" (or "#<path>" inside a document)
    file: str = ""
    where: str = ""  # location for a rejection
    raw: Any = None
    _parsed: dict[str, Any] = field(default_factory=dict)

    def content(self, key: str) -> Any:
        """A content attribute, parsed once (``_json_content``)."""
        if key not in self._parsed:
            self._parsed[key] = _json_content(self.attrs.get(key))
        return self._parsed[key]

    def fingerprint(self) -> str:
        return canonical_json(
            [self.parent_id, self.name, self.kind, self.start_ns, self.end_ns, self.status, self.status_message,
             self.attrs, self.events, self.links, self.trace_state, self.flags, self.resource, self.scope]
        )  # fmt: skip


@dataclass
class _Log:
    trace_id: str | None
    span_id: str | None
    time_ns: int | None
    event_name: str | None
    severity_number: int | None
    severity_text: str | None
    body: Any
    attrs: dict[str, Any]
    flags: int | None
    resource: dict[str, Any]
    scope: dict[str, Any]
    digest: str = ""
    source: str = ""
    file: str = ""
    where: str = ""
    raw: Any = None


@dataclass
class _Reading:
    """Everything read from one path: spans and logs by identity, rejections, counts, notes."""

    spans: dict[tuple[str, str], _Span] = field(default_factory=dict)
    logs: dict[str, _Log] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    read: int = 0
    duplicate_spans: int = 0
    duplicate_logs: int = 0
    notes: list[str] = field(default_factory=list)

    def reject(self, file: str, where: str, reason: str, record: Any) -> None:
        self.read += 1
        if not isinstance(record, bytes | None):  # a parsed value: as ASCII JSON (no lone surrogates)
            record = json.dumps(record, ensure_ascii=True, default=str)
        self.rejections.append(Rejection(file, where, reason, text_of(record)))


# ------------------------------------------------------------------------------ value decoding


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _get(obj: Mapping[str, Any], camel: str) -> Any:
    """A field by its proto3 JSON name (lowerCamelCase) or its original snake_case name."""
    value = obj.get(camel)
    if value is None:
        snake = _SNAKE.get(camel)
        if snake is None:
            snake = _SNAKE[camel] = _CAMEL.sub("_", camel).lower()
        value = obj.get(snake)
    return value


def _object(value: Any, what: str, *, required: bool = False) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise _Bad(f"{what}: expected an object, got {_type(value)}")
    return value


def _array(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad(f"{what}: expected an array, got {_type(value)}")
    return value


def _int64(value: Any, what: str) -> int:
    """An int64 given as a decimal string (the JSON mapping) or as a JSON number."""
    if isinstance(value, bool):
        raise _Bad(f"{what}: expected an integer, got {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and _INT.fullmatch(value.strip()):
        n = int(value)
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    else:
        raise _Bad(f"{what}: expected an integer (int64 as a decimal string), got {_short(value)}")
    if not -_INT64_MAX - 1 <= n <= (1 << 64) - 1:  # fixed64 timestamps are unsigned
        raise _Bad(f"{what}: {n} does not fit in 64 bits")
    return n


def _time_ns(value: Any, what: str) -> int | None:
    """Unix nanoseconds; None for missing or 0 (the protobuf default: "not set")."""
    if value is None:
        return None
    n = _int64(value, what)
    if n == 0:
        return None
    if not 0 < n <= _INT64_MAX:
        raise _Bad(f"{what}: {n} is not a time in Unix nanoseconds")
    return n


def _utc(ns: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


def _iso(ns: int | None) -> str | None:
    return None if ns is None else _utc(ns).isoformat().replace("+00:00", "Z")


def _double(value: Any, what: str) -> float | str:
    if isinstance(value, bool):
        raise _Bad(f"{what}: expected a number, got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _Bad(f"{what}: expected a number, got {_short(value)}") from None
    else:
        raise _Bad(f"{what}: expected a number, got {_type(value)}")
    if not math.isfinite(number):  # JSON has no NaN / Infinity: keep the protobuf JSON spelling
        return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
    return number


def _any_value(value: Any, what: str, depth: int = 0) -> Any:
    """An OTLP ``AnyValue`` wrapper → a plain JSON value (``{}`` → None)."""
    if depth > _MAX_DEPTH:
        raise _Bad(f"{what}: values nested more than {_MAX_DEPTH} deep")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Bad(f"{what}: expected an AnyValue object, got {_type(value)}")
    if not value:
        return None
    if (v := _get(value, "stringValue")) is not None:
        if not isinstance(v, str):
            raise _Bad(f"{what}.stringValue: expected a string, got {_type(v)}")
        return v
    if (v := _get(value, "intValue")) is not None:
        return _int64(v, f"{what}.intValue")
    if (v := _get(value, "doubleValue")) is not None:
        return _double(v, f"{what}.doubleValue")
    if (v := _get(value, "boolValue")) is not None:
        if not isinstance(v, bool):
            raise _Bad(f"{what}.boolValue: expected true or false, got {_short(v)}")
        return v
    if (v := _get(value, "arrayValue")) is not None:
        items = _array(_get(_object(v, f"{what}.arrayValue"), "values"), f"{what}.arrayValue.values")
        return [_any_value(x, f"{what}.arrayValue.values[{i}]", depth + 1) for i, x in enumerate(items)]
    if (v := _get(value, "kvlistValue")) is not None:
        items = _array(_get(_object(v, f"{what}.kvlistValue"), "values"), f"{what}.kvlistValue.values")
        return _key_values(items, f"{what}.kvlistValue.values", depth + 1)
    if (v := _get(value, "bytesValue")) is not None:
        if not isinstance(v, str):
            raise _Bad(f"{what}.bytesValue: expected a base64 string, got {_type(v)}")
        return {"bytes_base64": v}
    raise _Bad(f"{what}: not an AnyValue (keys {sorted(value)[:5]})")


def _key_values(items: list[Any], what: str, depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, kv in enumerate(items):
        kv = _object(kv, f"{what}[{i}]", required=True)
        key = kv.get("key")
        if not isinstance(key, str):
            raise _Bad(f"{what}[{i}].key: expected a string, got {_type(key)}")
        out[key] = _any_value(kv.get("value"), f"{what}[{i}].value", depth)
    return out


def _attributes(obj: Mapping[str, Any], what: str) -> dict[str, Any]:
    return _key_values(_array(_get(obj, "attributes"), f"{what}.attributes"), f"{what}.attributes")


def _enum(value: Any, table: Mapping[int, str], prefix: str, what: str) -> str:
    """An enum given as its number or its name (``SPAN_KIND_CLIENT`` or ``CLIENT``) → short name."""
    if value is None:
        return table[0]
    if isinstance(value, int) and not isinstance(value, bool) and value in table:
        return table[value]
    if isinstance(value, str):
        name = value.strip().upper()
        if name.isdigit() and int(name) in table:
            return table[int(name)]
        name = name.removeprefix(prefix)
        if name in table.values():
            return name
    raise _Bad(
        f"{what}: unknown value {_short(value)} (expected one of {', '.join(prefix + n for n in table.values())})"
    )


def _severity(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and not value.strip().isdigit():
        name = value.strip().upper().removeprefix("SEVERITY_NUMBER_")
        for i, level in enumerate(_SEVERITY_LEVELS):
            if name.startswith(level) and name[len(level) :] in ("", "2", "3", "4"):
                return 4 * i + int(name[len(level) :] or 1)
        if name == "UNSPECIFIED":
            return 0
        raise _Bad(f"{what}: unknown severity {_short(value)}")
    n = _int64(value, what)
    if not 0 <= n <= 24:
        raise _Bad(f"{what}: {n} is not a severity number (0-24)")
    return n


def _opt_str(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Bad(f"{what}: expected a string, got {_type(value)}")
    return value


def _flags(value: Any, what: str) -> int | None:
    return None if value is None else _int64(value, what)


def _resource(obj: Mapping[str, Any], what: str) -> dict[str, Any]:
    res = _object(_get(obj, "resource"), f"{what}.resource")
    return _attributes(res, f"{what}.resource")


def _scope(obj: Mapping[str, Any], what: str) -> dict[str, Any]:
    key = "scope" if _get(obj, "scope") is not None else "instrumentationLibrary"
    scope = _object(_get(obj, key), f"{what}.{key}")
    out: dict[str, Any] = {}
    for name in ("name", "version"):
        if (v := _opt_str(scope.get(name), f"{what}.{key}.{name}")) is not None:
            out[name] = v
    if attrs := _attributes(scope, f"{what}.{key}"):
        out["attributes"] = attrs
    return out


# ------------------------------------------------------------------------------------- parsing


def _parse_span(raw: Any, resource: dict[str, Any], scope: dict[str, Any]) -> _Span:
    span = _object(raw, "span", required=True)
    trace_id = decode_id(_get(span, "traceId"), 16, "traceId")
    span_id = decode_id(_get(span, "spanId"), 8, "spanId")
    parent_id = _optional_id(_get(span, "parentSpanId"), 8, "parentSpanId")
    start = _time_ns(_get(span, "startTimeUnixNano"), "startTimeUnixNano")
    if start is None:
        raise _Bad("startTimeUnixNano is missing")
    end = _time_ns(_get(span, "endTimeUnixNano"), "endTimeUnixNano")
    if end is not None and end < start:
        raise _Bad(f"endTimeUnixNano ({end}) is before startTimeUnixNano ({start})")
    status = _object(_get(span, "status"), "status")
    events = []
    for i, ev in enumerate(_array(_get(span, "events"), "events")):
        ev = _object(ev, f"events[{i}]", required=True)
        events.append(
            {
                "name": _opt_str(ev.get("name"), f"events[{i}].name"),
                "time": _iso(_time_ns(_get(ev, "timeUnixNano"), f"events[{i}].timeUnixNano")),
                "attributes": _attributes(ev, f"events[{i}]"),
            }
        )
    links = []
    for i, ln in enumerate(_array(_get(span, "links"), "links")):
        ln = _object(ln, f"links[{i}]", required=True)
        links.append(
            {
                "trace_id": decode_id(_get(ln, "traceId"), 16, f"links[{i}].traceId"),
                "span_id": decode_id(_get(ln, "spanId"), 8, f"links[{i}].spanId"),
                "attributes": _attributes(ln, f"links[{i}]"),
            }
        )
    return _Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        name=_opt_str(span.get("name"), "name") or "",
        kind=_enum(span.get("kind"), _SPAN_KINDS, "SPAN_KIND_", "kind"),
        start_ns=start,
        end_ns=end,
        status=_enum(status.get("code"), _STATUS_CODES, "STATUS_CODE_", "status.code"),
        status_message=_opt_str(status.get("message"), "status.message") or None,
        attrs=_attributes(span, "span"),
        events=events,
        links=links,
        trace_state=_opt_str(_get(span, "traceState"), "traceState") or None,
        flags=_flags(span.get("flags"), "flags"),
        resource=resource,
        scope=scope,
    )


def _parse_log(raw: Any, resource: dict[str, Any], scope: dict[str, Any]) -> _Log:
    rec = _object(raw, "logRecord", required=True)
    attrs = _attributes(rec, "logRecord")
    name = _opt_str(_get(rec, "eventName"), "eventName") or None
    if name is None and isinstance(attrs.get("event.name"), str):
        name = attrs["event.name"]  # GenAI events before the eventName field
    time = _time_ns(_get(rec, "timeUnixNano"), "timeUnixNano")
    observed = _time_ns(_get(rec, "observedTimeUnixNano"), "observedTimeUnixNano")
    log = _Log(
        trace_id=_optional_id(_get(rec, "traceId"), 16, "traceId"),
        span_id=_optional_id(_get(rec, "spanId"), 8, "spanId"),
        time_ns=time or observed,
        event_name=name,
        severity_number=_severity(_get(rec, "severityNumber"), "severityNumber"),
        severity_text=_opt_str(_get(rec, "severityText"), "severityText") or None,
        body=_any_value(rec.get("body"), "body"),
        attrs=attrs,
        flags=_flags(rec.get("flags"), "flags"),
        resource=resource,
        scope=scope,
    )
    content = [log.trace_id, log.span_id, log.time_ns, name, log.severity_number, log.severity_text, log.body, attrs]
    log.digest = hashlib.sha256(canonical_json(content).encode("utf-8", "surrogatepass")).hexdigest()
    return log


def _read_export(
    obj: Any, reading: _Reading, file: str, line: int | None, prefix: str, raw: bytes | None = None
) -> None:
    """One TracesData / LogsData object (a JSONL line or a whole document) into ``reading``;
    ``raw``: the line's bytes, the record kept when the whole line is rejected."""
    here = f"line {line}" if line is not None else (prefix or "document")
    whole = obj if raw is None else raw
    if isinstance(obj, dict) and isinstance(obj.get("trace"), dict) and len(obj) == 1:
        obj = obj["trace"]  # a query API's envelope around TracesData
    if not isinstance(obj, dict):
        reading.reject(file, here, f"not a JSON object (got {_type(obj)})", whole)
        return
    spans_key = next((k for k in ("resourceSpans", "resource_spans", "batches") if k in obj), None)
    logs_key = next((k for k in ("resourceLogs", "resource_logs") if k in obj), None)
    if spans_key is None and logs_key is None:
        if obj:
            reading.reject(
                file,
                here,
                f"not OTLP TracesData/LogsData: no resourceSpans or resourceLogs (keys {sorted(obj)[:5]})",
                whole,
            )
        return
    for key, inner, leaf, parse in (
        (spans_key, ("scopeSpans", "instrumentationLibrarySpans"), "spans", _parse_span),
        (logs_key, ("scopeLogs", "instrumentationLibraryLogs"), "logRecords", _parse_log),
    ):
        if key is None:
            continue
        path = f"{prefix}{key}"
        if not isinstance(obj[key], list):
            reading.reject(file, _at(line, path), f"{key}: expected an array, got {_type(obj[key])}", whole)
            continue
        for i, rs in enumerate(obj[key]):
            rpath = f"{path}[{i}]"
            try:
                rs = _object(rs, rpath, required=True)
                resource = _resource(rs, rpath)
                ikey = next((k for k in inner if _get(rs, k) is not None), inner[0])
                scopes = _array(_get(rs, ikey), f"{rpath}.{ikey}")
            except (_Bad, RecursionError) as e:
                reading.reject(file, _at(line, rpath), _reason(e), obj if rs is None else rs)
                continue
            for j, ss in enumerate(scopes):
                spath = f"{rpath}.{ikey}[{j}]"
                try:
                    ss = _object(ss, spath, required=True)
                    scope = _scope(ss, spath)
                    records = _array(_get(ss, leaf), f"{spath}.{leaf}")
                except (_Bad, RecursionError) as e:
                    reading.reject(file, _at(line, spath), _reason(e), rs if ss is None else ss)
                    continue
                for k, rec in enumerate(records):
                    where = _at(line, f"{spath}.{leaf}[{k}]")
                    try:
                        parsed = parse(rec, resource, scope)
                    except (_Bad, RecursionError) as e:
                        reading.reject(file, where, _reason(e), ss if rec is None else rec)
                        continue
                    parsed.file, parsed.where, parsed.raw = file, where, rec
                    parsed.source = f"otlp:{file}:{line}" if line is not None else f"otlp:{file}#{spath}.{leaf}[{k}]"
                    _keep(parsed, reading)


def _keep(record: _Span | _Log, reading: _Reading) -> None:
    if isinstance(record, _Log):
        reading.read += 1
        if record.digest in reading.logs:
            reading.duplicate_logs += 1
        else:
            reading.logs[record.digest] = record
        return
    key = (record.trace_id, record.span_id)
    seen = reading.spans.get(key)
    if seen is None:
        reading.read += 1 if record.end_ns is None else 2  # a span is read as its start and its end
        reading.spans[key] = record
    elif seen.fingerprint() == record.fingerprint():
        reading.read += 1 if record.end_ns is None else 2
        reading.duplicate_spans += 1
    else:
        reading.reject(
            record.file,
            record.where,
            f"span {record.trace_id}/{record.span_id} was already read at {seen.where or 'the top'} of {seen.file} with different content",
            record.raw,
        )


def _at(line: int | None, path: str) -> str:
    return f"line {line}, {path}" if line is not None else path


def _reason(e: BaseException) -> str:
    return "values nested too deeply" if isinstance(e, RecursionError) else str(e)


def _read_file(file: Path, reading: _Reading) -> None:
    name = str(file)
    try:
        text = file.read_bytes()
    except OSError as e:
        raise ImportFormatError(
            f"{name}: cannot read: {e.strerror or e}", hint="check the file's permissions", path=name
        ) from e
    text = text.removeprefix(b"\xef\xbb\xbf")
    if not text.strip():
        return
    try:
        whole = json.loads(text)
    except (ValueError, RecursionError) as e:
        whole_error: BaseException = e
    else:
        one_line = text.strip().count(b"\n") == 0
        if isinstance(whole, list):  # a JSON array of exports
            for i, obj in enumerate(whole):
                _read_export(obj, reading, name, None, f"[{i}].")
        else:
            _read_export(whole, reading, name, 1 if one_line else None, "", text.strip() if one_line else None)
        return
    # not one document: JSON lines, unless no line is an export and some fail (a damaged document)
    parsed: list[tuple[int, bytes, Any, BaseException | None]] = []
    any_export = False
    for lineno, raw in enumerate(text.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError) as e:
            parsed.append((lineno, raw, None, e))
            continue
        parsed.append((lineno, raw, obj, None))
        any_export = any_export or (
            isinstance(obj, dict)
            and any(k in obj for k in ("resourceSpans", "resource_spans", "resourceLogs", "resource_logs"))
        )
    if not any_export and len(parsed) > 1 and any(error is not None for *_, error in parsed):
        at = (
            f"line {whole_error.lineno}, column {whole_error.colno}"
            if isinstance(whole_error, json.JSONDecodeError)
            else "document"
        )
        reading.reject(name, at, f"not JSON (cut off or damaged document?): {_reason(whole_error)}", text)
        return
    for lineno, raw, obj, error in parsed:
        if error is not None:
            reading.reject(name, f"line {lineno}", f"not JSON: {_reason(error)}", raw)
        else:
            _read_export(obj, reading, name, lineno, "", raw.removesuffix(b"\r"))


# ------------------------------------------------------------------------------------ building


def _json_content(value: Any) -> Any:
    """Content attributes are JSON inside a string on spans; parse them (else keep the string).

    Text that is not strict JSON (NaN, Infinity, numbers that overflow a double) stays a string.
    """
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value, parse_constant=_not_json, parse_float=_finite_float)
        except (ValueError, RecursionError):
            return value
    return value


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} overflows a double")
    return number


def _tokens(attrs: Mapping[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for column, names in TOKEN_ATTRIBUTES.items():
        for name in names:
            if name not in attrs or attrs[name] is None:
                continue
            value = attrs[name]
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            elif isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise _Bad(f"{name}: expected a token count, got {_short(value)}")
            if not 0 <= value <= _INT64_MAX:
                raise _Bad(f"{name}: {value} is not a token count")
            out[column] = value
            break
    cached = out.get("tokens_cache_read", 0) + out.get("tokens_cache_write", 0)
    if "tokens_in" in out and cached > out["tokens_in"]:
        # input that excludes its cached part (Anthropic API style, reported additively): the
        # journal's tokens_in includes cache reads and writes (OTel GenAI), so they are added
        out["tokens_in"] += cached
    return out


def _error_type(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    m = _CLASS_REPR.match(value)  # openai-v2 2.4b0 writes "<class 'openai.RateLimitError'>"
    return m.group(1) if m else value


def _user_text(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    texts = []
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "user":
            for p in m.get("parts") or []:
                if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("content"), str):
                    texts.append(p["content"])
            if isinstance(m.get("content"), str):
                texts.append(m["content"])
    return "\n".join(texts) if texts else None


def _tool_call_ids(messages: Any) -> Iterator[str]:
    """Ids of the tool calls a model's output messages request (GenAI parts or OpenAI tool_calls)."""
    if not isinstance(messages, list):
        return
    for m in messages:
        if not isinstance(m, dict):
            continue
        for p in [*(m.get("parts") or []), *(m.get("tool_calls") or [])]:
            if (
                isinstance(p, dict)
                and isinstance(p.get("id"), str)
                and p.get("type") in ("tool_call", "function", None)
            ):
                yield p["id"]


@dataclass
class _Trace:
    """One trace's spans with their tree: parents inside the export, depth, root, ancestry."""

    spans: dict[str, _Span]
    parent: dict[str, str | None] = field(default_factory=dict)
    depth: dict[str, int] = field(default_factory=dict)
    root: dict[str, str] = field(default_factory=dict)
    cycles: int = 0

    def __post_init__(self) -> None:
        for sid, s in self.spans.items():
            self.parent[sid] = s.parent_id if s.parent_id in self.spans and s.parent_id != sid else None
        for sid in sorted(self.spans):
            chain: list[str] = []
            on_chain: set[str] = set()
            cur: str | None = sid
            while cur is not None and cur not in self.depth:
                if cur in on_chain:  # a parent cycle (damaged export): cut it at the last link
                    self.parent[chain[-1]] = None
                    self.cycles += 1
                    break
                on_chain.add(cur)
                chain.append(cur)
                cur = self.parent[cur]
            for node in reversed(chain):
                p = self.parent[node]
                self.depth[node] = 0 if p is None else self.depth[p] + 1
                self.root[node] = node if p is None else self.root[p]

    def stream_key(self, sid: str) -> str:
        """The span id naming the stream of ``sid``: its root's id, or the id of the root's parent
        when that parent is missing from the export (children are exported before their parent, so
        a partial export's spans land in the stream the complete export gives them)."""
        top = self.spans[self.root[sid]]
        p = top.parent_id
        remote = top.flags is not None and top.flags & 0x300 == 0x300  # parent in another process
        if p is None or p == top.span_id or p in self.spans or remote:
            return top.span_id
        return p

    def ancestors(self, sid: str) -> Iterator[_Span]:
        p = self.parent[sid]
        while p is not None:
            yield self.spans[p]
            p = self.parent[p]

    def inherited(self, sid: str, key: str) -> Any:
        for s in (self.spans[sid], *self.ancestors(sid)):
            if isinstance(s.attrs.get(key), str) and s.attrs[key]:
                return s.attrs[key]
        return None

    def usage_below(self) -> set[str]:
        """Spans with a descendant that reports token usage."""
        below: set[str] = set()
        for sid in sorted(self.spans, key=lambda s: -self.depth[s]):
            p = self.parent[sid]
            if p is not None and (sid in below or _USAGE_KEYS & self.spans[sid].attrs.keys()):
                below.add(p)
        return below


def _check_text(row: Mapping[str, Any]) -> None:
    key = non_utf8_field(row)
    if key is not None:
        raise _Bad(f"{key}: text with a lone UTF-16 surrogate is not valid Unicode")


class _Builder:
    def __init__(self, reading: _Reading, options: ImportOptions) -> None:
        self.reading = reading
        self.stream_type = options.stream_type or STREAM_TYPE
        self.keyed: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.built: dict[tuple[str, str], tuple[str, _Trace]] = {}  # span -> (stream id, trace)
        self.open_spans = 0
        self.attached: set[str] = set()  # digests of the log records that became events
        self.orphans = 0
        self.cycles = 0

    def build(self) -> list[dict[str, Any]]:
        by_trace: dict[str, dict[str, _Span]] = defaultdict(dict)
        for (trace_id, span_id), s in self.reading.spans.items():
            by_trace[trace_id][span_id] = s
        for trace_id in sorted(by_trace):
            self._trace(trace_id, _Trace(by_trace[trace_id]))
        for log in sorted(self.reading.logs.values(), key=lambda g: g.digest):
            self._log(log)
        self.keyed.sort(key=lambda kr: kr[0])
        return [row for _, row in self.keyed]

    def _trace(self, trace_id: str, trace: _Trace) -> None:
        self.cycles += trace.cycles
        below = trace.usage_below()
        conversations: dict[str, set[str]] = defaultdict(set)
        requested: dict[str, tuple[int, str]] = {}  # tool call id -> (end ns, chat span) that asked for it
        for sid, s in trace.spans.items():
            if isinstance(c := s.attrs.get("gen_ai.conversation.id"), str) and c:
                conversations[trace.stream_key(sid)].add(c)
            if s.attrs.get("gen_ai.operation.name") in LLM_OPERATIONS and s.end_ns is not None:
                for call_id in _tool_call_ids(s.content("gen_ai.output.messages")):
                    if call_id not in requested or requested[call_id] < (s.end_ns, sid):
                        requested[call_id] = (s.end_ns, sid)
        for sid in sorted(trace.spans, key=lambda x: (trace.depth[x], x)):
            s = trace.spans[sid]
            key = trace.stream_key(sid)
            stream_id = f"{trace_id}-{key}"
            only = conversations[key]
            conversation = trace.inherited(sid, "gen_ai.conversation.id") or (
                next(iter(only)) if len(only) == 1 else None
            )
            try:
                rows = self._span_events(s, trace, stream_id, conversation, sid in below, requested)
            except (_Bad, RecursionError) as e:
                self.reading.rejections.append(
                    Rejection(s.file, s.where, _reason(e), text_of(json.dumps(s.raw, ensure_ascii=True, default=str)))
                )
                continue
            self.keyed.extend(rows)
            self.built[(trace_id, sid)] = (stream_id, trace)

    def _span_events(
        self,
        s: _Span,
        trace: _Trace,
        stream_id: str,
        conversation: str | None,
        usage_below: bool,
        requested: Mapping[str, tuple[int, str]],
    ) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        attrs = s.attrs
        op = attrs.get("gen_ai.operation.name")
        op = op if isinstance(op, str) and op else None
        start_type, end_type = event_types(op)
        is_llm = op in LLM_OPERATIONS
        tokens = _tokens(attrs)
        counted = bool(tokens) and (is_llm or not usage_below)
        request_model = _opt_str_attr(attrs, "gen_ai.request.model")
        response_model = _opt_str_attr(attrs, "gen_ai.response.model") or request_model
        tool_name = (
            _opt_str_attr(attrs, "gen_ai.tool.name") if op in TOOL_OPERATIONS or "gen_ai.tool.name" in attrs else None
        )
        call_id = _opt_str_attr(attrs, "gen_ai.tool.call.id")

        start_data: dict[str, Any] = {}
        end_data: dict[str, Any] = {}
        other: dict[str, Any] = {}
        for key, value in attrs.items():
            if key in _START_CONTENT:
                start_data[_START_CONTENT[key]] = s.content(key)
            elif key in _END_CONTENT:
                end_data[_END_CONTENT[key]] = s.content(key)
            else:
                other[key] = value
        if start_type == "user_message" and (text := _user_text(start_data.get("input_messages"))):
            start_data["text"] = text
        error_type = _error_type(attrs.get("error.type"))
        failed = s.status == "ERROR" or (s.status == "UNSET" and error_type is not None)
        exception = next((e for e in s.events if e["name"] == "exception"), None)
        error = None
        if failed:
            message = exception["attributes"].get("exception.message") if exception else None
            error = (
                s.status_message
                or (message if isinstance(message, str) and message else None)
                or error_type
                or "status ERROR"
            )
        if s.status != "UNSET":
            end_data["status"] = {"code": s.status, "message": s.status_message}
        if error_type:
            end_data["error_type"] = error_type
        if s.events:
            end_data["span_events"] = s.events

        # metadata and data describe this span alone (never other spans), so a grown export
        # imported again yields the same payloads: the journal refuses a known id with new content
        span_meta: dict[str, Any] = {"name": s.name, "kind": s.kind, "parent_span_id": s.parent_id}
        if s.parent_id is not None and s.parent_id not in trace.spans:
            self.orphans += 1
        for key, value in (("trace_state", s.trace_state), ("flags", s.flags), ("links", s.links)):
            if value:
                span_meta[key] = value
        metadata: dict[str, Any] = {"span": span_meta, "attributes": other, "resource": s.resource, "scope": s.scope}
        if s.end_ns is None:
            self.open_spans += 1

        start_id = derive_id("otlp", s.trace_id, s.span_id, "start")
        parent_start = derive_id("otlp", s.trace_id, s.parent_id, "start") if s.parent_id else None
        cause = parent_start
        if op in TOOL_OPERATIONS and call_id is not None and call_id in requested:
            end_ns, chat = requested[call_id]
            if end_ns <= s.start_ns and chat != s.span_id:
                cause = derive_id("otlp", s.trace_id, chat, "end")
        common: dict[str, Any] = {
            "stream_id": stream_id,
            "stream_type": self.stream_type,
            "source_type": op or "span",
            "correlation_id": conversation,
            "traceparent": f"00-{s.trace_id}-{s.span_id}-01",
            "trace_id": s.trace_id,
            "span_id": s.span_id,
            "tool_name": tool_name,
            "tool_call_id": call_id,
            "agent": trace.inherited(s.span_id, "gen_ai.agent.name"),
            "subject_id": trace.inherited(s.span_id, "user.id") or trace.inherited(s.span_id, "enduser.id"),
            "source": s.source,
        }
        depth = trace.depth[s.span_id]
        start = {
            **common,
            "event_id": start_id,
            "event_type": start_type,
            "occurred_at": _utc(s.start_ns),
            "causation_id": cause,
            "model": request_model if is_llm else None,
            "is_error": False,
            "data": canonical_json(start_data),
            "metadata": canonical_json(metadata),
        }
        _check_text(start)
        rows = [((s.start_ns, 0, depth, s.span_id), start)]
        if s.end_ns is not None:
            end = {
                **common,
                "event_id": derive_id("otlp", s.trace_id, s.span_id, "end"),
                "event_type": end_type,
                "occurred_at": _utc(s.end_ns),
                "causation_id": start_id,
                "model": response_model if is_llm or counted else None,
                "duration_ms": (s.end_ns - s.start_ns) / 1e6,
                "is_error": failed,
                "error": error,
                "data": canonical_json(end_data),
                "metadata": canonical_json(metadata),
                **(tokens if counted else {}),
            }
            _check_text(end)
            rows.append(((s.end_ns, 1, -depth, s.span_id), end))
        return rows

    def _log(self, log: _Log) -> None:
        target = self.built.get((log.trace_id or "", log.span_id or ""))
        if target is None:
            return
        stream_id, trace = target
        span = trace.spans[log.span_id or ""]
        ns = log.time_ns or span.end_ns or span.start_ns
        data: dict[str, Any] = {"attributes": log.attrs}
        if log.body is not None:
            data["body"] = log.body
        metadata: dict[str, Any] = {"resource": log.resource, "scope": log.scope, "span": {"name": span.name}}
        for key, value in (
            ("severity_number", log.severity_number),
            ("severity_text", log.severity_text),
            ("flags", log.flags),
        ):
            if value is not None:
                metadata[key] = value
        if log.time_ns is None:
            metadata["time_missing"] = True
        row = {
            "stream_id": stream_id,
            "stream_type": self.stream_type,
            "event_id": derive_id("otlp", span.trace_id, span.span_id, "log", log.digest[:32]),
            "event_type": "custom",
            "source_type": log.event_name or "log",
            "occurred_at": _utc(ns),
            "correlation_id": trace.inherited(span.span_id, "gen_ai.conversation.id"),
            "causation_id": derive_id("otlp", span.trace_id, span.span_id, "start"),
            "traceparent": f"00-{span.trace_id}-{span.span_id}-01",
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "agent": trace.inherited(span.span_id, "gen_ai.agent.name"),
            "is_error": (log.severity_number or 0) >= 17,
            "data": canonical_json(data),
            "metadata": canonical_json(metadata),
            "source": log.source,
        }
        try:
            _check_text(row)
        except _Bad as e:
            self.reading.rejections.append(
                Rejection(log.file, log.where, str(e), text_of(json.dumps(log.raw, ensure_ascii=True, default=str)))
            )
            return
        self.keyed.append(((ns, 2, trace.depth[span.span_id], span.span_id, log.digest), row))
        self.attached.add(log.digest)


def _opt_str_attr(attrs: Mapping[str, Any], key: str) -> str | None:
    value = attrs.get(key)
    return value if isinstance(value, str) and value else None


# ------------------------------------------------------------------------------------ importer


def _sniff_file(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return bool(_SNIFF.match(head.removeprefix(b"\xef\xbb\xbf")))


def _has_export_line(path: Path, limit: int = 1 << 20) -> bool:
    """Some line of the file's first ``limit`` bytes starts like an OTLP export (JSONL whose first
    line is damaged); a large JSON file of one line is not read whole."""
    try:
        with path.open("rb") as f:
            return any(_SNIFF.match(line) for line in f.read(limit).split(b"\n"))
    except OSError:
        return False


def otlp_files(path: str) -> tuple[list[Path], list[Path], list[str]]:
    """The files to read for ``path`` and, for a directory, the JSON files skipped as not OTLP and
    notes on the symlinks out of it that were not read."""
    p = read_path(path)
    if p.is_file():
        return [p], [], []
    files: list[Path] = []
    skipped: list[Path] = []
    found, links = files_below(p, lambda f: f.suffix.lower() in SUFFIXES, "/".join(SUFFIXES))
    for f in found:
        (files if _sniff_file(f) or _has_export_line(f) else skipped).append(f)
    return files, skipped, links


class OtlpImporter(Importer):
    name = "otlp"
    description = "OpenTelemetry OTLP/JSON traces and logs (GenAI conventions): file-exporter JSONL or one document"

    def sniff(self, path: str) -> bool:
        p = Path(path)
        try:
            if p.is_file():
                return _sniff_file(p)
            if p.is_dir():
                candidates = (f for f in p.rglob("*") if f.suffix.lower() in SUFFIXES and f.is_file())
                return any(_sniff_file(f) for f in islice(candidates, 200))
        except OSError:
            return False
        return False

    def batches(self, path: str, options: ImportOptions) -> Iterator[SourceBatch]:
        files, skipped, links = otlp_files(path)
        reading = _Reading()
        for file in files:
            _read_file(file, reading)
        builder = _Builder(reading, options)
        rows = builder.build()
        notes = [*links, *_notes(reading, builder, skipped, rows)]
        for i in range(0, max(len(rows), 1), BATCH_EVENTS):
            chunk = rows[i : i + BATCH_EVENTS]
            first = i == 0
            yield SourceBatch(
                pa.Table.from_pylist(chunk, schema=INPUT_SCHEMA),
                reading.rejections if first else [],
                reading.read if first else 0,
                notes if first else [],
            )


def _notes(reading: _Reading, builder: _Builder, skipped: list[Path], rows: list[dict[str, Any]]) -> list[str]:
    notes = []
    streams = len({r["stream_id"] for r in rows})
    traces = len({t for t, _ in reading.spans})
    attached = len(builder.attached)
    notes.append(
        f"otlp: {len(reading.spans)} spans in {traces} traces → {streams} streams; {attached} log records attached"
    )
    if skipped:
        shown = ", ".join(f.name for f in skipped[:5]) + (" …" if len(skipped) > 5 else "")
        notes.append(f"otlp: skipped {len(skipped)} JSON files that are not OTLP ({shown})")
    if reading.duplicate_spans:
        notes.append(
            f"otlp: {reading.duplicate_spans} spans appeared more than once (same ids and content) and were imported "
            "once (read counts every copy)"
        )
    if reading.duplicate_logs:
        notes.append(
            f"otlp: {reading.duplicate_logs} identical log records were imported once (read counts every copy)"
        )
    if builder.orphans:
        notes.append(
            f"otlp: {builder.orphans} spans have a parent span that is not in the export; they went to the stream "
            "named by that parent's id (complete the export and import again to fill in the parent)"
        )
    if builder.cycles:
        notes.append(f"otlp: {builder.cycles} parent cycles were cut (damaged span ids)")
    if builder.open_spans:
        notes.append(f"otlp: {builder.open_spans} spans have no end time; only their start events were imported")
    unlinked = [g for d, g in reading.logs.items() if d not in builder.attached]
    if unlinked:
        no_ctx = sum(1 for g in unlinked if not (g.trace_id and g.span_id))
        notes.append(
            f"otlp: {len(unlinked)} log records were not imported: {no_ctx} carry no trace/span id, "
            f"{len(unlinked) - no_ctx} point at spans not in this import (import traces and logs together: "
            "one directory, or one file holding both)"
        )
    return notes
