"""The AgentStore bulk reader gives exactly the rows, rejections and notes of the line-by-line reader.

Lines are generated the way Go (and other writers) could write them — sorted or unsorted keys,
escapes, exponents, floats, nested values, damaged lines — and each file is read twice: with
the bulk reader (the default) and with every line sent to the reference reader.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolkit.ingest.agentstore as agentstore
from toolkit.ingest.agentstore import AgentStoreImporter, read_events_file
from toolkit.ingest.agentstore_bulk import bulk_lines
from toolkit.ingest.base import ImportOptions
from toolkit.ingest.runner import import_paths
from toolkit.journal import Journal

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples" / "agentstore"


def _read(file: Path) -> tuple[pa.Table | None, list[tuple[str, str, str | None]], list[str], int]:
    notes: list[str] = []
    batches = list(read_events_file(file, "agent_session", notes))
    tables = [b.events for b in batches if b.events.num_rows]
    rejections = [(r.location, r.reason, r.record) for b in batches for r in b.rejections]
    return (pa.concat_tables(tables) if tables else None), rejections, notes, sum(b.read for b in batches)


def _both(file: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    bulk = _read(file)
    with monkeypatch.context() as m:
        m.setattr(agentstore, "bulk_lines", lambda block, *_: (None, list(range(len(agentstore._split_lines(block))))))
        reference = _read(file)
    return bulk, reference


def _same(file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bulk, reference = _both(file, monkeypatch)
    if reference[0] is None:
        assert bulk[0] is None
    else:
        assert bulk[0] is not None
        for name in reference[0].column_names:
            assert bulk[0].column(name).to_pylist() == reference[0].column(name).to_pylist(), name
    assert bulk[1:] == reference[1:]


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8) | st.sampled_from(
    ["plain", "<&>", 'q"uote', "back\\slash", "new\nline", "tab\t", "é😕", "\u2028", "", " ", "a b", "#"]
)
number = (
    st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, -0.0, 0.5, 19.99, 2e-7, 1e21, 0.0000576, 1.5, 100.0, 123456.789])
)
scalar = st.none() | st.booleans() | text | number
json_value = st.recursive(
    scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8
)
column_value = st.none() | number | text | st.sampled_from(["gpt-4o", "o'brien", 12, 1.0, "12", True, [1], {"a": 1}])
metadata = st.dictionaries(
    st.sampled_from(["tokens_in", "tokens_out", "model", "tool_name", "duration_ms", "cost_usd"]) | text,
    column_value | json_value,
    max_size=4,
)


def _dump(value: Any, style: str) -> str:
    if style == "go":  # Go: compact, map keys sorted, HTML escapes
        out = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        return out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    if style == "python":
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    if style == "unsorted":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(value)  # spaces, ASCII escapes


@st.composite
def event_line(draw: st.DrawFn, seq: int) -> str:
    style = draw(st.sampled_from(["go", "python", "unsorted", "spaced"]))
    record = {
        "session_id": draw(st.sampled_from(["s1", "s1", "other"])),
        "sequence_number": draw(st.sampled_from([seq, seq, 1, 0])),
        "type": draw(st.sampled_from(["llm_response", "error", "tool_result", "it's", ""])),
        "payload": draw(json_value),
        "timestamp": draw(
            st.sampled_from(
                [
                    "2026-11-21T23:43:22.448478445Z",
                    "2026-11-21T23:43:22Z",
                    "1969-12-31T23:59:59.5Z",
                    "2026-11-21T23:43:22",
                ]
            )
        ),
        "metadata": draw(metadata),
    }
    body = "{" + ",".join(f"{json.dumps(k)}:{_dump(v, style)}" for k, v in record.items()) + "}"
    damage = draw(st.sampled_from(["", "", "", "cut", "glue"]))
    if damage == "cut":
        body = body[: draw(st.integers(1, max(1, len(body) - 1)))]
    elif damage == "glue":
        body = body[: len(body) // 2] + body
    return body


@given(data=st.data())
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
def test_bulk_and_line_by_line_readers_agree(data: st.DataObject, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [data.draw(event_line(i)) for i in range(1, data.draw(st.integers(1, 12)))]
    ending = data.draw(st.sampled_from(["\n", ""]))
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "s1.jsonl"
        file.write_text("\n".join(lines) + ending, encoding="utf-8")
        _same(file, monkeypatch)


@pytest.mark.parametrize("file", sorted(SAMPLES.rglob("events/*.jsonl")), ids=lambda p: p.name)
def test_bulk_and_line_by_line_readers_agree_on_the_real_files(file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _same(file, monkeypatch)


def test_lines_as_go_writes_them_are_read_in_bulk() -> None:
    lines = [
        {"content": "hi", "role": "user"},
        ["fetch_diff", "run_tests"],
        "just a string",
        None,
        {"args": {"cmd": "go test ./..."}, "tool": "run_tests"},
        {"amount": 19.99, "duplicate": True, "invoices": 2, "note": 'a "quoted"\nline'},
    ]
    metas: list[dict[str, Any]] = [
        {"worker_id": "w-1"},
        {"worker_id": "w-1", "tokens_in": 412, "model": "gpt-4o"},
        {"tokens_out": 58, "model": "gpt-4o", "duration_ms": 812, "cost_usd": 0.00161},
        {},
        {"tool_name": "run_tests", "duration_ms": 240.5, "extra": {"kind": "x", "ref": "1"}, "worker_id": "w"},
        {"cost_usd": 0.000576},
    ]
    text = "".join(
        json.dumps(
            {
                "session_id": "s1",
                "sequence_number": i + 1,
                "type": "error" if i == 3 else "custom",
                "payload": payload,
                "timestamp": "2026-11-21T23:43:22.448478445Z",
                "metadata": meta,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )
        + "\n"
        for i, (payload, meta) in enumerate(zip(lines, metas, strict=True))
    )
    chunk, slow = bulk_lines(text.encode(), 1, agentstore._times, agentstore._error_of)
    assert slow == [] and chunk is not None and chunk.num_rows == len(lines)
    assert chunk.column("metadata")[4].as_py() == (
        '{"extra":{"kind":"x","ref":"1"},"source_sequence_number":5,"worker_id":"w"}'
    )


def test_large_imports_report_progress_block_by_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal: Journal
) -> None:
    monkeypatch.setattr(agentstore, "BLOCK_BYTES", 4096)
    events = tmp_path / "data" / "events"
    events.mkdir(parents=True)
    with (events / "s1.jsonl").open("w") as f:
        for seq in range(1, 501):
            record = {"session_id": "s1", "sequence_number": seq, "type": "custom", "payload": {"n": seq}}
            f.write(json.dumps({**record, "timestamp": "2026-11-21T23:43:22Z", "metadata": {}}) + "\n")
    steps: list[int] = []
    report = import_paths(journal, [str(tmp_path / "data")], fmt="agentstore", progress=steps.append)
    assert report.imported == 500
    assert len([s for s in steps if s]) > 10 and sum(steps) == 500


def test_importer_reads_a_file_of_many_blocks_like_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = SAMPLES / "sample-data"
    whole = [b.events for b in AgentStoreImporter().batches(str(src), ImportOptions()) if b.events.num_rows]
    monkeypatch.setattr(agentstore, "BLOCK_BYTES", 300)
    small = [b.events for b in AgentStoreImporter().batches(str(src), ImportOptions()) if b.events.num_rows]
    assert pa.concat_tables(whole).equals(pa.concat_tables(small))


def _pitfall_dir(root: Path) -> Path:
    """One data dir holding every pitfall of the spec that lives in an events file."""
    go = {"html": "<a & b>", "n": 1}
    lines = [
        json.dumps(r, separators=(",", ":"), ensure_ascii=False)
        for r in [
            {
                "session_id": "s1",
                "sequence_number": 1,
                "type": "user_message",
                "payload": "a string",
                "timestamp": "2026-11-21T23:43:22.448478445Z",
                "metadata": {"worker_id": "w-1"},
            },
            {
                "session_id": "s1",
                "sequence_number": 2,
                "type": "plan_created",
                "payload": ["a", "b"],
                "timestamp": "2026-11-21T23:43:22Z",
                "metadata": {},
            },
            {
                "session_id": "s1",
                "sequence_number": 3,
                "type": "custom",
                "payload": None,
                "timestamp": "2026-11-21T23:43:22.1Z",
                "metadata": {"extra": {"k": [1, 2.5]}},
            },
            {
                "session_id": "s1",
                "sequence_number": 4,
                "type": "error",
                "payload": {"error": "HTTP 429", "retry_after_s": 2},
                "timestamp": "1969-12-31T23:59:59.5Z",
                "metadata": {"tokens_in": 12, "model": "gpt-4o", "cost_usd": 0.00161, "duration_ms": 812},
            },
            # two writers: the same sequence number twice, once an exact copy
            {
                "session_id": "s1",
                "sequence_number": 4,
                "type": "custom",
                "payload": {"other": True},
                "timestamp": "2026-11-21T23:43:23Z",
                "metadata": {},
            },
            {
                "session_id": "s1",
                "sequence_number": 5,
                "type": "tool_called",
                "payload": {"x": "y" * (1 << 20)},
                "timestamp": "2026-11-21T23:43:24Z",
                "metadata": {"tool_name": "run_tests"},
            },
        ]
    ]
    lines.append(lines[-2])
    lines.append(
        json.dumps(go)
        .join(
            [
                '{"session_id":"s1","sequence_number":6,"type":"custom","payload":',
                ',"timestamp":"2026-11-21T23:43:25Z","metadata":{}}',
            ]
        )
        .replace("<", "\\u003c")
    )
    lines.append(
        '{"session_id":"s1","sequence_number":7,"type":"cus{"session_id":"s1","sequence_number":8,'
        '"type":"custom","payload":{},"timestamp":"2026-11-21T23:43:26Z","metadata":{}}'
    )
    lines.append(
        '{"session_id":"s1","sequence_number":9,"type":"custom","payload":{},"timestamp":"yesterday","metadata":{}}'
    )
    events = root / "events"
    events.mkdir(parents=True)
    (events / "s1.jsonl").write_text("\n".join(lines) + '\n{"session_id":"s1","sequence_nu', encoding="utf-8")
    (root / "sessions").mkdir()
    (root / "sessions" / "s1.json").write_text(json.dumps({"id": "s1", "event_count": 3}))
    return root


def _batches(path: Path) -> list[tuple[Any, ...]]:
    return [
        (b.events, [(r.source, r.location, r.reason, r.record) for r in b.rejections], b.read, b.notes, b.snapshots)
        for b in AgentStoreImporter().batches(str(path), ImportOptions())
    ]


DATA_DIRS = sorted({p.parent.parent for p in SAMPLES.rglob("events/*.jsonl")})
SHARED = REPO.parent / "shared" / "formats" / "agentstore"
if SHARED.is_dir():
    DATA_DIRS += sorted({p.parent.parent for p in SHARED.rglob("events/*.jsonl")})


@pytest.mark.parametrize("source", [*DATA_DIRS, "pitfalls"], ids=str)
def test_the_importer_gives_the_same_batches_with_and_without_the_bulk_reader(
    source: Path | str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _pitfall_dir(tmp_path / "pitfalls") if source == "pitfalls" else Path(source)
    bulk = _batches(path)
    with monkeypatch.context() as m:
        m.setattr(agentstore, "bulk_lines", lambda block, *_: (None, list(range(len(agentstore._split_lines(block))))))
        reference = _batches(path)
    assert len(bulk) == len(reference)
    for got, want in zip(bulk, reference, strict=True):
        assert got[0].schema == want[0].schema
        assert got[0].to_pylist() == want[0].to_pylist()
        assert got[1:] == want[1:]
    if source == "pitfalls":  # the file holds what the test says: taken in bulk, left over, rejected
        events = pa.concat_tables([b[0] for b in bulk if b[0].num_rows])
        reasons = [r[2] for b in bulk for r in b[1]]
        assert events.num_rows == 8 and len(reasons) == 3, reasons
        chunk, slow = bulk_lines(
            (path / "events" / "s1.jsonl").read_bytes(), 1, agentstore._times, agentstore._error_of
        )
        assert chunk is not None and chunk.num_rows == 7 and slow == [7, 8, 9, 10]  # Go escapes, damage


NUMBER_TEXTS = ["0", "-0", "7", "-12", "0.5", "-0.5", "1.0", "1.50", "0.0001", "0.00001", "0.00012345", "0.123456789",
                "1234567.12345678", "12345678.5", "1e5", "1E-7", "2.5e+3", "123456789012345678", "1234567890123456789",
                "-0.0", "00", "19.99", "0.00161"]  # fmt: skip


@pytest.mark.parametrize("number", NUMBER_TEXTS)
def test_number_texts_as_any_writer_may_write_them_read_the_same(
    number: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "s1.jsonl"
    head = '{"session_id":"s1","sequence_number":1,"type":"custom","payload":'
    tail = ',"timestamp":"2026-11-21T23:43:22Z","metadata":{"duration_ms":' + number + ',"extra":[' + number + "]}}"
    file.write_text("".join(f"{head}{p}{tail}\n" for p in (number, f'{{"a":{number},"b":[{number}]}}')))
    _same(file, monkeypatch)


@pytest.mark.parametrize(
    "layout",
    ["blank lines", "whitespace lines", "byte order mark", "blank last line", "no newline at the end"],
)
def test_blank_lines_and_a_byte_order_mark_read_the_same(
    layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        json.dumps(
            {
                "session_id": "s1",
                "sequence_number": seq,
                "type": "custom",
                "payload": {"n": seq},
                "timestamp": "2026-11-21T23:43:22Z",
                "metadata": {"worker_id": "w"},
            },
            separators=(",", ":"),
        )
        for seq in range(1, 6)
    ]
    text = "\n".join(lines) + "\n"
    if layout == "blank lines":
        text = "\n" + "\n\n".join(lines) + "\n\n"
    elif layout == "whitespace lines":
        text = "  \n" + "\n \t \n".join(lines) + "\n"
    elif layout == "byte order mark":
        text = "\ufeff" + text
    elif layout == "blank last line":
        text += "\n"
    else:
        text = text[:-1]
    file = tmp_path / "s1.jsonl"
    file.write_text(text, encoding="utf-8")
    _same(file, monkeypatch)
    bulk, _ = _both(file, monkeypatch)
    assert bulk[0] is not None and bulk[0].num_rows == 5  # a byte order mark is skipped, not line 1's text


def test_a_file_is_cut_into_blocks_of_whole_lines_one_per_core_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "s1.jsonl"
    file.write_bytes(b"".join(b"%d:%s\n" % (i, b"x" * (i % 37)) for i in range(2000)) + b"cut-off")
    monkeypatch.setattr(agentstore, "BLOCK_BYTES", 10_000)
    with file.open("rb") as f:
        blocks = list(agentstore._blocks_of(f))
    assert b"".join(blocks) == file.read_bytes()
    assert all(b.endswith(b"\n") for b in blocks[:-1]) and blocks[-1].endswith(b"cut-off")
    assert len(blocks) % agentstore.WORKERS == 0 and len(blocks) >= file.stat().st_size / 10_000
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) < 200  # about the same size: the blocks read at a time end together


NESTED_METADATA = [
    '{"tokens_in":7,"extra":{"tokens_in":5}}',
    '{"extra":{"a":1,"tokens_in":5},"tokens_in":7}',
    '{"extra":{"a":1,"cost_usd":0.5}}',
    '{"extra":[{"duration_ms":3}],"duration_ms":4}',
    '{"worker_id":"x,\\"tokens_in\\":5","tokens_in":6}',
    '{"worker_id":"tokens_in","tokens_out":1e3}',
    '{"tokens_in":12,"tokens_in":13}',
    '{"tokens_in":null,"cost_usd":0.00161,"model":"gpt-4o"}',
    '{"tokens_in":-1}',
    '{"duration_ms":1.50,"tokens_out":0}',
    '{"cost_usd":1.5e-3}',
]


@pytest.mark.parametrize("metadata", NESTED_METADATA)
def test_numbers_of_column_keys_nested_or_odd_read_the_same(
    metadata: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "s1.jsonl"
    head = '{"session_id":"s1","sequence_number":1,"type":"custom","payload":{"n":1},'
    line = head + '"timestamp":"2026-11-21T23:43:22Z","metadata":' + metadata + "}"
    plain = head.replace('"sequence_number":1', '"sequence_number":2') + (
        '"timestamp":"2026-11-21T23:43:22Z","metadata":{"tokens_in":7,"extra":{"a":1}}}'
    )
    file.write_text(line + "\n" + plain + "\n", encoding="utf-8")
    _same(file, monkeypatch)


PAYLOAD_TEXTS = [
    '{"a":1,"b":{"c":[1,{"d":2,"e":3}]},"f":"x"}',
    '{"b":1,"a":2}',
    '{"a":{"z":1},"b":2}',
    '{"a":{"c":1},"b":2}',
    '{"a":"x\\"y","b":"\\":","c":1}',
    '{"b":"q\\"","a":1}',
    '{"a\\"b":1}',
    '{"":1,"a":2}',
    '{"a":1,"a":2}',
    '{"ab":1,"a":2}',
    '{"a":1,"ab":2}',
    '["x",":y"]',
    '{"a":":"}',
    '{"a":[":"]}',
    '"a\\":b"',
    '{"a":"b","c":"d:"}',
    '{"k":{"a":"\\"","b":{"c":"\\\\"}},"l":[]}',
]


@pytest.mark.parametrize("payload", PAYLOAD_TEXTS)
def test_payload_keys_in_or_out_of_order_read_the_same(
    payload: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "s1.jsonl"
    head = '{"session_id":"s1","sequence_number":1,"type":"custom","payload":'
    tail = ',"timestamp":"2026-11-21T23:43:22Z","metadata":{"extra":' + payload + "}}"
    file.write_text(f"{head}{payload}{tail}\n{head.replace(':1,', ':2,')}{{}}{tail}\n", encoding="utf-8")
    _same(file, monkeypatch)
