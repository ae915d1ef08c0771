from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from importer_contract import ImporterContract

from toolkit.ingest.base import ImportOptions, Rejection, derive_id
from toolkit.ingest.mapping import Mapping
from toolkit.ingest.runner import import_paths, split_valid
from toolkit.journal import Journal

GOOD = [
    {"stream_id": "run-1", "event_type": "user_message", "occurred_at": "2026-11-01T09:00:00Z", "data": {"text": "hi"}},
    {
        "stream_id": "run-1",
        "event_type": "llm_response",
        "occurred_at": "2026-11-01T09:00:01Z",
        "model": "gpt-4o",
        "tokens_in": 10,
        "data": "ok",
    },
    {
        "stream_id": "run-2",
        "event_type": "tool_called",
        "occurred_at": "2026-11-01T09:00:02Z",
        "tool_name": "search",
        "data": [1, 2],
    },
]


class TestCanonicalJsonl(ImporterContract):
    fmt = "jsonl"
    expected_events = 3
    expected_rejections = 3

    def make_export(self, tmp_path: Path) -> Path:
        path = tmp_path / "events.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in GOOD))
        return path

    def make_damaged(self, tmp_path: Path) -> Path:
        path = tmp_path / "damaged.jsonl"
        lines = [json.dumps(e) for e in GOOD]
        lines.insert(1, '{"stream_id": "run-1", "event_type": "x"')  # cut off
        lines.insert(
            3, json.dumps({"stream_id": "run-1", "event_type": "x", "data": 1, "occurred_at": "2026-11-01T10:00:00"})
        )
        path.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe not utf-8\n")
        return path


def test_a_grown_export_imports_only_the_new_lines(tmp_path: Path, journal: Journal) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in GOOD[:2]))
    assert import_paths(journal, [str(path)]).imported == 2
    with path.open("a") as f:
        f.write(json.dumps(GOOD[2]) + "\n")
    report = import_paths(journal, [str(path)])
    assert (report.imported, report.already_present, report.read) == (1, 2, 3)


def test_a_missing_path_is_named_as_missing_not_as_an_unknown_format(tmp_path: Path) -> None:
    from toolkit.errors import InvalidPathError
    from toolkit.ingest.runner import choose_importer

    with pytest.raises(InvalidPathError, match=r"absent\.jsonl: no such file or directory"):
        choose_importer(str(tmp_path / "absent.jsonl"))
    assert choose_importer("postgresql://u:p@localhost/db") is not None  # a URL is not a path


def test_location_names_file_and_line(tmp_path: Path, journal: Journal) -> None:
    path = TestCanonicalJsonl().make_damaged(tmp_path)
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert [r.location for r in report.rejections] == ["line 2", "line 4", "line 6"]
    assert all(r.source == str(path) for r in report.rejections)


