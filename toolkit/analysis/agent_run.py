"""The built-in agent-run aggregate: what a run did, cost and reached, for any imported journal.

It understands the canonical event types (AgentStore, OTLP, chat transcripts, the demo fleet)
and the pyeventsourcing/Evennia assistant topics (``AssistantCreated``, ``TickCompleted``,
``GoalCreated``/``GoalUpdated``/``GoalCompleted``, ``EmergencyStopTriggered``/``Cleared``,
``ConfigurationChanged``, ``AssistantArchived``; ``ToolExecuted`` arrives as ``tool_result``).

Rules (the Python reducer and the vectorised ``agent_run_states`` implement the same ones):

- tokens and cost are sums of the canonical columns (nulls count 0);
- ``tool_calls[tool]``: the number of ``tool_called`` events of the tool, or, for sources that
  record only results (Evennia's ``ToolExecuted``), of its ``tool_result`` events;
  ``tool_failures[tool]``: ``tool_result`` with ``is_error``, and ``error`` events naming a tool;
- ``llm_calls[model]``: one per ``llm_response``, and one per ``TickCompleted`` (the assistant's
  configured model);
- ``errors``: events with ``is_error``; ``consecutive_errors``: the trailing run of them;
- ``status``: ``archived`` once archived; ``aborted`` while an emergency stop is active or when the
  last decisive event is an ``error``; ``answered`` when it is an ``llm_response``, unless that
  response asks for tool calls (:func:`requests_tools`: the run waits for its tools); else ``running``.

>>> from toolkit.analysis.aggregates import Event
>>> s = AGENT_RUN.fold([Event.of("user_message", {"text": "hi"}, version=1),
...                     Event.of("tool_called", {}, version=2, tool_name="search"),
...                     Event.of("tool_result", {}, version=3, tool_name="search", is_error=True),
...                     Event.of("llm_response", {}, version=4, model="m", tokens_in=10, tokens_out=2)])
>>> s.status, s.tool_calls, s.tool_failures, s.llm_calls, s.tokens_in, s.errors, s.consecutive_errors
('answered', {'search': 1}, {'search': 1}, {'m': 1}, 10, 1, 0)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import polars as pl
from pydantic import BaseModel, ConfigDict

from toolkit.analysis.aggregates import EPOCH, Aggregate, Event, register_aggregate, to_us
from toolkit.engines import duckdb_engine
from toolkit.engines.queries import get_query
from toolkit.journal.schema import ARROW_SCHEMA
from toolkit.journal.store import Journal

ZERO: Final = Decimal(0)
UNKNOWN: Final = "unknown"
STATUSES: Final = ("running", "answered", "aborted", "archived")

# event type -> status it sets (when not archived and no emergency stop is active)
_DECISIVE: Final = {
    "user_message": "running",
    "plan_created": "running",
    "llm_request": "running",
    "tool_called": "running",
    "tool_result": "running",
    "TickCompleted": "running",
    "EmergencyStopCleared": "running",
    "AssistantCreated": "running",
    "llm_response": "answered",  # or running when it asks for tool calls (requests_tools)
    "error": "aborted",
}
#: finish reasons of a model response that asks for tool calls: OpenAI's ``finish_reason``,
#: Anthropic's ``stop_reason`` (``tool_use``), OpenTelemetry's ``gen_ai.response.finish_reasons``
#: (a list, imported as ``finish_reasons``). The SQL macro ``requests_tools`` (``duckdb_engine.MACROS``,
#: which the catalog's run queries call) and the column-wise states of state_rules list them too (tested).
TOOL_CALL_FINISH_REASONS: Final = ("tool_calls", "tool_use")


def requests_tools(data: Any) -> bool:
    """Whether an ``llm_response`` payload asks for tool calls: its ``finish_reason`` or
    ``stop_reason`` is one of :data:`TOOL_CALL_FINISH_REASONS`, its ``finish_reasons`` list holds
    one, or its ``tool_calls`` list is not empty. Such a response is no answer: the run waits for
    its tools (``running``), and a run cut off there (a crash, a kill) did not answer.

    >>> requests_tools({"finish_reason": "tool_calls", "tool_calls": [{"id": "c1"}]})
    True
    >>> requests_tools({"stop_reason": "tool_use"}), requests_tools({"finish_reasons": ["stop", "tool_calls"]})
    (True, True)
    >>> requests_tools({"finish_reason": "stop", "tool_calls": []}), requests_tools("tool_calls")
    (False, False)
    """
    if not isinstance(data, Mapping):
        return False
    if data.get("finish_reason") in TOOL_CALL_FINISH_REASONS or data.get("stop_reason") in TOOL_CALL_FINISH_REASONS:
        return True
    reasons, calls = data.get("finish_reasons"), data.get("tool_calls")
    if isinstance(reasons, list) and any(r in TOOL_CALL_FINISH_REASONS for r in reasons):
        return True
    return isinstance(calls, list) and len(calls) > 0


def _asks_for_tools(e: Event) -> bool:
    """:func:`requests_tools` of the event's payload, parsed only when its text can say so: every
    such payload names ``tool_calls`` or ``tool_use``, or escapes a character (``\\u005f``)."""
    text = e.data_json
    if isinstance(text, str) and "tool_" not in text and "\\" not in text:
        return False
    return requests_tools(e.data)


@dataclass(frozen=True)
class Goal:
    goal_id: str
    description: str | None = None
    status: str = "created"  # created | updated | <status the source gave> | completed
    priority: int | None = None
    parent_id: str | None = None


@dataclass(slots=True)
class AgentRunState:
    """The state of one agent run after some of its events."""

    version: int = 0
    events: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cache_read: int = 0
    tokens_cache_write: int = 0
    tokens_reasoning: int = 0
    cost_usd: Decimal = ZERO
    tools_called: dict[str, int] = field(default_factory=dict)  # tool_called events per tool
    tool_results: dict[str, int] = field(default_factory=dict)  # tool_result events per tool
    tool_failures: dict[str, int] = field(default_factory=dict)
    last_tool: str | None = None
    llm_calls: dict[str, int] = field(default_factory=dict)
    model: str | None = None
    plans: int = 0
    plan: list[str] = field(default_factory=list)
    goals: dict[str, Goal] = field(default_factory=dict)
    errors: int = 0
    consecutive_errors: int = 0
    emergency_stop: bool = False
    emergency_stop_reason: str | None = None
    ticks: int = 0
    status: str = "running"
    first_at_us: int | None = None
    last_at_us: int | None = None

    @property
    def tool_calls(self) -> dict[str, int]:
        """Calls per tool: tool_called events, or the results of tools never seen called."""
        out = dict(self.tool_results)
        out.update(self.tools_called)
        return {k: out[k] for k in sorted(out)}

    @property
    def first_at(self) -> dt.datetime | None:
        return None if self.first_at_us is None else EPOCH + dt.timedelta(microseconds=self.first_at_us)

    @property
    def last_at(self) -> dt.datetime | None:
        return None if self.last_at_us is None else EPOCH + dt.timedelta(microseconds=self.last_at_us)

    @property
    def goals_completed(self) -> int:
        return sum(1 for g in self.goals.values() if g.status == "completed")

    @property
    def tool_calls_total(self) -> int:
        return sum(self.tool_calls.values())

    @property
    def tool_failures_total(self) -> int:
        return sum(self.tool_failures.values())

    def copy(self) -> AgentRunState:
        return dataclasses.replace(
            self,
            tools_called=dict(self.tools_called),
            tool_results=dict(self.tool_results),
            tool_failures=dict(self.tool_failures),
            llm_calls=dict(self.llm_calls),
            plan=list(self.plan),
            goals=dict(self.goals),  # Goal is frozen
        )

    def summary(self) -> dict[str, Any]:
        """One flat row: what ``agent_run_states`` returns for the stream (JSON-able but for times)."""
        return {
            "version": self.version,
            "events": self.events,
            "status": self.status,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "tokens_cache_read": self.tokens_cache_read,
            "tokens_cache_write": self.tokens_cache_write,
            "tokens_reasoning": self.tokens_reasoning,
            "cost_usd": self.cost_usd,
            "llm_calls": self.llm_calls_total,
            "tool_calls": self.tool_calls_total,
            "tool_failures": self.tool_failures_total,
            "last_tool": self.last_tool,
            "model": self.model,
            "plans": self.plans,
            "goals": len(self.goals),
            "goals_completed": self.goals_completed,
            "errors": self.errors,
            "consecutive_errors": self.consecutive_errors,
            "emergency_stop": self.emergency_stop,
            "ticks": self.ticks,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "tools": _pairs(self.tool_calls),
            "tools_failed": _pairs(self.tool_failures),
            "models": _pairs(self.llm_calls),
        }

    @property
    def llm_calls_total(self) -> int:
        return sum(self.llm_calls.values())


def _pairs(d: dict[str, int]) -> list[dict[str, Any]]:
    return [{"name": k, "n": d[k]} for k in sorted(d)]


# ---------------------------------------------------------------------------- event models
# Only the assistant topics have models: their data drives the state. Canonical types are read
# from the envelope columns, so their free-form payloads need no model.


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class AssistantCreatedData(_Lenient):
    assistant_key: str | None = None
    config: dict[str, Any] = {}


class ConfigurationChangedData(_Lenient):
    key: str
    new_value: Any = None
    old_value: Any = None


class GoalCreatedData(_Lenient):
    goal_id: str
    description: str | None = None
    parent_id: str | None = None
    priority: int | None = None


class GoalUpdatedData(_Lenient):
    goal_id: str
    status: str | None = None
    priority: int | None = None


class GoalCompletedData(_Lenient):
    goal_id: str
    outcome: str | None = None


class EmergencyStopTriggeredData(_Lenient):
    reason: str | None = None
    consecutive_errors: int | None = None


EVENT_MODELS: Final[dict[str, type[BaseModel]]] = {
    "AssistantCreated": AssistantCreatedData,
    "ConfigurationChanged": ConfigurationChangedData,
    "GoalCreated": GoalCreatedData,
    "GoalUpdated": GoalUpdatedData,
    "GoalCompleted": GoalCompletedData,
    "EmergencyStopTriggered": EmergencyStopTriggeredData,
}


# ---------------------------------------------------------------------------- the reducer


def apply_event(s: AgentRunState, e: Event) -> AgentRunState:
    """Apply one event to the state, in place (the fold copies states it keeps)."""
    s.version = e.version
    s.events += 1
    t = e.occurred_us
    if s.first_at_us is None or t < s.first_at_us:
        s.first_at_us = t
    if s.last_at_us is None or t > s.last_at_us:
        s.last_at_us = t
    if e.tokens_in:
        s.tokens_in += e.tokens_in
    if e.tokens_out:
        s.tokens_out += e.tokens_out
    if e.tokens_cache_read:
        s.tokens_cache_read += e.tokens_cache_read
    if e.tokens_cache_write:
        s.tokens_cache_write += e.tokens_cache_write
    if e.tokens_reasoning:
        s.tokens_reasoning += e.tokens_reasoning
    if e.cost_usd is not None:
        s.cost_usd += e.cost_usd
    if e.model:
        s.model = e.model
    if e.is_error:
        s.errors += 1
        s.consecutive_errors += 1
    else:
        s.consecutive_errors = 0
    et = e.event_type
    if et == "tool_called" or et == "tool_result":
        tool = e.tool_name or UNKNOWN
        if e.tool_name:
            s.last_tool = tool
        if et == "tool_called":
            s.tools_called[tool] = s.tools_called.get(tool, 0) + 1
        else:
            s.tool_results[tool] = s.tool_results.get(tool, 0) + 1
            if e.is_error:
                s.tool_failures[tool] = s.tool_failures.get(tool, 0) + 1
    elif et == "llm_response":
        m = e.model or UNKNOWN
        s.llm_calls[m] = s.llm_calls.get(m, 0) + 1
    elif et == "plan_created":
        s.plans += 1
        steps = e.data.get("steps") if isinstance(e.data, dict) else None
        s.plan = [str(x) for x in steps] if isinstance(steps, list) else []
    elif et == "error":
        if e.tool_name:
            s.tool_failures[e.tool_name] = s.tool_failures.get(e.tool_name, 0) + 1
    elif et in _ASSISTANT:
        _ASSISTANT[et](s, e)
    status = _DECISIVE.get(et)
    if status == "answered" and _asks_for_tools(e):
        status = "running"
    if status is not None and s.status != "archived" and not s.emergency_stop:
        s.status = status
    return s


def _tick(s: AgentRunState, e: Event) -> None:
    s.ticks += 1
    m = s.model or UNKNOWN
    s.llm_calls[m] = s.llm_calls.get(m, 0) + 1


def _created(s: AgentRunState, e: Event) -> None:
    p: AssistantCreatedData | None = e.payload
    model = p.config.get("llm_model") if p is not None else None
    if isinstance(model, str) and model:
        s.model = model


def _config(s: AgentRunState, e: Event) -> None:
    p: ConfigurationChangedData | None = e.payload
    if p is not None and p.key == "llm_model" and isinstance(p.new_value, str) and p.new_value:
        s.model = p.new_value


def _goal_created(s: AgentRunState, e: Event) -> None:
    p: GoalCreatedData | None = e.payload
    if p is not None:
        s.goals[p.goal_id] = Goal(p.goal_id, p.description, "created", p.priority, p.parent_id)


def _goal_updated(s: AgentRunState, e: Event) -> None:
    p: GoalUpdatedData | None = e.payload
    if p is None:
        return
    g = s.goals.get(p.goal_id) or Goal(p.goal_id)
    s.goals[p.goal_id] = dataclasses.replace(
        g, status=p.status or "updated", priority=p.priority if p.priority is not None else g.priority
    )


def _goal_completed(s: AgentRunState, e: Event) -> None:
    p: GoalCompletedData | None = e.payload
    if p is not None:
        s.goals[p.goal_id] = dataclasses.replace(s.goals.get(p.goal_id) or Goal(p.goal_id), status="completed")


def _estop(s: AgentRunState, e: Event) -> None:
    p: EmergencyStopTriggeredData | None = e.payload
    s.emergency_stop = True
    s.emergency_stop_reason = p.reason if p is not None else None
    s.status = "aborted" if s.status != "archived" else s.status


def _estop_cleared(s: AgentRunState, e: Event) -> None:
    s.emergency_stop = False
    s.emergency_stop_reason = None


def _archived(s: AgentRunState, e: Event) -> None:
    s.status = "archived"


_ASSISTANT: Final = {
    "TickCompleted": _tick,
    "AssistantCreated": _created,
    "ConfigurationChanged": _config,
    "GoalCreated": _goal_created,
    "GoalUpdated": _goal_updated,
    "GoalCompleted": _goal_completed,
    "EmergencyStopTriggered": _estop,
    "EmergencyStopCleared": _estop_cleared,
    "AssistantArchived": _archived,
}


def state_to_dict(s: AgentRunState) -> dict[str, Any]:
    """JSON-able form (snapshots, diffs): decimals as strings, goals as dicts."""
    d = {f.name: getattr(s, f.name) for f in dataclasses.fields(s) if not f.name.endswith("_at_us")}
    d["cost_usd"] = format(s.cost_usd, "f")
    d["tool_calls"] = s.tool_calls  # derived: read back from tools_called and tool_results
    d["first_at"] = s.first_at.isoformat() if s.first_at else None
    d["last_at"] = s.last_at.isoformat() if s.last_at else None
    d["goals"] = {k: dataclasses.asdict(g) for k, g in s.goals.items()}
    d["plan"] = list(s.plan)
    return d


def state_from_dict(d: dict[str, Any]) -> AgentRunState:
    names = {f.name for f in dataclasses.fields(AgentRunState)}
    values = {k: v for k, v in d.items() if k in names}
    values["cost_usd"] = Decimal(values.get("cost_usd", "0"))
    values["goals"] = {k: Goal(**g) for k, g in (values.get("goals") or {}).items()}
    for k in ("tools_called", "tool_results", "tool_failures", "llm_calls"):
        values[k] = dict(values.get(k) or {})
    values["plan"] = list(values.get("plan") or [])
    for name in ("first_at", "last_at"):
        text = d.get(name)
        values[f"{name}_us"] = to_us(dt.datetime.fromisoformat(text)) if text else None
    return AgentRunState(**values)


AGENT_RUN: Final[Aggregate[AgentRunState]] = register_aggregate(Aggregate(
    name="agent_run",
    initial=AgentRunState,
    reducer=apply_event,
    events=EVENT_MODELS,
    copy=AgentRunState.copy,
    to_dict=state_to_dict,
    from_dict=state_from_dict,
    description="What an agent run did, cost and reached (tokens, cost, tools, LLM calls, goals, status).",
    depends_on=(sys.modules[__name__],),
))


# ---------------------------------------------------------------------------- every stream at once

_PAIR = pl.Struct({"name": pl.String(), "n": pl.Int64()})

RESULT_SCHEMA: Final = pl.Schema(
    {
        "stream_id": pl.String(),
        "version": pl.Int64(),
        "events": pl.Int64(),
        "status": pl.String(),
        "tokens_in": pl.Int64(),
        "tokens_out": pl.Int64(),
        "tokens_cache_read": pl.Int64(),
        "tokens_cache_write": pl.Int64(),
        "tokens_reasoning": pl.Int64(),
        "cost_usd": pl.Decimal(38, 9),  # a run's sum: past an event's Decimal(18, 9) (1e9 USD)
        "llm_calls": pl.Int64(),
        "tool_calls": pl.Int64(),
        "tool_failures": pl.Int64(),
        "last_tool": pl.String(),
        "model": pl.String(),
        "plans": pl.Int64(),
        "goals": pl.Int64(),
        "goals_completed": pl.Int64(),
        "errors": pl.Int64(),
        "consecutive_errors": pl.Int64(),
        "emergency_stop": pl.Boolean(),
        "ticks": pl.Int64(),
        "first_at": pl.Datetime("us", "UTC"),
        "last_at": pl.Datetime("us", "UTC"),
        "tools": pl.List(_PAIR),
        "tools_failed": pl.List(_PAIR),
        "models": pl.List(_PAIR),
    }
)


#: what the runs projection keeps besides the state so that a later catch-up can merge into it:
#: per-tool counts of calls, results and failures (``tools`` keeps calls, or results when a tool
#: has no calls: not additive) and whether the row came from the Python fold
_COUNTS = pl.Struct({"name": pl.String(), "called": pl.Int64(), "results": pl.Int64(), "failed": pl.Int64()})
#: Polars engine for the list building and merging here: on the few thousand rows of a catch-up the
#: in-memory engine took 12-14 ms where the default (streaming) took 18-36 ms
_SMALL: Final = "in-memory"
MERGE_SCHEMA: Final = pl.Schema({**RESULT_SCHEMA, "tool_counts": pl.List(_COUNTS), "folded": pl.Boolean()})


def agent_run_states(
    journal: Journal,
    stream_ids: Sequence[str] | None = None,
    *,
    files: Sequence[str] | None = None,
    mergeable: bool = False,
) -> pl.DataFrame:
    """The agent-run state at the head of every stream (or of ``stream_ids``): one row per stream.

    The canonical part of the state is additive or a "last value by version", so one DuckDB
    aggregation computes it for every stream at once (``queries/replay/agent_runs_by_stream.sql``);
    streams holding assistant topics (goals, ticks, emergency stops, configured models) are
    folded in Python by :data:`AGENT_RUN`. Both give the same row (tested). ``files``: the data
    files that hold every event of ``stream_ids`` when the caller knows them (new streams).
    ``mergeable``: the rows have the columns of :data:`MERGE_SCHEMA`, so that
    :func:`merge_states` can later add the state of newer events to them.
    """
    frame, names = _column_wise(journal, stream_ids, files=files)
    frame = _with_lists(frame.lazy(), names.lazy()).collect(engine=_SMALL)
    return _finish(journal, frame, MERGE_SCHEMA if mergeable else RESULT_SCHEMA)


def _finish(journal: Journal, frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Rows of ``schema`` from the queries' rows: streams with assistant topics folded in Python."""
    special = frame.filter(pl.col("special"))["stream_id"].to_list()
    out = frame.filter(~pl.col("special")).with_columns(
        pl.lit(0, dtype=pl.Int64).alias("goals"),
        pl.lit(0, dtype=pl.Int64).alias("goals_completed"),
        pl.lit(False).alias("emergency_stop"),
        pl.lit(0, dtype=pl.Int64).alias("ticks"),
        pl.lit(False).alias("folded"),
    )
    out = out.select(list(schema)).cast(dict(schema))  # type: ignore[arg-type]
    if special:
        out = pl.concat([out, _folded(journal, special, schema)]).sort("stream_id")
    return out


