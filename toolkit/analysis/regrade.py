"""``journal regrade``: judge every selected stream by rules, write the findings as one batch.

For each rule and failing stream a finding row names the rule, its fingerprint (code and
parameters), the stream, the first failing event (version, position, time, id), the message
there, the evidence (the first failing versions, the last one) and how many events fail. A rule
that raises becomes a finding of kind ``error`` carrying the exception instead of stopping the
re-grade. All rows of one run share a ``batch_id`` and go to the ``findings`` table in one commit;
``finding_id`` and ``inputs_sha256`` are derived from what was judged, so the same journal and the
same rules give the same findings (``test_findings_batches_are_reproducible``).

SQL and Polars rules run vectorised over all streams at once — the built-ins together, in one
shared read and sort of the journal (``toolkit.analysis.shared_pass``; ``SHARED_PASS = False``
runs each on its own); Python rules are judged by ``toolkit.analysis.state_rules`` (column-wise
agent-run states, the monotone shortcut, folding where needed; worker processes for large
selections). Findings are built column-wise and appended as one Arrow table.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from toolkit.analysis.rules import Rule, RuleSet
from toolkit.analysis.verdicts import (
    FAILURE_SCHEMA,
    Selection,
    count_streams,
    polars_failures,
    selected_stream_ids,
    sql_failures,
)
from toolkit.engines import duckdb_engine
from toolkit.engines.polars_engine import uuid5_texts
from toolkit.errors import RuleDefinitionError, ToolkitError
from toolkit.journal.lock import write_lock
from toolkit.journal.redaction import redacted_streams, redaction_ids, scrub_findings
from toolkit.journal.side_tables import SIDE_TABLES, append_rows, append_table, read_table
from toolkit.journal.store import Journal

FINDINGS_SCHEMA = SIDE_TABLES["findings"]
FINDING_NAMESPACE = uuid.UUID("9d2c0a44-5b7e-5e0f-8a43-0f6b3f1d7c21")
SHARED_PASS = True  # built-ins judged together in one read of the journal (False: each rule on its own)


@dataclass
class RegradeResult:
    batch_id: str
    inputs_sha256: str
    findings: pa.Table  # FINDINGS_SCHEMA without graded_at
    streams_checked: int
    rules: list[dict[str, Any]] = field(default_factory=list)  # per rule: name, fingerprint, streams failing, errors
    written: int = 0
    findings_redacted: int = 0  # findings given the marker of a redaction that came during the run

    @property
    def failing(self) -> bool:
        return bool(self.findings.num_rows > 0)

    def summary(self) -> dict[str, Any]:
        """Streams checked and failing, the first failing event of the journal, failures per day since."""
        frame = pl.from_arrow(self.findings.select(["kind", "rule", "stream_id", "first_failing_version", "occurred_at",
                                                    "position", "message"]))
        assert isinstance(frame, pl.DataFrame)
        violations = frame.filter(pl.col("kind") == "violation").with_row_index("i")
        errors = frame.height - violations.height
        ordered = violations.sort("occurred_at", "position", "i")  # the first in time; ties: the first row
        first = ordered.row(0, named=True) if ordered.height else None
        per_day: dict[str, int] = {}
        if first is not None:
            days = violations.group_by(pl.col("occurred_at").dt.date().alias("day")).len()
            counts = dict(zip(days.get_column("day").to_list(), days.get_column("len").to_list(), strict=True))
            day, last = first["occurred_at"].date(), max(counts)
            while day <= last:
                per_day[day.isoformat()] = counts.get(day, 0)
                day += dt.timedelta(days=1)
        return {
            "batch_id": self.batch_id,
            "streams_checked": self.streams_checked,
            "streams_failing": violations.get_column("stream_id").n_unique(),
            "findings": violations.height,
            "errors": errors,
            "first_failure": None
            if first is None
            else {
                "rule": first["rule"],
                "stream_id": first["stream_id"],
                "version": first["first_failing_version"],
                "occurred_at": first["occurred_at"].isoformat(),
                "message": first["message"],
            },
            "failures_per_day": per_day,
            "rules": self.rules,
        }


def split_params(rules: Sequence[Rule], params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``-p name=value`` goes to every chosen rule that declares ``name``; ``rule.name=value`` to one rule
    (and wins over ``name=value``, whichever was given first)."""
    out: dict[str, dict[str, Any]] = {r.name: {} for r in rules}
    for key, value in sorted(params.items(), key=lambda kv: "." in kv[0]):  # stable: the targeted ones last
        rule_name, dot, name = key.rpartition(".")
        targets = [r for r in rules if (not dot or r.name == rule_name) and any(p.name == name for p in r.params)]
        if not targets:
            known = sorted({f"{r.name}.{p.name}" for r in rules for p in r.params})
            raise RuleDefinitionError(
                f"no chosen rule takes parameter {key!r}",
                hint=f"parameters of the chosen rules: {', '.join(known) or 'none'}",
            )
        for r in targets:
            out[r.name][name] = value
    return out


