"""Canonical JSONL: one event per line with the journal's own field names (as ``journal append``).

Mapping: every field is the canonical column of the same name; ``stream_id``, ``event_type``
and ``data`` are required. A line without ``event_id`` gets ``uuid5(stream_id, line number,
SHA-256 of the line)``, so importing the file again (or after lines were appended to it) adds
only new events. A line that is not JSON, not an object, or not a valid event is rejected with
its file and line number.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from toolkit.errors import EventValidationError
from toolkit.ingest.base import Importer, ImportOptions, Rejection, SourceBatch, derive_id, read_path, text_of
from toolkit.journal.prepare import INPUT_SCHEMA, normalise_event

BATCH_LINES = 100_000


def jsonl_files(path: str, suffixes: tuple[str, ...] = (".jsonl", ".ndjson", ".json")) -> list[Path]:
    p = read_path(path)
    if p.is_file():
        return [p]
    return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in suffixes)


class CanonicalJsonlImporter(Importer):
    name = "jsonl"
    description = "JSON lines with canonical field names (stream_id, event_type, data, ...)"

    def sniff(self, path: str) -> bool:
        p = Path(path)
        if not p.is_file() or p.suffix not in (".jsonl", ".ndjson"):
            return False
        with p.open("rb") as f:
            first = f.readline(1 << 20)
        try:
            obj = json.loads(first)
        except ValueError:
            return False
        return isinstance(obj, dict) and "stream_id" in obj and "event_type" in obj

    def batches(self, path: str, options: ImportOptions) -> Iterator[SourceBatch]:
        now = dt.datetime.now(dt.UTC)
        for file in jsonl_files(path):
            rows: list[dict[str, object]] = []
            rejections: list[Rejection] = []
            read = 0
            with file.open("rb") as f:
                for lineno, raw in enumerate(f, start=1):
                    if not raw.strip():
                        continue
                    read += 1
                    row = self._row(raw, lineno, file, now, rejections)
                    if row is not None:
                        rows.append(row)
                    if read % BATCH_LINES == 0:
                        yield SourceBatch(pa.Table.from_pylist(rows, schema=INPUT_SCHEMA), rejections, read)
                        rows, rejections, read = [], [], 0
            yield SourceBatch(pa.Table.from_pylist(rows, schema=INPUT_SCHEMA), rejections, read)

    @staticmethod
    def _row(
        raw: bytes, lineno: int, file: Path, now: dt.datetime, rejections: list[Rejection]
    ) -> dict[str, object] | None:
        where = str(file)
        try:
            obj = json.loads(raw)
        except ValueError as e:  # also bad UTF-8
            rejections.append(Rejection(where, f"line {lineno}", f"not JSON: {e}", text_of(raw)))
            return None
        if not isinstance(obj, dict):
            rejections.append(Rejection(where, f"line {lineno}", "not a JSON object", text_of(raw)))
            return None
        try:
            row = normalise_event(obj, lineno - 1, now)
        except EventValidationError as e:
            reason = str(e).split("\n", 1)[0].split(": ", 1)[-1]
            rejections.append(Rejection(where, f"line {lineno}", reason, text_of(raw)))
            return None
        if row.get("event_id") is None:
            digest = hashlib.sha256(raw.rstrip(b"\r\n")).hexdigest()
            row["event_id"] = derive_id("jsonl", row["stream_id"], lineno, digest)
        row["source"] = row.get("source") or f"jsonl:{file}:{lineno}"
        return row
