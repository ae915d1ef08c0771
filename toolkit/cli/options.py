"""Options that mean the same thing in every command."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

ENV_JOURNAL = "AGENT_JOURNAL"
DEMO_JOURNAL = Path("data") / "demo-journal"


class OptionValueError(click.BadParameter):
    """A malformed option value: a usage error (exit 2), shown by ``journal`` as one line naming the
    option and the value, then a ``Hint:`` line."""

    def __init__(self, option: str, value: str, reason: str, hint: str) -> None:
        super().__init__(f"{value!r}: {reason}", param_hint=option)
        self.hint = hint


def default_journal() -> str:
    return os.environ.get(ENV_JOURNAL) or str(DEMO_JOURNAL)


def journal_option(f: F) -> F:
    return click.option(
        "-j",
        "--journal",
        "journal_path",
        default=default_journal,
        show_default=f"${ENV_JOURNAL} or {DEMO_JOURNAL}",
        type=click.Path(file_okay=False, path_type=str),
        help="Journal directory.",
    )(f)


def format_option(f: F) -> F:
    f = click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, writable=True, path_type=str),
        help="Write to FILE instead of stdout.",
    )(f)
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "csv", "json", "parquet"]),
        default="table",
        show_default=True,
        help="Output format (parquet needs -o).",
    )(f)


def param_option(f: F) -> F:
    return click.option(
        "-p",
        "--param",
        "params",
        multiple=True,
        metavar="NAME=VALUE",
        help="Query parameter, bound as $NAME (repeatable).",
    )(f)


def timeout_option(f: F) -> F:
    return click.option(
        "--timeout",
        "timeout_s",
        type=click.FloatRange(min=0, max=10**9),
        metavar="SECONDS",
        help="Stop each query of the SQL given (or of a SQL rule) that runs longer than this "
        "(0: no limit; default: sql_timeout_s in journal.toml, 0 unless set).",
    )(f)


def stream_type_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--stream-type`` of the events that name none (append, import): one the journal refuses is a
    usage error naming the option, not a fault of every event it would have been given to."""
    if value is None:
        return None
    from toolkit.errors import ToolkitError
    from toolkit.journal.prepare import check_stream_type

    try:
        check_stream_type(value)
    except ToolkitError as e:
        raise OptionValueError("--stream-type", value, str(e.context["reason"]), e.hint or "") from e
    return value


def parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise OptionValueError(
                "-p/--param", pair, "not NAME=VALUE", "give each parameter as -p NAME=VALUE, e.g. -p limit=10"
            )
        out[name.strip()] = value
    return out


@contextmanager
def params_checked(params: Mapping[str, str]) -> Iterator[None]:
    """A ``-p`` value its parameter's type refuses (found when the query, report or rule binds it) is
    a usage error like a ``-p`` without ``=``: the library's error names the parameter and the value."""
    from toolkit.errors import ToolkitError

    try:
        yield
    except ToolkitError as e:
        name, value = e.context.get("param"), e.context.get("value")
        given = [k for k, v in params.items() if v == value and name in (k, k.rpartition(".")[2])]
        if not given or not isinstance(value, str):
            raise
        raise OptionValueError("-p/--param", f"{given[0]}={value}", str(e.context.get("reason")), e.hint or "") from e


def engine_options(f: Any) -> Any:
    """``--engine local|dask`` and ``--scheduler ADDRESS`` (regrade, rollup)."""
    f = click.option(
        "--scheduler",
        metavar="ADDRESS",
        help="dask: an existing Dask scheduler (tcp://host:8786); default: a 2-worker LocalCluster.",
    )(f)
    return click.option(
        "--engine",
        type=click.Choice(["local", "dask"]),
        default="local",
        show_default=True,
        help="Where to compute: this process, or a Dask cluster (whole streams per task; same results).",
    )(f)


def cluster_spec(scheduler: str | None) -> Any:
    from toolkit.engines.dask_engine import ClusterSpec

    return ClusterSpec(scheduler=scheduler)


#: the options naming where a command writes (a file or a directory): never inside the journal
OUTPUT_PARAMS = ("output", "charts_dir")


def open_journal(path: str) -> Any:
    """The journal at ``path``; the running command's ``-o/--output`` (and ``--charts``), if any,
    must lie outside it."""
    from toolkit.journal import Journal

    journal = Journal.open(path)
    ctx = click.get_current_context(silent=True)
    if ctx is None or journal.remote:
        return journal
    from toolkit.journal.location import refuse_inside

    for name in OUTPUT_PARAMS:
        output = ctx.params.get(name)
        if output:
            refuse_inside(str(output), Path(str(journal.path)))
    return journal
