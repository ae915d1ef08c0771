"""Evaluate a rule: per-event verdicts, or per-stream failures, for each kind of rule.

SQL rules run in the sandboxed DuckDB session as a subquery of a fixed wrapper (values bound,
never pasted); Polars rules run over ``scan_events`` ordered by position; Python rules fold the
replayed aggregate state of each stream and ask the rule after every event.

A *failure* row summarises one failing stream: its first failing event (version, position,
time, id, type), the message there, how many events fail, and the first few failing versions.
An event fails when any verdict a rule gives it does not hold: a rule that returns two rows for
one event (a join in a SQL rule, say) still counts it, and lists its version, once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import polars as pl
import pyarrow as pa

from toolkit.analysis.rules import REQUIRED_COLUMNS, Rule
from toolkit.engines.duckdb_engine import Session
from toolkit.engines.polars_engine import scan_events
from toolkit.errors import QueryError, QueryTimeoutError, RuleDefinitionError
from toolkit.journal.schema import COST, TIMESTAMP
from toolkit.journal.store import Journal

EVIDENCE_VERSIONS: Final = 10

FAILURE_SCHEMA: Final = pa.schema(
    [
        ("stream_id", pa.string()),
        ("stream_type", pa.string()),
        ("version", pa.int64()),
        ("position", pa.int64()),
        ("occurred_at", TIMESTAMP),
        ("event_id", pa.string()),
        ("event_type", pa.string()),
        ("message", pa.string()),
        ("failing_events", pa.int64()),
        ("failing_versions", pa.list_(pa.int64())),
        ("last_failing_version", pa.int64()),
    ]
)

_INFO_COLUMNS: Final = ("stream_id", "stream_type", "version", "position", "occurred_at", "event_id", "event_type")


@dataclass(frozen=True)
class Selection:
    """Which streams to grade: those with an event matching every given filter (``until`` exclusive).

    Selected streams are graded whole: a rule's verdict at an event depends on what came before.
    """

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    stream_types: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    streams: tuple[str, ...] = ()

    @property
    def everything(self) -> bool:
        return not (self.since or self.until or self.stream_types or self.agents or self.streams)

    def params(self) -> dict[str, Any]:
        return {
            "_sel_since": self.since,
            "_sel_until": self.until,
            "_sel_types": list(self.stream_types) or None,
            "_sel_agents": list(self.agents) or None,
            "_sel_streams": list(self.streams) or None,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "stream_types": list(self.stream_types),
            "agents": list(self.agents),
            "streams": list(self.streams),
        }


SELECTED_STREAMS: Final = """
SELECT DISTINCT stream_id FROM events
WHERE ($_sel_since::TIMESTAMPTZ IS NULL OR occurred_at >= $_sel_since::TIMESTAMPTZ)
  AND ($_sel_until::TIMESTAMPTZ IS NULL OR occurred_at < $_sel_until::TIMESTAMPTZ)
  AND ($_sel_types::VARCHAR[] IS NULL OR list_contains($_sel_types::VARCHAR[], stream_type))
  AND ($_sel_agents::VARCHAR[] IS NULL OR agent IN (SELECT unnest($_sel_agents::VARCHAR[])))
  AND ($_sel_streams::VARCHAR[] IS NULL OR stream_id IN (SELECT unnest($_sel_streams::VARCHAR[])))
