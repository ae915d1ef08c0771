"""Invariant rules: what a rule is, how it is registered, bound to parameters and fingerprinted.

A rule says, event by event, whether something that must always be true of a journal holds.
Three ways to write one, all registered by name with a description and a severity:

- **SQL**: a file ``queries/invariants/<name>.sql`` (or any ``--rules FILE.sql``) over the
  ``events`` view, returning at least ``stream_id, version, holds`` (and optionally ``message``)
  per event. Its header is the catalog header plus ``-- severity:``, ``-- monotone:`` and
  ``-- scope:`` lines; parameters are DuckDB ``$name`` placeholders, always bound.
- **Polars**: ``@polars_rule(...)`` on ``fn(events, p) -> LazyFrame | Expr | (Expr, Expr)``. The
  events arrive as a LazyFrame ordered by ``position`` (so each stream is in version order; use
  ``.over("stream_id")`` for per-stream windows). An expression is the ``holds`` column (a pair
  adds ``message``); a LazyFrame must carry ``stream_id, version, holds`` (and maybe ``message``).
- **Python**: ``@python_rule(...)`` on ``fn(state, p) -> bool | str`` over the replayed aggregate
  state after each event; ``True`` holds, ``False`` or a message string does not.

A verdict of ``null`` means the rule says nothing about that event. A rule's fingerprint covers
its code and its bound parameters, so findings name exactly what judged them.

>>> r = polars_rule("no_errors", "No event is an error.", columns=("is_error",))(
...     lambda events, p: ~pl.col("is_error"))
>>> (r.name, r.kind, r.severity, r.monotone)
('no_errors', 'polars', 'error', False)
>>> r.fingerprint(r.bind({})) == r.fingerprint({})
True
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Final, Literal

import polars as pl

from toolkit.analysis.aggregates import code_of
from toolkit.engines.queries import Param, parse_query, queries_dir
from toolkit.errors import QueryError, RuleDefinitionError, RuleNotFoundError

RuleKind = Literal["sql", "polars", "python"]
SEVERITIES: Final = ("info", "warning", "error", "critical")
SCOPES: Final = ("stream", "global")
REQUIRED_COLUMNS: Final = ("stream_id", "version", "holds")
MAX_RULE_FILE_BYTES: Final = 1_000_000

PolarsRuleFn = Callable[[pl.LazyFrame, dict[str, Any]], "pl.LazyFrame | pl.Expr | tuple[pl.Expr, pl.Expr]"]
PythonRuleFn = Callable[[Any, dict[str, Any]], "bool | str"]
ParamCheck = Callable[[dict[str, Any]], "str | None"]


@dataclass(frozen=True)
class Rule:
    """One invariant, ready to evaluate: its code, parameters and metadata."""

    name: str
    kind: RuleKind
    description: str
    severity: str = "error"
    params: tuple[Param, ...] = ()
    monotone: bool = False  # once broken, stays broken (makes bisection valid)
    scope: str = "stream"  # "global": judged over the whole journal in time order
    origin: str = "builtin"
    source: str = ""  # the code the fingerprint covers
    sql: str | None = None
    polars: PolarsRuleFn | None = None
    python: PythonRuleFn | None = None
    columns: tuple[str, ...] = ()  # Polars rules: event columns they read
    event_types: tuple[str, ...] | None = None  # Polars rules: only these events reach the rule
    aggregate: Any = None  # Python rules: the aggregate replayed (None: the agent run)
    extra: Mapping[str, Any] = field(default_factory=dict)
    check: ParamCheck | None = None  # bound parameters -> what is wrong with them, or None

    def bind(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Parameters from ``-p name=value`` text (or Python values), typed, defaults filled."""
        known = {p.name for p in self.params}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RuleDefinitionError(
                f"rule {self.name} has no parameter {unknown[0]!r}",
                hint=f"its parameters: {', '.join(sorted(known)) or 'none'}",
                rule=self.name,
            )
        out: dict[str, Any] = {}
        for p in self.params:
            try:
                if p.name in values:
                    out[p.name] = p.convert(values[p.name])
                elif p.default is not None:
                    out[p.name] = None if p.default.upper() == "NULL" else p.convert(p.default)
                else:
                    raise RuleDefinitionError(
                        f"rule {self.name} needs parameter {p.name} ({p.type})",
                        hint=f"pass -p {p.name}=<{p.type}>",
                        rule=self.name,
                    )
            except QueryError as e:
                raise RuleDefinitionError(
                    f"rule {self.name}: {e.message}", hint=e.hint, **{**e.context, "rule": self.name}
                ) from e
        problem = self.check(out) if self.check is not None else None
        if problem:
            raise RuleDefinitionError(
                f"rule {self.name}: {problem}",
                hint="its parameters: " + ", ".join(f"{p.name} {p.type}" for p in self.params),
                rule=self.name,
            )
        return out

    def fingerprint(self, bound: Mapping[str, Any]) -> str:
        """sha256 over kind, name, code, what it reads, bound parameters and (Python rules) the
        aggregate's fingerprint. The code of a Polars or Python rule is its function and the
        whole file defining it (module constants and helpers there count); code it imports from
        elsewhere does not."""
        aggregate = ""
        if self.kind == "python":
            from toolkit.analysis.state_rules import rule_aggregate

            aggregate = rule_aggregate(self).fingerprint
        doc = json.dumps(
            {"kind": self.kind, "name": self.name, "scope": self.scope, "source": self.source, "aggregate": aggregate,
             "monotone": self.monotone, "columns": list(self.columns),
             "event_types": None if self.event_types is None else list(self.event_types),
             "params": {k: _param_text(v) for k, v in sorted(bound.items())}},
            sort_keys=True,
        )
        return hashlib.sha256(doc.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "severity": self.severity,
            "monotone": self.monotone,
            "scope": self.scope,
            "params": ", ".join(f"{p.name} {p.type}" + (f" = {p.default}" if p.default else "") for p in self.params),
            "description": self.description,
            "origin": self.origin,
        }


