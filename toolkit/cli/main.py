"""``journal``: the command line. Thin: each command module calls one library function.

Commands load lazily, so ``journal --help`` imports no heavy library.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from toolkit.errors import ToolkitError

# name -> (module, one-line help); modules are imported only when the command runs
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("toolkit.cli.cmd_init", "Create an empty journal at PATH."),
    "import": ("toolkit.cli.cmd_import", "Import exported journals (AgentStore, eventsourcing, OTLP, JSONL, ...)."),
    "append": ("toolkit.cli.cmd_append", "Append events (JSONL on stdin) to the journal."),
    "streams": ("toolkit.cli.cmd_streams", "List streams with event count, first/last time, tokens, cost."),
    "stats": ("toolkit.cli.cmd_stats", "Summarise one stream: versions, times, tokens, cost, events by type."),
    "sql": ("toolkit.cli.cmd_sql", "Run ad-hoc SQL or a catalog query over the journal (read-only)."),
    "verify": ("toolkit.cli.cmd_verify", "Recompute hash chains; name the first broken event of each stream."),
    "compact": ("toolkit.cli.cmd_compact", "Merge small files into sorted files; optionally vacuum."),
    "export": ("toolkit.cli.cmd_export", "Export streams as files their importer reads back (agentstore, jsonl, ...)."),
    "demo": ("toolkit.cli.cmd_demo", "Write a synthetic fleet of agent runs and print a summary."),
    "chain": ("toolkit.cli.cmd_chain", "Walk the causation chain of an event: causes, effects, orphans, cycles."),
    "trace": ("toolkit.cli.cmd_trace", "Show the cross-stream timeline of one W3C trace."),
    "correlation": ("toolkit.cli.cmd_correlation", "List every stream and event of one request or session, in time order."),
    "checkpoint": ("toolkit.cli.cmd_checkpoint", "Export every stream's chain head to a file (optionally HMAC-signed)."),
    "purge": ("toolkit.cli.cmd_purge", "Apply retention: archive, then remove, events older than --before."),
    "redact": ("toolkit.cli.cmd_redact", "Erase one subject's payloads, keeping the event skeleton and a record."),
    "archive": ("toolkit.cli.cmd_archive", "Archive a stream to a file, append a tombstone, optionally delete it."),
    "export-compliance": ("toolkit.cli.cmd_export_compliance", "Write a verifiable compliance bundle (HTML, JSON, CSV, Parquet, manifest)."),
    "verify-export": ("toolkit.cli.cmd_verify_export", "Check a compliance bundle against its manifest and, with -j, the journal."),
    "replay": ("toolkit.cli.cmd_replay", "Show a stream's timeline, explained event by event."),
    "state": ("toolkit.cli.cmd_state", "The state of a stream at a version or a time; diffs between versions."),
    "snapshot": ("toolkit.cli.cmd_snapshot", "Store aggregate states every N versions (faster state_at)."),
    "project": ("toolkit.cli.cmd_project", "Catch projections (read models: runs, tool_calls, yours) up with the journal."),
    "rollup": ("toolkit.cli.cmd_rollup", "Roll up usage and cost by model/tool/stream/day/week/agent...; top runs; seed metrics."),
    "reprice": ("toolkit.cli.cmd_reprice", "Reprice all events from a price table; diff recorded vs repriced per day and model."),
    "regrade": ("toolkit.cli.cmd_regrade", "Re-grade history against invariant rules; write findings (exit 3 if any)."),
    "bisect": ("toolkit.cli.cmd_bisect", "Find the first event where a rule stops holding (bisection or linear scan)."),
    "report": ("toolkit.cli.cmd_report", "Write a self-contained HTML report (overview, run, ...): opens offline."),
    "notebook": ("toolkit.cli.cmd_notebook", "Open a marimo notebook (overview, run_explorer, ...) on localhost."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in sorted(COMMANDS)])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:  # Ctrl-C: the Hint of a writing command says what the journal holds now
            hint = interrupted_hint(ctx.invoked_subcommand)
            if hint:
                e.add_note(f"Hint: {hint}")
            raise


def interrupted_hint(name: str | None) -> str | None:
    """What a command interrupted by Ctrl-C left in the journal, and what to do (its module's
    ``INTERRUPTED``; commands that write nothing have none)."""
    entry = COMMANDS.get(name or "")
    module = sys.modules.get(entry[0]) if entry else None  # (imported: it was running)
    hint: str | None = getattr(module, "INTERRUPTED", None)
    return hint


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Every command takes -j/--journal PATH (or $AGENT_JOURNAL; default ./data/demo-journal).\n"
    "Exit codes: 0 ok, 1 error, 2 usage, 3 findings (e.g. verify found a broken chain), "
    "4 time limit (a query ran past --timeout).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(package_name="agent-journal-toolkit")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Analytics and forensics over the event journals AI agents leave behind.

    \b
    Example:
      journal demo                       # build the demo journal under data/
      journal streams --format csv
      journal sql "SELECT event_type, count(*) FROM events GROUP BY ALL"
    """
    ctx.obj = {"debug": debug}


def main(argv: list[str] | None = None) -> Any:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or bool(os.environ.get("JOURNAL_DEBUG"))
    try:
        return cli.main(args=argv, prog_name="journal", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.UsageError as e:  # one line and a Hint like any error, but exit 2 (usage)
        if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # bare `journal` (click >= 8.2): its help
            e.show()
            sys.exit(e.exit_code)
        click.echo(f"error: {e.format_message()}", err=True)
        click.echo(f"Hint: {getattr(e, 'hint', None) or usage_hint(e.ctx)}", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort as e:
        click.echo("Aborted.", err=True)
        for note in getattr(e.__cause__, "__notes__", ()):  # Ctrl-C in a writing command: the journal's state
            if note.startswith("Hint: "):
                click.echo(note, err=True)
        sys.exit(1)
    except ToolkitError as e:
        if debug:
            raise
        lines = str(e).splitlines()
        click.echo(f"error: {lines[0]}", err=True)
        for line in lines[1:]:
            click.echo(line, err=True)
        sys.exit(e.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as e:  # the system refused a file operation no library call translated: one line and a Hint
        if debug:
            raise
        from toolkit.errors import FileAccessError

        lines = str(FileAccessError.of(e)).splitlines()
        click.echo(f"error: {lines[0]}", err=True)
        for line in lines[1:]:
            click.echo(line, err=True)
        sys.exit(1)


def usage_hint(ctx: click.Context | None) -> str:
    """The usage line of the command that was misused, on one line."""
    if ctx is None:
        return "see journal --help"
    usage = " ".join(ctx.command.collect_usage_pieces(ctx))
    return f"usage: {ctx.command_path} {usage}   (more: {ctx.command_path} --help)"
