"""Causation chains across streams, orphans, cycles, depth limits, near-match errors; traces and
correlations stitched across streams and sources."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from helpers import TRACEPARENT, ev

from toolkit.analysis.causation import Chain, find_orphans, walk_chain
from toolkit.analysis.timeline import correlation_events, streams_of, trace_events
from toolkit.errors import EventNotFoundError
from toolkit.journal import Journal
from toolkit.reports.causation_tree import render_chain

FIXTURE = Path(__file__).parents[1] / "fixtures" / "demo-journal"


@pytest.fixture
def cross(journal: Journal) -> Journal:
    """Run a: user message → plan → tool call; run b (another stream, later commit) is caused by
    a's tool call and has its own effects; run c has an orphan and a two-event cycle."""
    journal.append(
        "a",
        [
            ev("user_message", {"text": "book Berlin"}, event_id="a1", correlation_id="s1"),
            ev("plan_created", {"plan": "search"}, event_id="a2", causation_id="a1", correlation_id="s1"),
            ev("tool_called", {"q": "BER"}, event_id="a3", causation_id="a2", tool_name="search", correlation_id="s1"),
            ev("llm_response", {"text": "sibling"}, event_id="a4", causation_id="a2", correlation_id="s1"),
        ],
        stream_type="agent_run",
    )
    journal.append(
        "b",
        [
            ev("tool_result", {"ok": False}, event_id="b1", causation_id="a3", error="503", correlation_id="s1"),
            ev("llm_response", {"text": "retry"}, event_id="b2", causation_id="b1", correlation_id="s1"),
        ],
        stream_type="tool_worker",
    )
    journal.append(
        "c",
        [
            ev("custom", event_id="c1", causation_id="cmd-404"),
            ev("custom", event_id="c2", causation_id="c3"),
            ev("custom", event_id="c3", causation_id="c2"),
        ],
    )
    return journal


def _ids(df: pl.DataFrame) -> list[tuple[str, int]]:
    return list(df.select("event_id", "depth").iter_rows())


def test_up_walks_back_across_streams_to_the_root_input(cross: Journal) -> None:
    chain = walk_chain(cross, "b2", direction="up")
    assert _ids(chain.nodes) == [("a1", -4), ("a2", -3), ("a3", -2), ("b1", -1), ("b2", 0)]
    assert chain.orphans.height == 0 and chain.cycles == [] and not chain.truncated


def test_down_walks_to_every_effect_across_streams(cross: Journal) -> None:
    chain = walk_chain(cross, "a2", direction="down")
    assert sorted(_ids(chain.nodes)) == [("a2", 0), ("a3", 1), ("a4", 1), ("b1", 2), ("b2", 3)]
    graph = chain.graph()
    assert all(n["title"] and "data" not in n for n in graph["nodes"])
    edges = {(e["cause"], e["effect"]) for e in graph["edges"]}
    assert edges == {("a2", "a3"), ("a2", "a4"), ("a3", "b1"), ("b1", "b2")}


def test_both_and_depth(cross: Journal) -> None:
    chain = walk_chain(cross, "a3", direction="both", depth=1)
    assert sorted(_ids(chain.nodes)) == [("a2", -1), ("a3", 0), ("b1", 1)]
    assert chain.truncated
    full = walk_chain(cross, "a3")
    assert {e for e, _ in _ids(full.nodes)} == {"a1", "a2", "a3", "b1", "b2"}  # not the sibling a4


def test_orphans_and_cycles_are_reported(cross: Journal) -> None:
    orphan = walk_chain(cross, "c1", direction="up")
    assert orphan.orphans.rows() == [("c1", "c", 1, "custom", "cmd-404")]
    ring = walk_chain(cross, "c2")
    assert [sorted(c) for c in ring.cycles] == [["c2", "c3"]]
    lines = render_chain(ring)
    assert any("cycle" in line for line in lines)
    assert any("orphan" in line for line in render_chain(orphan))
    assert find_orphans(cross).get_column("event_id").to_list() == ["c1"]


