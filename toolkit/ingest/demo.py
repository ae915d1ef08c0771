"""A deterministic synthetic fleet of AI agent runs: the demo journal.

``generate_demo`` yields Arrow tables of canonical events, each with columns from
``INPUT_SCHEMA`` and the same types, for ``journal.append_batch``. ``write_demo`` appends them.
One run is one stream (``stream_type`` ``agent_run``). A run goes user_message →
plan_created → turns of llm_request/llm_response and tool_called/tool_result pairs (with
state_updated and the odd error) → a final llm_response answer. Before its first side effect an
agent usually asks (an llm_response with a question) and the user replies (a user_message):
yes, or now and then no, after which the agent answers without the side effect.
``correlation_id`` names the user session, and a session can span up to three runs.

The generator models these things:

* five agents and five models. Token counts follow the OTel GenAI conventions:
  ``tokens_in`` includes cache reads and writes and ``tokens_out`` includes reasoning.
  ``cost_usd`` is exact under ``DEMO_PRICES``. OpenAI models report no cache writes and
  Anthropic models report no reasoning tokens (both null).
* tool calls linked by ``tool_call_id``. Calls with side effects carry an
  ``idempotency_key``. Each agent has a confirmation policy: most always ask before the first
  side effect of a run; ops-oncall skips the question in about one run in five. A tool call
  now and then fails with a transient error (a timeout, which took the 30000 ms it names, an
  HTTP 502/503, a connection reset); the model's next turn, caused by the failed result, calls
  the same tool with the same arguments (a new ``tool_call_id`` and ``idempotency_key``: the
  built-in rule ``exactly_once`` counts every later use of a key, failed or not) and it usually
  works. In a normal run about one retry in twenty fails again (about 0.5 % of runs): the
  agent then gives up (an ``error`` event), ``no_tool_failure_loop`` flags the two failures in
  a row and the answer says the run could not finish. LLM calls sometimes get rate limited, which
  gives an ``error`` event and a retried request.
* one W3C trace per run and a new span per event. ``causation_id`` is the event_id of the
  triggering event. The first event of a follow-up run points at the previous run's answer.
* about 3 % of runs breach a budget: many expensive uncached calls, more than $5 in all.
  About 3 % get stuck in a retry loop: the same failing tool call with identical arguments
  (and idempotency key), 2 to 4 times in a row, with the tool's permanent error. About 2.5 %
  of runs skip the confirmation: the agent writes without asking, or asks, hears no and writes
  anyway (an agent without side effects never does). The
  first event's ``metadata`` names the scenario (``{"demo_scenario": "budget_breach" |
  "retry_loop" | "skipped_confirmation" | "normal"}``). So the built-in rule
  ``confirmation_before_write`` fails on a few percent of runs: those of that scenario and
  ops-oncall's hasty ones.

The output depends only on the arguments, never on the clock. The same seed gives identical
tables for any ``batch_events``. Only ``Random.random`` and ``Random.getrandbits`` are used;
their streams are stable across Python versions. Event ids are UUID-shaped: the first four
groups come from the UUIDv5 of ``<seed>/<run>`` (``DEMO_NAMESPACE``) and the last group is the
event's number within the run in 12 decimal digits. Appending the same demo twice is
therefore idempotent.

>>> table = pa.concat_tables(generate_demo(runs=3))
>>> table.column("stream_id").unique().to_pylist()
['run-7-0000000', 'run-7-0000001', 'run-7-0000002']
>>> first = table.slice(0, 1).to_pylist()[0]
>>> first["event_type"], first["agent"], first["subject_id"], first["event_id"]
('user_message', 'code-reviewer', 'user-0004', '12ecccf3-d208-535f-a7b5-000000000001')
>>> cost_usd("claude-sonnet-4", tokens_in=10_000, tokens_out=500, tokens_cache_read=8_000)
Decimal('0.015900000')
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from array import array
from bisect import bisect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from hashlib import sha1
from operator import itemgetter
from random import Random
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from toolkit.journal.prepare import INPUT_SCHEMA, canonical_json

if TYPE_CHECKING:
    from toolkit.journal.store import AppendResult, Journal

__all__ = [
    "BUDGET_USD",
    "DEFAULT_START",
    "DEMO_NAMESPACE",
    "DEMO_PRICES",
    "DEMO_SCHEMA",
    "STREAM_TYPE",
    "DemoSummary",
    "ModelPrice",
    "cost_usd",
    "estimate_events",
    "generate_demo",
    "write_demo",
]

UTC = dt.UTC
DEFAULT_START: Final = dt.datetime(2026, 10, 1, tzinfo=UTC)
STREAM_TYPE: Final = "agent_run"
BUDGET_USD: Final = Decimal(5)  # what a budget-breach run spends more than
# the event-id namespace of the demo: uuid5(DEMO_NAMESPACE, "<seed>/<run>") names a run
DEMO_NAMESPACE: Final = uuid.UUID("0d5c1f7e-8a43-5b2e-9f61-3c7d2a9e4b10")

# Every INPUT_SCHEMA column except the ones the journal or the source would set.
DEMO_SCHEMA: Final = pa.schema(
    [f for f in INPUT_SCHEMA if f.name not in ("version", "source_type")]
)

_COST_TYPE = INPUT_SCHEMA.field("cost_usd").type
_TIME_TYPE = INPUT_SCHEMA.field("occurred_at").type
_US = 1_000_000
_DAY_US = 86_400 * _US


# ---------------------------------------------------------------------------- models and prices


@dataclass(frozen=True)
class ModelPrice:
    """List prices in USD per million tokens."""

    input: Decimal
    cache_read: Decimal
    cache_write: Decimal
    output: Decimal

    def per_token_nano(self) -> tuple[int, int, int, int]:
        """Prices in nano-dollars per token (exact: every price has at most 3 decimals)."""
        return (
            int(self.input * 1000),
            int(self.cache_read * 1000),
            int(self.cache_write * 1000),
            int(self.output * 1000),
        )


def _price(i: str, cr: str, cw: str, o: str) -> ModelPrice:
    return ModelPrice(Decimal(i), Decimal(cr), Decimal(cw), Decimal(o))


DEMO_PRICES: Final[Mapping[str, ModelPrice]] = {
    "gpt-4o": _price("2.50", "1.25", "2.50", "10.00"),
    "gpt-4o-mini": _price("0.15", "0.075", "0.15", "0.60"),
    "o3-mini": _price("1.10", "0.55", "1.10", "4.40"),
    "claude-sonnet-4": _price("3.00", "0.30", "3.75", "15.00"),
    "claude-haiku-4": _price("1.00", "0.10", "1.25", "5.00"),
}


_NANO_PRICES: Final = {name: p.per_token_nano() for name, p in DEMO_PRICES.items()}


def _cost_nano(
    prices: tuple[int, int, int, int], tokens_in: int, tokens_out: int, cache_read: int, cache_write: int
) -> int:
    p_in, p_cr, p_cw, p_out = prices
    return (
        (tokens_in - cache_read - cache_write) * p_in
        + cache_read * p_cr
        + cache_write * p_cw
        + tokens_out * p_out
    )


def cost_usd(
    model: str,
    tokens_in: int,
    tokens_out: int,
    tokens_cache_read: int = 0,
    tokens_cache_write: int = 0,
) -> Decimal:
    """The cost of one call under ``DEMO_PRICES``, as the demo records it.

    Uncached input, cache reads, cache writes and output (reasoning included) are priced
    separately.

    >>> cost_usd("gpt-4o", tokens_in=1000, tokens_out=100)
    Decimal('0.003500000')
    """
    nano = _cost_nano(_NANO_PRICES[model], tokens_in, tokens_out, tokens_cache_read, tokens_cache_write)
    return Decimal(nano).scaleb(-9)


@dataclass(frozen=True)
class _Model:
    name: str
    anthropic: bool
    reasoning: bool
    ttft_ms: tuple[int, int]
    us_per_token: int
    context: int
    max_tokens: int


_MODELS: Final = {
    m.name: m
    for m in (
        _Model("gpt-4o", False, False, (350, 900), 9_000, 128_000, 4096),
        _Model("gpt-4o-mini", False, False, (250, 600), 6_000, 128_000, 4096),
        _Model("o3-mini", False, True, (600, 2000), 5_000, 200_000, 16384),
        _Model("claude-sonnet-4", True, False, (500, 1400), 14_000, 200_000, 8192),
        _Model("claude-haiku-4", True, False, (300, 700), 7_000, 200_000, 8192),
    )
}


# ---------------------------------------------------------------------------- agents and tools


def _esc(text: str) -> str:
    """JSON-escaped string content, without the quotes (templates add them)."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _user_data(text: str) -> str:
    """The data of a user_message saying ``text`` (no template: replies have no slots)."""
    return f'{{"role":"user","text":"{_esc(text)}"}}'


