"""Chat transcripts: the importer contract, then the mapping of each role, causation and times."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from importer_contract import ImporterContract

from toolkit.ingest.base import ImportOptions, derive_id
from toolkit.ingest.chat import ChatImporter
from toolkit.ingest.runner import choose_importer, import_paths
from toolkit.journal import Journal

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples" / "chat"

BOOKING: dict[str, Any] = {
    "id": "run-flight-1",
    "task": "book a flight to Berlin",
    "reward": 1.0,
    "metadata": {"model": "gpt-4o", "split": "train"},
    "messages": [
        {"role": "system", "content": "You are a travel agent."},
        {"role": "user", "content": "Book me a flight to Berlin"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "search_flights", "arguments": '{"to": "BER"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{city: BER"}},
            ],
            "usage": {"prompt_tokens": 120, "completion_tokens": 30, "prompt_tokens_details": {"cached_tokens": 100}},
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "LH123 09:00"},
        {"role": "tool", "tool_call_id": "call_9", "content": "no such call"},
        {"role": "assistant", "content": [{"type": "text", "text": "Booked LH123."}]},
    ],
}
# a run given as a bare list of messages: no id, no time
BARE = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
EVENTS = 1 + 1 + 3 + 2 + 1 + 2  # system, user, response + 2 calls, 2 results, response; then the bare run


def write_jsonl(path: Path, runs: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    return path


class TestChatJsonl(ImporterContract):
    fmt = "chat"
    expected_events = EVENTS
    expected_rejections = 3

    def make_export(self, tmp_path: Path) -> Path:
        return write_jsonl(tmp_path / "runs.jsonl", [BOOKING, BARE])

    def make_damaged(self, tmp_path: Path) -> Path:
        path = write_jsonl(
            tmp_path / "damaged.jsonl", [BOOKING, BARE, [{"role": "user", "content": "x"}, "not a message"]]
        )
        with path.open("a") as f:
            f.write('[{"role": "user", "content": "cut off\n')  # not JSON
            f.write(json.dumps({"id": "r9", "messages": [{"content": "no role"}]}) + "\n")
        return path


class TestChatJsonList(ImporterContract):
    fmt = "chat"
    expected_events = EVENTS
    expected_rejections = 2

    def make_export(self, tmp_path: Path) -> Path:
        path = tmp_path / "runs.json"
        path.write_text(json.dumps([BOOKING, BARE], indent=2))
        return path

    def make_damaged(self, tmp_path: Path) -> Path:
        path = tmp_path / "damaged.json"
        path.write_text(json.dumps([BOOKING, "not a run", [{"role": "user", "content": "x"}, 5]]))
        return path


def test_rejections_name_run_and_message(tmp_path: Path, journal: Journal) -> None:
    path = TestChatJsonList().make_damaged(tmp_path)
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert [(r.location, r.reason) for r in report.rejections] == [
        ("run 2", "not a chat run: expected a list of messages or an object with messages, got str"),
        ("run 3, message 2", "a message must be an object, got int"),
    ]


def events_of(journal: Journal, stream_id: str) -> list[dict[str, Any]]:
    rows = journal.read_stream(stream_id).to_pylist()
    for r in rows:
        r["data"], r["metadata"] = json.loads(r["data"]), json.loads(r["metadata"])
    return rows


def test_each_role_becomes_its_event(tmp_path: Path, journal: Journal) -> None:
    path = write_jsonl(tmp_path / "runs.jsonl", [BOOKING])
    import_paths(journal, [str(path)])
    rows = events_of(journal, "run-flight-1")
    assert [(r["event_type"], r["source_type"]) for r in rows] == [
        ("custom", "system"),
        ("user_message", "user"),
        ("llm_response", "assistant"),
        ("tool_called", "tool_call"),
        ("tool_called", "tool_call"),
        ("tool_result", "tool"),
        ("tool_result", "tool"),
        ("llm_response", "assistant"),
    ]
    system, user, response, search, weather, result, orphan, final = rows
    assert system["data"]["content"] == "You are a travel agent."  # the system prompt is kept
    assert {r["stream_type"] for r in rows} == {"chat_run"}
    assert system["metadata"]["run"] == {k: v for k, v in BOOKING.items() if k != "messages"}
    assert "run" not in user["metadata"]
    assert (response["model"], response["tokens_in"], response["tokens_out"], response["tokens_cache_read"]) == (
        "gpt-4o",
        120,
        30,
        100,
    )
    assert (search["tool_name"], search["tool_call_id"], search["data"]) == ("search_flights", "call_1", {"to": "BER"})
    assert search["causation_id"] == response["event_id"]
    assert weather["data"] == "{city: BER" and weather["metadata"]["arguments_unparsable"] is True
    assert (result["causation_id"], result["tool_name"], result["tool_call_id"]) == (
        search["event_id"],
        "search_flights",
        "call_1",
    )
    assert orphan["causation_id"] is None and orphan["metadata"]["orphan"] is True
    assert final["data"]["content"] == [{"type": "text", "text": "Booked LH123."}]
    assert response["event_id"] == derive_id("chat", "run-flight-1", 2, 0)
    assert weather["event_id"] == derive_id("chat", "run-flight-1", 2, 2)


def test_times_run_level_message_level_or_synthetic(tmp_path: Path, journal: Journal) -> None:
    timed = {**BOOKING, "id": "timed", "created_at": "2026-11-01T09:00:00Z"}
    timed["messages"] = [*BOOKING["messages"][:2], {"role": "assistant", "content": "ok", "timestamp": 1793523605}]
    path = write_jsonl(tmp_path / "runs.jsonl", [timed, BARE])
    import_paths(journal, [str(path)])
    rows = events_of(journal, "timed")
    t0 = dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC)
    assert [r["occurred_at"] for r in rows] == [
        t0,
        t0 + dt.timedelta(milliseconds=1),
        dt.datetime(2026, 11, 1, 9, 0, 5, tzinfo=dt.UTC),
    ]
    assert [r["metadata"]["time"] for r in rows] == ["run", "run", "message"]
    bare = events_of(journal, "runs.jsonl#2")  # no id: file name and run number
    assert [r["metadata"]["time"] for r in bare] == ["synthetic", "synthetic"]
    assert bare[1]["occurred_at"] - bare[0]["occurred_at"] == dt.timedelta(milliseconds=1)


def test_reimport_with_synthetic_times_adds_nothing(tmp_path: Path, journal: Journal) -> None:
    path = write_jsonl(tmp_path / "runs.jsonl", [BARE])
    assert import_paths(journal, [str(path)]).imported == 2
    again = import_paths(journal, [str(path)])  # another import time, the same ids and payloads
    assert (again.imported, again.already_present) == (0, 2)


def test_a_run_that_grew_imports_only_its_new_messages(tmp_path: Path, journal: Journal) -> None:
    run = {"id": "growing", "messages": BARE}
    path = write_jsonl(tmp_path / "runs.jsonl", [run])
    import_paths(journal, [str(path)])
    write_jsonl(path, [{**run, "messages": [*BARE, {"role": "user", "content": "thanks"}]}])
    report = import_paths(journal, [str(path)])
    assert (report.imported, report.already_present) == (1, 2)


def test_repeated_run_id_in_one_file_is_rejected(tmp_path: Path, journal: Journal) -> None:
    path = write_jsonl(tmp_path / "runs.jsonl", [{"id": "r", "messages": BARE}, {"id": "r", "messages": BARE[:1]}])
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert report.imported == 2
    assert [(r.location, r.reason) for r in report.rejections] == [("line 2", "run id 'r' was already used at line 1")]


def test_stream_type_option_overrides_chat_run(tmp_path: Path, journal: Journal) -> None:
    path = write_jsonl(tmp_path / "runs.jsonl", [BARE])
    import_paths(journal, [str(path)], options=ImportOptions(stream_type="eval"))
    assert set(journal.read_all(["stream_type"]).column("stream_type").to_pylist()) == {"eval"}


def test_reimport_without_the_stream_type_option_adds_nothing_and_refuses_nothing(journal: Journal) -> None:
    """The importer names a stream type of its own (chat_run) when --stream-type is not given; a
    rerun of the same import without the option compared that default with the type the journal
    recorded and refused every event as "already in the journal with different content"."""
    first = import_paths(journal, [str(SAMPLES / "eval-runs.json")], options=ImportOptions(stream_type="eval"))
    assert first.imported == 8
    for fail_or_keep in ("fail", "quarantine"):
        again = import_paths(journal, [str(SAMPLES / "eval-runs.json")], on_error=fail_or_keep)
        assert (again.imported, again.already_present, again.rejected) == (0, 8, 0)
    assert set(journal.read_all(["stream_type"]).column("stream_type").to_pylist()) == {"eval"}


def test_sniffing(tmp_path: Path) -> None:
    chat = ChatImporter()
    assert chat.sniff(str(write_jsonl(tmp_path / "a.jsonl", [BARE])))
    assert chat.sniff(str(write_jsonl(tmp_path / "b.ndjson", [{"messages": []}])))
    single = tmp_path / "one.json"
    single.write_text(json.dumps(BOOKING))
    assert chat.sniff(str(single))
    events = write_jsonl(tmp_path / "c.jsonl", [{"stream_id": "r", "event_type": "x", "data": 1}])
    assert not chat.sniff(str(events)) and choose_importer(str(events)).name == "jsonl"
    other = tmp_path / "d.json"
    other.write_text(json.dumps({"resourceSpans": []}))
    assert not chat.sniff(str(other))


def test_bundled_samples_import(journal: Journal) -> None:
    report = import_paths(journal, [str(SAMPLES)])  # the directory: every transcript file in it
    assert (report.formats[str(SAMPLES)], report.imported, report.rejected, report.streams) == ("chat", 23, 0, 4)
    assert import_paths(journal, [str(SAMPLES / "eval-runs.json")]).already_present == 8


def test_a_run_time_at_the_end_of_time_is_rejected_not_raised(tmp_path: Path, journal: Journal) -> None:
    path = write_jsonl(
        tmp_path / "runs.jsonl", [{"id": "late", "created_at": "9999-12-31T23:59:59.999999Z", "messages": BARE}]
    )
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert report.imported == 1 and [r.reason for r in report.rejections] == ["the run's time is out of range"]


def test_runs_without_id_in_files_of_the_same_name_are_distinct_streams(tmp_path: Path, journal: Journal) -> None:
    for day, text in (("day1", "hi"), ("day2", "hello")):
        (tmp_path / "d2" / day).mkdir(parents=True)
        (tmp_path / "d2" / day / "eval.json").write_text(json.dumps([[{"role": "user", "content": text}]]))
    (tmp_path / "d2" / "eval.json").write_text(json.dumps([[{"role": "user", "content": "top"}]]))
    report = import_paths(journal, [str(tmp_path / "d2")], fmt="chat")
    assert (report.imported, report.already_present, report.streams) == (3, 0, 3)
    streams = set(journal.read_all(["stream_id"]).column("stream_id").to_pylist())
    assert streams == {"eval.json#1", "day1/eval.json#1", "day2/eval.json#1"}  # the path below the directory
    again = import_paths(journal, [str(tmp_path / "d2")], fmt="chat")
    assert (again.imported, again.already_present) == (0, 3)


def test_a_time_without_zone_or_not_a_time_is_rejected_not_replaced(tmp_path: Path, journal: Journal) -> None:
    run = {
        "id": "naive",
        "messages": [
            {"role": "user", "content": "hi", "created_at": "2026-11-03T14:02:11"},
            {"role": "assistant", "content": "yo", "timestamp": "garbage"},
            {"role": "user", "content": "untimed"},  # no time at all: the documented synthetic time
        ],
    }
    naive_run = {"id": "naive-run", "created_at": "2026-11-03T14:02:11", "messages": BARE}
    path = write_jsonl(tmp_path / "runs.jsonl", [run, naive_run])
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert [(r.location, r.reason) for r in report.rejections] == [
        ("line 1, message 1", "created_at: timestamp has no time zone ('2026-11-03T14:02:11')"),
        ("line 1, message 2", "timestamp: not an ISO 8601 time or unix seconds ('garbage')"),
        ("line 2", "created_at: timestamp has no time zone ('2026-11-03T14:02:11')"),
    ]
    assert [r["metadata"]["time"] for r in events_of(journal, "naive")] == ["synthetic"]


def test_a_directory_does_not_follow_symlinks_out_of_it(tmp_path: Path, journal: Journal) -> None:
    (tmp_path / "outside").mkdir()
    secret = write_jsonl(tmp_path / "outside" / "secret.jsonl", [BARE])
    (tmp_path / "imp").mkdir()
    write_jsonl(tmp_path / "imp" / "runs.jsonl", [BARE])
    (tmp_path / "imp" / "linked.jsonl").symlink_to(secret)
    report = import_paths(journal, [str(tmp_path / "imp")], fmt="chat", on_error="quarantine")
    assert report.streams == 1 and report.rejected == 0
    assert any(n.startswith(f"{tmp_path / 'imp' / 'linked.jsonl'}: not read: a symlink") for n in report.notes)


def test_a_directory_reads_a_jsonl_file_whose_first_line_is_damaged(tmp_path: Path, journal: Journal) -> None:
    (tmp_path / "d").mkdir()
    path = tmp_path / "d" / "runs.jsonl"
    path.write_text('[{"role": "user", "cont\n' + json.dumps(BARE) + "\n")
    (tmp_path / "d" / "other.json").write_text('{"not": "chat"}')
    report = import_paths(journal, [str(tmp_path / "d")], fmt="chat", on_error="quarantine")
    assert (report.imported, [r.location for r in report.rejections]) == (2, ["line 1"])
    assert any("other.json: not read" in n for n in report.notes)


def test_a_fixed_rejected_message_imports_once_and_changes_no_other_event(tmp_path: Path, journal: Journal) -> None:
    # the first message and the assistant's tool call are rejected (a time without zone); the
    # others import. Fixed, they import and nothing else is refused as changed.
    def run(stamp: str) -> dict[str, Any]:
        return {
            "id": "fixed-later",
            "task": "t",
            "messages": [
                {"role": "user", "content": "weather?", "created_at": stamp},
                {"role": "user", "content": "in Berlin"},
                {
                    "role": "assistant",
                    "content": None,
                    "created_at": stamp,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ],
        }

    path = write_jsonl(tmp_path / "runs.jsonl", [run("2026-11-01T09:00:00")])
    first = import_paths(journal, [str(path)], on_error="quarantine")
    assert (first.imported, first.rejected) == (2, 3)
    write_jsonl(path, [run("2026-11-01T09:00:00Z")])
    again = import_paths(journal, [str(path)], on_error="quarantine")
    assert (again.imported, again.already_present, again.rejected) == (3, 2, 0)
    rows = {r["event_id"]: r for r in events_of(journal, "fixed-later")}
    user = rows[derive_id("chat", "fixed-later", 0, 0)]
    assert user["metadata"]["run"] == {"id": "fixed-later", "task": "t"}
    result = rows[derive_id("chat", "fixed-later", 3, 0)]
    assert result["causation_id"] == derive_id("chat", "fixed-later", 2, 1) and "orphan" not in result["metadata"]
