"""Compliance bundles: contents, manifest, a self-contained HTML page, verification (of the bundle
and against the journal), empty selections, changed files named."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bundle_forgery import forge_table as _forge
from bundle_forgery import rederive

from toolkit.errors import BundleError
from toolkit.journal import Journal
from toolkit.journal.redaction import redact_subject
from toolkit.journal.retention import file_sha256
from toolkit.reports.compliance import Selection, export_compliance
from toolkit.reports.compliance_verify import verify_bundle

SESSION = "session-7-0000002"  # two runs: a question and its follow-up
KEY = b"bundle-key-0123456789abcdef012345"


def session_events(journal: Journal) -> int:
    """The events of SESSION in the journal, counted there."""
    ids = journal.read_all(["correlation_id"]).column("correlation_id").to_pylist()
    return sum(1 for c in ids if c == SESSION)
VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "source", "area", "base", "embed", "track"}


@pytest.fixture
def bundle(demo: Journal, tmp_path: Path) -> Path:
    export_compliance(demo, Selection(correlation_id=SESSION), tmp_path / "bundle", key=KEY)
    return tmp_path / "bundle"


class StrictHTML(HTMLParser):
    """Fails on unbalanced tags; collects every attribute and tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(path: Path) -> StrictHTML:
    p = StrictHTML()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    assert p.stack == [], f"unclosed: {p.stack}"
    return p


def test_bundle_holds_every_part_and_a_complete_manifest(bundle: Path, demo: Journal) -> None:
    names = sorted(p.name for p in bundle.iterdir())
    assert names == sorted(
        [f"{t}.{e}" for t in ("events", "causation", "runs") for e in ("parquet", "csv", "json")]
        + ["report.html", "manifest.json"]
    )
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["selection"]["correlation_id"] == SESSION
    assert "correlation_id = $correlation_id" in m["query"]["sql"] and m["query"]["params"]["correlation_id"] == SESSION
    assert m["delta_version"] == demo.delta_version and m["exported_at"]
    events = pq.read_table(bundle / "events.parquet")
    assert m["row_counts"]["events"] == events.num_rows == session_events(demo)
    assert set(m["streams"]) == {"run-7-0000002", "run-7-0000003"}
    for name, info in m["files"].items():
        assert file_sha256(bundle / name) == info["sha256"]
    times = events.column("occurred_at").to_pylist()
    assert times == sorted(times)
    assert all(events.column("title").to_pylist()) and "summary" in events.column_names
    assert len(json.loads((bundle / "events.json").read_text())) == events.num_rows
    assert (bundle / "events.csv").read_text().count("\n") >= events.num_rows + 1
    heads = m["chain_heads"]["run-7-0000002"]
    last = demo.read_stream("run-7-0000002", ["version"]).num_rows
    assert heads["head_version"] == last and heads["head_hash"] == heads["last_exported_hash"]
    links = pq.read_table(bundle / "causation.parquet").to_pylist()
    follow_up = [r for r in links if r["effect_stream_id"] == "run-7-0000003" and r["cause_stream_id"] == "run-7-0000002"]
    assert len(follow_up) == 1 and follow_up[0]["cause_in_bundle"]
    runs = pq.read_table(bundle / "runs.parquet")
    assert runs.num_rows == 2


def test_html_is_self_contained_and_well_formed(bundle: Path) -> None:
    raw = (bundle / "report.html").read_text(encoding="utf-8")
    page = _parse(bundle / "report.html")
    assert not {"script", "link", "img", "iframe", "object", "embed", "base", "form"} & set(page.tags)
    for name, value in page.attrs:
        assert name not in ("src", "srcset", "action", "background", "poster")
        if name == "href":
            assert value and value.startswith("#"), value
    lowered = raw.lower()
    for needle in ("http:", "https:", "url(", "@import", "//cdn", "<script"):
        assert needle not in lowered, needle
    assert page.tags.count("section") == 2  # one per run
    text = "".join(page.text)
    assert "https://git.example" in text  # the payload's address is shown as text, not linked
    assert "Is PR 1258 in acme/payments safe to merge" in text


def test_verify_passes_on_the_bundle_and_against_the_journal(bundle: Path, demo: Journal) -> None:
    report = verify_bundle(bundle, journal=demo, key=KEY)
    assert report.ok, report.problems
    assert report.events == session_events(demo) and report.checked_against_journal


@pytest.mark.parametrize("name", ["events.csv", "report.html", "runs.json", "causation.parquet"])
def test_a_changed_file_is_named(bundle: Path, name: str) -> None:
    p = bundle / name
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    p.write_bytes(bytes(raw))
    problems = verify_bundle(bundle).problems
    assert [(x.where, x.check) for x in problems] == [(name, "sha256")]


