"""``journal verify-export DIR``: check a compliance bundle against itself and, given the
journal, against it.

Against itself: the manifest is a bundle manifest (and its HMAC matches when a key is given);
every file it lists is there with the SHA-256, and table files with the row counts, it records;
no other file is there; the events recompute — each payload digest from its data and metadata
(a redaction marker is accepted and counted, never silently), each hash from its envelope,
payload digest and previous hash, consecutive versions of a stream chain to each other — and
the last exported event of each stream is the one the manifest names; the CSV and JSON copies of
each table say what its Parquet file says; what the export derives from the events (titles and
summaries, causation links, run summaries, report.html, the manifest's run list) is derived again
from them and compared (``compliance_derived``).

Against the journal: every exported event is still there with the same hash, and each stream's
head at export time is still in its chain (or was removed by a recorded purge) and was its head
then; payloads redacted since the export are reported as such.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from toolkit.engines.polars_engine import scan_events
from toolkit.errors import BundleError
from toolkit.journal import hashing
from toolkit.journal.retention import file_sha256, purge_anchors
from toolkit.journal.schema import ARROW_SCHEMA, COLUMN_NAMES, GENESIS_HASH
from toolkit.journal.side_tables import read_table
from toolkit.journal.store import Journal
from toolkit.reports.compliance import (
    AS_CAUSE,
    BUNDLE_FORMAT,
    MANIFEST,
    TABLES,
    Selection,
    manifest_mac,
    outside_causes,
    outside_frame,
    rendered_copies,
    select_events,
)
from toolkit.reports.compliance_derived import derive_again, derived_differences, first_differing_line

#: the only payload text a redaction leaves (``redaction.marker_for``): nothing else may ride along
_MARKER = re.compile(r'\{"redacted":"redaction-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}"\}')


def is_marker(data: str, metadata: str) -> bool:
    """Whether a payload is exactly a redaction marker (data and metadata the same marker).

    >>> is_marker('{"redacted":"redaction-20261206T172658Z-c70f7cea"}', '{"redacted":"redaction-20261206T172658Z-c70f7cea"}')
    True
    >>> is_marker('{"redacted":"x","text":"all fine"}', '{"redacted":"x","text":"all fine"}')
    False
    """
    return data == metadata and _MARKER.fullmatch(data) is not None


@dataclass(frozen=True)
class Problem:
    where: str  # a file of the bundle, or stream:version
    check: str
    expected: str
    found: str


@dataclass
class ExportCheck:
    bundle: str
    events: int = 0
    redacted_in_bundle: int = 0
    redacted_since: int = 0
    checked_against_journal: bool = False
    problems: list[Problem] = field(default_factory=list)
    empty: bool = False
    derived_checked: bool = False  # titles, summaries, links, runs and report.html recomputed and compared
    written_by: str | None = None  # the toolkit version the manifest names

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> pa.Table:
        schema = pa.schema([(n, pa.string()) for n in ("where", "check", "expected", "found")])
        return pa.Table.from_pylist([p.__dict__ for p in self.problems], schema=schema)


def load_manifest(bundle: Path, key: bytes | None) -> dict[str, Any]:
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(
            f"{bundle}: not a compliance bundle: it has no {MANIFEST}",
            hint=f"a bundle folder holds {MANIFEST}, report.html and {', '.join(TABLES)} as .parquet, .csv and .json; "
            "write one with: journal export-compliance (--correlation ID | --subject ID | --stream ID) -o DIR",
            path=str(bundle),
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleError(
            f"{path}: cannot read the bundle manifest: {e}", hint="pass the directory journal export-compliance wrote"
        ) from e
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not a compliance bundle manifest", hint="pass the directory journal export-compliance wrote")
    heads = doc.get("chain_heads")
    head_fields = {"head_version": int, "head_hash": str, "last_exported_version": int, "last_exported_hash": str}
    problem = (
        "row_counts is not an object of counts"
        if not isinstance(doc.get("row_counts"), dict)
        else "chain_heads is not an object of stream heads"
        if not isinstance(heads, dict | None)
        or not all(
            isinstance(h, dict) and all(isinstance(h.get(k), t) for k, t in head_fields.items()) for h in (heads or {}).values()
        )
        else None
    )
    if problem:
        raise BundleError(f"{path}: {problem}", hint="the manifest was edited or is not one export-compliance wrote")
    return doc


def verify_bundle(bundle_dir: str | Path, *, journal: Journal | None = None, key: bytes | None = None) -> ExportCheck:
    bundle = Path(bundle_dir).expanduser()
    if not bundle.is_dir():
        raise BundleError(f"{bundle}: not a directory", hint="pass the bundle directory (journal export-compliance -o DIR)")
    doc = load_manifest(bundle, key)
    report = ExportCheck(str(bundle), empty=bool(doc.get("empty")), written_by=str(doc.get("toolkit_version")))
    mac = doc.pop("hmac_sha256", None)
    if key is not None:
        if mac is None:
            report.problems.append(Problem(MANIFEST, "hmac", "a signed manifest", "no HMAC"))
        elif mac != manifest_mac(key, doc):
            report.problems.append(Problem(MANIFEST, "hmac", "HMAC of the manifest under the key", "mismatch: manifest altered or wrong key"))
    files: dict[str, dict[str, Any]] = doc.get("files") or {}
    if not isinstance(files, dict) or not all(
        isinstance(i, dict) and isinstance(i.get("sha256"), str) for i in files.values()
    ):
        raise BundleError(
            f"{bundle / MANIFEST}: its files list is not what export-compliance writes",
            hint='each entry is "name": {"sha256": ..., "bytes": ..., "rows": ...}',
        )
    for name, info in sorted(files.items()):
        if not _plain_name(name):  # a bundle is one flat directory: never hash (or show) a file elsewhere
            report.problems.append(Problem(name, "file_name", "a file name inside the bundle", "a path leading elsewhere"))
            continue
        p = bundle / name
        if not p.is_file():
            report.problems.append(Problem(name, "missing_file", info["sha256"], "absent"))
            continue
        digest = file_sha256(p)
        if digest != info["sha256"]:
            report.problems.append(Problem(name, "sha256", info["sha256"], digest))
            continue
        if name.endswith(".parquet") and info.get("rows") is not None:
            rows = pq.ParquetFile(p).metadata.num_rows
            if rows != info["rows"]:
                report.problems.append(Problem(name, "rows", str(info["rows"]), str(rows)))
    for p in sorted(bundle.iterdir()):
        if p.name != MANIFEST and p.name not in files:
            report.problems.append(Problem(p.name, "unlisted_file", "only the files the manifest lists", "extra file"))
    counts = doc.get("row_counts")
    for table in TABLES:  # every table of a bundle is there, with the rows the manifest counts
        name = f"{table}.parquet"
        if name not in files:
            report.problems.append(Problem(name, "missing_file", "a file the manifest lists", "not listed"))
        elif not isinstance(counts, dict) or files[name].get("rows") != counts.get(table):
            want = counts.get(table) if isinstance(counts, dict) else None
            report.problems.append(Problem(name, "rows", f"row_counts.{table} = {want}", str(files[name].get("rows"))))
    if any(p.where == "events.parquet" for p in report.problems):
        return report
    events = pq.read_table(bundle / "events.parquet")
    report.events = events.num_rows
    missing = [c for c in COLUMN_NAMES if c not in events.column_names]
    if missing:
        report.problems.append(Problem("events.parquet", "columns", "every canonical column", f"no {missing[0]!r}"))
        return report
    chained = len(report.problems)
    _check_chain(events.select(list(COLUMN_NAMES)).cast(ARROW_SCHEMA), doc, report)
    _check_copies(bundle, files, report)
    if not any(_is_event_problem(p) for p in report.problems[chained:]):
        _check_derived(bundle, files, events, doc, journal, report)
    if journal is not None:
        _check_journal(journal, events, doc, report)
    return report


def _plain_name(name: str) -> bool:
    """A bare file name (no directory part, not ``.``/``..``), as export-compliance writes them.

    >>> [_plain_name(n) for n in ("events.parquet", "../secret.txt", "/etc/hostname", "a/b", "..", "")]
    [True, False, False, False, False, False]
    """
    return bool(name) and name not in {".", ".."} and "/" not in name and "\\" not in name and "\0" not in name


def _check_copies(bundle: Path, files: dict[str, dict[str, Any]], report: ExportCheck) -> None:
    """The CSV and JSON copies say what their Parquet table (the one the chain checks) says.

    Their digests match the manifest; this catches a bundle written (or rewritten, manifest
    included) with copies that disagree with the verified events.
    """
    broken = {p.where for p in report.problems}
    for name in sorted(files):
        if not name.endswith(".parquet") or name in broken:
            continue
        stem = name.removesuffix(".parquet")
        copies = [f"{stem}.{ext}" for ext in ("csv", "json") if f"{stem}.{ext}" in files and f"{stem}.{ext}" not in broken]
        if not copies:
            continue
        expected = rendered_copies(pq.read_table(bundle / name))
        for copy in copies:
            found = (bundle / copy).read_text(encoding="utf-8")
            want = expected[copy.rsplit(".", 1)[1]]
            if found != want:
                line = first_differing_line(found, want)
                report.problems.append(Problem(copy, "matches_parquet", f"the rows of {name}", f"differs from line {line}"))


def _is_event_problem(p: Problem) -> bool:
    """A problem of the exported events themselves (their digests, chain, or chain heads)."""
    return p.check in {"payload", "hash", "prev_hash", "chain_head"}


def _check_derived(
    bundle: Path,
    files: dict[str, dict[str, Any]],
    events: pa.Table,
    doc: dict[str, Any],
    journal: Journal | None,
    report: ExportCheck,
) -> None:
    """The titles, summaries, causation links, run summaries and report.html say what the
    export derives from the bundle's events (``compliance_derived``).

    Skipped when the events fail their own checks (what they derive to would be a forger's) and,
    file by file, for a file already reported as changed or missing. The causes outside the
    bundle come from the journal (as it was at export: its events up to the manifest's
    ``max_position``; a cause a recorded purge removed since, as the bundle says); without it,
    as the bundle says (their stream, version and type are checked only with the journal).
    """
    broken = {p.where for p in report.problems}

    def frame(table: pa.Table) -> pl.DataFrame:
        out = pl.from_arrow(table)
        assert isinstance(out, pl.DataFrame)
        return out

    def table(name: str) -> pl.DataFrame | None:
        file = f"{name}.parquet"
        return None if file in broken or file not in files else frame(pq.read_table(bundle / file))

    bundled = frame(events)
    canonical = bundled.select(COLUMN_NAMES)
    causation = table("causation")
    claimed = _claimed_outside_causes(canonical, causation)
    outside = claimed if journal is None else _outside_causes_then(journal, canonical, doc, claimed)
    heads = doc.get("chain_heads") or {}
    derived = derive_again(canonical, {sid: h["head_version"] for sid, h in heads.items()}, outside)
    page: str | None = None
    if "report.html" not in files:
        report.problems.append(Problem("report.html", "missing_file", "a file the manifest lists", "not listed"))
    elif "report.html" not in broken and (journal is not None or causation is not None):
        page = (bundle / "report.html").read_text(encoding="utf-8", errors="replace")
    found = {"events": bundled, "causation": causation, "runs": table("runs"), "report.html": page}
    report.problems.extend(Problem(*d) for d in derived_differences(derived, doc, found))
    report.derived_checked = True


def _claimed_outside_causes(events: pl.DataFrame, causation: pl.DataFrame | None) -> pl.DataFrame:
    """The causes outside the bundle as its causation table names them: one row per cause, with
    the effects it is named for (``claimed_for``)."""
    empty = outside_frame(events.clear().select(AS_CAUSE))
    named = ["cause_event_id", "cause_stream_id", "cause_version", "cause_event_type"]
    if causation is None or not all(c in causation.columns for c in [*named, "cause_in_bundle", "effect_event_id"]):
        return empty
    claimed = causation.filter(~pl.col("cause_in_bundle").fill_null(True), pl.col("cause_stream_id").is_not_null())
    claimed = claimed.select(*named, "effect_event_id").cast({c: empty.schema[c] for c in named}, strict=False)
    claimed = claimed.group_by(named, maintain_order=True).agg(claimed_for=pl.col("effect_event_id"))
    return outside_frame(claimed)


def _outside_causes_then(
    journal: Journal, events: pl.DataFrame, doc: dict[str, Any], claimed: pl.DataFrame
) -> pl.DataFrame:
    """The causes outside the bundle as the journal held them at export: its events up to the
    manifest's ``max_position``, and a cause a recorded purge removed since as the bundle names it."""
    then = doc.get("max_position")
    held = outside_causes(journal, events, max_position=then if isinstance(then, int) else None)
    gone = claimed.join(held, on=["cause_stream_id", "cause_version"], how="anti")  # not held (any more)
    if gone.height:
        purged = _purged_hashes(journal, sorted(set(gone.get_column("cause_stream_id").to_list())))
        keep = [(s, v) in purged for s, v in gone.select("cause_stream_id", "cause_version").iter_rows()]
        held = pl.concat([held, gone.filter(pl.Series(keep, dtype=pl.Boolean))], how="vertical_relaxed")
    return held


def _check_chain(events: pa.Table, doc: dict[str, Any], report: ExportCheck) -> None:
    if events.num_rows == 0:
        return
    t = events.sort_by([("stream_id", "ascending"), ("version", "ascending")])
    digests = hashing.payload_digests(t.column("data"), t.column("metadata"))
    envelopes = hashing.envelope_texts(t).to_pylist()
    rows = t.select(["stream_id", "version", "payload_sha256", "prev_hash", "hash", "data", "metadata"]).to_pylist()
    prev: dict[str, Any] | None = None
    last: dict[str, tuple[int, str]] = {}
    for i, r in enumerate(rows):
        where = f"{r['stream_id']}:v{r['version']}"
        if prev is not None and (prev["stream_id"], prev["version"]) == (r["stream_id"], r["version"]):
            report.problems.append(Problem(where, "duplicate_row", "one row per stream version", "a second row"))
        if digests[i] != r["payload_sha256"]:
            if is_marker(r["data"], r["metadata"]):
                report.redacted_in_bundle += 1
            else:
                report.problems.append(Problem(where, "payload", r["payload_sha256"], digests[i]))
        h = hashing.event_hash(r["prev_hash"], r["payload_sha256"], envelopes[i])
        if h != r["hash"]:
            report.problems.append(Problem(where, "hash", h, r["hash"]))
        if prev is not None and prev["stream_id"] == r["stream_id"] and prev["version"] + 1 == r["version"]:
            if r["prev_hash"] != prev["hash"]:
                report.problems.append(Problem(where, "prev_hash", prev["hash"], r["prev_hash"]))
        if r["version"] == 1 and r["prev_hash"] != GENESIS_HASH:
            report.problems.append(Problem(where, "prev_hash", GENESIS_HASH, r["prev_hash"]))
        last[r["stream_id"]] = (r["version"], r["hash"])
        prev = r
    heads = doc.get("chain_heads") or {}
    for sid, head in sorted(heads.items()):
        got = last.get(sid)
        want = (head.get("last_exported_version"), head.get("last_exported_hash"))
        if got != want:
            report.problems.append(Problem(f"{sid}", "chain_head", f"v{want[0]} {want[1]}", f"v{got[0]} {got[1]}" if got else "absent"))
    extra = sorted(set(last) - set(heads))
    for sid in extra:
        report.problems.append(Problem(sid, "chain_head", "a head in the manifest", "stream not in the manifest"))


def _check_journal(journal: Journal, events: pa.Table, doc: dict[str, Any], report: ExportCheck) -> None:
    report.checked_against_journal = True
    heads: dict[str, dict[str, Any]] = doc.get("chain_heads") or {}
    streams = sorted(set(events.column("stream_id").to_pylist()) | set(heads))
    now = (
        scan_events(journal, stream_ids=streams or None)
        .filter(pl.col("stream_id").is_in(streams))
        .select("event_id", "stream_id", "version", "position", "hash", "data", "metadata")
        .collect()
    )
    # by stream too: imported data may give events of two streams one id (journal verify names them)
    by_id = {(r["event_id"], r["stream_id"]): r for r in now.to_dicts()}
    purged = _purged_hashes(journal, streams)
    for r in events.select(["event_id", "stream_id", "version", "hash", "data", "metadata"]).to_pylist():
        cur = by_id.get((r["event_id"], r["stream_id"]))
        sid, v, h = r["stream_id"], r["version"], r["hash"]
        where = f"{sid}:v{v}"
        if cur is None:
            gone = purged.get((sid, v))
            if gone is None:
                report.problems.append(Problem(where, "missing_in_journal", h, "absent"))
            elif gone and gone != h:  # the purge's anchor or archive still knows the event's hash
                report.problems.append(Problem(where, "purged_hash", gone, h))
        elif cur["hash"] != h:
            report.problems.append(Problem(where, "journal_hash", h, cur["hash"]))
        elif (cur["data"], cur["metadata"]) != (r["data"], r["metadata"]):
            if is_marker(cur["data"], cur["metadata"]):
                report.redacted_since += 1
            else:  # a redaction is never undone: a marker in the bundle is one in the journal too
                report.problems.append(Problem(where, "journal_payload", "the journal's data and metadata", "differs"))
    by_version = {(r["stream_id"], r["version"]): r["hash"] for r in now.to_dicts()}
    anchors = purge_anchors(journal)
    for sid, head in sorted(heads.items()):
        key = (sid, head["head_version"])
        if key in by_version:
            if by_version[key] != head["head_hash"]:
                report.problems.append(Problem(f"{sid}:v{head['head_version']}", "journal_head", head["head_hash"], by_version[key]))
        elif not any(k > head["head_version"] for k in anchors.get(sid, {})):
            report.problems.append(Problem(f"{sid}:v{head['head_version']}", "journal_head", head["head_hash"], "absent"))
    then = doc.get("max_position")
    if isinstance(then, int):  # the head was the head: no later event of the stream was in the journal then
        later = now.filter(pl.col("position") <= then).group_by("stream_id").agg(pl.col("version").max())
        for sid, v in later.sort("stream_id").iter_rows():
            if sid in heads and v > heads[sid]["head_version"]:
                where, expected = f"{sid}:v{heads[sid]['head_version']}", f"the stream's head at export (position <= {then})"
                report.problems.append(Problem(where, "journal_head", expected, f"v{v} was in the journal then"))
    _check_complete(journal, events, doc, report)


def _purged_hashes(journal: Journal, streams: list[str]) -> dict[tuple[str, int], str]:
    """(stream, version) → hash of every event of ``streams`` a recorded purge removed: from its
    archive when that is still there with its recorded digest, else the anchor (the last removed
    event's hash) or "" (removed, hash no longer known)."""
    purges = read_table(journal, "purges")
    rows = purges.filter(pc.is_in(purges.column("stream_id"), pa.array(streams, pa.string()))).to_pylist()
    out: dict[tuple[str, int], str] = {}
    archives: dict[str, list[str]] = {}
    for row in rows:
        sid, first_kept = row["stream_id"], row["first_kept_version"]
        for v in range(max(1, first_kept - row["removed_events"]), first_kept):
            out.setdefault((sid, v), "")
        out[(sid, first_kept - 1)] = row["anchor_hash"]
        if row["archive_path"]:
            archives.setdefault(row["archive_path"], []).append(row["archive_sha256"])
    for path, digests in archives.items():
        if Path(path).is_file() and file_sha256(path) in digests:
            t = pq.read_table(path, columns=["stream_id", "version", "hash"], filters=[("stream_id", "in", streams)])
            out.update(zip(zip(t.column("stream_id").to_pylist(), t.column("version").to_pylist(), strict=True),
                           t.column("hash").to_pylist(), strict=True))
    return out


def _check_complete(journal: Journal, events: pa.Table, doc: dict[str, Any], report: ExportCheck) -> None:
    """Every event the selection matched when the bundle was written is in it: the selection is
    run again over the events that were in the journal then (position at most the manifest's
    ``max_position``; for bundles written before it was recorded, recorded before ``exported_at``)."""
    sel = doc.get("selection")
    if not isinstance(sel, dict):
        report.problems.append(Problem(MANIFEST, "selection", "the selection the bundle was written for", "absent"))
        return
    try:
        selection = Selection(
            correlation_id=sel.get("correlation_id"),
            subject_id=sel.get("subject_id"),
            stream_ids=tuple(sel["stream_ids"]) if sel.get("stream_ids") else None,
            since=dt.datetime.fromisoformat(sel["since"]) if sel.get("since") else None,
            until=dt.datetime.fromisoformat(sel["until"]) if sel.get("until") else None,
        )
        selection.check()
    except (BundleError, TypeError, ValueError) as e:
        report.problems.append(Problem(MANIFEST, "selection", "a valid selection", str(e).splitlines()[0][:200]))
        return
    matched = select_events(journal, selection)
    if isinstance(doc.get("max_position"), int):
        then = matched.filter(pl.col("position") <= doc["max_position"])
    else:
        try:
            exported_at = dt.datetime.fromisoformat(str(doc.get("exported_at")))
        except ValueError:
            report.problems.append(Problem(MANIFEST, "exported_at", "the time of the export", str(doc.get("exported_at"))))
            return
        then = matched.filter(pl.col("recorded_at") < exported_at)
    have = set(events.column("event_id").to_pylist())
    for sid, v, eid in then.select("stream_id", "version", "event_id").iter_rows():
        if eid not in have:
            report.problems.append(Problem(f"{sid}:v{v}", "missing_in_bundle", eid, "absent: the selection matches it"))


__all__ = ["ExportCheck", "Problem", "verify_bundle"]
