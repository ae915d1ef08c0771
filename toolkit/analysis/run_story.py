"""One run told for a reader: its explained timeline and its state at two versions (``make demo``).

>>> from toolkit.journal import Journal
>>> j = Journal.in_memory()
>>> _ = j.append("r", [{"event_type": "user_message", "data": {"text": "hi"}},
...                    {"event_type": "tool_called", "tool_name": "t", "data": {}},
...                    {"event_type": "tool_result", "tool_name": "t", "error": "down", "data": {}},
...                    {"event_type": "llm_response", "model": "m", "data": {"text": "sorry"}}])
>>> s = story_of_run(j)
>>> (s.stream_id, s.versions, s.states.row(0))
('r', (3, 4), ('status', 'running', 'answered'))
>>> j.close()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import polars as pl

from toolkit.analysis.agent_run import agent_run_states
from toolkit.analysis.explain import short
from toolkit.analysis.replay import replay, state_at, stream_events
from toolkit.journal.store import Journal

FIELDS: Final = (
    "status",
    "events",
    "tool_calls",
    "tool_failures",
    "errors",
    "consecutive_errors",
    "llm_calls",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "last_tool",
)


@dataclass(frozen=True)
class RunStory:
    stream_id: str
    timeline: pl.DataFrame  # version, occurred_at, title, summary, tags
    versions: tuple[int, int]  # the first failure (or the middle) and the last version
    states: pl.DataFrame  # field, state at versions[0], state at versions[1]


def _cell(value: object) -> str:
    if isinstance(value, dict):
        return short(", ".join(f"{k} {v}" for k, v in value.items()), 70) or "-"
    return short(str(value), 70) if value is not None else "-"


def pick_run(journal: Journal, max_events: int = 40) -> str | None:
    """A short run that failed somewhere and still answered (else the shortest run)."""
    runs = agent_run_states(journal)
    if runs.height == 0:
        return None
    good = runs.filter(
        (pl.col("events") <= max_events) & (pl.col("errors") > 0) & (pl.col("status") == "answered")
    ).sort("events", "stream_id", descending=[True, False])
    pick = good if good.height else runs.sort("events", "stream_id")
    return str(pick["stream_id"][0])


def story_of_run(journal: Journal, stream_id: str | None = None) -> RunStory:
    """The explained timeline of ``stream_id`` (default: :func:`pick_run`) and two of its states."""
    sid = stream_id or pick_run(journal)
    if sid is None:
        raise LookupError("the journal has no streams")
    events = stream_events(journal, sid)
    last = events[-1].version
    first = events[0].version  # above 1 when a purge removed the start of the run
    first_error = next((e.version for e in events if e.is_error), max(first, last // 2))
    v1 = first_error if first_error < last else max(first, last - 1)
    a, b = state_at(journal, sid, version=v1), state_at(journal, sid)
    states = pl.DataFrame(
        {
            "field": list(FIELDS),
            f"v{v1}": [_cell(getattr(a, f)) for f in FIELDS],
            f"v{last}": [_cell(getattr(b, f)) for f in FIELDS],
        }
    )
    tl = replay(journal, sid).select("version", "occurred_at", "title", "summary", "tags")
    tl = tl.with_columns(pl.col("tags").list.join(","))
    return RunStory(sid, tl, (v1, last), states)
