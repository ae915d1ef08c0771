"""Agent-run state summaries for compliance bundles: one row per stream.

The state at the head of each run comes from the replay API
(``toolkit.analysis.agent_run.agent_run_states``: status, tokens, cost, calls, failures, model);
it is joined with what only the exported events say (agent, subject, the exported version range
and how the run ended).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from toolkit.analysis.agent_run import agent_run_states
from toolkit.journal.store import Journal

_LOCAL = ("stream_id", "agent", "subject_id", "outcome", "first_version", "last_version")


def summarise_runs(journal: Journal, stream_ids: Sequence[str], events: pl.DataFrame) -> pl.DataFrame:
    """One row per stream of ``stream_ids``; ``events`` are the exported events (any order).

    The run state (status, tokens, cost, tools, model) is given only for runs exported whole
    (``whole_run``): the state of a run the selection took part of would tell what the events
    left out say (another subject's tool calls, events outside the time range)."""
    local = local_run_summaries(events)
    heads = journal.heads()
    head = {s: heads[s].version for s in local.get_column("stream_id").to_list() if s in heads}
    mine = local.select(*_LOCAL, pl.col("tools").alias("tool_names"), pl.col("events").alias("_n")).with_columns(
        whole_run=(pl.col("first_version") == 1)
        & (pl.col("_n") == pl.col("last_version"))
        & (pl.col("last_version") == pl.col("stream_id").replace_strict(head, default=None, return_dtype=pl.Int64))
    ).drop("_n")
    if not stream_ids:
        return mine
    states = agent_run_states(journal, stream_ids=list(stream_ids))
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
                "cost_usd": pl.Decimal(18, 9),
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
        pl.col("cost_usd").sum().cast(pl.Decimal(18, 9)),
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