def merge_states(
    journal: Journal, old: pl.DataFrame, new_streams: Sequence[str], after: int, files: Sequence[str]
) -> pl.DataFrame:
    """Mergeable rows (see :func:`agent_run_states`) of every stream with events at positions after
    ``after``, all of which are in ``files``; ``old`` holds the rows of the streams that had events
    before, ``new_streams`` are the streams that start after ``after``.

    The queries compute the state of the new events alone for every stream. A new stream's row is
    that state. A continuing stream's state is merged into its old row: sums and per-tool/model
    counts add up, last values and the status come from the new events when they set them,
    trailing errors continue the old count when every new event failed. Streams folded in Python
    (old or new assistant topics), and streams without an old row, are computed again whole.
    """
    new, names = _column_wise(journal, None, files=files, after=after)
    fresh = pl.col("stream_id").is_in(list(new_streams))
    parts = [_finish(journal, _with_lists(new.lazy().filter(fresh), names.lazy().filter(fresh)).collect(engine=_SMALL), MERGE_SCHEMA)]
    new = new.filter(~fresh).rename({c: f"{c}_new" for c in new.columns if c != "stream_id"})
    both_all = old.join(new, on="stream_id", how="inner")
    unchanged = old.join(new, on="stream_id", how="anti")  # no newer events (not expected): kept as they are
    orphans = new.join(old, on="stream_id", how="anti")["stream_id"].to_list()  # no old row (not expected)
    refold = both_all.filter(pl.col("folded") | pl.col("special_new"))["stream_id"].to_list()
    both = both_all.lazy().filter(~pl.col("folded") & ~pl.col("special_new"))
    o = pl.col

    def n(column: str) -> str:  # the value from the new events
        return f"{column}_new"

    summed = ["events", "tokens_in", "tokens_out", "tokens_cache_read", "tokens_cache_write", "tokens_reasoning",
              "cost_usd", "llm_calls", "plans", "errors"]
    merged = both.select(
        "stream_id",
        o(n("version")).alias("version"),
        *[(o(c) + o(n(c))).alias(c) for c in summed],
        pl.when(o(n("status_set"))).then(o(n("status"))).otherwise(o("status")).alias("status"),
        pl.coalesce(n("last_tool"), "last_tool").alias("last_tool"),
        pl.coalesce(n("model"), "model").alias("model"),
        pl.when(o(n("last_ok")) > 0)
        .then(o(n("version")) - o(n("last_ok")))
        .otherwise(o("consecutive_errors") + o(n("version")) - o("version"))
        .alias("consecutive_errors"),
        pl.min_horizontal("first_at", n("first_at")).alias("first_at"),
        pl.max_horizontal("last_at", n("last_at")).alias("last_at"),
        pl.lit(False).alias("special"),
    )
    old_names = pl.concat(
        [
            both.select("stream_id", "tool_counts").explode("tool_counts").unnest("tool_counts")
            .with_columns(pl.lit(False).alias("is_llm")),
            both.select("stream_id", "models").explode("models").unnest("models")
            .select("stream_id", pl.lit(True).alias("is_llm"), "name", pl.col("n").alias("called"),
                    pl.lit(0, pl.Int64).alias("results"), pl.lit(0, pl.Int64).alias("failed")),
        ],
        how="diagonal",
    ).drop_nulls("name")
    counts = (
        pl.concat([old_names, names.lazy().join(both.select("stream_id"), on="stream_id")], how="diagonal")
        .group_by("stream_id", "is_llm", "name")
        .agg(pl.col("called", "results", "failed").sum())
    )
    parts += [
        _finish(journal, _with_lists(merged, counts).collect(engine=_SMALL), MERGE_SCHEMA),
        unchanged.select(list(MERGE_SCHEMA)).cast(dict(MERGE_SCHEMA)),  # type: ignore[arg-type]
    ]
    if refold or orphans:
        parts.append(agent_run_states(journal, refold + orphans, mergeable=True))
    return pl.concat(parts).sort("stream_id")