def test_a_trace_id_that_contradicts_the_traceparent_is_rejected_at_its_line(tmp_path: Path, journal: Journal) -> None:
    from toolkit.ingest.base import RecordRejectedError

    lines = [dict(GOOD[0], traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01") for _ in range(3)]
    lines[1]["trace_id"] = "1" * 32
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    with pytest.raises(
        RecordRejectedError, match=r"events\.jsonl: line 2: field 'trace_id': '1+' contradicts the traceparent"
    ):
        import_paths(journal, [str(path)])
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert (report.imported, [r.location for r in report.rejections]) == (2, ["line 2"])


# --- the bulk reader and the line-by-line reader agree -----------------------------------------

TRICKY = [
    '{"stream_id":"a","event_type":"x","data":{"z":1,"a":[1,2.5,"s\\"q"]},"tokens_in":3}',
    '{"stream_id":"a","event_type":"x","data":"ok"}',
    '{"stream_id":"a","event_type":"x","data":"{\\"a\\":1}"}',
    '{"data":123, "stream_id":"a","event_type":"x"}',
    '{"stream_id":"a","event_type":"x","data":null}',
    '{"stream_id":"a","event_type":"x","data":1,"model":null}',
    '{"stream_id":"a","event_type":"x","data":{"data":1},"metadata":{"data":{"metadata":2}}}',
    '{ "stream_id" : "a" , "event_type" : "x" , "data" : [123456789012345678901234, 1.0, 1e-7] }',
    '{"stream_id":"a","event_type":"x","data":1,"cost_usd":0.0039,"is_error":true,"duration_ms":3}',
    '{"stream_id":"a","event_type":"x","data":1,"position":9,"hash":"zz"}',
    '{"stream_id":"a","event_type":"x","data":{"q\\":":"\\":"}}',
    '{"stream_id":"a","event_type":"x","data":"\\u0001\\n\\\\ é"}',
    '{"stream_id":"a","event_type":"x","data":1,"str\\u0065am_type":"t"}',
    '{"stream_id":"a","event_type":"x","data":[[[[[[[[[[1]]]]]]]]]]}',
    '{"stream_id":"a","event_type":"x","data":1,"occurred_at":"2026-11-01 10:00:00+01:00"}',
    '{"stream_id":"a","event_type":"x","data":1,"occurred_at":"2026-11-01T10:00:00.123456789Z"}',
    '{"stream_id":"a","event_type":"x","data":1,"metadata":null}',
    '{"stream_id":"a","event_type":"x","data":2,"data":3}',
    '{"stream_id":"a","event_type":"x","data":1,"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","trace_id":"0AF7651916CD43DD8448EB211C80319C"}',
    # rejected by both
    '{"stream_id":"a","event_type":"x","data":1,"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","trace_id":"abc"}',
    '{"stream_id":"a","event_type":"x","data":1,"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","span_id":"abc"}',
    '{"stream_id":"a","event_type":"x"}',
    '{"stream_id":"a","event_type":"x","data":1,"foo":2}',
    '{"stream_id":"a","event_type":"x","data":1,"model":5}',
    '{"stream_id":"a","event_type":"x","data":1,"metadata":"str"}',
    '{"stream_id":"a","event_type":"x","data":1,"occurred_at":"2026-11-01T10:00:00"}',
    '{"stream_id":"","event_type":"x","data":1}',
    '{"stream_id":"a","event_type":"x","data":1,"tokens_in":1.5}',
    '{"stream_id":"a","event_type":"x","data":NaN}',
]


def test_bulk_and_line_readers_agree(tmp_path: Path) -> None:
    """Every line gives the same row (or rejection) whichever reader handles it."""
    import datetime as dt

    from toolkit.ingest.jsonl import _row, canonical_batch

    path = tmp_path / "tricky.jsonl"
    path.write_text("\n".join(TRICKY) + "\n")
    batch = canonical_batch(path.read_bytes(), 1, path)
    valid, invalid = split_valid(batch.events, "jsonl", batch.origins)  # as the runner does
    bulk = {int(r["source"].rsplit(":", 1)[1]): r for r in valid.to_pylist()}
    bulk_rejected = {int(r.location.split()[-1]) for r in [*batch.rejections, *invalid]}
    now = dt.datetime.now(dt.UTC)
    for lineno, line in enumerate(TRICKY, start=1):
        rejections: list[Rejection] = []
        row = _row(line, lineno, path, now, rejections)
        if row is None:
            assert lineno in bulk_rejected, line
            continue
        got = bulk[lineno]
        for name, value in row.items():
            if name == "occurred_at" and json.loads(line).get("occurred_at") is None:
                continue  # left out or null: each side's own "now"  # "now" at two different moments
            assert got[name] == value, (line, name)


def test_data_is_kept_verbatim(tmp_path: Path, journal: Journal) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"stream_id": "r", "event_type": "x", "data": {"b": 1.0, "a": [1, 2]}, "metadata": {"k": "v"}}\n')
    import_paths(journal, [str(path)])
    row = journal.read_all(["data", "metadata"]).to_pylist()[0]
    assert (row["data"], row["metadata"]) == ('{"b": 1.0, "a": [1, 2]}', '{"k": "v"}')


def test_a_column_only_some_lines_name_is_not_lost(tmp_path: Path, journal: Journal) -> None:
    """The bulk reader reads the columns of a sample of lines; others still arrive."""
    lines = [{"stream_id": f"r{i // 10}", "event_type": "x", "data": i} for i in range(5000)]
    lines[2500]["model"] = "rare-model"
    lines[2600]["tokens_reasoning"] = 7
    lines[2700]["colour"] = "red"  # not a column: rejected
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert (report.imported, [r.location for r in report.rejections]) == (4999, ["line 2701"])
    table = journal.read_all(["model", "tokens_reasoning"])
    assert table.column("model").drop_null().to_pylist() == ["rare-model"]
    assert table.column("tokens_reasoning").drop_null().to_pylist() == [7]


def test_blank_lines_crlf_and_a_cut_off_last_line(tmp_path: Path, journal: Journal) -> None:
    path = tmp_path / "events.jsonl"
    good = [json.dumps(e) for e in GOOD]
    path.write_bytes(("\r\n".join([good[0], "", "   ", good[1], good[2]]) + '\r\n{"stream_id": "r').encode())
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert (report.imported, report.read) == (3, 4)
    assert [r.location for r in report.rejections] == ["line 6"]
    assert journal.read_all(["source"]).column("source").to_pylist() == [
        f"jsonl:{path}:1",
        f"jsonl:{path}:4",
        f"jsonl:{path}:5",
    ]


def test_a_utf8_byte_order_mark_is_not_part_of_line_one(tmp_path: Path, journal: Journal) -> None:
    """A file saved with a BOM and CRLF (an editor on Windows, PowerShell's utf8) was sniffed as
    JSONL, then its line 1 was rejected as 'not JSON: Unexpected UTF-8 BOM' by the line-by-line
    reader (the bulk reader, used without CR, skipped the BOM); the other importers skip it."""
    plain, marked = tmp_path / "plain.jsonl", tmp_path / "marked.jsonl"
    text = "".join(json.dumps(e) + "\r\n" for e in GOOD)
    plain.write_text(text, newline="")
    marked.write_bytes(b"\xef\xbb\xbf" + text.encode())
    report = import_paths(journal, [str(marked)])
    assert (report.read, report.imported, report.rejected) == (3, 3, 0)
    assert import_paths(journal, [str(plain)]).already_present == 3  # line 1 is the same line
    mapped = TestMappedJsonl().make_export(tmp_path)
    mapped.write_bytes(b"\xef\xbb\xbf" + mapped.read_bytes().replace(b"\n", b"\r\n"))
    assert import_paths(journal, [str(mapped)]).rejected == 0


def test_stream_type_option_fills_what_lines_leave_open(tmp_path: Path, journal: Journal) -> None:
    path = TestCanonicalJsonl().make_export(tmp_path)
    import_paths(journal, [str(path)], options=ImportOptions(stream_type="imported"))
    assert set(journal.read_all(["stream_type"]).column("stream_type").to_pylist()) == {"imported"}


# --- mapped JSONL --------------------------------------------------------------------------

RECORDS = [
    {"req": "a1", "session": {"id": "s1"}, "ts": 1793523600000, "usage": {"prompt_tokens": 10}, "text": "hi"},
    {"req": "a2", "session": {"id": "s1"}, "ts": 1793523601000, "usage": {"prompt_tokens": 12}, "text": "ho"},
    {"req": "a3", "session": {"id": "s2"}, "ts": 1793523602000, "usage": {}, "text": None},
]
MAPPING = """
[columns]
stream_id = "$.session.id"
event_type = { const = "llm_response" }
occurred_at = "ts"
tokens_in = "$.usage.prompt_tokens"

[time]
format = "unix_ms"

[data]
fields = ["text"]

[metadata]
fields = ["req"]
"""


class TestMappedJsonl(ImporterContract):
    fmt = "jsonl"
    expected_events = 3
    expected_rejections = 3

    def make_export(self, tmp_path: Path) -> Path:
        path = tmp_path / "gateway.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
        (tmp_path / "gateway.mapping.toml").write_text(MAPPING)
        return path

    def make_damaged(self, tmp_path: Path) -> Path:
        path = self.make_export(tmp_path)
        with path.open("a") as f:
            f.write('{"session": {"id": "s3"}, "ts": "noon"}\n')  # not a unix time
            f.write('[1, 2]\n{"session": \n')  # not an object; not JSON
        return path


def test_mapped_jsonl_values_and_ids(tmp_path: Path, journal: Journal) -> None:
    path = TestMappedJsonl().make_export(tmp_path)
    import_paths(journal, [str(path)])
    rows = journal.read_all().to_pylist()
    assert [(r["stream_id"], r["tokens_in"], json.loads(r["data"]), json.loads(r["metadata"])) for r in rows] == [
        ("s1", 10, {"text": "hi"}, {"req": "a1"}),
        ("s1", 12, {"text": "ho"}, {"req": "a2"}),
        ("s2", None, {"text": None}, {"req": "a3"}),
    ]
    import hashlib

    line = json.dumps(RECORDS[0]).encode()
    assert rows[0]["event_id"] == derive_id("jsonl", "gateway.jsonl", 1, hashlib.sha256(line).hexdigest())


def test_mapped_jsonl_rejections_say_why(tmp_path: Path, journal: Journal) -> None:
    path = TestMappedJsonl().make_damaged(tmp_path)
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert [(r.location, r.reason.split(":")[0]) for r in report.rejections] == [
        ("line 4", "field 'occurred_at'"),
        ("line 5", "not a JSON object"),
        ("line 6", "not JSON"),
    ]


# --- differential: bulk reader == line-by-line reader, on generated lines --------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_fields = st.dictionaries(
    st.sampled_from(
        [
            "stream_type",
            "model",
            "tokens_in",
            "cost_usd",
            "is_error",
            "metadata",
            "occurred_at",
            "event_id",
            "data",
            "foo",
            "position",
        ]
    ),
    st.one_of(
        _values,
        st.sampled_from(
            [
                "2026-11-01T09:00:00Z",
                "2026-11-01T09:00:00",
                "2026-11-01 09:00:00.5+01:00",
                "0001-01-01T00:00:00+01:00",
                "9999-12-31T23:59:59-01:00",
            ]
        ),
    ),
    max_size=4,
)


