"""Checkpoints: the chain heads of every stream, kept outside the journal and checked later.

``journal verify`` alone proves the journal is *consistent*: someone who rewrites a whole
stream and recomputes its hashes, or removes a stream's last events or a whole stream, leaves a
consistent journal. A checkpoint closes that gap: ``write_checkpoint`` records each stream's
head (version, hash), the event count and the number of purge and redaction records, optionally
signed with HMAC-SHA256 under a key the user keeps; ``check_checkpoint`` later reports every
stream whose event at the checkpointed version now has another hash (rewritten), that ends
before it (events removed), or that is gone — unless a purge record of the journal explains it
(the anchor of a purge that removed exactly up to the head must equal the head's hash).

>>> from toolkit.journal import Journal
>>> import tempfile, pathlib
>>> j = Journal.in_memory()
>>> _ = j.append("r", [{"event_type": "user_message", "data": "hi"}])
>>> path = pathlib.Path(tempfile.mkdtemp()) / "heads.json"
>>> write_checkpoint(j, path, key=b"secret").streams
1
>>> check_checkpoint(j, path, key=b"secret")
[]
>>> j.close()
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from toolkit.errors import CheckpointError
from toolkit.journal.config import write_atomic
from toolkit.journal.integrity import Break
from toolkit.journal.retention import purge_anchors
from toolkit.journal.side_tables import read_table
from toolkit.journal.store import Journal

FORMAT = "agent-journal-toolkit checkpoint 1"


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    streams: int
    events: int
    delta_version: int
    signed: bool


def chain_heads(journal: Journal) -> pl.DataFrame:
    """stream_id, version, hash and events of every stream's last event."""
    pieces = [journal.read_file(f, ["stream_id", "version", "hash"]) for f in journal.files()]
    if not pieces:
        return pl.DataFrame(schema={"stream_id": pl.String, "version": pl.Int64, "hash": pl.String, "events": pl.Int64})
    frame = pl.DataFrame(pa.concat_tables(pieces))
    return (
        frame.group_by("stream_id")
        .agg(
            pl.col("version").max(),
            pl.col("hash").sort_by("version").last(),
            pl.len().cast(pl.Int64).alias("events"),
        )
        .sort("stream_id")
    )


def _body(journal: Journal) -> dict[str, Any]:
    heads = chain_heads(journal)
    return {
        "format": FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "journal": str(journal.path),
        "delta_version": journal.delta_version,
        "events": int(heads.get_column("events").sum()),
        "purge_records": read_table(journal, "purges").num_rows,
        "redaction_records": read_table(journal, "redactions").num_rows,
        "streams": {sid: {"version": v, "hash": h} for sid, v, h, _ in heads.iter_rows()},
    }


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _mac(key: bytes, body: dict[str, Any]) -> str:
    return hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()


def write_checkpoint(
    journal: Journal, path: str | Path, *, key: bytes | None = None, force: bool = False
) -> CheckpointInfo:
    """Write the chain heads to ``path`` (JSON; HMAC-SHA256-signed when ``key`` is given).

    An existing file is an earlier checkpoint, evidence against later changes: it is replaced
    only when ``force``.
    """
    out = Path(path).expanduser().absolute()
    if out.is_dir():
        raise CheckpointError(f"{out}: is a directory", hint="-o names the checkpoint file, e.g. -o heads.json")
    if out.exists() and not force:
        raise CheckpointError(
            f"{out}: exists already (an earlier checkpoint is evidence: it is not replaced silently)",
            hint="write a new file, e.g. -o heads-$(date +%F).json, or pass --force to replace it",
        )
    body = _body(journal)
    doc = {**body, "hmac_sha256": _mac(key, body) if key else None}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return CheckpointInfo(str(out), len(body["streams"]), body["events"], body["delta_version"], key is not None)


