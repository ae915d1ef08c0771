"""The catalog of named SQL queries in ``queries/<area>/<name>.sql`` (SQL as data).

Each file starts with a header::

    -- summary: Events, tokens and cost per stream.
    -- params: since TIMESTAMPTZ = 1970-01-01T00:00:00Z, limit BIGINT = 100
    -- returns: stream_id VARCHAR, events BIGINT, ...

Parameters are DuckDB ``$name`` placeholders; values from the command line (text) are
converted to the declared type here and always bound, never formatted into the SQL.
``by VARCHAR[] IN (model, day) = model`` declares the only values a parameter (or each item of a
list) may take; another is refused here, as the SQL would silently ignore it.

>>> q = parse_query("x/y", "-- summary: s\\n-- params: n BIGINT = 3\\n-- returns: n BIGINT\\nSELECT $n AS n")
>>> (q.name, [p.name for p in q.params], q.bind({}))
('x/y', ['n'], {'n': 3})
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

from toolkit.errors import QueryError, QueryNotFoundError, ToolkitError
from toolkit.journal.prepare import parse_time

_HEADER = re.compile(r"^--\s*(summary|params|returns):\s*(.*)$")
_PARAM = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s+([A-Z][A-Z0-9_(), \[\]]*?)(?:\s+IN\s*\(([^)]*)\))?\s*(?:=\s*(.*?))?\s*$")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None
    choices: tuple[str, ...] = ()  # header ``IN (a, b)``: the only values (of each item of a list)

    def convert(self, text: Any) -> Any:
        t = self.type.upper()
        if t.endswith("[]") and isinstance(text, str | list | tuple):  # each item as its type: BIGINT[] of
            item = Param(self.name, self.type[:-2], None, self.choices)  # "3,4" (or ["3", "4"]) is [3, 4]
            items = text.split(",") if isinstance(text, str) else text
            try:
                return [
                    item.convert(x.strip() if isinstance(x, str) else x)
                    for x in items
                    if not isinstance(x, str) or x.strip()
                ]
            except QueryError as e:  # the value given is the whole list
                several = f"; several: -p {self.name}={','.join(self.choices[:2])}" if self.choices else ""
                raise QueryError(e.message, hint=f"{e.hint}{several}", **{**e.context, "value": text}) from e
        if not isinstance(text, str):
            return text
        if self.choices and text not in self.choices:
            reason = f"{text!r} is not one of {', '.join(self.choices)}"
            raise self._refused(text, reason, f"pass -p {self.name}=<one of {'|'.join(self.choices)}>")
        try:
            if t.startswith("TIMESTAMP"):
                if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
                    text += "T00:00:00Z"
                return parse_time(text, self.name, 0)
            if t == "DATE":
                return dt.date.fromisoformat(text)
            if t in {"BIGINT", "INTEGER", "INT", "HUGEINT", "SMALLINT"}:
                return int(text)
            if t in {"DOUBLE", "FLOAT", "REAL"}:
                number = float(text)
                if not math.isfinite(number):
                    raise ValueError(f"{text} is not finite")
                return number
            if t.startswith("DECIMAL"):
                exact = Decimal(text)
                if not exact.is_finite():
                    raise ValueError(f"{text} is not finite")
                return exact
            if t == "BOOLEAN":
                if text.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(text)
                return text.lower() in {"true", "1", "yes"}
        except ToolkitError as e:  # parse_time's reason (no time zone, not a time) is the useful part
            reason = e.context.get("reason", e.message)
            raise self._refused(text, reason, f"a {self.type} with a time zone, e.g. 2026-10-01T00:00:00Z") from e
        except (ValueError, InvalidOperation) as e:
            reason = f"{text!r} is not a{' finite' if 'not finite' in str(e) else ''} {self.type}"
            raise self._refused(text, reason, f"pass -p {self.name}=<{self.type}>") from e
        except Exception as e:  # parse_time raises EventValidationError
            raise self._refused(text, str(e), f"pass -p {self.name}=<{self.type}>") from e
        return text

    def _refused(self, text: str, reason: str, hint: str) -> QueryError:
        """The error of a value this parameter refuses (its context names the parameter, the value
        and the reason: the CLI shows it as a -p usage error)."""
        return QueryError(f"parameter {self.name}: {reason}", hint=hint, param=self.name, value=text, reason=reason)


@dataclass(frozen=True)
class Query:
    name: str
    summary: str
    params: tuple[Param, ...]
    returns: str
    sql: str
    path: str | None = None

    def bind(self, values: dict[str, Any]) -> dict[str, Any]:
        known = {p.name for p in self.params}
        extra = sorted(set(values) - known)
        if extra:
            raise QueryError(
                f"query {self.name} has no parameter {extra[0]!r}",
                hint=f"its parameters: {', '.join(sorted(known)) or 'none'}",
            )
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in values:
                out[p.name] = p.convert(values[p.name])
            elif p.default is not None:
                out[p.name] = None if p.default.upper() == "NULL" else p.convert(p.default)
            else:
                raise QueryError(
                    f"query {self.name} needs parameter {p.name} ({p.type})",
                    hint=f"pass -p {p.name}=<{p.type}>",
                )
        return out


def parse_query(name: str, text: str, path: str | None = None) -> Query:
    header: dict[str, str] = {}
    for line in text.splitlines():
        m = _HEADER.match(line.strip())
        if m:
            header[m.group(1)] = m.group(2).strip()
        elif line.strip() and not line.strip().startswith("--"):
            break
    if "summary" not in header:
        raise QueryError(f"{path or name}: the header has no '-- summary:' line")
    params = []
    raw = header.get("params", "").strip()
    if raw and raw.lower() != "none":
        for part in _split_params(raw):
            m = _PARAM.match(part)
            if not m:
                raise QueryError(f"{path or name}: cannot read parameter {part!r} in the header")
            choices = tuple(c.strip() for c in (m.group(3) or "").split(",") if c.strip())
            params.append(Param(m.group(1), m.group(2).strip(), m.group(4), choices))
    return Query(name, header["summary"], tuple(params), header.get("returns", ""), text, path)


def _split_params(raw: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in raw:
        depth += ch in "(["
        depth -= ch in ")]"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur] if cur.strip() else parts


def queries_dir() -> Path:
    """The copy of ``queries/`` shipped inside the package, or (a source checkout, where the package
    has none) the checkout's. Not the other way round: installed, the checkout's place is
    ``site-packages/queries``, which another distribution may own."""
    shipped = Path(__file__).resolve().parents[1] / "queries"
    if shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parents[2] / "queries"


@cache
def catalog() -> dict[str, Query]:
    root = queries_dir()
    out = {}
    for path in sorted(root.rglob("*.sql")):
        name = path.relative_to(root).with_suffix("").as_posix()
        out[name] = parse_query(name, path.read_text(encoding="utf-8"), str(path))
    return out


def get_query(name: str) -> Query:
    name = name.removesuffix(".sql").removeprefix("queries/")
    found = catalog().get(name)
    if found is None:
        close = [n for n in catalog() if name.split("/")[-1] in n]
        raise QueryNotFoundError(
            f"no query {name!r} in the catalog",
            hint=("did you mean " + ", ".join(close[:3]) + "? " if close else "")
            + "list them with: journal sql --list",
        )
    return found