# What users answer when an agent asks before a side effect, besides each tool's own ``yes`` and
# ``no``. The built-in rule confirmation_before_write must read each as intended (tests check it
# against its default confirm_pattern and reject_pattern).
_CONFIRMS: Final = (
    "Yes, go ahead",
    "yes please",
    "Sure, please do",
    "ok, go ahead.",
    "Yep, do it",
    "Sounds good — proceed.",
    "Yeah, go for it!",
    "Confirmed.",
)
_DECLINES: Final = (
    "No, wait",
    "No — hold on, I need to check with my manager first.",
    "not yet, thanks",
    "Wait, don't do that yet",
    "Cancel that, I changed my mind.",
    "Hmm, no. Let me think about it.",
)


@dataclass(frozen=True)
class _Tool:
    """A tool. Templates are canonical JSON with ``%(slot)s`` filled from the run context."""

    name: str
    args: str
    result: str
    ms: tuple[int, int]
    result_tokens: tuple[int, int]
    stuck_error: str  # the permanent failure a retry loop keeps hitting
    fresh: tuple[str, ...] = ()  # context slots drawn anew for every call
    side_effect: bool = False
    state: str | None = None  # state_updated data after a success
    # a side effect's confirmation exchange: the agent's question (a template), a reply that
    # confirms and one that declines (added to the generic ones), the answer after a decline
    ask: str = ""
    yes: str = ""
    no: str = ""
    held: str = ""

    # derived, for the hot path
    tag: str = field(init=False)  # the name, JSON-escaped
    call_data: str = field(init=False)  # tool_called data template
    result_data: str = field(init=False)  # tool_result data template (success)
    stuck_data: str = field(init=False)  # tool_result data of the stuck error
    ms_lo: int = field(init=False)  # latency in µs: ms_lo + [0, ms_spread)
    ms_spread: int = field(init=False)
    rt_lo: int = field(init=False)  # tokens the result adds to the context
    rt_spread: int = field(init=False)
    ask_text: str = field(init=False)  # the question, JSON-escaped (a template)
    held_text: str = field(init=False)  # the answer after a decline, JSON-escaped (a template)
    yes_data: tuple[str, ...] = field(init=False)  # user_message data that confirms
    no_data: tuple[str, ...] = field(init=False)  # user_message data that declines

    def __post_init__(self) -> None:
        derived = {
            "tag": _esc(self.name),
            "call_data": '{"args":' + self.args + "}",
            "result_data": '{"result":' + self.result + "}",
            "stuck_data": f'{{"error":"{_esc(self.stuck_error)}"}}',
            "ms_lo": self.ms[0] * 1000,
            "ms_spread": (self.ms[1] - self.ms[0]) * 1000,
            "rt_lo": self.result_tokens[0],
            "rt_spread": self.result_tokens[1] - self.result_tokens[0],
            "ask_text": _esc(self.ask),
            "held_text": _esc(self.held),
            "yes_data": tuple(_user_data(x) for x in (*_CONFIRMS, self.yes) if x),
            "no_data": tuple(_user_data(x) for x in (*_DECLINES, self.no) if x),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)


_TRANSIENT_ERRORS: Final = (
    "timeout after 30000 ms",
    "HTTP 503 Service Unavailable",
    "connection reset by peer",
    "HTTP 502 Bad Gateway from upstream",
)

_TRANSIENT_DATA: Final = {m: f'{{"error":"{_esc(m)}"}}' for m in _TRANSIENT_ERRORS}
_TIMEOUT: Final = _TRANSIENT_ERRORS[0]
_TIMEOUT_US: Final = 30_000 * 1000  # a timed-out call took the timeout: 30000 ms, not more

_TOOLS: Final = {
    t.name: t
    for t in (
        # flight-booker
        _Tool(
            "search_flights",
            '{"cabin":"%(cabin)s","date":"%(travel_date)s","destination":"%(dest)s",'
            '"origin":"%(origin)s","passengers":%(pax)s}',
            '{"flights":[{"flight":"%(flight)s","price_usd":%(fare)s},'
            '{"flight":"%(flight2)s","price_usd":%(fare2)s}]}',
            (800, 4000), (300, 1400),
            "400 Bad Request: date outside the booking window",
            fresh=("flight2", "fare2"),
        ),
        _Tool(
            "get_fare_rules",
            '{"fare_class":"%(fare_class)s","flight":"%(flight)s"}',
            '{"change_fee_usd":%(fee)s,"changeable":%(flag)s,"refundable":%(flag2)s}',
            (200, 900), (150, 600),
            "404 fare class not found",
        ),
        _Tool(
            "check_seat_map",
            '{"flight":"%(flight)s"}',
            '{"available":%(seats)s,"flight":"%(flight)s"}',
            (300, 1200), (100, 400),
            "409 seat map locked by another session",
            fresh=("seats",),
        ),
        _Tool(
            "book_flight",
            '{"cabin":"%(cabin)s","flight":"%(flight)s","passenger":"%(passenger)s",'
            '"price_usd":%(fare)s}',
            '{"pnr":"%(ref)s","status":"confirmed"}',
            (1500, 6000), (60, 160),
            "409 Conflict: fare no longer available",
            side_effect=True,
            state='{"changes":{"booking":"%(ref)s","status":"booked"}}',
            ask="I can book %(flight)s on %(travel_date)s for $%(fare)s (%(cabin)s) for %(passenger)s. "
            "Shall I go ahead?",
            yes="yep, book it",
            no="no, don't book it yet",
            held="OK, I have not booked anything. %(flight)s at $%(fare)s is still open if you "
            "change your mind.",
        ),
        _Tool(
            "send_email",
            '{"template":"%(email_template)s","to":"%(user)s"}',
            '{"message_id":"<%(ref2)s@mail.example>","status":"queued"}',
            (150, 700), (40, 90),
            "550 mailbox unavailable",
            side_effect=True,
            state='{"changes":{"notified":true}}',
            ask="Shall I send you the %(email_template)s email now?",
            yes="Yes, send it",
            no="don't send it yet",
            held="Understood, I have not sent the email. Ask me whenever you want it.",
        ),
        # support-triage
        _Tool(
            "lookup_customer",
            '{"customer_id":"%(user)s"}',
            '{"customer_id":"%(user)s","orders":%(orders)s,"tier":"%(tier)s"}',
            (40, 250), (80, 300),
            "404 customer not found",
        ),
        _Tool(
            "get_order",
            '{"order_id":"%(order)s"}',
            '{"items":["%(product)s"],"order_id":"%(order)s","status":"%(order_status)s",'
            '"total_usd":%(amount)s}',
            (50, 300), (120, 500),
            "404 order not found",
        ),
        _Tool(
            "search_kb",
            '{"query":"%(kb_query)s","top_k":5}',
            '{"articles":["%(kb_article)s","%(kb_article2)s"]}',
            (120, 800), (600, 2500),
            "index 'kb-prod' is read-only",
            fresh=("kb_query", "kb_article", "kb_article2"),
        ),
        _Tool(
            "issue_refund",
            '{"amount_usd":%(amount)s,"order_id":"%(order)s","reason":"%(issue)s"}',
            '{"refund_id":"re_%(ref)s","status":"succeeded"}',
            (600, 2500), (50, 120),
            "402 card_declined: refund exceeds the captured amount",
            side_effect=True,
            state='{"changes":{"refund":"re_%(ref)s","status":"refunded"}}',
            ask="I can refund $%(amount)s on order %(order)s because the %(product)s %(issue)s. "
            "Do you want me to go ahead?",
            yes="Yes please, refund it",
            no="No, hold off on the refund for now",
            held="OK, no refund for now. Order %(order)s stays as it is; reply here if you want "
            "one later.",
        ),
        _Tool(
            "create_ticket",
            '{"priority":"%(priority)s","queue":"%(queue)s","summary":"%(product)s: %(issue)s"}',
            '{"ticket":"SUP-%(num)s"}',
            (200, 900), (30, 80),
            "403 queue is closed",
            side_effect=True,
            state='{"changes":{"ticket":"SUP-%(num)s"}}',
            ask="I'd like to open a %(priority)s-priority ticket with our %(queue)s team. "
            "Shall I proceed?",
            yes="sure, open the ticket",
            no="No ticket please, I'll wait a few days",
            held="Fine, I have not opened a ticket. Order %(order)s is %(order_status)s.",
        ),
        # code-reviewer
        _Tool(
            "fetch_diff",
            '{"pr":%(pr)s,"repo":"%(repo)s"}',
            '{"additions":%(adds)s,"deletions":%(dels)s,"files":["%(path)s"]}',
            (200, 1500), (2000, 9000),
            "404 pull request not found",
        ),
        _Tool(
            "search_code",
            '{"query":"%(symbol)s","repo":"%(repo)s"}',
            '{"matches":%(matches)s}',
            (100, 900), (300, 1800),
            "429 secondary rate limit",
            fresh=("symbol", "matches"),
        ),
        _Tool(
            "get_file",
            '{"path":"%(path)s","ref":"pull/%(pr)s/head","repo":"%(repo)s"}',
            '{"lines":%(lines)s,"path":"%(path)s"}',
            (50, 400), (800, 6000),
            "404 path not found at ref",
            fresh=("lines",),
        ),
        _Tool(
            "run_tests",
            '{"pr":%(pr)s,"repo":"%(repo)s","suite":"%(suite)s"}',
            '{"failed":%(failed)s,"passed":%(passed)s}',
            (15_000, 240_000), (200, 1500),
            "CI runner exited with code 137 (OOMKilled)",
            fresh=("suite", "failed"),
        ),
        _Tool(
            "post_review_comment",
            '{"body":"%(review)s","pr":%(pr)s,"repo":"%(repo)s"}',
            '{"comment_id":%(num)s,"url":"https://git.example/%(repo)s/pull/%(pr)s#c%(num)s"}',
            (200, 800), (40, 100),
            "422 Unprocessable Entity: line is outside the diff",
            side_effect=True,
            state='{"changes":{"review":"%(verdict)s"}}',
            ask='My review of %(repo)s#%(pr)s: "%(review)s". Shall I post it on the PR?',
            yes="Yes, post it",
            no="Don't post it, I'll fix it first",
            held="OK, nothing posted. My notes on %(repo)s#%(pr)s: %(review)s.",
        ),
        # research-assistant
        _Tool(
            "web_search",
            '{"query":"%(topic)s %(qualifier)s","top_k":8}',
            '{"results":["%(url)s","%(url2)s","%(url3)s"]}',
            (400, 2500), (400, 1200),
            "401 invalid API key",
            fresh=("qualifier", "url", "url2", "url3"),
        ),
        _Tool(
            "fetch_url",
            '{"url":"%(url)s"}',
            '{"bytes":%(bytes)s,"status":200,"title":"%(title)s"}',
            (300, 6000), (1500, 9000),
            "403 Forbidden (robots.txt disallows)",
            fresh=("url", "bytes", "title"),
        ),
        _Tool(
            "read_pdf",
            '{"pages":"1-%(pages)s","url":"%(pdf)s"}',
            '{"chars":%(chars)s,"pages":%(pages)s}',
            (1000, 9000), (3000, 14_000),
            "PDF is encrypted",
            fresh=("pages", "chars"),
        ),
        # ops-oncall
        _Tool(
            "get_alert",
            '{"alert":"%(alert)s","service":"%(service)s"}',
            '{"severity":"%(severity)s","since":"%(day)sT%(hhmm)s:00Z","value":%(value)s}',
            (50, 300), (80, 200),
            "alert not found",
        ),
        _Tool(
            "query_metrics",
            '{"metric":"%(metric)s","region":"%(region)s","service":"%(service)s",'
            '"window":"%(window)s"}',
            '{"max":%(value)s,"points":%(points)s}',
            (200, 2000), (300, 2500),
            'parse error: unexpected "}" in PromQL',
            fresh=("metric", "window", "value", "points"),
        ),
        _Tool(
            "get_logs",
            '{"level":"error","limit":200,"service":"%(service)s","since":"%(window)s"}',
            '{"lines":%(loglines)s,"top_error":"%(log_error)s"}',
            (300, 4000), (1000, 7000),
            "query exceeded 10000 lines",
            fresh=("window", "loglines", "log_error"),
        ),
        _Tool(
            "get_runbook",
            '{"alert":"%(alert)s"}',
            '{"steps":%(steps)s,"url":"https://runbooks.example/%(alert)s"}',
            (60, 300), (400, 1600),
            "404 no runbook for alert",
        ),
        _Tool(
            "restart_service",
            '{"region":"%(region)s","service":"%(service)s","strategy":"rolling"}',
            '{"pods_restarted":%(pods)s,"status":"ok"}',
            (4000, 30_000), (40, 90),
            'RBAC: cannot patch deployments in namespace "prod"',
            side_effect=True,
            state='{"changes":{"%(service)s":"restarted"}}',
            ask="A rolling restart of %(service)s in %(region)s should clear %(alert)s. "
            "Shall I restart it?",
            yes="Yes, restart it",
            no="No! Not during peak traffic",
            held="Holding off: %(service)s in %(region)s was not restarted. %(alert)s is still "
            "firing; I'll keep watching.",
        ),
        _Tool(
            "post_incident_update",
            '{"channel":"#incidents","text":"%(service)s: %(status_text)s"}',
            '{"ok":true,"ts":"%(num)s.000200"}',
            (150, 600), (30, 60),
            "channel_not_found",
            side_effect=True,
            ask='Shall I post "%(service)s: %(status_text)s" to #incidents?',
            yes="ok, post it",
            no="not yet, wait for the fix",
            held="OK, no update posted to #incidents yet.",
        ),
        _Tool(
            "page_human",
            '{"escalation":"%(team)s","severity":"%(severity)s"}',
            '{"incident":"INC-%(num)s","status":"triggered"}',
            (200, 900), (30, 70),
            "escalation policy not found",
            side_effect=True,
            state='{"changes":{"escalated_to":"%(team)s"}}',
            ask="This needs a human. Shall I page %(team)s (%(severity)s)?",
            yes="Yes, page them",
            no="No, don't page anyone yet",
            held="OK, nobody paged. I'll keep an eye on %(service)s.",
        ),
    )
}


