"""An integer no 64-bit column holds (a token count of 10^23) in any format: a rejection naming
the file, the line (or record) and the field — never a crash with a traceback."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import run_cli

from toolkit.ingest.base import RecordRejectedError
from toolkit.ingest.runner import import_paths
from toolkit.journal import Journal

SAMPLES = Path(__file__).parents[2] / "data" / "samples"
HUGE = 10**23


def jsonl(d: Path) -> Path:
    lines = [
        {"stream_id": "r", "event_type": "user_message", "data": {"t": "hi"}, "occurred_at": "2026-11-01T09:00:00Z"},
        {"stream_id": "r", "event_type": "llm_response", "data": {}, "tokens_in": HUGE, "occurred_at": "2026-11-01T09:00:01Z"},
        {"stream_id": "r", "event_type": "llm_response", "data": {}, "tokens_in": 5, "occurred_at": "2026-11-01T09:00:02Z"},
    ]
    (d / "events.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return d / "events.jsonl"


def chat(d: Path) -> Path:
    runs = [
        {"id": "fine", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"id": "huge", "messages": [{"role": "user", "content": "hi"},
                                    {"role": "assistant", "content": "yo", "usage": {"prompt_tokens": HUGE}}]},
    ]  # fmt: skip
    (d / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    return d / "runs.jsonl"


def csv(d: Path) -> Path:
    for name in ("llm-calls.csv", "llm-calls.mapping.toml"):
        shutil.copy(SAMPLES / "generic" / name, d / name)
    lines = (d / "llm-calls.csv").read_text().splitlines()
    lines[1] = lines[1].replace(",1250,", f",{HUGE},")
    (d / "llm-calls.csv").write_text("\n".join(lines) + "\n")
    return d / "llm-calls.csv"


def evennia(d: Path) -> Path:
    name = "scout-helper_20261121T234805Z.json"
    doc = json.loads((SAMPLES / "evennia-archive" / name).read_text())
    usage = next(e for e in doc["events"] if isinstance(e.get("data", {}).get("token_usage"), dict))
    usage["data"]["token_usage"]["prompt"] = HUGE
    (d / name).write_text(json.dumps(doc))
    return d / name


def eventsourcing(d: Path) -> Path:
    db = d / "assistants.sqlite"
    shutil.copy(SAMPLES / "eventsourcing" / "assistants.sqlite", db)
    with sqlite3.connect(db) as c:
        (state,) = c.execute("SELECT state FROM stored_events WHERE rowid = 15").fetchone()
        doc = json.loads(state)
        doc["token_usage"]["prompt"] = HUGE
        c.execute("UPDATE stored_events SET state = ? WHERE rowid = 15", (json.dumps(doc).encode(),))
    return db


@pytest.mark.parametrize("make", [jsonl, chat, csv, evennia, eventsourcing], ids=lambda f: f.__name__)
def test_an_integer_beyond_64_bits_is_a_located_rejection(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    path = make(src)
    journal = Journal.create(tmp_path / "j")
    with pytest.raises(RecordRejectedError) as caught:
        import_paths(journal, [str(path)])
    assert path.name in str(caught.value) and str(HUGE) in str(caught.value)
    assert journal.read_all(["event_id"]).num_rows == 0
    report = import_paths(journal, [str(path)], on_error="quarantine")
    bad, *later = report.rejections  # formats that keep the source's versions reject the rest of that stream
    assert path.name in bad.source and str(HUGE) in bad.reason and bad.location
    assert all("which was rejected" in r.reason for r in later)
    assert report.imported > 0 and report.read >= report.imported + report.rejected
    assert journal.read_all(["event_id"]).num_rows == report.imported


def test_journal_append_refuses_an_integer_beyond_64_bits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Journal.create(tmp_path / "j").close()
    line = json.dumps({"stream_id": "r", "event_type": "llm_response", "data": {}, "tokens_in": HUGE})
    code, _out, err = run_cli(capsys, "append", "-j", str(tmp_path / "j"), stdin=line + "\n")
    assert code == 1 and "tokens_in" in err and "out of range" in err and "Traceback" not in err