"""


def selected_stream_ids(session: Session, selection: Selection) -> list[str] | None:
    """The selected stream ids (None: every stream)."""
    if selection.everything:
        return None
    return sorted(session.query(SELECTED_STREAMS, selection.params()).column("stream_id").to_pylist())


def count_streams(session: Session, selection: Selection) -> int:
    if selection.everything:
        sql = "SELECT CAST(count(DISTINCT stream_id) AS BIGINT) AS n FROM events"
        return int(session.query(sql).column("n")[0].as_py())
    sql = f"SELECT CAST(count(*) AS BIGINT) AS n FROM ({SELECTED_STREAMS})"  # noqa: S608 - fixed text
    return int(session.query(sql, selection.params()).column("n")[0].as_py())


# ---------------------------------------------------------------------- SQL rules


def check_sql_rule(session: Session, rule: Rule, bound: Mapping[str, Any]) -> bool:
    """Raise naming what is missing unless the rule returns the required columns; True if it has ``message``."""
    assert rule.sql is not None
    try:
        schema = session.query(f"SELECT * FROM ({rule.sql}) LIMIT 0", bound).schema  # noqa: S608
    except QueryTimeoutError:  # it runs, but slowly: not a definition error
        raise
    except QueryError as e:
        raise RuleDefinitionError(
            f"rule {rule.name} ({rule.origin}) does not run: {e.message}", hint=e.hint, rule=rule.name
        ) from e
    columns = schema.names
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise RuleDefinitionError(
            f"rule {rule.name} ({rule.origin}) does not return the column(s) {', '.join(missing)}; "
            f"it returns {', '.join(columns) or 'nothing'}",
            hint="a SQL rule returns one row per event with stream_id, version, holds (and optionally message)",
            rule=rule.name,
            missing=missing,
        )
    holds = schema.field("holds").type
    if not (pa.types.is_boolean(holds) or pa.types.is_null(holds)):
        raise _not_boolean(rule, str(holds), "end it with a comparison (e.g. failures = 0 AS holds)")
    return "message" in columns


def _not_boolean(rule: Rule, dtype: str, how: str) -> RuleDefinitionError:
    """A rule's holds column is no boolean: 0/1 or text would be read as a verdict nobody wrote."""
    return RuleDefinitionError(
        f"rule {rule.name} ({rule.origin}) returns holds as {dtype}, not a boolean",
        hint=f"holds is true, false or null (no verdict); {how}",
        rule=rule.name,
    )


def sql_failures(session: Session, rule: Rule, bound: Mapping[str, Any], selection: Selection) -> pa.Table:
    """Per failing stream: the first failing event and counts (one DuckDB query, all streams at once)."""
    has_message = check_sql_rule(session, rule, bound)
    message = "message" if has_message else "CAST(NULL AS VARCHAR)"
    scope = "" if selection.everything else f"AND stream_id IN ({SELECTED_STREAMS})"
    sql = f"""
WITH verdict AS (SELECT stream_id, version, holds, {message} AS message FROM ({rule.sql})),
failing AS (
    SELECT stream_id, min(version) AS version, CAST(count(DISTINCT version) AS BIGINT) AS failing_events,
           arg_min(message, version) AS message,
           list(DISTINCT version ORDER BY version)[1:{EVIDENCE_VERSIONS}] AS failing_versions,
           max(version) AS last_failing_version
    FROM verdict WHERE holds = false {scope}
    GROUP BY stream_id
)
SELECT e.stream_id, e.stream_type, f.version, e.position, e.occurred_at, e.event_id, e.event_type,
       f.message, f.failing_events, f.failing_versions, f.last_failing_version
FROM failing AS f JOIN events AS e ON e.stream_id = f.stream_id AND e.version = f.version
ORDER BY e.stream_id
"""  # noqa: S608 - fixed text around the rule's own SQL; values are bound
    params = {**bound, **({} if selection.everything else selection.params())}
    return session.query(sql, params).cast(FAILURE_SCHEMA)


def sql_prefix_verdicts(
    session: Session, rule: Rule, bound: Mapping[str, Any], stream_id: str, version: int
) -> list[tuple[int, bool, str | None]]:
    """(version, holds, message) of one stream's events up to ``version``, as if nothing later existed.

    Every other stream stays visible (rules may look across streams); the stream's events after
    ``version`` are hidden from the rule.
    """
    message = "message" if check_sql_rule(session, rule, bound) else "CAST(NULL AS VARCHAR)"
    sql = f"""
WITH events AS (SELECT * FROM events WHERE NOT (stream_id = $_bisect_stream AND version > $_bisect_version))
SELECT version, holds, {message} AS message FROM ({rule.sql})
WHERE stream_id = $_bisect_stream AND holds IS NOT NULL
ORDER BY version
"""  # noqa: S608 - fixed text around the rule's own SQL; values are bound
    table = session.query(sql, {**bound, "_bisect_stream": stream_id, "_bisect_version": version})
    return list(
        zip(*(table.column(c).to_pylist() for c in ("version", "holds", "message")), strict=True)
    )