def resolve_rules(names: Sequence[str], rule_set: RuleSet) -> list[Rule]:
    if not names:
        raise RuleDefinitionError(
            "no rule named", hint=f"name one or more rules, or 'all': {', '.join(rule_set.names())}"
        )
    if list(names) == ["all"]:
        return [r for r in rule_set.rules.values() if r.scope == "stream"]
    return [rule_set.get(n) for n in dict.fromkeys(names)]


def regrade(
    journal: Journal,
    rule_names: Sequence[str],
    *,
    params: Mapping[str, Any] | None = None,
    rule_files: Sequence[str] = (),
    selection: Selection | None = None,
    write: bool = True,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
    runner: Callable[..., list[tuple[pa.Table | None, str | None]]] | None = None,
    time_limit_s: float | None = None,
) -> RegradeResult:
    """Judge the selected streams by the named rules (``all``: every stream rule) and record findings.

    ``runner(journal, rules, bound, selection, ids)`` computes every rule's (failures, error)
    elsewhere — ``toolkit.analysis.distributed.dask_runner`` on a Dask cluster. Everything is
    judged at the journal's Delta version when the call starts (``Journal.pinned``): an append
    committed meanwhile is in no rule's verdicts and no selection. The write lock is taken only to
    write the findings; under it, the findings of every redacted stream get the marker of its
    latest redaction, as ``journal redact`` leaves the findings it finds, so a redaction committed
    (or half-way) while the rules read quoted payloads never reaches the table
    (``findings_redacted`` counts those of redactions that came during the run). A pinned journal
    cannot write findings.

    Each query of a SQL rule is stopped after ``time_limit_s`` seconds (None: ``sql_timeout_s`` of
    journal.toml; 0: no limit); the rule is then a finding of kind ``error`` naming the limit, as any
    rule that raises. A ``runner`` is given its own (``dask_runner(..., time_limit_s=)``).
    """
    selection = selection or Selection()
    rule_set = RuleSet.load(rule_files)
    rules = resolve_rules(rule_names, rule_set)
    for r in rules:
        if r.scope != "stream":
            raise RuleDefinitionError(
                f"rule {r.name} judges the whole journal in time order, not streams",
                hint=f"bisect it with: journal bisect {r.name} --global",
            )
    per_rule = split_params(rules, params or {})
    bound = {r.name: r.bind(per_rule[r.name]) for r in rules}
    if write:
        journal.refuse_writes("write findings")
        seen = redaction_ids(journal)  # for the note only: which redactions came during the run
    snapshot = journal.pinned()  # every read below (and every Dask task) sees this one version
    session = duckdb_engine.connect(snapshot)
    try:
        ids = selected_stream_ids(session, selection)
        streams_checked = count_streams(session, selection) if ids is None else len(ids)
        results: list[tuple[Rule, str, pa.Table | None, str | None]] = []
        if runner is not None:
            outcomes = runner(snapshot, rules, bound, selection, ids)
            for rule, (failures_, error_) in zip(rules, outcomes, strict=True):
                results.append((rule, rule.fingerprint(bound[rule.name]), failures_, error_))
        shared = _shared(snapshot, rules, bound, ids, progress) if runner is None else {}
        for rule in rules if runner is None else ():
            if rule.name in shared:
                results.append((rule, rule.fingerprint(bound[rule.name]), *shared[rule.name]))
                continue
            if progress:
                progress(rule.name)
            fingerprint = rule.fingerprint(bound[rule.name])
            try:
                with session.watched(journal.config.sql_timeout_s if time_limit_s is None else time_limit_s):
                    failures = _failures(snapshot, session, rule, bound[rule.name], selection, ids, workers)
            except RuleDefinitionError:
                raise
            except (ToolkitError, Exception) as e:  # a rule that raises is a finding, not a crash
                results.append((rule, fingerprint, None, f"{type(e).__name__}: {e}"))
                continue
            results.append((rule, fingerprint, failures, None))
    finally:
        session.close()
    inputs = _inputs_sha256(snapshot, [(r.name, fp) for r, fp, _, _ in results], selection)
    batch_id = str(uuid.uuid4())
    table, summaries = _findings_table(results, bound, batch_id, inputs)
    result = RegradeResult(batch_id, inputs, table, streams_checked, summaries)
    if not write:
        return result
    with write_lock(journal.path, journal.config.lock_timeout_s, nested=True):
        # findings may quote payloads, and a redaction may have committed (or been half-way) while
        # the rules read: under the lock, the findings of every redacted stream get the marker of
        # its latest redaction, as journal redact leaves the findings it finds (the verdicts stay)
        markers, by = redacted_streams(journal)
        came = sorted((by[s], s) for s in markers if by[s] not in seen)  # redaction ids sort by time
        # a rule that raised names no stream, but its error may quote a payload such a redaction replaced
        table, _ = scrub_findings(table, markers, markers[came[-1][1]] if came else None)
        meanwhile = pa.array(sorted(s for _, s in came), pa.string())  # for the note
        stream_ids = table.column("stream_id")
        touched = pc.is_in(stream_ids, meanwhile)
        if came:
            touched = pc.or_(touched, pc.is_null(stream_ids))
        result.findings_redacted = int(pc.sum(touched).as_py() or 0)
        result.findings = table
        graded_at = dt.datetime.now(dt.UTC)
        stamps = pa.array([graded_at] * table.num_rows, FINDINGS_SCHEMA.field("graded_at").type)
        result.written = append_table(journal, "findings", table.add_column(0, "graded_at", stamps))
        # after the findings: a batch recorded here has its findings written (a rule that held has none);
        # with what it selected, so a later batch that checked a stream and found it passing supersedes
        # an earlier finding there, and one that did not check it does not (run_explorer)
        chosen = json.dumps(selection.describe(), sort_keys=True)
        append_rows(journal, "regrades", [
            {"graded_at": graded_at, "batch_id": batch_id, "rule": s["rule"], "rule_fingerprint": s["fingerprint"],
             "params": s["params"], "streams_checked": streams_checked, "streams_failing": s["streams_failing"],
             "errors": s["errors"], "selection": chosen, "stream_ids": ids}
            for s in summaries
        ])
    return result


