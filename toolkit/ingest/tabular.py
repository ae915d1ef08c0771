"""CSV and Parquet files → canonical events, through a TOML mapping (``--mapping FILE``).

Without a mapping, the columns must carry canonical names (``stream_id``, ``event_type``,
``occurred_at``, ``data`` as JSON text, ...); a column that is not canonical stops the import
with a hint to write a mapping. With a mapping, see ``toolkit.ingest.mapping`` and
``docs/importers/generic.md``.

- CSV: the first row is the header; every cell is text (no type guessing, so a value never
  changes type when the file grows); an empty cell is null. ``.tsv`` files are tab-separated.
  A row is rejected with its line number when it has the wrong number of cells, is not UTF-8, or
  does not map to a valid event.
- Parquet: the file's own column types are used; nested columns are reachable with JSON paths.
  A row is rejected with its row number (1-based).
- Event ids: the mapped ``event_id``, else ``derive_id(format, file name, line/row number,
  SHA-256 of the row)``: importing the same file again adds nothing, and rows appended to it
  import on their own.

>>> CsvImporter().sniff("events.txt"), ParquetImporter().sniff("events.txt")
(False, False)
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from toolkit.ingest.base import (
    ORIGIN,
    Importer,
    ImportFormatError,
    ImportOptions,
    Rejection,
    SourceBatch,
    files_below,
    notes_only,
    read_path,
    rows_table,
    text_of,
)
from toolkit.ingest.jsonl import INPUT_WITH_ORIGIN, fill_stream_type, map_one
from toolkit.ingest.mapping import Mapping, mapping_for, row_digest

BATCH_ROWS: Final = 100_000
CSV_SUFFIXES: Final = (".csv", ".tsv")
PARQUET_SUFFIXES: Final = (".parquet", ".pq")
_FIELD_LIMIT: Final = 1 << 28  # cells up to 256 MiB (the csv module's default is 128 KiB)


def _files(path: str, suffixes: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    """The files to read for ``path`` and notes on the symlinks out of a directory that were not read."""
    p = read_path(path)
    if p.is_file():
        return [p], []
    return files_below(p, lambda f: f.suffix.lower() in suffixes, "/".join(suffixes))


def _batch(rows: list[dict[str, Any]], rejections: list[Rejection], read: int, options: ImportOptions) -> SourceBatch:
    table, unstorable = rows_table(rows, INPUT_WITH_ORIGIN, "csv")
    if options.stream_type and table.num_rows:
        table = fill_stream_type(table, options.stream_type)
    return SourceBatch(table, [*rejections, *unstorable], read)


class _Lines:
    """A CSV file's lines as the csv reader takes them; ``record`` gives those of the last record."""

    def __init__(self, f: TextIO) -> None:
        self._f = f
        self._taken: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._f)
        self._taken.append(line)
        return line

    def record(self) -> str:
        r"""The text of the lines taken since the last call, without the line break that ends it.

        >>> import io
        >>> lines = _Lines(io.StringIO('a,"b\r\nc", d\r\nnext\n', newline=""))
        >>> next(csv.reader(lines)), lines.record()
        (['a', 'b\r\nc', ' d'], 'a,"b\r\nc", d')
        """
        text = "".join(self._taken)
        self._taken.clear()
        return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith(("\n", "\r")) else text


