"""Self-contained static HTML reports: one file, no request to any server, opens offline for years.

A :class:`Report` is data — sections of figures, tables, charts and text — built by the
``report_*`` modules from the same analysis functions the notebooks use. :func:`render_html`
turns it into one HTML document: CSS inline, each chart's Vega-Lite spec inline as JSON, and
the Vega, Vega-Lite and Vega-Embed libraries inlined once (bundled by vl-convert, so no CDN).
Text is escaped; nothing the journal holds is ever interpreted as HTML.

>>> import pyarrow as pa
>>> r = Report("demo", "A <title>", sections=[Section("Numbers", [Figures({"events": 3}),
...     TableBlock("rows", pa.table({"a": [1]}))])])
>>> page = render_html(r, bundle_js="/* vega */")
>>> "A &lt;title&gt;" in page and "<td class=\\"num\\">1</td>" in page
True
"""

from __future__ import annotations

import datetime as dt
import html
import importlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from toolkit.errors import ReportDependencyError, ReportError
from toolkit.journal.location import open_output
from toolkit.reports.charts import chart_spec, save_chart

if TYPE_CHECKING:
    import altair as alt

# ---------------------------------------------------------------------- the report as data


@dataclass(frozen=True)
class Figures:
    """Headline figures shown as cards: label → value."""

    values: Mapping[str, Any]


@dataclass(frozen=True)
class TableBlock:
    """A table; at most ``max_rows`` rows are shown and the rest counted."""

    title: str
    table: pa.Table
    max_rows: int = 200
    note: str = ""


@dataclass(frozen=True)
class ChartBlock:
    """An altair chart; ``name`` names its file when charts are exported (``overview-cost_by_model``)."""

    name: str
    chart: alt.TopLevelMixin
    caption: str = ""


@dataclass(frozen=True)
class Text:
    """A paragraph of plain text (escaped)."""

    text: str


@dataclass(frozen=True)
class Preformatted:
    """Monospaced text (JSON state, a diff), escaped."""

    title: str
    text: str


Block = Figures | TableBlock | ChartBlock | Text | Preformatted


@dataclass(frozen=True)
class Section:
    title: str
    blocks: Sequence[Block]
    intro: str = ""


@dataclass(frozen=True)
class Report:
    """A report: what it is about (``subject``), where it comes from, and its sections."""

    name: str
    title: str
    subject: str = ""
    journal: str = ""
    journal_version: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    sections: Sequence[Section] = ()
    generated_at: dt.datetime | None = None

    def charts(self) -> list[ChartBlock]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, ChartBlock)]


# ---------------------------------------------------------------------- the inlined JavaScript

_BUNDLE_MARKER: Final = "window.vegaEmbed="


def _cache_dir() -> Path:
    explicit = os.environ.get("TOOLKIT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agent-journal-toolkit"


@cache
def vega_bundle() -> str:
    """Vega + Vega-Lite + Vega-Embed as one script (from vl-convert; cached on disk, ~10 s to build once)."""
    try:
        vlc = importlib.import_module("vl_convert")
    except ImportError as e:
        raise ReportDependencyError.missing("vl-convert-python", "HTML reports") from e
    cached = _cache_dir() / f"vega-bundle-vl-convert-{vlc.__version__}.js"
    try:
        text = cached.read_text(encoding="utf-8")
        if _BUNDLE_MARKER in text:
            return text
    except OSError:
        pass
    text = str(vlc.javascript_bundle())
    if _BUNDLE_MARKER not in text:
        raise ReportError("vl-convert returned an unexpected JavaScript bundle (no vegaEmbed)")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(cached)
    except OSError:
        pass  # a read-only home: build it again next time
    return text


# ---------------------------------------------------------------------- rendering

_CSS: Final = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1100px; padding: 24px 32px 64px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 36px 0 8px; border-bottom: 1px solid var(--line);
     padding-bottom: 4px; } h3 { font-size: 15px; margin: 20px 0 6px; }
.meta { color: var(--muted); margin: 0 0 8px; } .meta code { font-size: 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 120px; background: var(--bg); }
.card .v { font-size: 20px; font-weight: 600; } .card .k { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; margin: 6px 0 4px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--bg); font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.more, .note, figcaption { color: var(--muted); font-size: 12px; }
figure { margin: 14px 0; } pre { background: var(--bg); border: 1px solid var(--line); border-radius: 6px;
  padding: 10px; overflow-x: auto; font-size: 12px; white-space: pre-wrap; word-break: break-word; }
