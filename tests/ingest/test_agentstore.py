"""AgentStore importer: the contract, one test per pitfall of the format spec, the real files."""

from __future__ import annotations

import json
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from importer_contract import ImporterContract

from toolkit.ingest.agentstore import AgentStoreImporter, event_id, event_ids
from toolkit.ingest.base import ImportFormatError, ImportOptions, RecordRejectedError, derive_id
from toolkit.ingest.runner import choose_importer, import_paths
from toolkit.journal import Journal
from toolkit.journal.side_tables import read_table

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples" / "agentstore"
SHARED = REPO.parent / "shared" / "formats" / "agentstore"
COLUMNS = [
    "stream_id",
    "stream_type",
    "version",
    "event_id",
    "event_type",
    "source_type",
    "occurred_at",
    "model",
    "tool_name",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "duration_ms",
    "is_error",
    "error",
    "data",
    "metadata",
]


def line(
    seq: int,
    type_: str = "custom",
    payload: Any = None,
    ts: str = "2026-11-21T23:43:22.123456789Z",
    metadata: dict[str, Any] | None = None,
    sid: str = "s1",
) -> str:
    """One event line as AgentStore writes it (Go field order, compact)."""
    record = {
        "session_id": sid,
        "sequence_number": seq,
        "type": type_,
        "payload": {"n": seq} if payload is None else payload,
        "timestamp": ts,
        "metadata": metadata or {},
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def data_dir(root: Path, lines: list[str], sid: str = "s1", session: dict[str, Any] | str | None = None) -> Path:
    (root / "events").mkdir(parents=True, exist_ok=True)
    (root / "sessions").mkdir(exist_ok=True)
    (root / "snapshots").mkdir(exist_ok=True)
    (root / "events" / f"{sid}.jsonl").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    if session is None:
        session = {
            "id": sid,
            "created_at": "2026-11-21T23:43:22Z",
            "updated_at": "2026-11-21T23:43:22Z",
            "event_count": len(lines),
        }
    text = session if isinstance(session, str) else json.dumps(session, indent=2)
    (root / "sessions" / f"{sid}.json").write_text(text, encoding="utf-8")
    return root


def events(journal: Journal, columns: list[str] = COLUMNS) -> list[dict[str, Any]]:
    return journal.read_all(columns).to_pylist()


class TestAgentStore(ImporterContract):
    fmt = "agentstore"
    expected_events = 34  # sample-data: 16 + 13 + 5
    expected_rejections = 6

    def make_export(self, tmp_path: Path) -> Path:
        return SAMPLES / "sample-data"

    def make_damaged(self, tmp_path: Path) -> Path:
        good = [line(1, "user_message"), line(2, "llm_request", metadata={"tokens_in": 10})]
        bad = [
            line(3)[:-30] + line(4),  # a cut-off line with the next event glued on
            line(5, metadata={"tokens_in": "12"}),  # wrong type in metadata
            "[1, 2]",  # not an object
            line(6, ts="2026-11-21T23:43:22"),  # no time zone
            json.dumps({"session_id": "s1", "sequence_number": 7, "type": "x", "timestamp": "2026-11-21T23:43:22Z"}),
        ]
        root = data_dir(tmp_path / "damaged", [*good, *bad, line(8)])
        with (root / "events" / "s1.jsonl").open("a") as f:
            f.write(line(9)[:40])  # the writer died mid-line: no newline at the end
        return root


# ---------------------------------------------------------------- sniffing and mapping


def test_sniffs_data_dirs_replay_exports_event_files_and_trees(tmp_path: Path) -> None:
    for p in [
        SAMPLES / "sample-data",
        SAMPLES / "library-exports",
        SAMPLES / "library-exports" / "support-triage-0001.replay.json",
        SAMPLES / "sample-data" / "events" / "support-triage-0001.jsonl",
        SAMPLES / "pitfall-samples",
        SAMPLES,
    ]:
        assert choose_importer(str(p)).name == "agentstore", p
    canonical = tmp_path / "canonical.jsonl"
    canonical.write_text('{"stream_id":"r","event_type":"x","data":1}\n')
    assert AgentStoreImporter().sniff(str(canonical)) is False
    assert AgentStoreImporter().sniff(str(SAMPLES / "library-exports" / "support-triage-0001.state.json")) is False


def test_a_directory_without_agentstore_files_is_an_error(tmp_path: Path, journal: Journal) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("hi")
    with pytest.raises(ImportFormatError, match="no AgentStore data dir") as caught:
        import_paths(journal, [str(tmp_path / "x")], fmt="agentstore")
    assert caught.value.hint


def test_mapping_of_one_session(journal: Journal) -> None:
    report = import_paths(journal, [str(SAMPLES / "sample-data")])
    assert report.formats == {str(SAMPLES / "sample-data"): "agentstore"}
    rows = [r for r in events(journal) if r["stream_id"] == "support-triage-0001"]
    assert [r["version"] for r in rows] == [1, 2, 3, 4, 5]
    assert {r["stream_type"] for r in rows} == {"agent_session"}
    assert [r["event_type"] for r in rows] == [
        "user_message",
        "tool_called",
        "tool_result",
        "llm_request",
        "llm_response",
    ]
    assert [r["source_type"] for r in rows] == [r["event_type"] for r in rows]
    first, call, result, request, response = rows
    assert json.loads(first["data"]) == {"content": "My invoice shows a double charge 😕", "role": "user"}
    assert json.loads(first["metadata"]) == {"source_sequence_number": 1}
    assert first["occurred_at"].isoformat() == "2026-11-21T23:43:22.665475+00:00"  # ...665475826Z, cut
    assert (call["tool_name"], result["tool_name"], result["duration_ms"]) == ("lookup_invoice", "lookup_invoice", 87.0)
    assert (request["tokens_in"], request["model"], request["data"]) == (1340, "gpt-4o-mini", "{}")
    assert (response["tokens_out"], response["cost_usd"], response["duration_ms"]) == (
        96,
        Decimal("0.000057600"),
        690.0,
    )
    digestless = derive_id("agentstore", "support-triage-0001", 1)
    assert first["event_id"] != digestless and first["event_id"].count("-") == 4


def test_worker_extra_unknown_keys_and_errors_go_to_metadata_and_columns(tmp_path: Path, journal: Journal) -> None:
    root = data_dir(
        tmp_path / "d",
        [
            line(1, "custom", {"kind": "x"}, metadata={"worker_id": "w-1", "extra": {"k": "v"}, "region": "eu"}),
            line(
                2, "error", {"error": "HTTP 429", "provider": "anthropic"}, metadata={"model": "m", "duration_ms": 310}
            ),
            line(3, "tool_result", {"error": "boom"}, metadata={"tool_name": "t"}),
        ],
    )
    raw = json.loads(line(4))
    raw["trace"] = "abc"  # a field AgentStore does not write (another version, another writer)
    with (root / "events" / "s1.jsonl").open("a") as f:
        f.write(json.dumps(raw) + "\n")
    import_paths(journal, [str(root)])
    one, two, three, four = events(journal)
    assert json.loads(one["metadata"]) == {
        "worker_id": "w-1",
        "extra": {"k": "v"},
        "region": "eu",
        "source_sequence_number": 1,
    }
    assert (two["is_error"], two["error"], two["model"], two["duration_ms"]) == (True, "HTTP 429", "m", 310.0)
    assert (three["is_error"], three["error"]) == (False, None)  # only `error` events are errors
    assert json.loads(four["metadata"]) == {"source_fields": {"trace": "abc"}, "source_sequence_number": 4}


def test_stream_type_option(journal: Journal) -> None:
    import_paths(
        journal, [str(SAMPLES / "pitfall-samples" / "edge-cases")], options=ImportOptions(stream_type="support")
    )
    assert {r["stream_type"] for r in events(journal, ["stream_type"])} == {"support"}


def test_fast_event_ids_are_derive_id() -> None:
    @given(
        st.text(min_size=1),
        st.integers(1, 2**63 - 1),
        st.none() | st.text(),
        st.none() | st.integers(0, 2**62),
    )
    @settings(max_examples=200)
    def check(sid: str, seq: int, content: str | None, us: int | None) -> None:
        plain = derive_id("agentstore", sid, seq) if content is None else derive_id("agentstore", sid, seq, content)
        assert event_id(sid, seq, content) == plain
        (many,) = event_ids([sid], [seq], [content or ""], [us]).to_pylist()
        assert many == (None if us is None else derive_id("agentstore", sid, seq, f"{content or ''}\x1e{us}"))

    check()


def test_tokens_and_cost_sum_to_agentstores_own_state(journal: Journal) -> None:
    import_paths(journal, [str(SAMPLES / "sample-data")])
    rows = events(journal)
    for state_file in sorted((SAMPLES / "library-exports").glob("*.state.json")):
        state = json.loads(state_file.read_text())
        mine = [
            r
            for r in rows
            if r["stream_id"] == state["session_id"] and r["event_type"] in ("llm_request", "llm_response")
        ]
        assert sum(r["tokens_in"] or 0 for r in mine) == state["tokens"]["in"]
        assert sum(r["tokens_out"] or 0 for r in mine) == state["tokens"]["out"]
        assert sum(r["cost_usd"] or 0 for r in mine) == Decimal(str(state["tokens"]["cost_usd"]))
        assert len([r for r in rows if r["stream_id"] == state["session_id"]]) == state["event_count"]


# ---------------------------------------------------------------- the library export


def test_replay_json_gives_the_same_events_as_the_data_dir(tmp_path: Path) -> None:
    with Journal.in_memory() as a, Journal.in_memory() as b:
        import_paths(a, [str(SAMPLES / "sample-data")])
        import_paths(b, [str(SAMPLES / "library-exports")])
        assert events(a) == events(b)
        both = import_paths(a, [str(SAMPLES / "library-exports")])
        assert (both.imported, both.already_present, both.read) == (0, 34, 34)


def test_a_replay_file_that_is_not_json_is_one_rejection(tmp_path: Path, journal: Journal) -> None:
    bad = tmp_path / "x.replay.json"
    bad.write_text('[{"session_id": "s1",')
    report = import_paths(journal, [str(bad)], on_error="quarantine")
    assert [(r.location, r.reason.split(":")[0]) for r in report.rejections] == [("file", "not JSON")]


# ---------------------------------------------------------------- pitfalls (formats README 1.9)


def test_pitfall_cut_off_last_line_is_rejected_with_file_and_line(tmp_path: Path, journal: Journal) -> None:
    root = data_dir(tmp_path / "d", [line(1), line(2)])
    events_file = root / "events" / "s1.jsonl"
    third = line(3)
    with events_file.open("a") as f:
        f.write(third[:25])
    with pytest.raises(RecordRejectedError) as caught:
        import_paths(journal, [str(root)])
    assert caught.value.context["source"] == str(events_file)
    assert caught.value.context["location"] == "line 3"
    assert "cut off" in caught.value.context["reason"]
    report = import_paths(journal, [str(root)], on_error="quarantine")
    assert (report.imported, report.quarantined) == (2, 1)
    with events_file.open("a") as f:  # the writer finishes the line: the next import takes it
        f.write(third[25:] + "\n")
    again = import_paths(journal, [str(root)])
    assert (again.imported, again.already_present) == (1, 2)


def test_pitfall_cut_off_line_with_the_next_event_glued_on(journal: Journal) -> None:
    root = SAMPLES / "pitfall-samples" / "truncated-then-appended"
    report = import_paths(journal, [str(root)], on_error="quarantine")
    (rejected,) = report.rejections
    assert rejected.location == "line 5" and "glued on" in rejected.reason
    assert rejected.record and "post-crash append #1" in rejected.record  # kept verbatim in quarantine
    rows = events(journal)
    assert [r["version"] for r in rows] == [1, 2, 3, 4, 5]
    assert json.loads(rows[-1]["data"]) == {"content": "post-crash append #2"}
    assert json.loads(rows[-1]["metadata"])["source_sequence_number"] == 5
    assert any("event_count 5" in n and "6 event line(s)" in n for n in report.notes)


def test_pitfall_duplicate_sequence_numbers_from_two_writers_are_all_kept(journal: Journal) -> None:
    report = import_paths(journal, [str(SAMPLES / "pitfall-samples" / "two-writers")])
    rows = events(journal)
    assert report.imported == 40 and [r["version"] for r in rows] == list(range(1, 41))
    seqs = [json.loads(r["metadata"])["source_sequence_number"] for r in rows]
    assert seqs == sorted(seqs) and seqs[:3] == [1, 1, 2]  # versions follow sequence numbers
    assert [json.loads(r["data"])["writer"] for r in rows[:2]] == [0, 1]  # ties in file order
    assert len({r["event_id"] for r in rows}) == 40
    assert rows[0]["occurred_at"] > rows[1]["occurred_at"]  # file order, not time order
    assert any("sequence number(s) 1 appear on 2 lines" in n for n in report.notes)
    assert any("event_count 39" in n and "40 event line(s)" in n for n in report.notes)


def test_pitfall_an_exact_copy_of_a_line_is_one_event(tmp_path: Path, journal: Journal) -> None:
    root = data_dir(tmp_path / "d", [line(1), line(2), line(2), line(3)])
    report = import_paths(journal, [str(root)])
    assert (report.read, report.imported, report.already_present) == (4, 3, 1)


def test_pitfall_same_sequence_number_reassigned_after_a_crash_is_a_new_event(journal: Journal) -> None:
    """The session before the crash, then after it: seq 5 names two different events."""
    import_paths(journal, [str(SAMPLES / "sample-data")])
    after = import_paths(journal, [str(SAMPLES / "pitfall-samples" / "truncated-then-appended")], on_error="quarantine")
    assert (after.imported, after.already_present, after.rejected) == (1, 4, 1)
    rows = [r for r in events(journal) if r["stream_id"] == "support-triage-0001"]
    assert [r["event_type"] for r in rows][-2:] == ["llm_response", "user_message"]
    assert [r["version"] for r in rows] == [1, 2, 3, 4, 5, 6]


def test_pitfall_nine_digit_fractions_are_cut_to_microseconds(tmp_path: Path, journal: Journal) -> None:
    times = [
        "2026-11-21T23:43:22.123456789Z",
        "2026-11-21T23:43:22.123456999Z",  # the same µs: order comes from sequence numbers
        "2026-11-21T23:43:22Z",
        "2026-11-21T23:43:22.5Z",
        "2026-11-21T23:43:22.56699187Z",
        "2026-11-22T01:43:22.1234567+02:00",
    ]
    root = data_dir(tmp_path / "d", [line(i + 1, ts=t) for i, t in enumerate(times)])
    import_paths(journal, [str(root)])
    got = [r["occurred_at"].isoformat() for r in events(journal)]
    assert got == [
        "2026-11-21T23:43:22.123456+00:00",
        "2026-11-21T23:43:22.123456+00:00",
        "2026-11-21T23:43:22+00:00",
        "2026-11-21T23:43:22.500000+00:00",
        "2026-11-21T23:43:22.566991+00:00",
        "2026-11-21T23:43:22.123456+00:00",
    ]


def test_pitfall_heterogeneous_payloads(journal: Journal) -> None:
    import_paths(journal, [str(SAMPLES / "pitfall-samples" / "edge-cases")])
    rows = events(journal)
    assert [r["data"] for r in rows] == [
        "null",
        '{"dropped_messages":12}',
        '["step-1","step-2"]',
        '"just a string"',
        '{"content":"ok"}',
    ]
    assert rows[1]["event_type"] == "memory_compacted"  # the source's own type is kept
    assert rows[4]["cost_usd"] == Decimal("0.000000200")  # 2e-7


def test_pitfall_go_escapes_decode_to_the_same_text(tmp_path: Path, journal: Journal) -> None:
    go = '{"session_id":"s1","sequence_number":1,"type":"custom","payload":{"html":"\\u003cb\\u003e \\u0026"},"timestamp":"2026-11-21T23:43:22Z","metadata":{}}'
    root = data_dir(tmp_path / "d", [go])
    import_paths(journal, [str(root)])
    assert events(journal)[0]["data"] == '{"html":"<b> &"}'


def test_pitfall_lines_over_one_mib_import(tmp_path: Path, journal: Journal) -> None:
    big = "x" * (1_100_000)
    root = data_dir(tmp_path / "d", [line(1), line(2, "tool_result", {"blob": big}), line(3)])
    report = import_paths(journal, [str(root)])
    assert report.imported == 3
    assert len(events(journal)[1]["data"]) > 1 << 20


def test_pitfall_session_file_unreadable_or_disagreeing_is_a_note(tmp_path: Path, journal: Journal) -> None:
    root = data_dir(tmp_path / "d", [line(1), line(2)], session='{\n  "id": "s1",\n  "crea')  # caught mid-rewrite
    report = import_paths(journal, [str(root)])
    assert report.imported == 2
    assert any("session record not readable" in n for n in report.notes)
    other = data_dir(tmp_path / "e", [line(1, sid="s2")], sid="s2", session={"id": "s2", "event_count": 3})
    report = import_paths(journal, [str(other)])
    assert any("says event_count 3" in n for n in report.notes)


def test_pitfall_snapshots_and_session_records_are_kept_aside_not_events(journal: Journal, tmp_path: Path) -> None:
    root = tmp_path / "d"
    shutil.copytree(SAMPLES / "sample-data", root)
    (root / "snapshots" / "support-triage-0001.json.tmp").write_text('{"session_id": "supp')
    report = import_paths(journal, [str(root)])
    assert report.imported == 34 and report.snapshots == 5
    assert any(".json.tmp: an unfinished snapshot write" in n for n in report.notes)
    kept = read_table(journal, "source_snapshots").sort_by([("topic", "ascending"), ("stream_id", "ascending")])
    assert kept.column("topic").to_pylist() == ["agentstore:session"] * 3 + ["agentstore:snapshot"] * 2
    assert kept.column("version").to_pylist() == [13, 16, 5, 10, 10]
    session = json.loads(kept.column("state")[1].as_py())
    assert (session["name"], session["labels"]) == ("flight-search", {"agent": "travel", "env": "demo"})
    snapshot = json.loads(kept.column("state")[4].as_py())
    assert snapshot["tokens"] == {"in": 1262, "out": 378, "cost_usd": 0.01961}
    again = import_paths(journal, [str(root)])
    assert (again.imported, again.snapshots) == (0, 0)


def test_read_counts_event_lines_not_session_records_or_snapshots(journal: Journal) -> None:
    """``read = imported + already present + rejected``, as for every importer: the 3 session
    records and 2 snapshots of the sample are ``snapshots_kept``, not read events."""
    report = import_paths(journal, [str(SAMPLES / "sample-data")])
    assert (report.read, report.imported, report.rejected, report.snapshots) == (34, 34, 0, 5)
    again = import_paths(journal, [str(SAMPLES / "sample-data")])
    assert (again.read, again.already_present) == (34, 34)
    for r in (report, again):
        assert r.read == r.imported + r.already_present + r.rejected


def test_a_grown_events_file_imports_only_the_new_lines(tmp_path: Path, journal: Journal) -> None:
    root = data_dir(tmp_path / "d", [line(1), line(2)])
    assert import_paths(journal, [str(root)]).imported == 2
    with (root / "events" / "s1.jsonl").open("a") as f:
        f.write(line(3) + "\n")
    report = import_paths(journal, [str(root)])
    assert (report.imported, report.already_present, report.read) == (1, 2, 3)
    assert [r["version"] for r in events(journal)] == [1, 2, 3]


def test_rejections_name_the_field(tmp_path: Path, journal: Journal) -> None:
    cases = {
        line(1, metadata={"tokens_in": -1}): "metadata.tokens_in: expected a non-negative integer",
        line(1, metadata={"model": 3}): "metadata.model: expected a string",
        line(1, metadata={"cost_usd": "0.1"}): "metadata.cost_usd: expected a number",
        line(0): "sequence_number: expected a positive integer",
        line(1, type_=""): "type: expected a non-empty string",
        line(1, ts="yesterday"): "timestamp: not an ISO 8601 time",
        json.dumps(
            {
                "session_id": "s1",
                "sequence_number": 1,
                "type": "x",
                "payload": 1,
                "timestamp": "2026-11-21T23:43:22Z",
                "metadata": [1],
            }
        ): "metadata: expected an object",
    }
    root = data_dir(tmp_path / "d", list(cases))
    report = import_paths(journal, [str(root)], on_error="quarantine")
    assert [r.location for r in report.rejections] == [f"line {i}" for i in range(1, len(cases) + 1)]
    for r, expected in zip(report.rejections, cases.values(), strict=True):
        assert r.reason.startswith(expected), (r.reason, expected)


@given(st.data())
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
def test_fuzzed_lines_never_raise_and_every_rejection_has_a_reason(data: st.DataObject) -> None:
    good = line(1, "llm_response", {"a": [1, "ü"]}, metadata={"tokens_out": 5, "cost_usd": 0.01, "worker_id": "w"})
    raw = good.encode()
    cut = data.draw(st.integers(0, len(raw)))
    noise = data.draw(st.binary(max_size=20))
    mutated = data.draw(
        st.sampled_from([raw[:cut], raw[:cut] + noise + raw[cut:], noise, raw.replace(b"5", noise[:3] or b"x")])
    )
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "s1.jsonl"
        f.write_bytes(
            raw + b"\n" + mutated + b"\n" + raw.replace(b'"sequence_number":1', b'"sequence_number":2') + b"\n"
        )
        batches = list(AgentStoreImporter().batches(str(f), ImportOptions()))
    rejected = [r for b in batches for r in b.rejections]
    imported = sum(b.events.num_rows for b in batches)
    assert all(r.reason and r.location.startswith("line ") for r in rejected)
    assert imported >= 2  # the good lines around the damage
    assert sum(b.read for b in batches) == imported + len(rejected)  # every line read is an event or a rejection


# ---------------------------------------------------------------- the real files, when present


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} not present (the team's shared format samples)")
def test_the_real_files_in_shared_import_like_the_bundled_copies() -> None:
    with Journal.in_memory() as shared, Journal.in_memory() as bundled:
        a = import_paths(shared, [str(SHARED)], on_error="quarantine")
        b = import_paths(bundled, [str(SAMPLES)], on_error="quarantine")
        assert (a.read, a.imported, a.already_present, a.rejected, a.snapshots) == (
            b.read,
            b.imported,
            b.already_present,
            b.rejected,
            b.snapshots,
        )
        assert a.imported == 80 and a.already_present == 34 + 4 and a.rejected == 1
        ids = pc.unique(shared.read_all(["event_id"]).column("event_id")).to_pylist()
        assert sorted(ids) == sorted(pc.unique(bundled.read_all(["event_id"]).column("event_id")).to_pylist())


# ---------------------------------------------------------------- directories of loose files, BOMs, symlinks


def mixed_dir(root: Path) -> Path:
    """A replay export and two events files AgentStore's reader must not skip: one starting with a
    UTF-8 BOM, one whose first line is the tail of a cut-off line."""
    root.mkdir()
    shutil.copy(SAMPLES / "library-exports" / "support-triage-0001.replay.json", root)
    text = (SAMPLES / "sample-data" / "events" / "support-triage-0001.jsonl").read_text(encoding="utf-8")
    (root / "bomsess.jsonl").write_bytes(b"\xef\xbb\xbf" + text.replace("support-triage-0001", "bomsess").encode())
    (root / "cutsess.jsonl").write_text('ge","payload":{"c\n' + text.replace("support-triage-0001", "cutsess"))
    return root


def test_a_directory_import_reads_events_files_starting_with_a_bom_or_a_cut_off_line(
    tmp_path: Path, journal: Journal
) -> None:
    root = mixed_dir(tmp_path / "mix")
    with pytest.raises(RecordRejectedError, match=r"cutsess\.jsonl: line 1: not JSON"):
        import_paths(journal, [str(root)], fmt="agentstore")
    report = import_paths(journal, [str(root)], fmt="agentstore", on_error="quarantine")
    assert (report.read, report.imported, report.rejected) == (16, 15, 1)
    assert [(Path(r.source).name, r.location) for r in report.rejections] == [("cutsess.jsonl", "line 1")]
    streams = set(journal.read_all(["stream_id"]).column("stream_id").to_pylist())
    assert streams == {"support-triage-0001", "bomsess", "cutsess"}


def test_a_bom_at_the_start_of_an_events_file_is_not_a_rejection(tmp_path: Path, journal: Journal) -> None:
    file = tmp_path / "s1.jsonl"
    file.write_bytes(b"\xef\xbb\xbf" + "".join(line(n) + "\n" for n in (1, 2)).encode())
    report = import_paths(journal, [str(file)], fmt="agentstore")
    assert (report.read, report.imported, report.rejected) == (2, 2, 0)


def test_a_jsonl_file_without_event_records_in_a_directory_is_a_note(tmp_path: Path, journal: Journal) -> None:
    root = tmp_path / "mix"
    root.mkdir()
    (root / "s1.jsonl").write_text(line(1) + "\n")
    (root / "other.jsonl").write_text('{"stream_id": "r", "event_type": "x", "data": 1}\n')
    report = import_paths(journal, [str(root)], fmt="agentstore")
    assert report.imported == 1
    assert any("other.jsonl" in n and "not an AgentStore events file" in n for n in report.notes)


def test_symlinks_leading_outside_the_imported_directory_are_not_read(tmp_path: Path, journal: Journal) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jsonl").write_text(line(1, sid="secret") + "\n")
    (outside / "dir").mkdir()
    (outside / "dir" / "s3.jsonl").write_text(line(1, sid="s3") + "\n")
    root = data_dir(tmp_path / "imp" / "data", [line(1)])
    (root / "events" / "s2.jsonl").symlink_to(outside / "secret.jsonl")
    loose = tmp_path / "imp" / "loose"
    loose.mkdir()
    (loose / "s4.jsonl").symlink_to(outside / "secret.jsonl")
    (loose / "linked").symlink_to(outside / "dir", target_is_directory=True)
    (loose / "s5.jsonl").write_text(line(1, sid="s5") + "\n")
    (loose / "same.jsonl").symlink_to(loose / "s5.jsonl")  # inside: read (the same events, once)
    report = import_paths(journal, [str(tmp_path / "imp")], fmt="agentstore", on_error="quarantine")
    assert set(journal.read_all(["stream_id"]).column("stream_id").to_pylist()) == {"s1", "s5"}
    assert report.rejected == 0 and not read_table(journal, "quarantine").num_rows
    skipped = [n for n in report.notes if "not read: a symlink" in n]
    assert sorted(Path(n.split(":")[0]).name for n in skipped) == ["linked", "s2.jsonl", "s4.jsonl"]


def test_every_file_of_a_mixed_directory_it_does_not_read_is_a_note(tmp_path: Path, journal: Journal) -> None:
    """A directory of real exports in several formats (copies of ``data/samples``, which are the
    team's ``shared/formats`` files): ``auto`` picks AgentStore for it (its data dir), and every
    file it does not read — the Evennia archives (27 events), the pyeventsourcing database (49),
    a GetState export, a CSV — is named in the notes, not skipped in silence."""
    root = tmp_path / "mixed"
    shutil.copytree(SAMPLES / "sample-data", root / "sample-data")
    archives = REPO / "data" / "samples" / "evennia-archive"
    others = [
        archives / "guide-npc_20261121T234805Z.json",
        archives / "scout-helper_20261121T234805Z.json",
        REPO / "data" / "samples" / "eventsourcing" / "assistants.sqlite",
        SAMPLES / "library-exports" / "support-triage-0001.state.json",
        REPO / "data" / "samples" / "generic" / "llm-calls.csv",
    ]
    for f in others:
        shutil.copy(f, root / f.name)
    assert choose_importer(str(root)).name == "agentstore"
    report = import_paths(journal, [str(root)])
    assert (report.read, report.imported) == (34, 34)
    for f in others:
        assert any(n.startswith(f"{root / f.name}: ") and "not read" in n for n in report.notes), (f.name, report.notes)
    state = next(n for n in report.notes if n.startswith(str(root / "support-triage-0001.state.json")))
    assert "GetState" in state


# ---------------------------------------------------------------- files a directory import does not read


def stray_data_dir(root: Path) -> tuple[Path, list[Path]]:
    """The real sample data dir (``data/samples``: the ``shared/formats`` files) with files AgentStore never writes there,
    and the one file the spec says it may leave that is not read (an unfinished snapshot write)."""
    shutil.copytree(SAMPLES / "sample-data", root)
    session = (root / "events" / "support-triage-0001.jsonl").read_text(encoding="utf-8")
    strays = {
        root / "events" / "foo.json": '{"session_id": "foo"}',
        root / "events" / "support-triage-0001.jsonl.bak": session,
        root / "events.jsonl.bak": session,
        root / "notes.txt": "exported on Friday",
        root / "beside.jsonl": session.replace("support-triage-0001", "beside"),  # beside events/, not in it
        root / "sessions" / "README.md": "# sessions",
        root / "snapshots" / "old.json.bak": "{}",
    }
    for path, text in strays.items():
        path.write_text(text, encoding="utf-8")
    (root / "backup" / "events").mkdir(parents=True)  # a directory AgentStore does not make
    (root / "backup" / "events" / "s9.jsonl").write_text(line(1, sid="s9") + "\n")
    (root / "events" / "old.jsonl").mkdir()  # a directory, not an events file (was an IsADirectoryError)
    (root / "snapshots" / "support-triage-0001.json.tmp").write_text('{"session_id": "supp')
    return root, [*strays, root / "backup", root / "events" / "old.jsonl"]


def test_files_a_data_dir_holds_that_are_not_the_formats_are_notes(
    tmp_path: Path, journal: Journal, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers import run_cli

    root, strays = stray_data_dir(tmp_path / "export")
    code, out, err = run_cli(capsys, "import", "-j", str(journal.path), str(root))
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["read"], summary["imported"], summary["rejected"]) == (34, 34, 0)  # the strays are not read
    assert set(journal.read_all(["stream_id"]).column("stream_id").to_pylist()) == {
        "e7caa82b-39db-44ed-833d-def6ffbe37ca",
        "c5541406-7d8d-407f-a0bf-aa20908fc83b",
        "support-triage-0001",
    }
    notes = summary["notes"]
    for stray in strays:
        said = [n for n in notes if n.startswith(f"{stray}: not read: ")]
        assert len(said) == 1, (stray, notes)
        assert f"note: {said[0]}" in err  # on stderr too
        if stray.is_file():
            assert "not an AgentStore events/sessions/snapshots file" in said[0]
        else:
            assert "pass that directory itself" in said[0]
    # what the format puts there is read (or, for the .tmp, said as before) and never called a stray
    legits = ["events/*.jsonl", "sessions/*.json", "snapshots/*.json", "snapshots/*.json.tmp"]
    for legit in [p for pattern in legits for p in root.glob(pattern) if p.is_file()]:
        assert not any(n.startswith(f"{legit}: not read") for n in notes), legit
    tmp = [n for n in notes if n.startswith(str(root / "snapshots" / "support-triage-0001.json.tmp"))]
    assert len(tmp) == 1 and "unfinished snapshot write" in tmp[0]


def test_many_stray_files_are_one_note_with_a_count_and_the_first_names(tmp_path: Path, journal: Journal) -> None:
    root = tmp_path / "export"
    shutil.copytree(SAMPLES / "sample-data", root)
    for n in range(12):
        (root / "events" / f"part-{n:02}.json").write_text("{}")
    report = import_paths(journal, [str(root)])
    assert report.imported == 34
    said = [n for n in report.notes if "part-" in n]
    assert len(said) == 1, said
    assert said[0].startswith(f"{root / 'events'}: 12 files not read: not an AgentStore events/sessions/snapshots file")
    assert all(f"part-{n:02}.json" in said[0] for n in range(5)) and "part-05.json" not in said[0]
    assert "and 7 more" in said[0]


def test_what_is_deeper_than_six_levels_is_a_note_naming_it(tmp_path: Path, journal: Journal) -> None:
    root = tmp_path / "exports"
    shallow = data_dir(root / "a" / "b" / "c" / "d" / "e" / "f", [line(1, sid="s1")], sid="s1")  # 6 levels: read
    deep = data_dir(root / "a" / "b" / "c" / "d" / "e" / "f2" / "g", [line(1, sid="s2")], sid="s2")  # 7: not
    lone = root / "a" / "b" / "c" / "d" / "e" / "f2" / "loose.replay.json"
    shutil.copy(SAMPLES / "library-exports" / "support-triage-0001.replay.json", lone)
    (root / "a" / "b" / "c" / "d" / "e" / "f2" / "empty").mkdir()  # nothing below it: nothing to say
    report = import_paths(journal, [str(root)], fmt="agentstore")
    assert (report.read, report.imported) == (1, 1)
    assert journal.read_all(["stream_id"]).column("stream_id").to_pylist() == ["s1"]
    assert shallow.is_dir()
    for skipped in (deep, lone):
        said = [n for n in report.notes if n.startswith(f"{skipped}: not read: ")]
        assert len(said) == 1, (skipped, report.notes)
        assert "deeper than 6 levels" in said[0] and "pass that directory itself" in said[0]
    assert not any("empty" in n for n in report.notes)
