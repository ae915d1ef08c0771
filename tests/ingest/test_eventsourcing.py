"""pyeventsourcing stored events: the real sample databases (plain, zlib, AES, Django) and a real
PostgreSQL server, one test per pitfall of spec section 2."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from importer_contract import ImporterContract
from postgres_server import SAMPLES, sample_schemas, server_url

from toolkit.ingest.base import ImportFormatError, ImportOptions, RecordRejectedError, derive_id
from toolkit.ingest.eventsourcing import CipherKeyError, EventsourcingImporter, public_url
from toolkit.ingest.runner import import_paths
from toolkit.journal import Journal
from toolkit.journal.side_tables import read_table

PLAIN = SAMPLES / "assistants.sqlite"
ZLIB = SAMPLES / "assistants-zlib.sqlite"
AES = SAMPLES / "assistants-aes-zlib.sqlite"
DJANGO = SAMPLES / "evennia-style-django.db3"
KEY = (SAMPLES / "assistants-aes-zlib.CIPHER_KEY.txt").read_text().strip()
BUILDER = "abd84dd3-b136-575c-bd3e-f75dc47258ba"
GUIDE = "bc7329a7-7f1c-5516-979c-f6e9e622dea3"
SCOUT = "f22f76ef-68fc-586a-9485-560b2005fa1c"
COLUMNS = [
    "stream_id", "stream_type", "version", "event_id", "event_type", "source_type", "occurred_at", "data",
    "metadata", "agent", "tool_name", "tokens_in", "tokens_out", "duration_ms", "is_error", "error", "source",
]  # fmt: skip


def copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copyfile(src, dst)
    return dst


def decoded(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (SAMPLES / "decoded" / name).read_text(encoding="utf-8").splitlines()]


def read_rows(path: Path | str, **options: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Events, snapshots and notes the importer yields (no journal)."""
    events: list[dict[str, Any]] = []
    snapshots: list[dict[str, Any]] = []
    notes: list[str] = []
    for batch in EventsourcingImporter().batches(str(path), ImportOptions(**options)):
        assert not batch.rejections, batch.rejections
        events += batch.events.to_pylist()
        snapshots += batch.snapshots
        notes += batch.notes
    return events, snapshots, notes


def payloads(events: list[dict[str, Any]]) -> list[tuple[str, int, str, Any]]:
    """What every run of the sample scenario shares (archive_path carries the run's time)."""
    out = []
    for e in events:
        data = json.loads(e["data"])
        if e["event_type"] == "AssistantArchived":
            data.pop("archive_path")
        out.append((e["stream_id"], e["version"], e["event_type"], data))
    return out


def set_state(db: Path, stream_id: str, version: int, state: bytes) -> None:
    conn = sqlite3.connect(db)
    conn.execute(
        "UPDATE stored_events SET state = ? WHERE originator_id = ? AND originator_version = ?",
        (state, uuid.UUID(stream_id).hex, version),
    )
    conn.commit()
    conn.close()


class TestEventsourcingSqlite(ImporterContract):
    fmt = "eventsourcing"
    expected_events = 49
    expected_rejections = 2

    def make_export(self, tmp_path: Path) -> Path:
        return copy(PLAIN, tmp_path)

    def make_damaged(self, tmp_path: Path) -> Path:
        db = copy(PLAIN, tmp_path)
        set_state(db, SCOUT, 12, b"[1, 2]")  # last version of its aggregate: nothing follows it
        set_state(db, BUILDER, 22, b'{"reason": "no timestamp"}')
        return db