def _findings_table(
    results: Sequence[tuple[Rule, str, pa.Table | None, str | None]],
    bound: Mapping[str, Mapping[str, Any]],
    batch_id: str,
    inputs: str,
) -> tuple[pa.Table, list[dict[str, Any]]]:
    """The findings rows of a batch, built column-wise (a full re-grade may find 10^5-10^6 of them).

    Evidence is the JSON text ``json.dumps(..., sort_keys=True)`` writes; finding ids are uuid5 of
    what was judged, so batches are reproducible.
    """
    schema = pa.schema([f for f in FINDINGS_SCHEMA if f.name != "graded_at"])
    parts: list[pl.DataFrame] = []
    summaries: list[dict[str, Any]] = []
    for rule, fingerprint, failures, error in results:
        p_json = json.dumps({k: _jsonable(v) for k, v in sorted(bound[rule.name].items())}, sort_keys=True)
        const = {"batch_id": batch_id, "inputs_sha256": inputs, "rule": rule.name, "rule_fingerprint": fingerprint,
                 "params": p_json, "severity": rule.severity}
        if error is not None:
            error_frame = pl.from_arrow(pa.Table.from_pylist([{**const, **_error_row(rule, fingerprint, error)}], schema=schema))
            assert isinstance(error_frame, pl.DataFrame)
            parts.append(error_frame)
            summaries.append({"rule": rule.name, "fingerprint": fingerprint, "params": p_json, "streams_failing": 0, "errors": 1})
            continue
        assert failures is not None
        f = pl.from_arrow(failures)
        assert isinstance(f, pl.DataFrame)
        if "kind" not in f.columns:
            f = f.with_columns(kind=pl.lit("violation"))
        errors = int((f.get_column("kind") == "error").sum())
        summaries.append({"rule": rule.name, "fingerprint": fingerprint, "params": p_json,
                          "streams_failing": f.height - errors, "errors": errors})
        if f.height == 0:
            continue
        # the name Python's f"{fingerprint}/{kind}/{stream_id}/{version}" writes (None for null)
        name_parts = [pl.col(c).cast(pl.String).fill_null("None") for c in ("kind", "stream_id", "version")]
        names = f.select(pl.concat_str(pl.lit(fingerprint), *name_parts, separator="/")).to_series()
        ids = uuid5_texts(FINDING_NAMESPACE.bytes, names)  # vectorised (0.7 s per 357k ids row by row)
        types = f.get_column("event_type").unique().to_list()
        quoted = {t: json.dumps(t) for t in types if t is not None}
        evidence = (
            pl.lit('{"event_type": ')
            + pl.col("event_type").replace_strict(quoted, default="null", return_dtype=pl.String)
            + pl.lit(', "failing_versions": [')
            + pl.col("failing_versions").cast(pl.List(pl.String)).list.join(", ")
            + pl.lit('], "last_failing_version": ')
            + pl.col("last_failing_version").cast(pl.String).fill_null("null")
            + pl.lit("}")
        )
        rows = f.with_columns(finding_id=ids.alias("finding_id"), evidence=evidence)
        if errors:  # a Python rule's per-stream error rows quote the error in the evidence (rare: row by row)
            texts = [
                _evidence(r, k) for r, k in zip(f.select("event_type", "failing_versions", "last_failing_version", "message").to_dicts(),
                                               f.get_column("kind").to_list(), strict=True)
            ]
            rows = rows.with_columns(evidence=pl.Series(texts, dtype=pl.String))
        rows = rows.rename({"version": "first_failing_version"}).with_columns(
            *(pl.lit(v, pl.String).alias(k) for k, v in const.items())
        )
        parts.append(rows.select(schema.names))
    if not parts:
        return schema.empty_table(), summaries
    empty = pl.from_arrow(schema.empty_table())
    assert isinstance(empty, pl.DataFrame)
    table = pl.concat([empty, *(part.select(schema.names) for part in parts)], how="vertical_relaxed").sort(
        pl.col("rule"), pl.col("stream_id").fill_null(""), pl.col("first_failing_version").fill_null(0), pl.col("kind")
    )
    return table.to_arrow().select(schema.names).cast(schema), summaries