def _column_wise(
    journal: Journal, stream_ids: Sequence[str] | None, *, files: Sequence[str] | None = None, after: int | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The two queries' rows: per stream (without lists), and per stream, tool or model."""
    params = {"stream_ids": list(stream_ids) if stream_ids is not None else None, "after": after}
    session = stream_session(journal, stream_ids, files=files)
    try:
        frames = []
        for name in ("replay/agent_runs_by_stream", "replay/agent_run_names_by_stream"):
            q = get_query(name)
            frame = pl.from_arrow(session.query(q.sql, q.bind(params)))
            assert isinstance(frame, pl.DataFrame)
            frames.append(frame)
    finally:
        session.close()
    return frames[0], frames[1]


def _with_lists(frame: pl.LazyFrame, names: pl.LazyFrame) -> pl.LazyFrame:
    """``frame`` with the per-tool and per-model lists (sorted by name) and their totals from ``names``."""
    c = pl.col
    names = names.sort("stream_id", "name")
    tool = names.filter(~c("is_llm"))
    n = pl.when(c("called") > 0).then("called").otherwise("results")
    # one group_by per list, without filters inside the aggregation (that path runs per group)
    tools = tool.group_by("stream_id").agg(
        pl.struct("name", "called", "results", "failed").alias("tool_counts"),
        n.sum().alias("tool_calls"),
        c("failed").sum().alias("tool_failures"),
    )
    called = tool.filter(c("called") + c("results") > 0).group_by("stream_id").agg(
        pl.struct("name", n.alias("n")).alias("tools")
    )
    failed = tool.filter(c("failed") > 0).group_by("stream_id").agg(
        pl.struct("name", c("failed").alias("n")).alias("tools_failed")
    )
    models = names.filter(c("is_llm")).group_by("stream_id").agg(pl.struct("name", c("called").alias("n")).alias("models"))
    empty = {"tools": _PAIR, "tools_failed": _PAIR, "models": _PAIR, "tool_counts": _COUNTS}
    return (
        frame.join(tools, on="stream_id", how="left")
        .join(called, on="stream_id", how="left")
        .join(failed, on="stream_id", how="left")
        .join(models, on="stream_id", how="left")
        .with_columns(
            *[c(k).fill_null(pl.lit([], dtype=pl.List(t))) for k, t in empty.items()],
            c("tool_calls", "tool_failures").fill_null(0),
        )
    )


def _folded(journal: Journal, stream_ids: list[str], schema: pl.Schema) -> pl.DataFrame:
    from toolkit.analysis.replay import stream_events  # replay builds on this module

    return fold_run_states(((sid, stream_events(journal, sid)) for sid in sorted(stream_ids)), schema)


def fold_run_states(
    streams: Iterable[tuple[str, Sequence[Event]]], schema: pl.Schema = RESULT_SCHEMA
) -> pl.DataFrame:
    """The rows of :func:`agent_run_states` for streams whose events the caller holds (each
    stream's events in version order, from its first), folded in Python by :data:`AGENT_RUN`
    (the fold the vectorised states equal). verify-export replays the runs of a compliance
    bundle from the bundle's own events with it.

    >>> fold_run_states([("r", [Event.of("llm_response", {}, version=1, model="m", tokens_in=3)])]).select(
    ...     "stream_id", "status", "tokens_in", "llm_calls").rows()
    [('r', 'answered', 3, 1)]
    """
    extra = {"tool_counts": None, "folded": True} if "folded" in schema else {}
    rows = [{"stream_id": sid, **AGENT_RUN.fold(events).summary(), **extra} for sid, events in streams]
    return pl.DataFrame(rows, schema=schema)


def stream_session(
    journal: Journal, stream_ids: Sequence[str] | None, *, files: Sequence[str] | None = None
) -> duckdb_engine.Session:
    """A SQL session whose ``events`` view holds only the files that can hold ``stream_ids``.

    Files are pruned by the Delta log's per-file stream_id ranges; the queries still filter the
    rows. Catching up a few streams then reads a few files instead of the journal. ``files``
    (the files known to hold every event of ``stream_ids``) skips the pruning.
    """
    if files is None and stream_ids is None:
        return duckdb_engine.connect(journal, side_tables=False)
    if files is None:
        files = journal.file_paths(stream_ids=list(stream_ids or []))
    return duckdb_engine.connect(journal, extra_views={"events": (files, ARROW_SCHEMA)}, side_tables=False)
