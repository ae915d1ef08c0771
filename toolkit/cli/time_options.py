"""Time options (``--since/--until``, ``--at``, ``--before``, ``--as-of``): ISO times, UTC.

Every command parses them with :func:`parse_time_option` (directly, or through the ``TIME`` type),
so a bad value fails the same way everywhere: a usage error naming the option and the value.
Every command taking ``--since`` and ``--until`` declares them with :func:`since_until_options`,
whose callback also refuses a range that holds nothing (``--since`` not before ``--until``).
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
    """``--since`` at or after ``--until``: the range ``[since, until)`` is empty; a usage error (exit 2)."""

    def __init__(self, since: str, until: str, reversed_: bool) -> None:
        super().__init__(
            f"--since {since!r} is not before --until {until!r}: the range holds no time",
            param_hint="--since/--until",
        )
        self.hint = (
            f"--since is the start (inclusive), --until the end (exclusive): --since {until} --until {since}"
            if reversed_
            else "--until is exclusive: one day is --since 2026-11-01 --until 2026-11-02"
        )


def _time_range_value(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    """The callback of ``--since`` and ``--until``: the parsed time; the second of the two click
    processes (command-line order) compares them."""
    assert param.name in ("since", "until")
    at = parse_time_option(value, f"--{param.name}")
    if at is None:
        return None
    given: dict[str, tuple[str, dt.datetime]] = ctx.meta.setdefault(_GIVEN, {})
    given[param.name] = (str(value), at)
    if len(given) == 2 and given["since"][1] >= given["until"][1]:
        raise TimeRangeError(given["since"][0], given["until"][0], given["since"][1] > given["until"][1])
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
