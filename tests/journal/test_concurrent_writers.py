"""Several processes appending to one journal at once: the write lock keeps numbering sound."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import assert_stream_keys_sound, event_rows, spawn

from toolkit.journal import Journal
from toolkit.journal.integrity import verify_journal


def _start_together(journal: Journal, tmp_path: Path, worker: str, names: list[str], *args: object) -> list[str]:
    """Start one process per name, release them at once, return their stdout."""
    go = tmp_path / "go"
    procs = [spawn(worker, journal.path, name, *args, go) for name in names]
    for p in procs:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
    go.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outs.append(out)
    return outs


def test_two_processes_appending_to_shared_streams_keep_numbering_sound(journal: Journal, tmp_path: Path) -> None:
    n = 20
    _start_together(journal, tmp_path, "append_loop", ["p1", "p2"], n)

    rows = event_rows(journal)
    assert len(rows) == 2 * n
    assert_stream_keys_sound(rows)
    assert sorted(r["position"] for r in rows) == list(range(1, 2 * n + 1))
    assert {r["event_id"] for r in rows} == {f"{p}-{i}" for p in ("p1", "p2") for i in range(n)}
    # each writer's events keep their order inside every stream
    for proc in ("p1", "p2"):
        for sid in ("shared-0", "shared-1", "shared-2"):
            mine = [
                r
                for r in sorted(rows, key=lambda r: r["version"])
                if r["stream_id"] == sid and r["event_id"].startswith(proc)
            ]
            order = [json.loads(r["data"])["i"] for r in mine]
            assert order == sorted(order)
    report = verify_journal(Journal.open(journal.path))
    assert report.ok, report.breaks
    assert (report.streams, report.events) == (3, 2 * n)


def test_two_processes_racing_on_one_expected_version_exactly_one_wins(journal: Journal, tmp_path: Path) -> None:
    outs = _start_together(journal, tmp_path, "race_once", ["left", "right"])
    results = [json.loads(out) for out in outs]
    winners = [r["name"] for r in results if r.get("won")]
    losers = [r for r in results if "conflict" in r]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0]["conflict"] == {"stream_id": "race", "expected": 0, "actual": 1}

    rows = event_rows(journal)
    assert len(rows) == 1
    assert (rows[0]["stream_id"], rows[0]["version"], json.loads(rows[0]["data"])) == ("race", 1, {"by": winners[0]})
    assert verify_journal(Journal.open(journal.path)).ok
