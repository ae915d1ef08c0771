"""Write result tables to the terminal or a file: table (rich), csv, json (lines), parquet.

>>> import io, pyarrow as pa
>>> buf = io.StringIO()
>>> write_table(pa.table({"model": ["m"], "events": [2]}), "csv", stream=buf)
>>> buf.getvalue()
'model,events\\nm,2\\n'
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sys
from decimal import Decimal
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from toolkit.errors import InvalidPathError


def _json_default(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, bytes):
        return v.hex()
    raise TypeError(f"not JSON: {type(v).__name__}")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, dt.datetime):
        return v.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(v, Decimal):
        return f"{v.normalize():f}" if v == v.to_integral() else f"{v:.6f}".rstrip("0")
    if isinstance(v, float):
        return f"{v:,.1f}"
    return str(v)


def write_table(
    table: pa.Table,
    fmt: str = "table",
    output: str | None = None,
    *,
    stream: TextIO | None = None,
    title: str | None = None,
    max_rows: int = 200,
) -> None:
    """Render ``table``; data goes to ``output`` or stdout, never mixed with progress."""
    if fmt == "parquet":
        if not output:
            raise InvalidPathError("--format parquet needs -o FILE", hint="e.g. -o result.parquet")
        pq.write_table(table, output)
        return
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(table.column_names)
        for batch in table.to_batches(max_chunksize=65_536):
            for row in batch.to_pylist():
                writer.writerow([_csv_cell(v) for v in row.values()])
        _emit(buf.getvalue(), output, stream)
        return
    if fmt == "json":
        lines = [json.dumps(r, default=_json_default, ensure_ascii=False) for r in table.to_pylist()]
        _emit("".join(line + "\n" for line in lines), output, stream)
        return
    from rich.console import Console
    from rich.table import Table

    out = stream or (open(output, "w", encoding="utf-8") if output else sys.stdout)
    try:
        console = Console(file=out, width=200 if output or not out.isatty() else None)
        rt = Table(title=title, show_lines=False, header_style="bold")
        for name in table.column_names:
            numeric = (
                pa.types.is_integer(table.schema.field(name).type)
                or pa.types.is_floating(table.schema.field(name).type)
                or pa.types.is_decimal(table.schema.field(name).type)
            )
            rt.add_column(name, justify="right" if numeric else "left", overflow="fold")
        for row in table.slice(0, max_rows).to_pylist():
            rt.add_row(*(_cell(row[c]) for c in table.column_names))
        console.print(rt)
        if table.num_rows > max_rows:
            console.print(f"… {table.num_rows - max_rows} more rows (use --format csv/json/parquet for all)")
    finally:
        if output and stream is None:
            out.close()


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Decimal):
        return format(v, "f")  # 0.000000000, never 0E-9
    return v


def _emit(text: str, output: str | None, stream: TextIO | None) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        (stream or sys.stdout).write(text)