@pytest.fixture
def duplicate_ids(journal: Journal) -> Journal:
    """Event id "x" in two streams (an old run re-imported under another stream): "run" caused
    "r" in its own stream and, through correlation s1, "t" in the worker stream."""
    journal.append("old", [ev("user_message", {"text": "old run"}, event_id="m0", correlation_id="s0"),
                           ev("plan_created", event_id="x", causation_id="m0", correlation_id="s0")])
    journal.append("run", [ev("user_message", {"text": "book Berlin"}, event_id="m1", correlation_id="s1"),
                           ev("plan_created", event_id="x", causation_id="m1", correlation_id="s1"),
                           ev("llm_response", event_id="r", causation_id="x", correlation_id="s0")])
    journal.append("worker", [ev("tool_result", event_id="t", causation_id="x", correlation_id="s1")])
    return journal


def _where(chain: Chain) -> list[tuple[str, str, int]]:
    return list(chain.nodes.select("event_id", "stream_id", "depth").iter_rows())


def test_a_cause_id_two_streams_carry_is_the_copy_of_the_effects_stream_then_correlation(duplicate_ids: Journal) -> None:
    """The chain took the first copy loaded and walked up from every copy; it now takes the copy in
    the effect's stream (even against the correlation), else the one of its correlation, and
    names the id as ambiguous."""
    up = walk_chain(duplicate_ids, "t", direction="up")
    assert _where(up) == [("m1", "run", -2), ("x", "run", -1), ("t", "worker", 0)]
    assert up.ambiguous.rows() == [("x", "run", 2, "plan_created", ["old"])]
    same_stream = walk_chain(duplicate_ids, "r", direction="up")  # the copy elsewhere is found too
    assert _where(same_stream) == [("m1", "run", -2), ("x", "run", -1), ("r", "run", 0)]
    assert same_stream.ambiguous.get_column("also_in").to_list() == [["old"]]
    down = walk_chain(duplicate_ids, "m0", direction="down")  # "old"'s x caused neither t nor r
    assert _where(down) == [("m0", "old", 0), ("x", "old", 1)]
    assert down.ambiguous.rows() == [("x", "old", 2, "plan_created", ["run"])]
    both = walk_chain(duplicate_ids, "m1")
    assert sorted(_where(both)) == [("m1", "run", 0), ("r", "run", 2), ("t", "worker", 2), ("x", "run", 1)]
    assert [e for e in both.graph()["edges"]] == [{"cause": "m1", "effect": "x"}, {"cause": "x", "effect": "r"}, {"cause": "x", "effect": "t"}]
    assert both.graph()["ambiguous"] == [{"event_id": "x", "stream_id": "run", "version": 2, "event_type": "plan_created", "also_in": ["old"]}]
    lines = render_chain(both)
    assert lines[1].endswith("· x]") and lines[2].endswith("⚠ ambiguous id: an event in stream old has it too; the chain takes this one")
    from toolkit.reports.html import TableBlock
    from toolkit.reports.report_causation import causation_sections

    problems = next(s for s in causation_sections(duplicate_ids, both) if s.title == "Orphans and cycles")
    table = next(b.table for b in problems.blocks if isinstance(b, TableBlock) and b.title.startswith("Ambiguous ids"))
    assert table.select(["event_id", "stream_id", "also_in"]).to_pylist() == [{"event_id": "x", "stream_id": "run", "also_in": "old"}]


def test_a_focus_id_two_streams_carry_is_its_first_committed_copy(duplicate_ids: Journal) -> None:
    chain = walk_chain(duplicate_ids, "x", direction="up")
    assert _where(chain) == [("m0", "old", -1), ("x", "old", 0)]
    assert chain.ambiguous.rows() == [("x", "old", 2, "plan_created", ["run"])]
    plain = walk_chain(duplicate_ids, "m1", direction="up")
    assert plain.ambiguous.height == 0 and plain.graph()["ambiguous"] == []


def test_unknown_event_gets_near_matches(cross: Journal) -> None:
    with pytest.raises(EventNotFoundError) as e:
        walk_chain(cross, "a9")
    assert "did you mean" in str(e.value) and "a1" in str(e.value)


