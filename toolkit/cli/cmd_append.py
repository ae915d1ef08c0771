from __future__ import annotations

import json
import sys
from typing import Any, TextIO

import click

from toolkit.cli.options import journal_option, open_journal, stream_type_value

#: the Hint after Ctrl-C (journal prints it under "Aborted."): what the journal holds, what to do
INTERRUPTED = (
    "all lines are one commit, so the journal holds all of them or none (journal stats STREAM shows "
    "which); append again only if they are missing: lines with an event_id already there are skipped, but "
    "lines without one would be added a second time"
)


@click.command("append")
@journal_option
@click.option(
    "--expected-version",
    type=int,
    help="Stream version before the append (0 = new stream); all lines must share one stream_id.",
)
@click.option("--stream-type", help="Stream type for events that give none.", callback=stream_type_value)
@click.option(
    "-i",
    "--input",
    "input_path",
    type=click.File("r", encoding="utf-8", errors="surrogateescape"),  # a bad byte is named with its line
    default="-",
    help="JSONL file (default: stdin).",
)
def command(
    journal_path: str, expected_version: int | None, stream_type: str | None, input_path: TextIO
) -> None:
    """Append events, one JSON object per line, with canonical field names.

    Each line needs at least stream_id, event_type and data; occurred_at defaults to now;
    version, position, event_id, recorded_at, hashes and day are filled in. All lines are one
    commit: one bad line and nothing is written.

    \b
    Example:
      echo '{"stream_id":"run-1","event_type":"user_message","data":{"text":"hi"}}' \\
        | journal append -j ./j --expected-version 0
    """
    from toolkit.errors import EventValidationError, ToolkitError

    raw_name = getattr(input_path, "name", "<stdin>")
    name = "stdin" if raw_name in ("<stdin>", "-") else str(raw_name)
    events: list[tuple[int, Any]] = []
    for lineno, line in enumerate(input_path, start=1):
        if lineno == 1:
            line = line.removeprefix("\ufeff")  # a byte order mark (Windows tools write one)
        if not line.strip():
            continue
        if not line.isascii():
            try:
                line.encode("utf-8")
            except UnicodeEncodeError as e:  # an undecodable byte, kept as a lone surrogate
                raise EventValidationError(
                    f"{name}:{lineno}: not UTF-8 text: byte 0x{ord(line[e.start]) & 0xFF:02x} at column {e.start + 1}",
                    hint="journal append reads UTF-8 JSON lines; convert the input (iconv -t UTF-8); nothing was written",
                    line=lineno,
                ) from None
        try:
            event = json.loads(line)
        except json.JSONDecodeError as e:
            raise EventValidationError(
                f"{name}:{lineno}: not JSON: {e.msg} (column {e.colno})",
                hint="each line must be one JSON object; nothing was written",
                line=lineno,
            ) from None
        if not isinstance(event, dict):
            raise EventValidationError(
                f"{name}:{lineno}: not a JSON object but a JSON {_json_kind(event)}",
                hint="each line must be one JSON object; nothing was written",
                line=lineno,
            )
        events.append((lineno, event))
    journal = open_journal(journal_path)
    rows = [e for _, e in events]
    try:
        if expected_version is not None:
            if not rows:
                raise click.UsageError("--expected-version needs at least one line (the stream's events)")
            sid = rows[0].get("stream_id")
            for i, row in enumerate(rows):
                got = row.get("stream_id")
                if not isinstance(got, str) or not got:  # (a missing one was appended to stream 'None')
                    reason = "required, a non-empty string" + ("" if got is None else f" (got {got!r})")
                    raise EventValidationError.field("stream_id", i, reason)
                if got != sid:
                    raise click.UsageError(
                        f"{name}:{events[i][0]}: stream_id {got!r} is not {sid!r} of line {events[0][0]}: "
                        "--expected-version needs every line to have the same stream_id"
                    )
            result = journal.append(str(sid), rows, expected_version=expected_version, stream_type=stream_type)
        else:
            result = journal.append_batch(rows, stream_type=stream_type)
    except ToolkitError as e:  # validation, duplicate ids, given versions: the event's index is its line
        index = e.context.get("index")
        if isinstance(index, int) and 0 <= index < len(events):
            message = e.message.removeprefix(f"event {index}: ")
            first = e.context.get("first_index")  # the earlier event with the same id
            if isinstance(first, int) and 0 <= first < len(events):
                message = message.replace(f"event {first} of this batch", f"line {events[first][0]}")
            e.message = f"{name}:{events[index][0]}: {message}"
            e.hint = e.hint or "correct that line and run the append again; nothing was written"
        raise
    summary = {
        "read": len(events),
        "appended": result.appended,
        "skipped_duplicates": result.skipped,
        "skipped_with_values_the_journal_lacks": result.lacking,
        "rejected": 0,
        "streams": result.streams,
        "first_position": result.first_position,
        "last_position": result.last_position,
        "delta_version": result.delta_version,
        "heads": result.heads,
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    if (note := result.lacking_note()) is not None:
        sys.stderr.write(f"note: {note}\n")


def _json_kind(value: Any) -> str:
    kinds = ((bool, "boolean"), (int, "number"), (float, "number"), (str, "string"), (list, "array"))
    return "null" if value is None else next((k for t, k in kinds if isinstance(value, t)), type(value).__name__)
