"""``--key-file/--key-env``: the HMAC key of checkpoints and bundles (never on the command line)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def key_options(f: F) -> F:
    f = click.option("--key-env", metavar="NAME", help="HMAC key from environment variable NAME.")(f)
    return click.option(
        "--key-file", metavar="FILE", type=click.Path(dir_okay=False), help="HMAC key: the bytes of FILE."
    )(f)
