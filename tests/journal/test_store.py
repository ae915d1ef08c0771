"""The store: creating and opening journals, appending with expected versions, idempotency, bulk commits."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import TRACEPARENT, assert_stream_keys_sound, ev, event_rows, snapshot, versions_by_stream

from toolkit.errors import (
    ConcurrencyError,
    DuplicateEventError,
    JournalExistsError,
    JournalNotFoundError,
    JournalVersionError,
    ToolkitError,
)
from toolkit.journal import Journal, JournalConfig
from toolkit.journal.integrity import verify_journal

UTC = dt.UTC

# ---------------------------------------------------------------------- create / open


def test_open_a_path_without_journal_hints_at_journal_init(tmp_path: Path) -> None:
    with pytest.raises(JournalNotFoundError) as caught:
        Journal.open(tmp_path / "nowhere")
    err = caught.value
    assert isinstance(err, FileNotFoundError)
    assert err.hint is not None and "journal init" in err.hint and str(tmp_path / "nowhere") in err.hint
    assert "\nHint: " in str(err)


def test_create_refuses_an_existing_journal_unless_exist_ok(journal: Journal) -> None:
    journal.append("run-1", [ev()])
    with pytest.raises(JournalExistsError) as caught:
        Journal.create(journal.path)
    assert isinstance(caught.value, FileExistsError)
    again = Journal.create(journal.path, exist_ok=True)
    assert again.stream_version("run-1") == 1


def test_create_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(JournalExistsError):
        Journal.create(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_open_reads_back_the_config_it_was_created_with(tmp_path: Path) -> None:
    cfg = JournalConfig(row_group_rows=64, vacuum_retain_hours=24)
    Journal.create(tmp_path / "j", config=cfg)
    assert Journal.open(tmp_path / "j").config == cfg


@pytest.mark.parametrize("version", ["2.0", "2.3", "10.0"])
def test_open_refuses_a_newer_major_schema(journal: Journal, version: str) -> None:
    toml = journal.path / "journal.toml"
    toml.write_text(toml.read_text().replace('schema_version = "1.0"', f'schema_version = "{version}"'))
    with pytest.raises(JournalVersionError) as caught:
        Journal.open(journal.path)
    assert version in str(caught.value) and str(toml) in str(caught.value)


def test_open_reads_a_newer_minor_schema(journal: Journal) -> None:
    toml = journal.path / "journal.toml"
    toml.write_text(toml.read_text().replace('schema_version = "1.0"', 'schema_version = "1.9"'))
    assert Journal.open(journal.path).config.schema_version == "1.9"


def test_in_memory_journal_works_and_is_removed_on_close() -> None:
    j = Journal.in_memory()
    j.append("run-1", [ev("user_message", {"text": "hi"})], expected_version=0)
    assert j.read_stream("run-1").column("data").to_pylist() == ['{"text":"hi"}']
    assert verify_journal(j).ok
    path = j.path
    assert path.is_dir()
    j.close()
    assert not path.exists()


# ---------------------------------------------------------------------- expected versions


def test_append_with_expected_version_extends_the_stream(journal: Journal) -> None:
    first = journal.append("run-1", [ev(), ev()], expected_version=0)
    assert (first.appended, first.heads, first.first_position, first.last_position) == (2, {"run-1": 2}, 1, 2)
    second = journal.append("run-1", [ev("done")], expected_version=2)
    assert second.heads == {"run-1": 3}
    assert journal.read_stream("run-1").column("version").to_pylist() == [1, 2, 3]
    assert journal.read_stream("run-1").column("event_type").to_pylist() == ["custom", "custom", "done"]
    assert verify_journal(journal).ok


@pytest.mark.parametrize(("stream", "expected", "actual"), [("run-1", 0, 2), ("run-1", 5, 2), ("fresh", 1, 0)])
def test_expected_version_mismatch_names_stream_and_versions_and_writes_nothing(
    journal: Journal, stream: str, expected: int, actual: int
) -> None:
    journal.append("run-1", [ev(), ev()], expected_version=0)
    before = snapshot(journal)
    with pytest.raises(ConcurrencyError) as caught:
        journal.append(stream, [ev(), ev()], expected_version=expected)
    err = caught.value
    assert err.context == {"stream_id": stream, "expected": expected, "actual": actual}
    assert repr(stream) in str(err)
    assert f"expected version {expected}" in str(err) and f"at version {actual}" in str(err)
    assert snapshot(journal) == before


def test_one_wrong_expected_version_refuses_the_whole_batch(journal: Journal) -> None:
    journal.append_batch([{"stream_id": "a", **ev()}, {"stream_id": "b", **ev()}])
    before = snapshot(journal)
    with pytest.raises(ConcurrencyError) as caught:
        journal.append_batch(
            [{"stream_id": "a", **ev()}, {"stream_id": "b", **ev()}, {"stream_id": "c", **ev()}],
            expected_versions={"a": 1, "b": 0, "c": 0},
        )
    assert caught.value.context["stream_id"] == "b"
    assert snapshot(journal) == before


# ---------------------------------------------------------------------- idempotency


def test_a_retried_conditional_append_that_already_happened_is_a_no_op(journal: Journal) -> None:
    events = [ev("step", {"i": i}, event_id=f"evt-{i}") for i in range(3)]
    journal.append("run-1", events, expected_version=0)
    before = snapshot(journal)
    retry = journal.append("run-1", events, expected_version=0)  # e.g. after a timeout
    assert (retry.appended, retry.skipped, retry.heads) == (0, 3, {"run-1": 3})
    assert snapshot(journal) == before
    # but a retry that carries anything new is still a conflict
    with pytest.raises(ConcurrencyError):
        journal.append("run-1", [*events, ev("step", {"i": 3}, event_id="evt-3")], expected_version=0)
    assert snapshot(journal) == before


def test_reappending_the_same_event_ids_skips_them_and_writes_nothing(journal: Journal) -> None:
    events = [ev("step", {"i": i}, event_id=f"evt-{i}") for i in range(5)]
    journal.append("run-1", events)
    before = snapshot(journal)
    again = journal.append("run-1", events)
    assert (again.appended, again.skipped, again.delta_version) == (0, 5, None)
    assert again.heads == {"run-1": 5}
    assert snapshot(journal) == before


def test_a_partly_new_batch_appends_only_the_new_events(journal: Journal) -> None:
    events = [ev("step", {"i": i}, event_id=f"evt-{i}") for i in range(5)]
    journal.append("run-1", events[:3])
    r = journal.append("run-1", events)
    assert (r.appended, r.skipped) == (2, 3)
    t = journal.read_stream("run-1")
    assert t.column("event_id").to_pylist() == [f"evt-{i}" for i in range(5)]
    assert t.column("version").to_pylist() == [1, 2, 3, 4, 5]
    assert verify_journal(journal).ok


def test_the_same_id_twice_in_one_batch_is_kept_once(journal: Journal) -> None:
    r = journal.append("run-1", [ev(event_id="x"), ev(event_id="y"), ev(event_id="x")])
    assert (r.appended, r.skipped) == (2, 1)
    assert journal.read_stream("run-1").column("event_id").to_pylist() == ["x", "y"]


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(ev("step", {"i": 99}, event_id="evt-1"), id="other-data"),
        pytest.param(ev("other_type", {"i": 1}, event_id="evt-1"), id="other-event_type"),
        pytest.param(ev("step", {"i": 1}, event_id="evt-1", metadata={"k": "v"}), id="other-metadata"),
    ],
)
def test_same_event_id_with_different_content_raises_and_writes_nothing(journal: Journal, changed: dict) -> None:
    journal.append("run-1", [ev("step", {"i": i}, event_id=f"evt-{i}") for i in range(3)])
    before = snapshot(journal)
    with pytest.raises(DuplicateEventError) as caught:
        journal.append("run-1", [ev("new", event_id="evt-new"), changed])
    assert caught.value.context == {"event_id": "evt-1", "index": 1}
    assert "evt-1" in str(caught.value)
    assert snapshot(journal) == before


_SENT = {
    "occurred_at": "2026-03-01T12:00:00Z",
    "model": "gpt-x",
    "tool_name": "search",
    "tokens_in": 100,
    "tokens_out": 20,
    "cost_usd": "0.001200000",
    "duration_ms": 12.5,
    "correlation_id": "session-1",
    "causation_id": "cmd-1",
    "subject_id": "user-1",
    "agent": "booker",
    "error": None,
}


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("model", "gpt-y", "model"),
        ("tool_name", "fetch", "tool_name"),
        ("tokens_out", 21, "tokens_out"),
        ("cost_usd", "0.001200001", "cost_usd"),
        ("duration_ms", 13.0, "duration_ms"),
        ("causation_id", "cmd-2", "causation_id"),
        ("subject_id", "user-2", "subject_id"),
        ("error", "boom", "is_error"),  # is_error follows error and comes first in the schema
        ("version", 2, "version"),
    ],
)
def test_a_resent_event_id_with_another_value_in_any_column_is_refused(
    journal: Journal, field: str, value: object, named: str
) -> None:
    journal.append("run-1", [ev("llm_response", {"i": 1}, event_id="evt-1", **_SENT)])
    before = snapshot(journal)
    with pytest.raises(DuplicateEventError) as caught:
        journal.append("run-1", [ev("llm_response", {"i": 1}, event_id="evt-1", **{**_SENT, field: value})])
    err = caught.value
    assert err.context["event_id"] == "evt-1" and err.context["column"] == named
    assert f"{named}:" in str(err) and "\nHint: " in str(err)
    assert snapshot(journal) == before


def test_a_resent_event_id_with_the_same_values_is_skipped_whatever_its_provenance(journal: Journal) -> None:
    """A retry may stamp its time anew, is a new span and may come from another copy of the file:
    time, trace context and source are not what the event says; a left-out version is no claim."""
    journal.append(
        "run-1",
        [ev("llm_response", {"i": 1}, event_id="evt-1", source="a.jsonl:1", traceparent=TRACEPARENT, **_SENT)],
    )
    before = snapshot(journal)
    other_tp = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    r = journal.append(
        "run-1",
        [
            ev(
                "llm_response",
                {"i": 1},
                event_id="evt-1",
                source="copy/a.jsonl:1",
                traceparent=other_tp,
                **{**_SENT, "occurred_at": "2026-03-01T12:00:07Z"},
            )
        ],
    )
    assert (r.appended, r.skipped) == (0, 1)
    fewer = {k: v for k, v in _SENT.items() if k not in {"model", "tokens_in"}}
    r = journal.append("run-1", [ev("llm_response", {"i": 1}, event_id="evt-1", **fewer)])
    assert (r.appended, r.skipped) == (0, 1)  # what a resend lacks contradicts nothing
    journal.append("run-2", [ev(event_id="evt-2")])  # occurred_at: now
    r = journal.append("run-2", [ev(event_id="evt-2")])  # another now
    assert (r.appended, r.skipped) == (0, 1)
    r = journal.append("run-2", [ev(event_id="evt-2", version=1, stream_type="default")])
    assert (r.appended, r.skipped) == (0, 1)
    journal.append("run-3", [ev(event_id="evt-3", model="m")])
    r = journal.append("run-3", [ev(event_id="evt-3", model="m", correlation_id="learnt-later")])
    assert (r.appended, r.skipped) == (0, 1)  # nor what the journal lacks: it keeps what it recorded
    assert r.lacking == {"correlation_id": 1}  # and says so
    assert "correlation_id ×1" in (r.lacking_note() or "")
    assert snapshot(journal).rows == before.rows + 2


def test_a_resent_event_id_with_another_value_is_refused_in_a_bulk_batch(journal: Journal) -> None:
    rows = [{"stream_id": f"run-{i}", **ev("llm_response", event_id=f"e-{i}", **_SENT)} for i in range(3)]
    journal.append_batch(rows)
    before = snapshot(journal)
    rows[2] = {**rows[2], "tokens_in": 101}
    with pytest.raises(DuplicateEventError) as caught:
        journal.append_batch(rows)
    assert caught.value.context["index"] == 2 and caught.value.context["column"] == "tokens_in"
    assert "100 in the journal, 101 here" in str(caught.value)
    assert snapshot(journal) == before


def test_same_event_id_with_another_value_in_one_batch_raises(journal: Journal) -> None:
    with pytest.raises(DuplicateEventError) as caught:
        journal.append(
            "run-1", [ev(event_id="x", **_SENT), ev(event_id="y"), ev(event_id="x", **{**_SENT, "model": "m2"})]
        )
    assert caught.value.context["index"] == 2 and caught.value.context["column"] == "model"
    assert snapshot(journal).rows == 0


def test_same_event_id_with_different_content_in_one_batch_raises(journal: Journal) -> None:
    with pytest.raises(DuplicateEventError) as caught:
        journal.append("run-1", [ev(event_id="x"), ev(event_id="y"), ev("other", event_id="x")])
    assert caught.value.context["index"] == 2
    assert snapshot(journal).rows == 0


def test_an_event_id_of_another_touched_stream_is_refused(journal: Journal) -> None:
    journal.append_batch([{"stream_id": "a", **ev(event_id="shared")}, {"stream_id": "b", **ev(event_id="b-1")}])
    before = snapshot(journal)
    with pytest.raises(DuplicateEventError):
        journal.append_batch([{"stream_id": "a", **ev(event_id="a-2")}, {"stream_id": "b", **ev(event_id="shared")}])
    assert snapshot(journal) == before


# ---------------------------------------------------------------------- bulk commits


def test_append_batch_of_many_streams_is_one_commit_with_sound_numbering(journal: Journal) -> None:
    journal.append("seed", [ev()])
    version_before = snapshot(journal).delta_version
    rng = random.Random(7)
    streams = [f"run-{i:02d}" for i in range(30)]
    times = [
        "2026-03-01T22:30:00-05:00",  # 03:30 UTC the next day
        "2026-03-01T23:59:59.999999Z",
        "2026-03-02T00:00:00+00:00",
        "2026-03-02T01:30:00+02:00",  # 23:30 UTC the day before
        dt.datetime(2026, 3, 2, 12, tzinfo=dt.timezone(dt.timedelta(hours=-11))),
    ]
    events = []
    for i in range(300):
        e = {
            "stream_id": rng.choice(streams),
            "event_type": "step",
            "event_id": f"evt-{i:03d}",
            "data": {"i": i},
            "occurred_at": times[i % len(times)],
        }
        if i % 4 == 0:
            e["traceparent"] = TRACEPARENT
        events.append(e)
    started = dt.datetime.now(UTC)
    r = journal.append_batch(events)
    finished = dt.datetime.now(UTC)

    assert r.appended == 300 and r.streams == len({e["stream_id"] for e in events})
    assert r.delta_version == version_before + 1 == snapshot(journal).delta_version
    assert (r.first_position, r.last_position) == (2, 301)

    rows = event_rows(journal)
    new = [row for row in rows if row["stream_id"] != "seed"]
    # positions: global, strictly increasing in the caller's order, after the seed event
    assert [row["event_id"] for row in new] == [e["event_id"] for e in events]
    assert [row["position"] for row in new] == list(range(2, 302))
    # versions: 1..n per stream, in the caller's order within the stream
    for sid, versions in versions_by_stream(new).items():
        ids = [row["event_id"] for row in sorted(new, key=lambda row: row["version"]) if row["stream_id"] == sid]
        assert ids == [e["event_id"] for e in events if e["stream_id"] == sid]
        assert versions == list(range(1, len(versions) + 1))
        assert r.heads[sid] == len(versions)
    assert_stream_keys_sound(rows)
    assert len({row["recorded_at"] for row in new}) == 1
    assert started <= new[0]["recorded_at"] <= finished
    for row, e in zip(new, events, strict=True):
        occurred = e["occurred_at"]
        if isinstance(occurred, str):
            occurred = dt.datetime.fromisoformat(occurred.replace("Z", "+00:00"))
        assert row["occurred_at"] == occurred
        assert row["day"] == occurred.astimezone(UTC).date()
        if "traceparent" in e:
            assert (row["trace_id"], row["span_id"]) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
        else:
            assert (row["trace_id"], row["span_id"]) == (None, None)
    assert {row["day"] for row in new} == {dt.date(2026, 3, 1), dt.date(2026, 3, 2)}
    assert verify_journal(journal).ok


def test_appends_to_existing_streams_continue_versions_positions_and_chain(journal: Journal) -> None:
    for round_ in range(4):
        journal.append_batch([{"stream_id": s, **ev("step", {"round": round_})} for s in ("a", "b", "c")])
    rows = event_rows(journal)
    assert [row["position"] for row in rows] == list(range(1, 13))
    assert versions_by_stream(rows) == {s: [1, 2, 3, 4] for s in ("a", "b", "c")}
    a = journal.read_stream("a")
    assert a.column("prev_hash").to_pylist()[1:] == a.column("hash").to_pylist()[:-1]
    assert a.column("prev_hash")[0].as_py() == "0" * 64
    report = verify_journal(journal)
    assert (report.ok, report.streams, report.events) == (True, 3, 12)


def test_events_without_ids_get_stable_derived_ids(tmp_path: Path) -> None:
    ids = []
    for name in ("one", "two"):
        j = Journal.create(tmp_path / name)
        j.append("run-1", [ev(), ev()])
        ids.append(j.read_stream("run-1").column("event_id").to_pylist())
    assert ids[0] == ids[1] and len(set(ids[0])) == 2


@pytest.mark.parametrize("order", ["runs", "interleaved"])
def test_numbering_is_the_same_whether_streams_come_in_runs_or_interleaved(journal: Journal, order: str) -> None:
    journal.append("old", [ev(), ev()], stream_type="agent_run")
    rows = [("old", i) for i in range(3)] + [("new", i) for i in range(4)] + [("late-typed", i) for i in range(2)]
    if order == "interleaved":
        rows = sorted(rows, key=lambda r: (r[1], r[0]))
    events = [
        {
            **ev(),
            "stream_id": sid,
            "data": {"i": i},
            **({"stream_type": "chat"} if (sid, i) == ("late-typed", 1) else {}),
        }
        for sid, i in rows
    ]
    journal.append_batch(events)
    got = {
        (r["stream_id"], r["version"]): (r["stream_type"], r["data"])
        for r in event_rows(journal)
        if r["stream_id"] != "old" or r["version"] > 2
    }
    assert got == {
        **{("old", 3 + i): ("agent_run", f'{{"i":{i}}}') for i in range(3)},
        **{("new", 1 + i): ("default", f'{{"i":{i}}}') for i in range(4)},
        **{("late-typed", 1 + i): ("chat", f'{{"i":{i}}}') for i in range(2)},
    }
    assert_stream_keys_sound(event_rows(journal))


def test_stream_type_is_kept_and_defaulted(journal: Journal) -> None:
    journal.append("typed", [ev()], stream_type="agent_run")
    journal.append("typed", [ev()])  # inherits the stream's type
    journal.append("plain", [ev()])
    got = {(row["stream_id"], row["version"]): row["stream_type"] for row in event_rows(journal)}
    assert got == {("typed", 1): "agent_run", ("typed", 2): "agent_run", ("plain", 1): "default"}


def test_append_validated_takes_only_what_validate_table_returned(journal: Journal) -> None:
    import pyarrow as pa

    from toolkit.errors import EventValidationError
    from toolkit.journal.prepare import validate_table

    raw = pa.table({"stream_id": ["s"], "event_type": ["x"], "data": ["1"]})
    with pytest.raises(EventValidationError):
        journal.append_validated(raw)
    assert journal.append_validated(validate_table(raw)).appended == 1


# ---------------------------------------------------------------------- pipelined write


def test_hashing_in_small_chunks_chains_across_chunks(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer hashes chunk by chunk while deltalake writes; the chain carries across chunks."""
    from toolkit.journal import assign, store

    sizes: list[int] = []

    def small_chunks(table, starts):  # type: ignore[no-untyped-def]
        for chunk in assign.hash_chunks(table, starts, chunk_rows=7):
            sizes.append(chunk.num_rows)
            yield chunk

    monkeypatch.setattr(store, "hash_chunks", small_chunks)
    rng = random.Random(3)
    for k in range(3):
        journal.append_batch(
            [{"stream_id": rng.choice("abcde"), **ev("step", {"i": i}), "event_id": f"e{k}-{i}"} for i in range(60)]
        )
    assert sizes.count(7) == 3 * 8 and len(sizes) == 3 * 9  # 60 rows = 8 chunks of 7 and one of 4, per batch
    report = verify_journal(Journal.open(journal.path))  # recomputes every hash row by row
    assert (report.ok, report.events) == (True, 180)
    for sid in "abcde":
        s = journal.read_stream(sid)
        assert s.column("prev_hash").to_pylist()[1:] == s.column("hash").to_pylist()[:-1]


