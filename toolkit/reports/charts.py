"""Altair charts of aggregated tables, and their export to SVG, PNG or Vega-Lite JSON.

Every builder takes a small, already aggregated Arrow table (one row per day, model, tool…)
and returns an ``altair.Chart``; none aggregates millions of events in the browser. A table
above :data:`MAX_CHART_ROWS` rows is refused with a hint to aggregate first. Values are
inlined into the spec as plain JSON (Decimal → float, times → ISO 8601 UTC), so a spec is
deterministic and self-contained. Charts render with Vega's SVG renderer, so their marks are
elements a browser test (or a screen reader) can see.

The notebooks show these charts directly; the HTML reports inline their specs
(:mod:`toolkit.reports.html`); :func:`save_chart` writes PNG or SVG through vl-convert with no
network access.

>>> import pyarrow as pa, datetime as dt
>>> t = pa.table({"day": [dt.date(2026, 1, 1)], "events": [3]})
>>> spec = daily_bars(t, "events", "Events per day").to_dict()
>>> spec["mark"]["type"], spec["encoding"]["y"]["field"]
('bar', 'events')
>>> chart_values(t)
[{'day': '2026-01-01', 'events': 3}]
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import pyarrow as pa

from toolkit.errors import ChartDataError, ReportDependencyError
from toolkit.journal.location import open_output

if TYPE_CHECKING:
    import altair as alt

MAX_CHART_ROWS: Final = 5_000  # altair's own default limit; above it, aggregate first
WIDTH: Final = 640
HEIGHT: Final = 220
EMBED_OPTIONS: Final[dict[str, Any]] = {"renderer": "svg", "actions": False}


def _alt() -> Any:
    try:
        return importlib.import_module("altair")
    except ImportError as e:
        raise ReportDependencyError.missing("altair", "charts") from e


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def chart_values(table: pa.Table, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows of ``table`` as JSON-ready dicts; refuses more than :data:`MAX_CHART_ROWS` rows."""
    if table.num_rows > MAX_CHART_ROWS:
        raise ChartDataError(
            f"{table.num_rows} rows is too many to chart (limit {MAX_CHART_ROWS})",
            hint="aggregate first (by day, model, tool, ...) or narrow the time range",
            rows=table.num_rows,
        )
    if columns is not None:
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise ChartDataError(
                f"the table has no column {missing[0]!r}", hint=f"its columns: {', '.join(table.column_names)}"
            )
        table = table.select(list(columns))
    return [{k: _plain(v) for k, v in row.items()} for row in table.to_pylist()]


def _chart(chart: Any) -> alt.Chart:
    return cast("alt.Chart", chart)


def _layered(chart: Any) -> alt.LayerChart:
    return cast("alt.LayerChart", chart)


def _typed(table: pa.Table, column: str) -> str:
    """``column:Q|T|N`` from the Arrow type (Vega-Lite cannot infer types of inline values)."""
    t = table.schema.field(column).type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return f"{column}:Q"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return f"{column}:T"
    return f"{column}:N"


def _base(table: pa.Table, columns: Sequence[str], title: str | None, *, top_level: bool = True) -> Any:
    """A chart over the table's rows; ``top_level=False`` for a layer (only the top carries usermeta)."""
    alt = _alt()
    # rows as a plain dict, not ``alt.Data``: altair validates an ``alt.Data`` row by row against
    # the schema when it is made (5,000 rows: 1.2 s), and moves a dict's rows to ``datasets``
    data = {"values": chart_values(table, columns)}
    if not top_level:
        return alt.Chart(data)
    return alt.Chart(data, title=title, usermeta={"embedOptions": EMBED_OPTIONS})


def _day(alt: Any) -> Any:
    return alt.X(
        "day:T",
        title="day (UTC)",
        timeUnit="utcyearmonthdate",
        scale=alt.Scale(type="utc"),
        axis=alt.Axis(format="%b %d", labelOverlap="greedy"),
    )