def test_tree_renders_explainers_and_marks_the_focus(cross: Journal) -> None:
    lines = render_chain(walk_chain(cross, "b1", direction="up"))
    assert "book Berlin" in lines[0] and lines[0].endswith("· a1]")  # explainer text, then where it is
    assert "▶ " in lines[-1] and "503" in lines[-1] and lines[-1].endswith("· b1]")
    assert lines[-1].startswith("    └─▶")  # three levels below the root


def test_journal_is_queried_per_stream_hop_not_per_event(journal: Journal) -> None:
    events = [ev("custom", event_id="e0")] + [ev("custom", event_id=f"e{i}", causation_id=f"e{i - 1}") for i in range(1, 60)]
    journal.append("long", events)
    journal.append("next", [ev("custom", event_id="n1", causation_id="e59")])
    up = walk_chain(journal, "n1", direction="up")
    # find n1, the hop into "long", and one lookup of the ids resolved within "long" (copies elsewhere)
    assert up.nodes.height == 61 and up.journal_queries == 3
    down = walk_chain(journal, "e0", direction="down")
    assert down.nodes.height == 61 and down.journal_queries <= 3


def test_failing_tool_call_back_to_the_user_message_on_the_demo(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "demo")
    j = Journal.open(tmp_path / "demo")
    failed = (
        j.read_all(["event_id", "event_type", "is_error"])
        .to_pylist()
    )
    target = next(r["event_id"] for r in failed if r["event_type"] == "tool_result" and r["is_error"])
    chain = walk_chain(j, target, direction="up")
    root = chain.nodes.row(0, named=True)
    assert root["event_type"] == "user_message" and root["causation_id"] is None
    assert chain.nodes.get_column("depth").to_list() == list(range(-chain.nodes.height + 1, 1))


def test_trace_is_stitched_across_streams_and_sources(journal: Journal) -> None:
    journal.append("agent", [ev("user_message", traceparent=TRACEPARENT, source="app")])
    journal.append("otel", [ev("llm_response", traceparent=TRACEPARENT.replace("b7ad", "c7ad"), source="otlp")])
    journal.append("other", [ev("custom")])
    t = trace_events(journal, TRACEPARENT.upper())
    assert t.get_column("stream_id").to_list() == ["agent", "otel"]
    assert t.get_column("source").to_list() == ["app", "otlp"]
    with pytest.raises(EventNotFoundError, match="no trace"):
        trace_events(journal, "0af7651916cd43dd8448eb211c80319d")


def test_trace_finds_a_trace_id_in_capitals_and_one_only_the_traceparent_carries(journal: Journal) -> None:
    """Stored trace ids are kept as given: one in capitals, and (in journals written before
    import refused it) one that contradicts the event's traceparent, were missed by the lookup."""
    from toolkit.journal.prepare import events_to_table

    trace_id = TRACEPARENT.split("-")[1]
    journal.append("caps", [ev("user_message", trace_id=trace_id.upper(), occurred_at="2026-03-01T10:00:00Z")])
    legacy = events_to_table([ev("tool_called", stream_id="legacy", trace_id="1" * 32, occurred_at="2026-03-01T10:00:01Z")])
    legacy = legacy.set_column(legacy.schema.get_field_index("traceparent"), "traceparent", pa.array([f" {TRACEPARENT.upper()} "]))
    journal.append_validated(legacy)  # as an earlier version stored it
    journal.append("other", [ev("custom", trace_id="1" * 32), ev("custom", traceparent=TRACEPARENT.replace("0af7", "1af7"))])
    for asked in (trace_id, trace_id.upper(), TRACEPARENT):
        assert trace_events(journal, asked).get_column("stream_id").to_list() == ["caps", "legacy"]
    with pytest.raises(EventNotFoundError, match="no trace"):
        trace_events(journal, "%")  # not a LIKE pattern


def test_correlation_lists_every_stream_in_time_order(cross: Journal) -> None:
    t = correlation_events(cross, "s1")
    assert t.get_column("event_id").to_list() == ["a1", "a2", "a3", "a4", "b1", "b2"]
    assert streams_of(t).get_column("stream_id").to_list() == ["a", "b"]
    with pytest.raises(EventNotFoundError, match="did you mean s1"):
        correlation_events(cross, "s2")
