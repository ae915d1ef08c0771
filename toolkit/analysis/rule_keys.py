"""Rule keys: the shared pass's frame saved beside the journal, so a re-grade reads integers.

The shared pass (``shared_pass``) reads the journal's strings on every run: decoding ``data``,
``event_id`` and ``causation_id`` alone costs more than half of it on a 10M-event journal, and
it hashes the ids again each time. The first whole-journal re-grade of a Delta version saves
what the rules judge on, once, as ``JOURNAL/rule-keys/<id>/`` (Parquet, LZ4):

- ``keys.parquet``, one row per event in (stream, version) order: dense stream codes, version,
  position, event type and tool name codes, the numbers the rules add up, an exact per-journal
  code of each (stream, tool_call_id), a hash of each tool call's arguments, a code of each user
  message's text, and the journal-wide facts about ids resolved on the strings (how often the
  event's id is used, the position of the event its causation_id names); then the strings
  messages quote, in ``strings.parquet`` in the journal's order (event ids as two 64-bit halves
  when they are UUIDs, the rest as text), read column by column only when a failing event needs
  them;
- ``streams.parquet`` (stream id and type by code), ``texts.parquet`` (user messages' distinct
  texts, which the confirmation patterns run over), ``manifest.json`` (format, the events
  table's id and the Delta version saved, the code vocabularies).

The rules themselves run on every re-grade, with their parameters; the keys hold no verdict.
Keys are used only when the manifest names the journal's current Delta version of the same
table, or an earlier one followed only by compactions and vacuums (``_events_kept``): any other
commit (append, purge, redaction) makes them stale, and the next whole-journal re-grade saves them again (a journal pinned to an older version reads its events,
and saves nothing). Purge, archive --delete and redact delete them (they hold copies of ids and
user texts). A remote (s3://) journal neither saves nor reads them.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Final

import polars as pl
import pyarrow.parquet as pq

from toolkit.analysis.shared_pass import (
    BUILTIN_COLUMNS,
    Frame,
    Strings,
    by_call_groups,
    integrity_base,
    load_frame,
    nano_sum_type,
)
from toolkit.journal.retention import read_removals
from toolkit.journal.rewrite import RULE_KEYS_DIR, drop_rule_keys
from toolkit.journal.store import Journal

KEYS_DIR: Final = RULE_KEYS_DIR
FORMAT: Final = 1
_CURRENT: Final = "CURRENT"
_STALE_S: Final = 3600  # a save in progress this long ago was killed
# an import leaving at least this many events in the journal saves the keys (``prepare``): the
# first re-grade after it reads them (smaller journals re-grade fast from their events)
KEYS_AT_IMPORT: Final = 1_000_000
# rows of a row group of strings.parquet: a message needing a few strings reads their groups only
GROUP_ROWS: Final = 1 << 16
# read on every re-grade; the other columns of keys.parquet are read when a message quotes them
EAGER: Final = (
    "orig", "sid", "version", "position", "et", "tool", "is_error", "cost", "tokens", "duration_ms", "call",
    "call_rank", "has_key", "args", "cause", "uses", "has_cause",
)
# commits after the saved version looked at (each log entry read) before the keys count as stale
_LOG_COMMITS: Final = 10_000
_UUID: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def keys_root(journal: Journal) -> Path | None:
    """``JOURNAL/rule-keys``, or None for a journal that keeps no keys (remote)."""
    if journal.remote or not isinstance(journal.path, Path):
        return None
    return journal.path / KEYS_DIR


def _latest(journal: Journal) -> bool:
    """Whether the journal reads its latest Delta version (a pinned one may read an older one)."""
    pinned = journal.pinned_version
    return pinned is None or (isinstance(journal.path, Path) and pinned == Journal.open(journal.path).delta_version)


def _stamp(journal: Journal) -> dict[str, Any]:
    return {"format": FORMAT, "table_id": journal.delta_table().metadata().id, "delta_version": journal.delta_version}


# ---------------------------------------------------------------------- saving


def _codes(cat: pl.Series) -> tuple[pl.Series, list[str]]:
    """Dense codes of a Categorical column (nulls stay null) and the names they stand for, in the
    narrowest unsigned type that holds them all (event types and tool names are free text: a code
    past the type's range would be null, and the rules would not see that event's type)."""
    names = cat.drop_nulls().unique().cast(pl.String).sort()
    dtype = pl.UInt8() if len(names) <= 1 << 8 else pl.UInt16() if len(names) <= 1 << 16 else pl.UInt32()
    glob = pl.Series(names, dtype=pl.Categorical).to_physical()
    codes = cat.to_physical().replace_strict(glob, pl.int_range(0, len(names), eager=True), default=None, return_dtype=dtype)
    return codes, names.to_list()


def _uuid_halves(ids: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """The two 64-bit halves (big-endian) of canonical (lowercase, hyphenated) UUID strings; null
    for any other id. (Evaluated in one lazy select: the hex text is decoded once for both.)"""
    raw = pl.when(ids.str.contains(_UUID)).then(ids.str.replace_all("-", "", literal=True).str.decode("hex", strict=False))
    hi, lo = (raw.bin.slice(start, 8).bin.reinterpret(dtype=pl.UInt64, endianness="big") for start in (0, 8))
    return hi, lo


_HEX4: list[pl.Series] = []


def _uuid_text(hi: pl.Series, lo: pl.Series) -> pl.Series:
    """The canonical UUID strings of ``_uuid_halves`` (null where they are null)."""
    if not _HEX4:
        _HEX4.append(pl.Series([f"{i:04x}" for i in range(1 << 16)]))
    hexes = _HEX4[0]
    chunks = [
        hexes.gather((half // (1 << shift) % (1 << 16)).cast(pl.UInt32))
        for half in (hi, lo) for shift in (48, 32, 16, 0)
    ]
    groups = [chunks[0] + chunks[1], chunks[2], chunks[3], chunks[4], chunks[5] + chunks[6] + chunks[7]]
    return pl.select(pl.concat_str([pl.lit(g) for g in groups], separator="-")).to_series()


def _write(
    table: pl.DataFrame, path: Path, delta: Sequence[str] = (), plain: Sequence[str] = (), group_rows: int | None = None
) -> None:
    """One Parquet file, LZ4, of one row group (read back as one chunk: no rechunk before the
    rules) or of ``group_rows`` (a few rows read without the rest); sorted integer columns
    delta-encoded, ``plain`` ones (random bits) as they are, the others dictionary-encoded where
    that pays."""
    encodings = {c: "DELTA_BINARY_PACKED" for c in delta} | {c: "PLAIN" for c in plain}
    dictionary = [c for c in table.columns if c not in encodings]
    pq.write_table(
        table.to_arrow(compat_level=pl.CompatLevel.newest()), path, compression="lz4",
        row_group_size=max(1, group_rows or table.height), use_dictionary=dictionary, column_encoding=encodings or None,
    )


def save_frame(journal: Journal, frame: Frame) -> Path | None:
    """Save ``frame`` (every built-in's columns, the whole journal, read by ``load_frame``) as the
    journal's keys; returns their folder (None: a journal that keeps none)."""
    root = keys_root(journal)
    if root is None or type(frame.o) is not Strings or not _latest(journal):  # read from the journal's latest version
        return None
    stamp = _stamp(journal)
    s, o = frame.s, frame.o
    n = s.height
    orig = s.get_column("orig")
    base = integrity_base(frame)
    calls = by_call_groups(frame)
    call = pl.repeat(None, n, dtype=pl.UInt32, eager=True).scatter(
        calls.get_column("srow"), (calls.get_column("start").cum_sum() - 1).cast(pl.UInt32)
    )
    # each call's rows in order, calls one after another: the grouping the rules would sort for
    call_rank = pl.repeat(None, n, dtype=pl.UInt32, eager=True).scatter(
        calls.get_column("srow"), pl.int_range(0, calls.height, dtype=pl.UInt32, eager=True)
    )
    et, et_names = _codes(s.get_column("et"))
    tool, tool_names = _codes(s.get_column("tool_name"))
    sid = s.select((pl.col("first").cum_sum() - 1).cast(pl.UInt32)).to_series()
    first_orig = orig.filter(s.get_column("first"))
    streams = pl.DataFrame({"stream_id": o.take("stream_id", first_orig), "stream_type": o.take("stream_type", first_orig)})
    user = s.get_column("et") == "user_message"
    said = o.take("data", orig.filter(user))
    texts = said.unique(maintain_order=True).drop_nulls().alias("text")
    text_code = (
        said.to_frame("text").join(texts.to_frame().with_row_index("code"), on="text", how="left", maintain_order="left")
        .get_column("code")
    )
    text = pl.repeat(None, n, dtype=pl.UInt32, eager=True).scatter(user.arg_true(), text_code)
    keys = pl.DataFrame(
        {
            "orig": orig,
            "sid": sid,
            "version": s.get_column("version"),
            "position": s.get_column("position"),
            "et": et,
            "tool": tool,
            "is_error": s.get_column("is_error"),
            "cost": s.get_column("cost").cast(pl.Int64),
            "tokens": s.get_column("tokens"),
            "duration_ms": s.get_column("duration_ms"),
            "call": call,
            "call_rank": call_rank,
            "has_key": s.get_column("has_key"),
            "args": s.get_column("args"),
            "cause": base.get_column("cause_position"),
            "uses": base.get_column("uses"),
            "has_cause": base.get_column("has_cause"),
            "text": text,
        }
    ).with_columns(
        # zeros and single uses as nulls: a few bits each instead of eight bytes
        cost=pl.when(pl.col("cost") != 0).then("cost"),
        tokens=pl.when(pl.col("tokens") != 0).then("tokens"),
        uses=pl.when(pl.col("uses") > 1).then("uses"),
    )
    root.mkdir(exist_ok=True)
    name = uuid.uuid4().hex
    tmp = root / f".{name}.tmp"
    tmp.mkdir()
    try:
        # Arrow's writer releases the GIL: the keys are written while the strings are prepared
        with ThreadPoolExecutor(2, "journal-keys") as pool:
            writes = [
                pool.submit(_write, keys, tmp / "keys.parquet", ("orig", "sid", "version", "position", "cause"), ("args",)),
                pool.submit(_write, streams, tmp / "streams.parquet"),
                pool.submit(_write, texts.to_frame(), tmp / "texts.parquet"),
            ]
            strings = _strings_frame(o.frame, keys)
            writes.append(pool.submit(
                _write, strings, tmp / "strings.parquet", ("occurred_at",), ("event_uuid_hi", "event_uuid_lo"), GROUP_ROWS
            ))
            for done in writes:
                done.result()
        manifest = {**stamp, "events": n, "event_types": et_names, "tool_names": tool_names}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        os.replace(tmp, root / name)
        pointer = root / f".{_CURRENT}.{name}.tmp"
        pointer.write_text(name + "\n")
        os.replace(pointer, root / _CURRENT)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if isinstance(journal.path, Path) and Journal.open(journal.path).delta_version != stamp["delta_version"]:
        # a commit (a purge, a redaction) came since the check above: its deletion of the keys
        # may have run before these were in place, and they copy what it removed
        shutil.rmtree(root / name, ignore_errors=True)
        return None
    _remove_others(root, name)
    return root / name


def _strings_frame(o: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    """What messages quote, in the journal's order (``o``, read by ``load_frame``; ``keys`` sorted)."""
    n = keys.height
    by_orig = pl.repeat(0, n, dtype=pl.UInt32, eager=True).scatter(
        keys.get_column("orig"), pl.int_range(0, n, dtype=pl.UInt32, eager=True)
    )
    # a message quotes the causation id only of a cause naming no event or a later one
    quoted = keys.select(pl.col("cause").is_null() | (pl.col("cause") >= pl.col("position"))).to_series().gather(by_orig)
    hi, lo = _uuid_halves(pl.col("event_id"))
    return o.lazy().select(
        "occurred_at", "tool_call_id", "idempotency_key", "model",
        event_uuid_hi=hi, event_uuid_lo=lo,
        event_id=pl.when(hi.is_null()).then("event_id"),
        causation_id=pl.when(quoted).then("causation_id"),
    ).collect()


def _remove_others(root: Path, current: str) -> None:
    """Earlier keys (a re-grade reading them holds its files open), and what a killed save left;
    not the folder another process may be writing right now (younger than ``_STALE_S``), nor the
    one ``CURRENT`` names now (another save may have replaced ours meanwhile)."""
    now = time.time()
    try:
        named = (root / _CURRENT).read_text().strip()
    except OSError:
        named = current
    for other in root.iterdir():
        if other.name in (current, named, _CURRENT):
            continue
        try:
            if other.name.startswith(".") and now - other.stat().st_mtime < _STALE_S:
                continue
            shutil.rmtree(other) if other.is_dir() else other.unlink()
        except OSError:
            continue  # gone already, or removed by the other process


def prepare(journal: Journal) -> Path | None:
    """Save the journal's rule keys now unless fresh ones are there (``journal import`` does,
    so that the first re-grade after it reads them); returns their folder (None: a journal that
    keeps none)."""
    if keys_root(journal) is None:
        return None
    pinned = journal.pinned()  # one version read, saved and stamped
    folder = saved_folder(pinned)
    if folder is not None:
        return folder
    return save_frame(pinned, load_frame(pinned, list(BUILTIN_COLUMNS)))


# ---------------------------------------------------------------------- reading


def saved_folder(journal: Journal) -> Path | None:
    """The folder of keys saved at the journal's current Delta version, or None."""
    root = keys_root(journal)
    if root is None:
        return None
    try:
        folder = root / (root / _CURRENT).read_text().strip()
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    stamp = _stamp(journal)
    saved = manifest.get("delta_version")
    if any(manifest.get(k) != v for k, v in stamp.items() if k != "delta_version") or not isinstance(saved, int):
        return None
    if saved == stamp["delta_version"]:
        return folder
    return folder if _events_kept(journal, saved, stamp["delta_version"]) else None


# Delta log actions that leave the table's rows as they are when each add and remove says so
_LOG_ACTIONS: Final = frozenset({"commitInfo", "add", "remove", "txn"})


def _events_kept(journal: Journal, saved: int, current: int) -> bool:
    """Whether every commit after Delta version ``saved`` up to ``current`` left the events as
    they were: compactions (``journal compact``: rows rewritten sorted, the same rows; or another
    engine's OPTIMIZE, every file added or removed with ``dataChange`` false) and vacuums. The keys
    copy the events, not the files (their strings are saved in their own order), so they stay
    exact. Anything else (an append, a purge, a schema change) or a log entry that cannot be read
    (cleaned up after its retention, damaged) makes them stale."""
    if not saved < current or current - saved > _LOG_COMMITS or not isinstance(journal.path, Path):
        return False
    log = Path(journal.events_uri) / "_delta_log"
    for version in range(saved + 1, current + 1):
        try:
            with (log / f"{version:020d}.json").open(encoding="utf-8") as entry:
                actions = [json.loads(line) for line in entry if line.strip()]
        except (OSError, ValueError):
            return False
        compaction = any(a.get("commitInfo", {}).get("toolkit.operation") == "compact" for a in actions)
        for action in actions:
            if not isinstance(action, dict) or len(action) != 1:
                return False
            ((kind, body),) = action.items()
            if kind not in _LOG_ACTIONS or not isinstance(body, dict):
                return False
            if kind in ("add", "remove") and body.get("dataChange") is not False and not compaction:
                return False
    return True


class SavedStrings(Strings):
    """The strings of saved keys, by ``orig`` row (the journal's order, as ``strings.parquet``
    holds them); each column is read on its first use."""

    def __init__(self, folder: Path) -> None:
        super().__init__(pl.DataFrame())  # the sorted frame, once read (``load_saved``)
        self.folder = folder
        # opened first: a later save removes this folder, and open files stay readable
        self._files: dict[str, BinaryIO] = {}
        try:
            for f in ("keys", "strings", "texts", "streams"):
                self._files[f] = (folder / f"{f}.parquet").open("rb")
            self.streams = pl.read_parquet(self._files["streams"])
        except BaseException:
            self.close()
            raise
        self._read: dict[str, pl.Series] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def _column(self, name: str, file: str = "strings") -> pl.Series:
        key = f"{file}:{name}"
        with self._lock:
            if key not in self._read:
                if name == "srow":  # the sorted row of each orig row
                    n = self.frame.height
                    self._read[key] = pl.repeat(0, n, dtype=pl.UInt32, eager=True).scatter(
                        self.frame.get_column("orig"), pl.int_range(0, n, dtype=pl.UInt32, eager=True)
                    )
                else:
                    handle = self._files[file]
                    handle.seek(0)
                    self._read[key] = pl.read_parquet(handle, columns=[name]).to_series()
            return self._read[key]

    def take(self, column: str, rows: pl.Series) -> pl.Series:
        s = self.frame
        if column in ("stream_id", "stream_type", "position", "version", "duration_ms", "event_type", "tool_name", "data"):
            srows = self._column("srow").gather(rows)
            if column in ("stream_id", "stream_type"):
                return self.streams.get_column(column).gather(s.get_column("sid").gather(srows))
            if column == "data":
                return self._column("text", "texts").gather(self._column("text", "keys").gather(srows)).alias("data")
            return s.get_column("et" if column == "event_type" else column).gather(srows).alias(column)
        if column == "event_id":
            text = _uuid_text(self._strings("event_uuid_hi", rows), self._strings("event_uuid_lo", rows))
            return pl.select(pl.coalesce(text, self._strings("event_id", rows))).to_series().alias("event_id")
        return self._strings(column, rows)

    def text_codes(self, rows: pl.Series) -> tuple[pl.Series, pl.Series]:
        """The codes saved for the user messages at ``rows`` and the distinct texts."""
        codes = self._column("text", "keys").gather(self._column("srow").gather(rows))
        return codes, self._column("text", "texts")

    def _strings(self, column: str, rows: pl.Series) -> pl.Series:
        """``column`` of strings.parquet at ``rows``: from the row groups holding them when they
        are few (20 failing calls need not read 10M call ids), else from the whole column."""
        groups = (rows // GROUP_ROWS).unique().sort()
        if f"strings:{column}" in self._read or rows.has_nulls() or groups.len() * GROUP_ROWS * 8 > self.frame.height:
            return self._column(column).gather(rows)
        part = self.read_row_groups(groups.to_list(), column)
        local = groups.search_sorted(rows // GROUP_ROWS).cast(pl.Int64) * GROUP_ROWS + rows % GROUP_ROWS
        return part.gather(local)

    def read_row_groups(self, groups: list[int], column: str) -> pl.Series:
        """``column`` of the given row groups of strings.parquet, one after another."""
        with self._lock:
            handle = self._files["strings"]
            handle.seek(0)
            part = pq.ParquetFile(handle).read_row_groups(groups, columns=[column])
        return pl.Series(column, part.column(column))


def _categorical(names: Sequence[str], codes: pl.Series) -> pl.Series:
    return pl.Series(list(names), dtype=pl.Categorical).gather(codes)


def load_saved(journal: Journal) -> Frame | None:
    """The frame saved at the journal's current Delta version (every built-in's columns), or None."""
    folder = saved_folder(journal)
    if folder is None:
        return None
    strings: SavedStrings | None = None
    try:
        strings = SavedStrings(folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        k = pl.read_parquet(strings._files["keys"], columns=list(EAGER))
        event_types, tool_names = list(manifest["event_types"]), list(manifest["tool_names"])
    except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError):  # removed meanwhile, or damaged
        if strings is not None:
            strings.close()
        return None
    cost = k.get_column("cost")
    tc = k.get_column("call").cast(pl.UInt64)
    s = k.select(
        "orig", "sid", "version", "position",
        et=_categorical(event_types, k.get_column("et")),
        tool_name=_categorical(tool_names, k.get_column("tool")),
        is_error="is_error",
        cost=pl.col("cost").cast(nano_sum_type(cost)).fill_null(0),
        tokens=pl.col("tokens").fill_null(0),
        duration_ms="duration_ms",
        tc=tc, tc2=tc, call_rank="call_rank",
        has_key="has_key", args="args", cause="cause", uses="uses", has_cause="has_cause",
        first=(pl.col("sid") != pl.col("sid").shift(1)).fill_null(True),
    )
    strings.frame = s
    return Frame(strings, s, removals=read_removals(journal))


__all__ = ["EAGER", "FORMAT", "KEYS_DIR", "SavedStrings", "drop_rule_keys", "keys_root", "load_saved", "prepare", "save_frame", "saved_folder"]
