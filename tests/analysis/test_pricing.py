"""Repricing from an effective-dated price table: the date switch, tiers, precedence, bad tables."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, ev
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.analysis.pricing import (
    CSV_COLUMNS,
    load_prices,
    priced_events,
    reprice_diff,
    reprice_report,
    unpriced_events,
)
from toolkit.analysis.rollup import rollup
from toolkit.errors import InvalidPathError, PriceTableError
from toolkit.ingest.demo import DEMO_PRICES
from toolkit.journal import Journal

HEADER = ",".join(CSV_COLUMNS)
M = Decimal(1_000_000)


def price_file(tmp_path: Path, *rows: str, name: str = "prices.csv") -> Path:
    """A price CSV: the header on line 2 (after a comment), then ``rows`` from line 3."""
    path = tmp_path / name
    path.write_text("# test prices\n" + HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def row(
    model: str = "m",
    match: str = "exact",
    start: str = "2026-01-01",
    end: str = "",
    inp: str = "1.00",
    out: str = "2.00",
    cache_read: str = "",
    cache_write: str = "",
    reasoning: str = "",
    above: str = "",
) -> str:
    return f"{model},{match},acme,{start},{end},{inp},{out},{cache_read},{cache_write},{reasoning},{above},https://example.com/p,2026-01-01"


def llm(at: str, tokens_in: int, tokens_out: int = 0, **kw: object) -> dict[str, object]:
    return ev("llm_response", {"ok": 1}, model=kw.pop("model", "m"), tokens_in=tokens_in, tokens_out=tokens_out, occurred_at=at, **kw)


# ---------------------------------------------------------------------- the effective-date switch


@pytest.fixture
def mid_month(journal: Journal, tmp_path: Path) -> tuple[Journal, Path]:
    """Model m costs 1/2 USD per 1M until 2026-03-15 00:00 UTC, then 10/20; events around the switch."""
    journal.append(
        "run-a",
        [
            llm("2026-03-01T12:00:00Z", 1_000_000),
            llm("2026-03-14T23:59:59.999999Z", 1_000_000),
            llm("2026-03-14T20:30:00-04:00", 1_000_000),  # 00:30 UTC on the 15th
            llm("2026-03-31T23:00:00Z", 0, 1_000_000),
        ],
        stream_type="agent_run",
    )
    prices = price_file(
        tmp_path, row(start="2026-01-01", end="2026-03-15"), row(start="2026-03-15", inp="10", out="20")
    )
    return journal, prices


def test_a_price_change_mid_month_splits_the_month_at_the_switch(
    mid_month: tuple[Journal, Path], new_york_tz: str
) -> None:
    journal, prices = mid_month
    by_day = {
        r["day"]: r["cost_usd"]
        for r in rollup(journal, ["day"], cost="repriced", prices=prices).to_pylist()
    }
    assert by_day == {
        dt.date(2026, 3, 1): Decimal("1.000000000"),
        dt.date(2026, 3, 14): Decimal("1.000000000"),  # one microsecond before the switch
        dt.date(2026, 3, 15): Decimal("10.000000000"),
        dt.date(2026, 3, 31): Decimal("20.000000000"),
    }
    month = rollup(journal, ["model"], cost="repriced", prices=prices, since="2026-03-01", until="2026-04-01")
    assert month.column("cost_usd").to_pylist() == [Decimal("32.000000000")]
    rows = priced_events(journal, prices).to_pylist()
    assert [r["price_row"].rsplit(":", 1)[1] for r in rows] == ["3", "3", "4", "4"]


def test_as_of_prices_all_history_at_one_date(mid_month: tuple[Journal, Path]) -> None:
    journal, prices = mid_month
    late = rollup(journal, ["model"], cost="repriced", prices=prices, as_of="2026-06-01")
    assert late.column("cost_usd").to_pylist() == [Decimal("50.000000000")]  # 3M in x 10 + 1M out x 20
    early = rollup(journal, ["model"], cost="repriced", prices=prices, as_of=dt.date(2026, 2, 1))
    assert early.column("cost_usd").to_pylist() == [Decimal("5.000000000")]
    before = unpriced_events(journal, prices, as_of="2025-12-31")
    assert before.num_rows == 4 and set(before.column("reason").to_pylist()) == {"no price in force at that time"}


# ---------------------------------------------------------------------- what a price row means


def test_cache_and_reasoning_tokens_are_priced_at_their_rates_and_counted_once(
    journal: Journal, tmp_path: Path
) -> None:
    prices = price_file(
        tmp_path,
        row("full", inp="2", out="8", cache_read="0.5", cache_write="2.5", reasoning="16"),
        row("plain", inp="2", out="8"),
    )
    usage = {"tokens_cache_read": 600_000, "tokens_cache_write": 100_000, "tokens_reasoning": 200_000}
    journal.append(
        "r",
        [
            llm("2026-02-01T00:00:00Z", 1_000_000, 500_000, model="full", **usage),
            llm("2026-02-01T00:00:00Z", 1_000_000, 500_000, model="plain", **usage),
        ],
    )
    cost = {r["model"]: r["repriced_cost_usd"] for r in priced_events(journal, prices).to_pylist()}
    # uncached 300k x 2 + 600k x 0.5 + 100k x 2.5 + non-reasoning 300k x 8 + 200k x 16
    assert cost["full"] == (300_000 * 2 + 600_000 * Decimal("0.5") + 100_000 * Decimal("2.5") + 300_000 * 8 + 200_000 * 16) / M
    # no separate rates: cache at the input rate, reasoning at the output rate
    assert cost["plain"] == (1_000_000 * 2 + 500_000 * 8) / M


def test_tokens_above_a_tier_use_the_tier_rate(journal: Journal, tmp_path: Path) -> None:
    prices = price_file(tmp_path, row(inp="3", out="15"), row(inp="6", out="22.5", above="200000"))
    journal.append("r", [llm("2026-02-01T00:00:00Z", 200_000, 1000), llm("2026-02-01T00:00:01Z", 200_001, 1000)])
    costs = [r["repriced_cost_usd"] for r in priced_events(journal, prices).to_pylist()]
    assert costs == [(200_000 * 3 + 1000 * 15) / M, (200_001 * 6 + 1000 * Decimal("22.5")) / M]


def test_exact_rows_beat_regex_rows_and_regexes_go_in_file_order(journal: Journal, tmp_path: Path) -> None:
    prices = price_file(
        tmp_path,
        row("gpt-.*", "regex", inp="1", out="1"),
        row("gpt-x(-mini)?", "regex", inp="2", out="2"),
        row("gpt-x", "exact", inp="3", out="3"),
    )
    journal.append(
        "r",
        [llm("2026-02-01T00:00:00Z", 1_000_000, model=name) for name in ("gpt-x", "gpt-x-mini", "gpt-y")]
        + [llm("2026-02-01T00:00:00Z", 1_000_000, model="claude-z")],
    )
    got = {r["model"]: (r["repriced_cost_usd"], r["unpriced_reason"]) for r in priced_events(journal, prices).to_pylist()}
    assert got == {
        "gpt-x": (Decimal(3), None),
        "gpt-x-mini": (Decimal(1), None),  # the first regex that matches wins
        "gpt-y": (Decimal(1), None),
        "claude-z": (None, "no price for this model"),
    }


def test_an_exact_and_a_regex_row_with_the_same_text_price_an_event_once(journal: Journal, tmp_path: Path) -> None:
    """The join took the segments of both rows (it matched on the text only): each event came out twice."""
    prices = price_file(tmp_path, row("m", "exact", inp="1", out="1"), row("m", "regex", inp="10", out="10"))
    journal.append("r", [llm("2026-02-01T00:00:00Z", 1_000_000, cost_usd="1")])
    got = [(r["repriced_cost_usd"], r["price_row"]) for r in priced_events(journal, prices).to_pylist()]
    assert got == [(Decimal(1), f"{prices}:3")]
    diff = reprice_diff(journal, prices).to_pylist()
    assert [(r["billable_events"], r["recorded_cost_usd"], r["repriced_cost_usd"]) for r in diff] == [(1, 1, 1)]


def test_events_without_a_price_are_listed_never_priced_at_zero(journal: Journal, tmp_path: Path) -> None:
    prices = price_file(tmp_path, row())
    journal.append(
        "r",
        [
            llm("2026-02-01T00:00:00Z", 100, 10),
            llm("2026-02-01T00:00:01Z", 100, 10, model="unknown-model", cost_usd="0.5"),
            ev("llm_response", {}, tokens_in=5, occurred_at="2026-02-01T00:00:02Z"),  # no model
            llm("2026-02-01T00:00:03Z", 100, 10, tokens_cache_read=500),  # cache > input: inconsistent
            ev("user_message", {"text": "no tokens"}, model="m", occurred_at="2026-02-01T00:00:04Z"),
        ],
    )
    listed = unpriced_events(journal, prices).to_pylist()
    assert [(r["version"], r["reason"]) for r in listed] == [
        (2, "no price for this model"),
        (3, "no model"),
        (4, "cache tokens exceed tokens_in or reasoning tokens exceed tokens_out"),
    ]
    diff = {r["model"]: r for r in reprice_diff(journal, prices).to_pylist()}
    assert diff["unknown-model"]["unpriced_events"] == 1
    assert diff["unknown-model"]["recorded_cost_usd"] == Decimal("0.5")
    assert diff["unknown-model"]["repriced_cost_usd"] == 0  # not counted, and said so
    assert diff["unknown-model"]["diff_usd"] == 0  # a missing price is no $0.50 saving
    assert diff["m"]["unpriced_events"] == 1 and diff["m"]["billable_events"] == 2  # the no-token event is not billable
    table, note = reprice_report(journal, prices)
    assert "3 have no price" in note and table.num_rows == len(diff)
    assert "over the priced events" in note and "(diff -0.5" not in note
    costed = rollup(journal, ["model"], cost="repriced", prices=prices).to_pylist()
    assert {r["model"]: r["unpriced_events"] for r in costed} == {"(none)": 1, "m": 1, "unknown-model": 1}


def test_cache_or_reasoning_tokens_without_tokens_in_or_out_are_counted_as_unpriced(journal: Journal, tmp_path: Path) -> None:
    """Only tokens_in/out made an event billable: 1M cache-read tokens with tokens_in null vanished from reprice."""
    prices = price_file(tmp_path, row())
    journal.append(
        "r",
        [
            ev("llm_response", {}, model="m", tokens_cache_read=1_000_000, occurred_at="2026-02-01T00:00:00Z"),
            ev("llm_response", {}, model="m", tokens_reasoning=1_000_000, occurred_at="2026-02-01T00:00:01Z"),
        ],
    )
    listed = unpriced_events(journal, prices).to_pylist()
    assert [(r["version"], r["reason"]) for r in listed] == [
        (1, "cache tokens exceed tokens_in or reasoning tokens exceed tokens_out"),
        (2, "cache tokens exceed tokens_in or reasoning tokens exceed tokens_out"),
    ]
    diff = reprice_diff(journal, prices).to_pylist()
    assert [(r["billable_events"], r["unpriced_events"]) for r in diff] == [(2, 2)]
    for basis in ("recorded", "repriced"):
        by_model = rollup(journal, ["model"], cost=basis, prices=prices).to_pylist()
        assert [r["unpriced_events"] for r in by_model] == [2], basis


def test_reprice_unpriced_says_when_it_lists_only_the_first_events(
    journal: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--unpriced lists the first UNPRICED_LISTED events; more were cut without a word."""
    import toolkit.analysis.pricing as pricing

    prices = price_file(tmp_path, row())
    journal.append("r", [llm(f"2026-02-01T00:00:0{i}Z", 10, model="unknown") for i in range(3)])
    listed, note = reprice_report(journal, prices, unpriced=True)
    assert listed.num_rows == 3 and "listed" not in note
    monkeypatch.setattr(pricing, "UNPRICED_LISTED", 2)
    listed, note = reprice_report(journal, prices, unpriced=True)
    assert listed.num_rows == 2 and "3 have no price" in note and "(the first 2 listed: narrow it with --since/--until)" in note


