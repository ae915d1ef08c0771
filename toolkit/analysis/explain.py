"""Explainers: event type → a title, a one-line summary and tags a non-engineer can read.

A registry maps an event type (the canonical ones, the topics the importers keep from
pyeventsourcing/Evennia, or a user's own) to a function of the event row. ``explain_event``
picks the explainer registered for the row's ``event_type``, then for its ``source_type``, and
falls back to a generic one, so every event gets an explanation.

>>> e = explain_event({"event_type": "tool_called", "tool_name": "search_flights", "data": '{"to": "BER"}'})
>>> e.title, e.summary, e.tags
('Tool called', 'search_flights(to=BER)', ('tool',))
>>> @register_explainer("refund_issued")
... def _refund(event: Mapping[str, Any]) -> Explanation:
...     return Explanation("Refund issued", f"{field(event, 'amount')} EUR", ("money",))
>>> explain_event({"event_type": "refund_issued", "data": '{"amount": 19.99}'}).summary
'19.99 EUR'
>>> unregister_explainer("refund_issued")
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from toolkit.analysis.agent_run import requests_tools

Explainer = Callable[[Mapping[str, Any]], "Explanation"]

SUMMARY_CHARS: Final = 160


@dataclass(frozen=True)
class Explanation:
    """What an event means, for a reader of the timeline."""

    title: str
    summary: str
    tags: tuple[str, ...] = ()


_REGISTRY: dict[str, Explainer] = {}


def register_explainer(event_type: str) -> Callable[[Explainer], Explainer]:
    """Decorator: use the function for events of ``event_type`` (or of that source topic).

    A later registration replaces an earlier one, so users override the defaults.
    """

    def deco(fn: Explainer) -> Explainer:
        _REGISTRY[event_type] = fn
        return fn

    return deco


def unregister_explainer(event_type: str) -> None:
    _REGISTRY.pop(event_type, None)


def registered_explainers() -> list[str]:
    return sorted(_REGISTRY)


def explain_event(event: Mapping[str, Any]) -> Explanation:
    """The explanation of one event row (canonical column names; data/metadata as JSON text).

    Explainers never raise on odd payloads: a failing explainer yields the generic explanation
    with the tag ``explainer-failed``.
    """
    et = str(event.get("event_type") or "")
    fn = _REGISTRY.get(et)
    if fn is None:
        st = event.get("source_type")
        if st:
            fn = _REGISTRY.get(str(st)) or _REGISTRY.get(_topic_tail(str(st)))
    if fn is None:
        return _generic(event)
    try:
        out = fn(event)
    except Exception as e:  # a user's explainer must not break a timeline
        g = _generic(event)
        return Explanation(g.title, f"{g.summary} [explainer failed: {type(e).__name__}: {e}]", (*g.tags, "explainer-failed"))
    if event.get("is_error") and "error" not in out.tags:
        out = Explanation(out.title, out.summary, (*out.tags, "error"))
    return out


# ---------------------------------------------------------------------------- helpers


def _topic_tail(source_type: str) -> str:
    """``assistant_model:AssistantAggregate.GoalCreated`` → ``GoalCreated``."""
    return source_type.rsplit(".", 1)[-1].rsplit(":", 1)[-1]


def payload(event: Mapping[str, Any]) -> Any:
    """The event's data, parsed (a dict, list, scalar; the raw text when it is not JSON)."""
    raw = event.get("data")
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def field(event: Mapping[str, Any], *path: str) -> Any:
    """A value inside the event's data (``None`` when absent)."""
    cur: Any = payload(event)
    for p in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(p)
    return cur


