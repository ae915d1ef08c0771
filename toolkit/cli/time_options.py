"""``--since/--until`` (ISO times, UTC; a bare date is midnight UTC) for the commands of issue 7."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

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
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time with an offset, e.g. 2026-11-01T00:00:00Z", param_hint=name) from e