def test_the_demo_journal_reprices_to_what_it_recorded(tmp_path: Path) -> None:
    """The demo records list prices (DEMO_PRICES); the shipped table has the same rates for its models."""
    journal = Journal.open(REPO / "tests" / "fixtures" / "demo-journal")
    diff = reprice_diff(journal).to_pylist()
    assert {r["model"] for r in diff} == set(DEMO_PRICES)
    assert all(r["unpriced_events"] == 0 and r["diff_usd"] == 0 for r in diff), [r for r in diff if r["diff_usd"]]
    assert sum(r["recorded_cost_usd"] for r in diff) > 1


def test_the_shipped_table_prices_the_o3_cut_of_june_2025() -> None:
    table = load_prices()
    o3 = [r for r in table.rows.to_pylist() if r["model"].startswith("(openai/)?o3(")]
    assert [(r["effective_from"].date(), r["input_usd_per_mtok"]) for r in o3] == [
        (dt.date(2025, 4, 16), Decimal("10.000000")),
        (dt.date(2025, 6, 10), Decimal("2.000000")),
    ]
    assert all(r["source"].startswith("https://") for r in table.rows.to_pylist())


# ---------------------------------------------------------------------- bad price tables


def test_overlapping_ranges_for_the_same_model_are_refused_naming_both_rows(tmp_path: Path) -> None:
    path = price_file(tmp_path, row(end="2026-03-01"), row("other"), row(start="2026-02-15"))
    with pytest.raises(PriceTableError, match="overlap") as e:
        load_prices(path)
    assert e.value.context["rows"] == [f"{path}:3", f"{path}:5"]
    assert "Hint:" in str(e.value)


def test_overlap_across_two_files_is_refused(tmp_path: Path) -> None:
    a = price_file(tmp_path, row(), name="a.csv")
    b = price_file(tmp_path, row(start="2027-01-01"), name="b.csv")
    with pytest.raises(PriceTableError) as e:
        load_prices([a, b])
    assert e.value.context["rows"] == [f"{a}:3", f"{b}:3"]


def test_tiers_may_overlap_their_base_but_not_each_other(tmp_path: Path) -> None:
    load_prices(price_file(tmp_path, row(), row(above="200000")))
    with pytest.raises(PriceTableError, match="tier above 200000"):
        load_prices(price_file(tmp_path, row(), row(above="200000"), row(above="200000", start="2026-06-01")))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (row(inp=""), "missing required price input_usd_per_mtok"),
        (row(out=""), "missing required price output_usd_per_mtok"),
        (row(model=""), "missing required model"),
        (row(match="glob"), "match must be exact or regex"),
        (row(model="gpt-(", match="regex"), "is not a regex"),
        # Python's re reads these, DuckDB's RE2 (which joins the prices) does not
        (row(model="gpt-4o(?!-mini).*", match="regex"), "is not a regex RE2 reads"),
        (row(model=r"(a)\1", match="regex"), "is not a regex RE2 reads"),
        (row(inp="-1"), "must be a non-negative number"),
        (row(inp="abc"), "is not a number"),
        (row(inp="0.0000001"), "more than 6 decimals"),
        (row(start="2026-13-01"), "effective_from is not a date"),
        (row(start="2026-03-01", end="2026-03-01"), "effective_to is not after effective_from"),
        (row(above="1.5"), "prompt_tokens_above must be a positive integer"),
        (row(above="1000", start="2025-01-01"), "missing required base price"),
    ],
)
def test_a_bad_row_is_refused_with_its_line(tmp_path: Path, bad: str, message: str) -> None:
    path = price_file(tmp_path, row(), bad)
    with pytest.raises(PriceTableError, match=message) as e:
        load_prices(path)
    assert e.value.context["rows"][-1] == f"{path}:4"