def sql_global_verdicts(
    session: Session, rule: Rule, bound: Mapping[str, Any], position: int
) -> list[tuple[int, bool, str | None]]:
    """(position, holds, message) of a global rule over the journal up to ``position`` (time order)."""
    message = "message" if check_sql_rule(session, rule, bound) else "CAST(NULL AS VARCHAR)"
    sql = f"""
WITH events AS (SELECT * FROM events WHERE position <= $_bisect_position),
verdict AS (SELECT stream_id, version, holds, {message} AS message FROM ({rule.sql}) WHERE holds IS NOT NULL)
SELECT e.position, v.holds, v.message FROM verdict AS v JOIN events AS e USING (stream_id, version)
ORDER BY e.position
"""  # noqa: S608 - fixed text around the rule's own SQL; values are bound
    table = session.query(sql, {**bound, "_bisect_position": position})
    return list(zip(*(table.column(c).to_pylist() for c in ("position", "holds", "message")), strict=True))


# ---------------------------------------------------------------------- Polars rules


def polars_verdicts(
    journal: Journal,
    rule: Rule,
    bound: dict[str, Any],
    *,
    stream_ids: Sequence[str] | None = None,
    prefix: tuple[str, int] | None = None,
    up_to_position: int | None = None,
) -> pl.LazyFrame:
    """stream_id, version, holds, message of every event the rule speaks about (lazy).

    ``prefix`` (stream, version) hides that stream's events after that version, as if nothing
    later existed, and leaves every other stream visible (``sql_prefix_verdicts``: rules may look
    across streams). ``stream_ids`` restricts what the rule sees: only for rules that cannot.
    """
    events = scan_rule_events(journal, rule, stream_ids=stream_ids)
    return polars_verdicts_of(events, rule, bound, prefix=prefix, up_to_position=up_to_position)


def scan_rule_events(journal: Journal, rule: Rule, *, stream_ids: Sequence[str] | None = None) -> pl.LazyFrame:
    """The events a Polars rule reads (its event types) with the columns it needs, unordered."""
    needed = list(dict.fromkeys(["stream_id", "version", "position", *rule.columns]))
    return scan_events(journal, stream_ids=stream_ids, event_types=rule.event_types).select(needed)


def polars_verdicts_of(
    events: pl.LazyFrame,
    rule: Rule,
    bound: dict[str, Any],
    *,
    prefix: tuple[str, int] | None = None,
    up_to_position: int | None = None,
) -> pl.LazyFrame:
    """``polars_verdicts`` over ``events`` already read (``scan_rule_events``, or a frame collected from it).

    A bisection reads the journal once and judges each probe on that frame (``prefix`` as above).
    """
    assert rule.polars is not None
    if prefix is not None:
        events = events.filter(~((pl.col("stream_id") == prefix[0]) & (pl.col("version") > prefix[1])))
    if up_to_position is not None:
        events = events.filter(pl.col("position") <= up_to_position)
    events = events.sort("position")
    out = rule.polars(events, bound)
    if isinstance(out, tuple):
        out = events.select("stream_id", "version", holds=out[0], message=out[1].cast(pl.String))
    elif isinstance(out, pl.Expr):
        out = events.select("stream_id", "version", holds=out, message=pl.lit(None, pl.String))
    if not isinstance(out, pl.LazyFrame):
        raise RuleDefinitionError(
            f"rule {rule.name} ({rule.origin}) returned {type(out).__name__}, not a LazyFrame or an expression",
            rule=rule.name,
        )
    names = out.collect_schema().names()
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise RuleDefinitionError(
            f"rule {rule.name} ({rule.origin}) does not return the column(s) {', '.join(missing)}; "
            f"it returns {', '.join(names)}",
            hint="a Polars rule returns stream_id, version, holds (and optionally message), or a holds expression",
            rule=rule.name,
            missing=missing,
        )
    holds = out.collect_schema()["holds"]
    if holds not in (pl.Boolean, pl.Null):
        raise _not_boolean(rule, str(holds), "return a comparison (e.g. pl.col(\"failures\") == 0)")
    message = pl.col("message").cast(pl.String) if "message" in names else pl.lit(None, pl.String)
    return out.select("stream_id", "version", pl.col("holds").cast(pl.Boolean), message.alias("message"))