def daily_bars(table: pa.Table, value: str, title: str, *, y_title: str | None = None, fmt: str = ",d") -> alt.Chart:
    """One bar per UTC day (column ``day``) of ``value``."""
    alt = _alt()
    chart = (
        _base(table, ["day", value], title)
        .mark_bar()
        .encode(
            x=_day(alt),
            y=alt.Y(f"{value}:Q", title=y_title or value),
            tooltip=[alt.Tooltip("day:T", format="%Y-%m-%d"), alt.Tooltip(f"{value}:Q", format=fmt)],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return _chart(chart)


def daily_line(table: pa.Table, value: str, title: str, *, y_title: str | None = None, fmt: str = ".1%") -> alt.Chart:
    """A line over UTC days (column ``day``) of ``value`` (a rate by default)."""
    alt = _alt()
    chart = (
        _base(table, ["day", value], title)
        .mark_line(point=True)
        .encode(
            x=_day(alt),
            y=alt.Y(f"{value}:Q", title=y_title or value, axis=alt.Axis(format=fmt)),
            tooltip=[alt.Tooltip("day:T", format="%Y-%m-%d"), alt.Tooltip(f"{value}:Q", format=fmt)],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return _chart(chart)


def stacked_daily(
    table: pa.Table, value: str, color: str, title: str, *, y_title: str | None = None, fmt: str = ",.2f"
) -> alt.Chart:
    """Bars per UTC day of ``value``, stacked by ``color`` (e.g. cost per day by model)."""
    alt = _alt()
    chart = (
        _base(table, ["day", color, value], title)
        .mark_bar()
        .encode(
            x=_day(alt),
            y=alt.Y(f"sum({value}):Q", title=y_title or value),
            color=alt.Color(f"{color}:N", title=color),
            tooltip=[
                alt.Tooltip("day:T", format="%Y-%m-%d"),
                alt.Tooltip(f"{color}:N"),
                alt.Tooltip(f"{value}:Q", format=fmt),
            ],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return _chart(chart)


def folded_daily(
    table: pa.Table, values: Sequence[str], title: str, *, y_title: str, series: str = "series", fmt: str = ",d"
) -> alt.Chart:
    """Bars per UTC day, one stacked segment per column of ``values`` (e.g. tokens in and out)."""
    alt = _alt()
    chart = (
        _base(table, ["day", *values], title)
        .transform_fold(list(values), as_=[series, "value"])
        .mark_bar()
        .encode(
            x=_day(alt),
            y=alt.Y("value:Q", title=y_title),
            color=alt.Color(f"{series}:N", title=series, sort=list(values)),
            tooltip=[
                alt.Tooltip("day:T", format="%Y-%m-%d"),
                alt.Tooltip(f"{series}:N"),
                alt.Tooltip("value:Q", format=fmt),
            ],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return _chart(chart)


def latency_lines(table: pa.Table, title: str = "Latency percentiles per day") -> alt.Chart:
    """Lines of p50/p90/p99 latency per UTC day, one dash style per ``kind`` (llm, tool)."""
    alt = _alt()
    pcts = ["p50_ms", "p90_ms", "p99_ms"]
    chart = (
        _base(table, ["day", "kind", *pcts], title)
        .transform_fold(pcts, as_=["percentile", "duration_ms"])
        .mark_line(point=True)
        .encode(
            x=_day(alt),
            y=alt.Y("duration_ms:Q", title="duration (ms)"),
            color=alt.Color("percentile:N", sort=pcts),
            strokeDash=alt.StrokeDash("kind:N"),
            tooltip=[
                alt.Tooltip("day:T", format="%Y-%m-%d"),
                "kind:N",
                "percentile:N",
                alt.Tooltip("duration_ms:Q", format=",.0f"),
            ],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )
    return _chart(chart)


def ranked_bars(
    table: pa.Table,
    category: str,
    value: str,
    title: str,
    *,
    x_title: str | None = None,
    fmt: str = ",.2f",
    color: str | None = None,
    extra_tooltip: Sequence[str] = (),
) -> alt.Chart:
    """Horizontal bars of ``value`` per ``category``, largest first (top-N tables, by model/tool/agent)."""
    alt = _alt()
    cols = list(dict.fromkeys([category, value, *([color] if color else []), *extra_tooltip]))
    encoding: dict[str, Any] = {
        "y": alt.Y(f"{category}:N", title=category, sort="-x"),
        "x": alt.X(f"{value}:Q", title=x_title or value),
        "tooltip": [f"{category}:N", alt.Tooltip(f"{value}:Q", format=fmt), *(_typed(table, c) for c in cols[2:])],
    }
    if color:
        encoding["color"] = alt.Color(f"{color}:Q", title=color, scale=alt.Scale(scheme="orangered"))
    chart = (
        _base(table, cols, title)
        .mark_bar()
        .encode(**encoding)
        .properties(width=WIDTH - 160, height=max(60, 22 * min(table.num_rows, 30)))
    )
    return _chart(chart)


def compared_bars(table: pa.Table, category: str, values: Sequence[str], title: str, *, x_title: str) -> alt.Chart:
    """Side-by-side horizontal bars of several measures per ``category`` (e.g. recorded vs repriced cost)."""
    alt = _alt()
    chart = (
        _base(table, [category, *values], title)
        .transform_fold(list(values), as_=["measure", "value"])
        .mark_bar()
        .encode(
            y=alt.Y(f"{category}:N", title=category),
            yOffset=alt.YOffset("measure:N", sort=list(values)),
            x=alt.X("value:Q", title=x_title),
            color=alt.Color("measure:N", sort=list(values)),
            tooltip=[f"{category}:N", "measure:N", alt.Tooltip("value:Q", format=",.4f")],
        )
        .properties(width=WIDTH - 160, height=max(80, 36 * min(table.num_rows, 30)))
    )
    return _chart(chart)


def run_timeline(
    events: pa.Table, *, selected_version: int | None = None, title: str = "Run timeline"
) -> alt.LayerChart:
    """One point per event of a run: version across, event type down, errors in red.

    ``events`` needs ``version, event_type, occurred_at, is_error`` (and may have ``title``);
    ``selected_version`` draws a rule at that version (the explorer's slider).
    """
    alt = _alt()
    cols = ["version", "event_type", "occurred_at", "is_error", *(["title"] if "title" in events.column_names else [])]
    base = _base(events, cols, None, top_level=False)
    points = base.mark_point(filled=True, size=70).encode(
        x=alt.X("version:Q", title="version", scale=alt.Scale(nice=False)),
        y=alt.Y("event_type:N", title=None),
        color=alt.Color(
            "is_error:N", title="error", scale=alt.Scale(domain=[False, True], range=["#4c78a8", "#e45756"])
        ),
        tooltip=[
            "version:Q",
            "event_type:N",
            alt.Tooltip("occurred_at:T", format="%Y-%m-%d %H:%M:%S"),
            "is_error:N",
            *(["title:N"] if "title" in cols else []),
        ],
    )
    layers = [points]
    if selected_version is not None:
        rule = (
            alt.Chart({"values": [{"version": selected_version}]})
            .mark_rule(color="#f58518", strokeWidth=2)
            .encode(x="version:Q")
        )
        layers.append(rule)
    chart = alt.layer(*layers, usermeta={"embedOptions": EMBED_OPTIONS}).properties(
        width=WIDTH, height=max(120, 24 * len(set(events.column("event_type").to_pylist()))), title=title
    )
    return _layered(chart)


def graph_chart(nodes: pa.Table, edges: pa.Table, *, title: str = "Causation graph") -> alt.LayerChart:
    """A layered graph: nodes at ``(x, y)`` with a ``label`` and a ``group`` colour, edges as segments.

    ``nodes``: ``id, x, y, label, group`` (plus any tooltip columns: ``tooltip`` if present);
    ``edges``: ``x, y, x2, y2``. Layout is the caller's (e.g. depth across, order down).
    """
    alt = _alt()
    node_cols = ["id", "x", "y", "label", "group", *(["tooltip"] if "tooltip" in nodes.column_names else [])]
    node_values = chart_values(nodes, node_cols)
    edge_values = chart_values(edges, ["x", "y", "x2", "y2"])
    axis_off = alt.Axis(labels=False, ticks=False, domain=False, grid=False, title=None)
    xs = [r["x"] for r in node_values] or [0]
    x_scale = alt.Scale(domain=[min(xs) - 0.3, max(xs) + 4])  # room for the labels right of the last lane
    lines = (
        alt.Chart({"values": edge_values})
        .mark_rule(color="#9a9a9a")
        .encode(
            x=alt.X("x:Q", axis=axis_off, scale=x_scale),
            y=alt.Y("y:Q", axis=axis_off, scale=alt.Scale(reverse=True)),
            x2="x2:Q",
            y2="y2:Q",
        )
    )
    points = (
        alt.Chart({"values": node_values})
        .mark_circle(size=160, opacity=1)
        .encode(
            x=alt.X("x:Q", axis=axis_off, scale=x_scale),
            y=alt.Y("y:Q", axis=axis_off, scale=alt.Scale(reverse=True)),
            color=alt.Color("group:N", title="stream"),
            tooltip=["label:N", "id:N", *(["tooltip:N"] if "tooltip" in node_cols else [])],
        )
    )
    labels = (
        alt.Chart({"values": node_values})
        .mark_text(align="left", dx=9, fontSize=10)
        .encode(x=alt.X("x:Q", scale=x_scale), y=alt.Y("y:Q", scale=alt.Scale(reverse=True)), text="label:N")
    )
    height = max(120, 18 * (max((r["y"] for r in node_values), default=0) + 1))
    chart = alt.layer(lines, points, labels, usermeta={"embedOptions": EMBED_OPTIONS}).properties(
        width=WIDTH, height=height, title=title
    )
    return _layered(chart)


def cross_stream_timeline(events: pa.Table, *, title: str = "Trace timeline") -> alt.Chart:
    """Events of several streams on one time axis: time across, stream down, colour by event type.

    ``events`` needs ``occurred_at, stream_id, event_type, is_error`` (``title`` is shown when present).
    """
    alt = _alt()
    cols = [
        "occurred_at",
        "stream_id",
        "event_type",
        "is_error",
        *(["title"] if "title" in events.column_names else []),
    ]
    chart = (
        _base(events, cols, title)
        .mark_point(filled=True, size=80)
        .encode(
            x=alt.X("occurred_at:T", title="time (UTC)", scale=alt.Scale(type="utc"), axis=alt.Axis(format="%H:%M:%S")),
            y=alt.Y("stream_id:N", title=None),
            color=alt.Color("event_type:N", title="event type"),
            shape=alt.Shape("is_error:N", title="error"),
            tooltip=[
                alt.Tooltip("occurred_at:T", format="%Y-%m-%d %H:%M:%S.%L"),
                *(_typed(events, c) for c in cols[1:]),
            ],
        )
        .properties(width=WIDTH, height=max(80, 30 * len(set(events.column("stream_id").to_pylist()))))
    )
    return _chart(chart)


def bisection_chart(probes: pa.Table, *, first_failing: int | None, title: str = "Bisection") -> alt.LayerChart:
    """The versions a bisection evaluated, in order (held: blue, failed: red), and the first failing version."""
    alt = _alt()
    points = (
        _base(probes, ["evaluation", "version", "holds"], None, top_level=False)
        .mark_line(color="#bbbbbb")
        .encode(
            x=alt.X("evaluation:O", title="rule evaluation"),
            y=alt.Y("version:Q", title="version"),
        )
    )
    dots = (
        _base(probes, ["evaluation", "version", "holds"], None, top_level=False)
        .mark_point(filled=True, size=90)
        .encode(
            x="evaluation:O",
            y="version:Q",
            color=alt.Color("holds:N", scale=alt.Scale(domain=[True, False], range=["#4c78a8", "#e45756"])),
            tooltip=["evaluation:O", "version:Q", "holds:N"],
        )
    )
    layers = [points, dots]
    if first_failing is not None:
        layers.append(
            alt.Chart({"values": [{"version": first_failing}]})
            .mark_rule(color="#e45756", strokeDash=[4, 3])
            .encode(y="version:Q")
        )
    chart = alt.layer(*layers, usermeta={"embedOptions": EMBED_OPTIONS}).properties(
        width=WIDTH - 200, height=HEIGHT, title=title
    )
    return _layered(chart)


# ---------------------------------------------------------------------- export


def _vlc() -> Any:
    try:
        return importlib.import_module("vl_convert")
    except ImportError as e:
        raise ReportDependencyError.missing("vl-convert-python", "chart export") from e


def chart_spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The chart's Vega-Lite spec as a plain dict (validated by altair)."""
    spec: dict[str, Any] = chart.to_dict()
    return spec


def chart_to_svg(chart: alt.TopLevelMixin) -> str:
    svg: str = _vlc().vegalite_to_svg(chart_spec(chart))
    return svg


def chart_to_png(chart: alt.TopLevelMixin, *, scale: float = 2.0) -> bytes:
    png: bytes = _vlc().vegalite_to_png(chart_spec(chart), scale=scale)
    return png


CHART_FORMATS: Final = ("png", "svg", "json")


def save_chart(chart: alt.TopLevelMixin, path: str | Path) -> Path:
    """Write ``chart`` as PNG, SVG or Vega-Lite JSON, chosen by the file's suffix."""
    out = Path(path)
    kind = out.suffix.lower().lstrip(".")
    if kind not in CHART_FORMATS:
        raise ChartDataError(
            f"{out}: cannot save a chart as {out.suffix or 'a file without suffix'}",
            hint=f"use one of: {', '.join('.' + f for f in CHART_FORMATS)}",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "png":
        with open_output(out, "wb") as f:  # a hard link to another file is replaced, not written through
            f.write(chart_to_png(chart))
        return out
    text = chart_to_svg(chart) if kind == "svg" else json.dumps(chart_spec(chart), indent=1, sort_keys=True)
    with open_output(out) as f:
        f.write(text)
    return out
