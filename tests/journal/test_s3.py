"""Journals at s3:// URLs against a local S3 server (moto on 127.0.0.1)."""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import ev, run_cli
from s3_server import make_bucket, moto_server, s3_env

from toolkit.cli.main import cli
from toolkit.engines.duckdb_engine import connect
from toolkit.engines.polars_engine import scan_events
from toolkit.errors import (
    JournalNotFoundError,
    QueryError,
    StorageBucketNotFoundError,
    StorageCredentialsError,
    StorageUnreachableError,
)
from toolkit.journal import Journal
from toolkit.journal.integrity import verify_journal
from toolkit.journal.location import open_input
from toolkit.journal.maintenance import compact
from toolkit.journal.retention import file_sha256
from toolkit.journal.side_tables import read_table

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def s3(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; the AWS_* variables point at the local server. Returns the bucket."""
    for k, v in s3_env(endpoint).items():
        monkeypatch.setenv(k, v)
    return make_bucket(endpoint)


def _events(n: int, prefix: str = "e") -> list[dict[str, object]]:
    return [
        {
            "event_id": f"{prefix}-{i}",
            "event_type": "user_message",
            "occurred_at": f"2026-11-0{1 + i % 3}T10:00:00Z",
            "data": {"i": i},
        }
        for i in range(n)
    ]


def test_init_append_read_sql_verify_compact_on_s3(s3: str) -> None:
    url = f"s3://{s3}/prod/journal"
    j = Journal.create(url)
    assert j.remote and j.events_uri == f"{url}/events"
    j.append("run-1", _events(5, "a"), expected_version=0)
    j.append("run-2", _events(4, "b"), expected_version=0)
    j.append("run-1", _events(3, "c"), expected_version=5)

    again = Journal.open(url)  # a second reader sees every commit
    assert again.read_stream("run-1").column("version").to_pylist() == list(range(1, 9))
    assert again.read_all(["position"]).column("position").to_pylist() == list(range(1, 13))
    assert all(p.startswith(f"{url}/events/") for p in again.file_paths())

    counts = dict(scan_events(again).group_by("stream_id").len().collect().rows())
    assert counts == {"run-1": 8, "run-2": 4}
    s = connect(again)
    assert s.query("SELECT count(*) AS n, max(position) AS p FROM events").to_pylist() == [{"n": 12, "p": 12}]
    with pytest.raises(QueryError):  # the sandbox: the journal's prefix only
        s.user_query(f"SELECT * FROM read_parquet('s3://{s3}/elsewhere/x.parquet')")
    s.close()

    assert verify_journal(again).ok
    before = len(again.files())
    result = compact(again, full=True)
    assert result.rows == 12 and result.files_after <= before
    assert verify_journal(Journal.open(url)).ok
    assert Journal.open(url).read_stream("run-1").column("event_id").to_pylist() == [
        *(f"a-{i}" for i in range(5)),
        *(f"c-{i}" for i in range(3)),
    ]


def test_cli_on_s3(s3: str, tmp_path: Path) -> None:
    url = f"s3://{s3}/cli"
    runner = CliRunner()
    r = runner.invoke(cli, ["init", url])
    assert r.exit_code == 0, r.output
    src = tmp_path / "events.jsonl"
    src.write_text(
        "\n".join(json.dumps({"stream_id": f"s{i % 3}", **e}) for i, e in enumerate(_events(9))) + "\n",
        encoding="utf-8",
    )
    r = runner.invoke(cli, ["import", "-j", url, str(src)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        cli, ["sql", "-j", url, "SELECT stream_id, count(*) AS n FROM events GROUP BY 1 ORDER BY 1", "--format", "csv"]
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines() == ["stream_id,n", "s0,3", "s1,3", "s2,3"]
    r = runner.invoke(cli, ["verify", "-j", url])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["compact", "-j", url])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["import", "-j", url, str(src)])  # a rerun adds nothing
    assert r.exit_code == 0, r.output
    assert len(Journal.open(url).read_all(["event_id"])) == 9


_WRITER = """
import sys, time
from pathlib import Path
from toolkit.journal import Journal
url, name, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
j = Journal.open(url)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
for i in range(n):
    j.append_batch([
        {"stream_id": "shared", "event_id": f"{name}-{i}", "event_type": "tick", "data": {"w": name}},
        {"stream_id": f"own-{name}", "event_id": f"{name}-own-{i}", "event_type": "tick", "data": {}},
    ])
print("done", flush=True)
"""


def test_concurrent_writers_on_s3_keep_numbering_sound(s3: str, tmp_path: Path) -> None:
    url = f"s3://{s3}/concurrent"
    Journal.create(url)
    go, n = tmp_path / "go", 6
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, url, name, str(n), str(go)],
            cwd=REPO,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("w1", "w2", "w3")
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    rows = Journal.open(url).read_all(["stream_id", "version", "position", "event_id"]).to_pylist()
    assert len(rows) == 3 * n * 2
    assert sorted(r["position"] for r in rows) == list(range(1, 3 * n * 2 + 1))
    shared = sorted(r["version"] for r in rows if r["stream_id"] == "shared")
    assert shared == list(range(1, 3 * n + 1))  # no version taken twice: the lock serialised the commits
    assert verify_journal(Journal.open(url)).ok
    assert not (Journal.open(url).path / ".write.lock").exists()  # released


def test_a_held_lock_makes_the_next_writer_wait_then_time_out(s3: str) -> None:
    from toolkit.errors import LockTimeoutError
    from toolkit.journal.location import S3Location
    from toolkit.journal.lock import remote_write_lock

    root = S3Location.parse(f"s3://{s3}/held")
    with remote_write_lock(root, 1, lease_s=0.5):  # renewed by its heartbeat while held
        time.sleep(1.0)  # longer than the lease: the heartbeat keeps it alive
        t0 = time.monotonic()
        with pytest.raises(LockTimeoutError, match="held by"):
            with remote_write_lock(root, 0.3):
                pass
        assert time.monotonic() - t0 < 5
    with remote_write_lock(root, 1):  # released: free again at once
        pass


def test_the_lock_of_a_dead_writer_is_taken_over_after_its_lease(s3: str) -> None:
    from toolkit.journal.location import S3Location, filesystem
    from toolkit.journal.lock import LOCK_FILE, remote_write_lock

    url = f"s3://{s3}/dead"
    Journal.create(url)
    dead = {
        "owner": "dead",
        "host": "gone",
        "pid": 1,
        "acquired_at": "2026-01-01T00:00:00+00:00",
        "expires": time.time() - 1,
    }
    filesystem().pipe_file((S3Location.parse(url) / LOCK_FILE).fs_path, json.dumps(dead).encode())
    t0 = time.monotonic()
    Journal.open(url).append("r", _events(2), expected_version=0)  # takes the expired lock over
    assert time.monotonic() - t0 < 10
    assert not (S3Location.parse(url) / LOCK_FILE).exists()
    with remote_write_lock(S3Location.parse(url), 1):
        pass


def test_rollup_and_regrade_on_dask_over_an_s3_journal(s3: str) -> None:
    pytest.importorskip("distributed")
    from toolkit.analysis.distributed import dask_runner, rollup_dask
    from toolkit.analysis.regrade import regrade
    from toolkit.analysis.rollup import rollup
    from toolkit.engines.dask_engine import ClusterSpec
    from toolkit.ingest.demo import write_demo

    url = f"s3://{s3}/fleet"
    j = Journal.create(url)
    write_demo(j, 12, seed=4)
    spec = ClusterSpec()  # workers inherit the AWS_* variables
    assert rollup_dask(j, ["model", "day"], spec=spec).to_pylist() == rollup(j, ["model", "day"]).to_pylist()
    one = regrade(j, ["budget", "budget_state", "latency"], write=False)
    many = regrade(j, ["budget", "budget_state", "latency"], runner=dask_runner(spec))
    cols = ["finding_id", "rule", "stream_id", "first_failing_version", "message"]
    assert one.findings.select(cols).to_pylist() == many.findings.select(cols).to_pylist()
    assert many.written == many.findings.num_rows  # recorded in the journal's findings table on S3
    from toolkit.journal.side_tables import read_table

    assert read_table(Journal.open(url), "findings").num_rows == many.written


def test_missing_bucket_names_the_url(s3: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(StorageBucketNotFoundError, match="s3://no-such-bucket-x/j"):
        Journal.open("s3://no-such-bucket-x/j")
    assert time.monotonic() - t0 < 10


def test_missing_journal_in_existing_bucket(s3: str) -> None:
    with pytest.raises(JournalNotFoundError, match=f"s3://{s3}/nothing"):
        Journal.open(f"s3://{s3}/nothing")


def test_unreachable_endpoint_fails_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    from s3_server import free_port

    for k, v in s3_env(f"http://127.0.0.1:{free_port()}").items():  # nothing listens there
        monkeypatch.setenv(k, v)
    t0 = time.monotonic()
    with pytest.raises(StorageUnreachableError, match="s3://bucket/j") as e:
        Journal.open("s3://bucket/j")
    assert time.monotonic() - t0 < 15
    assert "AWS_ENDPOINT_URL" in str(e.value)


def test_bad_credentials_are_refused_with_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto checks signatures against its IAM users once the first N requests are spent
    with moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "1"}) as ep:
        import boto3

        boto3.client(
            "s3", endpoint_url=ep, aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1"
        ).create_bucket(Bucket="locked")
        for k, v in s3_env(ep).items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
        t0 = time.monotonic()
        with pytest.raises(StorageCredentialsError, match="s3://locked/j"):
            Journal.open("s3://locked/j")
        assert time.monotonic() - t0 < 15


# ---------------------------------------------------------------------- row order inside data files

ORDER_STREAMS = [f"r{i:02d}" for i in range(30)]
ORDER_TYPES = ("agent_run", "chat", "tool")


def _interleaved_batch(batch: int, rows: int, seed: int) -> pa.Table:
    """``rows`` events of 30 streams in random order, over three stream types and four days, as an
    Arrow table of 50-row chunks (what the importers hand over). Streams r00–r14 keep to one day
    (one data file per commit), the others spread over all four."""
    rng = random.Random(seed)
    events = []
    for i in range(rows):
        s = rng.randrange(len(ORDER_STREAMS))
        day = 1 + (s % 4 if s < 15 else rng.randrange(4))
        events.append(
            {
                "stream_id": ORDER_STREAMS[s],
                "stream_type": ORDER_TYPES[s % 3],
                "event_id": f"b{batch}-{i}",
                "event_type": "step",
                "occurred_at": f"2026-11-0{day}T10:{i % 60:02d}:00Z",
                "data": json.dumps({"b": batch, "i": i}),
            }
        )
    return pa.concat_tables(pa.Table.from_pylist(events[lo : lo + 50]) for lo in range(0, rows, 50))


def _stored_rows(path: str) -> list[dict[str, Any]]:
    """A data file's rows as stored (read with pyarrow, not through the journal)."""
    return pq.read_table(open_input(path), columns=["stream_id", "version", "position"]).to_pylist()


def _files_out_of_order(j: Journal, key: Callable[[dict[str, Any]], tuple[Any, ...]]) -> list[str]:
    """The data files the Delta log lists whose rows, read as stored, do not increase strictly by ``key``."""
    bad = []
    for f in j.files():
        keys = [key(r) for r in _stored_rows(f.path)]
        if any(a >= b for a, b in itertools.pairwise(keys)):
            bad.append(f.path)
    return bad


def _files_overlapping(j: Journal, key: Callable[[dict[str, Any]], tuple[Any, ...]]) -> list[str]:
    """Data files of a partition whose ``key`` range overlaps the next file's (files split in order
    hold consecutive runs)."""
    runs: dict[tuple[str, object], list[tuple[Any, Any, str]]] = {}
    for f in j.files():
        keys = [key(r) for r in _stored_rows(f.path)]
        runs.setdefault((f.stream_type, f.day), []).append((min(keys), max(keys), f.path))
    return [b[2] for rs in runs.values() for a, b in itertools.pairwise(sorted(rs)) if a[1] >= b[0]]


def _assert_streams_in_version_order(j: Journal, appended: dict[str, list[str]]) -> None:
    """read_stream, read_streams and verify see every stream whole and in version (= append) order."""
    for sid, ids in appended.items():
        t = j.read_stream(sid, ["version", "event_id"])
        assert t.column("version").to_pylist() == list(range(1, len(ids) + 1)), sid
        assert t.column("event_id").to_pylist() == ids, sid
    both = j.read_streams(list(appended), ["stream_id", "version", "event_id"]).to_pylist()
    assert [(r["stream_id"], r["event_id"]) for r in both] == [(s, e) for s in sorted(appended) for e in appended[s]]
    report = verify_journal(j)
    assert report.ok, report.breaks[:3] if report.breaks else None
    assert report.events == sum(len(ids) for ids in appended.values())


@pytest.fixture(params=["s3", "local"])
def order_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"s3://{request.getfixturevalue('s3')}/order" if request.param == "s3" else str(tmp_path / "order")


def test_data_files_keep_the_row_order_of_interleaved_appends_and_of_compaction(order_url: str) -> None:
    j = Journal.create(order_url)
    # small files: deltalake's writer (remote journals) splits a partition's rows of one commit
    # over several files (it looks at the size every 1,024 rows: the last batch has more)
    j.delta_table().alter.set_table_properties({"delta.targetFileSize": "4096"})
    batches = [_interleaved_batch(b, rows, seed=b) for b, rows in enumerate([120, 700, 15_000])]
    j.append_batches(batches)
    j.append_batch(_interleaved_batch(3, 300, seed=3).to_pylist())  # and dict events
    appended: dict[str, list[str]] = {}
    for t in [*batches, _interleaved_batch(3, 300, seed=3)]:
        for r in t.select(["stream_id", "event_id"]).to_pylist():
            appended.setdefault(r["stream_id"], []).append(r["event_id"])

    j = Journal.open(order_url)
    if j.remote:  # the split this test is after did happen: a partition holds more files than commits
        assert max(collections.Counter((f.stream_type, f.day) for f in j.files()).values()) > 4
    assert _files_out_of_order(j, _by_position) == []
    assert _files_overlapping(j, _by_position) == []
    _assert_streams_in_version_order(j, appended)

    result = compact(j, full=True, chunk_rows=400)  # several sorted ranges per partition
    assert result.rows == sum(len(ids) for ids in appended.values())
    j = Journal.open(order_url)
    if j.remote:
        assert len(j.files()) > result.partitions
    assert _files_out_of_order(j, _by_stream_version) == []
    assert _files_overlapping(j, _by_stream_version) == []
    _assert_streams_in_version_order(j, appended)


def _by_position(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["position"],)


def _by_stream_version(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["stream_id"], row["version"])


# ---------------------------------------------------------------------- side tables of an S3 journal

PII = "Alice Example, IBAN FR7630006000011234567890189"
QUOTING_RULE = """-- summary: No user message goes unanswered (the message quotes it).
-- returns: stream_id VARCHAR, version BIGINT, holds BOOLEAN, message VARCHAR
SELECT stream_id, version, event_type <> 'user_message' AS holds, 'unanswered: ' || data AS message
FROM events
"""


def _people(url: str) -> Journal:
    """alice-1 (two events of January 2025), alice-2 and bob-1 (two events each, of now)."""
    j = Journal.create(url)
    old = "2025-01-05T10:00:00Z"
    j.append(
        "alice-1",
        [
            ev("user_message", {"text": PII}, subject_id="alice", occurred_at=old),
            ev("llm_response", {"text": f"Noted: {PII}"}, subject_id="alice", occurred_at="2025-01-05T10:01:00Z"),
        ],
        expected_version=0,
    )
    j.append("alice-2", [ev("user_message", {"text": f"again {PII}"}, subject_id="alice")], expected_version=0)
    j.append("bob-1", [ev("user_message", {"text": "bob's words"}, subject_id="bob"), ev("llm_response")])
    return j


def _objects_text(url: str) -> str:
    """Every object under the journal's prefix (referenced or not), Parquet decoded, as text."""
    from toolkit.journal.location import S3Location, filesystem

    fs = filesystem()
    parts = []
    for key in fs.find(S3Location.parse(url).fs_path):
        if key.endswith(".parquet"):
            parts.append(json.dumps(pq.read_table(open_input(f"s3://{key}")).to_pylist(), default=str))
        else:
            parts.append(bytes(fs.cat_file(key)).decode("utf-8", errors="replace"))
    return "\n".join(parts)


def test_purge_on_s3_records_what_it_removed_and_verifies(
    s3: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{s3}/purge"
    j = _people(url)
    removed = j.read_stream("alice-1", ["event_id"]).column("event_id").to_pylist()
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "purge", "-j", url, "--before", "2025-02-01", "--archive", f"s3://{s3}/a.parquet")
    assert code == 1 and "--archive takes a local file, not an s3:// URL" in err and "Hint:" in err
    assert not (tmp_path / "s3:").exists()  # not a local directory named after the URL either
    assert Journal.open(url).read_stream("alice-1").num_rows == 2
    archive = tmp_path / "purged.parquet"
    code, out, err = run_cli(capsys, "purge", "-j", url, "--before", "2025-02-01", "--archive", str(archive))
    assert code == 0, err
    assert json.loads(out)["events"] == 2 and archive.is_file()
    code, out, err = run_cli(capsys, "verify", "-j", url)
    assert code == 0, out + err
    fresh = Journal.open(url)
    assert fresh.read_stream("alice-1").num_rows == 0
    assert read_table(fresh, "purges").column("stream_id").to_pylist() == ["alice-1"]
    assert sorted(read_table(fresh, "purged_events").column("event_id").to_pylist()) == sorted(removed)
    assert read_table(fresh, "archives").column("path").to_pylist() == [str(archive)]
    # the default archive lies inside the journal, which is no local directory here
    code, out, err = run_cli(capsys, "purge", "-j", url, "--before", "2025-03-01")
    assert code == 0 and "nothing to purge" in err  # nothing older is left: no archive needed
    Journal.open(url).append("carol-1", [ev(occurred_at="2025-01-07T00:00:00Z")], expected_version=0)
    code, out, err = run_cli(capsys, "purge", "-j", url, "--before", "2025-03-01")
    assert code == 1 and "need a local path" in err and "Hint: pass --archive PATH" in err


def test_archive_delete_on_s3_registers_the_file_and_verifies(
    s3: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{s3}/archive"
    _people(url)
    out_file = tmp_path / "bob-1.parquet"
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "archive", "-j", url, "bob-1", "-o", f"s3://{s3}/bob-1.parquet", "--delete")
    assert code == 1 and "-o/--output takes a local file, not an s3:// URL" in err and "Hint:" in err
    assert not (tmp_path / "s3:").exists()
    assert Journal.open(url).read_stream("bob-1").num_rows == 2  # no tombstone, nothing deleted
    code, out, err = run_cli(capsys, "archive", "-j", url, "bob-1", "-o", str(out_file), "--delete")
    assert code == 0, err
    assert json.loads(out)["deleted"] == 2
    fresh = Journal.open(url)
    assert fresh.read_stream("bob-1", ["event_type"]).column("event_type").to_pylist() == ["stream_archived"]
    (registered,) = read_table(fresh, "archives").to_pylist()
    assert (registered["path"], registered["sha256"]) == (str(out_file), file_sha256(out_file))
    assert read_table(fresh, "purges").column("stream_id").to_pylist() == ["bob-1"]
    assert verify_journal(fresh).ok


def test_redact_on_s3_scrubs_findings_and_quarantine_and_erases_history(
    s3: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"s3://{s3}/redact"
    _people(url)
    rule = tmp_path / "unanswered.sql"
    rule.write_text(QUOTING_RULE, encoding="utf-8")
    code, out, err = run_cli(capsys, "regrade", "unanswered", "--rules", str(rule), "-j", url, "--format", "json")
    assert code == 3, err  # findings present
    src = tmp_path / "bad.jsonl"
    src.write_text(f"not json: {PII} of alice\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "import", "-j", url, str(src), "--from", "jsonl", "--on-error", "quarantine")
    assert code == 0, err
    assert PII in _objects_text(url)

    code, out, err = run_cli(capsys, "redact", "-j", url, "--subject", "alice", "--quarantine")
    assert code == 0, err
    result = json.loads(out)
    assert (result["events"], result["findings_redacted"], result["quarantine_redacted"]) == (3, 2, 1)
    marker = json.dumps({"redacted": result["redaction_id"]}, separators=(",", ":"))
    fresh = Journal.open(url)
    report = verify_journal(fresh)
    assert report.ok and report.redacted == 3
    assert len(read_table(fresh, "redactions")) == 3
    messages = {r["stream_id"]: r["message"] for r in read_table(fresh, "findings").to_pylist()}
    assert messages["alice-1"] == messages["alice-2"] == marker
    assert "bob's words" in messages["bob-1"]
    assert read_table(fresh, "quarantine").column("record").to_pylist() == [marker]
    assert PII not in _objects_text(url)  # nor in an old file version or a log entry's statistics


def test_snapshot_refuses_an_s3_journal(s3: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"s3://{s3}/snap"
    _people(url)
    code, _, err = run_cli(capsys, "snapshot", "-j", url, "--every", "1")
    assert code == 1
    assert f"{url}: snapshots are kept for local journals only" in err and "Hint:" in err
    assert read_table(Journal.open(url), "snapshots").num_rows == 0


def _keys(url: str) -> list[str]:
    from toolkit.journal.location import S3Location, filesystem

    root = S3Location.parse(url).fs_path
    return [k[len(root) + 1 :] for k in filesystem().find(root)]


def test_project_refuses_an_s3_journal_and_redact_drops_a_projection_built_there(
    s3: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """journal project on an s3:// journal wrote projection_runs there, exit 0, but no SQL session
    saw it (journal sql: "Table with name projection_runs does not exist") and journal redact did
    not drop it (projections were dropped from local journals only): rows nobody reads that kept
    the payloads an erasure removed. It is refused now; a table an earlier release built there goes
    with the next redaction."""
    from toolkit.journal.side_tables import write_projection

    url = f"s3://{s3}/proj"
    j = _people(url)
    code, out, err = run_cli(capsys, "project", "-j", url, "runs")
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        f"error: {url}: projections are kept for local journals only",
        "Hint: query the events of a journal on object storage directly: journal sql, journal state",
    ]
    assert not [k for k in _keys(url) if k.startswith("projection_") and not k.startswith("projection_checkpoints")]
    # as an earlier release built one (a plug-in projection keeping a payload's text)
    write_projection(j, "notes", pa.table({"stream_id": ["alice-1"], "text": [PII]}))
    assert PII in _objects_text(url)
    code, out, err = run_cli(capsys, "redact", "-j", url, "--subject", "alice")
    assert code == 0, err
    assert json.loads(out)["derived_dropped"] == ["projection_notes"]
    assert not [k for k in _keys(url) if k.startswith("projection_notes")]
    assert PII not in _objects_text(url)


def test_a_purge_killed_after_writing_its_archive_leaves_no_copy_a_redaction_misses(
    s3: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive of a purge of an s3:// journal is a local file outside it (--archive): a purge
    killed after writing it and before recording it left the subject's events there, and nothing
    ever found that file again (the clean-up looked in the journal's purge-archives/ only). The
    purge announced it in the journal first: the redaction deletes it — on the host that wrote it;
    another host names it (host:path) and leaves it."""
    import toolkit.journal.retention as retention
    from toolkit.journal.retention import purge_before

    url = f"s3://{s3}/killed"
    _people(url)
    archive = tmp_path / "purged.parquet"
    real_append = retention.append_side_rows

    def append(journal: Journal, name: str, rows: list[dict[str, object]]) -> int:
        if name == "purges":
            raise KeyboardInterrupt("killed after the archive")
        return real_append(journal, name, rows)

    with monkeypatch.context() as m:
        m.setattr(retention, "append_side_rows", append)
        with pytest.raises(KeyboardInterrupt):
            purge_before(Journal.open(url), dt.datetime(2025, 2, 1, tzinfo=dt.UTC), archive=archive)
    assert PII in json.dumps(pq.read_table(archive).to_pylist(), default=str)
    assert read_table(Journal.open(url), "archives").num_rows == 0  # registered nowhere
    host = socket.gethostname()
    with monkeypatch.context() as m:
        m.setattr(socket, "gethostname", lambda: "another-host")
        code, out, err = run_cli(capsys, "redact", "-j", url, "--subject", "alice")
    assert code == 0, err
    assert json.loads(out)["unregistered_archives_elsewhere"] == [f"{host}:{archive}"]
    assert f"not reachable from this host: {host}:{archive}" in err and "Hint: run journal purge" in err
    assert archive.is_file()  # not this host's to judge

    code, out, err = run_cli(capsys, "redact", "-j", url, "--subject", "alice")
    assert code == 0, err
    assert json.loads(out)["unregistered_archives_removed"] == [str(archive)]
    assert f"redact: removed {archive}" in err
    assert not archive.exists() and PII not in _objects_text(url)
    assert not [k for k in _keys(url) if k.startswith("pending-archives/")]
    code, out, err = run_cli(capsys, "verify", "-j", url)
    assert code == 0, out + err
