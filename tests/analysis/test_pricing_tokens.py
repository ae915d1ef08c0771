"""Cache-token accounting per source reporting style, and bad token counts at import, for every importer path.

Each fixture file is written the way its source reports usage; after import the journal's columns
follow OTel GenAI (cache tokens part of tokens_in, reasoning part of tokens_out) and repricing
counts every token exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import REPO

from toolkit.analysis.pricing import CSV_COLUMNS, priced_events
from toolkit.errors import EventValidationError
from toolkit.ingest.runner import import_paths
from toolkit.journal import Journal

M = Decimal(1_000_000)
TOKENS = ["tokens_in", "tokens_out", "tokens_cache_read", "tokens_cache_write", "tokens_reasoning"]
# input 2, cache read 0.2, cache write 2.5, output 10, reasoning at the output rate
RATES = {"in": 2, "read": Decimal("0.2"), "write": Decimal("2.5"), "out": 10}


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.csv"
    path.write_text(
        ",".join(CSV_COLUMNS) + "\nm,exact,acme,2020-01-01,,2,10,0.2,2.5,,,https://example.com,2026-01-01\n",
        encoding="utf-8",
    )
    return path


def expected_cost(tin: int, tout: int, read: int = 0, write: int = 0) -> Decimal:
    return ((tin - read - write) * RATES["in"] + read * RATES["read"] + write * RATES["write"] + tout * RATES["out"]) / M


def imported(journal: Journal, path: Path, prices: Path, **kw: Any) -> list[dict[str, Any]]:
    report = import_paths(journal, [str(path)], **kw)
    assert not report.rejections, report.rejections
    rows = priced_events(journal, prices, columns=["event_type", "model", *TOKENS, "repriced_cost_usd"]).to_pylist()
    return [r for r in rows if r["tokens_in"] is not None or r["tokens_out"] is not None]


def write_json(path: Path, obj: Any, lines: bool = False) -> Path:
    text = "".join(json.dumps(o) + "\n" for o in obj) if lines else json.dumps(obj)
    path.write_text(text, encoding="utf-8")
    return path


def chat_run(usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "run-1",
        "created_at": "2026-11-01T10:00:00Z",
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "usage": usage}],
    }


# ---------------------------------------------------------------------- reporting styles


def test_openai_style_usage_already_counts_cached_and_reasoning_tokens_inside(
    tmp_path: Path, journal: Journal, prices: Path
) -> None:
    usage = {
        "prompt_tokens": 10_000,
        "completion_tokens": 500,
        "prompt_tokens_details": {"cached_tokens": 8_000},
        "completion_tokens_details": {"reasoning_tokens": 300},
    }
    [row] = imported(journal, write_json(tmp_path / "t.jsonl", [chat_run(usage)], lines=True), prices)
    assert [row[c] for c in TOKENS] == [10_000, 500, 8_000, None, 300]
    assert row["repriced_cost_usd"] == expected_cost(10_000, 500, read=8_000)


def test_anthropic_style_usage_is_additive_and_normalised_on_import(
    tmp_path: Path, journal: Journal, prices: Path
) -> None:
    usage = {"input_tokens": 1_000, "cache_read_input_tokens": 8_000, "cache_creation_input_tokens": 1_000, "output_tokens": 500}
    [row] = imported(journal, write_json(tmp_path / "t.jsonl", [chat_run(usage)], lines=True), prices)
    assert [row[c] for c in TOKENS] == [10_000, 500, 8_000, 1_000, None]
    assert row["repriced_cost_usd"] == expected_cost(10_000, 500, read=8_000, write=1_000)


def _otlp(tmp_path: Path, **usage: int) -> Path:
    def attr(k: str, v: Any) -> dict[str, Any]:
        return {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}

    t0 = 1_795_307_416_000_000_000
    span = {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": "c000000000000001",
        "name": "chat m",
        "kind": 3,
        "startTimeUnixNano": str(t0),
        "endTimeUnixNano": str(t0 + 10**9),
        "attributes": [
            attr("gen_ai.operation.name", "chat"),
            attr("gen_ai.response.model", "m"),
            *(attr("gen_ai.usage." + k, v) for k, v in usage.items()),
        ],
        "status": {},
    }
    doc = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"scope": {"name": "t"}, "spans": [span]}]}]}
    return write_json(tmp_path / "traces.jsonl", [doc], lines=True)


def test_otel_genai_usage_counts_cache_inside_input(tmp_path: Path, journal: Journal, prices: Path) -> None:
    path = _otlp(tmp_path, input_tokens=10_000, output_tokens=500, **{"cache_read.input_tokens": 8_000})
    [row] = imported(journal, path, prices)
    assert [row[c] for c in TOKENS] == [10_000, 500, 8_000, None, None]
    assert row["repriced_cost_usd"] == expected_cost(10_000, 500, read=8_000)


def test_otlp_usage_reported_additively_is_normalised(tmp_path: Path, journal: Journal, prices: Path) -> None:
    """An instrumentation passing Anthropic's usage through: input excludes the (larger) cached part."""
    path = _otlp(
        tmp_path, input_tokens=1_000, output_tokens=500, cache_read_input_tokens=8_000, cache_creation_input_tokens=1_000
    )
    [row] = imported(journal, path, prices)
    assert [row[c] for c in TOKENS] == [10_000, 500, 8_000, 1_000, None]
    assert row["repriced_cost_usd"] == expected_cost(10_000, 500, read=8_000, write=1_000)