def test_missing_and_extra_files_are_named(bundle: Path) -> None:
    (bundle / "runs.csv").unlink()
    (bundle / "notes.txt").write_text("added later")
    problems = {(x.where, x.check) for x in verify_bundle(bundle).problems}
    assert problems == {("runs.csv", "missing_file"), ("notes.txt", "unlisted_file")}


@pytest.mark.parametrize("name", ["../secret.txt", "{abs}", "sub/../../secret.txt"])
def test_manifest_names_leading_out_of_the_bundle_are_refused_not_hashed(bundle: Path, name: str) -> None:
    """A manifest entry naming a file elsewhere made verify hash it (and print the real digest of,
    say, /etc/hostname) and could pass with a file that is not in the bundle."""
    secret = bundle.parent / "secret.txt"
    secret.write_text("not part of the bundle")
    name = name.format(abs=secret)
    m = json.loads((bundle / "manifest.json").read_text())
    m["files"][name] = {"sha256": file_sha256(secret), "bytes": secret.stat().st_size, "rows": None}
    (bundle / "manifest.json").write_text(json.dumps(m))
    check = verify_bundle(bundle)
    assert not check.ok
    ((where, what, found),) = {(x.where, x.check, x.found) for x in check.problems}
    assert (where, what) == (name, "file_name") and file_sha256(secret) not in found


def test_a_forger_who_updates_the_manifest_is_caught(bundle: Path) -> None:
    events = pq.read_table(bundle / "events.parquet")
    data = events.column("data").to_pylist()
    data[3] = data[3].replace("1", "2", 1)
    i = events.schema.get_field_index("data")
    pq.write_table(events.set_column(i, events.schema.field(i), pa.array(data, events.schema.field(i).type)), bundle / "events.parquet")
    m = json.loads((bundle / "manifest.json").read_text())
    m["files"]["events.parquet"]["sha256"] = file_sha256(bundle / "events.parquet")
    (bundle / "manifest.json").write_text(json.dumps(m))
    unsigned = verify_bundle(bundle).problems
    assert [x.check for x in unsigned] == ["payload", "matches_parquet", "matches_parquet"], unsigned
    assert {x.where for x in unsigned[1:]} == {"events.csv", "events.json"}  # the copies still say what it said
    signed = verify_bundle(bundle, key=KEY).problems
    assert ("manifest.json", "hmac") in {(x.where, x.check) for x in signed}


@pytest.mark.parametrize("name", ["events.json", "events.csv", "runs.csv"])
def test_a_copy_rewritten_with_its_manifest_entry_is_caught(bundle: Path, name: str) -> None:
    """The CSV and JSON copies are what an auditor opens: a copy changed and re-digested in the
    manifest no longer says what the chain-checked Parquet table says."""
    p = bundle / name
    lines = p.read_text(encoding="utf-8").splitlines(keepends=True)
    k = next(i for i, line in enumerate(lines) if i > 0 and any(ch.isdigit() for ch in line))
    lines[k] = next(lines[k].replace(d, str((int(d) + 1) % 10), 1) for d in "0123456789" if d in lines[k])
    p.write_text("".join(lines), encoding="utf-8")
    m = json.loads((bundle / "manifest.json").read_text())
    m["files"][name]["sha256"] = file_sha256(p)
    (bundle / "manifest.json").write_text(json.dumps(m))
    problems = verify_bundle(bundle).problems
    assert [(x.where, x.check, x.found) for x in problems] == [(name, "matches_parquet", f"differs from line {k + 1}")]


