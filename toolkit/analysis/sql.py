"""``journal sql``: ad-hoc SQL, catalog queries and .sql files, always read-only and bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from toolkit.analysis.pricing import cost_session
from toolkit.engines.queries import Query, catalog, get_query, parse_query
from toolkit.errors import InvalidPathError, QueryError, QueryNotFoundError
from toolkit.journal.store import Journal


def resolve_query(text: str) -> Query | None:
    """A catalog name or a .sql file becomes a Query; anything else is ad-hoc SQL (None)."""
    stripped = text.strip()
    if stripped.endswith(".sql") and "\n" not in stripped:
        path = Path(stripped)
        if path.is_file():
            if path.stat().st_size > 1_000_000:
                raise InvalidPathError(f"{path}: larger than 1 MB; not a query file")
            return (
                parse_query(path.stem, path.read_text(encoding="utf-8"), str(path))
                if _has_header(path)
                else Query(path.stem, "", (), "", path.read_text(encoding="utf-8"), str(path))
            )
        if stripped.removesuffix(".sql").removeprefix("queries/") not in catalog():
            raise InvalidPathError(
                f"{stripped}: no such query file", hint="list catalog queries with: journal sql --list"
            )
    name = stripped.removesuffix(".sql").removeprefix("queries/")
    if " " not in name and "/" in name:
        return get_query(name)
    return None


def _has_header(path: Path) -> bool:
    return path.read_text(encoding="utf-8").lstrip().startswith("-- summary:")


def run_sql(
    journal: Journal, text: str, params: dict[str, Any] | None = None, *, time_limit_s: float | None = None
) -> pa.Table:
    """Run ad-hoc SQL, a catalog query or a .sql file; stopped after ``time_limit_s`` seconds with
    QueryTimeoutError (None: ``sql_timeout_s`` of journal.toml; 0: no limit)."""
    params = params or {}
    query = resolve_query(text)
    if time_limit_s is None:
        time_limit_s = journal.config.sql_timeout_s
    # the cost views (prices, priced_events, cost_events) are there for the costs/ and rollups/ queries
    session = cost_session(journal)
    try:
        with session.watched(time_limit_s):
            if query is None:
                names = session.parameters(text) if "$" in text else []
                missing = [n for n in names if n not in params]
                if missing:
                    raise QueryError(
                        f"the SQL uses ${missing[0]} but no value was given", hint=f"pass -p {missing[0]}=VALUE"
                    )
                return session.user_query(text, {k: v for k, v in params.items() if k in names})
            bound = query.bind(params) if query.params else _check_no_params(query, params)
            return session.user_query(query.sql, bound)
    finally:
        session.close()


def _check_no_params(query: Query, params: dict[str, Any]) -> dict[str, Any]:
    if params:
        raise QueryError(f"query {query.name} takes no parameters", hint="drop the -p options")
    return {}


def catalog_table(area: str | None = None) -> pa.Table:
    """The query catalog: name, summary, parameters (with defaults) and returned columns.

    ``area`` keeps the queries under ``queries/<area>/`` (e.g. ``costs``, ``rollups``).
    """
    queries = [q for q in catalog().values() if area is None or q.name.startswith(area.strip("/") + "/")]
    if area is not None and not queries:
        areas = sorted({n.split("/")[0] for n in catalog()})
        raise QueryNotFoundError(f"no queries under {area!r}", hint=f"areas: {', '.join(areas)}")
    rows = [
        {
            "name": q.name,
            "summary": q.summary,
            "params": ", ".join(
                f"{p.name} {p.type}"
                + (f" IN ({', '.join(p.choices)})" if p.choices else "")
                + (f" = {p.default}" if p.default is not None else "")
                for p in q.params
            ),
            "returns": q.returns,
        }
        for q in queries
    ]
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [("name", pa.string()), ("summary", pa.string()), ("params", pa.string()), ("returns", pa.string())]
        ),
    )