@dataclass(frozen=True)
class _Agent:
    name: str
    weight: float
    models: tuple[tuple[str, float], ...]
    budget_model: str  # the expensive model a budget breach runs on
    system_tokens: int
    script: tuple[tuple[str, float], ...]  # (tool, probability it is part of a run)
    pools: Mapping[str, tuple[object, ...]]  # str: JSON string content; others: JSON values
    asks: tuple[str, ...]
    follow_ups: tuple[str, ...]
    answers: tuple[str, ...]
    # the confirmation policy: the share of runs in which the agent asks the user before its
    # first side effect (the rest write straight away)
    confirms: float = 1.0


_AIRPORTS: Final = (
    ("SFO", "San Francisco"), ("JFK", "New York"), ("LHR", "London"), ("CDG", "Paris"),
    ("ZRH", "Zürich"), ("GRU", "São Paulo"), ("NRT", "Tokyo"), ("SIN", "Singapore"),
    ("SEA", "Seattle"), ("ORD", "Chicago"), ("FRA", "Frankfurt"), ("MEX", "Mexico City"),
    ("YYZ", "Toronto"), ("BOS", "Boston"), ("DXB", "Dubai"), ("SYD", "Sydney"),
)
_AIRPORTS_ESCAPED: Final = tuple((_esc(code), _esc(city)) for code, city in _AIRPORTS)
_FAILED_ANSWER: Final = _esc(
    "Sorry, I could not finish this: a tool kept failing. I have logged the problem; "
    "please try again later."
)
# the answer after a call failed with a transient error and its retry failed too
_GAVE_UP_ANSWER: Final = "Sorry, I could not finish this: %s failed twice (%s). Please try again later."

