"""Re-grade results over time: first failures per day and rule, failing runs per day.

The notebook ``regrade`` and ``journal report regrade`` run :func:`toolkit.analysis.regrade.regrade`
and chart these tables; :func:`bisect_run` drills into one failing run with the bisection of
``toolkit.analysis.bisection``.

>>> import datetime as dt, pyarrow as pa
>>> f = pa.table({"rule": ["a", "a", "b"], "kind": ["violation"] * 3, "stream_id": ["s1", "s2", "s1"],
...               "occurred_at": [dt.datetime(2026, 1, d, tzinfo=dt.UTC) for d in (1, 1, 2)]})
>>> first_failures_by_day(f).to_pylist()[0]
{'day': datetime.date(2026, 1, 1), 'rule': 'a', 'runs': 2}
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from toolkit.analysis.bisection import BisectResult, bisect_stream
from toolkit.analysis.overview import run_catalog_queries
from toolkit.analysis.regrade import RegradeResult, regrade
from toolkit.analysis.rules import RuleSet
from toolkit.analysis.verdicts import Selection
from toolkit.journal.store import Journal

DEFAULT_RULES = ("budget", "no_tool_failure_loop", "tool_result_pairing", "latency", "confirmation_before_write")


def stream_rule_names() -> list[str]:
    """Rules a re-grade can judge streams by (built-ins; user files come through ``rule_files``)."""
    return sorted(r.name for r in RuleSet.load().rules.values() if r.scope == "stream")


def regrade_rules(
    journal: Journal,
    rules: Sequence[str],
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    params: Mapping[str, Any] | None = None,
    write: bool = False,
) -> RegradeResult:
    """Re-grade every stream active in ``[since, until)`` by ``rules`` (``params`` as ``-p``: ``name`` or
    ``rule.name``); ``write`` records the findings batch."""
    return regrade(journal, list(rules), params=params, selection=Selection(since=since, until=until), write=write)


def _violations(findings: pa.Table) -> list[dict[str, Any]]:
    return [r for r in findings.to_pylist() if r["kind"] == "violation" and r["stream_id"]]


def first_failures_by_day(findings: pa.Table) -> pa.Table:
    """Per UTC day and rule: runs whose first failing event for that rule happened that day."""
    counts = Counter((r["occurred_at"].astimezone(dt.UTC).date(), r["rule"]) for r in _violations(findings))
    rows = [{"day": d, "rule": rule, "runs": n} for (d, rule), n in sorted(counts.items())]
    return pa.Table.from_pylist(
        rows, schema=pa.schema([("day", pa.date32()), ("rule", pa.string()), ("runs", pa.int64())])
    )


def failing_runs_by_day(
    journal: Journal, findings: pa.Table, *, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> pa.Table:
    """Per UTC day the runs started: how many, how many fail any rule, and the share failing."""
    starts = run_catalog_queries(journal, {"r": "explorer/runs_by_day"}, {"since": since, "until": until})["r"]
    failing = {r["stream_id"] for r in _violations(findings)}
    runs: Counter[dt.date] = Counter()
    bad: Counter[dt.date] = Counter()
    for sid, day in zip(starts.column("stream_id").to_pylist(), starts.column("day").to_pylist(), strict=True):
        runs[day] += 1
        bad[day] += sid in failing
    rows = [
        {"day": d, "runs": runs[d], "failing_runs": bad[d], "failing_share": bad[d] / runs[d]} for d in sorted(runs)
    ]
    schema = pa.schema(
        [("day", pa.date32()), ("runs", pa.int64()), ("failing_runs", pa.int64()), ("failing_share", pa.float64())]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def rule_summary(result: RegradeResult) -> pa.Table:
    """One row per rule: streams failing, errors, fingerprint."""
    schema = pa.schema(
        [("rule", pa.string()), ("streams_failing", pa.int64()), ("errors", pa.int64()), ("fingerprint", pa.string())]
    )
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in result.rules], schema=schema)


def failing_runs(result: RegradeResult) -> pa.Table:
    """The violations: rule, run, first failing version and time, message, failing events; earliest first."""
    cols = ["rule", "severity", "stream_id", "first_failing_version", "occurred_at", "message", "failing_events"]
    rows = sorted(_violations(result.findings), key=lambda r: (r["occurred_at"], r["rule"], r["stream_id"]))
    schema = pa.schema([result.findings.schema.field(c) for c in cols])
    return pa.Table.from_pylist([{c: r[c] for c in cols} for r in rows], schema=schema)


def bisect_run(journal: Journal, rule: str, stream_id: str) -> BisectResult:
    """Where in run ``stream_id`` rule ``rule`` stops holding (binary search when the rule is monotone)."""
    return bisect_stream(journal, rule, stream_id)


def probes_table(result: BisectResult) -> pa.Table:
    """The bisection's rule evaluations in order: evaluation number, version, whether the rule held."""
    rows = [{"evaluation": i + 1, "version": v, "holds": ok} for i, (v, ok) in enumerate(result.probes)]
    schema = pa.schema([("evaluation", pa.int64()), ("version", pa.int64()), ("holds", pa.bool_())])
    return pa.Table.from_pylist(rows, schema=schema)
