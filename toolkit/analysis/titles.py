"""One line of "what happened" per event, for chains, timelines and compliance reports.

Uses the replay API's explainers (``toolkit.analysis.explain.explain_event``) when they are
installed in this tree; until then a minimal local explainer built from the canonical columns.

>>> describe_event({"event_type": "tool_result", "tool_name": "shell", "is_error": True,
...                 "error": "connection refused", "data": "{}"})[0]
'tool_result shell failed: connection refused'
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

_SUMMARY_CHARS = 160


@cache
def _explainer() -> Callable[[dict[str, Any]], Any] | None:
    try:
        module = importlib.import_module("toolkit.analysis.explain")
    except ModuleNotFoundError:
        return None
    fn: Callable[[dict[str, Any]], Any] | None = getattr(module, "explain_event", None)
    return fn


def describe_event(row: Mapping[str, Any]) -> tuple[str, str]:
    """(title, summary) of one event row (a dict of canonical columns)."""
    explain = _explainer()
    if explain is not None:
        e = explain(dict(row))
        return str(e.title), str(e.summary)
    return _local_title(row), _local_summary(row)


def _local_title(row: Mapping[str, Any]) -> str:
    kind = str(row.get("event_type") or "event")
    what = row.get("tool_name") or row.get("model") or ""
    title = f"{kind} {what}".strip()
    if row.get("is_error"):
        title += " failed" + (f": {row['error']}" if row.get("error") else "")
    return title


def _local_summary(row: Mapping[str, Any]) -> str:
    text = row.get("data")
    if not isinstance(text, str):
        return ""
    try:
        value = json.loads(text)
    except ValueError:
        return text[:_SUMMARY_CHARS]
    if isinstance(value, dict):
        for key in ("text", "content", "message", "reason", "goal", "plan", "query"):
            if isinstance(value.get(key), str):
                return str(value[key])[:_SUMMARY_CHARS]
        parts = [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in list(value.items())[:4]]
        return ", ".join(parts)[:_SUMMARY_CHARS]
    return json.dumps(value, ensure_ascii=False)[:_SUMMARY_CHARS]