@settings(deadline=None)
@given(st.lists(st.tuples(_fields, st.booleans(), st.integers(0, 3)), min_size=1, max_size=8))
def test_bulk_equals_line_by_line_on_generated_lines(specs: list[tuple[dict[str, object], bool, int]]) -> None:
    import datetime as dt
    import tempfile

    from toolkit.ingest.jsonl import _row, canonical_batch

    lines = []
    for fields, spaced, order in specs:
        event = {"stream_id": "r", "event_type": "x", **fields}
        keys = sorted(event) if order == 1 else list(reversed(event)) if order == 2 else list(event)
        ordered = {k: event[k] for k in keys}
        lines.append(json.dumps(ordered, separators=(", ", ": ") if spaced else (",", ":"), ensure_ascii=order == 3))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "gen.jsonl"
        path.write_text("\n".join(lines) + "\n")
        batch = canonical_batch(path.read_bytes(), 1, path)
    valid, _ = split_valid(batch.events, "jsonl", batch.origins)  # as the runner does
    bulk = {int(r["source"].rsplit(":", 1)[1]): r for r in valid.to_pylist() if r["source"].startswith("jsonl:")}
    now = dt.datetime.now(dt.UTC)
    for lineno, line in enumerate(lines, start=1):
        row = _row(line, lineno, path, now, [])
        if row is None:
            assert lineno not in bulk, line
            continue
        got = bulk[lineno]
        for name, value in row.items():
            if name == "occurred_at" and json.loads(line).get("occurred_at") is None:
                continue  # left out or null: each side's own "now"
            assert got[name] == value, (line, name, got[name], value)


