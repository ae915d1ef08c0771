from __future__ import annotations

import pytest

from toolkit.errors import EventValidationError
from toolkit.journal.prepare import parse_time


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0001-01-01T00:00:00+01:00", "out of range in UTC"),
        ("9999-12-31T23:59:59-01:00", "out of range in UTC"),
        ("2026-13-01T00:00:00.123456789Z", "not an ISO 8601 time"),
        ("2026-11-01T00:00:00", "no time zone"),
    ],
)
def test_times_outside_what_the_journal_stores_are_validation_errors(text: str, reason: str) -> None:
    with pytest.raises(EventValidationError, match=reason):
        parse_time(text, "occurred_at", 4)


def test_nanosecond_fractions_are_cut_to_microseconds() -> None:
    assert parse_time("2026-11-21T23:43:22.56699187Z", "occurred_at", 0).microsecond == 566991


def test_the_arrow_path_refuses_times_a_datetime_cannot_hold() -> None:
    import pyarrow as pa

    from toolkit.journal.prepare import TIMESTAMP, validate_table

    micros = pa.array([0, -62135596800 * 10**6 - 3600 * 10**6], pa.int64())  # 1970, then before year 1 (UTC)
    table = pa.table(
        {"stream_id": ["s", "s"], "event_type": ["x", "x"], "data": ["1", "2"], "occurred_at": micros.cast(TIMESTAMP)}
    )
    with pytest.raises(EventValidationError, match="out of range") as caught:
        validate_table(table)
    assert caught.value.context["index"] == 1
