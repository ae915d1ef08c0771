"""The built-in invariants written in Polars, and plain-Python references of every built-in.

The SQL built-ins live in ``queries/invariants/`` (``budget``, ``latency``, ``exactly_once``,
``tool_result_pairing``, ``journal_integrity``); the two here need per-stream sequences that read
more naturally as Polars: ``no_tool_failure_loop`` and ``confirmation_before_write``.

``REFERENCES`` holds, for each built-in, a plain Python loop over event rows (dicts in position
order) yielding the same per-event verdicts ``(stream_id, version, holds, message)``
(``ref_journal_integrity`` also takes the journal's purge records, ``read_removals``). Tests check
vectorised == Python on fixture journals, and ``bench/bench_regrade.py`` times them as the
baseline.

>>> sorted(REFERENCES)  # doctest: +NORMALIZE_WHITESPACE
['budget', 'confirmation_before_write', 'exactly_once', 'journal_integrity', 'latency',
 'no_tool_failure_loop', 'tool_result_pairing']
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, Final

import polars as pl

from toolkit.analysis.rules import decimal_param, polars_rule, python_rule
from toolkit.journal.retention import Removals

# clear affirmatives, and the negations that override them ("yes, but don't send it yet"), written
# with a straight or a typographic apostrophe (phones and editors turn ' into ’)
DEFAULT_CONFIRM: Final = (
    r"(?i)\b(yes|yep|yeah|yup|confirm(ed|s)?|go ahead|proceed|do it|approved?|ok(ay)?|sure|please do|sounds good)\b"
)
DEFAULT_REJECT: Final = (
    r"(?i)(\b(no|nope|not|never|cancel|stop|wait|hold (on|off)|don['’]?t|do not|doesn['’]?t|isn['’]?t)\b|n['’]t\b)"
)


@polars_rule(
    "no_tool_failure_loop",
    "The same tool does not fail again with the same arguments right after failing (a retry loop).",
    severity="warning",
    params="times BIGINT = 2",
    check=lambda p: None if p["times"] >= 1 else f"times must be at least 1, not {p['times']}",
    columns=("event_type", "tool_name", "tool_call_id", "is_error", "data"),
    event_types=("tool_called", "tool_result"),
)
def no_tool_failure_loop(events: pl.LazyFrame, p: dict[str, Any]) -> pl.LazyFrame:
    """Tool results in stream order; a failure that repeats the previous result's failing call
    (same tool, same argument text) extends a streak; a streak of ``times`` failures breaks the rule.
    The tool is the one the matched call named (importers often leave it off results), else the
    result's own.

    Arguments are compared by a 64-bit hash of the call's data text; a result finds its call by
    (stream, tool_call_id): the first such call, if it came before the result. Everything after one sort by (stream, position) is plain column
    arithmetic: no per-group windows.
    """
    calls = (
        events.filter(pl.col("event_type") == "tool_called", pl.col("tool_call_id").is_not_null())
        .group_by("stream_id", "tool_call_id")
        .agg(
            args=pl.col("data").sort_by("position").first().hash(),
            call_tool=pl.col("tool_name").sort_by("position").first(),
            called_at=pl.col("position").min(),
        )
    )
    answered = pl.col("called_at") < pl.col("position")
    results = (
        events.filter(pl.col("event_type") == "tool_result")
        .select("stream_id", "version", "position", "tool_name", "tool_call_id", "is_error")
        .join(calls, on=["stream_id", "tool_call_id"], how="left")
        .with_columns(
            args=pl.when(answered).then(pl.col("args")),
            tool_name=pl.coalesce(pl.when(answered).then(pl.col("call_tool")), pl.col("tool_name")),
        )
        .sort("stream_id", "position")
        .with_row_index("i")
    )
    same_stream = (pl.col("stream_id") == pl.col("stream_id").shift(1)).fill_null(False)
    same = (
        same_stream
        & pl.col("is_error")
        & pl.col("is_error").shift(1).fill_null(False)
        & (pl.col("tool_name") == pl.col("tool_name").shift(1)).fill_null(False)
        & (pl.col("args") == pl.col("args").shift(1)).fill_null(False)
    )
    start = pl.when(~pl.col("same")).then(pl.col("i")).forward_fill()
    streak = results.with_columns(same=same).with_columns(
        streak=pl.when(pl.col("is_error")).then(pl.col("i") - start + 1).otherwise(0)
    )
    broken = pl.col("is_error") & (pl.col("streak") >= p["times"])
    return streak.select(
        "stream_id",
        "version",
        holds=~broken,
        message=pl.when(broken).then(
            pl.format("tool {} failed {} times in a row with the same arguments", pl.col("tool_name"), pl.col("streak"))
        ),
    )


@polars_rule(
    "confirmation_before_write",
    "A state-changing tool is called only after an explicit confirmation in the latest user message.",
    severity="critical",
    params=(
        "tools VARCHAR[] = NULL, "
        f"confirm_pattern VARCHAR = {DEFAULT_CONFIRM}, reject_pattern VARCHAR = {DEFAULT_REJECT}"
    ),
    columns=("event_type", "tool_name", "idempotency_key", "data"),
    event_types=("tool_called", "user_message"),
)
def confirmation_before_write(events: pl.LazyFrame, p: dict[str, Any]) -> pl.LazyFrame:
    """``tools`` (default: every call carrying an idempotency_key, i.e. a side effect) must follow a
    user message matching ``confirm_pattern`` and not ``reject_pattern`` (regexes over its text).

    The patterns run once per user message; the verdict is carried forward to the calls after it
    (one sort by (stream, position), then a forward fill that restarts with each stream).
    """
    is_user = pl.col("event_type") == "user_message"
    is_call = pl.col("event_type") == "tool_called"
    writes = (
        is_call & pl.col("tool_name").is_in(list(p["tools"]))
        if p["tools"]
        else is_call & pl.col("idempotency_key").is_not_null()
    )
    verdict = (  # 1 confirmed, 0 not, -1 no user message yet in this stream
        pl.when(is_user)
        .then(
            (
                pl.col("data").str.contains(p["confirm_pattern"])
                & ~pl.col("data").str.contains(p["reject_pattern"])
            ).cast(pl.Int8)
        )
        .when(pl.col("stream_id") != pl.col("stream_id").shift(1).fill_null(""))
        .then(pl.lit(-1, pl.Int8))
    )
    frame = (
        events.filter(is_user | writes)
        .select("stream_id", "version", "position", "event_type", "tool_name", "data", "idempotency_key")
        .sort("stream_id", "position")
        .with_columns(last_user=verdict.forward_fill())
        .filter(writes)
    )
    confirmed = pl.col("last_user") == 1
    return frame.select(
        "stream_id",
        "version",
        holds=confirmed,
        message=pl.when(~confirmed).then(
            pl.when(pl.col("last_user") == -1)
            .then(pl.format("{} called with no user message before it", pl.col("tool_name")))
            .otherwise(pl.format("{} called without a confirmation in the latest user message", pl.col("tool_name")))
        ),
    )


@python_rule(
    "budget_state",
    "The replayed run's cost (and optionally tokens) stays within budget: budget, judged on state.",
    severity="error",
    params="max_cost_usd DOUBLE = 5, max_tokens BIGINT = NULL",
    monotone=True,
)
def budget_state(state: Any, p: dict[str, Any]) -> bool | str:
    """The Python twin of the SQL ``budget`` rule (tests check both find the same streams)."""
    if state.cost_usd > decimal_param(p["max_cost_usd"]):
        return f"cumulative cost ${state.cost_usd} exceeds ${p['max_cost_usd']}"
    if p["max_tokens"] is not None and state.tokens_in + state.tokens_out > p["max_tokens"]:
        return f"cumulative tokens {state.tokens_in + state.tokens_out} exceed {p['max_tokens']}"
    return True


@python_rule(
    "error_streak",
    "A run never piles up more than max_errors error events in a row (it should stop or escalate).",
    severity="warning",
    params="max_errors BIGINT = 2",
)
def error_streak(state: Any, p: dict[str, Any]) -> bool | str:
    if state.consecutive_errors > p["max_errors"]:
        return f"{state.consecutive_errors} errors in a row (last tool {state.last_tool})"
    return True


# ---------------------------------------------------------------------- plain-Python references

Verdict = tuple[str, int, bool, str | None]
Reference = Callable[[Iterable[Mapping[str, Any]], dict[str, Any]], Iterator[Verdict]]


def _by_stream(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r["stream_id"]].append(r)
    return out


def ref_budget(rows: Iterable[Mapping[str, Any]], p: dict[str, Any]) -> Iterator[Verdict]:
    cost: dict[str, Decimal] = defaultdict(Decimal)
    tokens: dict[str, int] = defaultdict(int)
    limit, max_tokens = decimal_param(p["max_cost_usd"]), p["max_tokens"]
    for r in rows:
        s = r["stream_id"]
        cost[s] += r["cost_usd"] or 0
        tokens[s] += (r["tokens_in"] or 0) + (r["tokens_out"] or 0)
        ok = cost[s] <= limit and (max_tokens is None or tokens[s] <= max_tokens)
        yield s, r["version"], ok, None if ok else "over budget"


def ref_latency(rows: Iterable[Mapping[str, Any]], p: dict[str, Any]) -> Iterator[Verdict]:
    for r in rows:
        if r["duration_ms"] is None or r["event_type"] not in ("tool_result", "llm_response"):
            continue
        bound = p["max_llm_ms"] if r["event_type"] == "llm_response" else p["max_tool_ms"]
        ok = r["duration_ms"] <= bound
        yield r["stream_id"], r["version"], ok, None if ok else "too slow"


def ref_exactly_once(rows: Iterable[Mapping[str, Any]], p: dict[str, Any]) -> Iterator[Verdict]:
    seen: set[str] = set()
    for r in rows:
        key = r["idempotency_key"]
        if key is None:
            if r["event_type"] == "tool_called":
                yield r["stream_id"], r["version"], True, None
            continue
        ok = key not in seen
        seen.add(key)
        yield r["stream_id"], r["version"], ok, None if ok else "key reused"


def ref_tool_result_pairing(rows: Iterable[Mapping[str, Any]], p: dict[str, Any]) -> Iterator[Verdict]:
    for sid, events in _by_stream(rows).items():
        tools = [r for r in events if r["event_type"] in ("tool_called", "tool_result")]
        calls: dict[str, int] = defaultdict(int)
        results: dict[str, int] = defaultdict(int)
        total_results: dict[str, int] = defaultdict(int)
        for r in tools:
            if r["event_type"] == "tool_result" and r["tool_call_id"] is not None:
                total_results[r["tool_call_id"]] += 1
        for r in tools:
            cid = r["tool_call_id"]
            if cid is None:
                yield sid, r["version"], False, "no id"
                continue
            if r["event_type"] == "tool_called":
                ok = calls[cid] == 0 and total_results[cid] - results[cid] == 1
                calls[cid] += 1
            else:
                ok = calls[cid] == 1 and results[cid] == 0
                results[cid] += 1
            yield sid, r["version"], ok, None if ok else "unpaired"


def ref_journal_integrity(
    rows: Iterable[Mapping[str, Any]], p: dict[str, Any], removals: Removals | None = None
) -> Iterator[Verdict]:
    """``removals``: what the journal's purges recorded (:func:`~toolkit.journal.retention.read_removals`;
    None: no purge): a stream may start at a first kept version, and a cause a purge removed is no
    unknown cause."""
    rows = list(rows)
    starts: set[tuple[str, int]] = set()
    removed_ids: set[str] = set()
    unrecorded: dict[str, int] = {}
    if removals is not None:
        starts = {(s, v) for s, v in removals.kept.iter_rows()}
        removed_ids = set(removals.ids.get_column("event_id").to_list())
        unrecorded = {s: v for s, v, _ in removals.unrecorded.iter_rows()}
    uses: dict[str, int] = defaultdict(int)
    first_position: dict[str, int] = {}
    for r in rows:
        uses[r["event_id"]] += 1
        first_position.setdefault(r["event_id"], r["position"])
    last: dict[str, int] = {}
    for r in rows:
        s, v = r["stream_id"], r["version"]
        cause = r["causation_id"]
        cause_at = first_position.get(cause) if cause is not None else None
        if s not in last and (s, v) in starts:
            last[s] = v - 1  # the purges removed the versions before
        gone = (
            cause is not None
            and cause_at is None
            and (cause in removed_ids or (s in unrecorded and v >= unrecorded[s]))
        )
        ok = (
            v == last.get(s, 0) + 1
            and uses[r["event_id"]] == 1
            and (cause is None or (cause_at is not None and cause_at < r["position"])
                 or (cause_at is None and (p["allow_unknown_causes"] or gone)))
        )
        last[s] = v
        yield s, v, ok, None if ok else "integrity"


def ref_no_tool_failure_loop(rows: Iterable[Mapping[str, Any]], p: dict[str, Any]) -> Iterator[Verdict]:
    for sid, events in _by_stream(rows).items():
        calls: dict[str | None, tuple[str, str | None]] = {}
        prev: tuple[bool, str | None, str | None] | None = None
        streak = 0
        for r in events:
            if r["event_type"] == "tool_called":
                calls.setdefault(r["tool_call_id"], (r["data"], r["tool_name"]))
            elif r["event_type"] == "tool_result":
                call = calls.get(r["tool_call_id"]) if r["tool_call_id"] is not None else None
                a, tool = (call[0], call[1] or r["tool_name"]) if call is not None else (None, r["tool_name"])
                same = (
                    prev is not None and r["is_error"] and a is not None and tool is not None
                    and prev == (True, tool, a)
                )
                streak = streak + 1 if same else (1 if r["is_error"] else 0)
                ok = not (r["is_error"] and streak >= p["times"])
                prev = (bool(r["is_error"]), tool, a)
                yield sid, r["version"], ok, None if ok else "loop"


def ref_confirmation_before_write(rows: Iterable[Mapping[str, Any]], p: dict[str, Any]) -> Iterator[Verdict]:
    confirm, reject = re.compile(p["confirm_pattern"].removeprefix("(?i)"), re.I), re.compile(
        p["reject_pattern"].removeprefix("(?i)"), re.I
    )
    last_user: dict[str, str] = {}
    for r in rows:
        s = r["stream_id"]
        if r["event_type"] == "user_message":
            last_user[s] = r["data"]
        elif r["event_type"] == "tool_called":
            write = r["tool_name"] in p["tools"] if p["tools"] else r["idempotency_key"] is not None
            if write:
                text = last_user.get(s)
                ok = text is not None and bool(confirm.search(text)) and not reject.search(text)
                yield s, r["version"], ok, None if ok else "unconfirmed"


REFERENCES: Final[dict[str, Reference]] = {
    "budget": ref_budget,
    "latency": ref_latency,
    "exactly_once": ref_exactly_once,
    "tool_result_pairing": ref_tool_result_pairing,
    "journal_integrity": ref_journal_integrity,
    "no_tool_failure_loop": ref_no_tool_failure_loop,
    "confirmation_before_write": ref_confirmation_before_write,
}

REFERENCE_COLUMNS: Final = (
    "stream_id", "version", "position", "event_id", "event_type", "tool_name", "tool_call_id", "is_error",
    "data", "idempotency_key", "causation_id", "cost_usd", "tokens_in", "tokens_out", "duration_ms",
)