.chart-error { color: #cf222e; } .scroll { overflow-x: auto; }
@media print { .vega-embed summary { display: none; } }
"""

_EMBED_JS: Final = """
for (const el of document.querySelectorAll("[data-vega-spec]")) {
  const spec = JSON.parse(document.getElementById(el.dataset.vegaSpec).textContent);
  vegaEmbed(el, spec, {renderer: "svg", actions: false})
    .then(() => { el.dataset.rendered = "true"; })
    .catch((e) => { el.dataset.rendered = "error"; el.className = "chart-error"; el.textContent = "chart failed: " + e; });
}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        q = value.quantize(Decimal("0.000001")) if value.as_tuple().exponent < -6 else value  # type: ignore[operator]
        return f"{q:,}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:,.2f}"
        return f"{value:.4f}"
    if isinstance(value, dt.datetime):
        v = value.astimezone(dt.UTC) if value.tzinfo else value
        return v.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if value.tzinfo else "")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _script_json(obj: Any) -> str:
    """JSON safe inside a <script> element: no '<' at all, so nothing can close or open a tag."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).replace("<", "\\u003c")


def _render_table(block: TableBlock) -> str:
    t = block.table
    rows = t.slice(0, block.max_rows).to_pylist()
    head = "".join(f"<th>{_e(c)}</th>" for c in t.column_names)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{_e(_fmt(v))}</td>' if _is_num(v) else f"<td>{_e(_fmt(v))}</td>" for v in row.values()
        )
        body.append(f"<tr>{cells}</tr>")
    more = (
        f'<p class="more">{t.num_rows - block.max_rows:,} more rows not shown ({t.num_rows:,} in all)</p>'
        if t.num_rows > block.max_rows
        else ""
    )
    empty = '<p class="more">no rows</p>' if t.num_rows == 0 else ""
    note = f'<p class="note">{_e(block.note)}</p>' if block.note else ""
    return (
        f'<h3>{_e(block.title)}</h3>{note}<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{more}{empty}"
    )


def _render_block(block: Block, chart_no: list[int]) -> str:
    if isinstance(block, Figures):
        cards = "".join(
            f'<div class="card"><div class="v">{_e(_fmt(v))}</div><div class="k">{_e(k)}</div></div>'
            for k, v in block.values.items()
        )
        return f'<div class="cards">{cards}</div>'
    if isinstance(block, TableBlock):
        return _render_table(block)
    if isinstance(block, ChartBlock):
        chart_no[0] += 1
        sid = f"spec-{chart_no[0]}"
        caption = f"<figcaption>{_e(block.caption)}</figcaption>" if block.caption else ""
        return (
            f'<figure><div class="chart" id="chart-{_e(block.name)}" data-vega-spec="{sid}"></div>{caption}'
            f'<script type="application/json" id="{sid}">{_script_json(chart_spec(block.chart))}</script></figure>'
        )
    if isinstance(block, Text):
        return "".join(f"<p>{_e(p.strip())}</p>" for p in block.text.split("\n\n") if p.strip())
    return f"<h3>{_e(block.title)}</h3><pre>{_e(block.text)}</pre>"


def render_html(report: Report, *, bundle_js: str | None = None) -> str:
    """The report as one self-contained HTML document (``bundle_js`` overrides the Vega bundle, for tests)."""
    chart_no = [0]
    sections = []
    for s in report.sections:
        intro = f"<p>{_e(s.intro)}</p>" if s.intro else ""
        blocks = "".join(_render_block(b, chart_no) for b in s.blocks)
        sections.append(f'<section><h2 id="{_e(_slug(s.title))}">{_e(s.title)}</h2>{intro}{blocks}</section>')
    generated = report.generated_at or dt.datetime.now(dt.UTC)
    meta = [f"journal <code>{_e(report.journal)}</code>"] if report.journal else []
    if report.journal_version is not None:
        meta.append(f"Delta version {report.journal_version}")
    meta.append(f"generated {_e(_fmt(generated))}")
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in report.params.items() if v is not None)
    if params:
        meta.append(f"parameters <code>{_e(params)}</code>")
    toc = " · ".join(f'<a href="#{_e(_slug(s.title))}">{_e(s.title)}</a>' for s in report.sections)
    scripts = ""
    if chart_no[0]:
        js = (bundle_js if bundle_js is not None else vega_bundle()).replace("</script", "<\\/script")
        scripts = f'<script type="text/javascript">{js}</script><script type="text/javascript">{_EMBED_JS}</script>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="agent-journal-toolkit report {_e(report.name)}">'
        f"<title>{_e(report.title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(report.title)}</h1>"
        + (f'<p class="meta">{_e(report.subject)}</p>' if report.subject else "")
        + f'<p class="meta">{" · ".join(meta)}</p><p class="meta">{toc}</p></header>'
        + "".join(sections)
        + scripts
        + "</body></html>\n"
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def write_html(report: Report, path: str | Path) -> Path:
    """Write the report to ``path`` (an ``.html`` file; parent directories are created)."""
    out = Path(path)
    if out.suffix.lower() not in {".html", ".htm"}:
        raise ReportError(f"{out}: a report is written as .html", hint=f"e.g. -o {out.with_suffix('.html').name}")
    if out.is_dir():
        raise ReportError(f"{out} is a directory", hint="give a file name, e.g. -o report.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(report)
    with open_output(out, atomic=True) as f:  # temp then rename: never written through a hard link
        f.write(text)
    return out


def save_charts(report: Report, directory: str | Path, fmt: str = "png") -> list[Path]:
    """Write every chart of the report as ``DIR/<report>-<chart>.<fmt>`` (png, svg or json)."""
    d = Path(directory)
    return [save_chart(c.chart, d / f"{report.name}-{c.name}.{fmt}") for c in report.charts()]
