"""One error base for the toolkit; every message says what, where, and what to do next.

Leaves also subclass the builtin exception callers already catch, so
``except FileNotFoundError`` keeps working around ``JournalNotFoundError``.

>>> err = EventValidationError.field("occurred_at", 3, "timestamp has no time zone")
>>> print(err)
event 3: field 'occurred_at': timestamp has no time zone
Hint: give times in ISO 8601 with an offset, e.g. 2026-11-01T12:00:00Z
>>> isinstance(err, ValueError)
True
"""

from __future__ import annotations

import errno
from typing import Any


class ToolkitError(Exception):
    """Base of every error the toolkit raises on purpose.

    ``context`` carries structured fields (stream, version, file, line, ...) so callers and
    tests can inspect what happened without parsing the message.
    """

    hint: str | None = None
    exit_code: int = 1  # of the ``journal`` command when it ends in this error

    def __init__(self, message: str, *, hint: str | None = None, **context: Any) -> None:
        self.message = message
        if hint is not None:
            self.hint = hint
        self.context = context
        super().__init__(str(self))

    def __str__(self) -> str:
        return self.message + (f"\nHint: {self.hint}" if self.hint else "")


class JournalNotFoundError(ToolkitError, FileNotFoundError):
    """The path is not a journal (no journal.toml)."""

    @classmethod
    def at(cls, path: str) -> JournalNotFoundError:
        return cls(
            f"no journal at {path}",
            hint=f"create one with: journal init {path}   (or pass -j/--journal PATH)",
            path=path,
        )


class JournalExistsError(ToolkitError, FileExistsError):
    """``init`` on a path that already holds a journal or other files."""


class JournalConfigError(ToolkitError, ValueError):
    """journal.toml is malformed."""


class JournalVersionError(ToolkitError):
    """The journal was written by a newer major schema version than this toolkit reads."""


class InvalidPathError(ToolkitError, ValueError):
    """A user-supplied path is unusable (outside the journal, not a directory, ...)."""


class FileAccessError(ToolkitError, OSError):
    """The system refused a file operation (no permission, a file where a folder should be, a full disk).

    >>> print(FileAccessError.of(PermissionError(13, "Permission denied", "/srv/j/.write.lock")))
    /srv/j/.write.lock: Permission denied
    Hint: check the permissions of that path (ls -ld); a journal you may only read still answers streams, sql, \
verify and import --dry-run, but writing to it (import, append, compact, ...) needs write access to its folder
    """

    @classmethod
    def of(cls, e: OSError, hint: str | None = None) -> FileAccessError:
        where = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else e.filename
        reason = e.strerror or str(e)
        return cls(
            f"{where}: {reason}" if where is not None else reason,
            hint=hint or _OS_HINTS.get(e.errno or 0, "check that path; --debug shows where it failed"),
            path=e.filename,
            errno=e.errno,
        )


_OS_HINTS = {
    **dict.fromkeys(
        (errno.EACCES, errno.EPERM, errno.EROFS),
        "check the permissions of that path (ls -ld); a journal you may only read still answers streams, sql, "
        "verify and import --dry-run, but writing to it (import, append, compact, ...) needs write access to its folder",
    ),
    **dict.fromkeys(
        (errno.ENOTDIR, errno.EISDIR, errno.EEXIST),
        "a file is where a folder should be, or a folder where a file should be: choose another path",
    ),
    **dict.fromkeys((errno.ENOSPC, errno.EDQUOT), "free some space on that disk, then run the command again"),
}


class DataFileError(ToolkitError, OSError):
    """A data file the journal lists is missing, or cannot be read as Parquet (damaged, cut short).

    ``context`` names the file (``path``) and what the reader said (``reason``).

    >>> print(DataFileError.unreadable("/j/events/d=1/part-0.parquet", FileNotFoundError(2, "No such file")))
    /j/events/d=1/part-0.parquet: this data file of the journal is missing
    Hint: journal verify names the streams it breaks; restore that file from a backup
    """

    hint = "journal verify names the streams it breaks; restore that file from a backup"

    @classmethod
    def unreadable(cls, path: str, e: BaseException | str) -> DataFileError:
        missing = isinstance(e, FileNotFoundError)
        reason = str(e).split(f"'{path}': ", 1)[-1]  # pyarrow's may name it again
        what = "is missing" if missing else f"is damaged or cut short: {reason}"
        return cls(f"{path}: this data file of the journal {what}", path=path, reason=str(e))