_AGENTS: Final = (
    _Agent(
        "flight-booker",
        0.22,
        (("gpt-4o", 0.55), ("gpt-4o-mini", 0.45)),
        "gpt-4o",
        2400,
        (
            ("search_flights", 1.0), ("search_flights", 0.3), ("get_fare_rules", 0.6),
            ("check_seat_map", 0.4), ("book_flight", 0.85), ("send_email", 0.8),
        ),
        {
            "cabin": ("economy", "premium economy", "business"),
            "pax": (1, 1, 1, 2, 2, 3, 4),
            "passenger": (
                "Ana García", "Liam O'Brien", "Zoë Müller", "Wei Zhang", "Priya Natarajan",
                'Sam "Sully" Sullivan', "Kwame Mensah", "Jean Dupont",
            ),
            "flight": ("UA 1532", "LH 455", "AF 83", "BA 286", "SQ 31", "NH 7", "AC 759", "LX 38"),
            "flight2": ("DL 404", "AA 100", "EK 215", "QF 12", "KL 605", "IB 6251"),
            "fare": (189, 246, 412, 587, 903, 1290, 2875),
            "fare2": (205, 318, 455, 640, 1120, 3010),
            "fare_class": ("Y", "M", "K", "W", "J"),
            "fee": (0, 75, 150, 300),
            "flag": (True, False),
            "flag2": (False, False, True),
            "seats": (["12A", "14C", "27F"], ["3A"], [], ["31B", "31C"]),
            "email_template": ("itinerary", "booking_confirmation"),
        },
        (
            "Book me a flight from %(origin_city)s to %(dest_city)s on %(travel_date)s, "
            "%(pax)s passenger(s), %(cabin)s.",
            "I need to get to %(dest_city)s by %(travel_date)s — cheapest option from "
            "%(origin)s please",
            "Can you find a %(cabin)s seat %(origin)s→%(dest)s around %(travel_date)s? "
            "Window seat if possible.",
            'My colleague "%(passenger)s" needs a ticket to %(dest_city)s on %(travel_date)s.',
        ),
        (
            "Actually, can you make it %(cabin)s instead?",
            "Thanks! Can you also email me the itinerary?",
            "Is the fare on %(flight)s refundable?",
        ),
        (
            "Booked %(flight)s %(origin)s→%(dest)s on %(travel_date)s for $%(fare)s. "
            "Confirmation %(ref)s; the itinerary is in your inbox.",
            "I found %(flight)s at $%(fare)s and %(flight2)s at $%(fare2)s. "
            "I booked the first one (PNR %(ref)s).",
            "Done — %(passenger)s is on %(flight)s, %(cabin)s, %(travel_date)s.",
        ),
    ),
    _Agent(
        "support-triage",
        0.30,
        (("claude-haiku-4", 0.6), ("gpt-4o-mini", 0.3), ("claude-sonnet-4", 0.1)),
        "claude-sonnet-4",
        3100,
        (
            ("lookup_customer", 1.0), ("get_order", 0.8), ("search_kb", 0.7),
            ("search_kb", 0.2), ("issue_refund", 0.35), ("create_ticket", 0.3),
            ("send_email", 0.6),
        ),
        {
            "product": (
                "Aero Kettle 2", "Nimbus Headphones", "Trail Backpack 40L", "SmartPlug Mini",
                'Desk Lamp "Halo"', "Café Grinder Pro",
            ),
            "issue": (
                "arrived damaged", "never arrived", "was charged twice",
                "stopped working after a week", "is missing a part",
            ),
            "order": tuple(f"ORD-10{i}" for i in range(2417, 2480, 7)),
            "orders": (1, 2, 3, 5, 8, 13),
            "tier": ("free", "plus", "pro"),
            "order_status": ("delivered", "in_transit", "returned", "processing"),
            "amount": (19, 49, 79, 129, 249),
            "kb_query": (
                "refund policy damaged item", "lost parcel claim", "double charge",
                "warranty replacement", "missing parts",
            ),
            "kb_article": ("KB-101 Refunds", "KB-204 Lost parcels", "KB-310 Billing errors"),
            "kb_article2": ("KB-412 Warranty", "KB-518 Returns & exchanges", "KB-007 Contact us"),
            "priority": ("low", "normal", "high", "urgent"),
            "queue": ("billing", "logistics", "hardware"),
            "email_template": ("refund_confirmation", "ticket_created", "apology"),
        },
        (
            "My order %(order)s (%(product)s) %(issue)s. What can you do?",
            "Hi, the %(product)s %(issue)s — order %(order)s. I'd like a refund.",
            "Where is my %(product)s? Order %(order)s, it's been two weeks!!",
            "Order %(order)s: the %(product)s %(issue)s. Second time this happens \\o/",
        ),
        (
            "Thanks. How long until the refund shows up?",
            "Can you escalate this please?",
            "Also, can you check order %(order)s again?",
        ),
        (
            "I'm sorry about the %(product)s. I refunded $%(amount)s on order %(order)s "
            "(re_%(ref)s); expect it within 5–10 business days.",
            "I opened ticket SUP-%(num)s with our %(queue)s team; they reply within 24 hours.",
            "Your order %(order)s is %(order_status)s. I've sent you the details by email.",
        ),
    ),
    _Agent(
        "code-reviewer",
        0.18,
        (("claude-sonnet-4", 0.65), ("o3-mini", 0.35)),
        "claude-sonnet-4",
        4200,
        (
            ("fetch_diff", 1.0), ("search_code", 0.6), ("search_code", 0.3),
            ("get_file", 0.5), ("run_tests", 0.7), ("post_review_comment", 0.9),
        ),
        {
            "repo": ("acme/payments", "acme/web", "acme/infra", "acme/mobile-app", "acme/ml-platform"),
            "pr": tuple(range(1180, 1480, 13)),
            "path": (
                "src/billing/invoice.py", "web/src/Checkout.tsx", "terraform/modules/vpc/main.tf",
                "app/src/main/java/com/acme/Login.kt", "pkg/api/handler.go", "docs/README.md",
            ),
            "adds": (3, 12, 48, 120, 410, 1290),
            "dels": (0, 2, 17, 60, 388),
            "symbol": ("parse_amount", "retry_policy", "useCart", "rate_limiter", "TODO", "unsafe {"),
            "matches": (0, 1, 4, 12, 37),
            "lines": (40, 120, 310, 880, 2400),
            "suite": ("unit", "integration", "e2e"),
            "failed": (0, 0, 0, 1, 3),
            "passed": (212, 480, 1337, 2904),
            "review": (
                "LGTM, one nit: prefer Decimal for money",
                "Please add a test for the empty-cart path",
                'This changes "retry_policy" semantics — needs a migration note',
                "Blocking: the Terraform change opens 0.0.0.0/0 on port 22",
            ),
            "verdict": ("approved", "changes_requested", "commented"),
        },
        (
            "Review PR #%(pr)s in %(repo)s please",
            "Can you check %(repo)s#%(pr)s? It touches %(path)s",
            "Is PR %(pr)s in %(repo)s safe to merge before the freeze?",
        ),
        (
            "I pushed a fix, can you look again?",
            "What about the tests — are they flaky or real failures?",
        ),
        (
            "Reviewed %(repo)s#%(pr)s: %(review)s.",
            "PR #%(pr)s looks good to merge; tests pass (%(passed)s passed).",
            "I left comments on %(path)s; the main issue: %(review)s.",
        ),
    ),
    _Agent(
        "research-assistant",
        0.18,
        (("claude-sonnet-4", 0.4), ("gpt-4o", 0.35), ("o3-mini", 0.25)),
        "claude-sonnet-4",
        1900,
        (
            ("web_search", 1.0), ("fetch_url", 0.9), ("web_search", 0.6), ("fetch_url", 0.6),
            ("read_pdf", 0.3), ("fetch_url", 0.3), ("web_search", 0.2),
        ),
        {
            "topic": (
                "solid-state battery density", "EU AI Act obligations for GPAI models",
                "CRISPR off-target detection", "ocean heat content trends",
                "small modular reactor costs", "LLM evaluation contamination",
            ),
            "qualifier": ("2026 review", "meta-analysis", "criticism", "site:arxiv.org",
                          "latest numbers", '"state of the art"'),
            "url": (
                "https://arxiv.org/abs/2509.01234", "https://www.nature.com/articles/s41586-025-0912-x",
                "https://en.wikipedia.org/wiki/Solid-state_battery",
                "https://eur-lex.europa.eu/eli/reg/2024/1689/oj",
                "https://example.org/report?id=42&lang=de",
            ),
            "url2": ("https://www.iea.org/reports/nuclear-2026", "https://arxiv.org/abs/2510.04411"),
            "url3": ("https://ourworldindata.org/energy", "https://doi.org/10.1038/s41586-026-01234-5"),
            "bytes": (18_230, 64_512, 240_118, 1_048_576),
            "title": ("A survey of recent results", "Results — 2026 edition", 'Why "progress" stalled', "FAQ"),
            "pdf": ("https://arxiv.org/pdf/2509.01234", "https://example.org/whitepaper.pdf"),
            "pages": (4, 12, 38, 120),
            "chars": (9_800, 41_200, 163_000, 505_000),
        },
        (
            "Summarise the latest research on %(topic)s, with sources.",
            "What changed in %(topic)s this year? Give me 5 bullet points.",
            "Write a one-page brief on %(topic)s for the board — cite everything.",
        ),
        (
            "Can you go deeper on the second point?",
            "Please add a table comparing the sources.",
            "Which of these sources is most reliable?",
        ),
        (
            "Here is a brief on %(topic)s with 6 sources; the strongest evidence is from %(url)s.",
            "Five points on %(topic)s: … (sources: %(url)s, %(url2)s).",
            "Summary: the evidence on %(topic)s is mixed; see %(url3)s for the best overview.",
        ),
    ),
    _Agent(
        "ops-oncall",
        0.12,
        (("claude-sonnet-4", 0.4), ("o3-mini", 0.35), ("gpt-4o", 0.25)),
        "claude-sonnet-4",
        3600,
        (
            ("get_alert", 1.0), ("query_metrics", 0.9), ("get_logs", 0.8), ("query_metrics", 0.4),
            ("get_runbook", 0.6), ("restart_service", 0.3), ("post_incident_update", 0.5),
            ("page_human", 0.2),
        ),
        {
            "service": ("checkout-api", "auth-service", "search-indexer", "payments-worker", "edge-gateway"),
            "alert": ("HighErrorRate", "LatencyP99Breach", "PodCrashLooping", "DiskPressure", "QueueBacklog"),
            "region": ("us-east-1", "eu-west-1", "ap-southeast-1"),
            "metric": ("http_5xx_rate", "p99_latency_ms", "container_restarts", "queue_depth"),
            "window": ("15m", "1h", "6h", "24h"),
            "value": (0.07, 2.5, 14, 870, 12_400),
            "points": (60, 240, 1440),
            "loglines": (3, 48, 200),
            "log_error": (
                "connection refused: dial tcp 10.0.3.7:5432",
                "panic: runtime error: index out of range [3] with length 3",
                'Error: "ETIMEDOUT" at C:\\svc\\worker.js:42',
                "OOMKilled",
            ),
            "severity": ("critical", "warning", "page"),
            "steps": (3, 5, 8),
            "pods": (3, 6, 12),
            "status_text": ("investigating", "mitigated, monitoring", "resolved"),
            "team": ("platform-primary", "db-oncall", "payments-sre"),
        },
        (
            "PagerDuty: %(alert)s on %(service)s in %(region)s — investigate",
            "%(service)s is flapping in %(region)s, can you take a look?",
            "Why did %(alert)s fire for %(service)s at %(hhmm)s UTC?",
        ),
        (
            "It fired again. Same thing?",
            "Can you post an update to #incidents?",
        ),
        (
            "%(alert)s on %(service)s (%(region)s): root cause looks like %(log_error)s. "
            "Mitigated; monitoring.",
            "Restarted %(service)s in %(region)s; error rate back to baseline.",
            "Escalated to %(team)s; findings posted in #incidents.",
        ),
        confirms=0.8,  # in a hurry during incidents, it sometimes acts without asking
    ),
)

