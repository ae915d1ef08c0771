"""OpenAI-style chat transcripts → one stream per run, one event per message and per tool call.

Input: a ``.json`` file holding a list of runs (or one run), or a ``.jsonl``/``.ndjson`` file
with one run per line. A run is a list of messages, or an object
``{id, task, reward/outcome, metadata, created_at/timestamp, messages: [...]}``; a message is
``{role, content (text or a list of parts), tool_calls: [{id, type, function: {name, arguments}}],
tool_call_id, name}``.

Mapping (``docs/importers/chat.md``):

- stream: one run; ``stream_id`` = the run's ``id``, else ``<file>#<run number>`` where ``<file>``
  is the file's path below the directory imported (``day1/eval.json#1``; its name when the file
  itself is imported), so two files of one name in a directory are two streams, and importing the
  same directory (or file) again names the same streams; ``stream_type`` = ``chat_run``
  (``--stream-type`` overrides).
- ``system`` (and ``developer``) → ``custom`` with ``source_type`` = the role, never dropped;
  ``user`` → ``user_message``; ``assistant`` → ``llm_response`` (content, model, token usage)
  followed by one ``tool_called`` per tool call (``tool_name``, ``tool_call_id``, the parsed
  arguments as ``data``; arguments that are not JSON stay text, flagged
  ``metadata.arguments_unparsable``); ``tool`` → ``tool_result`` whose ``causation_id`` is the
  ``event_id`` of the ``tool_called`` with the same ``tool_call_id`` (a tool message without one
  is kept, flagged ``metadata.orphan``). Other roles → ``custom``. ``source_type`` is the role.
- run-level fields (everything but ``messages``) are kept on the event of the run's first
  message as ``metadata.run``. An event never depends on which other messages were rejected
  (a fixed message imports later without changing the others).
- times: a message's own ``created_at``/``timestamp``; else the run's time plus the event's index
  in milliseconds (``metadata.time = "run"``); else the import time plus the index in
  milliseconds (``metadata.time = "synthetic"``). A stated time that is not one (no time zone,
  not a time) is never replaced: that message (or run) is rejected with the reason. Event ids never depend on the import time:
  ``derive_id("chat", stream_id, message index, call index)``, so importing again adds nothing.

>>> ChatImporter().sniff("notes.txt")
False
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from toolkit.errors import EventValidationError
from toolkit.ingest.base import (
    Importer,
    ImportOptions,
    Rejection,
    SourceBatch,
    derive_id,
    files_below,
    notes_only,
    read_path,
    rows_table,
    text_of,
)
from toolkit.journal.prepare import INPUT_SCHEMA, normalise_event

STREAM_TYPE: Final = "chat_run"
SUFFIXES: Final = (".json", ".jsonl", ".ndjson")
_ROLES: Final = {"user": "user_message", "assistant": "llm_response", "tool": "tool_result", "function": "tool_result"}
_TIME_KEYS: Final = ("created_at", "timestamp", "time", "created")
_SNIFF_BYTES: Final = 1 << 20


def chat_files(path: str) -> tuple[list[tuple[Path, str]], list[str]]:
    """(file, name) of the transcript files of ``path`` and notes on the symlinks out of a directory
    that were not read. ``name`` names the file's runs without an id: the file's path below the
    directory imported (``day1/eval.json``), or its name when the file itself is imported."""
    p = read_path(path)
    if p.is_file():
        return [(p, p.name)], []
    found, notes = files_below(p, lambda f: f.suffix in SUFFIXES, "/".join(SUFFIXES))
    files = []
    for f in found:
        if _looks_like_chat(f):
            files.append((f, f.relative_to(p).as_posix()))
        else:
            notes.append(f"{f}: not read: it does not look like chat transcripts")
    return files, notes


def _is_run(value: Any) -> bool:
    if isinstance(value, dict):
        return isinstance(value.get("messages"), list)
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value[:3])


def _looks_like_chat(p: Path) -> bool:
    try:
        with p.open("rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError:
        return False
    text = head.decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    if p.suffix in (".jsonl", ".ndjson"):  # any line of the head: a damaged first line hides nothing
        for line in text.split("\n"):
            try:
                if line.strip() and _is_run(json.loads(line)):
                    return True
            except (ValueError, RecursionError):
                continue
        return False
    try:
        doc: Any = json.loads(text)
    except ValueError:  # larger than the head: judge by its opening and the keys it shows
        opening = re.match(r"(?:\[\s*){1,2}\{|\{", text) is not None
        return opening and re.search(r'"messages"\s*:\s*\[|\{\s*"role"\s*:', text) is not None
    if isinstance(doc, list) and doc and _is_run(doc):
        return True
    if isinstance(doc, list) and doc:
        return _is_run(doc[0])
    return _is_run(doc)


class ChatImporter(Importer):
    name = "chat"
    description = "OpenAI-style chat transcripts: a JSON list of runs or JSONL, one run per line"

    def sniff(self, path: str) -> bool:
        p = Path(path)
        if p.is_dir():  # a directory of transcripts (other formats' directories are sniffed first)
            candidates = files_below(p, lambda f: f.suffix in SUFFIXES)[0][:50]
            return bool(candidates) and all(_looks_like_chat(f) for f in candidates)
        return p.is_file() and p.suffix in SUFFIXES and _looks_like_chat(p)

    def batches(self, path: str, options: ImportOptions) -> Iterator[SourceBatch]:
        now = dt.datetime.now(dt.UTC)
        stream_type = options.stream_type or STREAM_TYPE
        files, notes = chat_files(path)
        yield from notes_only(notes)
        for file, name in files:
            yield _file_batch(file, now, stream_type, name)


def _runs(file: Path, rejections: list[Rejection]) -> Iterator[tuple[str, int, Any, str | bytes]]:
    """(location, run number, run, raw text) of every record in the file."""
    where = str(file)
    if file.suffix in (".jsonl", ".ndjson"):
        with file.open("rb") as f:
            number = 0
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                number += 1
                try:
                    run = json.loads(raw)
                except (ValueError, RecursionError) as e:
                    rejections.append(Rejection(where, f"line {lineno}", f"not JSON: {e}", text_of(raw)))
                    continue
                yield f"line {lineno}", number, run, raw
        return
    raw_doc = file.read_bytes()
    try:
        doc = json.loads(raw_doc)
    except (ValueError, RecursionError) as e:
        rejections.append(Rejection(where, "file", f"not JSON: {e}", text_of(raw_doc)))
        return
    if isinstance(doc, dict) or _is_run(doc):
        yield "run 1", 1, doc, raw_doc
        return
    if not isinstance(doc, list):
        rejections.append(Rejection(where, "file", "not a list of chat runs", text_of(raw_doc)))
        return
    for number, run in enumerate(doc, start=1):
        yield f"run {number}", number, run, _dump(run)


def _dump(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (ValueError, RecursionError):
        return repr(value)


def _file_batch(file: Path, now: dt.datetime, stream_type: str, name: str | None = None) -> SourceBatch:
    rejections: list[Rejection] = []
    rows: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for location, number, run, raw in _runs(file, rejections):
        try:
            events, bad = run_events(run, file, number, location, now, stream_type, name)
        except RecursionError:
            rejections.append(Rejection(str(file), location, "nested too deeply", text_of(raw)))
            continue
        except ValueError as e:  # not a run at all
            rejections.append(Rejection(str(file), location, str(e), text_of(raw)))
            continue
        if events:
            sid = events[0]["stream_id"]
            if sid in seen:
                rejections.append(
                    Rejection(str(file), location, f"run id {sid!r} was already used at {seen[sid]}", text_of(raw))
                )
                continue
            seen[sid] = location
        rows.extend(events)
        rejections.extend(bad)
    read = len(rows) + len(rejections)  # records: every message and tool call, and unreadable runs
    table, unstorable = rows_table(rows, INPUT_SCHEMA, "chat")
    return SourceBatch(table, [*rejections, *unstorable], read)


def _run_parts(run: Any) -> tuple[dict[str, Any], list[Any]]:
    if isinstance(run, list):
        return {}, run
    if isinstance(run, dict) and isinstance(run.get("messages"), list):
        return {k: v for k, v in run.items() if k != "messages"}, run["messages"]
    got = type(run).__name__ if not isinstance(run, dict) else "an object without a messages list"
    raise ValueError(f"not a chat run: expected a list of messages or an object with messages, got {got}")


class _BadTime(ValueError):
    """A time a run or message states but that is not one (the message is the reason)."""


def _time(value: Any, key: str) -> dt.datetime | None:
    """A time the transcript states: ISO text with an offset, or unix seconds/milliseconds; None
    for null. A stated time that cannot be used raises ``_BadTime``: it is never replaced.

    >>> _time("2026-11-03T14:02:11Z", "created_at").isoformat()
    '2026-11-03T14:02:11+00:00'
    >>> _time("2026-11-03T14:02:11", "created_at")
    Traceback (most recent call last):
    ...
    toolkit.ingest.chat._BadTime: created_at: timestamp has no time zone ('2026-11-03T14:02:11')
    """
    if value is None:
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000 if abs(value) > 1e11 else value
            return dt.datetime.fromtimestamp(seconds, dt.UTC)
        if isinstance(value, str):
            text = value.strip()
            ts = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
            if ts.tzinfo is None or ts.utcoffset() is None:
                raise _BadTime(f"{key}: timestamp has no time zone ({_short(value)})")
            return ts.astimezone(dt.UTC)
    except (OverflowError, OSError):
        raise _BadTime(f"{key}: out of range ({_short(value)})") from None
    except _BadTime:
        raise
    except ValueError:
        if isinstance(value, str):
            raise _BadTime(f"{key}: not an ISO 8601 time or unix seconds ({_short(value)})") from None
        raise _BadTime(f"{key}: out of range ({_short(value)})") from None
    raise _BadTime(f"{key}: expected an ISO 8601 time or unix seconds, got {type(value).__name__}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _first_time(obj: dict[str, Any]) -> dt.datetime | None:
    """The time under the first of ``_TIME_KEYS`` present; raises ``_BadTime`` if it is not one."""
    for key in _TIME_KEYS:
        if key in obj:
            return _time(obj[key], key)
    return None


def run_events(
    run: Any,
    file: Path,
    number: int,
    location: str,
    now: dt.datetime,
    stream_type: str,
    name: str | None = None,
) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """The canonical rows of one run and the messages of it that could not become events;
    ``name`` (default: the file's name) names the stream of a run without an id."""
    fields, messages = _run_parts(run)
    run_id = fields.get("id", fields.get("run_id"))
    stream_id = (
        str(run_id)
        if isinstance(run_id, str | int) and not isinstance(run_id, bool) and str(run_id)
        else (f"{name or file.name}#{number}")
    )
    run_time = _first_time(fields)  # a bad one rejects the run (``_BadTime`` is a ValueError)
    base, time_kind = (run_time, "run") if run_time is not None else (now, "synthetic")
    model = fields.get("model")
    if model is None and isinstance(fields.get("metadata"), dict):
        model = fields["metadata"].get("model")
    where = str(file)
    rows: list[dict[str, Any]] = []
    rejections: list[Rejection] = []
    calls: dict[str, str] = {}  # tool_call_id -> event_id of its tool_called
    call_names: dict[str, str | None] = {}
    index = 0  # event index within the run (time offsets)

    def add(event: dict[str, Any], msg_index: int, call_index: int, msg: dict[str, Any], at: str) -> str | None:
        nonlocal index
        try:
            own = _first_time(msg)
        except _BadTime as e:
            rejections.append(Rejection(where, at, str(e), text_of(_dump(msg))))
            return None
        meta = event.setdefault("metadata", {})
        if own is not None:
            occurred, meta["time"] = own, "message"
        else:
            try:
                occurred, meta["time"] = base + dt.timedelta(milliseconds=index), time_kind
            except OverflowError:
                rejections.append(Rejection(where, at, "the run's time is out of range", text_of(_dump(msg))))
                return None
        event_id = derive_id("chat", stream_id, msg_index, call_index)
        if (msg_index, call_index) == (0, 0):  # the first message, whatever else is rejected
            meta["run"] = fields
        event.update(
            stream_id=stream_id,
            stream_type=stream_type,
            event_id=event_id,
            occurred_at=occurred,
            source=f"chat:{file}:{at}",
        )
        try:
            row = normalise_event(event, len(rows), now)
        except EventValidationError as e:
            reason = str(e).split("\n", 1)[0].split(": ", 1)[-1]
            rejections.append(Rejection(where, at, reason, text_of(_dump(msg))))
            return None
        except OverflowError:
            rejections.append(Rejection(where, at, "time out of range", text_of(_dump(msg))))
            return None
        rows.append(row)
        index += 1
        return event_id

    for m, msg in enumerate(messages):
        at = f"{location}, message {m + 1}"
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or not msg["role"]:
            reason = (
                "a message must be an object with a role"
                if isinstance(msg, dict)
                else (f"a message must be an object, got {type(msg).__name__}")
            )
            rejections.append(Rejection(where, at, reason, text_of(_dump(msg))))
            continue
        role = msg["role"]
        content = msg.get("content")
        extra = {k: v for k, v in msg.items() if k not in ("role", "content", "tool_calls", "usage", "function_call")}
        if role == "assistant":
            event: dict[str, Any] = {
                "event_type": "llm_response",
                "source_type": role,
                "data": {"content": content, **extra},
            }
            msg_model = msg.get("model", model)
            if isinstance(msg_model, str):
                event["model"] = msg_model
            event.update(_usage(msg.get("usage")))
            add(event, m, 0, msg, at)
            response_id = derive_id("chat", stream_id, m, 0)  # an id, even while the response is rejected
            tool_calls = msg.get("tool_calls") or []
            if isinstance(msg.get("function_call"), dict):  # the legacy single call
                tool_calls = (
                    [*tool_calls, {"id": None, "type": "function", "function": msg["function_call"]}]
                    if isinstance(tool_calls, list)
                    else tool_calls
                )
            if not isinstance(tool_calls, list):
                rejections.append(Rejection(where, at, "tool_calls must be a list", text_of(_dump(msg))))
                continue
            for c, call in enumerate(tool_calls, start=1):
                call_at = f"{at}, tool call {c}"
                if not isinstance(call, dict):
                    rejections.append(Rejection(where, call_at, "a tool call must be an object", text_of(_dump(call))))
                    continue
                fn = call.get("function")
                function: dict[str, Any] = fn if isinstance(fn, dict) else {}
                name = function.get("name") if isinstance(function.get("name"), str) else None
                call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
                data, meta = _arguments(function.get("arguments"))
                meta.update({k: v for k, v in call.items() if k not in ("id", "function")})
                tool_event: dict[str, Any] = {
                    "event_type": "tool_called",
                    "source_type": "tool_call",
                    "tool_name": name,
                    "tool_call_id": call_id,
                    "causation_id": response_id,
                    "data": data,
                    "metadata": meta,
                }
                add(tool_event, m, c, msg, call_at)
                # the call is in the run even while its event is rejected: its result's content (orphan
                # or not) and causation must not change when the call is fixed and imported later
                key = call_id if call_id is not None else f"function:{name}"
                calls[key], call_names[key] = derive_id("chat", stream_id, m, c), name
        elif role in ("tool", "function"):
            call_id = msg.get("tool_call_id") if isinstance(msg.get("tool_call_id"), str) else None
            key = call_id if call_id is not None else f"function:{msg.get('name')}"
            cause = calls.get(key)
            result: dict[str, Any] = {
                "event_type": "tool_result",
                "source_type": role,
                "tool_call_id": call_id,
                "tool_name": call_names.get(key) or (msg.get("name") if isinstance(msg.get("name"), str) else None),
                "causation_id": cause,
                "data": {"content": content, **extra},
                "metadata": {} if cause is not None else {"orphan": True},
            }
            add(result, m, 0, msg, at)
        else:
            event_type = _ROLES.get(role, "custom")
            add({"event_type": event_type, "source_type": role, "data": {"content": content, **extra}}, m, 0, msg, at)
    return rows, rejections


def _arguments(arguments: Any) -> tuple[Any, dict[str, Any]]:
    """Tool-call arguments as data: parsed JSON; text that is not JSON is kept as text, flagged."""
    if not isinstance(arguments, str):
        return arguments, {}
    try:
        return json.loads(arguments), {}
    except (ValueError, RecursionError) as e:
        return arguments, {"arguments_unparsable": True, "arguments_error": str(e)}


def _usage(usage: Any) -> dict[str, Any]:
    """Usage → token columns with OTel semantics (cache tokens part of tokens_in, reasoning of tokens_out).

    OpenAI (``prompt_tokens`` / ``input_tokens`` with ``*_tokens_details.cached_tokens``) already
    counts cached tokens in the input. Anthropic's Messages usage (``input_tokens`` next to
    ``cache_read_input_tokens`` / ``cache_creation_input_tokens``) does not: its input excludes
    them, so they are added to ``tokens_in``. Counts are passed on as given; ``normalise_event``
    rejects a negative or fractional count (the message is rejected, not the field dropped).

    >>> _usage({"input_tokens": 50, "cache_read_input_tokens": 900, "cache_creation_input_tokens": 50, "output_tokens": 7})
    {'tokens_in': 1000, 'tokens_out': 7, 'tokens_cache_read': 900, 'tokens_cache_write': 50}
    >>> _usage({"prompt_tokens": 1000, "prompt_tokens_details": {"cached_tokens": 900}, "completion_tokens": 7})
    {'tokens_in': 1000, 'tokens_out': 7, 'tokens_cache_read': 900}
    """
    if not isinstance(usage, dict):
        return {}
    out: dict[str, Any] = {}

    def take(column: str, value: Any) -> None:
        if value is not None:
            out[column] = value

    take("tokens_in", usage.get("prompt_tokens", usage.get("input_tokens")))
    take("tokens_out", usage.get("completion_tokens", usage.get("output_tokens")))
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
    if isinstance(details, dict):
        take("tokens_cache_read", details.get("cached_tokens"))
    out_details = usage.get("completion_tokens_details") or usage.get("output_tokens_details")
    if isinstance(out_details, dict):
        take("tokens_reasoning", out_details.get("reasoning_tokens"))
    additive = {"cache_read_input_tokens": "tokens_cache_read", "cache_creation_input_tokens": "tokens_cache_write"}
    if "prompt_tokens" not in usage and any(usage.get(k) is not None for k in additive):
        parts = [usage.get(k) for k in ("input_tokens", *additive)]
        if all(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0) for v in parts):
            out["tokens_in"] = sum(v for v in parts if v is not None)
        for key, column in additive.items():
            take(column, usage.get(key))
    return out