_BULK_MAPPING = Mapping.from_dict(
    {
        "columns": {
            "stream_id": "$.session.id",
            "event_type": {"const": "llm_response"},
            "occurred_at": "ts",
            "model": "$.choices[0].model",
            "tokens_in": "$.usage.prompt_tokens",
            "cost_usd": "cost",
            "is_error": "failed",
        },
        "time": {"format": "unix_ms"},
        "defaults": {"stream_type": "gw", "model": "unknown"},
        "data": {"fields": ["text", "route"]},
        "metadata": {"fields": {"req": "req", "tag": {"const": "bulk"}}},
    }
)
_record_values = st.one_of(_values, st.sampled_from([1793523600000, "1793523600000", 2**70, -5]))


@settings(deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["session", "ts", "choices", "usage", "cost", "failed", "text", "route", "req", "zz"]),
            st.one_of(
                _record_values,
                st.fixed_dictionaries({}, optional={"id": _record_values, "prompt_tokens": _record_values}),
                st.lists(st.fixed_dictionaries({}, optional={"model": _record_values}), max_size=2),
            ),
            max_size=8,
        ),
        min_size=1,
        max_size=8,
    )
)
def test_mapped_bulk_equals_line_by_line(records: list[dict[str, object]]) -> None:
    import datetime as dt
    import tempfile

    from toolkit.ingest.jsonl import _mapped_line, mapped_bulk_batch, plan_bulk

    plan = plan_bulk(_BULK_MAPPING)
    assert plan is not None
    lines = [json.dumps(r) for r in records]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "gen.jsonl"
        path.write_text("\n".join(lines) + "\n")
        batch = mapped_bulk_batch(path.read_bytes(), 1, path, _BULK_MAPPING, plan)
    valid, _ = split_valid(batch.events, "jsonl", batch.origins)
    bulk = {int(r["source"].rsplit(":", 1)[1]): r for r in valid.to_pylist()}
    now = dt.datetime.now(dt.UTC)
    for lineno, line in enumerate(lines, start=1):
        row = _mapped_line(lineno, line, path, _BULK_MAPPING, now, [])
        if row is None:
            assert lineno not in bulk, line
            continue
        got = bulk[lineno]
        for name, value in row.items():
            if name == "occurred_at" and value == now:
                continue
            if name in ("data", "metadata"):
                assert json.loads(got[name]) == json.loads(value), (line, name)
            else:
                assert got[name] == value, (line, name, got[name], value)