# ---------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("db", "expected"),
    [(PLAIN, "assistants.events.jsonl"), (DJANGO, "evennia-style-django.events.jsonl")],
    ids=["eventsourcing.sqlite", "django"],
)
def test_every_row_decodes_as_the_reference_decoder_did(db: Path, expected: str) -> None:
    events, _, _ = read_rows(db)
    want = decoded(expected)
    assert len(events) == len(want) == 49
    for got, ref in zip(events, want, strict=True):  # notification order
        assert got["stream_id"] == ref["originator_id"]
        assert got["version"] == ref["originator_version"]
        assert got["source_type"] == ref["topic"]
        assert got["occurred_at"] == dt.datetime.fromisoformat(ref["timestamp"])
        assert json.loads(got["data"]) == ref["data"]
        assert got["event_id"] == derive_id("eventsourcing", ref["originator_id"], ref["originator_version"])
        id_column = "id" if ref["application_name"] else "rowid"
        assert got["source"].endswith(f"?table=stored_events&{id_column}={ref['notification_id']}")


def test_snapshots_decode_as_the_reference_decoder_did() -> None:
    _, snapshots, _ = read_rows(PLAIN)
    want = decoded("assistants.snapshots.jsonl")
    got = {(s["stream_id"], s["version"]): s for s in snapshots}
    assert len(got) == len(want) == 5
    for ref in want:
        s = got[(ref["originator_id"], ref["originator_version"])]
        assert s["topic"] == ref["topic"] == "eventsourcing.domain:Snapshot"
        assert s["taken_at"] == dt.datetime.fromisoformat(ref["timestamp"])
        assert json.loads(s["state"]) == ref["data"]


def test_wrapped_values_become_json_values() -> None:
    events, _, _ = read_rows(PLAIN)
    by_key = {(e["stream_id"], e["version"]): json.loads(e["data"]) for e in events}
    assert by_key[(BUILDER, 10)]["metadata"]["deadline"] == "2026-12-01T18:00:00+00:00"  # datetime_iso
    assert by_key[(SCOUT, 12)]["final_stats"]["estimated_cost_usd"] == "0.0031"  # decimal_str


def test_zlib_and_aes_stores_hold_the_same_events() -> None:
    plain, _, _ = read_rows(PLAIN)
    zipped, _, _ = read_rows(ZLIB)
    encrypted, snapshots, _ = read_rows(AES, cipher_key=KEY)
    assert payloads(zipped) == payloads(plain) == payloads(encrypted)
    assert len(snapshots) == 5


def test_the_key_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIPHER_KEY", KEY)
    events, _, _ = read_rows(AES)
    assert len(events) == 49


def test_encrypted_state_without_a_key_names_cipher_key(monkeypatch: pytest.MonkeyPatch, journal: Journal) -> None:
    monkeypatch.delenv("CIPHER_KEY", raising=False)
    with pytest.raises(CipherKeyError) as caught:
        import_paths(journal, [str(AES)], fmt="eventsourcing")
    assert "CIPHER_KEY" in str(caught.value) and "encrypted" in str(caught.value)
    assert journal.read_all(["event_id"]).num_rows == 0


def test_a_wrong_or_malformed_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIPHER_KEY", raising=False)
    wrong = "A" * 43 + "="  # 32 zero-ish bytes: a valid key, not this store's
    with pytest.raises(CipherKeyError, match="does not decrypt with the given CIPHER_KEY"):
        read_rows(AES, cipher_key=wrong)
    with pytest.raises(CipherKeyError, match="16, 24 or 32 byte"):
        read_rows(AES, cipher_key="not base64!")


def test_a_key_does_not_hurt_an_unencrypted_store() -> None:
    events, _, _ = read_rows(ZLIB, cipher_key=KEY)
    assert len(events) == 49


# ---------------------------------------------------------------------- mapping