def test_a_failure_while_hashing_writes_nothing_and_raises_the_cause(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    from toolkit.journal import assign, store

    journal.append("a", [ev()])
    before = snapshot(journal)

    def failing(table, starts, chunk_rows=5):  # type: ignore[no-untyped-def]
        chunks = assign.hash_chunks(table, starts, chunk_rows=chunk_rows)
        yield next(chunks)
        raise MemoryError("hashing ran out of memory")

    monkeypatch.setattr(store, "hash_chunks", failing)
    with pytest.raises(MemoryError, match="hashing ran out"):
        journal.append_batch([{"stream_id": "b", **ev("step", {"i": i})} for i in range(40)])
    monkeypatch.undo()
    assert snapshot(journal) == before
    reopened = Journal.open(journal.path)
    assert reopened.stream_version("b") == 0 and verify_journal(reopened).ok
    assert reopened.append("b", [ev()], expected_version=0).appended == 1


def test_the_delta_log_keeps_no_statistics_of_payloads(journal: Journal) -> None:
    import json

    journal.append("a", [ev("step", {"secret": "alice@example.com"}) | {"error": "card 4111 1111 declined"}])
    log = "".join(p.read_text() for p in sorted((journal.path / "events" / "_delta_log").glob("*.json")))
    adds = [json.loads(json.loads(line)["add"]["stats"]) for line in log.splitlines() if '"add"' in line]
    assert adds and all("stream_id" in a["minValues"] and "position" in a["maxValues"] for a in adds)
    assert "alice@example.com" not in log and "4111 1111" not in log  # (4111 alone may be in a time or a hash)


def test_a_pinned_journal_reads_one_delta_version_only(tmp_path: Path) -> None:
    j = Journal.create(tmp_path / "j")
    j.append("a", [ev("x")])
    pinned = j.pinned()
    again = Journal.open(tmp_path / "j", delta_version=pinned.pinned_version)
    j.append("a", [ev("y")])
    j.append("b", [ev("z")])
    for view in (pinned, again):
        assert view.delta_version == pinned.pinned_version < j.delta_version
        assert sorted(view.heads()) == ["a"] and view.stream_version("a") == 1
        assert view.read_all(["stream_id", "version"]).to_pylist() == [{"stream_id": "a", "version": 1}]
    with pytest.raises(ToolkitError, match="cannot append") as e:
        pinned.append("a", [ev("w")])
    assert "Hint:" in str(e.value)
    assert j.stream_version("a") == 2


def test_a_pinned_journal_refuses_every_write(tmp_path: Path) -> None:
    """Only ``append``/``append_batch`` refused: ``append_batches`` numbered a batch from the pinned
    (older) heads and committed a second version 2 at position 2 of a stream that had one, and
    purge, redact and compact worked from the pinned file list (purge failed with deltalake's
    CommitFailedError, no Hint)."""
    from toolkit.journal.maintenance import compact
    from toolkit.journal.redaction import redact_subject
    from toolkit.journal.retention import purge_before, remove_stream_prefix

    j = Journal.create(tmp_path / "j")
    old = "2025-01-01T10:00:00Z"
    j.append("a", [ev("x", occurred_at=old, subject_id="u1")])
    pinned = j.pinned()
    j.append("a", [ev("y", occurred_at=old, subject_id="u1")])
    before = snapshot(j)
    row = {"stream_id": "a", "event_type": "w", "data": "{}"}
    writes = {
        "append_batches": lambda: pinned.append_batches([pa.Table.from_pylist([row])]),
        "append_batch": lambda: pinned.append_batch([row]),
        "purge": lambda: purge_before(
            pinned, dt.datetime(2025, 6, 1, tzinfo=dt.UTC), now=dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
        ),
        "archive --delete": lambda: remove_stream_prefix(pinned, "a", 2, reason="archive"),
        "redact": lambda: redact_subject(pinned, "u1"),
        "compact": lambda: compact(pinned, full=True),
    }
    for what, write in writes.items():
        with pytest.raises(ToolkitError, match=r"reads Delta version \d+ only") as e:
            write()
        assert "\nHint: " in str(e.value), what
    assert snapshot(j) == before
    assert [r["version"] for r in event_rows(j)] == [1, 2]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_journal_toml_gets_the_mode_its_event_files_get(tmp_path: Path, umask: int) -> None:
    """journal.toml was written 0600 whatever the umask (mkstemp's mode), while the event files follow
    the umask: a colleague allowed to read the folder could read every event but not open the journal
    (a PermissionError on journal.toml). It now follows the umask too, and a rewrite keeps its mode."""
    import os
    import stat

    from toolkit.journal.config import CONFIG_FILE, write_atomic

    saved = os.umask(umask)
    try:
        journal = Journal.create(tmp_path / "j")
        journal.append("s", [ev()])
    finally:
        os.umask(saved)
    config = journal.path / CONFIG_FILE
    data = next((journal.path / "events").rglob("*.parquet"))
    assert stat.S_IMODE(config.stat().st_mode) == 0o666 & ~umask == stat.S_IMODE(data.stat().st_mode)
    config.chmod(0o640)
    write_atomic(config, config.read_text())
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
