"""The vectorised digests and envelopes equal their definition, computed row by row."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
import struct
from decimal import Decimal
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.journal import hashing

UTC = dt.UTC
# separators, JSON-ish text and non-ASCII, so escaping and UTF-8 are exercised
TEXT = st.text(alphabet=st.sampled_from(["a", "Z", "=", " ", "\x1e", "\x1f", "é", "𝄞", '"', "{", "}"]), max_size=12)


def reference_envelope(row: dict[str, Any], names: list[str]) -> str:
    """The module docstring's definition of the envelope, one row at a time."""
    pairs = []
    for name in names:
        v = row[name]
        if v is None:
            continue
        if isinstance(v, bool):
            text = "t" if v else "f"
        elif isinstance(v, int):
            text = str(v)
        elif isinstance(v, float):
            text = str(struct.unpack("<q", struct.pack("<d", v))[0])
        elif isinstance(v, dt.datetime):
            text = str((v - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1))
        elif isinstance(v, Decimal):
            text = f"{v:f}"
        else:
            text = re.sub("([\x1e\x1f])", "\x1e\\1", v)
        pairs.append(f"{name}={text}")
    return "\x1f".join(pairs)


rows = st.lists(
    st.fixed_dictionaries(
        {
            "stream_id": st.one_of(st.none(), TEXT) | TEXT,
            "version": st.one_of(st.none(), st.integers(0, 2**62)),
            "occurred_at": st.one_of(
                st.none(),
                st.datetimes(
                    timezones=st.just(UTC), min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)
                ),
            ),
            "model": st.one_of(st.none(), TEXT),
            "tool_name": st.one_of(st.none(), TEXT),
            "tokens_in": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
            "cost_usd": st.one_of(st.none(), st.decimals(-(10**9) + 1, 10**9 - 1, places=9)),
            "duration_ms": st.one_of(st.none(), st.floats(allow_nan=False)),
            "is_error": st.one_of(st.none(), st.booleans()),
            "source": st.one_of(st.none(), TEXT),
        }
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(rows=rows, cut=st.integers(0, 11))
def test_envelope_texts_equal_the_definition_row_by_row(rows: list[dict[str, Any]], cut: int) -> None:
    schema = pa.schema(
        [
            ("stream_id", pa.string()),
            ("version", pa.int64()),
            ("occurred_at", pa.timestamp("us", tz="UTC")),
            ("model", pa.string()),
            ("tool_name", pa.string()),
            ("tokens_in", pa.int64()),
            ("cost_usd", pa.decimal128(18, 9)),
            ("duration_ms", pa.float64()),
            ("is_error", pa.bool_()),
            ("source", pa.string()),
        ]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    cut = min(cut, len(rows) - 1)
    for t in (table, table.slice(cut), table.slice(0, cut + 1)):  # slices share the buffers around them
        expected = [reference_envelope(r, schema.names) for r in t.to_pylist()]
        assert hashing.envelope_texts(t).to_pylist() == expected
    # as other readers hand the columns over: large and view strings, several chunks
    for kind in (pa.large_string(), pa.string_view()):
        wide = table.cast(pa.schema([f.with_type(kind) if f.type == pa.string() else f for f in schema]))
        halves = pa.concat_tables([wide.slice(0, cut), wide.slice(cut)])
        assert hashing.envelope_texts(halves).to_pylist() == [reference_envelope(r, schema.names) for r in rows]
    payloads = pa.array([f"{i:064x}" for i in range(len(rows))])
    messages = hashing.chain_messages(table, payloads).to_pylist()
    assert [bytes(m).decode() if isinstance(m, bytes) else m for m in messages] == [
        p + reference_envelope(r, schema.names) for p, r in zip(payloads.to_pylist(), rows, strict=True)
    ]


@pytest.mark.parametrize("lead", ["stream_id", None])
def test_envelopes_too_long_for_32_bit_offsets_are_joined_in_large_strings(
    monkeypatch: pytest.MonkeyPatch, lead: str | None
) -> None:
    """Past 2 GiB of text the envelope is built in large strings, whether the first column has
    nulls or not (the literal between name and value was a 32-bit string: no kernel took it)."""
    rows = [
        {"stream_id": "r\x1f", "version": 1, "tokens_in": None},
        {"stream_id": None if lead is None else "s", "version": None, "tokens_in": 7},
        {"stream_id": None if lead is None else "t", "version": None, "tokens_in": None},
    ]
    schema = pa.schema([("stream_id", pa.string()), ("version", pa.int64()), ("tokens_in", pa.int64())])
    table = pa.Table.from_pylist(rows, schema=schema)
    expected = [reference_envelope(r, schema.names) for r in rows]
    monkeypatch.setattr(hashing, "_too_long_for_int32", lambda *_: True)
    texts = hashing.envelope_texts(table)
    assert texts.type == pa.large_string() and texts.to_pylist() == expected
    messages = hashing.chain_messages(table, pa.array(["p", "q", "r"])).to_pylist()
    assert [bytes(m).decode() if isinstance(m, bytes) else m for m in messages] == [
        p + e for p, e in zip("pqr", expected, strict=True)
    ]


@settings(max_examples=100, deadline=None)
@given(pairs=st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=20))
def test_payload_digests_are_sha256_of_data_and_metadata(pairs: list[tuple[str, str]]) -> None:
    data, metadata = pa.array([d for d, _ in pairs]), pa.array([m for _, m in pairs])
    expected = [hashlib.sha256(f"{d}\x1e{m}".encode()).hexdigest() for d, m in pairs]
    assert hashing.payload_digests(data, metadata) == expected
    frame = pl.DataFrame({"d": pl.Series(data), "m": pl.Series(metadata)})
    assert hashing._payload_column_hashlib(frame).to_pylist() == expected  # without the plugin


def test_the_plugin_computes_payload_digests_when_installed() -> None:
    pytest.importorskip("polars_hash")
    assert hashing._plh is not None


@settings(max_examples=100, deadline=None)
@given(
    runs=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(1, 4)), min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 40), max_size=4),
    known=st.booleans(),
)
def test_the_chain_over_chunked_messages_is_the_chain_message_by_message(
    runs: list[tuple[str, int]], cuts: list[int], known: bool
) -> None:
    """Rows come in runs of one stream each (a stream may come back in a later run); messages may
    arrive in several chunks, cut anywhere (the envelope of columns chunked alike or not)."""
    sids = [sid for sid, n in runs for _ in range(n)]
    texts = [f"{i}:{sid}" + "\x1f" * (i % 3) for i, sid in enumerate(sids)]
    bounds = sorted({0, len(sids), *(min(c, len(sids)) for c in cuts)})
    chunked = pa.chunked_array([pa.array(texts[lo:hi]) for lo, hi in itertools.pairwise(bounds)], pa.string())
    start = {"b": hashlib.sha256(b"before").digest()} if known else {}
    heads = dict(start)
    prevs, hashes = hashing.link(sids, chunked, heads)
    expected: dict[str, bytes] = dict(start)
    want_prev, want_hash = [], []
    for sid, text in zip(sids, texts, strict=True):
        prev = expected.get(sid, bytes(32))
        digest = hashlib.sha256(prev + text.encode()).digest()
        want_prev.append(prev.hex())
        want_hash.append(digest.hex())
        expected[sid] = digest
    assert (prevs.to_pylist(), hashes.to_pylist()) == (want_prev, want_hash)
    assert heads == expected