def test_mapping_of_agent_events(journal: Journal) -> None:
    import_paths(journal, [str(PLAIN)], fmt="eventsourcing")
    rows = journal.read_all(COLUMNS).to_pylist()
    assert {r["stream_type"] for r in rows} == {"AssistantAggregate"}  # from originator_topic of version 1
    assert {r["agent"] for r in rows} == {"builder-bot", "guide-npc", "scout-helper"}
    assert {r["metadata"] for r in rows} == {"{}"}  # same bytes as an archive of the same event
    tick = next(r for r in rows if r["source_type"].endswith(".TickCompleted"))
    assert tick["event_type"] == "TickCompleted"
    usage = json.loads(tick["data"])["token_usage"]
    assert (tick["tokens_in"], tick["tokens_out"]) == (usage["prompt"], usage["completion"])
    assert tick["duration_ms"] == json.loads(tick["data"])["duration_ms"]
    tools = [r for r in rows if r["source_type"].endswith(".ToolExecuted")]
    assert tools and {r["event_type"] for r in tools} == {"tool_result"}
    for r in tools:
        data = json.loads(r["data"])
        assert r["tool_name"] == data["tool_name"]
        assert r["duration_ms"] == data["execution_time_ms"]
        assert r["is_error"] is (not data["success"])
        assert r["error"] == data["error"]
    assert any(r["is_error"] for r in tools) and not all(r["is_error"] for r in tools)
    assert not any(r["is_error"] for r in rows if r["event_type"] != "tool_result")
    tokens = sum(r["tokens_in"] or 0 for r in rows)
    assert tokens == sum(
        e["data"]["token_usage"]["prompt"] for e in decoded("assistants.events.jsonl") if "token_usage" in e["data"]
    )


def test_positions_follow_notification_order(journal: Journal) -> None:
    import_paths(journal, [str(PLAIN)], fmt="eventsourcing")
    rows = journal.read_all(["position", "stream_id", "version"]).to_pylist()  # in position order
    want = [(e["originator_id"], e["originator_version"]) for e in decoded("assistants.events.jsonl")]
    assert [(r["stream_id"], r["version"]) for r in rows] == want


def test_stream_type_option_overrides(journal: Journal) -> None:
    report = import_paths(journal, [str(PLAIN)], fmt="eventsourcing", options=ImportOptions(stream_type="assistant"))
    assert report.imported == 49
    assert set(journal.read_all(["stream_type"]).column("stream_type").to_pylist()) == {"assistant"}


# ---------------------------------------------------------------------- snapshots


def test_snapshots_are_kept_aside_not_imported(journal: Journal) -> None:
    report = import_paths(journal, [str(PLAIN)], fmt="eventsourcing")
    assert (report.imported, report.snapshots, report.read) == (49, 5, 49)  # read: events, not snapshots
    assert any("5 stored snapshots kept aside" in n for n in report.notes)
    assert "Snapshot" not in journal.read_all(["event_type"]).column("event_type").to_pylist()
    kept = read_table(journal, "source_snapshots").to_pylist()
    assert sorted((r["stream_id"], r["version"]) for r in kept) == sorted(
        [(BUILDER, 10), (BUILDER, 20), (BUILDER, 22), (GUIDE, 10), (SCOUT, 10)]
    )
    assert {r["format"] for r in kept} == {"eventsourcing"}
    again = import_paths(journal, [str(PLAIN)], fmt="eventsourcing")
    assert (again.imported, again.already_present, again.snapshots) == (0, 49, 0)


def test_read_counts_events_and_rejections_not_the_snapshots_kept(tmp_path: Path, journal: Journal) -> None:
    """``read = imported + already present + rejected``, as for every importer: the snapshots kept
    aside are ``snapshots_kept``; a snapshot that cannot be decoded is a rejection, so it is read."""
    db = copy(PLAIN, tmp_path)
    conn = sqlite3.connect(db)
    conn.execute(
        "UPDATE stored_snapshots SET state = ? WHERE originator_id = ? AND originator_version = ?",
        (b"[1, 2]", uuid.UUID(GUIDE).hex, 10),
    )
    conn.commit()
    conn.close()
    report = import_paths(journal, [str(db)], fmt="eventsourcing", on_error="quarantine")
    assert (report.read, report.imported, report.rejected, report.snapshots) == (50, 49, 1, 4)
    assert report.rejections[0].location.startswith("stored_snapshots row")
    again = import_paths(journal, [str(db)], fmt="eventsourcing", on_error="quarantine")
    assert (again.read, again.already_present, again.rejected) == (50, 49, 1)
    for r in (report, again):
        assert r.read == r.imported + r.already_present + r.rejected


# ---------------------------------------------------------------------- Django layout