_HOUR_WEIGHTS: Final = (2, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 7, 8, 8, 8, 7, 6, 5, 4, 4, 3, 3, 2)
_SCENARIOS: Final = ("normal", "budget_breach", "retry_loop", "skipped_confirmation")
# every block of 32 runs holds one budget breach, one retry loop and one run that skips the
# confirmation (unless the agent drawn for it has no side effects: then it is a normal run)
_BLOCK: Final = 32
_DECLINE_RATE: Final = 0.1  # how often a user says no when the agent asks
_FAIL_RATE: Final = 0.04  # how often a tool call fails with a transient error
_AGAIN_RATE: Final = 0.05  # how often its retry (same arguments) fails again, in a normal run
_ASK_WHEN_SKIPPING: Final = 0.35  # a skipping run that asks, hears no and writes anyway
_CHUNK_EVENTS: Final = 20_000  # events converted to Arrow at a time
_EVENTS_PER_RUN: Final = 25  # about the mean, measured over 20,000 runs: 26.1 (retries included)

_USER_MESSAGE, _PLAN_CREATED, _LLM_REQUEST, _LLM_RESPONSE, _TOOL_CALLED, _TOOL_RESULT, _STATE_UPDATED, _ERROR = (
    range(8)
)
_EVENT_TYPES: Final = (
    "user_message", "plan_created", "llm_request", "llm_response",
    "tool_called", "tool_result", "state_updated", "error",
)


def _escape_pool(values: tuple[object, ...]) -> tuple[str, ...]:
    return tuple(_esc(v) if isinstance(v, str) else canonical_json(v) for v in values)


@dataclass(frozen=True)
class _AgentTables:
    """An agent with every text pre-escaped for JSON templates."""

    agent: _Agent
    pools: dict[str, tuple[str, ...]]
    asks: tuple[str, ...]
    follow_ups: tuple[str, ...]
    answers: tuple[str, ...]
    model_names: tuple[str, ...]
    model_cum: tuple[float, ...]
    tools: tuple[_Tool, ...]  # distinct tools of the script
    writes: tuple[_Tool, ...]  # those with side effects
    fresh: dict[str, tuple[tuple[str, tuple[str, ...]], ...]]  # tool → (slot, pool) redrawn per call


def _prepare_agent(a: _Agent) -> _AgentTables:
    cum, total = [], 0.0
    for _, w in a.models:
        total += w
        cum.append(total)
    tools = tuple(_TOOLS[n] for n in dict.fromkeys(n for n, _ in a.script))
    pools = {k: _escape_pool(tuple(v)) for k, v in a.pools.items()}
    return _AgentTables(
        a,
        pools,
        tuple(_esc(s) for s in a.asks),
        tuple(_esc(s) for s in a.follow_ups),
        tuple(_esc(s) for s in a.answers),
        tuple(m for m, _ in a.models),
        tuple(c / total for c in cum),
        tools,
        tuple(t for t in tools if t.side_effect),
        {t.name: tuple((slot, pools[slot]) for slot in t.fresh) for t in tools},
    )


# ---------------------------------------------------------------------------- columns


class _Batch:
    """Columns of one batch while it is generated.

    Per-event columns are typed arrays (read by Arrow without conversion). Per-run columns
    hold one value per run and are expanded by run length. Sparse columns hold values only
    for the event types that have them, in row order; ``to_table`` scatters them by type.
    """

    def __init__(self) -> None:
        self.code = array("b")
        self.at = array("q")  # occurred_at, µs since the epoch
        self.cause = array("q")  # row of the causing event in this batch, -1 for none
        self.data: list[str] = []
        # one entry per run
        self.run_end: list[int] = []  # rows so far after each run
        self.event_ids: list[str] = []  # the run's event ids, concatenated (36 chars each)
        self.cross_cause: list[str | None] = []  # cause of the first event (previous run)
        self.span_hex: list[str] = []  # 16 hex digits per event of the run
        self.stream_id: list[str] = []
        self.correlation_id: list[str] = []
        self.subject_id: list[str] = []
        self.agent: list[str] = []
        self.model: list[str] = []
        self.trace_id: list[str] = []
        self.metadata: list[str] = []  # of the run's first event; the others have {}
        # llm_response
        self.tokens_in: list[int] = []
        self.tokens_out: list[int] = []
        self.cache_read: list[int | None] = []
        self.cache_write: list[int | None] = []
        self.reasoning: list[int | None] = []
        self.cost_nano: list[int] = []
        # llm_response and tool_result
        self.duration_ms: list[float] = []
        # tool_called and tool_result
        self.tool_name: list[str] = []
        self.tool_call_id: list[str] = []
        # tool_called
        self.idempotency_key: list[str | None] = []
        # tool_result and error
        self.error: list[str | None] = []

    def __len__(self) -> int:
        return len(self.code)

    def to_table(self, source: str) -> pa.Table:
        n = len(self.code)
        codes = pa.Array.from_buffers(pa.int8(), n, [None, pa.py_buffer(self.code)])
        run_ends = pa.array(self.run_end, pa.int32())
        string = pa.string()

        def is_type(*types: int) -> pa.Array:
            if len(types) == 1:
                return pc.equal(codes, pa.scalar(types[0], pa.int8()))
            return pc.is_in(codes, value_set=pa.array(types, pa.int8()))

        def sparse(mask: pa.Array, values: list[Any], typ: pa.DataType) -> pa.Array:
            return pc.replace_with_mask(pa.nulls(n, typ), mask, pa.array(values, typ))

        def per_run(values: list[str]) -> pa.Array:
            ree = pa.RunEndEncodedArray.from_arrays(run_ends, pa.array(values, string))
            return pc.run_end_decode(ree)

        def fixed_width(text: str, width: int) -> pa.Array:
            raw = pa.py_buffer(text.encode("ascii"))
            return pa.Array.from_buffers(pa.binary(width), n, [None, raw])

        resp = is_type(_LLM_RESPONSE)
        tool = is_type(_TOOL_CALLED, _TOOL_RESULT)
        ids = fixed_width("".join(self.event_ids), 36)
        cause = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(self.cause)])
        first = pc.less(cause, 0)  # a run's first event, and only it, has no cause in the run
        cause = pc.if_else(first, pa.scalar(None, pa.int64()), cause)
        causation = pc.replace_with_mask(
            pc.take(ids, cause).cast(string), first, pa.array(self.cross_cause, string)
        )
        error = sparse(is_type(_TOOL_RESULT, _ERROR), self.error, string)
        # int nano-dollars, reinterpreted as DECIMAL(18, 9): same 128-bit integers, scale 9
        nano = pc.cast(sparse(resp, self.cost_nano, pa.int64()), pa.decimal128(19, 0))
        cost = pa.Array.from_buffers(_COST_TYPE, n, nano.buffers(), nano.null_count, nano.offset)
        trace_id = per_run(self.trace_id)
        span_id = fixed_width("".join(self.span_hex), 16).cast(string)
        zero = pc.equal(span_id, "0" * 16)  # a W3C span id must not be all zeros
        if pc.any(zero).as_py():
            span_id = pc.if_else(zero, "0" * 15 + "1", span_id)
        i64 = pa.int64()
        at = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(self.at)])
        cols = {
            "stream_id": per_run(self.stream_id),
            "stream_type": pa.repeat(pa.scalar(STREAM_TYPE, string), n),
            "event_id": ids.cast(string),
            "event_type": pa.array(_EVENT_TYPES, string).take(codes),
            "occurred_at": at.cast(_TIME_TYPE),
            "correlation_id": per_run(self.correlation_id),
            "causation_id": causation,
            "traceparent": pc.binary_join_element_wise("00", trace_id, span_id, "01", "-"),
            "trace_id": trace_id,
            "span_id": span_id,
            "model": pc.if_else(
                is_type(_LLM_REQUEST, _LLM_RESPONSE), per_run(self.model), pa.scalar(None, string)
            ),
            "tool_name": sparse(tool, self.tool_name, string),
            "tokens_in": sparse(resp, self.tokens_in, i64),
            "tokens_out": sparse(resp, self.tokens_out, i64),
            "tokens_cache_read": sparse(resp, self.cache_read, i64),
            "tokens_cache_write": sparse(resp, self.cache_write, i64),
            "tokens_reasoning": sparse(resp, self.reasoning, i64),
            "cost_usd": cost,
            "duration_ms": sparse(is_type(_LLM_RESPONSE, _TOOL_RESULT), self.duration_ms, pa.float64()),
            "is_error": pc.is_valid(error),
            "error": error,
            "data": pa.array(self.data, string),
            "metadata": pc.replace_with_mask(
                pa.repeat(pa.scalar("{}", string), n), first, pa.array(self.metadata, string)
            ),
            "agent": per_run(self.agent),
            "subject_id": per_run(self.subject_id),
            "tool_call_id": sparse(tool, self.tool_call_id, string),
            "idempotency_key": sparse(is_type(_TOOL_CALLED), self.idempotency_key, string),
            "source": pa.repeat(pa.scalar(source, string), n),
        }
        return pa.table(cols, schema=DEMO_SCHEMA)