def test_agentstore_reports_whole_input_per_event_without_cache(tmp_path: Path, journal: Journal, prices: Path) -> None:
    root = tmp_path / "store"
    (root / "events").mkdir(parents=True)
    (root / "sessions").mkdir()
    lines = [
        {"session_id": "s1", "sequence_number": 1, "type": "llm_request", "payload": {}, "timestamp": "2026-11-21T23:43:22Z",
         "metadata": {"tokens_in": 10_000, "model": "m"}},
        {"session_id": "s1", "sequence_number": 2, "type": "llm_response", "payload": {}, "timestamp": "2026-11-21T23:43:23Z",
         "metadata": {"tokens_out": 500, "model": "m", "cost_usd": 0.025}},
    ]  # fmt: skip
    write_json(root / "events" / "s1.jsonl", lines, lines=True)
    write_json(root / "sessions" / "s1.json", {"id": "s1", "created_at": "2026-11-21T23:43:22Z", "event_count": 2})
    rows = imported(journal, root, prices)
    assert [[r[c] for c in TOKENS] for r in rows] == [[10_000, None, None, None, None], [None, 500, None, None, None]]
    assert sum(r["repriced_cost_usd"] for r in rows) == expected_cost(10_000, 500) == Decimal("0.025")


def test_evennia_ticks_report_prompt_and_completion(tmp_path: Path, journal: Journal, prices: Path) -> None:
    doc = json.loads((REPO / "data/samples/evennia-archive/guide-npc_20261121T234805Z.json").read_text())
    report = import_paths(journal, [str(write_json(tmp_path / "a.json", doc))])
    assert not report.rejections
    ticks = [e for e in doc["events"] if "token_usage" in e["data"]]
    rows = priced_events(journal, prices, columns=["tokens_in", "tokens_out", "unpriced_reason"]).to_pylist()
    assert sum(r["tokens_in"] or 0 for r in rows) == sum(e["data"]["token_usage"]["prompt"] for e in ticks) > 0
    # the archive does not say which model a tick used: listed as unpriced, not priced at zero
    assert {r["unpriced_reason"] for r in rows if r["tokens_in"]} == {"no model"}


def test_generic_mapping_of_a_gateway_log(journal: Journal, prices: Path) -> None:
    samples = REPO / "data" / "samples" / "generic"
    report = import_paths(journal, [str(samples / "gateway-log.jsonl")], fmt="jsonl")  # its .mapping.toml beside it
    assert not report.rejections
    rows = priced_events(journal, None, columns=["model", *TOKENS, "repriced_cost_usd", "unpriced_reason"]).to_pylist()
    first = next(r for r in rows if r["tokens_in"] == 812)
    assert (first["tokens_cache_read"], first["model"]) == (512, "gpt-4o")
    # the shipped table: gpt-4o 2.50 in, 1.25 cached, 10 out
    assert first["repriced_cost_usd"] == (300 * Decimal("2.5") + 512 * Decimal("1.25") + 64 * 10) / M


# ---------------------------------------------------------------------- bad token counts, every importer path


def _chat(tmp_path: Path, value: Any) -> Path:
    return write_json(tmp_path / "t.jsonl", [chat_run({"prompt_tokens": value, "completion_tokens": 1})], lines=True)


def _otlp_bad(tmp_path: Path, value: Any) -> Path:
    return _otlp(tmp_path, input_tokens=value, output_tokens=1) if isinstance(value, int) else _otlp_raw(tmp_path, value)


def _otlp_raw(tmp_path: Path, value: Any) -> Path:
    path = _otlp(tmp_path, input_tokens=0, output_tokens=1)
    doc = json.loads(path.read_text())
    attrs = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]
    for a in attrs:
        if a["key"] == "gen_ai.usage.input_tokens":
            a["value"] = {"doubleValue": value}
    return write_json(path, [doc], lines=True)


def _agentstore(tmp_path: Path, value: Any) -> Path:
    root = tmp_path / "store"
    (root / "events").mkdir(parents=True)
    (root / "sessions").mkdir()
    line = {"session_id": "s1", "sequence_number": 1, "type": "llm_request", "payload": {},
            "timestamp": "2026-11-21T23:43:22Z", "metadata": {"tokens_in": value}}  # fmt: skip
    write_json(root / "events" / "s1.jsonl", [line], lines=True)
    write_json(root / "sessions" / "s1.json", {"id": "s1", "created_at": "2026-11-21T23:43:22Z", "event_count": 1})
    return root