def add_application(db: Path, name: str) -> None:
    """A second application sharing the Django tables (its own aggregates)."""
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT originator_id, originator_version, topic, state FROM stored_events ORDER BY id LIMIT 3"
    ).fetchall()
    conn.executemany(
        "INSERT INTO stored_events (application_name, originator_id, originator_version, topic, state) "
        "VALUES (?, ?, ?, ?, ?)",
        [(name, uuid.uuid5(uuid.NAMESPACE_URL, str(o)).hex, v, t, s) for o, v, t, s in rows],
    )
    conn.commit()
    conn.close()


def test_django_layout_filters_and_records_the_application(tmp_path: Path, journal: Journal) -> None:
    db = copy(DJANGO, tmp_path)
    add_application(db, "WorldApplication")
    options = ImportOptions(extra={"application_name": "AssistantApplication"})
    report = import_paths(journal, [str(db)], fmt="eventsourcing", options=options)
    assert (report.imported, report.snapshots) == (49, 5)
    sources = journal.read_all(["source"]).column("source").to_pylist()
    assert all("application_name=AssistantApplication" in s for s in sources)
    everything, _, notes = read_rows(db)
    assert len(everything) == 52
    assert any("2 applications share the table" in n for n in notes)
    with pytest.raises(ImportFormatError, match="no events of application 'Nope'"):
        read_rows(db, extra={"application_name": "Nope"})


def test_the_same_aggregates_from_django_and_sqlite_are_the_same_events() -> None:
    plain, _, _ = read_rows(PLAIN)
    django, _, _ = read_rows(DJANGO)
    assert [e["event_id"] for e in plain] == [e["event_id"] for e in django]


# ---------------------------------------------------------------------- WAL left behind


@pytest.fixture
def live_database(tmp_path: Path) -> Iterator[Path]:
    """A database in WAL mode held open by its application: the events are still in the -wal."""
    live = tmp_path / "live" / "app.sqlite"
    live.parent.mkdir()
    conn = sqlite3.connect(live)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute(
        "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, "
        "PRIMARY KEY (originator_id, originator_version))"
    )
    src = sqlite3.connect(PLAIN.resolve().as_uri() + "?immutable=1", uri=True)
    conn.executemany("INSERT INTO stored_events VALUES (?, ?, ?, ?)", src.execute("SELECT * FROM stored_events"))
    src.close()
    conn.commit()
    yield live
    conn.close()


def test_a_copy_without_its_wal_is_an_error_not_an_empty_import(
    tmp_path: Path, live_database: Path, journal: Journal
) -> None:
    copied = tmp_path / "copied.sqlite"
    shutil.copyfile(live_database, copied)  # the -wal stays behind
    assert EventsourcingImporter().sniff(str(copied))
    with pytest.raises(ImportFormatError) as caught:
        import_paths(journal, [str(copied)])
    message = str(caught.value)
    assert "WAL mode" in message and "copied.sqlite-wal" in message and "wal_checkpoint" in message
    assert journal.read_all(["event_id"]).num_rows == 0


def test_a_wal_sqlite_cannot_apply_is_named(tmp_path: Path, live_database: Path) -> None:
    copied = tmp_path / "copied.sqlite"
    shutil.copyfile(live_database, copied)
    (tmp_path / "copied.sqlite-wal").write_bytes(b"\x00" * 4096)  # from another copy / damaged
    with pytest.raises(ImportFormatError, match=r"although copied\.sqlite-wal exists"):
        read_rows(copied)


def test_a_copy_with_its_wal_imports_everything(tmp_path: Path, live_database: Path) -> None:
    copied = tmp_path / "copied.sqlite"
    shutil.copyfile(live_database, copied)
    shutil.copyfile(live_database.with_name("app.sqlite-wal"), tmp_path / "copied.sqlite-wal")
    events, _, _ = read_rows(copied)
    assert len(events) == 49


def test_reading_creates_no_file_beside_the_database(tmp_path: Path) -> None:
    db = copy(PLAIN, tmp_path)
    read_rows(db)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["assistants.sqlite"]


