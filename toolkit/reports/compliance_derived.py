"""A compliance bundle's derived content, derived again from its events and compared.

Next to the events, the export writes content it computes from them, with these functions:
each event's title and summary (``compliance.explain_events``), the cause → effect links
(``compliance.link_causes``, causes outside the bundle as the journal held them), one summary
per run (``run_summaries``: the replayed state only for a run exported whole) and
``report.html`` (``compliance_html.render_report``, from the manifest and those three tables).
:func:`derived_differences` runs the same functions on the bundle's events and names every
place where the bundle says something else: a title, summary, link, run state or page edited
after the export, its digests recomputed in an unsigned manifest.

The page is compared byte for byte with a new rendering. The rendering is deterministic: its
only time, the export time, and the other facts it shows beyond the tables (journal path, Delta
version, chain heads, toolkit version) are read from the manifest, which the export wrote from
the same values; the same bundle renders to the same bytes. The rendering uses the recomputed
tables, not the bundle's, so an edited table is named once (at the table), not again at the page.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

import polars as pl

from toolkit.analysis.run_summaries import summarise_exported_runs
from toolkit.reports.compliance import MANIFEST, explain_events, link_causes
from toolkit.reports.compliance_html import render_report

#: a value shown in a difference is cut to this many characters
SHOWN_CHARS = 160


class Difference(NamedTuple):
    """One place where the bundle does not say what its events derive to (a verify-export problem)."""

    where: str  # the file, and the row's key in it
    check: str
    expected: str
    found: str


@dataclass(frozen=True)
class Derived:
    """What the export derives from a bundle's events: the tables as it writes them."""

    events: pl.DataFrame  # the events with their title and summary
    causation: pl.DataFrame
    runs: pl.DataFrame


def derive_again(events: pl.DataFrame, head_versions: Mapping[str, int], outside: pl.DataFrame) -> Derived:
    """The derived tables of ``events`` (a bundle's events, canonical columns, in its order):
    ``head_versions`` are the streams' heads at export (the manifest's chain heads), ``outside``
    the causes outside the bundle (``compliance.outside_causes`` rows)."""
    return Derived(explain_events(events), link_causes(events, outside), summarise_exported_runs(events, head_versions))


def derived_differences(
    derived: Derived,
    manifest: dict[str, Any],
    found: Mapping[str, pl.DataFrame | str | None],
) -> list[Difference]:
    """Every difference between ``derived`` (and the page rendered from it and ``manifest``) and
    what the bundle holds: ``found`` maps ``events``, ``causation``, ``runs`` and ``report.html``
    to the bundle's table or page, or to None where that part is not to be compared (already
    reported as changed or missing)."""
    out: list[Difference] = []
    streams = list(dict.fromkeys(derived.events.get_column("stream_id").to_list()))
    if manifest.get("streams") != streams:
        out.append(Difference(MANIFEST, "derived_streams", _shown(streams), _shown(manifest.get("streams"))))
    events, causation, runs, page = (found.get(k) for k in ("events", "causation", "runs", "report.html"))
    if isinstance(events, pl.DataFrame):
        out += _event_differences(derived.events, events)
    if isinstance(causation, pl.DataFrame):
        out += _keyed_differences("causation.parquet", "derived_link", derived.causation, causation, "effect_event_id", _effect_label)
    if isinstance(runs, pl.DataFrame):
        older = widen_older_runs(runs)
        out += _keyed_differences("runs.parquet", "derived_run", derived.runs, older, "stream_id", _run_label)
    if isinstance(page, str):
        try:
            want = render_report(manifest, derived.events, derived.causation, derived.runs)
        except (KeyError, TypeError, ValueError, AttributeError) as e:  # the manifest is input: a field edited away
            out.append(Difference("report.html", "derived_report", "a page rendered from manifest.json", f"cannot render: {e!r}"[:200]))
        else:
            if page != want:
                where = f"differs from line {first_differing_line(page, want)}"
                out.append(Difference("report.html", "derived_report", "the page rendered again from the events", where))
    return out