def test_empty_range_gives_an_empty_valid_bundle(demo: Journal, tmp_path: Path) -> None:
    sel = Selection(correlation_id=SESSION, since=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    result = export_compliance(demo, sel, tmp_path / "empty")
    assert result.empty and result.events == 0
    m = json.loads((tmp_path / "empty" / "manifest.json").read_text())
    assert m["empty"] is True and "empty" in m["note"]
    assert pq.read_table(tmp_path / "empty" / "events.parquet").num_rows == 0
    report = verify_bundle(tmp_path / "empty", journal=demo)
    assert report.ok and report.empty
    assert "No events matched" in (tmp_path / "empty" / "report.html").read_text()
    _parse(tmp_path / "empty" / "report.html")


def test_subject_and_stream_selections(demo: Journal, tmp_path: Path) -> None:
    by_subject = export_compliance(
        demo,
        Selection(subject_id="user-0001", until=dt.datetime(2026, 10, 2, 2, tzinfo=dt.UTC)),
        tmp_path / "s",
    )
    events = pq.read_table(tmp_path / "s" / "events.parquet")
    assert set(events.column("subject_id").to_pylist()) == {"user-0001"} and by_subject.events == events.num_rows
    assert max(events.column("occurred_at").to_pylist()) < dt.datetime(2026, 10, 2, 2, tzinfo=dt.UTC)
    by_stream = export_compliance(demo, Selection(stream_ids=("run-7-0000005",)), tmp_path / "r")
    assert by_stream.streams == 1 and verify_bundle(tmp_path / "r", journal=demo).ok


def test_journal_changes_after_export(bundle: Path, demo: Journal) -> None:
    demo.append("run-7-0000002", [{"event_type": "custom", "data": {"later": True}}])
    assert verify_bundle(bundle, journal=Journal.open(demo.path)).ok  # growth is fine
    redact_subject(Journal.open(demo.path), "user-0001")
    report = verify_bundle(bundle, journal=Journal.open(demo.path))
    assert report.ok and report.redacted_since == session_events(demo)


def test_bad_selections_and_targets(demo: Journal, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="exactly one"):
        export_compliance(demo, Selection(), tmp_path / "x")
    with pytest.raises(BundleError, match="exactly one"):
        export_compliance(demo, Selection(correlation_id="a", subject_id="b"), tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(BundleError, match="not an empty directory"):
        export_compliance(demo, Selection(correlation_id=SESSION), tmp_path / "full")
    with pytest.raises(BundleError, match=r"not a compliance bundle: it has no manifest\.json"):
        verify_bundle(tmp_path / "full")
    (tmp_path / "full" / "manifest.json").write_text("{}")
    with pytest.raises(BundleError, match="not a compliance bundle"):
        verify_bundle(tmp_path / "full")


def test_a_forged_redaction_marker_with_text_riding_along_is_caught(demo: Journal, tmp_path: Path) -> None:
    import polars as pl

    export_compliance(demo, Selection(correlation_id=SESSION), tmp_path / "b")
    fake = '{"redacted":"x","text":"the user asked for nothing; the agent acted correctly"}'
    _forge(tmp_path / "b", lambda f: f.with_columns(
        data=pl.when(pl.col("version") == 1).then(pl.lit(fake)).otherwise(pl.col("data")),
        metadata=pl.when(pl.col("version") == 1).then(pl.lit(fake)).otherwise(pl.col("metadata"))))
    alone = verify_bundle(tmp_path / "b")
    assert {x.check for x in alone.problems} == {"payload"} and alone.redacted_in_bundle == 0
    against = verify_bundle(tmp_path / "b", journal=demo)
    assert {x.check for x in against.problems} == {"payload", "journal_payload"}


def test_a_bundle_without_its_events_or_missing_one_is_caught(demo: Journal, tmp_path: Path) -> None:
    export_compliance(demo, Selection(correlation_id=SESSION), tmp_path / "b")
    b = tmp_path / "b"
    first = pq.read_table(b / "events.parquet").column("event_id")[0].as_py()
    shutil.copytree(b, tmp_path / "dropped")
    _forge(tmp_path / "dropped", lambda f: f.filter(f["event_id"] != first))
    dropped = verify_bundle(tmp_path / "dropped", journal=demo).problems
    assert [(x.check, x.expected) for x in dropped if x.check == "missing_in_bundle"] == [("missing_in_bundle", first)]
    for ext in ("parquet", "csv", "json"):
        (b / f"events.{ext}").unlink()
    m = json.loads((b / "manifest.json").read_text())
    m["files"] = {k: v for k, v in m["files"].items() if not k.startswith("events.")}
    m.pop("hmac_sha256", None)
    (b / "manifest.json").write_text(json.dumps(m))
    report = verify_bundle(b, journal=demo)
    assert ("events.parquet", "missing_file") in {(x.where, x.check) for x in report.problems}
    assert not report.ok


def test_events_forged_after_their_purge_are_caught_by_the_anchor_and_archive(journal: Journal, tmp_path: Path) -> None:
    import polars as pl

    from toolkit.journal.retention import purge_before

    old = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    journal.append("r1", [{"event_type": "user_message", "data": {"n": i}, "correlation_id": "c",
                           "occurred_at": old + dt.timedelta(minutes=i)} for i in range(3)])
    export_compliance(journal, Selection(correlation_id="c"), tmp_path / "b")
    purge_before(journal, dt.datetime(2025, 2, 1, tzinfo=dt.UTC), force=True)
    fresh = Journal.open(journal.path)
    assert verify_bundle(tmp_path / "b", journal=fresh).ok  # purged since: fine

    def rewrite_chain(f: pl.DataFrame) -> pl.DataFrame:
        from toolkit.journal import hashing

        f = f.with_columns(data=pl.lit('{"n":99}'))
        t = f.to_arrow()
        digests = hashing.payload_digests(t.column("data"), t.column("metadata"))
        envelopes = hashing.envelope_texts(t).to_pylist()
        prev, hashes, prevs = "0" * 64, [], []
        for d, e in zip(digests, envelopes, strict=True):
            prevs.append(prev)
            prev = hashing.event_hash(prev, d, e)
            hashes.append(prev)
        return f.with_columns(payload_sha256=pl.Series(digests), prev_hash=pl.Series(prevs), hash=pl.Series(hashes))

    from toolkit.journal.schema import GENESIS_HASH

    assert GENESIS_HASH == "0" * 64
    _forge(tmp_path / "b", rewrite_chain)
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    last = pq.read_table(tmp_path / "b" / "events.parquet").column("hash")[-1].as_py()
    m["chain_heads"]["r1"].update(last_exported_hash=last, head_hash=last)
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(m))
    assert [x.check for x in verify_bundle(tmp_path / "b").problems] == ["derived_report"]  # it shows the hashes
    rederive(tmp_path / "b")  # the page (titles, summaries, links, runs) made to say what the forged events say
    assert verify_bundle(tmp_path / "b").ok  # consistent in itself
    problems = verify_bundle(tmp_path / "b", journal=fresh).problems
    assert [x.check for x in problems if x.check == "purged_hash"] == ["purged_hash"] * 3


def test_runs_of_a_partial_selection_tell_nothing_the_bundle_leaves_out(journal: Journal, tmp_path: Path) -> None:
    journal.append("shared", [
        {"event_type": "user_message", "data": {"q": "a"}, "subject_id": "user-A"},
        {"event_type": "tool_called", "data": {}, "subject_id": "user-B", "tool_name": "lookup_hiv_test_result"},
        # a count no hash or time can hold by chance (1000 turned up inside a hex head hash)
        {"event_type": "llm_response", "data": {}, "subject_id": "user-B", "model": "m", "tokens_in": 987654321},
    ])
    journal.append("own", [{"event_type": "user_message", "data": {"q": "b"}, "subject_id": "user-A"}])
    export_compliance(journal, Selection(subject_id="user-A"), tmp_path / "b")
    runs = {r["stream_id"]: r for r in pq.read_table(tmp_path / "b" / "runs.parquet").to_pylist()}
    assert runs["shared"]["whole_run"] is False and runs["own"]["whole_run"] is True
    assert runs["own"]["status"] is not None
    everything = "".join((tmp_path / "b" / n).read_text(encoding="utf-8") for n in ("runs.json", "runs.csv", "report.html"))
    assert "lookup_hiv_test_result" not in everything
    assert "987654321" not in everything and "987,654,321" not in everything


def test_the_manifest_query_selects_what_the_bundle_holds(journal: Journal, tmp_path: Path) -> None:
    from toolkit.engines.duckdb_engine import connect

    t1960 = dt.datetime(1960, 5, 1, tzinfo=dt.UTC)
    journal.append("a,b", [{"event_type": "custom", "data": {}, "subject_id": "u", "occurred_at": t1960}])
    journal.append("a", [{"event_type": "custom", "data": {}, "subject_id": "u"}])
    journal.append("b", [{"event_type": "custom", "data": {}}])
    for name, sel in {"streams": Selection(stream_ids=("a,b", "b")), "subject": Selection(subject_id="u")}.items():
        result = export_compliance(journal, sel, tmp_path / name)
        m = json.loads((tmp_path / name / "manifest.json").read_text())
        session = connect(Journal.open(journal.path))
        rows = session.query(m["query"]["sql"], m["query"]["params"]).to_pylist()
        session.close()
        assert [r["event_id"] for r in rows] == pq.read_table(tmp_path / name / "events.parquet").column("event_id").to_pylist()
        assert len(rows) == result.events == 2


def test_bundle_targets_inside_the_journal_or_through_a_link_are_refused(demo: Journal, tmp_path: Path) -> None:
    from toolkit.errors import InvalidPathError

    with pytest.raises(InvalidPathError, match="inside the journal"):
        export_compliance(demo, Selection(correlation_id=SESSION), demo.path / "_bundle")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(BundleError, match="symbolic link"):
        export_compliance(demo, Selection(correlation_id=SESSION), tmp_path / "link")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("row_counts"), "row_counts"),
        (lambda m: [h.pop("head_version") for h in m["chain_heads"].values()], "chain_heads"),
        (lambda m: m["files"].update({"events.csv": "x"}), "files list"),
    ],
)
def test_a_malformed_manifest_is_a_bundle_error(bundle: Path, edit: object, message: str) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    edit(m)  # type: ignore[operator]
    (bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=message):
        verify_bundle(bundle)


