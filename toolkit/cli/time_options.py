"""Time options (``--since/--until``, ``--at``, ``--before``, ``--as-of``): ISO times, UTC.

Every command parses them with :func:`parse_time_option` (directly, or through the ``TIME`` type),
so a bad value fails the same way everywhere: a usage error naming the option and the value.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

from toolkit.cli.options import OptionValueError

F = TypeVar("F", bound=Callable[..., Any])


def since_until_options(f: F) -> F:
    f = click.option("--until", default=None, metavar="TIME", help="Only events before TIME (ISO 8601, UTC; exclusive).")(f)
    return click.option("--since", default=None, metavar="TIME", help="Only events at or after TIME (ISO 8601, UTC).")(f)


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


class TimeParam(click.ParamType):  # type: ignore[type-arg]
    """``type=TIME``: the option's value parsed by :func:`parse_time_option`."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dt.datetime | None:
        if isinstance(value, dt.datetime):
            return value
        option = max(param.opts, key=len) if param is not None and param.opts else "TIME"
        return parse_time_option(str(value), option)


TIME = TimeParam()
