"""``journal.toml``: what a journal directory is and how it is laid out.

>>> cfg = JournalConfig()
>>> JournalConfig.from_toml(cfg.to_toml()) == cfg
True
"""

from __future__ import annotations

import os
import stat
import tempfile
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from toolkit.errors import JournalConfigError, JournalVersionError
from toolkit.journal.schema import PARTITION_COLUMNS, SCHEMA_MAJOR, SCHEMA_VERSION

CONFIG_FILE = "journal.toml"


@dataclass(frozen=True)
class JournalConfig:
    schema_version: str = SCHEMA_VERSION
    partition_by: tuple[str, ...] = PARTITION_COLUMNS
    # vacuum never deletes files younger than this (readers may still use them)
    vacuum_retain_hours: int = 168
    # compaction: rows per row group (the prune unit of a one-stream read)
    row_group_rows: int = 8_192
    lock_timeout_s: float = 60.0
    # retention (issue 7): journal purge refuses events younger than this unless forced
    retention_min_days: int = 183
    # the time limit of each query of journal sql and SQL rule of journal regrade (--timeout); 0: none
    sql_timeout_s: float = 0.0

    def to_toml(self) -> str:
        lines = ["# agent-journal-toolkit journal; events live in the Delta table events/", "[journal]"]
        for f in fields(self):
            v = asdict(self)[f.name]
            if isinstance(v, tuple):
                text = "[" + ", ".join(f'"{x}"' for x in v) + "]"
            elif isinstance(v, str):
                text = f'"{v}"'
            else:
                text = str(v)
            lines.append(f"{f.name} = {text}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, text: str, origin: str = CONFIG_FILE) -> JournalConfig:
        try:
            raw = tomllib.loads(text).get("journal", {})
            known = {f.name for f in fields(cls)}
            values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
            cfg = cls(**values)
            major = int(str(cfg.schema_version).split(".")[0])
        except (tomllib.TOMLDecodeError, TypeError, ValueError) as e:
            raise JournalConfigError(
                f"{origin}: cannot read the journal configuration: {e}",
                hint="restore journal.toml from a backup, or compare it with a new one from journal init",
                path=origin,
            ) from e
        timeout = cfg.sql_timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 <= timeout < float("inf"):
            raise JournalConfigError(
                f"{origin}: sql_timeout_s = {timeout!r}: not a number of seconds (0 or more)",
                hint="give the time limit of a query in seconds, e.g. sql_timeout_s = 60 (0: no limit)",
                path=origin,
                field="sql_timeout_s",
            )
        if major > SCHEMA_MAJOR:
            raise JournalVersionError(
                f"{origin}: journal schema {cfg.schema_version} is newer than this toolkit reads ({SCHEMA_VERSION})",
                hint="upgrade agent-journal-toolkit to read this journal",
                schema_version=cfg.schema_version,
            )
        return cfg


def write_atomic(path: Path, text: str) -> None:
    """Write temp-then-rename with fsync, so a crash leaves the old or the new file.

    The file gets the mode a plain write would give it (mkstemp's is 0600: a journal.toml that
    only its writer could read made the journal unreadable to everyone else the folder lets in).
    """
    mode = _plain_mode(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _plain_mode(path: Path) -> int:
    """The mode of the file ``path`` replaces, else what ``open`` creates: 0666 less the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        pass
    try:  # Linux: read, not set (os.umask would change it for the other threads a moment)
        status = Path("/proc/self/status").read_text()
        mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask
