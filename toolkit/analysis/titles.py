"""One line of "what happened" per event, for chains, timelines and compliance reports.

The replay API's explainers (``toolkit.analysis.explain.explain_event``) give the title and
summary; this module only adapts them to the (title, summary) pairs the timelines use.

>>> describe_event({"event_type": "user_message", "data": '{"text": "Book me a flight"}'})[1]
'Book me a flight'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from toolkit.analysis.explain import explain_event


def describe_event(row: Mapping[str, Any]) -> tuple[str, str]:
    """(title, summary) of one event row (a dict of canonical columns)."""
    e = explain_event(row)
    return e.title, e.summary
