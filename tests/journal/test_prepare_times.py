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
