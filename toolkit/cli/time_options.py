"""Time options (``--since/--until``, ``--at``, ``--before``, ``--as-of``): ISO times, UTC.

Every command parses them with :func:`parse_time_option` (directly, or through the ``TIME`` type),
so a bad value fails the same way everywhere: a usage error naming the option and the value.
Every command taking ``--since`` and ``--until`` declares them with :func:`since_until_options`,
whose callback also refuses a range that holds nothing (``--since`` not before ``--until``);
``journal report`` puts its ``-p since=``/``-p until=`` through the same check, :func:`check_time_range`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

from toolkit.cli.options import OptionValueError

F = TypeVar("F", bound=Callable[..., Any])


SINCE_HELP = "Only events at or after TIME (ISO 8601 or a date; UTC)."
UNTIL_HELP = "Only events before TIME (ISO 8601 or a date; UTC; exclusive)."
_GIVEN = "toolkit.time_range"  # ctx.meta key: the --since/--until texts given, for the range check


def time_range_options(since_help: str = SINCE_HELP, until_help: str = UNTIL_HELP) -> Callable[[F], F]:
    """``--since/--until`` with these help texts, each parsed to a UTC datetime by
    :func:`parse_time_option`; ``--since`` not before ``--until`` is a usage error naming both."""

    def decorate(f: F) -> F:
        f = click.option("--until", metavar="TIME", callback=_time_range_value, help=until_help)(f)
        return click.option("--since", metavar="TIME", callback=_time_range_value, help=since_help)(f)

    return decorate


since_until_options = time_range_options()


class TimeRangeError(click.BadParameter):
    """``--since`` at or after ``--until``: the range ``[since, until)`` is empty; a usage error (exit 2).

    ``since_name``/``until_name`` say how each end was given: an option (``--since``) or a report
    parameter (``since``, given as ``-p since=TIME``)."""

    def __init__(
        self, since: str, until: str, reversed_: bool, since_name: str = "--since", until_name: str = "--until"
    ) -> None:
        def s(value: str | None = None) -> str:
            return _spelled(since_name, value)

        def u(value: str | None = None) -> str:
            return _spelled(until_name, value)

        super().__init__(
            f"{s(repr(since))} is not before {u(repr(until))}: the range holds no time",
            param_hint=f"{s()}/{u()}" if "--" in (since_name[:2], until_name[:2]) else "-p/--param",
        )
        self.hint = (
            f"{s()} is the start (inclusive), {u()} the end (exclusive): {s(until)} {u(since)}"
            if reversed_
            else f"{u()} is exclusive: one day is {s('2026-11-01')} {u('2026-11-02')}"
        )


def _spelled(name: str, value: str | None = None) -> str:
    """An end of the range as given: an option (``--since v``) or a parameter (``-p since=v``).

    >>> _spelled("--since", "2026-11-01"), _spelled("until", "2026-11-02"), _spelled("until")
    ('--since 2026-11-01', '-p until=2026-11-02', '-p until')
    """
    if name.startswith("--"):
        return name if value is None else f"{name} {value}"
    return f"-p {name}" if value is None else f"-p {name}={value}"


def check_time_range(since: tuple[str, str, dt.datetime] | None, until: tuple[str, str, dt.datetime] | None) -> None:
    """Each end as (name, text given, time): ``since`` not before ``until`` is a :class:`TimeRangeError`
    naming both as given; a missing end is an open range.

    >>> at = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    >>> check_time_range(("since", "2026-11-01", at), ("--until", "2026-11-01", at))
    Traceback (most recent call last):
    ...
    toolkit.cli.time_options.TimeRangeError: -p since='2026-11-01' is not before --until '2026-11-01': the range holds no time
    """
    if since is None or until is None or since[2] < until[2]:
        return
    raise TimeRangeError(since[1], until[1], since[2] > until[2], since[0], until[0])


def given_time_range(ctx: click.Context) -> dict[str, tuple[str, str, dt.datetime]]:
    """The ``--since``/``--until`` given to the running command, as :func:`check_time_range` takes them."""
    given: dict[str, tuple[str, str, dt.datetime]] = ctx.meta.get(_GIVEN, {})
    return dict(given)


def _time_range_value(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    """The callback of ``--since`` and ``--until``: the parsed time; the second of the two click
    processes (command-line order) compares them."""
    assert param.name in ("since", "until")
    at = parse_time_option(value, f"--{param.name}")
    if at is None:
        return None
    given: dict[str, tuple[str, str, dt.datetime]] = ctx.meta.setdefault(_GIVEN, {})
    given[param.name] = (f"--{param.name}", str(value), at)
    check_time_range(given.get("since"), given.get("until"))
    return at


def parse_time_option(value: str | None, name: str) -> dt.datetime | None:
    """``2026-11-01`` → midnight UTC; times need an offset (``Z``); a bad value is a usage error."""
    if value is None:
        return None
    from toolkit.errors import EventValidationError
    from toolkit.journal.prepare import parse_time

    text = value.strip()
    if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
        text += "T00:00:00Z"
    try:
        return parse_time(text, name, 0)
    except EventValidationError as e:
        no_zone = str(e.context.get("reason", "")).startswith("timestamp has no time zone")
        raise OptionValueError(
            name,
            value,
            "no time zone (add Z or an offset)" if no_zone else "not a date or an ISO 8601 time with an offset",
            f"a date is midnight UTC, a time needs an offset (Z or +02:00): {name} 2026-11-01 or {name} 2026-11-01T09:00:00Z",
        ) from e


def show_time(at: dt.datetime) -> str:
    """A parsed time as an option value: a date for midnight UTC, else ISO 8601 with ``Z``.

    >>> show_time(dt.datetime(2026, 11, 1, tzinfo=dt.UTC)), show_time(dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC))
    ('2026-11-01', '2026-11-01T09:00:00Z')
    """
    at = at.astimezone(dt.UTC)
    if at.time() == dt.time(0):
        return at.date().isoformat()
    return at.isoformat().replace("+00:00", "Z")


class TimeParam(click.ParamType):  # type: ignore[type-arg]
    """``type=TIME``: the option's value parsed by :func:`parse_time_option`."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dt.datetime | None:
        if isinstance(value, dt.datetime):
            return value
        option = max(param.opts, key=len) if param is not None and param.opts else "TIME"
        return parse_time_option(str(value), option)


TIME = TimeParam()
