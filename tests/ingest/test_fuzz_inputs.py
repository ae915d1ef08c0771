"""Fuzzed exports (truncated, wrong types, bad UTF-8, huge lines) through ``import_paths``.

Whatever the bytes, an import with ``on_error="quarantine"`` either finishes — every rejection
with a location and a reason — or raises a ``ToolkitError`` (a whole file it cannot read); never
anything else.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit.errors import ToolkitError
from toolkit.ingest.runner import ImportReport, import_paths
from toolkit.journal import Journal

FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], deadline=None)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
COLUMNS = [
    "stream_id",
    "stream_type",
    "event_type",
    "occurred_at",
    "model",
    "tokens_in",
    "cost_usd",
    "is_error",
    "data",
    "metadata",
    "event_id",
    "traceparent",
    "duration_ms",
    "colour",
]
good_times = st.sampled_from(
    ["2026-11-01T09:00:00Z", "2026-11-01T09:00:00.123456789+02:00", "2026-11-01 09:00:00", "2026-13-01T00:00:00Z"]
)
events = st.fixed_dictionaries(
    {
        "stream_id": st.sampled_from(["r1", "r2", "", "a/b"]),
        "event_type": st.sampled_from(["user_message", "error", ""]),
        "data": values,
    },
    optional={
        name: st.one_of(values, good_times) for name in COLUMNS if name not in ("stream_id", "event_type", "data")
    },
)


def damage(draw: st.DrawFn, line: bytes) -> bytes:
    """Leave a line alone, cut it, splice in bad UTF-8 or NUL, or make it huge."""
    how = draw(st.sampled_from(["keep", "keep", "cut", "bytes", "huge"]))
    if how == "cut" and line:
        return line[: draw(st.integers(0, len(line) - 1))]
    if how == "bytes":
        at = draw(st.integers(0, len(line)))
        return line[:at] + draw(st.sampled_from([b"\xff\xfe", b"\x00", b"\xc3", b"\r", b'"'])) + line[at:]
    if how == "huge":
        return line[:-1] + b', "zz": "' + b"x" * (1 << 20) + b'"}' if line.endswith(b"}") else line + b"x" * (1 << 20)
    return line


@st.composite
def jsonl_files(draw: st.DrawFn) -> bytes:
    lines = [json.dumps(e, ensure_ascii=draw(st.booleans())).encode() for e in draw(st.lists(events, max_size=6))]
    lines = [damage(draw, line) for line in lines]
    return b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b"\r\n"]))


messages = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool", "developer", "", 7])},
    optional={
        "content": values,
        "tool_call_id": st.sampled_from(["c1", "c2", None, 3]),
        "name": scalars,
        "tool_calls": st.one_of(
            values,
            st.lists(
                st.fixed_dictionaries(
                    {"id": st.sampled_from(["c1", "c2", None]), "type": st.just("function")},
                    optional={
                        "function": st.fixed_dictionaries(
                            {}, optional={"name": scalars, "arguments": st.one_of(st.text(max_size=12), values)}
                        )
                    },
                ),
                max_size=2,
            ),
        ),
        "timestamp": st.one_of(scalars, good_times),
    },
)
runs = st.one_of(
    st.lists(st.one_of(messages, scalars), max_size=4),
    st.fixed_dictionaries(
        {"messages": st.one_of(st.lists(st.one_of(messages, scalars), max_size=4), scalars)},
        optional={"id": scalars, "task": values, "created_at": st.one_of(scalars, good_times), "metadata": values},
    ),
)


@st.composite
def chat_files(draw: st.DrawFn) -> bytes:
    lines = [damage(draw, json.dumps(r).encode()) for r in draw(st.lists(runs, min_size=1, max_size=4))]
    return b"\n".join(lines) + b"\n"


cells = st.one_of(
    st.text(max_size=10),
    st.sampled_from(["", '"', '""', "a,b", "line\nbreak", "2026-11-01T09:00:00Z", "12", "-3", "true"]),
)


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    header = draw(
        st.lists(
            st.sampled_from(["stream_id", "event_type", "occurred_at", "data", "tokens_in", "is_error", "colour"]),
            min_size=1,
            max_size=5,
            unique=True,
        )
    )
    rows = draw(st.lists(st.lists(cells, max_size=len(header) + 1), max_size=5))
    text = "\n".join([",".join(header), *(",".join(_quote(c, draw) for c in row) for row in rows)]).encode(
        "utf-8", "surrogatepass"
    )
    return damage(draw, text)


def _quote(cell: str, draw: st.DrawFn) -> str:
    return '"' + cell.replace('"', '""') + '"' if draw(st.booleans()) else cell


@contextmanager
def export(name: str, body: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(body)
        yield path


def check(journal: Journal, path: Path, fmt: str, *, dry_run: bool = True) -> ImportReport | None:
    try:
        report = import_paths(journal, [str(path)], fmt=fmt, on_error="quarantine", dry_run=dry_run)
    except ToolkitError as e:
        assert str(e)
        return None
    for r in report.rejections:
        assert r.reason and r.location and r.source
    assert report.read >= report.imported + report.rejected or dry_run
    return report


@pytest.fixture(scope="module")
def shared() -> Iterator[Journal]:
    """One in-memory journal for all examples (dry runs never write to it)."""
    journal = Journal.in_memory()
    yield journal
    journal.close()


@FUZZ
@given(jsonl_files())
def test_fuzzed_jsonl(shared: Journal, body: bytes) -> None:
    with export("events.jsonl", body) as path:
        check(shared, path, "jsonl")


@FUZZ
@given(chat_files())
def test_fuzzed_chat(shared: Journal, body: bytes) -> None:
    with export("runs.jsonl", body) as path:
        check(shared, path, "chat")


@FUZZ
@given(st.lists(runs, max_size=3), st.booleans())
def test_fuzzed_chat_json_list(shared: Journal, doc: list[Any], cut: bool) -> None:
    body = json.dumps(doc).encode()
    with export("runs.json", body[: len(body) // 2] if cut else body) as path:
        check(shared, path, "chat")


@FUZZ
@given(csv_files())
def test_fuzzed_csv(shared: Journal, body: bytes) -> None:
    with export("events.csv", body) as path:
        check(shared, path, "csv")


@settings(FUZZ, max_examples=10)
@given(jsonl_files())
def test_fuzzed_jsonl_really_appended(body: bytes) -> None:
    """Not a dry run: what passes the importer also passes the journal's append."""
    journal = Journal.in_memory()
    try:
        with export("events.jsonl", body) as path:
            check(journal, path, "jsonl", dry_run=False)
    finally:
        journal.close()
