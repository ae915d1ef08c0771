from __future__ import annotations

import json
import sys

import click

from toolkit.cli.options import OptionValueError, journal_option, open_journal


@click.command("export")
@journal_option
@click.argument("streams", nargs=-1, required=True)
@click.option(
    "--to",
    "fmt",
    required=True,
    metavar="FORMAT",
    help="agentstore (a data dir: sessions/, events/, snapshots/), jsonl (canonical JSON lines) or evennia-archive.",
    callback=lambda ctx, param, value: format_value(value),
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Directory to write into (must not exist or be empty, unless --force).",
)
@click.option("--force", is_flag=True, help="Write into a non-empty directory, replacing files of the same name.")
def command(journal_path: str, streams: tuple[str, ...], fmt: str, output: str, force: bool) -> None:
    """Export whole streams in a format its importer reads back to the same events.

    agentstore keeps stream, event types, payloads, times (to the microsecond), tokens, cost,
    model, tool and duration (whole milliseconds); jsonl keeps every column the journal accepts
    on input, event ids included. Prints what was written as JSON on stdout.

    \b
    Examples:
      journal export support-triage-0001 --to agentstore -o ./agentstore-out
      journal export run-1 run-2 --to jsonl -o ./jsonl-out
      journal import ./agentstore-out        # reads it back
    """
    from toolkit.ingest.export import export_streams

    report = export_streams(open_journal(journal_path), list(streams), fmt, output, overwrite=force)
    click.echo(f"exported {report.events} events of {len(report.streams)} stream(s) to {report.output}", err=True)
    sys.stdout.write(json.dumps(report.summary()) + "\n")


def format_value(value: str) -> str:
    """``--to``: a format no exporter writes is a usage error."""
    from toolkit.ingest.export import EXPORTERS, FORMATS

    known = sorted(set(EXPORTERS) | set(FORMATS))
    if value not in known:
        raise OptionValueError("--to", value, "not a format journal export writes", f"formats: {', '.join(known)}")
    return value
