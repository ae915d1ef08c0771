"""The bundle's ``report.html``: one self-contained page a non-engineer can read, offline, years later.

Inline CSS only: no script, no image, no font, no link or resource outside the file (the only
``href`` values are ``#fragments`` inside it). Text from payloads is escaped; addresses that
appear in it are shown as text (``scheme://`` is written with character references) so nothing in the
page points outside it. One section per run (a page of its own when printed): a timeline of
who did what and why, with the cause of each step.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from decimal import Decimal
from typing import Any

import polars as pl

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#1b1b1b;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:2em;border-bottom:2px solid #444}
table{border-collapse:collapse;width:100%;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .45em;vertical-align:top;text-align:left}
th{background:#f0f0f0}td.n{text-align:right;white-space:nowrap}tr.err td{background:#fdecea}
.box{border:1px solid #bbb;background:#fafafa;padding:.6em 1em;margin:1em 0}.muted{color:#666}
code{font-size:.92em;word-break:break-all}.why{color:#333}.kv th{width:14em}
@media print{section.run{break-before:page}a{color:inherit;text-decoration:none}}
"""


def _text(value: Any) -> str:
    """Escaped text; ``://`` as character references, so no address in the page is live."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    elif isinstance(value, Decimal):
        value = format(value.normalize(), "f")
    return _SCHEME.sub(r"\1&#58;&#47;&#47;", html.escape(str(value), quote=True))


def _who(row: dict[str, Any]) -> str:
    kind = row["event_type"]
    if kind == "user_message":
        return "User" + (f" ({row['subject_id']})" if row.get("subject_id") else "")
    if kind in ("llm_request", "llm_response"):
        return f"Model {row['model']}" if row.get("model") else "Model"
    if kind in ("tool_called", "tool_result"):
        return f"Tool {row['tool_name']}" if row.get("tool_name") else "Tool"
    return f"Agent {row['agent']}" if row.get("agent") else "Agent"


def render_report(manifest: dict[str, Any], events: pl.DataFrame, causation: pl.DataFrame, runs: pl.DataFrame) -> str:
    anchors = {eid: f"e{i}" for i, eid in enumerate(events.get_column("event_id").to_list())}
    titles = dict(zip(events.get_column("event_id").to_list(), events.get_column("title").to_list(), strict=True))
    links = {r["effect_event_id"]: r for r in causation.to_dicts()}
    run_rows = {r["stream_id"]: r for r in runs.to_dicts()} if "stream_id" in runs.columns else {}
    sel = manifest["selection"]
    chosen = (
        f"correlation id {sel['correlation_id']}"
        if sel["correlation_id"]
        else f"subject {sel['subject_id']}"
        if sel["subject_id"]
        else "streams " + ", ".join(sel["stream_ids"] or [])
    )
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Agent activity record: {_text(chosen)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Agent activity record: {_text(chosen)}</h1>",
        '<table class="kv">',
        f"<tr><th>Selected</th><td>{_text(chosen)}</td></tr>",
        f"<tr><th>Period</th><td>{_text(sel['since'] or 'from the beginning')} — {_text(sel['until'] or 'until the export')}</td></tr>",
        f"<tr><th>Exported at</th><td>{_text(manifest['exported_at'])}</td></tr>",
        f"<tr><th>Journal</th><td><code>{_text(manifest['journal'])}</code> at Delta version {_text(manifest['delta_version'])}</td></tr>",
        f"<tr><th>Contents</th><td>{events.height} events in {len(manifest['streams'])} runs; {causation.height} cause→effect links</td></tr>",
        "</table>",
        '<div class="box"><b>How to read this record.</b> Each run of an agent has its own section below. '
        "Each row is one recorded step: <i>when</i> it happened (UTC), <i>who</i> acted (the user, the model, a tool, the agent), "
        "<i>what</i> happened, and <i>why</i>: the step that caused it. The last column is the step's place in the tamper-evident "
        "chain (run, number, start of its hash). The files next to this page (events, causation, runs as Parquet, CSV and JSON, "
        "and manifest.json with the SHA-256 of every file and the chain heads) hold the same data; "
        "<code>journal verify-export</code> checks them.</div>",
    ]
    if manifest.get("empty"):
        out.append('<p class="box"><b>No events matched this selection.</b> The bundle is empty and still verifiable.</p>')
    if manifest["streams"]:
        out.append("<h2>Runs</h2><ol>")
        for i, sid in enumerate(manifest["streams"]):
            r = run_rows.get(sid, {})
            out.append(
                f'<li><a href="#run{i}">{_text(sid)}</a> <span class="muted">{_text(r.get("agent"))} · '
                f"{_text(r.get('first_at'))} · {_text(r.get('outcome'))}</span></li>"
            )
        out.append("</ol>")
    by_stream = events.partition_by("stream_id", as_dict=True, maintain_order=True) if events.height else {}
    for i, sid in enumerate(manifest["streams"]):
        frame = by_stream[(sid,)].sort("occurred_at", "position")
        r = run_rows.get(sid, {})
        out.append(f'<section class="run" id="run{i}"><h2>Run {_text(sid)}</h2><table class="kv">')
        for label, key in (
            ("Agent", "agent"),
            ("Subject", "subject_id"),
            ("Started", "first_at"),
            ("Last step", "last_at"),
            ("Outcome", "outcome"),
            ("Status at its last event", "status"),
            ("Model", "model"),
            ("Model calls", "llm_calls"),
            ("Tool calls", "tool_calls"),
            ("Failed tool calls", "tool_failures"),
            ("Tools", "tool_names"),
            ("Errors", "errors"),
            ("Recorded cost (USD)", "cost_usd"),
        ):
            if r.get(key) not in (None, ""):
                out.append(f"<tr><th>{label}</th><td>{_text(r[key])}</td></tr>")
        out.append("</table><table><tr><th>#</th><th>When (UTC)</th><th>Who</th><th>What</th><th>Why</th><th>Chain</th></tr>")
        for row in frame.to_dicts():
            link = links.get(row["event_id"])
            if link is None:
                why = '<span class="muted">starting point (no recorded cause)</span>'
            elif link["cause_event_id"] in anchors:
                why = f'after <a href="#{anchors[link["cause_event_id"]]}">{_text(titles[link["cause_event_id"]])}</a>'
            elif link["orphan"]:
                why = f"cause <code>{_text(link['cause_event_id'])}</code> is not in the journal"
            else:
                why = (
                    f"after {_text(link['cause_event_type'])} in run {_text(link['cause_stream_id'])} "
                    f"(v{_text(link['cause_version'])}, outside this export)"
                )
            what = f"<b>{_text(row['title'])}</b>" + (f"<br>{_text(row['summary'])}" if row.get("summary") else "")
            cls = ' class="err"' if row.get("is_error") else ""
            out.append(
                f'<tr id="{anchors[row["event_id"]]}"{cls}><td class="n">{_text(row["version"])}</td>'
                f'<td class="n">{_text(row["occurred_at"])}</td><td>{_text(_who(row))}</td><td>{what}</td>'
                f'<td class="why">{why}</td><td><code>{_text(row["hash"][:12])}</code></td></tr>'
            )
        out.append("</table></section>")
    if manifest["chain_heads"]:
        out.append(
            "<h2>Hash-chain heads</h2><p>The last event of each run in the journal when this record was made. "
            "Anyone holding the journal can check these values are still in it.</p>"
            "<table><tr><th>Run</th><th>Head version</th><th>Head hash</th><th>Last exported</th></tr>"
        )
        for sid, h in manifest["chain_heads"].items():
            out.append(
                f"<tr><td>{_text(sid)}</td><td class=\"n\">{_text(h['head_version'])}</td><td><code>{_text(h['head_hash'])}</code></td>"
                f"<td class=\"n\">v{_text(h.get('last_exported_version'))}</td></tr>"
            )
        out.append("</table>")
    out.append(
        '<h2>What this record proves, and what it does not</h2><div class="box"><p>It shows the events the journal '
        "held for this selection when it was exported, in order, each with the hash that chains it to the step before. "
        "If any event here were altered, removed or reordered, its hash would no longer match the journal or the "
        "chain. It does not prove that the agent recorded everything it did, that the recorded times are true, or "
        "that the journal was not rewritten before an independent checkpoint of its chain heads was taken.</p></div>"
    )
    out.append(f'<p class="muted">{_text(manifest["format"])} · toolkit {_text(manifest["toolkit_version"])}</p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"