def _evennia(tmp_path: Path, value: Any) -> Path:
    doc = {
        "assistant_key": "bot",
        "aggregate_id": "bc7329a7-7f1c-5516-979c-f6e9e622dea3",
        "exported_at": "2026-11-21T23:48:05+00:00",
        "event_count": 2,
        "events": [
            {"topic": "AssistantCreated", "timestamp": "2026-11-21T23:48:03+00:00", "data": {"assistant_key": "bot"}},
            {"topic": "TickCompleted", "timestamp": "2026-11-21T23:48:04+00:00",
             "data": {"tick_number": 1, "token_usage": {"prompt": value, "completion": 3}}},
        ],
    }  # fmt: skip
    return write_json(tmp_path / "bot_20261121T234805Z.json", doc)


def _canonical_jsonl(tmp_path: Path, value: Any) -> Path:
    line = {"stream_id": "r", "event_type": "llm_response", "data": {}, "occurred_at": "2026-11-01T00:00:00Z", "tokens_in": value}
    return write_json(tmp_path / "events.jsonl", [line], lines=True)


def _csv(tmp_path: Path, value: Any) -> Path:
    (tmp_path / "calls.mapping.toml").write_text(
        '[columns]\nstream_id = "s"\nevent_type = { const = "llm_response" }\noccurred_at = "t"\ntokens_in = "n"\n',
        encoding="utf-8",
    )
    path = tmp_path / "calls.csv"
    path.write_text(f"s,t,n\nr,2026-11-01T00:00:00Z,5\nr,2026-11-01T00:00:01Z,{value}\n", encoding="utf-8")
    return path


def _parquet(tmp_path: Path, value: Any) -> Path:
    (tmp_path / "calls.mapping.toml").write_text(
        '[columns]\nstream_id = "s"\nevent_type = { const = "llm_response" }\noccurred_at = "t"\ntokens_in = "n"\n',
        encoding="utf-8",
    )
    path = tmp_path / "calls.parquet"
    pq.write_table(
        pa.table({"s": ["r", "r"], "t": ["2026-11-01T00:00:00Z", "2026-11-01T00:00:01Z"], "n": [5, value]}), path
    )
    return path


IMPORTERS: dict[str, tuple[Callable[[Path, Any], Path], str]] = {
    # name: (writes a source file with one bad count, where the rejection points)
    "chat": (_chat, "line 1"),
    "otlp": (_otlp_bad, "line 1"),
    "agentstore": (_agentstore, "line 1"),
    "evennia-archive": (_evennia, "events[1]"),
    "jsonl": (_canonical_jsonl, "line 1"),
    "csv": (_csv, "line 3"),  # the header is line 1
    "parquet": (_parquet, "row 2"),
}


@pytest.mark.parametrize("value", [-5, 2.5])
@pytest.mark.parametrize("name", sorted(IMPORTERS))
def test_negative_or_fractional_token_counts_are_rejected_with_the_row_named(
    tmp_path: Path, journal: Journal, name: str, value: Any
) -> None:
    write, where = IMPORTERS[name]
    path = write(tmp_path, value)
    with pytest.raises(Exception) as failed:  # --on-error fail: nothing is written
        import_paths(journal, [str(path)])
    assert where in str(failed.value) and "tokens" in str(failed.value), str(failed.value)
    assert journal.read_all(["event_id"]).num_rows == 0
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert len(report.rejections) == 1, report.rejections
    rejection = report.rejections[0]
    assert where in rejection.location and "tokens" in rejection.reason, rejection
    assert all((t or 0) >= 0 for t in journal.read_all(["tokens_in"]).column("tokens_in").to_pylist())


def test_the_bulk_validation_names_the_row_of_a_negative_count() -> None:
    from toolkit.journal.prepare import validate_table

    table = pa.table({"stream_id": ["r"] * 3, "event_type": ["x"] * 3, "data": ["{}"] * 3, "tokens_out": [1, 2, -3]})
    with pytest.raises(EventValidationError, match=r"event 2: field 'tokens_out': must not be negative, got -3"):
        validate_table(table)


def test_a_token_count_no_sum_can_hold_is_refused_on_both_paths(journal: Journal) -> None:
    """2^62 tokens in two events wrapped the budget rules' int64 sums (no finding) and made the
    rollups fail with an overflow naming no event: such a count is refused where it comes in."""
    from toolkit.journal.prepare import validate_table

    table = pa.table({"stream_id": ["r"] * 2, "event_type": ["x"] * 2, "data": ["{}"] * 2, "tokens_in": [5, 2**62]})
    with pytest.raises(EventValidationError, match=r"event 1: field 'tokens_in': more than 1,000,000,000,000 tokens"):
        validate_table(table)
    with pytest.raises(EventValidationError, match=r"field 'tokens_out': more than 1,000,000,000,000 tokens"):
        journal.append("huge", [{"event_type": "llm_response", "data": {}, "tokens_out": 2**62}])
    journal.append("fine", [{"event_type": "llm_response", "data": {}, "tokens_out": 10**12}])