class EventValidationError(ToolkitError, ValueError):
    """An event to append is malformed; nothing of its commit was written."""

    @classmethod
    def field(cls, field: str, index: int, reason: str, hint: str | None = None) -> EventValidationError:
        return cls(
            f"event {index}: field {field!r}: {reason}",
            hint=hint or _FIELD_HINTS.get(field),
            field=field,
            index=index,
            reason=reason,
        )


_FIELD_HINTS = {
    "occurred_at": "give times in ISO 8601 with an offset, e.g. 2026-11-01T12:00:00Z",
    "data": "data must be a JSON object, array, string, number, boolean or null",
    "metadata": "metadata must be a JSON object",
    "stream_type": "use letters, digits, '_', '-' and '.', e.g. agent_run",
    "stream_id": "every event needs stream_id, a non-empty string naming its stream (one run or session)",
    "event_type": "every event needs event_type, a non-empty string such as user_message or tool_called",
    "version": "leave version out to let the journal number events, or give the stream's next version",
    "cost_usd": "give cost_usd as a number of US dollars, below 10^9 per event",
    "duration_ms": "give duration_ms as a finite number of milliseconds",
    "is_error": "give is_error as true or false, or leave it out",
    **dict.fromkeys(
        ("tokens_in", "tokens_out", "tokens_cache_read", "tokens_cache_write", "tokens_reasoning"),
        "token counts are whole numbers from 0 to 10^12 per event",
    ),
}


class ConcurrencyError(ToolkitError):
    """Optimistic concurrency: the stream is not at the expected version; nothing was written."""

    @classmethod
    def mismatch(cls, stream_id: str, expected: int, actual: int) -> ConcurrencyError:
        return cls(
            f"stream {stream_id!r}: expected version {expected}, but it is at version {actual}",
            hint="re-read the stream (journal stats STREAM) and retry with the current version",
            stream_id=stream_id,
            expected=expected,
            actual=actual,
        )


class ExportError(ToolkitError, ValueError):
    """An export cannot be written as asked (unknown format, occupied directory, unsuitable stream)."""


class StreamNotFoundError(ToolkitError, LookupError):
    """No events for that stream id."""


class DuplicateEventError(ToolkitError, ValueError):
    """The same event_id arrived again with different content."""


class QueryError(ToolkitError, ValueError):
    """A SQL query failed, was refused by the sandbox, or got wrong parameters."""


class QueryTimeoutError(QueryError, TimeoutError):
    """A query ran past its time limit (``--timeout``, ``sql_timeout_s`` in journal.toml) and was stopped.

    ``journal`` exits 4 on it (0 ok, 1 error, 2 usage, 3 findings).
    """

    exit_code = 4

    @classmethod
    def after(cls, seconds: float) -> QueryTimeoutError:
        return cls(
            f"the query ran past its time limit of {seconds:g} s and was stopped",
            hint="give it longer (--timeout SECONDS, 0 for no limit; the default is sql_timeout_s in journal.toml), "
            "or make it do less: add a WHERE filter or a LIMIT (a join of events with itself grows with the square "
            "of the journal)",
            seconds=seconds,
        )


class QueryNotFoundError(QueryError, LookupError):
    """No such query in the catalog."""


class LockTimeoutError(ToolkitError, TimeoutError):
    """Another writer held the journal's write lock for too long."""


class LockReentryError(ToolkitError, RuntimeError):
    """A thread asked for a journal's write lock while it already holds it (it would wait for itself)."""


class VersionNotFoundError(ToolkitError, LookupError):
    """A stream version (or time) outside the stream: beyond its last version, or negative."""


class VersionPurgedError(VersionNotFoundError):
    """A stream version whose events a purge removed (``journal purge`` or ``journal archive --delete``).

    ``context`` names the purge (``purge_id``, ``purged_at``) and the versions that remain
    (``first_kept_version`` .. ``last_version``).
    """