def test_not_an_eventsourcing_database(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    assert not EventsourcingImporter().sniff(str(other))
    with pytest.raises(ImportFormatError, match="no stored_events table"):
        read_rows(other)


# ---------------------------------------------------------------------- bad rows


def test_versions_stay_equal_to_the_source_after_a_bad_row(tmp_path: Path, journal: Journal) -> None:
    db = copy(PLAIN, tmp_path)
    set_state(db, SCOUT, 5, b"{not json")
    with pytest.raises(RecordRejectedError, match="stored_events rowid"):
        import_paths(journal, [str(db)])
    report = import_paths(journal, [str(db)], on_error="quarantine")
    assert (report.imported, report.rejected) == (49 - 8, 8)  # scout-helper v5..v12
    first, *rest = report.rejections
    assert "state is not JSON" in first.reason and f"originator {uuid.UUID(SCOUT).hex}, version 5" in first.location
    assert all("follows version 5" in r.reason for r in rest)
    assert journal.stream_version(SCOUT) == 4


def test_a_gap_in_versions_is_rejected_not_renumbered(tmp_path: Path, journal: Journal) -> None:
    db = copy(PLAIN, tmp_path)
    conn = sqlite3.connect(db)
    conn.execute(
        "DELETE FROM stored_events WHERE originator_id = ? AND originator_version = 3", (uuid.UUID(GUIDE).hex,)
    )
    conn.commit()
    conn.close()
    report = import_paths(journal, [str(db)], on_error="quarantine")
    assert (report.imported, report.rejected) == (48 - 12, 12)  # guide-npc v4..v15
    assert (
        "version 4 of aggregate" in report.rejections[0].reason and "follows version 2" in report.rejections[0].reason
    )
    assert journal.stream_version(GUIDE) == 2


def test_a_damaged_row_in_an_encrypted_store_is_a_rejection(tmp_path: Path, journal: Journal) -> None:
    db = copy(AES, tmp_path)
    set_state(db, GUIDE, 15, b"\x01" * 64)
    report = import_paths(journal, [str(db)], on_error="quarantine", options=ImportOptions(cipher_key=KEY))
    assert (report.imported, report.rejected) == (48, 1)
    assert "does not decrypt" in report.rejections[0].reason


# ---------------------------------------------------------------------- PostgreSQL (a real server)


def test_public_url_drops_the_password() -> None:
    assert public_url("postgresql://u:pw@h:5/db?options=-csearch_path%3Dx") == "postgresql://u@h:5/db"


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    with sample_schemas(server_url()) as urls:
        yield urls


@pytest.mark.service
def test_postgres_reads_what_sqlite_reads(postgres: dict[str, str], journal: Journal) -> None:
    url = postgres["plain"]
    assert EventsourcingImporter().sniff(url)
    events, snapshots, _ = read_rows(url)
    from_sqlite, sqlite_snapshots, _ = read_rows(PLAIN)
    keep = [c for c in COLUMNS if c != "source"]
    assert [{c: e[c] for c in keep} for e in events] == [{c: e[c] for c in keep} for e in from_sqlite]
    assert [(s["stream_id"], s["version"], s["state"]) for s in snapshots] == [
        (s["stream_id"], s["version"], s["state"]) for s in sqlite_snapshots
    ]
    assert "notification_id=25" in events[24]["source"] and ".assistantapplication_events" in events[24]["source"]
    report = import_paths(journal, [url], fmt="eventsourcing")
    assert (report.imported, report.snapshots) == (49, 5)
    assert import_paths(journal, [str(PLAIN)]).already_present == 49  # same ids from both databases


@pytest.mark.service
def test_postgres_sources_carry_no_password(postgres: dict[str, str]) -> None:
    from urllib.parse import urlsplit

    events, snapshots, _ = read_rows(postgres["plain"])
    for source in [e["source"] for e in events] + [s["source"] for s in snapshots]:
        parts = urlsplit(source.removeprefix("eventsourcing:"))
        assert parts.password is None and parts.hostname and "options=" not in parts.query, source


@pytest.mark.service
def test_postgres_encrypted_and_application_filter(postgres: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIPHER_KEY", raising=False)
    url = postgres["aes"]
    with pytest.raises(CipherKeyError, match="CIPHER_KEY"):
        read_rows(url)
    events, _, _ = read_rows(url, cipher_key=KEY, extra={"application_name": "AssistantApplication"})
    assert payloads(events) == payloads(read_rows(PLAIN)[0])
    with pytest.raises(ImportFormatError, match="no eventsourcing events table for application 'Other'"):
        read_rows(url, extra={"application_name": "Other"})


@pytest.mark.service
def test_postgres_django_layout(postgres: dict[str, str]) -> None:
    events, snapshots, _ = read_rows(postgres["django"])
    want = decoded("evennia-style-django.events.jsonl")
    assert [(e["stream_id"], e["version"], json.loads(e["data"])) for e in events] == [
        (r["originator_id"], r["originator_version"], r["data"]) for r in want
    ]
    assert len(snapshots) == 5
    assert all("application_name" not in e["source"] for e in events)


@pytest.mark.service
def test_postgres_without_eventsourcing_tables(postgres: dict[str, str]) -> None:
    url = postgres["plain"].replace("search_path%3D", "search_path%3Dno_such_schema_")
    with pytest.raises(ImportFormatError, match="no eventsourcing events table"):
        read_rows(url)


def test_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(ImportFormatError, match="cannot read the database"):
        read_rows("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2")


def test_a_state_that_is_json_but_not_an_object_is_said_so(tmp_path: Path, journal: Journal) -> None:
    db = copy(PLAIN, tmp_path)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE stored_events SET state = CAST('[1,2,3]' AS BLOB) WHERE rowid = 11")
    conn.commit()
    conn.close()
    report = import_paths(journal, [str(db)], on_error="quarantine")
    assert next((r.location.split(" (")[0], r.reason) for r in report.rejections) == (
        "stored_events rowid 11",
        "state is not a JSON object but list",
    )


@pytest.mark.parametrize("keep", [0.5, 0.55])
def test_a_cut_off_database_is_claimed_and_named_damaged(tmp_path: Path, journal: Journal, keep: float) -> None:
    """The real ``assistants.sqlite`` cut short (a copy that stopped half-way): ``auto`` used to say
    "cannot tell which format this is"; it is now this importer's, which says the file is damaged."""
    raw = PLAIN.read_bytes()
    cut = tmp_path / "assistants.sqlite"
    cut.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(ImportFormatError) as e:
        import_paths(journal, [str(cut)])
    text = str(e.value)
    assert text.startswith(f"{cut.resolve()}: cannot read it as SQLite: database disk image is malformed"), text
    assert "damaged or cut short" in text
    assert journal.read_all(["event_id"]).num_rows == 0


@pytest.mark.parametrize("plain", [PLAIN, DJANGO], ids=["sqlite", "django"])
def test_a_database_damaged_past_its_first_pages_is_named_damaged(
    tmp_path: Path, journal: Journal, plain: Path
) -> None:
    """Pages garbled after the schema (a bad disk, a copy that went wrong): SQLite opens the file and
    finds the damage only when a row on such a page is read, which ended the import in a traceback
    (sqlite3.DatabaseError). It is now the error a cut-off file gets, naming the file; nothing is written."""
    raw = bytearray(plain.read_bytes())
    page = 4096
    assert len(raw) > 3 * page
    for start in range(2 * page, len(raw), page):
        raw[start + 100 : start + 300] = b"\xa5" * 200
    damaged = tmp_path / plain.name
    damaged.write_bytes(bytes(raw))
    with pytest.raises(ImportFormatError) as e:
        import_paths(journal, [str(damaged)], on_error="quarantine")
    text = str(e.value)
    assert text.startswith(f"{damaged.resolve()}: cannot read it as SQLite: database disk image is malformed"), text
    assert "damaged or cut short" in text and "\nHint: copy the database again" in text
    assert journal.read_all(["event_id"]).num_rows == 0
