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
  table's id and the Delta version saved, the code vocabularies), ``log.json`` (what the commits
  since did, as far as a re-grade read the log: ``_since``).

The rules themselves run on every re-grade, with their parameters; the keys hold no verdict.
Keys serve the journal's current Delta version of the same table (``_since``, from the Delta log):
- saved at it, or before commits that only moved rows between files (compactions, vacuums): read
  as they are;
- saved before appends (imports, appends; compactions between them): read with the events
  appended since, which are read from the journal (the files holding later positions) and merged
  in (``_with_tail``: rows into their streams, call codes, the ids' journal-wide facts both ways),
  while those are at most ``TAIL_SHARE`` of the saved events; beyond it the next whole-journal
  re-grade reads the journal and saves the keys anew;
- anything else (a purge, a redaction, a schema change, an unreadable log entry): stale, saved anew.
A journal pinned to an older version reads its events and saves nothing. Purge, archive --delete
and redact delete them (they hold copies of ids and user texts). A remote (s3://) journal neither
saves nor reads them. The manifest names the Polars version: the hashes of another are not these.
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
    journal_events,
    load_frame,
    nano_sum_type,
)
from toolkit.journal.retention import read_removals
from toolkit.journal.rewrite import RULE_KEYS_DIR, drop_rule_keys
from toolkit.journal.store import Journal

KEYS_DIR: Final = RULE_KEYS_DIR
FORMAT: Final = 2  # 2: call_hash
_CURRENT: Final = "CURRENT"
_STALE_S: Final = 3600  # a save in progress this long ago was killed
# an import leaving at least this many events in the journal saves the keys (``prepare``): the
# first re-grade after it reads them (smaller journals re-grade fast from their events)
KEYS_AT_IMPORT: Final = 1_000_000
# a journal appended to since its keys were saved is judged over the keys and the events appended
# since (read from the journal) while those are at most this share of the saved ones; beyond it,
# the next whole-journal re-grade reads the journal and saves the keys anew
TAIL_SHARE: Final = 0.25
# rows of a row group of strings.parquet: a message needing a few strings reads their groups only
GROUP_ROWS: Final = 1 << 16
# read on every re-grade; the other columns of keys.parquet are read when a message quotes them
EAGER: Final = (
    "orig", "sid", "version", "position", "et", "tool", "is_error", "cost", "tokens", "duration_ms", "call",
    "call_rank", "has_key", "args", "cause", "uses", "has_cause",
)
# commits after the saved version looked at (each log entry read, ≈ 0.05 ms) before the keys count
# as stale; what they did is kept beside the keys (``_LOG_MEMO``), so each commit is read once
_LOG_COMMITS: Final = 10_000
_LOG_MEMO: Final = "log.json"
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
    return {
        "format": FORMAT, "polars": pl.__version__, "table_id": journal.delta_table().metadata().id,
        "delta_version": journal.delta_version,
    }


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
            # the hash of each call row's tool_call_id: events appended later find their calls by it
            "call_hash": s.get_column("tc"),
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
                pool.submit(
                    _write, keys, tmp / "keys.parquet", ("orig", "sid", "version", "position", "cause"), ("args", "call_hash")
                ),
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
    """Save the journal's rule keys now unless usable ones are there (fresh, or saved before
    appends of at most ``TAIL_SHARE`` of their events: ``journal import`` does, so that the first
    re-grade after it reads them); returns their folder (None: a journal that keeps none)."""
    if keys_root(journal) is None:
        return None
    pinned = journal.pinned()  # one version read, saved and stamped
    return serving(pinned) or save_frame(pinned, load_frame(pinned, list(BUILTIN_COLUMNS)))


def serving(journal: Journal) -> Path | None:
    """The folder of keys a whole-journal re-grade would read now (fresh, or with the events
    appended since, within ``TAIL_SHARE``), or None."""
    found = _saved(journal)
    return found[0] if found is not None and _usable(journal, found[1], found[2], TAIL_SHARE) else None


def _usable(journal: Journal, manifest: dict[str, Any], since: str, share: float) -> bool:
    """Whether keys whose commits since were ``since`` serve the journal: kept, or appended to by
    at most ``share`` of their events (counted from the files' statistics)."""
    if since == KEPT:
        return True
    saved = manifest.get("events")
    return isinstance(saved, int) and journal_events(journal) - saved <= share * saved


# ---------------------------------------------------------------------- reading


def saved_folder(journal: Journal) -> Path | None:
    """The folder of keys that hold exactly the journal's current events (saved at its current
    Delta version, or before commits that only moved rows between files), or None."""
    found = _saved(journal)
    return found[0] if found is not None and found[2] == KEPT else None


def _saved(journal: Journal) -> tuple[Path, dict[str, Any], str] | None:
    """The keys ``CURRENT`` names, their manifest, and what the commits since their version did
    (``_since``), when they are keys of this table by this format and Polars; else None."""
    root = keys_root(journal)
    if root is None:
        return None
    try:
        folder = root / (root / _CURRENT).read_text().strip()
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    stamp = _stamp(journal)
    saved = manifest.get("delta_version") if isinstance(manifest, dict) else None
    if not isinstance(saved, int) or any(manifest.get(k) != v for k, v in stamp.items() if k != "delta_version"):
        return None
    current = stamp["delta_version"]
    # what an earlier re-grade found in the log (``_LOG_MEMO``): only the commits after it are read
    memo = _read_memo(folder)
    start, before = memo if memo is not None and saved <= memo[0] <= current else (saved, KEPT)
    since = _since(journal, start, current, before)
    if since is not None and current > start:
        _write_memo(folder, current, since)
    return (folder, manifest, since) if since is not None else None


def _read_memo(folder: Path) -> tuple[int, str] | None:
    try:
        memo = json.loads((folder / _LOG_MEMO).read_text())
        through, since = memo["through"], memo["since"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (through, since) if isinstance(through, int) and since in (KEPT, APPENDED) else None


def _write_memo(folder: Path, through: int, since: str) -> None:
    """Log entries never change: what the commits up to ``through`` did stays true (best effort:
    the folder may be gone, or read-only)."""
    tmp = folder / f".{_LOG_MEMO}.{uuid.uuid4().hex}.tmp"
    try:
        tmp.write_text(json.dumps({"through": through, "since": since}) + "\n")
        os.replace(tmp, folder / _LOG_MEMO)
    except OSError:
        tmp.unlink(missing_ok=True)


# what the commits after the keys' version did to the events: nothing (compactions, vacuums), or
# they appended events (and maybe compacted)
KEPT: Final = "kept"
APPENDED: Final = "appended"
# Delta log actions that leave the table's rows as they are when each add and remove says so
_LOG_ACTIONS: Final = frozenset({"commitInfo", "add", "remove", "txn"})


def _since(journal: Journal, saved: int, current: int, before: str = KEPT) -> str | None:
    """``KEPT`` when every commit after Delta version ``saved`` up to ``current`` left the events
    as they were: compactions (``journal compact``: the same rows rewritten sorted; another
    engine's OPTIMIZE, every file added or removed with ``dataChange`` false) and vacuums — the
    keys copy the events, not the files (their strings are saved in their own order), so they
    stay exact; ``APPENDED`` when the others only added files (appends, imports); None for anything
    else (a purge, a schema change) or a log entry that cannot be read (cleaned up after its
    retention, damaged). ``before``: what the commits up to ``saved`` did (``KEPT`` from the keys'
    own version)."""
    if saved == current:
        return before
    if not saved < current or current - saved > _LOG_COMMITS or not isinstance(journal.path, Path):
        return None
    log = Path(journal.events_uri) / "_delta_log"
    appended = before == APPENDED
    for version in range(saved + 1, current + 1):
        try:
            with (log / f"{version:020d}.json").open(encoding="utf-8") as entry:
                actions = [json.loads(line) for line in entry if line.strip()]
        except (OSError, ValueError):
            return None
        if not all(isinstance(a, dict) and len(a) == 1 and isinstance(next(iter(a.values())), dict) for a in actions):
            return None
        kinds = [next(iter(a)) for a in actions]
        if any(k not in _LOG_ACTIONS for k in kinds):
            return None
        compaction = any(a.get("commitInfo", {}).get("toolkit.operation") == "compact" for a in actions)
        changed = [k for a, k in zip(actions, kinds, strict=True) if k in ("add", "remove") and a[k].get("dataChange") is not False]
        if changed and not compaction:
            if "remove" in changed:
                return None
            appended = True
    return APPENDED if appended else KEPT


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


def load_saved(journal: Journal, tail_share: float | None = None) -> Frame | None:
    """The frame of the journal's current events (every built-in's columns) from the saved keys,
    or None. Keys saved before appends (``APPENDED``) are read with the events appended since
    (``_with_tail``) when those are at most ``tail_share`` (default ``TAIL_SHARE``) of the saved
    ones; beyond that, None (a read of the journal, which saves the keys anew, costs less)."""
    found = _saved(journal)
    if found is None:
        return None
    folder, manifest, since = found
    if not _usable(journal, manifest, since, TAIL_SHARE if tail_share is None else tail_share):
        return None
    strings: SavedStrings | None = None
    try:
        strings = SavedStrings(folder)
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
    frame = Frame(strings, s, removals=read_removals(journal))
    if since == KEPT:
        return frame
    try:
        tailed = _with_tail(journal, frame, strings)
    except BaseException:
        strings.close()
        raise
    if tailed is None:
        strings.close()
    return tailed


# ---------------------------------------------------------------------- keys and the events appended since


class TailedStrings(Strings):
    """The strings of saved keys (``orig`` rows below ``n``) and of the events appended since
    (``orig`` ``n`` on, read from the journal)."""

    def __init__(self, base: SavedStrings, tail: Strings, n: int) -> None:
        super().__init__(pl.DataFrame())
        self.base, self.tail, self.n = base, tail, n

    def close(self) -> None:
        self.base.close()

    def _saved_rows(self, rows: pl.Series) -> pl.Series:
        """True at the rows the saved strings hold (a null row, no row, too: they give null for it)."""
        return (rows < self.n).fill_null(True)

    @staticmethod
    def _joined(old: pl.Series, saved: pl.Series, appended: pl.Series) -> pl.Series:
        """``saved`` (where ``old``) and ``appended`` (the other rows) in the rows' order."""
        back = pl.concat([old.arg_true(), (~old).arg_true()]).arg_sort()
        return pl.concat([saved, appended.cast(saved.dtype)]).gather(back)

    def take(self, column: str, rows: pl.Series) -> pl.Series:
        old = self._saved_rows(rows)
        if bool(old.all()):
            return self.base.take(column, rows)
        if not bool(old.any()):
            return self.tail.take(column, rows - self.n).alias(column)
        saved = self.base.take(column, rows.filter(old))
        return self._joined(old, saved, self.tail.take(column, rows.filter(~old) - self.n)).alias(column)

    def text_codes(self, rows: pl.Series) -> tuple[pl.Series, pl.Series]:
        old = self._saved_rows(rows)
        codes, texts = self.base.text_codes(rows.filter(old))
        tail_codes, tail_texts = self.tail.text_codes(rows.filter(~old) - self.n)
        codes = self._joined(old, codes.cast(pl.UInt32), tail_codes.cast(pl.UInt32) + texts.len())
        return codes, pl.concat([texts, tail_texts.cast(texts.dtype)])


def _with_tail(journal: Journal, base: Frame, strings: SavedStrings) -> Frame | None:
    """``base`` (the saved keys' frame) with the events appended since, read from the journal: the
    rows merged into their streams, their ids' journal-wide facts resolved against the saved ids
    and each other, and the saved rows' facts the new ids change (a reused id, a cause that names
    an event appended later). None when the journal holds other events than the keys and later
    positions (it was not only appended to)."""
    old = base.s
    n = old.height
    last = old.get_column("position").max()
    tail = load_frame(journal, list(BUILTIN_COLUMNS), after_position=None if last is None else int(last))  # type: ignore[arg-type]
    t, to = tail.s, tail.o.frame
    k = t.height
    if n + k != journal_events(journal):
        return None
    if not k:
        return base
    t_orig = t.get_column("orig")
    # streams: the saved codes, new streams after them
    streams = strings.streams
    ids = pl.DataFrame({"stream_id": to.get_column("stream_id").gather(t_orig)}).join(
        streams.select("stream_id").with_row_index("old"), on="stream_id", how="left", maintain_order="left"
    )
    new_streams = ids.filter(pl.col("old").is_null()).get_column("stream_id").unique(maintain_order=True)
    ids = ids.join(
        new_streams.to_frame().with_row_index("new", offset=streams.height), on="stream_id", how="left", maintain_order="left"
    )
    sid = ids.select(pl.coalesce("old", "new").cast(pl.UInt32)).to_series()
    bounds = [v for c in (old.get_column("version"), t.get_column("version")) for v in (c.min(), c.max())]
    if any(not isinstance(v, int) or not 0 <= v < 1 << 32 for v in bounds):
        return None  # a damaged journal (versions outside u32, the merge key): read it whole
    # ids (event and cause) of the tail, by tail row
    t_ids = _id_frame(to.get_column("event_id").gather(t_orig))
    t_causes = _id_frame(to.get_column("causation_id").gather(t_orig))
    o_ids = _SavedIds(strings)

    def old_position(orig: pl.Series) -> pl.Series:
        """The positions of saved events by their ``orig`` rows."""
        return old.get_column("position").gather(strings._column("srow").gather(orig))

    # the saved events whose id comes again in the tail, and the tail's ids found among the saved
    old_hits = o_ids.matches(t_ids.with_row_index("trow"))
    old_hits = old_hits.with_columns(position=old_position(old_hits.get_column("orig")))
    t_pos = t.get_column("position")
    t_ids = t_ids.with_columns(position=t_pos)
    # uses: in the saved events plus in the tail
    tail_uses = t_ids.group_by("hi", "lo", "text").agg(tail_uses=pl.len())
    joined = t_ids.join(tail_uses, on=["hi", "lo", "text"], how="left", nulls_equal=True, maintain_order="left")
    per_trow = old_hits.group_by("trow").agg(old_uses=pl.len())
    joined = joined.with_row_index("trow").join(per_trow, on="trow", how="left", maintain_order="left")
    uses_t = joined.select(pl.col("tail_uses") + pl.col("old_uses").fill_null(0)).to_series()
    # the saved events' uses grow by the tail's uses of their id
    old_uses = old.get_column("uses").fill_null(1)
    if old_hits.height:
        grow = old_hits.join(joined.select("trow", "tail_uses"), on="trow").group_by("orig").agg(pl.col("tail_uses").first())
        srows = strings._column("srow").gather(grow.get_column("orig"))
        old_uses = old_uses.scatter(srows, old_uses.gather(srows) + grow.get_column("tail_uses").cast(old_uses.dtype))
    # causes of the tail: the first event of the journal with that id (a saved one comes first)
    first_of_id = pl.concat([
        old_hits.join(t_ids.with_row_index("trow").select("trow", "hi", "lo", "text"), on="trow")
        .select("hi", "lo", "text", "position"),
        t_ids.select("hi", "lo", "text", "position"),
    ]).group_by("hi", "lo", "text").agg(pl.col("position").min().alias("found"))
    cause_t = t_causes.join(first_of_id, on=["hi", "lo", "text"], how="left", nulls_equal=True, maintain_order="left")
    cause_t = cause_t.with_columns(found=pl.when(pl.col("hi").is_not_null() | pl.col("text").is_not_null()).then("found"))
    # causes of the tail that name saved events not yet found above (their ids do not come again)
    missing = cause_t.with_row_index("trow").filter(
        (pl.col("hi").is_not_null() | pl.col("text").is_not_null()) & pl.col("found").is_null()
    )
    if missing.height:
        named = o_ids.matches(missing.select("trow", "hi", "lo", "text"))
        named = named.with_columns(position=old_position(named.get_column("orig")))
        found = named.group_by("trow").agg(pl.col("position").min().alias("old_found"))
        cause_t = cause_t.with_row_index("trow").join(found, on="trow", how="left", maintain_order="left").with_columns(
            found=pl.coalesce("found", "old_found")
        ).drop("trow", "old_found")
    # saved events whose cause named no event: an event of the tail may be the one
    old_cause = old.get_column("cause")
    open_rows = old.select(pl.arg_where(pl.col("has_cause") & pl.col("cause").is_null())).to_series().cast(pl.UInt32)
    if open_rows.len():
        opened = _id_frame(strings.take("causation_id", old.get_column("orig").gather(open_rows))).with_columns(srow=open_rows)
        hit = opened.join(first_of_id, on=["hi", "lo", "text"], how="inner", nulls_equal=True)
        hit = hit.filter(pl.col("hi").is_not_null() | pl.col("text").is_not_null())
        if hit.height:
            old_cause = old_cause.scatter(hit.get_column("srow"), hit.get_column("found").cast(old_cause.dtype))
    # tool calls: the saved code of a (stream, call id) the saved events hold (found by the hash of
    # the call id, confirmed on the strings), else a new one
    t_cid = to.get_column("tool_call_id").gather(t_orig)
    calls = pl.DataFrame({"sid": sid, "cid": t_cid, "hash": t.get_column("tc")})
    asked = calls.filter(pl.col("cid").is_not_null() & (pl.col("sid") < streams.height)).unique(["sid", "cid"])
    old_calls = old.select("sid", "tc", "orig").with_columns(hash=strings._column("call_hash", "keys")).filter(
        pl.col("hash").is_in(asked.get_column("hash").unique().implode()) & pl.col("tc").is_not_null()
    )
    cand = old_calls.join(asked, on=["sid", "hash"])
    cand = cand.filter(strings.take("tool_call_id", cand.get_column("orig")) == cand.get_column("cid"))
    known = cand.group_by("sid", "cid").agg(pl.col("tc").first())
    calls = calls.drop("hash").join(known, on=["sid", "cid"], how="left", maintain_order="left")
    top = old.get_column("tc").max()
    fresh = calls.filter(pl.col("cid").is_not_null() & pl.col("tc").is_null()).select("sid", "cid").unique(maintain_order=True)
    fresh = fresh.with_columns(new_tc=pl.int_range(0, pl.len(), dtype=pl.UInt64) + (0 if top is None else int(top) + 1))  # type: ignore[arg-type]
    calls = calls.join(fresh, on=["sid", "cid"], how="left", maintain_order="left")
    tc = calls.select(pl.when(pl.col("cid").is_not_null()).then(pl.coalesce("tc", "new_tc"))).to_series()
    cost_type = nano_sum_type(old.get_column("cost"), t.get_column("cost"))
    rows = t.select(
        (pl.col("orig") + n).cast(pl.UInt32).alias("orig"),
        sid=sid, version="version", position="position", et="et", tool_name="tool_name", is_error="is_error",
        cost=pl.col("cost").cast(cost_type), tokens="tokens", duration_ms="duration_ms", tc=tc, tc2=tc,
        has_key="has_key", args="args", cause=cause_t.get_column("found").cast(old_cause.dtype),
        uses=uses_t.cast(old_uses.dtype), has_cause=pl.col("h1c").is_not_null(),
    )
    head = old.select(rows.columns).with_columns(cost=pl.col("cost").cast(cost_type), uses=old_uses, cause=old_cause)
    both = pl.concat([head, rows.cast(head.schema)])  # two chunks: a gather (below) or a rechunk makes one
    key = (pl.col("sid").cast(pl.UInt64) * (1 << 32) + pl.col("version").cast(pl.UInt64))
    rows_key = rows.select(key).to_series()
    order = rows_key.arg_sort()
    if bool((sid < streams.height).any()) or not bool(rows_key.is_sorted()):
        # rows of saved streams (or rows out of order): each goes after its stream's saved rows
        at = head.select(key).to_series().search_sorted(rows_key.gather(order), side="right").cast(pl.Int64)
        dest = at + pl.int_range(0, k, dtype=pl.Int64, eager=True)
        placed = pl.repeat(False, n + k, dtype=pl.Boolean, eager=True).scatter(dest, True)
        gather = pl.repeat(0, n + k, dtype=pl.UInt32, eager=True).scatter(dest, order.cast(pl.UInt32) + n)
        gather = gather.scatter((~placed).arg_true(), pl.int_range(0, n, dtype=pl.UInt32, eager=True))
        both = both.select(pl.all().gather(gather))
    else:
        both = both.rechunk()
    both = both.with_columns(first=(pl.col("sid") != pl.col("sid").shift(1)).fill_null(True))
    return Frame(TailedStrings(strings, tail.o, n), both, removals=base.removals)


def _id_frame(ids: pl.Series) -> pl.DataFrame:
    """Ids as the keys hold them: canonical UUIDs as two 64-bit halves, others as text."""
    hi, lo = _uuid_halves(pl.col("id"))
    return ids.to_frame("id").select(hi=hi, lo=lo, text=pl.when(hi.is_null()).then("id"))


class _SavedIds:
    """The saved events' ids, looked up by the few ids of a tail: the high halves of UUIDs and the
    other ids' text read whole, the low halves only at the candidates."""

    def __init__(self, strings: SavedStrings) -> None:
        self.strings = strings
        self.hi = strings._column("event_uuid_hi")
        self.text = strings._column("event_id")

    def matches(self, wanted: pl.DataFrame) -> pl.DataFrame:
        """(``orig`` of the saved events, ``trow`` of ``wanted``) of equal ids."""
        uuids = wanted.filter(pl.col("hi").is_not_null())
        texts = wanted.filter(pl.col("text").is_not_null())
        parts = []
        if uuids.height:
            cand = self.hi.is_in(uuids.get_column("hi").unique().implode()).arg_true().cast(pl.UInt32)
            cand_ids = pl.DataFrame(
                {"orig": cand, "hi": self.hi.gather(cand), "lo": self.strings.take("event_uuid_lo", cand)}
            )
            parts.append(cand_ids.join(uuids.select("trow", "hi", "lo"), on=["hi", "lo"]).select("orig", "trow"))
        if texts.height:
            cand = self.text.is_in(texts.get_column("text").unique().implode()).arg_true().cast(pl.UInt32)
            cand_ids = pl.DataFrame({"orig": cand, "text": self.text.gather(cand)})
            parts.append(cand_ids.join(texts.select("trow", "text"), on="text").select("orig", "trow"))
        if not parts:
            return pl.DataFrame(schema={"orig": pl.UInt32, "trow": pl.UInt32})
        return pl.concat([p.cast({"orig": pl.UInt32, "trow": pl.UInt32}) for p in parts])


__all__ = ["EAGER", "FORMAT", "KEYS_DIR", "SavedStrings", "drop_rule_keys", "keys_root", "load_saved", "prepare", "save_frame", "saved_folder", "serving"]