def _param_text(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return [str(x) for x in v]
    return None if v is None else str(v)


def params_from_spec(spec: str, where: str) -> tuple[Param, ...]:
    """Parameters written as in a query header: ``name TYPE [= default], ...``.

    >>> [(p.name, p.type, p.default) for p in params_from_spec("n BIGINT = 3, tools VARCHAR[] = NULL", "x")]
    [('n', 'BIGINT', '3'), ('tools', 'VARCHAR[]', 'NULL')]
    """
    if not spec.strip():
        return ()
    try:
        return parse_query(where, f"-- summary: -\n-- params: {spec}\nSELECT 1").params
    except QueryError as e:
        raise RuleDefinitionError(f"{where}: {e.message}", hint="write parameters as: name TYPE [= default], ...") from e


def _check_meta(name: str, severity: str, scope: str, where: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise RuleDefinitionError(f"{where}: rule name {name!r} must be snake_case letters, digits and _")
    if severity not in SEVERITIES:
        raise RuleDefinitionError(f"{where}: severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    if scope not in SCOPES:
        raise RuleDefinitionError(f"{where}: scope {scope!r} is not one of {', '.join(SCOPES)}")


@lru_cache(maxsize=64)
def decimal_param(value: float) -> Decimal:
    """A DOUBLE parameter as the decimal it was written as (617.89, not 617.8899999999999863...).

    >>> decimal_param(0.3), decimal_param(2.675)
    (Decimal('0.3'), Decimal('2.675'))
    """
    return Decimal(repr(float(value)))


def polars_rule(
    name: str,
    description: str,
    *,
    severity: str = "error",
    params: str = "",
    columns: Sequence[str] = (),
    event_types: Sequence[str] | None = None,
    monotone: bool = False,
    scope: str = "stream",
    check: ParamCheck | None = None,
) -> Callable[[PolarsRuleFn], Rule]:
    """Register a Polars rule (see the module docstring).

    ``columns`` are the event columns it reads; ``event_types``, when given, are the only events
    it sees (filtered in the scan, before ordering: much less to read and sort). ``check``, when
    given, is asked about the bound parameters and returns what is wrong with them (or None).
    """

    def wrap(fn: PolarsRuleFn) -> Rule:
        where = f"polars rule {name}"
        _check_meta(name, severity, scope, where)
        return Rule(
            name=name, kind="polars", description=description, severity=severity,
            params=params_from_spec(params, where), monotone=monotone, scope=scope,
            origin=inspect.getsourcefile(fn) or "builtin", source=code_of(fn), polars=fn,
            columns=tuple(columns), event_types=tuple(event_types) if event_types is not None else None,
            check=check,
        )

    return wrap


def python_rule(
    name: str,
    description: str,
    *,
    severity: str = "error",
    params: str = "",
    monotone: bool = False,
    scope: str = "stream",
    aggregate: Any = None,
    check: ParamCheck | None = None,
) -> Callable[[PythonRuleFn], Rule]:
    """Register a Python rule over replayed state: ``fn(state, p) -> True | False | "message"``."""

    def wrap(fn: PythonRuleFn) -> Rule:
        where = f"python rule {name}"
        _check_meta(name, severity, scope, where)
        if scope == "global" and aggregate is None:
            raise RuleDefinitionError(
                f"{where}: a global rule needs aggregate= (the reducer of the journal-wide state)",
                hint="pass an Aggregate whose state is folded over every event in time order",
            )
        return Rule(
            name=name, kind="python", description=description, severity=severity,
            params=params_from_spec(params, where), monotone=monotone, scope=scope,
            origin=inspect.getsourcefile(fn) or "builtin", source=code_of(fn), python=fn,
            aggregate=aggregate, check=check,
        )

    return wrap


_META = re.compile(r"^--\s*(severity|monotone|scope):\s*(.*?)\s*$")


def sql_rule_from_text(name: str, text: str, origin: str) -> Rule:
    """A SQL rule from a file's text (catalog header plus severity/monotone/scope lines)."""
    try:
        query = parse_query(name, text, origin)
    except QueryError as e:
        raise RuleDefinitionError(e.message, hint="start the file with '-- summary: what the rule checks'") from e
    meta: dict[str, str] = {}
    for line in text.splitlines():
        m = _META.match(line.strip())
        if m:
            meta[m.group(1)] = m.group(2).lower()
    monotone = meta.get("monotone", "false")
    if monotone not in {"true", "false"}:
        raise RuleDefinitionError(f"{origin}: '-- monotone: {monotone}' must be true or false")
    severity, scope = meta.get("severity", "error"), meta.get("scope", "stream")
    _check_meta(name, severity, scope, origin)
    body = text.strip().rstrip(";").strip()
    from toolkit.engines.duckdb_engine import check_one_select  # DuckDB loads only when a SQL rule does

    try:  # it runs wrapped in other SQL: a ")" and a ";" in its text must not add statements
        check_one_select(body)
    except QueryError as e:
        raise RuleDefinitionError(
            f"{origin}: {e.message}", hint="a SQL rule is one SELECT over the events view (it reads, never writes)"
        ) from e
    return Rule(
        name=name, kind="sql", description=query.summary, severity=severity, params=query.params,
        monotone=monotone == "true", scope=scope, origin=origin, source=text, sql=body,
    )


def invariants_dir() -> Path:
    return queries_dir() / "invariants"


@cache
def builtin_rules() -> dict[str, Rule]:
    """The built-in rules: SQL files in queries/invariants/ and toolkit.analysis.invariants."""
    from toolkit.analysis import invariants

    out: dict[str, Rule] = {}
    for path in sorted(invariants_dir().glob("*.sql")):
        out[path.stem] = sql_rule_from_text(path.stem, path.read_text(encoding="utf-8"), f"queries/invariants/{path.name}")
    for value in vars(invariants).values():
        if isinstance(value, Rule):
            out[value.name] = replace(value, origin="builtin")
    return dict(sorted(out.items()))


def load_rule_file(path: str | Path) -> list[Rule]:
    """Rules from a user file: ``.sql`` (one rule, named after the file) or ``.py`` (every Rule in it)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise RuleDefinitionError(f"{path}: no such rule file", hint="pass --rules FILE.py or --rules FILE.sql")
    if p.stat().st_size > MAX_RULE_FILE_BYTES:
        raise RuleDefinitionError(f"{path}: larger than 1 MB; not a rule file")
    if p.suffix == ".sql":
        return [sql_rule_from_text(p.stem, p.read_text(encoding="utf-8"), str(p))]
    if p.suffix != ".py":
        raise RuleDefinitionError(f"{path}: a rule file ends in .py or .sql", hint="pass --rules FILE.py or --rules FILE.sql")
    module_name = "toolkit_user_rules_" + hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, p)
    if spec is None or spec.loader is None:
        raise RuleDefinitionError(f"{path}: cannot load as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # lets worker processes unpickle the rule functions
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # a rule file calling sys.exit() must not end the run with 0
        raise RuleDefinitionError(
            f"{path}: loading the rules failed: {type(e).__name__}: {e}", hint="run the file with python to see the traceback"
        ) from e
    found = list({id(v): v for v in vars(module).values() if isinstance(v, Rule)}.values())  # one rule, two names: once
    names = [r.name for r in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # only one of them could be judged, and which one would depend on variable names
        raise RuleDefinitionError(
            f"{path}: defines rule {twice[0]!r} twice", hint="give each rule its own name in @polars_rule/@python_rule"
        )
    rules = [replace(v, origin=str(p)) for v in found]
    if not rules:
        raise RuleDefinitionError(
            f"{path}: defines no rule",
            hint="decorate a function with @polars_rule(...) or @python_rule(...) from toolkit.analysis.rules",
        )
    return rules


@dataclass
class RuleSet:
    """Built-in rules plus rules loaded from user files; later files override earlier names."""

    rules: dict[str, Rule]

    @classmethod
    def load(cls, rule_files: Sequence[str | Path] = ()) -> RuleSet:
        rules = dict(builtin_rules())
        for path in rule_files:
            for rule in load_rule_file(path):
                rules[rule.name] = rule
        return cls(rules)

    def get(self, name: str) -> Rule:
        rule = self.rules.get(name)
        if rule is None:
            raise RuleNotFoundError.named(name, list(self.rules))
        return rule

    def names(self) -> list[str]:
        return sorted(self.rules)


__all__ = [
    "REQUIRED_COLUMNS",
    "SEVERITIES",
    "Rule",
    "RuleSet",
    "builtin_rules",
    "load_rule_file",
    "params_from_spec",
    "polars_rule",
    "python_rule",
    "sql_rule_from_text",
]
