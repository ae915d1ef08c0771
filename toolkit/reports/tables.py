"""Write result tables to the terminal or a file: table (rich), csv, json (lines), parquet.

>>> import io, pyarrow as pa
>>> buf = io.StringIO()
>>> write_table(pa.table({"model": ["m"], "events": [2]}), "csv", stream=buf)
>>> buf.getvalue()
'model,events\\nm,2\\n'
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import sys
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal, TextIO, cast

import pyarrow as pa
import pyarrow.parquet as pq

from toolkit.errors import InvalidPathError
from toolkit.journal.location import open_output


def _json_default(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, bytes):
        return v.hex()
    raise TypeError(f"not JSON: {type(v).__name__}")


def _cell(v: Any) -> str:
    """A value as a terminal table shows it: exact decimals, floats to four significant digits.

    >>> [_cell(x) for x in (Decimal("2E-7"), Decimal("5.000000000"), Decimal("1.250000000"), Decimal("500"))]
    ['0.0000002', '5', '1.25', '500']
    >>> [_cell(x) for x in (0.0321, 2e-07, 12.345678, 1234.56, 0.0, 3.0)]
    ['0.0321', '2e-07', '12.35', '1,234.6', '0', '3']
    """
    if v is None:
        return ""
    if isinstance(v, dt.datetime):
        return v.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(v, Decimal):
        if v == 0:
            return "0"
        if not v.is_finite():
            return str(v)
        n = v.normalize()
        exponent = n.as_tuple().exponent
        return format(n, "f") if isinstance(exponent, int) and exponent >= -9 else f"{v:.3e}"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 1000 else f"{v:.4g}"
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
        # a file object: pyarrow reads a str as a URI, and file:///JOURNAL/... passed the -o check
        with _open(output, "wb") as sink:
            pq.write_table(table, sink)
        return
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(table.column_names)
        for batch in table.to_batches(max_chunksize=65_536):
            for row in batch.to_pylist():
                writer.writerow([_csv_cell(v) for v in row.values()])
        emit_text(buf.getvalue(), output, stream)
        return
    if fmt == "json":
        lines = [json.dumps(r, default=_json_default, ensure_ascii=False) for r in table.to_pylist()]
        emit_text("".join(line + "\n" for line in lines), output, stream)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    with contextlib.ExitStack() as stack:
        out = stream or (stack.enter_context(_open(output)) if output else sys.stdout)
        console = Console(file=out, width=200 if output or not out.isatty() else None)
        # cells, headers and titles are data, never rich markup ("[/x]" would raise, "[red]" vanish)
        rt = Table(title=Text(title) if title is not None else None, show_lines=False, header_style="bold")
        for name in table.column_names:
            numeric = (
                pa.types.is_integer(table.schema.field(name).type)
                or pa.types.is_floating(table.schema.field(name).type)
                or pa.types.is_decimal(table.schema.field(name).type)
            )
            rt.add_column(Text(name), justify="right" if numeric else "left", overflow="fold")
        shown = table.slice(0, max_rows)
        for row in zip(*(column.to_pylist() for column in shown.columns), strict=True):  # names may repeat
            rt.add_row(*(Text(_cell(v)) for v in row))
        console.print(rt)
        if table.num_rows > max_rows:
            console.print(f"… {table.num_rows - max_rows} more rows (use --format csv/json/parquet for all)")


def write_summary_table(
    summary: Mapping[str, Any],
    table: pa.Table,
    fmt: str = "table",
    output: str | None = None,
    *,
    rows: str = "rows",
    stream: TextIO | None = None,
    title: str | None = None,
) -> None:
    """A summary (name → value) and a table together, the same information in every format:

    - table: ``name: value`` lines, a blank line, then the table;
    - csv: a ``key,value`` section, a blank line, then the table (its header, its rows);
    - json: one object, ``{"summary": {...}, ROWS: [{...}, ...]}``;
    - parquet: the table, with the summary as JSON in the file's metadata under ``summary``.

    >>> buf = io.StringIO()
    >>> write_summary_table({"events": 2}, pa.table({"model": ["m"], "events": [2]}), "csv", stream=buf)
    >>> print(buf.getvalue(), end="")
    key,value
    events,2
    <BLANKLINE>
    model,events
    m,2
    >>> buf = io.StringIO()
    >>> write_summary_table({"events": 2}, pa.table({"model": ["m"]}), "json", rows="by_model", stream=buf)
    >>> buf.getvalue()
    '{"summary": {"events": 2}, "by_model": [{"model": "m"}]}\\n'
    """
    if fmt == "parquet":
        meta = {**(table.schema.metadata or {}), b"summary": json.dumps(summary, default=_json_default).encode()}
        write_table(table.replace_schema_metadata(meta), fmt, output)
        return
    if fmt == "json":
        doc = {"summary": dict(summary), rows: table.to_pylist()}
        emit_text(json.dumps(doc, default=_json_default, ensure_ascii=False) + "\n", output, stream)
        return
    with contextlib.ExitStack() as stack:
        out = cast(TextIO, stream or (stack.enter_context(_open(output)) if output else sys.stdout))
        if fmt == "csv":
            keys = pa.table({"key": list(summary), "value": [str(_csv_cell(v)) for v in summary.values()]})
            write_table(keys, "csv", stream=out)
        else:
            out.write("".join(f"{k:>14}: {_cell(v)}\n" for k, v in summary.items()))
        out.write("\n")
        write_table(table, fmt, stream=out, title=title)


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


def _prepare(output: str) -> None:
    """Create the missing folders of ``-o FILE`` (as report, checkpoint and export-compliance do)."""
    parent = Path(output).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidPathError(
            f"cannot write {output}: cannot create the folder {parent}: {e.strerror or e}",
            hint="choose -o FILE in a folder you can write to",
        ) from None


@contextlib.contextmanager
def _open(output: str, mode: Literal["w", "wb"] = "w") -> Iterator[IO[Any]]:
    """``-o FILE`` opened to write; a file with other names (a hard link to a journal file placed
    outside the journal) is replaced, never written through (:func:`open_output`)."""
    _prepare(output)
    try:
        with open_output(output, mode) as f:
            yield f
    except OSError as e:
        raise InvalidPathError(f"cannot write {output}: {e.strerror or e}", hint="choose another -o FILE") from None


def emit_text(text: str, output: str | None, stream: TextIO | None = None) -> None:
    """Write ``text`` to ``-o FILE`` (as :func:`write_table` does) or to ``stream``/stdout."""
    if output:
        with _open(output) as f:
            f.write(text)
    else:
        (stream or sys.stdout).write(text)