def polars_global_verdicts(
    journal: Journal, rule: Rule, bound: dict[str, Any], position: int
) -> list[tuple[int, bool, str | None]]:
    """(position, holds, message) of a global Polars rule over the journal up to ``position`` (time order)."""
    verdicts = polars_verdicts(journal, rule, bound, up_to_position=position).filter(pl.col("holds").is_not_null())
    positions = scan_events(journal).select("stream_id", "version", "position")
    frame = verdicts.join(positions, on=["stream_id", "version"]).sort("position").select("position", "holds", "message")
    return list(frame.collect().iter_rows())


def polars_failures(journal: Journal, rule: Rule, bound: dict[str, Any], stream_ids: Sequence[str] | None) -> pa.Table:
    """Per failing stream among ``stream_ids`` (None: every stream).

    The rule sees every event of the journal, whatever the selection, as a SQL rule does: an
    expression without ``.over("stream_id")`` looks across streams, and a stream's verdict must not
    depend on which other streams were selected with it. Only the selected streams are reported.
    """
    verdicts = polars_verdicts(journal, rule, bound)
    if stream_ids is not None:
        verdicts = verdicts.filter(pl.col("stream_id").is_in(pl.Series(list(stream_ids), dtype=pl.String).implode()))
    failing = (
        verdicts.filter(pl.col("holds") == False)  # noqa: E712 - null means "no verdict"
        .sort("stream_id", "version")
        .group_by("stream_id")
        .agg(
            pl.col("version").first().alias("version"),
            pl.col("version").n_unique().cast(pl.Int64).alias("failing_events"),
            pl.col("message").first().alias("message"),
            pl.col("version").unique(maintain_order=True).head(EVIDENCE_VERSIONS).alias("failing_versions"),
            pl.col("version").last().alias("last_failing_version"),
        )
        .collect()
    )
    return attach_event_info(journal, failing)


def attach_event_info(journal: Journal, failing: pl.DataFrame) -> pa.Table:
    """Failing (stream_id, version, ...) rows joined to the event they name (position, time, id, type):
    in a damaged stream that repeats a version, the first event written at it (one row each)."""
    if failing.height == 0:
        return FAILURE_SCHEMA.empty_table()
    ids = failing.get_column("stream_id").to_list()
    events = (
        scan_events(journal, stream_ids=ids).select(_INFO_COLUMNS)
        .sort("position").unique(["stream_id", "version"], keep="first", maintain_order=True)
    )
    info = events.join(failing.lazy(), on=["stream_id", "version"])
    table = info.sort("stream_id").collect().to_arrow()
    return table.select(FAILURE_SCHEMA.names).cast(FAILURE_SCHEMA)


__all__ = [
    "COST",
    "FAILURE_SCHEMA",
    "Selection",
    "attach_event_info",
    "check_sql_rule",
    "count_streams",
    "polars_failures",
    "polars_global_verdicts",
    "polars_verdicts",
    "polars_verdicts_of",
    "scan_rule_events",
    "selected_stream_ids",
    "sql_failures",
    "sql_global_verdicts",
    "sql_prefix_verdicts",
]
