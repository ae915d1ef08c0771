"""OTLP/JSON importer: the contract, the real sample files against truth.json, every encoding quirk,
usage counted once, damaged input, and a fuzz test."""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from importer_contract import ImporterContract

from toolkit.errors import ToolkitError
from toolkit.ingest.base import ImportOptions, SourceBatch, derive_id
from toolkit.ingest.otlp import OtlpImporter
from toolkit.ingest.runner import import_paths
from toolkit.journal import Journal
from toolkit.journal.integrity import verify_journal
from toolkit.journal.prepare import validate_table

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples" / "otlp"
TRACES = SAMPLES / "traces.otlp.jsonl"
TRACES_B64 = SAMPLES / "traces.protojson-base64.json"
LOGS = SAMPLES / "logs.otlp.jsonl"
TRUTH: dict[str, Any] = json.loads((SAMPLES / "truth.json").read_text())
SPAN_EVENTS = 2 * TRUTH["span_count"]  # every sample span has a start and an end


# ------------------------------------------------------------------------------------ helpers


def read(path: Path, **options: Any) -> tuple[list[dict[str, Any]], SourceBatch]:
    """All rows the importer offers for ``path`` and its first batch (counts, rejections, notes)."""
    batches = list(OtlpImporter().batches(str(path), ImportOptions(**options)))
    rows = [r for b in batches for r in b.events.to_pylist()]
    return rows, batches[0]


def without_source(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "source"} for r in rows]