class ReplayError(ToolkitError, ValueError):
    """A replay, projection or counterfactual cannot run as asked (bad edit, bad plugin, bad aggregate)."""


class PluginError(ToolkitError, ImportError):
    """A --plugins file or module cannot be loaded, or registers something invalid."""


class PriceTableError(ToolkitError, ValueError):
    """A price table is malformed: a missing required price, overlapping effective ranges, a bad value.

    ``rows`` names the offending rows as ``file:line``.
    """

    @classmethod
    def rows(cls, reason: str, rows: list[str], hint: str | None = None) -> PriceTableError:
        return cls(
            f"price table: {reason}: {', '.join(rows)}",
            hint=hint or "fix the rows named (see data/prices/README.md for the columns), or pass --prices FILE",
            rows=rows,
            reason=reason,
        )


class RuleNotFoundError(ToolkitError, LookupError):
    """No invariant rule of that name is registered (built-in or from --rules files)."""

    @classmethod
    def named(cls, name: str, known: list[str]) -> RuleNotFoundError:
        return cls(
            f"no rule {name!r}; known rules: {', '.join(sorted(known))}",
            hint="list them with: journal regrade --list   (add your own with --rules FILE.py|FILE.sql)",
            rule=name,
        )


class RuleDefinitionError(ToolkitError, ValueError):
    """A rule is malformed: a file that defines none, a SQL rule missing required columns, bad parameters."""


class RuleEvaluationError(ToolkitError, RuntimeError):
    """A rule (or the reducer it judges) raised while judging an event: bisection cannot go on.

    ``journal regrade`` records such a rule as a finding of kind ``error`` instead and goes on.
    """


class EventNotFoundError(ToolkitError, LookupError):
    """No event with that id (or trace id, correlation id) in the journal."""

    @classmethod
    def near(cls, wanted: str, near: list[str], what: str = "event") -> EventNotFoundError:
        hint = f"did you mean {', '.join(near)}?" if near else f"no {what} id is close to it"
        listing = f"journal sql 'SELECT DISTINCT {what}_id FROM events LIMIT 10'"  # noqa: S608 (a hint, not SQL run)
        return cls(
            f"no {what} {wanted!r} in the journal",
            hint=f"{hint} (list some with: {listing})",
            wanted=wanted,
            near=near,
        )


class RetentionError(ToolkitError, ValueError):
    """A purge, archive or redaction was refused (too recent, nothing to do, unsafe target)."""


class CheckpointError(ToolkitError, ValueError):
    """A checkpoint file cannot be read, or its HMAC does not match the key."""


class BundleError(ToolkitError, ValueError):
    """A compliance bundle cannot be written or read as asked."""


class ChartDataError(ToolkitError, ValueError):
    """A chart was given data it cannot draw (too many rows: aggregate first; a missing column)."""


class ReportDependencyError(ToolkitError, ImportError):
    """An optional dependency of reports or notebooks (altair, vl-convert, marimo) is not installed."""

    @classmethod
    def missing(cls, package: str, feature: str) -> ReportDependencyError:
        return cls(
            f"{feature} needs the optional package {package!r}, which is not installed",
            hint="install the notebooks extra: pip install -e '.[notebooks]'",
            package=package,
        )


class ReportError(ToolkitError, ValueError):
    """A report or notebook cannot be built as asked (unknown name, missing or bad parameter)."""


class StorageError(ToolkitError, OSError):
    """Object storage holding a journal (``s3://bucket/prefix``) cannot be used; the URL is named."""


class StorageUnreachableError(StorageError, ConnectionError):
    """The S3 endpoint does not answer (wrong AWS_ENDPOINT_URL, network down)."""


class StorageCredentialsError(StorageError, PermissionError):
    """The S3 endpoint refused the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)."""


class StorageBucketNotFoundError(StorageError, FileNotFoundError):
    """The bucket of an ``s3://`` journal URL does not exist."""


class DistributedError(ToolkitError, RuntimeError):
    """A distributed (Dask) run failed as a whole; nothing of it was recorded as complete."""
