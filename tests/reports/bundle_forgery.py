"""How a careful forger rewrites an unsigned compliance bundle (imported by the bundle tests):
the changed file, its CSV and JSON copies, and the manifest's digests, sizes and row counts all
agree afterwards, so only a check of what the files say can catch the change."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import polars as pl

from toolkit.journal.retention import file_sha256
from toolkit.journal.schema import COLUMN_NAMES
from toolkit.reports.compliance import _write_table_files
from toolkit.reports.compliance_html import render_report


def forge_table(bundle: Path, change: Callable[[pl.DataFrame], pl.DataFrame], table: str = "events") -> None:
    """Rewrite a table: its Parquet file, CSV and JSON copies, and the manifest's entries."""
    frame = change(pl.read_parquet(bundle / f"{table}.parquet"))
    _write_table_files(frame, table, bundle)
    m = json.loads((bundle / "manifest.json").read_text())
    for ext in ("parquet", "csv", "json"):
        p = bundle / f"{table}.{ext}"
        m["files"][p.name].update(sha256=file_sha256(p), bytes=p.stat().st_size, rows=frame.height)
    m["row_counts"][table] = frame.height
    m.pop("hmac_sha256", None)
    (bundle / "manifest.json").write_text(json.dumps(m))


def forge_file(bundle: Path, name: str, change: Callable[[str], str]) -> None:
    """Rewrite a text file of the bundle (report.html) and its manifest entry."""
    p = bundle / name
    p.write_text(change(p.read_text(encoding="utf-8")), encoding="utf-8")
    m = json.loads((bundle / "manifest.json").read_text())
    m["files"][name].update(sha256=file_sha256(p), bytes=p.stat().st_size)
    m.pop("hmac_sha256", None)
    (bundle / "manifest.json").write_text(json.dumps(m))


def forge_manifest(bundle: Path, change: Callable[[dict[str, object]], None]) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    change(m)
    m.pop("hmac_sha256", None)
    (bundle / "manifest.json").write_text(json.dumps(m))


def rederive(bundle: Path) -> None:
    """What a thorough forger does after rewriting the events: titles, summaries, links, runs and
    the page derived again with the export's own functions (causes outside the bundle: none)."""
    from toolkit.reports.compliance import AS_CAUSE
    from toolkit.reports.compliance_derived import derive_again

    events = pl.read_parquet(bundle / "events.parquet").select(COLUMN_NAMES)
    m = json.loads((bundle / "manifest.json").read_text())
    heads = {sid: h["head_version"] for sid, h in m["chain_heads"].items()}
    derived = derive_again(events, heads, events.clear().select(AS_CAUSE))
    forge_table(bundle, lambda _: derived.events.select([*COLUMN_NAMES, "title", "summary"]))
    forge_table(bundle, lambda _: derived.causation, "causation")
    forge_table(bundle, lambda _: derived.runs, "runs")
    m = json.loads((bundle / "manifest.json").read_text())
    forge_file(bundle, "report.html", lambda _: render_report(m, derived.events, derived.causation, derived.runs))
