"""``journal export-compliance``: a self-describing, verifiable bundle of what happened.

A bundle is a directory::

    manifest.json        what was selected (the query and its parameters), from which journal
                         and Delta version, when, row counts, the SHA-256 of every other file,
                         and the hash-chain heads of the streams involved (optional HMAC)
    events.{parquet,csv,json}     the selected events in time order, every canonical column
                                  (hashes included) plus an explainer title and summary
    causation.{parquet,csv,json}  cause → effect links of those events (causes outside the
                                  selection included, orphans marked)
    runs.{parquet,csv,json}       one state summary per run (stream)
    report.html          one self-contained page for people: per run a timeline of who did
                         what and why; inline CSS, no script, no link or resource outside it

The bundle is written to a temporary sibling directory and renamed into place, so a crash
leaves no half bundle. ``verify_bundle`` (``compliance_verify``) checks it.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from toolkit.analysis.causation import choose_cause
from toolkit.analysis.run_summaries import summarise_runs
from toolkit.analysis.titles import describe_event
from toolkit.engines.polars_engine import scan_events
from toolkit.errors import BundleError
from toolkit.journal.location import refuse_inside
from toolkit.journal.retention import file_sha256
from toolkit.journal.schema import COLUMN_NAMES
from toolkit.journal.store import Journal
from toolkit.reports.tables import write_table

BUNDLE_FORMAT = "agent-journal-toolkit compliance bundle 1"
MANIFEST = "manifest.json"
TABLES = ("events", "causation", "runs")
#: an event as the cause of another, in the causation table's columns
AS_CAUSE = (
    pl.col("event_id").alias("cause_event_id"),
    pl.col("stream_id").alias("cause_stream_id"),
    pl.col("version").alias("cause_version"),
    pl.col("event_type").alias("cause_event_type"),
)
#: what choosing among several events with one id needs of each (``causation.cause_rank``)
_RANKED = ("correlation_id", "occurred_at", "position")
_CAUSE_RANKING = tuple(pl.col(c).alias(f"cause_{c}") for c in _RANKED)
#: the rows :func:`link_causes` takes for causes outside the bundle; ``claimed_for``: the effects
#: a bundle names the cause for (verify-export without the journal), else null
OUTSIDE_CAUSE = pl.Schema(
    {
        "cause_event_id": pl.String(),
        "cause_stream_id": pl.String(),
        "cause_version": pl.Int64(),
        "cause_event_type": pl.String(),
        "cause_correlation_id": pl.String(),
        "cause_occurred_at": pl.Datetime("us", "UTC"),
        "cause_position": pl.Int64(),
        "claimed_for": pl.List(pl.String()),
    }
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Selection:
    """Exactly one of correlation_id, subject_id, stream_ids; a half-open time range."""

    correlation_id: str | None = None
    subject_id: str | None = None
    stream_ids: tuple[str, ...] | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def check(self) -> None:
        given = [n for n, v in (("--correlation", self.correlation_id), ("--subject", self.subject_id), ("--stream", self.stream_ids)) if v]
        if len(given) != 1:
            raise BundleError(
                "choose exactly one of --correlation ID, --subject ID, --stream ID..."
                + (f" (got {', '.join(given)})" if given else ""),
                hint="e.g. journal export-compliance --correlation session-7-0000003 -o bundle/",
            )
        if self.since and self.until and self.since >= self.until:
            raise BundleError(
                f"--since {self.since.isoformat()} is not before --until {self.until.isoformat()}",
                hint="the range is half-open: since <= occurred_at < until",
            )

    def sql(self) -> tuple[str, dict[str, Any]]:
        """The same selection as SQL over the events view (for the manifest; reproducible with journal sql)."""
        params: dict[str, Any]
        if self.correlation_id:
            where, params = ["correlation_id = $correlation_id"], {"correlation_id": self.correlation_id}
        elif self.subject_id:
            where, params = ["subject_id = $subject_id"], {"subject_id": self.subject_id}
        else:  # a JSON list: stream ids may hold commas
            where = ["list_contains(from_json($stream_ids, '[\"VARCHAR\"]'), stream_id)"]
            params = {"stream_ids": json.dumps(list(self.stream_ids or ()), ensure_ascii=False)}
        if self.since:  # no bound where none was given: events before 1970 are selected too
            where.append("occurred_at >= $since")
            params["since"] = self.since.isoformat()
        if self.until:
            where.append("occurred_at < $until")
            params["until"] = self.until.isoformat()
        sql = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY occurred_at, position"  # noqa: S608 (fixed fragments)
        return sql, params

    def describe(self) -> dict[str, Any]:
        return {
            "correlation_id": self.correlation_id,
            "subject_id": self.subject_id,
            "stream_ids": list(self.stream_ids) if self.stream_ids else None,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }


@dataclass
class BundleResult:
    path: str
    events: int
    streams: int
    files: dict[str, str] = field(default_factory=dict)
    manifest_sha256: str = ""

    @property
    def empty(self) -> bool:
        return self.events == 0


def select_events(journal: Journal, selection: Selection) -> pl.DataFrame:
    """The selected events, every canonical column, in time order."""
    selection.check()
    lf = scan_events(journal, stream_ids=list(selection.stream_ids) if selection.stream_ids else None, since=selection.since, until=selection.until)
    if selection.correlation_id:
        lf = lf.filter(pl.col("correlation_id") == selection.correlation_id)
    elif selection.subject_id:
        lf = lf.filter(pl.col("subject_id") == selection.subject_id)
    return lf.sort("occurred_at", "position").collect()


def explain_events(events: pl.DataFrame) -> pl.DataFrame:
    """``events`` with the explainer's title and summary of each (``titles.describe_event``)."""
    texts = [describe_event(r) for r in events.to_dicts()]
    return events.with_columns(
        title=pl.Series([t for t, _ in texts], dtype=pl.String),
        summary=pl.Series([s for _, s in texts], dtype=pl.String),
    )