def test_the_gateway_sample_is_mapped_in_bulk() -> None:
    from toolkit.ingest.jsonl import plan_bulk

    mapping = Mapping.load(Path(__file__).resolve().parents[2] / "data/samples/generic/gateway-log.mapping.toml")
    assert plan_bulk(mapping) is not None
    assert plan_bulk(Mapping.from_dict({"columns": {"stream_id": "s", "event_type": "t"}})) is None  # data = the rest


def test_a_time_before_year_one_in_utc_is_rejected_not_a_crash(tmp_path: Path, journal: Journal) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(
        json.dumps({"stream_id": "r", "event_type": "x", "occurred_at": "0001-01-01T00:00:00+01:00", "data": 1}) + "\n"
    )
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert (report.imported, report.rejected) == (0, 1)
    assert "out of range" in report.rejections[0].reason


def test_a_directory_does_not_follow_symlinks_out_of_it(tmp_path: Path, journal: Journal) -> None:
    (tmp_path / "outside").mkdir()
    secret = tmp_path / "outside" / "secret.jsonl"
    secret.write_text("root:x:0:0\n")
    (tmp_path / "imp").mkdir()
    (tmp_path / "imp" / "events.jsonl").write_text(json.dumps(GOOD[0]) + "\n")
    (tmp_path / "imp" / "s1.jsonl").symlink_to(secret)
    (tmp_path / "imp" / "sub").symlink_to(tmp_path / "outside", target_is_directory=True)
    report = import_paths(journal, [str(tmp_path / "imp")], fmt="jsonl", on_error="quarantine")
    assert (report.imported, report.rejected, report.quarantined) == (1, 0, 0)
    skipped = sorted(n.split(":")[0] for n in report.notes if "not read: a symlink" in n)
    assert skipped == [str(tmp_path / "imp" / "s1.jsonl"), str(tmp_path / "imp" / "sub")]


def test_refusals_name_the_file_and_line_not_the_lines_own_source(tmp_path: Path, journal: Journal) -> None:
    """A line's own ``source`` (here: where an exported event first came from) stays the event's
    source; a refusal names where the line is (the bulk path, the line-by-line path, a conflict)."""

    def line(i: int, source: str, **fields: object) -> dict[str, object]:
        at = f"2026-11-01T09:00:0{i}Z"
        return {
            "stream_id": "r",
            "event_type": "llm_response",
            "occurred_at": at,
            "data": {"i": i},
            "source": source,
            **fields,
        }

    deep: object = 1
    for _ in range(10):
        deep = [deep]
    path = tmp_path / "exported.jsonl"
    rows = [
        line(1, "agentstore:events/s1.jsonl:12", event_id="a"),
        line(2, "agentstore:events/s1.jsonl:13", tokens_in=-5),  # refused by the journal's checks
        line(3, "gateway", event_id="a"),  # the same id as line 1, other content
        {**line(4, "jsonl:/elsewhere/old.jsonl:3", tokens_in=-1), "data": deep},  # read line by line
        line(5, "gateway"),
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert (report.imported, report.rejected) == (2, 3)
    located = sorted((r.source, r.location) for r in report.rejections)
    assert located == [(str(path), "line 2"), (str(path), "line 3"), (str(path), "line 4")]
    events = journal.read_all(["event_id", "source"]).to_pylist()
    assert sorted(e["source"] for e in events) == ["agentstore:events/s1.jsonl:12", "gateway"]
    from toolkit.journal.side_tables import read_table

    stored = sorted((r["source"], r["location"]) for r in read_table(journal, "quarantine").to_pylist())
    assert stored == located


def test_mapped_refusals_name_the_file_and_line_not_the_mapped_source(tmp_path: Path, journal: Journal) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(
        json.dumps({"sid": "s", "kind": "x", "n": 3, "from": "gw-1:7", "id": "a"})
        + "\n"
        + json.dumps({"sid": "s", "kind": "x", "n": 4, "from": "gw-1:8", "id": "a"})
        + "\n"
    )
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        '[columns]\nevent_id = "id"\nstream_id = "sid"\nevent_type = "kind"\nsource = "from"\n[data]\nfields = ["n"]\n'
    )
    report = import_paths(
        journal, [str(path)], fmt="jsonl", on_error="quarantine", options=ImportOptions(mapping=mapping)
    )
    assert (report.imported, report.rejected) == (1, 1)
    assert [(r.source, r.location) for r in report.rejections] == [(str(path), "line 2")]