def test_a_bad_header_or_field_count_or_missing_file_is_refused(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("model,price\ngpt,1\n", encoding="utf-8")
    with pytest.raises(PriceTableError, match="header lacks"):
        load_prices(wrong)
    short = price_file(tmp_path, "m,exact,acme")
    with pytest.raises(PriceTableError, match=r"expected 13 fields, got 3: .*:3"):
        load_prices(short)
    with pytest.raises(InvalidPathError, match="no such price file"):
        load_prices(tmp_path / "missing.csv")
    twice = tmp_path / "twice.csv"  # the later input_usd_per_mtok silently won: $99 per 1M
    twice.write_text(HEADER + ",input_usd_per_mtok\n" + row() + ",99\n", encoding="utf-8")
    with pytest.raises(PriceTableError, match=r"columns named twice \['input_usd_per_mtok'\]") as e:
        load_prices(twice)
    assert e.value.context["rows"] == [f"{twice}:1"]


def test_a_price_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Spreadsheets save "CSV UTF-8" with a BOM: the header's first column read as '\\ufeffmodel' ("header lacks model")."""
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + "\n" + row() + "\n").encode())
    assert load_prices(path).rows.column("model").to_pylist() == ["m"]


def test_a_price_file_that_is_not_utf8_is_refused_with_its_line(tmp_path: Path) -> None:
    """A Latin-1 model name ('caf\\xe9') escaped as a UnicodeDecodeError traceback naming no file or line."""
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + "\n" + row() + "\n").encode() + row(model="caf\xe9").encode("latin-1") + b"\n")
    with pytest.raises(PriceTableError, match=r"not UTF-8 text \(byte 0xe9\)") as e:
        load_prices(path)
    assert e.value.context["rows"] == [f"{path}:3"]