def widen_older_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """A bundle's run summaries with a run's ``cost_usd`` as the export writes it now, Decimal(38, 9).

    Bundles exported before a run's cost could pass 1e9 USD wrote it as Decimal(18, 9), an
    event's type; widening keeps every value, which is then compared as it is. Any other type
    stays a difference.

    >>> old = pl.DataFrame({"cost_usd": ["0.5"]}).cast({"cost_usd": pl.Decimal(18, 9)})
    >>> widen_older_runs(old).schema["cost_usd"], widen_older_runs(old).item()
    (Decimal(precision=38, scale=9), Decimal('0.500000000'))
    """
    if runs.schema.get("cost_usd") == pl.Decimal(18, 9):
        return runs.with_columns(pl.col("cost_usd").cast(pl.Decimal(38, 9)))
    return runs


def _effect_label(row: dict[str, Any]) -> str:
    return f"{row.get('effect_stream_id')}:v{row.get('effect_version')}"


def _run_label(row: dict[str, Any]) -> str:
    return str(row.get("stream_id"))


def first_differing_line(found: str, want: str) -> int:
    """The first line (from 1) where ``found`` and ``want`` differ; past the shorter one when one
    is the other cut short.

    >>> first_differing_line("a\\nb\\nc\\n", "a\\nB\\nc\\n"), first_differing_line("a\\n", "a\\nb\\n")
    (2, 2)
    """
    a, b = found.splitlines(), want.splitlines()
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False), 1) if x != y), min(len(a), len(b)) + 1)


def _event_differences(derived: pl.DataFrame, found: pl.DataFrame) -> list[Difference]:
    """The title and summary of each event (``derived`` holds the bundle's events, in its order)."""
    out = _column_differences("events.parquet", derived, found)
    keys = derived.select("stream_id", "version").rows()
    for c in ("title", "summary"):
        if c in found.columns and found.schema[c] == derived.schema[c]:
            want, got = derived.get_column(c), found.get_column(c)
            for i in (~want.eq_missing(got)).arg_true().to_list():
                sid, v = keys[i]
                out.append(Difference(f"events.parquet {sid}:v{v}", f"derived_{c}", _shown(want[i]), _shown(got[i])))
    return out


def _keyed_differences(
    name: str,
    check: str,
    derived: pl.DataFrame,
    found: pl.DataFrame,
    key: str,
    label: Callable[[dict[str, Any]], str],
) -> list[Difference]:
    """Rows matched by ``key``: a row missing, one too many, and each column that differs."""
    out = _column_differences(name, derived, found)
    if key not in found.columns:
        return out
    columns = [c for c in derived.columns if c in found.columns and found.schema[c] == derived.schema[c]]
    want: dict[Hashable, dict[str, Any]] = {r[key]: r for r in derived.to_dicts()}
    seen: set[Hashable] = set()
    for r in found.to_dicts():
        k = r[key]
        w = want.get(k)
        if w is None or k in seen:
            out.append(Difference(f"{name} {label(r)}", check, "no such row", "an extra row"))
            continue
        seen.add(k)
        out += [
            Difference(f"{name} {label(w)}", check, f"{c} = {_shown(w[c])}", f"{c} = {_shown(r[c])}")
            for c in columns
            if w[c] != r[c]
        ]
    out += [Difference(f"{name} {label(w)}", check, "a row", "absent") for k, w in want.items() if k not in seen]
    return out


def _column_differences(name: str, derived: pl.DataFrame, found: pl.DataFrame) -> list[Difference]:
    """Columns missing, added, or of another type than the export writes."""
    out = []
    for c, t in derived.schema.items():
        if c not in found.columns:
            out.append(Difference(name, "columns", f"column {c}", "absent"))
        elif found.schema[c] != t:
            out.append(Difference(name, "columns", f"column {c}: {t}", f"column {c}: {found.schema[c]}"))
    out += [Difference(name, "columns", "only the columns the export writes", f"column {c}") for c in found.columns if c not in derived.schema]
    return out


def _shown(value: Any) -> str:
    """A value as a difference shows it (text quoted, JSON for lists), cut to :data:`SHOWN_CHARS`.

    >>> _shown(None), _shown("a"), _shown([{"name": "x", "n": 1}]), _shown(Decimal("0.50")), _shown(3)
    ('null', '"a"', '[{"name": "x", "n": 1}]', '0.50', '3')
    """
    if isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, dt.datetime | dt.date):
        text = value.isoformat()
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


__all__ = ["Derived", "Difference", "derive_again", "derived_differences", "first_differing_line", "widen_older_runs"]
