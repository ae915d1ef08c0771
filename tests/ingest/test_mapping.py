"""The TOML mapping: JSON paths, time formats, coercions, mapping-file errors, vectorised ids."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from toolkit.errors import ToolkitError
from toolkit.ingest.base import derive_id
from toolkit.ingest.mapping import (
    MISSING,
    JsonPath,
    Mapping,
    MappingFileError,
    TimeFormat,
    ValueMappingError,
    derive_ids,
    mapping_for,
    sidecar,
)

UTC = dt.UTC


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("session", ("session",)),
        ("$.usage.prompt_tokens", ("usage", "prompt_tokens")),
        ("$.choices[0].message.content", ("choices", 0, "message", "content")),
        ("$['a b'].c", ("a b", "c")),
        ('$["x.y"][-1]', ("x.y", -1)),
        ("$", ()),
    ],
)
def test_json_paths_parse(path: str, steps: tuple[object, ...]) -> None:
    assert JsonPath.parse(path).steps == steps


@pytest.mark.parametrize("bad", ["$.", "$..a", "$[x]", "$.a[", "$[?(@.a)]", ""])
def test_json_paths_refuse_what_they_do_not_support(bad: str) -> None:
    with pytest.raises(ValueError, match=r"JSON path|empty"):
        JsonPath.parse(bad)


def test_json_path_lookup_distinguishes_missing_from_null() -> None:
    record = {"a": {"b": None, "list": [1, {"c": 2}]}}
    assert JsonPath.parse("$.a.b").get(record) is None
    assert JsonPath.parse("$.a.x").get(record) is MISSING
    assert JsonPath.parse("$.a.list[1].c").get(record) == 2
    assert JsonPath.parse("$.a.list[5]").get(record) is MISSING
    assert JsonPath.parse("$.a.b.c").get(record) is MISSING  # through a null
    assert JsonPath.parse("$.a.list.c").get(record) is MISSING  # key on a list


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ({}, "2026-11-01T09:00:00Z", dt.datetime(2026, 11, 1, 9, tzinfo=UTC)),
        ({}, "2026-11-01 10:00:00+01:00", dt.datetime(2026, 11, 1, 9, tzinfo=UTC)),
        ({}, "2026-11-01T09:00:00.123456789Z", dt.datetime(2026, 11, 1, 9, 0, 0, 123456, tzinfo=UTC)),
        ({"zone": "Europe/Berlin"}, "2026-11-01T10:00:00", dt.datetime(2026, 11, 1, 9, tzinfo=UTC)),
        ({"format": "unix_s"}, 1_793_523_600, dt.datetime(2026, 11, 1, 9, tzinfo=UTC)),
        ({"format": "unix_s"}, "1793523600.5", dt.datetime(2026, 11, 1, 9, 0, 0, 500000, tzinfo=UTC)),
        ({"format": "unix_ms"}, 1_793_523_600_123, dt.datetime(2026, 11, 1, 9, 0, 0, 123000, tzinfo=UTC)),
        ({"format": "unix_us"}, 1_793_523_600_000_001, dt.datetime(2026, 11, 1, 9, 0, 0, 1, tzinfo=UTC)),
        ({"format": "unix_ns"}, 1_793_523_600_000_001_999, dt.datetime(2026, 11, 1, 9, 0, 0, 1, tzinfo=UTC)),
        ({"format": "%d.%m.%Y %H:%M %z"}, "01.11.2026 09:00 +0000", dt.datetime(2026, 11, 1, 9, tzinfo=UTC)),
        ({"format": "%d/%m/%Y %H:%M", "zone": "+02:00"}, "01/11/2026 11:00", dt.datetime(2026, 11, 1, 9, tzinfo=UTC)),
    ],
)
def test_time_formats(spec: dict[str, str], value: object, expected: dt.datetime) -> None:
    assert TimeFormat.parse_spec(spec).parse(value) == expected


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        ({}, "2026-11-01T09:00:00"),  # ISO without a zone and no zone given
        ({}, "yesterday"),
        ({}, 17),
        ({"format": "unix_ms"}, "soon"),
        ({"format": "unix_s"}, True),
        ({"format": "unix_s"}, 1e300),
        ({"format": "%Y-%m-%d %z"}, "2026-11-01"),
    ],
)
def test_bad_times_are_value_errors(spec: dict[str, str], value: object) -> None:
    with pytest.raises(ValueMappingError):
        TimeFormat.parse_spec(spec).parse(value)


def test_a_pattern_without_a_zone_needs_one() -> None:
    with pytest.raises(MappingFileError, match="has no zone"):
        TimeFormat.parse_spec({"format": "%Y-%m-%d %H:%M"})
    with pytest.raises(MappingFileError, match="unknown time zone"):
        TimeFormat.parse_spec({"format": "iso", "zone": "Mars/Olympus"})
    with pytest.raises(MappingFileError, match="unknown time format"):
        TimeFormat.parse_spec({"format": "rfc822"})


BASE = {"columns": {"stream_id": "run", "event_type": {"const": "llm_response"}}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"columns": {"stream_id": "run"}}, "event_type is required"),
        ({"columns": {**BASE["columns"], "tokens": "t"}}, "'tokens' is not a canonical column"),
        ({**BASE, "defaults": {"colour": "red"}}, "'colour' is not a canonical column"),
        ({**BASE, "extra": {}}, "unknown section"),
        ({"columns": {**BASE["columns"], "model": {"konst": 1}}}, "expected a column name"),
        ({"columns": {**BASE["columns"], "model": "$.a..b"}}, "JSON path"),
        ({**BASE, "data": {"fields": "text"}}, "fields must be a list or a table"),
        ({"columns": {**BASE["columns"], "data": "payload"}, "data": {"fields": ["x"]}}, "data is mapped"),
    ],
)
def test_mapping_file_errors_say_what_and_where(raw: dict[str, object], message: str) -> None:
    with pytest.raises(MappingFileError, match=message) as caught:
        Mapping.from_dict(raw, "m.toml")
    assert isinstance(caught.value, ToolkitError) and "m.toml" in str(caught.value)
    assert "docs/importers/generic.md" in str(caught.value)


def test_load_reports_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text("[columns\nstream_id = 1")
    with pytest.raises(MappingFileError, match="not valid TOML"):
        Mapping.load(path)


def test_map_record_coerces_to_canonical_types() -> None:
    mapping = Mapping.from_dict(
        {
            "columns": {
                "stream_id": "session",
                "event_type": {"const": "llm_response"},
                "occurred_at": "ts",
                "model": "$.response.model",
                "tokens_in": "$.usage.prompt_tokens",
                "tokens_out": "$.usage.completion_tokens",
                "cost_usd": "cost",
                "is_error": "failed",
                "duration_ms": "latency",
            },
            "time": {"format": "unix_ms"},
            "defaults": {"stream_type": "llm_calls", "agent": "billing"},
            "data": {"fields": ["prompt", "$.response.text"]},
            "metadata": {"fields": {"where": "region"}},
        }
    )
    record = {
        "session": 42,
        "ts": "1793523600000",
        "response": {"model": "gpt-4o", "text": "hi"},
        "usage": {"prompt_tokens": "12", "completion_tokens": 3.0},
        "cost": "0.0039",
        "failed": "no",
        "latency": "12.5",
        "prompt": "hello",
        "region": "eu",
        "ignored": 1,
    }
    event = mapping.map_record(record)
    assert event == {
        "stream_id": "42",
        "event_type": "llm_response",
        "occurred_at": dt.datetime(2026, 11, 1, 9, tzinfo=UTC),
        "model": "gpt-4o",
        "tokens_in": 12,
        "tokens_out": 3.0,
        "cost_usd": Decimal("0.0039"),
        "is_error": False,
        "duration_ms": 12.5,
        "stream_type": "llm_calls",
        "agent": "billing",
        "data": {"prompt": "hello", "text": "hi"},
        "metadata": {"where": "eu"},
    }


def test_unmapped_columns_go_to_data_by_default() -> None:
    mapping = Mapping.from_dict({"columns": {"stream_id": "s", "event_type": "t"}})
    event = mapping.map_record({"s": "r", "t": "x", "a": 1, "b": {"c": [1]}})
    assert event["data"] == {"a": 1, "b": {"c": [1]}} and event["metadata"] == {}


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("tokens_in", "many", "expected an integer"),
        ("model", {"a": 1}, "expected a string"),
        ("is_error", "maybe", "expected true or false"),
        ("cost_usd", "cheap", "expected a number"),
        ("duration_ms", "slow", "expected a number"),
    ],
)
def test_values_that_do_not_fit_name_the_column(column: str, value: object, message: str) -> None:
    mapping = Mapping.from_dict({"columns": {"stream_id": "s", "event_type": "t", column: "v"}})
    with pytest.raises(ValueMappingError, match=f"field '{column}': {message}"):
        mapping.map_record({"s": "r", "t": "x", "v": value})


def test_identity_mapping_refuses_foreign_columns() -> None:
    with pytest.raises(MappingFileError, match="'colour' is not a canonical column"):
        Mapping.identity(["stream_id", "event_type", "colour"], "f.csv")
    ident = Mapping.identity(["stream_id", "event_type", "data"], "f.csv")
    assert ident.map_record({"stream_id": "r", "event_type": "x", "data": '{"a": [1]}'})["data"] == {"a": [1]}


def test_sidecar_mapping_is_found_beside_the_file(tmp_path: Path) -> None:
    data = tmp_path / "calls.csv"
    assert sidecar(data) == tmp_path / "calls.mapping.toml"
    assert mapping_for(data, None) is None
    sidecar(data).write_text('[columns]\nstream_id = "s"\nevent_type = { const = "x" }\n')
    found = mapping_for(data, None)
    assert found is not None and "stream_id" in found.columns


def test_derive_ids_is_derive_id_for_every_row() -> None:
    frame = pl.DataFrame(
        {"f": ["csv"] * 3, "name": ["a.csv", "a.csv", "b/c.csv"], "n": [1, 2, 99], "d": ["x", "é", ""]}
    )
    expected = [derive_id(*row) for row in frame.iter_rows()]
    assert derive_ids(frame).to_list() == expected