# ---------------------------------------------------------------------------- the generator


_NAMESPACE_BYTES: Final = DEMO_NAMESPACE.bytes


def _run_prefix(name: str) -> str:
    """The first 24 characters of ``str(uuid5(DEMO_NAMESPACE, name))``, without the UUID object.

    >>> _run_prefix("7/0") == str(uuid.uuid5(DEMO_NAMESPACE, "7/0"))[:24]
    True
    """
    h = sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).hexdigest()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant}{h[17:20]}-"


@dataclass
class _Session:
    start_us: int
    agent: int
    user: int
    runs: int


@dataclass
class _DemoGenerator:
    runs: int
    seed: int
    start: dt.datetime
    days: int
    batch_events: int
    sessions: int = 0
    _agents: tuple[_AgentTables, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        if self.runs < 0:
            raise ValueError(f"runs must be >= 0, got {self.runs}")
        if self.days < 1:
            raise ValueError(f"days must be >= 1, got {self.days}")
        if self.batch_events < 1:
            raise ValueError(f"batch_events must be >= 1, got {self.batch_events}")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError(f"start must be timezone-aware, got {self.start.isoformat()}")
        self._agents = tuple(_prepare_agent(a) for a in _AGENTS)

    def _schedule(self, rng: Random) -> list[_Session]:
        """Sessions sorted by start: weekdays busier than weekends, a daily cycle."""
        rnd = rng.random
        agent_cum, total = [], 0.0
        for a in _AGENTS:
            total += a.weight
            agent_cum.append(total / sum(x.weight for x in _AGENTS))
        hour_cum, acc = [], 0
        for w in _HOUR_WEIGHTS:
            acc += w
            hour_cum.append(acc / sum(_HOUR_WEIGHTS))
        start_day = self.start.astimezone(UTC).date()
        day_cum, acc_f = [], 0.0
        for d in range(self.days):
            acc_f += 0.55 if (start_day + dt.timedelta(days=d)).weekday() >= 5 else 1.0
            day_cum.append(acc_f)
        day_cum = [c / acc_f for c in day_cum]
        n_users = max(20, self.runs // 6)
        sessions: list[_Session] = []
        left = self.runs
        while left > 0:
            x = rnd()
            k = min(left, 1 if x < 0.75 else 2 if x < 0.93 else 3)
            left -= k
            day = min(bisect(day_cum, rnd()), self.days - 1)
            hour = min(bisect(hour_cum, rnd()), 23)
            if day == self.days - 1 and hour > 20:  # leave room for follow-up runs
                hour -= 4
            at = day * _DAY_US + hour * 3600 * _US + int(rnd() * 3600 * _US)
            agent = min(bisect(agent_cum, rnd()), len(_AGENTS) - 1)
            user = int(n_users * rnd() ** 1.7)  # a few heavy users, a long tail
            sessions.append(_Session(at, agent, user, k))
        sessions.sort(key=lambda s: s.start_us)  # stable: ties keep drawing order
        return sessions

    def batches(self) -> Iterator[pa.Table]:
        rng = Random(self.seed)
        rnd = rng.random
        bits = rng.getrandbits
        sessions = self._schedule(rng)
        self.sessions = len(sessions)
        t0 = (self.start.astimezone(UTC) - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(
            microseconds=1
        )
        first_date = self.start.astimezone(UTC).date()
        dates = [_esc((first_date + dt.timedelta(days=i)).isoformat()) for i in range(self.days + 62)]
        source = f"toolkit.ingest.demo seed={self.seed}"
        batch = _Batch()
        chunks: list[pa.Table] = []  # converted parts of the table being filled
        rows = 0
        suffixes = [f"{i:012d}" for i in range(256)]
        run = 0
        block_budget = block_retry = block_skip = -1
        for s_idx, sess in enumerate(sessions):
            at = self._agents[sess.agent]
            a = at.agent
            x = rnd()
            model = at.model_names[min(bisect(at.model_cum, x), len(at.model_names) - 1)]
            ctx = self._context(at, rnd, sess.user, t0 + sess.start_us, first_date, dates)
            t = t0 + sess.start_us
            prev_answer: str | None = None
            correlation = f"session-{self.seed}-{s_idx:07d}"
            for k in range(sess.runs):
                if run % _BLOCK == 0:
                    block_budget = int(rnd() * _BLOCK)
                    block_retry = (block_budget + 1 + int(rnd() * (_BLOCK - 1))) % _BLOCK
                    block_skip = int(rnd() * (_BLOCK - 2))  # the k-th position still free
                    for taken in sorted((block_budget, block_retry)):
                        block_skip += block_skip >= taken
                pos = run % _BLOCK
                if pos == block_budget:
                    scenario = 1
                elif pos == block_retry:
                    scenario = 2
                else:
                    scenario = 3 if pos == block_skip and at.writes else 0
                ctx["ref"] = f"{bits(24):06X}"
                ctx["ref2"] = f"{bits(48):012x}"
                ctx["num"] = str(10_000 + int(rnd() * 90_000))
                first = len(batch)
                batch.stream_id.append(f"run-{self.seed}-{run:07d}")
                batch.correlation_id.append(correlation)
                batch.subject_id.append(ctx["user"])
                batch.agent.append(a.name)
                batch.trace_id.append(f"{bits(128) or 1:032x}")
                batch.metadata.append(f'{{"demo_scenario":"{_SCENARIOS[scenario]}"}}')
                ask = at.asks if k == 0 else at.follow_ups
                text = ask[int(rnd() * len(ask))] % ctx
                run_model = a.budget_model if scenario == 1 else model
                batch.model.append(run_model)
                batch.cross_cause.append(prev_answer)
                t, answer = self._run(batch, rng, at, run_model, scenario, ctx, t, text)
                count = len(batch) - first
                batch.run_end.append(first + count)
                # event ids: the run's UUIDv5 prefix + the event's number, 12 decimal digits
                prefix = _run_prefix(f"{self.seed}/{run}")
                while len(suffixes) <= count:
                    suffixes.append(f"{len(suffixes):012d}")
                batch.event_ids.append(prefix + prefix.join(suffixes[1 : count + 1]))
                batch.span_hex.append(bits(64 * count).to_bytes(8 * count, "little").hex())
                prev_answer = f"{prefix}{answer - first + 1:012d}"
                run += 1
                t += 20 * _US + int(rnd() * 900 * _US)  # the user reads and replies
                if rows + len(batch) >= self.batch_events or len(batch) >= _CHUNK_EVENTS:
                    # convert in small chunks: the Python lists stay small and their memory
                    # is reused, instead of paging in fresh memory for every big batch
                    chunks.append(batch.to_table(source))
                    rows += len(batch)
                    batch = _Batch()
                    if rows >= self.batch_events:
                        yield pa.concat_tables(chunks)
                        chunks, rows = [], 0
        if len(batch):
            chunks.append(batch.to_table(source))
        if chunks:
            yield pa.concat_tables(chunks)

    @staticmethod
    def _context(
        at: _AgentTables,
        rnd: Callable[[], float],
        user: int,
        at_us: int,
        first_date: dt.date,
        dates: list[str],
    ) -> dict[str, str]:
        """A session's context slots: the agent's pools drawn once, and the generic slots
        (user, day, hhmm, travel_date, origin/dest; ref, ref2 and num are set per run)."""
        ctx = {name: pool[int(rnd() * len(pool))] for name, pool in at.pools.items()}
        ctx["user"] = f"user-{user + 1:04d}"
        when = dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=at_us)
        day = (when.date() - first_date).days
        ctx["day"] = dates[day]
        ctx["hhmm"] = f"{when.hour:02d}:{when.minute:02d}"
        ctx["travel_date"] = dates[day + 3 + int(rnd() * 56)]
        i = int(rnd() * len(_AIRPORTS))
        j = (i + 1 + int(rnd() * (len(_AIRPORTS) - 1))) % len(_AIRPORTS)
        ctx["origin"], ctx["origin_city"] = _AIRPORTS_ESCAPED[i]
        ctx["dest"], ctx["dest_city"] = _AIRPORTS_ESCAPED[j]
        return ctx

    def _run(
        self,
        b: _Batch,
        rng: Random,
        at: _AgentTables,
        model_name: str,
        scenario: int,
        ctx: dict[str, str],
        t: int,
        text: str,
    ) -> tuple[int, int]:
        """Append one run's events; return the time of its last event and the answer's row.

        The hot path: events are appended column by column, without per-event objects.
        """
        rnd = rng.random
        bits = rng.getrandbits
        m = _MODELS[model_name]
        p_in, p_cr, p_cw, p_out = _NANO_PRICES[model_name]
        call_prefix = ("toolu_01" if m.anthropic else "call_") + f"{bits(64):016x}"
        codes = b.code
        code_a, at_a, cause_a, data_a = codes.append, b.at.append, b.cause.append, b.data.append
        tool_a, cid_a, idem_a = b.tool_name.append, b.tool_call_id.append, b.idempotency_key.append
        dur_a, err_a = b.duration_ms.append, b.error.append
        tin_a, tout_a, cr_a = b.tokens_in.append, b.tokens_out.append, b.cache_read.append
        cw_a, rs_a, cost_a = b.cache_write.append, b.reasoning.append, b.cost_nano.append
        tool_fresh = at.fresh

        def ev(code: int, when: int, caused_by: int, data: str) -> int:
            """Append an event; returns its row in the batch (what causation_id refers to)."""
            row = len(codes)
            code_a(code)
            at_a(when)
            cause_a(caused_by)
            data_a(data)
            return row

        # the conversation as the model sees it
        tools = at.tools
        n_tools = len(tools)
        prefix_tokens = at.agent.system_tokens + 180 * n_tools
        ctx_tokens = prefix_tokens + 40 + len(text) // 4
        messages = 2
        prev_in = 0
        calls = 0
        spent = 0
        budget = scenario == 1
        # transient failures: never in a retry-loop run, never twice for the same call (but its
        # retry): the next turn retries the call with the same arguments, which fails again one
        # time in twenty in a normal run (the agent then gives up) and never in the others
        fail_rate = 0.0 if scenario == 2 else _FAIL_RATE
        again_rate = _AGAIN_RATE if scenario == 0 else 0.0
        failed_calls: set[str] = set()
        # the transient failures of the latest turn: (tool, call data, result row, error)
        failures: list[tuple[_Tool, str, int, str]] = []
        gave_up: tuple[_Tool, str] | None = None  # the tool and error of a retry that failed again
        anthropic = m.anthropic
        reasoning_model = m.reasoning
        finish_tools = '"tool_use"' if anthropic else '"tool_calls"'
        finish_stop = '"end_turn"' if anthropic else '"stop"'
        rate_limit = f"429 Too Many Requests: rate limit exceeded for {model_name}"
        lo, spread = m.ttft_ms[0], m.ttft_ms[1] - m.ttft_ms[0]
        us_per_token = m.us_per_token
        cap = m.context - 8000
        req_head = f'{{"max_tokens":{m.max_tokens},"messages":'
        req_tail = f',"tools":{n_tools}}}'

        def llm(caused_by: int, visible_out: int, reasoning_out: int, data: str) -> int:
            """llm_request (→ rate limited → retried) → llm_response; returns the response row."""
            nonlocal t, messages, prev_in, spent, ctx_tokens
            req_data = f"{req_head}{messages}{req_tail}"
            t += 2_000 + int(rnd() * 40_000)
            req = len(codes)
            code_a(_LLM_REQUEST)
            at_a(t)
            cause_a(caused_by)
            data_a(req_data)
            if rnd() < 0.015:
                wait = 1000 + int(rnd() * 7000)
                t += 80_000 + int(rnd() * 200_000)
                err = ev(
                    _ERROR, t, req,
                    f'{{"code":"rate_limit_exceeded","retry_after_ms":{wait},"status":429}}',
                )
                err_a(rate_limit)
                t += wait * 1000
                req = ev(_LLM_REQUEST, t, err, req_data)
            if ctx_tokens > cap:
                ctx_tokens = cap - int(rnd() * 20_000)  # the agent drops old turns
            tin = ctx_tokens
            out = visible_out + reasoning_out
            if budget:  # caching switched off: every call pays full input price
                cr = cw = 0
            elif anthropic:
                if prev_in == 0:
                    cr, cw = 0, prefix_tokens
                elif tin >= prev_in and rnd() < 0.92:
                    cr, cw = prev_in, tin - prev_in
                else:  # the cache expired
                    cr, cw = 0, tin
            else:  # OpenAI caches prefixes of 1024+ tokens in 128-token steps
                base = prev_in or prefix_tokens
                cr = (base >> 7) << 7 if 1024 <= base <= tin and rnd() < 0.85 else 0
                cw = 0
            nano = (tin - cr - cw) * p_in + cr * p_cr + cw * p_cw + out * p_out
            spent += nano
            dur = (lo + int(rnd() * spread)) * 1000 + out * us_per_token + tin // 10
            t += dur
            resp = len(codes)
            code_a(_LLM_RESPONSE)
            at_a(t)
            cause_a(req)
            data_a(data)
            tin_a(tin)
            tout_a(out)
            cr_a(cr)
            cw_a(cw if anthropic else None)
            rs_a(None if anthropic else reasoning_out)
            cost_a(nano)
            dur_a(dur / 1000)
            prev_in = tin
            ctx_tokens = tin + visible_out
            messages += 1
            return resp

        def turn(
            caused_by: int,
            group: tuple[_Tool, ...],
            given: tuple[str, ...] | None = None,
            stuck: bool = False,
            key: str | None = None,
            again: float = 0.0,
        ) -> int:
            """One LLM turn calling one tool, or several in parallel; returns the last result's row.

            ``given`` (tool_called data, one per tool) repeats earlier calls: ``stuck`` ones (a
            retry loop's, with the idempotency ``key``) fail with the tool's permanent error, the
            others retry calls that failed with a transient error and fail again with probability
            ``again``. Transient failures are added to ``failures``.
            """
            nonlocal t, calls, ctx_tokens, messages
            cids = []
            listed = []
            for tool in group:
                calls += 1
                cid = f"{call_prefix}{calls:04d}"
                cids.append(cid)
                listed.append(f'{{"id":"{cid}","name":"{tool.tag}"}}')
            resp = llm(
                caused_by,
                30 + int(rnd() * 220) * len(group),
                150 + int(rnd() * 1500) if reasoning_model else 0,
                f'{{"finish_reason":{finish_tools},"tool_calls":[{",".join(listed)}]}}',
            )
            # tool_called, in the order the model listed them
            pending = []
            for n, (tool, cid) in enumerate(zip(group, cids, strict=True)):
                if given is None:
                    for slot, pool in tool_fresh[tool.name]:
                        ctx[slot] = pool[int(rnd() * len(pool))]
                    data = tool.call_data % ctx
                else:
                    data = given[n]
                t += 1_000 + int(rnd() * 20_000)
                row = len(codes)
                code_a(_TOOL_CALLED)
                at_a(t)
                cause_a(resp)
                data_a(data)
                tool_a(tool.name)
                cid_a(cid)
                idem_a((key or f"idem_{cid}") if tool.side_effect else None)
                dur = tool.ms_lo + int(rnd() * tool.ms_spread)
                msg: str | None = None
                if stuck:
                    msg = tool.stuck_error
                elif given is not None:
                    if rnd() < again:
                        msg = _TRANSIENT_ERRORS[int(rnd() * 4)]
                elif rnd() < fail_rate and data not in failed_calls:
                    failed_calls.add(data)
                    msg = _TRANSIENT_ERRORS[int(rnd() * 4)]
                if msg is _TIMEOUT:  # the client gave up at its timeout
                    dur = _TIMEOUT_US
                pending.append((t + dur, dur, tool, cid, row, msg, data))
            if len(pending) > 1:
                pending.sort(key=itemgetter(0))
            # tool_result (and state_updated), in the order the calls finish
            last = -1
            for done, dur, tool, cid, called, msg, call in pending:
                t = done if done > t else t + 1000
                last = len(codes)
                if msg is None:
                    data = tool.result_data % ctx
                    if budget:  # whole documents, again and again
                        tokens = 4000 + int(rnd() * 12_000)
                    else:
                        tokens = tool.rt_lo + int(rnd() * tool.rt_spread)
                elif stuck:
                    data, tokens = tool.stuck_data, 40
                else:
                    data, tokens = _TRANSIENT_DATA[msg], 40
                    failures.append((tool, call, last, msg))
                code_a(_TOOL_RESULT)
                at_a(t)
                cause_a(called)
                data_a(data)
                tool_a(tool.name)
                cid_a(cid)
                dur_a(dur / 1000)
                err_a(msg)
                ctx_tokens += tokens
                messages += 1
                if msg is None:
                    if tool.state is not None:
                        t += 500 + int(rnd() * 5000)
                        ev(_STATE_UPDATED, t, last, tool.state % ctx)
                    elif rnd() < 0.25:
                        t += 500 + int(rnd() * 5000)
                        ev(_STATE_UPDATED, t, last, f'{{"changes":{{"last_tool":"{tool.tag}","step":{calls}}}}}')
            return last

        def act(caused_by: int, group: tuple[_Tool, ...]) -> int:
            """``turn``, then a turn retrying the calls that failed with a transient error: same
            arguments, a new tool_call_id (and idempotency_key), caused by the failed result. When
            a retry fails again the agent gives up (an error event; ``gave_up`` is set)."""
            nonlocal t, gave_up
            last = turn(caused_by, group)
            if not failures:
                return last
            failed = tuple(failures)
            failures.clear()
            # a retry may fail again only when its two failures are results in a row (one failed
            # call, the turn's last result): what no_tool_failure_loop looks for
            again = again_rate if len(failed) == 1 and failed[0][2] == last else 0.0
            last = turn(failed[-1][2], tuple(f[0] for f in failed), given=tuple(f[1] for f in failed), again=again)
            if failures:
                tool, msg = failures[0][0], failures[0][3]
                failures.clear()
                gave_up = (tool, msg)
                t += 1000 + int(rnd() * 5000)
                exhausted = f'{{"attempts":2,"code":"tool_retry_exhausted","tool":"{tool.tag}"}}'
                last = ev(_ERROR, t, last, exhausted)
                err_a(f"tool {tool.name} failed 2 times with identical arguments; giving up")
            return last

        def confirm(caused_by: int, tool: _Tool, declined: bool) -> int:
            """The agent asks before ``tool``; the user replies. Returns the reply's row."""
            nonlocal t, ctx_tokens, messages
            question = llm(
                caused_by,
                25 + int(rnd() * 70),
                100 + int(rnd() * 600) if reasoning_model else 0,
                f'{{"finish_reason":{finish_stop},"text":"{tool.ask_text % ctx}"}}',
            )
            t += 4 * _US + int(rnd() * 80 * _US)  # the user reads the question and replies
            replies = tool.no_data if declined else tool.yes_data
            data = replies[int(rnd() * len(replies))]
            ctx_tokens += 10 + (len(data) >> 2)
            messages += 1
            return ev(_USER_MESSAGE, t, question, data)

        user = ev(_USER_MESSAGE, t, -1, f'{{"role":"user","text":"{text}"}}')
        # the plan: the tools this run means to use, in order
        planned = [_TOOLS[name] for name, p in at.agent.script if rnd() < p] or [tools[0]]
        if scenario == 3 and not any(x.side_effect for x in planned):
            planned.append(at.writes[0])  # a run that skips the confirmation has a side effect
        t += 200_000 + int(rnd() * 1_300_000)
        steps = ",".join(f'"{x.tag}"' for x in planned)
        last = ev(_PLAN_CREATED, t, user, f'{{"steps":[{steps}]}}')
        held: str | None = None  # the answer after the user declined a side effect
        if scenario == 1:  # budget breach: keeps reading big documents, never caches
            target = int((5.25 + rnd() * 3.0) * 1e9)
            reads = [x for x in tools if not x.side_effect]
            i = 0
            while spent < target:
                last = act(last, (reads[i % len(reads)],))
                i += 1
        else:
            stuck_at = int(rnd() * len(planned)) if scenario == 2 else -1
            asked = False  # the confirmation before the first side effect covers the run
            i = 0
            while i < len(planned):
                tool = planned[i]
                if tool.side_effect and not asked:
                    asked = True
                    if scenario == 3:  # writes without asking, or asks, hears no and writes anyway
                        declined = ask = rnd() < _ASK_WHEN_SKIPPING
                    else:  # a retry loop's user always says yes: the loop is what it is about
                        ask = rnd() < at.agent.confirms
                        declined = ask and scenario == 0 and rnd() < _DECLINE_RATE
                    if ask:
                        last = confirm(last, tool, declined)
                        if declined and scenario == 0:  # a well-behaved agent stops and says so
                            held = tool.held_text % ctx
                            break
                if i == stuck_at:  # retry loop: the same failing call, 2-4 times in a row
                    for slot, pool in tool_fresh[tool.name]:
                        ctx[slot] = pool[int(rnd() * len(pool))]
                    call = tool.call_data % ctx
                    attempts = 2 + int(rnd() * 3)
                    # the agent retries the same command: same arguments, same idempotency key
                    key = f"idem_{call_prefix}_retry" if tool.side_effect else None
                    for _ in range(attempts):
                        last = turn(last, (tool,), given=(call,), stuck=True, key=key)
                    t += 1000 + int(rnd() * 5000)
                    last = ev(
                        _ERROR, t, last,
                        f'{{"attempts":{attempts},"code":"tool_retry_exhausted","tool":"{tool.tag}"}}',
                    )
                    err_a(f"tool {tool.name} failed {attempts} times with identical arguments; giving up")
                    break
                # independent reads go out in parallel now and then
                if (
                    i + 1 < len(planned)
                    and i + 1 != stuck_at
                    and not tool.side_effect
                    and not planned[i + 1].side_effect
                    and rnd() < 0.2
                ):
                    last = act(last, (tool, planned[i + 1]))
                    i += 2
                else:
                    last = act(last, (tool,))
                    i += 1
                if gave_up is not None:
                    break
        answers = at.answers
        if held is not None:
            answer = held
        elif scenario == 2:
            answer = _FAILED_ANSWER
        elif gave_up is not None:
            answer = _esc(_GAVE_UP_ANSWER % (gave_up[0].name, gave_up[1]))
        else:
            answer = answers[int(rnd() * len(answers))] % ctx
        resp = llm(
            last,
            120 + int(rnd() * 780),
            300 + int(rnd() * 3000) if reasoning_model else 0,
            f'{{"finish_reason":{finish_stop},"text":"{answer}"}}',
        )
        return t, resp


# ---------------------------------------------------------------------------- public API


def generate_demo(
    runs: int,
    seed: int = 7,
    start: dt.datetime | None = None,
    days: int = 14,
    batch_events: int = 200_000,
) -> Iterator[pa.Table]:
    """Yield Arrow tables (``DEMO_SCHEMA``) holding ``runs`` agent runs over ``days`` days.

    A table is yielded once it holds at least ``batch_events`` events, always at a run boundary,
    so no run is split between tables. ``version`` is left to the journal. A run has about 25
    events (``estimate_events``): 10 million events take about 400,000 runs.
    Raises ``ValueError`` for a negative ``runs``, ``days`` < 1 or a naive ``start``.
    """
    gen = _DemoGenerator(runs, seed, start or DEFAULT_START, days, batch_events)
    return gen.batches()


def estimate_events(runs: int) -> int:
    """About how many events ``runs`` runs make (for progress bars; the mean is ~25 per run).

    >>> estimate_events(1000)
    25000
    """
    return runs * _EVENTS_PER_RUN


@dataclass(frozen=True)
class DemoSummary:
    """What ``write_demo`` wrote."""

    runs: int
    sessions: int
    events: int  # generated
    appended: int  # new in the journal
    skipped: int  # already in the journal (same event ids): rerunning a demo appends nothing
    streams: int
    first_day: dt.date | None
    last_day: dt.date | None


def write_demo(
    journal: Journal,
    runs: int,
    seed: int = 7,
    progress: Callable[[int], None] | None = None,
    *,
    start: dt.datetime | None = None,
    days: int = 14,
    batch_events: int = 200_000,
) -> DemoSummary:
    """Append the demo to ``journal``, one commit per batch (``generate_demo`` has the details).

    After each commit ``progress(n)`` is called with the ``n`` events of that batch, so a
    progress bar's ``advance`` fits.
    """
    gen = _DemoGenerator(runs, seed, start or DEFAULT_START, days, batch_events)
    events = 0
    lo: dt.datetime | None = None
    hi: dt.datetime | None = None

    def batches() -> Iterator[pa.Table]:  # generated while the batch before is written
        nonlocal events, lo, hi
        for table in gen.batches():
            events += table.num_rows
            mm = pc.min_max(table.column("occurred_at")).as_py()
            lo = mm["min"] if lo is None else min(lo, mm["min"])
            hi = mm["max"] if hi is None else max(hi, mm["max"])
            yield table

    def committed(result: AppendResult) -> None:
        if progress is not None:
            progress(result.appended + result.skipped)

    results = journal.append_batches(batches(), on_commit=committed)
    appended = sum(r.appended for r in results)
    skipped = sum(r.skipped for r in results)
    streams = sum(r.streams for r in results)
    return DemoSummary(
        runs=runs,
        sessions=gen.sessions,
        events=events,
        appended=appended,
        skipped=skipped,
        streams=streams,
        first_day=lo.date() if lo else None,
        last_day=hi.date() if hi else None,
    )
