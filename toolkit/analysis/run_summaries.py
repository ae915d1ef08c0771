"""Agent-run state summaries for compliance bundles: one row per stream.

The state at the head of each run comes from the replay API
(``toolkit.analysis.agent_run.agent_run_states``: status, tokens, cost, calls, failures, model);
it is joined with what only the exported events say (agent, subject, the exported version range
and how the run ended). ``summarise_exported_runs`` gives the same rows from the exported events
alone (verify-export checks a bundle's runs with it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import groupby

import polars as pl

from toolkit.analysis.agent_run import agent_run_states, fold_run_states
from toolkit.analysis.replay import events_from_table
from toolkit.journal.store import Journal

_LOCAL = ("stream_id", "agent", "subject_id", "outcome", "first_version", "last_version")


def summarise_runs(journal: Journal, stream_ids: Sequence[str], events: pl.DataFrame) -> pl.DataFrame:
    """One row per stream of ``stream_ids``; ``events`` are the exported events (any order).

    The run state (status, tokens, cost, tools, model) is given only for runs exported whole
    (``whole_run``): the state of a run the selection took part of would tell what the events
    left out say (another subject's tool calls, events outside the time range)."""
    heads = journal.heads()
    exported = events.get_column("stream_id").unique().to_list()
    mine = _with_whole_run(events, {s: heads[s].version for s in exported if s in heads})
    if not stream_ids:
        return mine
    return _with_states(mine, agent_run_states(journal, stream_ids=list(stream_ids)))


def summarise_exported_runs(events: pl.DataFrame, head_versions: Mapping[str, int]) -> pl.DataFrame:
    """What :func:`summarise_runs` gave for ``events`` when they were exported, from the events
    alone: ``head_versions`` are the streams' head versions then (a bundle's manifest records
    them). A run exported whole holds every event of its stream, so its state is replayed from
    them (``agent_run.fold_run_states``, the fold ``agent_run_states`` equals).
    """
    mine = _with_whole_run(events, head_versions)
    if events.height == 0:
        return mine
    whole = mine.filter(pl.col("whole_run")).get_column("stream_id").to_list()
    ordered = events_from_table(events.filter(pl.col("stream_id").is_in(whole)).sort("stream_id", "version").to_arrow())
    states = fold_run_states((sid, list(run)) for sid, run in groupby(ordered, key=lambda e: e.stream_id))
    return _with_states(mine, states)


def _with_whole_run(events: pl.DataFrame, head_versions: Mapping[str, int]) -> pl.DataFrame:
    """The local summaries, and whether each run is exported whole (its events are versions 1 to
    its head, every one of them)."""
    local = local_run_summaries(events)
    head = {s: head_versions[s] for s in local.get_column("stream_id").to_list() if s in head_versions}
    return (
        local.select(*_LOCAL, pl.col("tools").alias("tool_names"), pl.col("events").alias("_n"))
        .with_columns(
            whole_run=(pl.col("first_version") == 1)
            & (pl.col("_n") == pl.col("last_version"))
            & (pl.col("last_version") == pl.col("stream_id").replace_strict(head, default=None, return_dtype=pl.Int64))
        )
        .drop("_n")
    )


def _with_states(mine: pl.DataFrame, states: pl.DataFrame) -> pl.DataFrame:
    """The run state of the runs exported whole joined to their summaries (null for the others)."""
    whole = mine.filter(pl.col("whole_run")).get_column("stream_id").to_list()
    return mine.join(states.filter(pl.col("stream_id").is_in(whole)), on="stream_id", how="left", maintain_order="left")


def local_run_summaries(events: pl.DataFrame) -> pl.DataFrame:
    """The local fold: what a reader needs to know about each run at a glance.

    >>> import datetime as dt
    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> ev = pl.DataFrame({"stream_id": ["r", "r"], "version": [1, 2], "event_type": ["user_message", "error"],
    ...     "occurred_at": [t, t], "agent": ["a", "a"], "subject_id": ["u", "u"], "model": [None, None],
    ...     "tool_name": [None, None], "is_error": [False, True], "error": [None, "boom"],
    ...     "tokens_in": [None, None], "tokens_out": [None, None], "cost_usd": [None, None]},
    ...     schema_overrides={"model": pl.String, "tool_name": pl.String, "error": pl.String,
    ...     "tokens_in": pl.Int64, "tokens_out": pl.Int64, "cost_usd": pl.Decimal(18, 9)})
    >>> local_run_summaries(ev).select("stream_id", "events", "errors", "outcome").rows()
    [('r', 2, 1, 'ended with an error: boom')]
    """
    if events.height == 0:
        return pl.DataFrame(
            schema={
                "stream_id": pl.String,
                "agent": pl.String,
                "subject_id": pl.String,
                "first_at": pl.Datetime("us", "UTC"),
                "last_at": pl.Datetime("us", "UTC"),
                "events": pl.Int64,
                "first_version": pl.Int64,
                "last_version": pl.Int64,
                "llm_calls": pl.Int64,
                "tool_calls": pl.Int64,
                "errors": pl.Int64,
                "tools": pl.String,
                "models": pl.String,
                "tokens_in": pl.Int64,
                "tokens_out": pl.Int64,
                "cost_usd": pl.Decimal(38, 9),
                "last_event": pl.String,
                "outcome": pl.String,
            }
        )
    ordered = events.sort("stream_id", "version")
    out = ordered.group_by("stream_id", maintain_order=True).agg(
        pl.col("agent").drop_nulls().first(),
        pl.col("subject_id").drop_nulls().first(),
        pl.col("occurred_at").min().alias("first_at"),
        pl.col("occurred_at").max().alias("last_at"),
        pl.len().cast(pl.Int64).alias("events"),
        pl.col("version").min().alias("first_version"),
        pl.col("version").max().alias("last_version"),
        (pl.col("event_type") == "llm_response").sum().cast(pl.Int64).alias("llm_calls"),
        (pl.col("event_type") == "tool_called").sum().cast(pl.Int64).alias("tool_calls"),
        pl.col("is_error").sum().cast(pl.Int64).alias("errors"),
        pl.col("tool_name").drop_nulls().unique().sort().str.join(", ").alias("tools"),
        pl.col("model").drop_nulls().unique().sort().str.join(", ").alias("models"),
        pl.col("tokens_in").sum().cast(pl.Int64),
        pl.col("tokens_out").sum().cast(pl.Int64),
        pl.col("cost_usd").sum().cast(pl.Decimal(38, 9)),  # a sum: past Decimal(18, 9)'s 1e9 USD
        pl.col("event_type").last().alias("last_event"),
        pl.col("is_error").last().alias("_last_error"),
        pl.col("error").last().alias("_last_message"),
    )
    return out.with_columns(
        outcome=pl.when(pl.col("_last_error"))
        .then(pl.concat_str(pl.lit("ended with an error: "), pl.col("_last_message").fill_null("(no message)")))
        .when(pl.col("errors") > 0)
        .then(pl.concat_str(pl.lit("completed after "), pl.col("errors").cast(pl.String), pl.lit(" error(s)")))
        .otherwise(pl.lit("completed"))
    ).drop("_last_error", "_last_message")