def causation_links(journal: Journal, events: pl.DataFrame, *, max_position: int | None = None) -> pl.DataFrame:
    """cause → effect for every selected event that has a cause; causes outside looked up once
    (among the events up to ``max_position`` when given: the journal as the export read it)."""
    return link_causes(events, outside_causes(journal, events, max_position=max_position))


def outside_causes(journal: Journal, events: pl.DataFrame, *, max_position: int | None = None) -> pl.DataFrame:
    """The events outside ``events`` that carry a cause id of theirs, as the journal holds them:
    the rows (:data:`OUTSIDE_CAUSE`) :func:`link_causes` takes. Every copy of an id counts, also
    of one the bundle holds: a copy outside may be the one that caused an effect."""
    ids = sorted(set(events.get_column("causation_id").drop_nulls().to_list()))
    if not ids:
        return outside_frame(events.clear().select(AS_CAUSE))
    lf = scan_events(journal).filter(
        pl.col("event_id").is_in(ids), ~pl.col("position").is_in(events.get_column("position").implode())
    )
    if max_position is not None:
        lf = lf.filter(pl.col("position") <= max_position)
    return outside_frame(lf.select(*AS_CAUSE, *_CAUSE_RANKING).collect())


def outside_frame(causes: pl.DataFrame) -> pl.DataFrame:
    """``causes`` (at least the :data:`AS_CAUSE` columns) with every :data:`OUTSIDE_CAUSE` column:
    a cause known only by what a bundle says has no correlation, time or position."""
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in OUTSIDE_CAUSE.items() if c not in causes.columns]
    return causes.with_columns(missing).select(list(OUTSIDE_CAUSE)).cast(OUTSIDE_CAUSE)


