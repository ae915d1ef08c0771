"""The reports ``journal report NAME`` writes, and the notebooks ``journal notebook NAME`` opens.

Each report names the parameters it takes (``-p name=value``; typed and converted like query
parameters) and the function that builds it from analysis results. Each notebook is a marimo
app under ``notebooks/`` that shows the same analysis interactively. This module never
imports marimo: ``journal notebook`` starts ``python -m marimo`` as a child process.

>>> sorted(REPORTS)[:1]
['causation']
>>> bind_report_params(REPORTS["overview"], {"top": "3"})["top"]
3
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from toolkit.engines.queries import Param
from toolkit.errors import QueryError, ReportDependencyError, ReportError
from toolkit.journal.store import Journal
from toolkit.reports.html import Report

_RANGE = (Param("since", "TIMESTAMPTZ", "NULL"), Param("until", "TIMESTAMPTZ", "NULL"))


@dataclass(frozen=True)
class ReportKind:
    name: str
    summary: str
    builder: str  # "module:function", imported when the report is built
    params: tuple[Param, ...]
    example: str

    def build(self, journal: Journal, values: Mapping[str, Any]) -> Report:
        module, _, func = self.builder.partition(":")
        fn: Callable[..., Report] = getattr(importlib.import_module(module), func)
        return fn(journal, **bind_report_params(self, values))


REPORTS: Final[dict[str, ReportKind]] = {
    "overview": ReportKind(
        "overview",
        "Events, runs, tokens and cost over time; by model, tool and agent; latency; costliest runs.",
        "toolkit.reports.report_overview:build_overview_report",
        (*_RANGE, Param("agent", "VARCHAR", "NULL"), Param("top", "BIGINT", "10")),
        "journal report overview --since 2026-10-01 -o overview.html",
    ),
    "run": ReportKind(
        "run",
        "One run: its timeline, every event with its explanation, the state after each step and what changed.",
        "toolkit.reports.report_run:build_run_report",
        (Param("stream", "VARCHAR", None), Param("max_events", "BIGINT", "500")),
        "journal report run -p stream=run-7-0000003 -o run.html",
    ),
    "causation": ReportKind(
        "causation",
        "An event's causation chain: ancestors up to the root input and descendants, across streams.",
        "toolkit.reports.report_causation:build_causation_report",
        (Param("event", "VARCHAR", None), Param("depth", "BIGINT", "50")),
        "journal report causation -p event=EVENT_ID -o chain.html",
    ),
    "regrade": ReportKind(
        "regrade",
        "Re-grade rules over all history: first failures over time, failing runs per day, the failing runs.",
        "toolkit.reports.report_regrade:build_regrade_report",
        (Param("rules", "VARCHAR[]", "NULL"), *_RANGE),
        "journal report regrade -p rules=budget,no_tool_failure_loop -o regrade.html",
    ),
    "compliance": ReportKind(
        "compliance",
        "Every action for one correlation id or subject in a date range, in order, with justification.",
        "toolkit.reports.report_compliance:build_compliance_report",
        (Param("correlation", "VARCHAR", "NULL"), Param("subject", "VARCHAR", "NULL"), *_RANGE),
        "journal report compliance -p subject=user-0001 -o compliance.html",
    ),
}


def bind_report_params(kind: ReportKind, values: Mapping[str, Any]) -> dict[str, Any]:
    """Typed values for the report's parameters; unknown or missing ones are errors naming the report."""
    known = {p.name: p for p in kind.params}
    usage = ", ".join(f"{p.name} {p.type}" + ("" if p.default is None else " (optional)") for p in kind.params)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ReportError(
            f"report {kind.name} has no parameter {unknown[0]!r}", hint=f"its parameters: {usage}; e.g. {kind.example}"
        )
    out: dict[str, Any] = {}
    for p in kind.params:
        raw = values.get(p.name)
        if raw is None or raw == "":
            if p.default is None:
                raise ReportError(
                    f"report {kind.name} needs parameter {p.name} ({p.type})", hint=f"e.g. {kind.example}"
                )
            raw = None if p.default.upper() == "NULL" else p.default
        try:
            out[p.name] = None if raw is None else p.convert(raw)
        except QueryError as e:
            raise ReportError(f"report {kind.name}: {e.message}", hint=f"its parameters: {usage}", **e.context) from e
    return out