def short(value: Any, limit: int = SUMMARY_CHARS) -> str:
    """One line, at most ``limit`` characters."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _args(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={short(v, 40)}" for k, v in value.items())
    return short(value, 80)


def _tokens(event: Mapping[str, Any]) -> str:
    parts = []
    for col, label in (("tokens_in", "in"), ("tokens_out", "out"), ("tokens_cache_read", "cached")):
        v = event.get(col)
        if v:
            parts.append(f"{v:,} {label}")
    cost = event.get("cost_usd")
    if cost:
        parts.append(f"${Decimal(str(cost)).normalize():f}")
    return ", ".join(parts)


def _first(data: Any, *keys: str) -> Any:
    if isinstance(data, Mapping):
        for k in keys:
            if data.get(k) not in (None, "", [], {}):
                return data[k]
    return None


def _generic(event: Mapping[str, Any]) -> Explanation:
    et = str(event.get("event_type") or "event")
    title = et.replace("_", " ").strip().capitalize() if et.islower() else et
    data = payload(event)
    text = _first(data, "text", "content", "message", "summary", "reason") if isinstance(data, Mapping) else data
    tags: tuple[str, ...] = ("error",) if event.get("is_error") else ()
    return Explanation(title, short(event.get("error") or text or data), tags)


# ---------------------------------------------------------------------------- canonical types


@register_explainer("user_message")
def _user_message(event: Mapping[str, Any]) -> Explanation:
    data = payload(event)
    text = _first(data, "text", "content", "message") if isinstance(data, Mapping) else data
    return Explanation("User said", short(text), ("conversation",))


@register_explainer("plan_created")
def _plan_created(event: Mapping[str, Any]) -> Explanation:
    steps = field(event, "steps")
    if isinstance(steps, list):
        count = f"{len(steps)} step" + ("" if len(steps) == 1 else "s")
        return Explanation("Plan made", f"{count}: " + short(" → ".join(map(str, steps))), ("plan",))
    return Explanation("Plan made", short(payload(event)), ("plan",))


@register_explainer("llm_request")
def _llm_request(event: Mapping[str, Any]) -> Explanation:
    model = event.get("model") or "a model"
    data = payload(event)
    prompt = _first(data, "prompt", "text")
    extra = f" ({_tokens(event)})" if _tokens(event) else ""
    what = f": {short(prompt, 100)}" if prompt else ""
    return Explanation("Asked the model", f"{model}{extra}{what}", ("llm",))


@register_explainer("llm_response")
def _llm_response(event: Mapping[str, Any]) -> Explanation:
    model = event.get("model") or "the model"
    data = payload(event)
    calls = _first(data, "tool_calls")
    if isinstance(calls, list) and calls:
        names = [str(c.get("name") if isinstance(c, Mapping) else c) for c in calls]
        what = "wants to call " + ", ".join(names)
    elif requests_tools(data):
        what = "wants to call tools"
    else:
        what = short(_first(data, "text", "content", "answer") or "", 100)
    usage = _tokens(event)
    # a response asking for tool calls is no answer: the run waits for its tools (status running)
    title = "Model asked for tools" if requests_tools(data) else "Model answered"
    return Explanation(title, f"{model}: {what}" + (f" ({usage})" if usage else ""), ("llm",))


@register_explainer("tool_called")
def _tool_called(event: Mapping[str, Any]) -> Explanation:
    data = payload(event)
    tool = event.get("tool_name") or _first(data, "tool", "name") or "a tool"
    args = _first(data, "args", "arguments", "parameters", "input") if isinstance(data, Mapping) else None
    if args is None and isinstance(data, Mapping):
        args = {k: v for k, v in data.items() if k not in {"tool", "name", "attempt"}}
    return Explanation("Tool called", f"{tool}({_args(args)})", ("tool",))


@register_explainer("tool_result")
def _tool_result(event: Mapping[str, Any]) -> Explanation:
    data = payload(event)
    tool = event.get("tool_name") or _first(data, "tool_name", "tool") or "a tool"
    took = event.get("duration_ms")
    if took is None and isinstance(data, Mapping):
        took = data.get("execution_time_ms")
    timing = f" in {took:,.0f} ms" if isinstance(took, int | float) else ""
    if event.get("is_error") or (isinstance(data, Mapping) and data.get("success") is False):
        err = event.get("error") or _first(data, "error", "message")
        return Explanation("Tool failed", f"{tool}{timing}: {short(err, 120)}", ("tool", "error"))
    result = _first(data, "result", "output", "content") if isinstance(data, Mapping) else data
    if result is None and isinstance(data, Mapping):
        result = {k: v for k, v in data.items() if k not in {"error", "success", "tool_name", "execution_time_ms"}}
    return Explanation("Tool returned", f"{tool}{timing}: {short(result, 120)}", ("tool",))


@register_explainer("state_updated")
def _state_updated(event: Mapping[str, Any]) -> Explanation:
    data = payload(event)
    changes = _first(data, "changes") or data
    if isinstance(changes, Mapping):
        return Explanation("State changed", ", ".join(f"{k} = {short(v, 40)}" for k, v in changes.items()), ("state",))
    return Explanation("State changed", short(changes), ("state",))


@register_explainer("error")
def _error(event: Mapping[str, Any]) -> Explanation:
    data = payload(event)
    msg = event.get("error") or _first(data, "error", "message", "code") or short(data)
    where = event.get("tool_name") or event.get("model")
    return Explanation("Error", (f"{where}: " if where else "") + short(msg, 140), ("error",))


@register_explainer("custom")
def _custom(event: Mapping[str, Any]) -> Explanation:
    data = payload(event)
    kind = _first(data, "kind", "type", "name") or event.get("source_type") or "custom event"
    rest = {k: v for k, v in data.items() if k not in {"kind", "type", "name"}} if isinstance(data, Mapping) else data
    return Explanation(f"Custom: {short(kind, 40)}", short(rest), ("custom",))


# ---------------------------------------------------------------------------- pyeventsourcing / Evennia topics
# the importers keep the class name as event_type and the full topic as source_type


@register_explainer("AssistantCreated")
def _assistant_created(event: Mapping[str, Any]) -> Explanation:
    key = field(event, "assistant_key") or "assistant"
    model = field(event, "config", "llm_model")
    return Explanation("Assistant created", f"{key}" + (f" on {model}" if model else ""), ("lifecycle",))


@register_explainer("AssistantArchived")
def _assistant_archived(event: Mapping[str, Any]) -> Explanation:
    return Explanation("Assistant archived", short(field(event, "reason") or "archived"), ("lifecycle",))


@register_explainer("ConfigurationChanged")
def _configuration_changed(event: Mapping[str, Any]) -> Explanation:
    key, old, new = field(event, "key"), field(event, "old_value"), field(event, "new_value")
    return Explanation("Configuration changed", f"{key}: {short(old, 40)} → {short(new, 40)}", ("config",))


@register_explainer("GoalCreated")
def _goal_created(event: Mapping[str, Any]) -> Explanation:
    gid, desc, prio = field(event, "goal_id"), field(event, "description"), field(event, "priority")
    parent = field(event, "parent_id")
    tail = f" (priority {prio}" + (f", under {parent}" if parent else "") + ")" if prio is not None else ""
    return Explanation("Goal set", f"{gid}: {short(desc, 100)}{tail}", ("goal",))


@register_explainer("GoalUpdated")
def _goal_updated(event: Mapping[str, Any]) -> Explanation:
    data = payload(event)
    changes = {k: v for k, v in data.items() if k != "goal_id" and v is not None} if isinstance(data, Mapping) else {}
    what = ", ".join(f"{k} = {short(v, 40)}" for k, v in changes.items()) or "no change"
    return Explanation("Goal updated", f"{field(event, 'goal_id')}: {what}", ("goal",))


@register_explainer("GoalCompleted")
def _goal_completed(event: Mapping[str, Any]) -> Explanation:
    return Explanation("Goal completed", f"{field(event, 'goal_id')}: {short(field(event, 'outcome'), 120)}", ("goal",))


@register_explainer("TickCompleted")
def _tick_completed(event: Mapping[str, Any]) -> Explanation:
    n, action = field(event, "tick_number"), field(event, "action_taken")
    usage = _tokens(event)
    what = f"did {action}" if action else "did nothing"
    return Explanation("Tick", f"tick {n}: {what}" + (f" ({usage})" if usage else ""), ("tick", "llm"))


@register_explainer("ReflectionRecorded")
def _reflection(event: Mapping[str, Any]) -> Explanation:
    return Explanation("Reflection", short(field(event, "content")), ("memory",))


@register_explainer("EmergencyStopTriggered")
def _estop(event: Mapping[str, Any]) -> Explanation:
    return Explanation("EMERGENCY STOP", short(field(event, "reason") or "triggered"), ("safety", "error"))


@register_explainer("EmergencyStopCleared")
def _estop_cleared(event: Mapping[str, Any]) -> Explanation:
    who = field(event, "cleared_by")
    return Explanation("Emergency stop cleared", f"by {who}" if who else "cleared", ("safety",))


@register_explainer("ToolExecuted")
def _tool_executed(event: Mapping[str, Any]) -> Explanation:
    return _tool_result(event)
