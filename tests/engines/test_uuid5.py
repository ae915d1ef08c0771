"""Event ids of bulk imports: ``polars_engine.uuid5_texts`` equals ``uuid.uuid5`` row by row,
with the polars-hash plugin and with its DuckDB fallback."""

from __future__ import annotations

import uuid

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.engines import polars_engine

TEXT = st.text(alphabet=st.sampled_from(["a", "Z", "/", " ", "\x1e", "é", "𝄞", '"', "{", "\x00"]), max_size=40)


@pytest.mark.parametrize("plugin", [True, False], ids=["polars-hash", "duckdb"])
@settings(max_examples=40, deadline=None)
@given(names=st.lists(st.none() | TEXT, max_size=20), namespace=st.binary(min_size=16, max_size=16))
def test_uuid5_texts_equal_uuid5_row_by_row(plugin: bool, names: list[str | None], namespace: bytes) -> None:
    if plugin and polars_engine._PLH is None:
        pytest.skip("polars-hash is not installed")
    saved = polars_engine._PLH
    try:
        if not plugin:
            polars_engine._PLH = None
        got = polars_engine.uuid5_texts(namespace, pl.Series("name", names, dtype=pl.String)).to_list()
    finally:
        polars_engine._PLH = saved
    ns = uuid.UUID(bytes=namespace)
    assert got == [None if n is None else str(uuid.uuid5(ns, n)) for n in names]