def link_causes(events: pl.DataFrame, outside: pl.DataFrame) -> pl.DataFrame:
    """cause → effect for every event of ``events`` that has a cause: the cause among ``events``
    (``cause_in_bundle``) or in ``outside`` (:func:`outside_causes`), else an orphan. One row per
    effect: among several events carrying its cause's id, the one ``journal chain`` takes
    (:func:`~toolkit.analysis.causation.choose_cause`). An outside cause known only by the
    bundle's word (``claimed_for``: verify-export without the journal) ranks, on what is unknown
    of it (correlation, time), first for the effects it is named for and last for others.

    >>> ev = pl.DataFrame({"event_id": ["a", "b", "c"], "causation_id": [None, "a", "x"], "stream_id": ["s"] * 3,
    ...     "version": [1, 2, 3], "event_type": ["user_message", "tool_called", "tool_result"]})
    >>> links = link_causes(ev, ev.clear().select(AS_CAUSE))
    >>> links.select("effect_event_id", "cause_stream_id", "cause_in_bundle", "orphan").rows()
    [('b', 's', True, False), ('c', None, False, True)]
    """
    effect = {"correlation_id": "_effect_correlation_id", "occurred_at": "_effect_occurred_at"}
    linked = events.filter(pl.col("causation_id").is_not_null()).select(
        pl.col("causation_id").alias("cause_event_id"),
        pl.col("event_id").alias("effect_event_id"),
        pl.col("stream_id").alias("effect_stream_id"),
        pl.col("version").alias("effect_version"),
        pl.col("event_type").alias("effect_event_type"),
        *(pl.col(c).alias(a) for c, a in effect.items() if c in events.columns),
    )
    ranked = (e for e, c in zip(_CAUSE_RANKING, _RANKED, strict=True) if c in events.columns)
    inside = outside_frame(events.select(*AS_CAUSE, *ranked))
    causes = pl.concat(
        [
            inside.with_columns(cause_in_bundle=pl.lit(True)),
            outside_frame(outside).with_columns(cause_in_bundle=pl.lit(False)),
        ]
    )
    out = linked.with_row_index("_effect").join(causes, on="cause_event_id", how="left", maintain_order="left")
    if out.height > linked.height:  # a cause id several events carry (journal verify names them)
        out = out.with_row_index("_row")
        drop: set[int] = set()
        for rows in out.filter(pl.col("_effect").is_duplicated()).partition_by("_effect", as_dict=True).values():
            candidates = rows.to_dicts()
            e = candidates[0]
            fx = {
                "stream_id": e["effect_stream_id"],
                "correlation_id": e.get("_effect_correlation_id"),
                "occurred_at": e.get("_effect_occurred_at") or _EPOCH,
            }
            best = choose_cause(fx, [_as_copy(fx, e["effect_event_id"], c) for c in candidates])
            drop.update(c["_row"] for c in candidates if c["_row"] != best["_row"])
        out = out.filter(~pl.col("_row").is_in(sorted(drop)))
    return out.select(
        "cause_event_id",
        "effect_event_id",
        "effect_stream_id",
        "effect_version",
        "effect_event_type",
        "cause_stream_id",
        "cause_version",
        "cause_event_type",
        cause_in_bundle=pl.col("cause_in_bundle").fill_null(False),
        orphan=pl.col("cause_stream_id").is_null(),
    )