def load_checkpoint(path: str | Path, *, key: bytes | None = None) -> dict[str, Any]:
    p = Path(path).expanduser()
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{p}: cannot read the checkpoint: {e}", hint="pass the file journal checkpoint wrote") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("streams"), dict):
        raise CheckpointError(f"{p}: not a journal checkpoint", hint="pass the file journal checkpoint wrote")
    mac = doc.pop("hmac_sha256", None)
    if key is not None:
        if mac is None:
            raise CheckpointError(f"{p}: the checkpoint is not signed", hint="check it without a key, or sign the next one")
        if not hmac.compare_digest(mac, _mac(key, doc)):
            raise CheckpointError(
                f"{p}: HMAC mismatch: the checkpoint file was altered, or the key is not the one it was signed with",
                hint="use the key the checkpoint was written with; a mismatch with the right key means it was edited",
            )
    elif mac is not None:
        raise CheckpointError(f"{p}: the checkpoint is HMAC-signed", hint="pass the key (--key-file FILE or --key-env NAME)")
    return doc


def check_checkpoint(journal: Journal, path: str | Path, *, key: bytes | None = None) -> list[Break]:
    """Breaks of the journal against a checkpoint (empty: everything checkpointed is intact)."""
    doc = load_checkpoint(path, key=key)
    pieces = [journal.read_file(f, ["stream_id", "version", "hash"]) for f in journal.files()]
    current = pl.DataFrame(pa.concat_tables(pieces)) if pieces else pl.DataFrame(
        schema={"stream_id": pl.String, "version": pl.Int64, "hash": pl.String}
    )
    wanted = pl.DataFrame(
        [(sid, int(h["version"]), str(h["hash"])) for sid, h in doc["streams"].items()],
        schema={"stream_id": pl.String, "version": pl.Int64, "cp_hash": pl.String},
        orient="row",
    )
    found = wanted.join(current, on=["stream_id", "version"], how="left")
    last = current.group_by("stream_id").agg(pl.col("version").max().alias("last"))
    found = found.join(last, on="stream_id", how="left").sort("stream_id")
    anchors = purge_anchors(journal)
    breaks: list[Break] = []
    for sid, v, cp_hash, now_hash, last_v in found.iter_rows():
        if now_hash is not None:
            if now_hash != cp_hash:
                breaks.append(Break(sid, v, "checkpoint_hash", cp_hash, now_hash))
            continue
        kept_from = [k for k in anchors.get(sid, {}) if k > v]
        if kept_from:  # a recorded purge removed the checkpointed head
            exact = anchors[sid].get(v + 1)
            if exact is not None and exact != cp_hash:
                breaks.append(Break(sid, v, "checkpoint_anchor", cp_hash, exact))
            continue
        if last_v is None:
            breaks.append(Break(sid, v, "checkpoint_stream_missing", f"stream at version {v}", "no events"))
        else:
            breaks.append(Break(sid, v, "checkpoint_truncated", f"version {v}", f"stream ends at version {last_v}"))
    for name, label in (("purges", "purge_records"), ("redactions", "redaction_records")):
        now = read_table(journal, name).num_rows
        if now < int(doc.get(label, 0)):
            breaks.append(Break(f"({name} table)", None, "checkpoint_records", f"{doc[label]} records", f"{now} records"))
    return breaks


def read_key(*, key_file: str | None = None, key_env: str | None = None) -> bytes | None:
    """The HMAC key from a file (its bytes, trailing newline dropped) or an environment variable."""
    import os

    if key_file and key_env:
        raise CheckpointError("give the key once", hint="use --key-file or --key-env, not both")
    if key_file:
        try:
            data = Path(key_file).expanduser().read_bytes().rstrip(b"\r\n")
        except OSError as e:
            raise CheckpointError(f"{key_file}: cannot read the key: {e}", hint="pass a readable key file") from e
    elif key_env:
        value = os.environ.get(key_env)
        if value is None:
            raise CheckpointError(f"${key_env} is not set", hint=f"export {key_env}=... or use --key-file")
        data = value.encode()
    else:
        return None
    if not data:
        raise CheckpointError("the HMAC key is empty", hint="use a key of at least 32 random bytes")
    return data


__all__ = ["CheckpointInfo", "chain_heads", "check_checkpoint", "load_checkpoint", "read_key", "write_checkpoint"]