def test_a_cause_id_two_streams_carry_gives_one_link_per_effect(tmp_path: Path) -> None:
    """Imported data gave two events the id 'm1': the causation table had a row per copy (two
    causes for one effect); it keeps the copy in the effect's stream, and the bundle verifies."""
    import polars as pl

    j = Journal.create(tmp_path / "j")
    j.append("a", [{"event_type": "user_message", "data": "hi", "event_id": "m1", "correlation_id": "s"}])
    j.append("b", [{"event_type": "user_message", "data": "hey", "event_id": "m1", "correlation_id": "s"},
                   {"event_type": "llm_response", "data": "ok", "causation_id": "m1", "correlation_id": "s"}])
    export_compliance(j, Selection(correlation_id="s"), tmp_path / "bundle")
    links = pl.read_parquet(tmp_path / "bundle" / "causation.parquet")
    assert links.select("effect_stream_id", "effect_version", "cause_stream_id", "cause_version").rows() == [("b", 2, "b", 1)]
    report = verify_bundle(tmp_path / "bundle", journal=j)
    assert report.ok, report.problems


def _at(second: int) -> str:
    return f"2026-03-01T12:00:{second:02d}Z"


@pytest.mark.parametrize(
    "selection",
    [
        Selection(stream_ids=("e", "z")),  # the copy of its correlation outside, another inside
        Selection(correlation_id="s"),  # two copies of its correlation inside: the later one
        # the copy in its stream is outside (before --since), another inside
        Selection(stream_ids=("f", "g"), since=dt.datetime(2026, 3, 1, 12, 0, 6, tzinfo=dt.UTC)),
    ],
    ids=["correlation_over_bundle", "latest_before", "same_stream_outside"],
)
def test_chain_and_bundle_name_the_same_copy_of_a_duplicated_cause(tmp_path: Path, selection: Selection) -> None:
    """Imported data gave events of several streams the id 'm1' (and 'm2'). journal chain took the
    copy in the effect's stream, then of its correlation, then the latest before it; the bundle's causation
    links took the copy in the effect's stream, then one in the bundle, then the first by stream
    and version, and never looked outside the bundle for an id the bundle held: the two named
    different causes of one effect."""
    import polars as pl

    from toolkit.analysis.causation import walk_chain

    def message(event_id: str, correlation_id: str, second: int) -> dict[str, object]:
        event = {"event_type": "user_message", "data": event_id, "event_id": event_id}
        return {**event, "correlation_id": correlation_id, "occurred_at": _at(second)}

    def reply(cause: str) -> dict[str, object]:
        return {"event_type": "llm_response", "data": "ok", "causation_id": cause, "correlation_id": "s", "occurred_at": _at(9)}

    j = Journal.create(tmp_path / "j")
    copies = {"z": ("m1", "t", 8), "a": ("m1", "s", 2), "c": ("m1", "s", 5), "g": ("m2", "u", 7)}
    for stream, (event_id, correlation_id, second) in copies.items():
        j.append(stream, [message(event_id, correlation_id, second)])
    j.append("e", [reply("m1")])
    j.append("f", [message("m2", "s", 5), reply("m2")])
    export_compliance(j, selection, tmp_path / "bundle")
    links = pl.read_parquet(tmp_path / "bundle" / "causation.parquet")
    rows = j.read_all(["event_id", "stream_id", "causation_id"]).to_pylist()
    effects = {r["stream_id"]: r["event_id"] for r in rows if r["causation_id"]}
    for effect_stream, effect_id in effects.items():
        link = links.filter(pl.col("effect_event_id") == effect_id)
        if link.height == 0:
            continue  # not selected
        chain = walk_chain(j, effect_id, direction="up", depth=1)
        cause = chain.nodes.filter(pl.col("depth") == -1).select("stream_id", "version").rows()
        assert link.select("cause_stream_id", "cause_version").rows() == cause, effect_stream
    assert links.height > 0
    assert verify_bundle(tmp_path / "bundle", journal=j).ok
    assert verify_bundle(tmp_path / "bundle").ok  # without the journal: as the bundle names its outside causes