def _evidence(f: dict[str, Any], kind: str) -> str:
    evidence = {
        "event_type": f["event_type"],
        "failing_versions": f["failing_versions"],
        "last_failing_version": f["last_failing_version"],
    }
    if kind == "error":
        evidence["error"] = f["message"]
    return json.dumps(evidence, sort_keys=True)


def _shared(
    journal: Journal,
    rules: Sequence[Rule],
    bound: dict[str, dict[str, Any]],
    ids: list[str] | None,
    progress: Callable[[str], None] | None,
) -> dict[str, tuple[pa.Table | None, str | None]]:
    """The built-ins among ``rules``, judged together in one shared pass (``toolkit.analysis.shared_pass``)."""
    from toolkit.analysis.shared_pass import journal_events, shardable, shared_failures

    if not SHARED_PASS:
        return {}
    events = journal_events(journal)
    builtins = [r for r in rules if shardable(r, events)]
    if not builtins:
        return {}
    outcomes = shared_failures(journal, builtins, bound, ids, progress=progress)
    return {r.name: outcome for r, outcome in zip(builtins, outcomes, strict=True)}


def _failures(
    journal: Journal,
    session: duckdb_engine.Session,
    rule: Rule,
    bound: dict[str, Any],
    selection: Selection,
    ids: list[str] | None,
    workers: int | None,
) -> pa.Table:
    if rule.kind == "sql":
        return sql_failures(session, rule, bound, selection)
    if rule.kind == "polars":
        return polars_failures(journal, rule, bound, ids)
    from toolkit.analysis.state_rules import python_failures

    return python_failures(journal, rule, bound, ids, workers=workers)