def _as_copy(effect: dict[str, Any], effect_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """A candidate cause as :func:`choose_cause` ranks it; what is unknown of a cause a bundle
    names (no journal) is the best for the effects it is named for, the worst for others."""
    copy = {
        "stream_id": row["cause_stream_id"],
        "correlation_id": row["cause_correlation_id"],
        "occurred_at": row["cause_occurred_at"],
        "position": row["cause_position"],
        "_row": row["_row"],
    }
    if copy["position"] is None:
        named = effect_id in (row["claimed_for"] or ())
        copy |= {
            "correlation_id": effect["correlation_id"] if named else None,
            "occurred_at": effect["occurred_at"] if named else _LATEST,
            "position": -1 if named else 1 << 62,
        }
    return copy


def chain_heads(journal: Journal, events: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """Per stream involved: the journal's head at export time and the last exported event."""
    streams = sorted(set(events.get_column("stream_id").to_list()))
    if not streams:
        return {}
    last = (
        scan_events(journal, stream_ids=streams)
        .filter(pl.col("stream_id").is_in(streams))
        .group_by("stream_id")
        .agg(pl.col("version").max(), pl.col("hash").sort_by("version").last())
        .collect()
    )
    exported = events.group_by("stream_id").agg(
        pl.col("version").max().alias("v"), pl.col("hash").sort_by("version").last().alias("h")
    )
    out: dict[str, dict[str, Any]] = {}
    for sid, v, h in last.sort("stream_id").iter_rows():
        out[sid] = {"head_version": v, "head_hash": h}
    for sid, v, h in exported.iter_rows():
        out[sid] |= {"last_exported_version": v, "last_exported_hash": h}
    return out


def _json_default(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return format(v, "f")
    raise TypeError(f"not JSON: {type(v).__name__}")


def rendered_copies(table: pa.Table) -> dict[str, str]:
    """The CSV and JSON copies of a bundle table, as text (verify-export renders the Parquet
    file again and compares)."""
    csv_text = io.StringIO()
    write_table(table, "csv", stream=csv_text)
    json_text = json.dumps(table.to_pylist(), default=_json_default, ensure_ascii=False, indent=1) + "\n"
    return {"csv": csv_text.getvalue(), "json": json_text}


def _write_table_files(frame: pl.DataFrame, name: str, out: Path) -> dict[str, int]:
    table = frame.to_arrow()
    table = pa.Table.from_batches(table.to_batches(), table.schema)  # plain (non-view) strings for every reader
    pq.write_table(table, out / f"{name}.parquet", compression="zstd")
    for ext, text in rendered_copies(table).items():
        (out / f"{name}.{ext}").write_text(text, encoding="utf-8")
    return {f"{name}.{ext}": table.num_rows for ext in ("parquet", "csv", "json")}


def manifest_mac(key: bytes, body: dict[str, Any]) -> str:
    import hashlib
    import hmac

    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def export_compliance(
    journal: Journal,
    selection: Selection,
    out_dir: str | Path,
    *,
    key: bytes | None = None,
    now: dt.datetime | None = None,
) -> BundleResult:
    """Write the bundle (see the module docstring) into ``out_dir`` (new or empty)."""
    from toolkit.reports.compliance_html import render_report

    selection.check()
    out = Path(out_dir).expanduser().absolute()
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise BundleError(
            f"{out}: exists and is not an empty directory" + (" (a symbolic link)" if out.is_symlink() else ""),
            hint="choose a new directory for the bundle",
        )
    if not journal.remote:
        refuse_inside(out, str(journal.path))
    exported_at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    delta_version = journal.delta_version
    max_position = journal.max_position()  # every event up to it is in the selection read below
    events = explain_events(select_events(journal, selection))
    streams = list(dict.fromkeys(events.get_column("stream_id").to_list()))
    causation = causation_links(journal, events, max_position=max_position)
    runs = summarise_runs(journal, streams, events)
    heads = chain_heads(journal, events)
    sql, params = selection.sql()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        rows: dict[str, int] = {}
        rows |= _write_table_files(events.select([*COLUMN_NAMES, "title", "summary"]), "events", tmp)
        rows |= _write_table_files(causation, "causation", tmp)
        rows |= _write_table_files(runs, "runs", tmp)
        body: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "toolkit_version": toolkit_version(),
            "journal": str(journal.path),
            "delta_version": delta_version,
            "max_position": max_position,
            "exported_at": exported_at.isoformat(),
            "selection": selection.describe(),
            "query": {"sql": sql, "params": params, "engine": "journal sql (DuckDB) over the events view"},
            "empty": events.height == 0,
            "note": "no events matched the selection; the bundle is empty and still verifiable"
            if events.height == 0
            else None,
            "row_counts": {"events": events.height, "causation": causation.height, "runs": runs.height},
            "streams": streams,
            "chain_heads": heads,
        }
        (tmp / "report.html").write_text(
            render_report(body, events, causation, runs), encoding="utf-8"
        )
        body["files"] = {
            p.name: {"sha256": file_sha256(p), "bytes": p.stat().st_size, "rows": rows.get(p.name)}
            for p in sorted(tmp.iterdir())
        }
        body["hmac_sha256"] = manifest_mac(key, body) if key else None
        text = json.dumps(body, indent=1, sort_keys=True, default=_json_default, ensure_ascii=False) + "\n"
        (tmp / MANIFEST).write_text(text, encoding="utf-8")
        for p in tmp.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the bundle is meant to be handed on
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BundleResult(
        str(out),
        events.height,
        len(streams),
        {name: info["sha256"] for name, info in body["files"].items()},
        file_sha256(out / MANIFEST),
    )


def toolkit_version() -> str:
    """The installed toolkit's version (a bundle records the one that wrote it)."""
    try:
        return importlib_metadata.version("agent-journal-toolkit")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


__all__ = [
    "AS_CAUSE",
    "BUNDLE_FORMAT",
    "BundleResult",
    "Selection",
    "causation_links",
    "explain_events",
    "export_compliance",
    "link_causes",
    "outside_causes",
    "select_events",
    "toolkit_version",
]