class CsvImporter(Importer):
    name = "csv"
    description = "CSV (.csv, .tsv) with a header row; canonical column names, or any columns with --mapping"

    def sniff(self, path: str) -> bool:
        p = Path(path)
        if not p.is_file() or p.suffix.lower() not in CSV_SUFFIXES:
            return False
        with p.open("rb") as f:
            head = f.read(4096)
        return b"\x00" not in head

    def batches(self, path: str, options: ImportOptions) -> Iterator[SourceBatch]:
        if csv.field_size_limit() < _FIELD_LIMIT:
            csv.field_size_limit(min(_FIELD_LIMIT, sys.maxsize))
        files, notes = _files(path, CSV_SUFFIXES)
        yield from notes_only(notes)
        for file in files:
            yield from self._file(file, mapping_for(file, options.mapping), options)

    def _file(self, file: Path, mapping: Mapping | None, options: ImportOptions) -> Iterator[SourceBatch]:
        where = str(file)
        now = dt.datetime.now(dt.UTC)
        delimiter = "\t" if file.suffix.lower() == ".tsv" else ","
        rows: list[dict[str, Any]] = []
        rejections: list[Rejection] = []
        read = 0
        with file.open(encoding="utf-8", errors="surrogateescape", newline="") as f:
            lines = _Lines(f)
            reader = csv.reader(lines, delimiter=delimiter)
            header = self._header(reader, where)
            if header is None:
                yield _batch([], [], 0, options)
                return
            lines.record()
            active = mapping or Mapping.identity(header, where)
            last = reader.line_num
            while True:
                start = last + 1
                try:
                    cells = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:
                    last = reader.line_num
                    read += 1
                    text = lines.record().encode("utf-8", "surrogateescape")
                    rejections.append(Rejection(where, f"line {start}", f"not CSV: {e}", text_of(text)))
                    continue
                last = reader.line_num
                raw = lines.record()  # the record as the file holds it (quotes, line breaks, spaces)
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue
                read += 1
                try:
                    raw.encode("utf-8")
                except UnicodeEncodeError:
                    blob = raw.encode("utf-8", "surrogateescape")
                    rejections.append(Rejection(where, f"line {start}", "not UTF-8", text_of(blob)))
                    continue
                if len(cells) != len(header):
                    reason = f"expected {len(header)} cells (the header's), got {len(cells)}"
                    rejections.append(Rejection(where, f"line {start}", reason, text_of(raw)))
                    continue
                record = {name: (cell if cell != "" else None) for name, cell in zip(header, cells, strict=True)}
                digest = hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode("utf-8")).hexdigest()
                row = map_one(record, active, "csv", file, start, digest, now, rejections, f"line {start}", raw)
                if row is not None:
                    row[ORIGIN] = f"csv:{file}:{start}"  # where it was read (a source cell may say otherwise)
                    rows.append(row)
                if read >= BATCH_ROWS:
                    yield _batch(rows, rejections, read, options)
                    rows, rejections, read = [], [], 0
        yield _batch(rows, rejections, read, options)

    @staticmethod
    def _header(reader: Any, where: str) -> list[str] | None:
        try:
            header: list[str] = next(reader)
        except StopIteration:
            return None
        except csv.Error as e:
            raise ImportFormatError(
                f"{where}: line 1: cannot read the header: {e}", hint=_HEADER_HINT, path=where
            ) from e
        header = [h.strip().lstrip("\ufeff") for h in header]
        if not any(header):
            raise ImportFormatError(
                f"{where}: line 1: the header row is empty", hint="the first row names the columns", path=where
            )
        try:
            "".join(header).encode("utf-8")
        except UnicodeEncodeError:
            raise ImportFormatError(
                f"{where}: line 1: the header is not UTF-8",
                hint="save the file as UTF-8 (iconv -t UTF-8), or check that it is a CSV file at all",
                path=where,
            ) from None
        seen: set[str] = set()
        for name in header:
            if name in seen:
                raise ImportFormatError(
                    f"{where}: line 1: column {name!r} appears twice in the header", hint=_HEADER_HINT, path=where
                )
            seen.add(name)
        return header


_HEADER_HINT = "the first row names each column once (canonical names, or any names with --mapping FILE)"


class ParquetImporter(Importer):
    name = "parquet"
    description = "Parquet files; canonical column names, or any columns (nested too) with --mapping"

    def sniff(self, path: str) -> bool:
        p = Path(path)
        if not p.is_file() or p.suffix.lower() not in PARQUET_SUFFIXES:
            return False
        with p.open("rb") as f:
            return f.read(4) == b"PAR1"

    def batches(self, path: str, options: ImportOptions) -> Iterator[SourceBatch]:
        files, notes = _files(path, PARQUET_SUFFIXES)
        yield from notes_only(notes)
        for file in files:
            yield from self._file(file, mapping_for(file, options.mapping), options)

    def _file(self, file: Path, mapping: Mapping | None, options: ImportOptions) -> Iterator[SourceBatch]:
        where = str(file)
        now = dt.datetime.now(dt.UTC)
        try:
            pf = pq.ParquetFile(file)
            active = mapping or Mapping.identity(pf.schema_arrow.names, where)
            batches = pf.iter_batches(batch_size=BATCH_ROWS)
            number = 0
            for batch in batches:
                rows: list[dict[str, Any]] = []
                rejections: list[Rejection] = []
                for record in batch.to_pylist():
                    number += 1
                    row = map_one(
                        record,
                        active,
                        "parquet",
                        file,
                        number,
                        row_digest(record),
                        now,
                        rejections,
                        f"row {number}",
                        None,
                    )
                    if row is not None:
                        row[ORIGIN] = f"parquet:{file}:{number}"
                        rows.append(row)
                    else:  # the record as text, only for the rejected
                        rejections[-1] = replace(rejections[-1], record=text_of(_record_text(record)))
                yield _batch(rows, rejections, batch.num_rows, options)
        except (pa.ArrowException, OSError) as e:
            raise ImportFormatError(
                f"{where}: cannot read as Parquet: {e}",
                hint="check that the file is a complete Parquet file",
                path=where,
            ) from e


def _record_text(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=str)