def _error_row(rule: Rule, fingerprint: str, error: str) -> dict[str, Any]:
    return {
        "finding_id": str(uuid.uuid5(FINDING_NAMESPACE, f"{fingerprint}/error")),
        "kind": "error",
        "stream_id": None,
        "stream_type": None,
        "first_failing_version": None,
        "position": None,
        "occurred_at": None,
        "event_id": None,
        "message": f"rule {rule.name} raised {error}",
        "evidence": json.dumps({"error": error, "origin": rule.origin}, sort_keys=True),
        "failing_events": None,
    }


def _jsonable(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return [str(x) for x in v]
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return str(v)


def _inputs_sha256(journal: Journal, fingerprints: list[tuple[str, str]], selection: Selection) -> str:
    """What a batch judged: the journal up to its last position, the rules, the selection."""
    doc = json.dumps(
        {"max_position": journal.max_position(), "rules": sorted(fingerprints), "selection": selection.describe()},
        sort_keys=True,
    )
    return hashlib.sha256(doc.encode()).hexdigest()


@dataclass(frozen=True)
class GradedBatch:
    """A findings batch that judged a rule: when, and the first stream it found failing."""

    batch_id: str
    graded_at: dt.datetime
    stream_id: str | None  # the first failing stream (earliest first failure); None: no stream failed
    errors: int  # findings of kind error: the rule raised
    streams_checked: int | None  # None: written before batches recorded every rule they judged
    params: dict[str, Any]  # the rule's parameters in that batch, as bound (JSON values)
    rule_fingerprint: str
    # the streams it graded (Selection.describe(): since, until, stream_types, agents, streams; all
    # empty: every stream); None: written before batches recorded their selection
    selection: dict[str, Any] | None = None


_BATCH_KEYS: Final = ("batch_id", "graded_at", "rule_fingerprint", "params")  # one rule's: the same on every row


def graded_batches(journal: Journal, rule: str) -> list[GradedBatch]:
    """The findings batches that judged ``rule``, the latest first.

    A batch in which the rule held writes no finding of it; the ``regrades`` table records that it
    judged the rule. Batches written before that table existed are known by their findings only.
    """
    columns = ["graded_at", "batch_id", "rule", "rule_fingerprint", "params", "kind", "stream_id", "occurred_at", "position"]
    findings = pl.from_arrow(read_table(journal, "findings").select(columns))
    recorded = pl.from_arrow(
        read_table(journal, "regrades").select(
            ["graded_at", "batch_id", "rule", "rule_fingerprint", "params", "streams_checked", "selection"]
        )
    )
    assert isinstance(findings, pl.DataFrame) and isinstance(recorded, pl.DataFrame)
    findings, recorded = findings.filter(pl.col("rule") == rule), recorded.filter(pl.col("rule") == rule)
    batches = (
        pl.concat([findings.select(_BATCH_KEYS), recorded.select(_BATCH_KEYS)])
        .group_by("batch_id")
        .agg(pl.col("graded_at").max(), pl.col("rule_fingerprint", "params").first())
    )
    first = (
        findings.filter(pl.col("kind") == "violation", pl.col("stream_id").is_not_null())
        .sort("occurred_at", "position", "stream_id")
        .group_by("batch_id", maintain_order=True)
        .agg(pl.col("stream_id").first())
    )
    errors = findings.filter(pl.col("kind") == "error").group_by("batch_id").agg(pl.len().alias("errors"))
    rows = (
        batches.join(first, on="batch_id", how="left")
        .join(errors, on="batch_id", how="left")
        .join(recorded.select("batch_id", "streams_checked", "selection"), on="batch_id", how="left")
        .sort("graded_at", "batch_id", descending=True)
    )
    return [
        GradedBatch(
            r["batch_id"], r["graded_at"], r["stream_id"], r["errors"] or 0, r["streams_checked"],
            json.loads(r["params"]), r["rule_fingerprint"],
            json.loads(r["selection"]) if r["selection"] is not None else None,
        )
        for r in rows.iter_rows(named=True)
    ]


def latest_failing_stream(journal: Journal, rule: str) -> str | None:
    """The first failing stream (earliest first failure) of ``rule``'s latest re-grade (None: it held there)."""
    batches = graded_batches(journal, rule)
    return batches[0].stream_id if batches else None


__all__ = [
    "FAILURE_SCHEMA",
    "GradedBatch",
    "RegradeResult",
    "Selection",
    "graded_batches",
    "latest_failing_stream",
    "regrade",
    "resolve_rules",
    "split_params",
]