def get_report_kind(name: str) -> ReportKind:
    kind = REPORTS.get(name)
    if kind is None:
        raise ReportError(f"no report named {name!r}", hint=f"known reports: {', '.join(sorted(REPORTS))}")
    return kind


def build_report(journal: Journal, name: str, values: Mapping[str, Any]) -> Report:
    """Build report ``name`` over ``journal`` with parameters given as text (``-p``) or typed values."""
    return get_report_kind(name).build(journal, values)


# ---------------------------------------------------------------------- notebooks

NOTEBOOKS: Final[dict[str, str]] = {
    "overview": "Fleet overview: events, runs, tokens and cost over time, by model, tool and agent.",
    "run_explorer": "Find a run among thousands and scrub through it version by version (time travel).",
    "causation": "Pick an event: its causation chain as a graph and a list, across streams; trace view.",
    "regrade": "Pick rules, re-grade all history, see first failures over time and drill into a run.",
    "compliance": "Pick a correlation id or subject and a range: the compliance report and its bundle.",
}


def notebook_journal(arg: str | None) -> Journal:
    """The journal a notebook works on: ``--journal`` on its command line, else ``$AGENT_JOURNAL``,
    else the demo journal of this checkout (``data/demo-journal``, built by ``make demo``)."""
    import os

    path = arg or os.environ.get("AGENT_JOURNAL") or str(Path(__file__).resolve().parents[2] / "data" / "demo-journal")
    return Journal.open(path)


def notebooks_dir() -> Path:
    """``notebooks/`` of a source checkout, or the copy shipped inside the package."""
    here = Path(__file__).resolve().parents[2] / "notebooks"
    return here if here.is_dir() else Path(__file__).resolve().parents[1] / "notebooks"


def notebook_path(name: str) -> Path:
    key = name.removesuffix(".py").replace("-", "_")
    if key not in NOTEBOOKS:
        raise ReportError(f"no notebook named {name!r}", hint=f"known notebooks: {', '.join(NOTEBOOKS)}")
    path = notebooks_dir() / f"{key}.py"
    if not path.is_file():
        raise ReportError(
            f"notebook file {path} is missing",
            hint="notebooks ship with the source checkout: run journal notebook from a clone of the repository",
        )
    return path


def notebook_argv(
    name: str,
    *,
    edit: bool = False,
    host: str = "127.0.0.1",
    port: int | None = None,
    headless: bool = False,
) -> list[str]:
    """The command that serves notebook ``name`` on ``host`` (marimo run, or marimo edit with ``edit``).

    The journal goes in the environment (:func:`notebook_env`), not on marimo's command line:
    marimo reads ``-- --journal a=b/j`` as the argument ``journal a`` and ``--journal 2026`` as a number.
    """
    path = notebook_path(name)
    if importlib.util.find_spec("marimo") is None:
        raise ReportDependencyError.missing("marimo", "journal notebook")
    argv = [sys.executable, "-m", "marimo", "edit" if edit else "run", str(path), "--host", host]
    if port is not None:
        argv += ["--port", str(port)]
    if headless:
        argv.append("--headless")
    return argv


def notebook_env(journal: str) -> dict[str, str]:
    """The environment of a notebook server: this one with ``$AGENT_JOURNAL`` set to ``journal``
    (made absolute: a notebook reads it whatever directory it runs in)."""
    import os

    from toolkit.journal.location import is_remote

    path = journal if is_remote(journal) else str(Path(journal).expanduser().absolute())
    return {**os.environ, "AGENT_JOURNAL": path}