def lines_of(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_lines(path: Path, objs: list[Any]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def transform(obj: Any, fn: Callable[[str, Any], tuple[str, Any]]) -> Any:
    """Rewrite every (key, value) of every object, depth first."""
    if isinstance(obj, list):
        return [transform(v, fn) for v in obj]
    if isinstance(obj, dict):
        return dict(fn(k, transform(v, fn)) for k, v in obj.items())
    return obj


def spans_of(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for rs in obj.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            yield from ss.get("spans", [])


def attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        v: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    else:
        v = {"stringValue": value}
    return {"key": key, "value": v}


T0 = 1_795_307_416_000_000_000
TRACE = "0af7651916cd43dd8448eb211c80319c"


def span(
    sid: str, parent: str | None = None, op: str | None = None, start: int = 0, end: int | None = 1000, **attrs: Any
) -> dict[str, Any]:
    """A synthetic span in the Collector layout; times in µs after T0."""
    s: dict[str, Any] = {
        "traceId": TRACE,
        "spanId": sid,
        "name": f"{op or 'work'} x",
        "kind": 1,
        "startTimeUnixNano": str(T0 + start * 1000),
        "attributes": [attr(k.replace("__", "."), v) for k, v in attrs.items()],
        "status": {},
    }
    if parent:
        s["parentSpanId"] = parent
    if op:
        s["attributes"].append(attr("gen_ai.operation.name", op))
    if end is not None:
        s["endTimeUnixNano"] = str(T0 + end * 1000)
    return s


def export(*spans: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {"resource": {"attributes": []}, "scopeSpans": [{"scope": {"name": "t"}, "spans": list(spans)}]}
        ]
    }


def end_of(rows: list[dict[str, Any]], span_id: str) -> dict[str, Any]:
    return next(r for r in rows if r["event_id"] == derive_id("otlp", TRACE, span_id, "end"))


def by_type(rows: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["event_type"] == event_type]


# ---------------------------------------------------------------------------------- contract


class TestOtlp(ImporterContract):
    fmt = "otlp"
    expected_events = SPAN_EVENTS
    expected_rejections = 4

    def make_export(self, tmp_path: Path) -> Path:
        return Path(shutil.copy(TRACES, tmp_path / "traces.otlp.jsonl"))

    def make_damaged(self, tmp_path: Path) -> Path:
        """The real lines plus: a cut-off line, a span without traceId, a span with a wrong type, bad UTF-8."""
        real = TRACES.read_text().splitlines()
        first = json.loads(real[0])
        no_trace = copy.deepcopy(first["resourceSpans"][0]["scopeSpans"][0]["spans"][0])
        del no_trace["traceId"]
        wrong_type = copy.deepcopy(no_trace) | {"traceId": TRACE, "startTimeUnixNano": {"nanos": 1}}
        for s, sid in ((no_trace, "1111111111111111"), (wrong_type, "2222222222222222")):
            s["spanId"] = sid
        lines = [
            real[0],
            real[1][: len(real[1]) // 2],  # cut off (the real line follows intact)
            *real[1:4],
            json.dumps(export(no_trace)),
            json.dumps(export(wrong_type)),
            *real[4:],
        ]
        path = tmp_path / "damaged.otlp.jsonl"
        path.write_bytes("\n".join(lines).encode() + b'\n{"resourceSpans": "\xff\xfe"}\n')
        return path


def test_rejections_name_file_line_and_reason(tmp_path: Path) -> None:
    path = TestOtlp().make_damaged(tmp_path)
    rows, batch = read(path)
    assert len(rows) == SPAN_EVENTS
    found = [(r.source, r.location, r.reason) for r in batch.rejections]
    assert found[0][:2] == (str(path), "line 2") and found[0][2].startswith("not JSON")
    assert found[1][:2] == (str(path), "line 6, resourceSpans[0].scopeSpans[0].spans[0]")
    assert found[1][2] == "traceId is missing"
    assert found[2][1] == "line 7, resourceSpans[0].scopeSpans[0].spans[0]"
    assert "startTimeUnixNano: expected an integer" in found[2][2]
    assert found[3][1] == "line 10" and "not JSON" in found[3][2] and found[3][2]


def test_quarantine_keeps_the_bad_records_verbatim(tmp_path: Path, journal: Journal) -> None:
    path = TestOtlp().make_damaged(tmp_path)
    report = import_paths(journal, [str(path)], fmt="otlp", on_error="quarantine")
    assert (report.imported, report.rejected) == (SPAN_EVENTS, 4)
    records = [r.record or "" for r in report.rejections]
    assert '"spanId": "1111111111111111"' in records[1] and records[3].startswith("hex:")


def test_quarantine_keeps_a_rejected_line_byte_for_byte(tmp_path: Path, journal: Journal) -> None:
    path = tmp_path / "t.jsonl"
    lines = ["[1,2]", '{"foo":1}', '{"resourceSpans":5}', TRACES.read_text().splitlines()[0]]
    path.write_text("\n".join(lines) + "\n")
    report = import_paths(journal, [str(path)], fmt="otlp", on_error="quarantine")
    assert [(r.location, r.record) for r in report.rejections] == [
        ("line 1", "[1,2]"),
        ("line 2", '{"foo":1}'),
        ("line 3, resourceSpans", '{"resourceSpans":5}'),
    ]


def test_a_directory_reads_a_jsonl_file_whose_first_line_is_damaged(tmp_path: Path, journal: Journal) -> None:
    (tmp_path / "o2").mkdir()
    path = tmp_path / "o2" / "traces.jsonl"
    path.write_text("garbage{\n" + TRACES.read_text())
    with pytest.raises(ToolkitError, match=r"traces\.jsonl: line 1: not JSON"):
        import_paths(journal, [str(tmp_path / "o2")], fmt="otlp")
    report = import_paths(journal, [str(tmp_path / "o2")], fmt="otlp", on_error="quarantine")
    assert (report.imported, report.rejected) == (SPAN_EVENTS, 1)
    assert not any("not OTLP" in n for n in report.notes)


def test_a_directory_does_not_follow_symlinks_out_of_it(tmp_path: Path, journal: Journal) -> None:
    (tmp_path / "outside").mkdir()
    shutil.copy(TRACES, tmp_path / "outside" / "traces.jsonl")
    (tmp_path / "imp").mkdir()
    (tmp_path / "imp" / "traces.jsonl").symlink_to(tmp_path / "outside" / "traces.jsonl")
    (tmp_path / "imp" / "more").symlink_to(tmp_path / "outside", target_is_directory=True)
    _, batch = read(tmp_path / "imp")
    assert batch.read == 0 and batch.rejections == []
    skipped = sorted(n.split(":")[0] for n in batch.notes if "not read: a symlink" in n)
    assert skipped == [str(tmp_path / "imp" / "more"), str(tmp_path / "imp" / "traces.jsonl")]


def test_quarantine_takes_records_that_are_not_valid_unicode(tmp_path: Path, journal: Journal) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        json.dumps({"resourceSpans": ["\ud800"]})
        + "\n"
        + json.dumps(export(span("a000000000000001", name="\ud800")))
        + "\n"
    )
    report = import_paths(journal, [str(path)], fmt="otlp", on_error="quarantine")
    assert (report.imported, report.quarantined) == (0, 2)


# ----------------------------------------------------------------------- real files vs truth


def test_sample_directory_matches_truth_json() -> None:
    rows, batch = read(SAMPLES)  # both trace files (same spans), the logs, truth.json (not OTLP)
    assert batch.rejections == []
    assert any("37 spans appeared more than once" in n for n in batch.notes)
    assert any("skipped 1 JSON files that are not OTLP (truth.json)" in n for n in batch.notes)
    span_rows = [r for r in rows if r["source_type"] in TRUTH["spans_by_operation"]]
    starts = [r for r in span_rows if r["causation_id"] != derive_id("otlp", r["trace_id"], r["span_id"], "start")]
    ends = [r for r in span_rows if r not in starts]
    assert len(starts) == len(ends) == TRUTH["span_count"] == len({(r["trace_id"], r["span_id"]) for r in starts})
    assert len({r["trace_id"] for r in rows}) == TRUTH["trace_count"]
    assert len({r["stream_id"] for r in rows}) == TRUTH["root_span_count"]
    assert dict(Counter(r["source_type"] for r in starts)) == TRUTH["spans_by_operation"]
    assert Counter(r["event_type"] for r in span_rows) == {
        "llm_request": 19, "llm_response": 19, "tool_called": 10, "tool_result": 10, "user_message": 8, "custom": 8,
    }  # fmt: skip
    assert dict(Counter(r["tool_name"] for r in by_type(rows, "tool_called"))) == TRUTH["tool_calls_by_tool"]
    assert dict(Counter(r["source_type"] for r in rows if r["is_error"])) == TRUTH["error_spans_by_operation"]
    assert sum(r["is_error"] for r in rows) == TRUTH["error_span_count"]
    span_events = Counter(e["name"] for r in ends for e in json.loads(r["data"]).get("span_events", []))
    assert dict(span_events) == TRUTH["span_events_by_name"]

    usage = TRUTH["token_usage"]
    per_model: dict[str, dict[str, int]] = defaultdict(lambda: {"spans": 0, "input_tokens": 0, "output_tokens": 0})
    for r in by_type(rows, "llm_response"):
        if r["tokens_in"] is not None:
            m = per_model[r["model"]]
            m["spans"] += 1
            m["input_tokens"] += r["tokens_in"]
            m["output_tokens"] += r["tokens_out"]
    expected = {
        model: {k: u[k] for k in ("spans", "input_tokens", "output_tokens")}
        for model, u in usage["chat_by_response_model"].items()
    }
    assert per_model == expected
    failed = Counter(r["model"] for r in by_type(rows, "llm_response") if r["tokens_in"] is None)
    assert dict(failed) == usage["chat_spans_without_response_model_by_request_model"]
    assert {r["model"] for r in by_type(rows, "llm_request")} == set(usage["chat_by_request_model"])
    # usage counted once: every token column over every row = the chat spans' usage, not the naive sum
    assert (
        sum(r["tokens_in"] or 0 for r in rows)
        == usage["chat_total"]["input_tokens"]
        != usage["naive_sum_over_all_spans"]["input_tokens"]
    )
    assert sum(r["tokens_out"] or 0 for r in rows) == usage["chat_total"]["output_tokens"]
    assert all(r["tokens_cache_read"] is None and r["tokens_reasoning"] is None for r in rows)  # absent, not 0
    assert {r["tokens_in"] for r in rows if r["source_type"] == "invoke_agent"} == {None}

    assert {r["correlation_id"] for r in rows} == set(TRUTH["conversation_ids"])
    streams_per_conversation = Counter(c for c, _ in {(r["correlation_id"], r["stream_id"]) for r in rows})
    assert dict(streams_per_conversation) == TRUTH["traces_per_conversation"]
    assert {r["agent"] for r in rows} == {"flight-booker", "weather-concierge", "itinerary-planner"}

    logs = [r for r in rows if r["source_type"] == "gen_ai.client.inference.operation.details"]
    assert len(logs) == TRUTH["logs"]["log_records_linked_to_exported_spans"] == len(rows) - 2 * TRUTH["span_count"]
    chat_starts = {r["event_id"] for r in by_type(rows, "llm_request")}
    assert all(r["causation_id"] in chat_starts and r["event_type"] == "custom" for r in logs)

    for t in TRUTH["traces"]:
        stream = [r for r in rows if r["trace_id"] == t["trace_id"]]
        assert len({r["stream_id"] for r in stream}) == 1
        assert len([r for r in stream if r["source_type"] in TRUTH["spans_by_operation"]]) == 2 * t["spans"]
        assert sum(r["is_error"] for r in stream) == t["error_spans"]
        first, last = stream[0], [r for r in stream if r["source_type"] == "invoke_agent"][-1]
        assert first["event_type"] == "user_message" and json.loads(first["metadata"])["span"]["name"] == t["root_span"]
        assert first["stream_id"] == f"{t['trace_id']}-{first['span_id']}" and first["causation_id"] is None
        assert first["correlation_id"] == t["conversation_id"]
        assert int(first["occurred_at"].timestamp() * 1_000_000) == int(t["start_time_unix_nano"]) // 1000
        assert int(last["occurred_at"].timestamp() * 1_000_000) == int(t["end_time_unix_nano"]) // 1000
        assert last["is_error"] == (t["root_status"] == "STATUS_CODE_ERROR")
        assert [r["occurred_at"] for r in stream] == sorted(r["occurred_at"] for r in stream)


def test_event_columns_of_a_tool_call_and_its_request() -> None:
    rows, _ = read(TRACES)
    failed = [r for r in by_type(rows, "tool_result") if r["is_error"]]
    assert len(failed) == 1
    result = failed[0]
    assert result["tool_name"] == "book_flight" and result["error"]
    data = json.loads(result["data"])
    assert (
        data["error_type"] == "travel_desk.SeatUnavailableError" and data["result"]["error"] == "SeatUnavailableError"
    )
    called = next(r for r in rows if r["event_id"] == result["causation_id"])
    assert called["event_type"] == "tool_called" and called["tool_call_id"] == result["tool_call_id"].strip()
    assert isinstance(json.loads(called["data"])["arguments"], dict)
    # the tool call is caused by the model response that asked for it (matched by gen_ai.tool.call.id)
    asked = next(r for r in rows if r["event_id"] == called["causation_id"])
    assert asked["event_type"] == "llm_response"
    assert called["tool_call_id"] in asked["data"]
    assert called["traceparent"] == f"00-{called['trace_id']}-{called['span_id']}-01"
    assert result["duration_ms"] > 0 and called["duration_ms"] is None
    rate_limited = [r for r in by_type(rows, "llm_response") if r["is_error"] and "429" in (r["error"] or "")]
    assert len(rate_limited) == 1 and json.loads(rate_limited[0]["data"])["error_type"] == "openai.RateLimitError"


# ------------------------------------------------------------------------------- encodings


def test_base64_ids_and_enum_names_give_the_hex_result() -> None:
    assert without_source(read(TRACES_B64)[0]) == without_source(read(TRACES)[0])


def snake(key: str, value: Any) -> tuple[str, Any]:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower(), value


def int64_as_numbers(key: str, value: Any) -> tuple[str, Any]:
    return key, int(value) if key.endswith("UnixNano") or key == "intValue" else value


def enum_names(key: str, value: Any) -> tuple[str, Any]:
    if key == "kind":
        return key, {1: "SPAN_KIND_INTERNAL", 3: "client"}[value]  # full and short names, any case
    if key == "status" and value.get("code") == 2:
        return key, {**value, "code": "STATUS_CODE_ERROR"}
    return key, value


def url_safe_base64_ids(key: str, value: Any) -> tuple[str, Any]:
    if key in ("traceId", "spanId", "parentSpanId"):
        return key, base64.urlsafe_b64encode(bytes.fromhex(value)).decode().rstrip("=")
    return key, value


@pytest.mark.parametrize("rewrite", [snake, int64_as_numbers, enum_names, url_safe_base64_ids])
def test_equivalent_encodings_give_the_same_events(
    tmp_path: Path, rewrite: Callable[[str, Any], tuple[str, Any]]
) -> None:
    changed = [transform(obj, rewrite) for obj in lines_of(TRACES)]
    assert changed != lines_of(TRACES)
    path = write_lines(tmp_path / "rewritten.jsonl", changed)
    rows, batch = read(path)
    assert batch.rejections == []
    assert without_source(rows) == without_source(read(TRACES)[0])


@pytest.mark.parametrize("no_parent", ["", "0" * 16, "AAAAAAAAAAA="])
def test_root_parent_spellings_and_one_document(tmp_path: Path, no_parent: str) -> None:
    """Roots: no key, "" (older Collectors), all zeros (hex or base64); all lines as one document."""
    objs = lines_of(TRACES)
    for obj in objs:
        for s in spans_of(obj):
            s.setdefault("parentSpanId", no_parent)
    doc = {"resourceSpans": [rs for obj in objs for rs in obj["resourceSpans"]]}
    path = tmp_path / "one.json"
    path.write_text(json.dumps(doc, indent=1))
    assert without_source(read(path)[0]) == without_source(read(TRACES)[0])


# ---------------------------------------------------------------------------- usage and tree


def test_usage_is_counted_on_the_deepest_span_that_reports_it(tmp_path: Path) -> None:
    usage: dict[str, Any] = {"gen_ai__usage__input_tokens": 100, "gen_ai__usage__output_tokens": 20}
    agent = span("a000000000000001", op="invoke_agent", end=9000, gen_ai__agent__name="bot", **usage)
    chat = span(
        "c000000000000001", "a000000000000001", "chat", 10, 500,
        gen_ai__request__model="m", gen_ai__response__model="m-2026",
        gen_ai__usage__cache_read__input_tokens=60, gen_ai__usage__cache_creation__input_tokens=7,
        gen_ai__usage__reasoning__output_tokens=5, **usage,
    )  # fmt: skip
    lone = span("b000000000000001", op="invoke_agent", gen_ai__request__model="m", **usage)  # no LLM spans below
    legacy = span(
        "d000000000000001", "b000000000000001", "custom_op", 1, 2,
        gen_ai__usage__prompt_tokens=3, gen_ai__usage__completion_tokens=4, gen_ai__usage__cache_read_input_tokens=1,
    )  # fmt: skip
    rows, _ = read(write_lines(tmp_path / "t.jsonl", [export(agent, chat, lone)]))
    response = by_type(rows, "llm_response")[0]
    assert (response["tokens_in"], response["tokens_out"], response["model"]) == (100, 20, "m-2026")
    assert (response["tokens_cache_read"], response["tokens_cache_write"], response["tokens_reasoning"]) == (60, 7, 5)
    assert by_type(rows, "llm_request")[0]["model"] == "m"
    agent_end = end_of(rows, "a000000000000001")
    assert (
        agent_end["tokens_in"] is None
        and json.loads(agent_end["metadata"])["attributes"]["gen_ai.usage.input_tokens"] == 100
    )
    lone_end = end_of(rows, "b000000000000001")
    assert (lone_end["tokens_in"], lone_end["model"]) == (100, "m")  # the only report of that usage
    assert sum(r["tokens_in"] or 0 for r in rows) == 200
    rows, _ = read(write_lines(tmp_path / "legacy.jsonl", [export(lone, legacy)]))
    legacy_end = end_of(rows, "d000000000000001")
    assert (legacy_end["tokens_in"], legacy_end["tokens_out"], legacy_end["tokens_cache_read"]) == (3, 4, 1)
    assert sum(r["tokens_in"] or 0 for r in rows) == 3


def test_partial_export_lands_in_the_stream_the_complete_one_gives(tmp_path: Path, journal: Journal) -> None:
    """Children are exported before their root: a file cut between them, imported, then grown."""
    lines = TRACES.read_text().splitlines(keepends=True)
    path = tmp_path / "live.otlp.jsonl"
    path.write_text("".join(lines[:3]))
    first = import_paths(journal, [str(path)])
    assert any("parent span that is not in the export" in n for n in first.notes)
    path.write_text("".join(lines))
    again = import_paths(journal, [str(path)])
    assert (again.already_present, first.imported + again.imported) == (first.imported, SPAN_EVENTS)
    # the spans exported before their root learnt its conversation: the journal keeps them as first seen
    assert any("values its copy lacks (correlation_id" in n for n in again.notes), again.notes
    assert again.summary()["already_present_lacking"]["correlation_id"] > 0
    assert again.streams == TRUTH["root_span_count"]
    assert verify_journal(journal).ok
    streams = set(journal.read_all(["stream_id"]).column("stream_id").to_pylist())
    assert len(streams) == TRUTH["root_span_count"]


def test_logs_imported_later_add_only_their_events(tmp_path: Path, journal: Journal) -> None:
    assert import_paths(journal, [str(TRACES)]).imported == SPAN_EVENTS
    logs_alone = import_paths(journal, [str(LOGS)])
    assert logs_alone.imported == 0 and any("19 log records were not imported" in n for n in logs_alone.notes)
    both = tmp_path / "both.jsonl"
    both.write_text(TRACES.read_text() + LOGS.read_text())  # one file may hold traces and logs
    report = import_paths(journal, [str(both)])
    assert (report.imported, report.already_present) == (TRUTH["logs"]["log_record_count"], SPAN_EVENTS)


def test_open_span_orphan_and_cycle(tmp_path: Path) -> None:
    rows, batch = read(
        write_lines(
            tmp_path / "t.jsonl",
            [
                export(
                    span("a000000000000001", op="invoke_agent", end=None),  # still open
                    span("c000000000000001", "f000000000000001", "chat", 5, 9),  # parent not exported
                    span("c000000000000002", "f000000000000001", "chat", 6, 9),
                    span("e000000000000001", "e000000000000002", start=1, end=2),  # a parent cycle
                    span("e000000000000002", "e000000000000001", start=1, end=2),
                )
            ],
        )
    )
    assert batch.rejections == []
    open_span = [r for r in rows if r["span_id"] == "a000000000000001"]
    assert [r["event_type"] for r in open_span] == ["user_message"]
    orphans = {r["stream_id"] for r in rows if r["span_id"].startswith("c")}
    assert orphans == {f"{TRACE}-f000000000000001"}
    assert {r["causation_id"] for r in by_type(rows, "llm_request")} == {
        derive_id("otlp", TRACE, "f000000000000001", "start")
    }
    assert len({r["stream_id"] for r in rows if r["span_id"].startswith("e")}) == 1
    text = " ".join(batch.notes)
    assert "1 spans have no end time" in text and "2 spans have a parent span" in text and "1 parent cycles" in text


def test_log_records_without_a_span_are_reported(tmp_path: Path) -> None:
    logs = lines_of(LOGS)
    record = logs[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    del record["traceId"], record["spanId"]
    rows, batch = read(write_lines(tmp_path / "x.jsonl", [*lines_of(TRACES), logs[0]]))
    assert len(rows) == SPAN_EVENTS
    assert any("1 log records were not imported: 1 carry no trace/span id" in n for n in batch.notes)


# ------------------------------------------------------------------------------- bad input


WRONG: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("traceId", lambda s: s.update(traceId=123), "traceId: expected a string"),
    ("short traceId", lambda s: s.update(traceId="abc"), "neither 32 hex digits nor base64 of 16 bytes"),
    ("zero traceId", lambda s: s.update(traceId="0" * 32), "traceId is all zeros"),
    ("parent", lambda s: s.update(parentSpanId="not-an-id!"), "parentSpanId"),
    ("kind", lambda s: s.update(kind={"x": 1}), "kind: unknown value"),
    ("status", lambda s: s.update(status={"code": 7}), "status.code: unknown value 7"),
    ("status type", lambda s: s.update(status="ERROR"), "status: expected an object"),
    ("attributes", lambda s: s.update(attributes="x"), "attributes: expected an array"),
    (
        "intValue",
        lambda s: s["attributes"].append({"key": "n", "value": {"intValue": "12a"}}),
        "intValue: expected an integer",
    ),
    ("AnyValue", lambda s: s["attributes"].append({"key": "n", "value": {"weird": 1}}), "not an AnyValue"),
    (
        "tokens",
        lambda s: s["attributes"].append(attr("gen_ai.usage.input_tokens", "many")),
        "gen_ai.usage.input_tokens",
    ),
    ("end before start", lambda s: s.update(endTimeUnixNano="1"), "is before startTimeUnixNano"),
    ("no start", lambda s: s.pop("startTimeUnixNano"), "startTimeUnixNano is missing"),
    ("surrogate", lambda s: s.update(name="\ud800"), "lone UTF-16 surrogate"),
]


@pytest.mark.parametrize(("what", "damage", "reason"), WRONG, ids=[w[0] for w in WRONG])
def test_a_wrong_field_rejects_that_span_only(
    tmp_path: Path, what: str, damage: Callable[[dict[str, Any]], None], reason: str
) -> None:
    bad = span("b000000000000001", op="chat")
    damage(bad)
    rows, batch = read(write_lines(tmp_path / "t.jsonl", [export(span("a000000000000001", op="invoke_agent"), bad)]))
    assert [r["span_id"] for r in rows] == ["a000000000000001"] * 2
    assert len(batch.rejections) == 1, what
    rejection = batch.rejections[0]
    assert reason in rejection.reason
    assert rejection.location == "line 1, resourceSpans[0].scopeSpans[0].spans[1]" and rejection.record


def test_a_cut_off_document_is_one_rejection_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    text = TRACES_B64.read_text()
    path.write_text(text[: len(text) // 2])
    rows, batch = read(path)
    assert rows == [] and len(batch.rejections) == 1
    assert re.fullmatch(r"line \d+, column \d+", batch.rejections[0].location)
    assert "cut off" in batch.rejections[0].reason


def test_conflicting_duplicate_span_is_rejected(tmp_path: Path) -> None:
    a = span("a000000000000001", op="invoke_agent")
    changed = span("a000000000000001", op="invoke_agent", end=2000)
    rows, batch = read(write_lines(tmp_path / "t.jsonl", [export(a), export(a), export(changed)]))
    assert len(rows) == 2 and len(batch.rejections) == 1 and "different content" in batch.rejections[0].reason
    assert any("1 spans appeared more than once" in n for n in batch.notes)


def test_sniffs_directories_and_leaves_other_json_alone(tmp_path: Path) -> None:
    importer = OtlpImporter()
    assert importer.sniff(str(SAMPLES)) and importer.sniff(str(TRACES_B64)) and importer.sniff(str(LOGS))
    other = tmp_path / "events.jsonl"
    other.write_text('{"stream_id": "s", "event_type": "x", "data": {"resourceSpans": []}}\n')
    assert not importer.sniff(str(other)) and not importer.sniff(str(tmp_path))
    assert not importer.sniff(str(SAMPLES / "truth.json"))


def test_stream_type_option(tmp_path: Path) -> None:
    rows, _ = read(TRACES, stream_type="agent_traces")
    assert {r["stream_type"] for r in rows} == {"agent_traces"}
    assert {r["stream_type"] for r in read(TRACES)[0]} == {"otel_trace"}


# ------------------------------------------------------------------------------------ fuzzing

_REAL_LINE = TRACES.read_text().splitlines()[0]
_SMALL = json.dumps(export(span("a000000000000001", op="chat", gen_ai__usage__input_tokens=3)))


def _only_toolkit_errors(path: Path) -> None:
    try:
        for batch in OtlpImporter().batches(str(path), ImportOptions()):
            assert all(r.reason and r.location for r in batch.rejections)
            for r in batch.rejections:
                (r.record or "").encode()  # the quarantine can store it (no lone surrogates)
            assert batch.read >= batch.events.num_rows + len(batch.rejections)
            validate_table(batch.events)  # what the journal would accept
    except ToolkitError:
        pass


_KEYS = (
    "traceId spanId kind status code attributes key value intValue stringValue arrayValue values "
    "startTimeUnixNano endTimeUnixNano resourceSpans scopeSpans spans resourceLogs scopeLogs logRecords body"
).split()
_SLOTS = (
    "traceId spanId kind status attributes startTimeUnixNano endTimeUnixNano parentSpanId links events flags".split()
)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["\ud800", "0" * 32, "AAAAAAAAAAA=", "NaN", "9" * 25, "SPAN_KIND_CLIENT", "STATUS_CODE_ERROR"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cut=st.integers(0, len(_SMALL)),
    junk=st.binary(max_size=64),
    real_cut=st.integers(0, len(_REAL_LINE)),
    value=_json_values,
    path_choice=st.integers(0, 10),
)
def test_fuzzed_input_never_raises_anything_else(
    tmp_path_factory: pytest.TempPathFactory, cut: int, junk: bytes, real_cut: int, value: Any, path_choice: int
) -> None:
    d = tmp_path_factory.mktemp("fuzz")
    obj = json.loads(_SMALL)
    target = obj["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    target[_SLOTS[path_choice]] = value
    (d / "a.jsonl").write_bytes(_SMALL[:cut].encode() + b"\n" + junk + b"\n" + _REAL_LINE[:real_cut].encode() + b"\n")
    (d / "b.jsonl").write_text(json.dumps(obj) + "\n" + json.dumps({"resourceSpans": [{"scopeSpans": value}]}) + "\n")
    (d / "c.json").write_bytes(b'{"resourceLogs": ' + json.dumps(value).encode() + b"}")
    for f in ("a.jsonl", "b.jsonl", "c.json"):
        _only_toolkit_errors(d / f)
    _only_toolkit_errors(d)


def test_files_of_a_directory_with_other_names_are_named_in_the_notes(tmp_path: Path, journal: Journal) -> None:
    """The real traces beside a real CSV and SQLite database (copies of ``data/samples``): the
    spans are imported, the files the OTLP reader does not open by their names are notes."""
    root = tmp_path / "exports"
    root.mkdir()
    shutil.copy(TRACES, root)
    samples = SAMPLES.parent
    shutil.copy(samples / "generic" / "llm-calls.csv", root)
    shutil.copy(samples / "eventsourcing" / "assistants.sqlite", root)
    report = import_paths(journal, [str(root)], fmt="otlp")
    assert report.imported == SPAN_EVENTS
    for name in ("llm-calls.csv", "assistants.sqlite"):
        assert any(n.startswith(f"{root / name}: not read") for n in report.notes), report.notes


def test_duplicate_spans_are_imported_once_and_read_counts_every_copy() -> None:
    """The note said the 37 spans both trace files hold 'were read once' while read counted them twice
    (read 167, imported 93): the note now says what happened, imported once, read every copy."""
    with Journal.in_memory() as journal:
        report = import_paths(journal, [str(SAMPLES)], fmt="otlp")
    assert report.read - report.imported == 2 * TRUTH["span_count"]  # a start and an end per copied span
    assert report.read > report.imported + report.already_present + report.rejected
    note = next(n for n in report.notes if "37 spans appeared more than once" in n)
    assert "imported once (read counts every copy)" in note, note