def test_a_cost_recorded_without_tokens_is_kept_not_dropped_or_called_a_saving(journal: Journal, tmp_path: Path) -> None:
    """A paid tool call (cost, no tokens) is nothing a token price reprices: it stays as recorded."""
    prices = price_file(tmp_path, row())
    journal.append(
        "r",
        [
            ev("tool_called", {}, tool_name="web_search", cost_usd="0.05", occurred_at="2026-02-01T00:00:00Z"),
            llm("2026-02-01T00:00:01Z", 1_000_000, 0, cost_usd="1"),
            llm("2026-02-01T00:00:02Z", 0, 0, cost_usd="0.25"),  # a request fee on a model
        ],
    )
    diff = {r["model"]: r for r in reprice_diff(journal, prices).to_pylist()}
    assert diff["(none)"]["repriced_cost_usd"] == Decimal("0.05") and diff["(none)"]["diff_usd"] == 0
    assert diff["m"]["repriced_cost_usd"] == Decimal("1.25") and diff["m"]["diff_usd"] == 0
    by_tool = {r["tool"]: r for r in rollup(journal, ["tool"], cost="repriced", prices=prices).to_pylist()}
    assert by_tool["web_search"]["cost_usd"] == Decimal("0.05") and by_tool["web_search"]["unpriced_events"] == 0


# ---------------------------------------------------------------------- the join against a Python reference

_TABLE_ROWS = [
    row("a", start="2026-01-01", end="2026-02-10T12:00:00+00:00", inp="1", out="2", cache_read="0.1"),
    row("a", start="2026-02-10T12:00:00+00:00", inp="3", out="4", cache_write="5", reasoning="6"),
    row("a", start="2026-02-01", end="2026-03-01", inp="7", out="8", above="1000"),
    row("b.*", "regex", start="2026-01-15", inp="0.5", out="0.25"),
    row("bb", "exact", start="2026-01-01", end="2026-02-01", inp="9", out="9"),
]


def _reference(model: str | None, at: dt.datetime, tin: int, tout: int, cr: int, cw: int, rs: int) -> Decimal | None:
    """The price rules, in plain Python, for the table above."""
    if model is None or tin + tout == 0 or cr + cw > tin or rs > tout:
        return None
    day = dt.datetime

    def cost(i: str, o: str, r: str | None = None, w: str | None = None, z: str | None = None) -> Decimal:
        rate_r, rate_w, rate_z = Decimal(r or i), Decimal(w or i), Decimal(z or o)
        return ((tin - cr - cw) * Decimal(i) + cr * rate_r + cw * rate_w + (tout - rs) * Decimal(o) + rs * rate_z) / M

    if model == "a":
        if at < day(2026, 1, 1, tzinfo=dt.UTC):
            return None
        if tin > 1000 and day(2026, 2, 1, tzinfo=dt.UTC) <= at < day(2026, 3, 1, tzinfo=dt.UTC):
            return cost("7", "8")
        if at < day(2026, 2, 10, 12, tzinfo=dt.UTC):
            return cost("1", "2", r="0.1")
        return cost("3", "4", w="5", z="6")
    if model == "bb":  # exact beats the regex, but only in its own range: outside it, no price
        return cost("9", "9") if day(2026, 1, 1, tzinfo=dt.UTC) <= at < day(2026, 2, 1, tzinfo=dt.UTC) else None
    if model.startswith("b"):
        return cost("0.5", "0.25") if at >= day(2026, 1, 15, tzinfo=dt.UTC) else None
    return None


@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "bb", "bx", "c", None]),
            st.datetimes(dt.datetime(2025, 12, 25), dt.datetime(2026, 3, 10), timezones=st.just(dt.UTC)),
            st.integers(0, 3000),
            st.integers(0, 500),
            st.integers(0, 1500),
            st.integers(0, 1500),
            st.integers(0, 600),
        ),
        min_size=1,
        max_size=25,
    )
)
@settings(max_examples=25, deadline=None)
def test_repricing_matches_the_rules_in_python(tmp_path_factory: pytest.TempPathFactory, events: list[tuple[Any, ...]]) -> None:
    tmp = tmp_path_factory.mktemp("ref")
    prices = price_file(tmp, *_TABLE_ROWS)
    journal = Journal.in_memory()
    try:
        journal.append(
            "r",
            [
                ev("llm_response", {"i": i}, model=m, occurred_at=at, tokens_in=tin, tokens_out=tout,
                   tokens_cache_read=cr, tokens_cache_write=cw, tokens_reasoning=rs)
                for i, (m, at, tin, tout, cr, cw, rs) in enumerate(events)
            ],
        )
        got = [r["repriced_cost_usd"] for r in priced_events(journal, prices).to_pylist()]
    finally:
        journal.close()
    want = [_reference(*e) for e in events]
    assert got == [None if w is None else w.quantize(Decimal("1e-9")) for w in want]
