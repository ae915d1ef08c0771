"""A causation chain as an indented tree with one line of explanation per event.

>>> from toolkit.journal import Journal
>>> from toolkit.analysis.causation import walk_chain
>>> j = Journal.in_memory()
>>> _ = j.append("a", [{"event_type": "user_message", "data": {"text": "hi"}, "event_id": "m1"},
...                    {"event_type": "llm_response", "data": {"text": "ok"}, "event_id": "r1", "causation_id": "m1"}])
>>> print("\\n".join(line.split("  [")[0] for line in render_chain(walk_chain(j, "r1"))))
User said: hi
└─▶ Model answered: the model: ok
>>> j.close()
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from toolkit.analysis.causation import Chain
from toolkit.analysis.titles import describe_event


def _line(row: dict[str, Any], focus: str, max_summary: int) -> str:
    title, summary = describe_event(row)
    if len(summary) > max_summary:
        summary = summary[: max_summary - 1] + "…"
    mark = "▶ " if row["event_id"] == focus else ""
    text = f"{mark}{title}" + (f": {summary}" if summary else "")
    when = row["occurred_at"].strftime("%Y-%m-%d %H:%M:%S") if row.get("occurred_at") else "?"
    return f"{text}  [{row['stream_id']} v{row['version']} · {when} · {row['event_id']}]"


def render_chain(chain: Chain, *, max_summary: int = 100) -> list[str]:
    """Lines of the tree: roots first, effects indented under their cause, in time order."""
    rows = {r["event_id"]: r for r in chain.nodes.to_dicts()}
    children: dict[str | None, list[str]] = defaultdict(list)
    for eid, r in rows.items():
        children[r["parent_id"]].append(eid)
    for kids in children.values():
        kids.sort(key=lambda e: (rows[e]["occurred_at"], rows[e]["position"]))
    orphaned = {r["event_id"]: r["missing_cause"] for r in chain.orphans.to_dicts()}
    purged = {r["event_id"]: (r["missing_cause"], r["removed_by"]) for r in chain.purged.to_dicts()}
    in_cycle = {e for ring in chain.cycles for e in ring}
    also_in = dict(chain.ambiguous.select("event_id", "also_in").iter_rows())
    lines: list[str] = []
    seen: set[str] = set()

    def visit(eid: str, prefix: str, last: bool, top: bool) -> None:
        if eid in seen:
            return
        seen.add(eid)
        r = rows[eid]
        connector = "" if top else ("└─" if last else "├─")
        text = _line(r, chain.focus, max_summary)
        lines.append(f"{prefix}{connector}{text}")
        note_prefix = prefix + ("" if top else ("  " if last else "│ "))
        if eid in orphaned:
            lines.append(f"{note_prefix}⚠ orphan: its cause {orphaned[eid]} is not in the journal")
        if eid in purged:
            lines.append(f"{note_prefix}✂ its cause {purged[eid][0]} was removed by purge {purged[eid][1]}")
        if eid in in_cycle:
            lines.append(f"{note_prefix}↻ part of a causation cycle")
        if eid in also_in:
            streams = ("stream " if len(also_in[eid]) == 1 else "streams ") + ", ".join(also_in[eid])
            lines.append(f"{note_prefix}⚠ ambiguous id: an event in {streams} has it too; the chain takes this one")
        kids = children.get(eid, [])
        for i, k in enumerate(kids):
            visit(k, note_prefix, i == len(kids) - 1, False)

    roots = [e for e in children.get(None, [])]
    roots += [e for e, r in rows.items() if r["parent_id"] is not None and r["parent_id"] not in rows]
    for root in roots:
        visit(root, "", True, True)
    for e in rows:  # members of a ring have no root: start at the earliest
        if e not in seen:
            visit(e, "", True, True)
    for ring in chain.cycles:
        lines.append("↻ cycle: " + " → ".join(ring + ring[:1]))
    if chain.truncated:
        lines.append("… the walk stopped at --depth; raise it to see more")
    return lines
