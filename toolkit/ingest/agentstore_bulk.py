"""AgentStore event lines in bulk: a block of lines → the importer's Arrow columns, with Polars.

``toolkit.ingest.agentstore`` reads a line on its own (``_Rows.add``): parse, check, re-encode the
payload canonically, hash. That path is the reference and words every rejection; this module takes
the lines it can prove give exactly the same event without parsing them in Python, and hands back
the indices of every other line for the reference path. A line is taken in bulk when

- the bulk JSON reader (Polars) parses it, and it has no control characters;
- it has the Go library's shape exactly: ``{"session_id":…,"sequence_number":…,"type":…,
  "payload":…,"timestamp":…,"metadata":{…}}``, compact, in that order;
- its payload, and every metadata value that stays in ``metadata``, is already canonical JSON:
  only ``\\" \\\\ \\n \\r \\t \\b \\f`` escapes, integers of up to 18 digits, decimals whose text is
  Python's ``repr`` (up to 15 digits, no exponent, no trailing zero), and object keys strictly
  increasing in the order they are written (so sorted at every level) with no character below
  ``#`` — which is what Go writes for maps of plain text;
- its column metadata (tokens, model, tool, duration, cost) has the simple forms whose ``repr`` /
  ``Decimal`` text can be built from the source text (plain ASCII model and tool names, integer
  tokens, costs of up to 15 digits from 1e-6 up, …), and no metadata key is repeated.

Lines are split by Polars' CSV reader (one column, no quoting: one copy of the block, few fresh
pages); metadata are read once per *template* (the text with the numbers of tokens, duration and
cost written 1: in the bench, 43 % of the lines have distinct metadata, 11 % distinct templates —
the ``extra`` objects that carry a reference), each line's numbers checked from its own text. The event id (UUIDv5 of the same name ``agentstore.event_ids``
hashes) is computed for the whole block: ``sha1`` over namespace bytes + name by the ``polars-hash``
plugin (or DuckDB), the UUID text by Polars (``polars_engine.uuid5_texts``), so nothing here runs Python per line (but the
message of an ``error`` event) and two blocks use both cores.

Everything else — cut-off and glued lines, escapes such as Go's ``\\u003c``, exponents, keys out of
order, bad times, wrong types — goes to the line-by-line reader, so its outcome (and its
rejection's wording) is the reference's. ``tests/ingest/test_agentstore_bulk.py`` checks that both
readers give the same rows on generated lines.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Final

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from toolkit.engines.polars_engine import uuid5_texts
from toolkit.ingest.base import IMPORT_NAMESPACE
from toolkit.journal.schema import COST, TIMESTAMP

_S: Final = r'"(?:[^"\\]|\\.)*"'  # a JSON string (in valid JSON a quote inside a string is escaped)
_NUM: Final = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_DEPTH: Final = 6


def _nested(depth: int) -> str:
    body = r"(?:" + _S + r'|[^{}\[\]"])*'
    for _ in range(depth):
        body = r"(?:" + _S + r'|[^{}\[\]"]|[\{\[]' + body + r"[\}\]])*"
    return body


_V: Final = r"(?:" + _S + "|" + _NUM + r"|true|false|null|[\{\[]" + _nested(_DEPTH - 1) + r"[\}\]])"
_MEMBER: Final = _S + ":" + _V
# plain printable ASCII without quotes and backslashes: its repr is the text in single quotes
_PLAIN: Final = r"[ !#-&(-\[\]-~]"
_SEPARATORS: Final = {  # in the order the Go library writes the fields
    "seq": '","sequence_number":',
    "type": ',"type":"',
    "payload": ',"payload":',
    "ts": ',"timestamp":"',
    "meta": '","metadata":{',
}
_SSN: Final = '"source_sequence_number"'
_CHUNK_SCHEMA: Final = pa.schema(  # the columns of ``agentstore._Rows.flush``'s chunks
    [
        ("_where", pa.int64()),
        ("_seq", pa.int64()),
        ("stream_id", pa.string()),
        ("event_id", pa.string()),
        ("event_type", pa.string()),
        ("occurred_at", TIMESTAMP),
        ("model", pa.string()),
        ("tool_name", pa.string()),
        ("tokens_in", pa.int64()),
        ("tokens_out", pa.int64()),
        ("cost_usd", COST),
        ("duration_ms", pa.float64()),
        ("error", pa.string()),
        ("data", pa.string()),
        ("metadata", pa.string()),
    ]
)
_NUMBER_KEYS: Final = ("tokens_in", "tokens_out", "duration_ms", "cost_usd")
# a member of a column key with a number (or number-like text): ``"tokens_in":`` cannot occur inside a
# JSON string (its quotes would be escaped), so in valid JSON it is a key, at the top level or nested
_NUMBER_KEY: Final = r'"(?:tokens_in|tokens_out|duration_ms|cost_usd)":'
_NUMBER_MEMBER: Final = "(" + _NUMBER_KEY + r")-?[0-9][0-9.eE+\-]*"
_NUMBER_OF: Final = {k: '"' + k + r'":(-?[0-9][0-9.eE+\-]*)' for k in _NUMBER_KEYS}
COLUMN_KEYS: Final = ("tokens_in", "tokens_out", "model", "tool_name", "duration_ms", "cost_usd")


# a string as Python writes it (ensure_ascii=False): the escapes it uses, no control characters
_CANONICAL_STRING: Final = r'"(?:[^"\\\x00-\x1f]|\\["\\nrtbf])*"'
# a number whose text is the one Python writes for the value it parses to: an integer of up to 18
# digits (not -0), or a decimal of up to 7 + 8 digits without a trailing zero and, below 1, without
# four leading zeros (Python writes those with an exponent)
_CANONICAL_NUMBER: Final = (
    r"(?:0|-?[1-9][0-9]{0,17}|-?[1-9][0-9]{0,6}\.[0-9]{0,7}[1-9]|-?0\.(?:"
    + "|".join("0" * z + "[1-9](?:[0-9]{0," + str(6 - z) + "}[1-9])?" for z in range(4))
    + "))"
)


def _grammar(depth: int) -> str:
    """A compact JSON value nested up to ``depth`` containers, made of canonical strings and numbers."""
    string, number = _CANONICAL_STRING, _CANONICAL_NUMBER
    value = "(?:" + string + "|" + number + "|true|false|null)"
    for _ in range(depth):
        value = (
            "(?:"
            + string
            + "|"
            + number
            + r"|true|false|null|\{(?:"
            + string
            + ":"
            + value
            + "(?:,"
            + string
            + ":"
            + value
            + r")*)?\}|\[(?:"
            + value
            + "(?:,"
            + value
            + r")*)?\])"
        )
    return "^" + value + "$"


_GRAMMAR: Final = _grammar(4)


def canonical_as_written(frame: pl.DataFrame, column: str, row: str = "_i") -> pl.Series:
    """True where the text in ``column`` is a JSON value that ``agentstore.canonical`` writes the same.

    Valid JSON of depth <= 4 with compact layout, the escapes and numbers Python writes, and object
    keys strictly increasing in writing order (a subsequence of an increasing sequence increases,
    so every object's keys are sorted) without characters below ``#`` or backslashes.
    """
    text = pl.col(column)
    # (one forward pass each; an eager select computes a repeated subexpression again, so none is)
    checked = frame.select(
        pl.col(row).alias("_i"),
        _pieces=text.str.split('"'),
        _escaped=text.str.contains('\\"', literal=True).fill_null(False),
        _ok=(text.str.contains(_GRAMMAR) & ~text.str.contains(r'[,{\[:]":')).fill_null(False),
    )
    # Without an escaped quote, the text split at quotes alternates between outside and inside strings,
    # and a key is an inside piece followed by one that starts with ':' (no string starts with ':',
    # checked above). Texts with escaped quotes (rare) have their keys found by a regular expression.
    pieces = checked.select("_i", "_pieces").filter(~checked.get_column("_escaped")).explode("_pieces")
    piece, same = pl.col("_pieces"), pl.col("_i") == pl.col("_i").shift(-1)
    keys = pieces.filter(piece.shift(-1).str.starts_with(":") & same).select("_i", _keys=piece)
    escaped = frame.filter(checked.get_column("_escaped"))
    if escaped.height:
        quoted = escaped.select(pl.col(row).alias("_i"), _keys=text.str.extract_all(_S + ":")).explode("_keys")
        keys = pl.concat([keys, quoted.drop_nulls("_keys").with_columns(pl.col("_i").cast(keys.schema["_i"]))])
    key = pl.col("_keys")
    # keys in writing order (a text's keys are all bare or all quoted: '"' ends a quoted key and sorts
    # below every character a key may hold, so both orders agree)
    bad = keys.filter(
        ((key <= key.shift(1)) & (pl.col("_i") == pl.col("_i").shift(1))) | key.str.contains(r"[\x00-\x21\\]")
    ).get_column("_i")
    ok = checked.get_column("_ok")
    if bad.len():
        ok = ok & ~checked.get_column("_i").is_in(bad.unique().implode())
    return ok


def _ascii_text(value: pl.Expr) -> pl.Expr:
    return value.str.contains('^"' + _PLAIN + '*"$')


def _simple_float(value: pl.Expr) -> pl.Expr:
    """Decimal text that is Python's repr of the float it parses to (non-zero, no exponent)."""
    return value.str.contains(r"^-?(?:[1-9][0-9]{0,6}|0)\.[0-9]{0,7}[1-9]$") & ~value.str.contains(r"^-?0\.0000")


def _value_ok(key: str, value: pl.Expr) -> pl.Expr:
    """True where ``value`` (source text, not null) is a form of ``metadata.<key>`` this module takes."""
    if key in ("tokens_in", "tokens_out"):
        return value.str.contains(r"^(?:0|[1-9][0-9]{0,17})$")
    if key in ("model", "tool_name"):
        return _ascii_text(value)
    if key == "duration_ms":
        return (value.str.contains(r"^-?(?:0|[1-9][0-9]{0,14})$") & (value != "-0")) | _simple_float(value)
    return value.str.contains(r"^(?:0|[1-9][0-9]{0,5})(?:\.[0-9]{1,9})?$") & ~value.str.contains(
        r"^0(?:$|\.0*$|\.0{6})"
    )


def _cost_key(cost: pl.Expr) -> pl.Expr:
    """``str(Decimal(repr(cost)).quantize(Decimal("1e-9")))`` of a cost text ``_value_ok`` takes."""
    parts = cost.str.extract_groups(r"^(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?$")
    return parts.struct.field("int") + "." + parts.struct.field("frac").fill_null("").str.pad_end(9, "0")


def _members(frame: pl.DataFrame) -> pl.DataFrame:
    """Per line (``_i``, ``meta``): the metadata columns (source text), the members that stay in
    metadata sorted before and after ``source_sequence_number``, ``_meta_ok`` and ``_keyed`` (the
    number of members whose key is one of ``_NUMBER_KEYS``)."""
    lines = frame.select("_i", "meta", m=pl.col("meta").str.extract_all(_MEMBER)).with_columns(
        _whole=(pl.col("m").list.join(",") == pl.col("meta")).fill_null(False) | (pl.col("meta") == "")
    )
    members = (
        lines.select("_i", "m")
        .explode("m")
        .drop_nulls("m")
        .with_columns(key=pl.col("m").str.extract(r'^"([#-\[\]-~]+)":', 1))
        .with_columns(value=pl.col("m").str.slice(pl.col("key").str.len_bytes() + 3))
    )
    key, value = pl.col("key"), pl.col("value")
    is_null = value == "null"
    members = members.with_columns(
        _column=key.is_in(COLUMN_KEYS).fill_null(False),
        _dup=pl.struct("_i", "key").is_duplicated(),
    )
    # bad: a repeated or odd key, or a column value this module does not take
    checks = (
        pl.when(key.is_null() | (key == "source_sequence_number") | pl.col("_dup"))
        .then(pl.lit(False))
        .when(is_null | ~pl.col("_column"))
        .then(pl.lit(True))
        .when(key.is_in(["tokens_in", "tokens_out"]))
        .then(_value_ok("tokens_in", value))
        .when(key.is_in(["model", "tool_name"]))
        .then(_value_ok("model", value))
        .when(key == "duration_ms")
        .then(_value_ok("duration_ms", value))
        .otherwise(_value_ok("cost_usd", value))
    )
    members = members.with_columns(_ok=checks)
    rest = members.filter(~pl.col("_column"))
    if rest.height:
        rest = rest.with_row_index("_m")
        rest = rest.with_columns(_ok=pl.col("_ok") & canonical_as_written(rest, "value", "_m"))
    bad = pl.concat([members.filter(~pl.col("_ok")).select("_i"), rest.filter(~pl.col("_ok")).select("_i")])
    out = lines.select(
        "_i",
        _meta_ok=pl.col("_whole") & ~pl.col("_i").is_in(bad.get_column("_i").implode()),
        _keyed=pl.col("m").list.eval(pl.element().str.contains("^" + _NUMBER_KEY)).list.sum(),
    )
    values = members.filter(pl.col("_column") & ~is_null)
    for name in COLUMN_KEYS:
        one = values.filter(key == name).select("_i", value.alias(name))
        out = out.join(one, on="_i", how="left", maintain_order="left")
    # members that stay: one per line is the common case; more are sorted by a group_by
    rest = rest.select("_i", "m")
    several = rest.filter(pl.col("_i").is_duplicated())
    single = rest.filter(~pl.col("_i").is_duplicated())
    placed = single.select(
        "_i",
        _before=pl.when(pl.col("m") < _SSN).then(pl.col("m")),
        _after=pl.when(pl.col("m") > _SSN).then(pl.col("m")),
    )
    if several.height:
        grouped = several.group_by("_i").agg(
            _before=pl.col("m").filter(pl.col("m") < _SSN).sort().str.join(","),
            _after=pl.col("m").filter(pl.col("m") > _SSN).sort().str.join(","),
        )
        placed = pl.concat([placed, grouped.with_columns(pl.col("_i").cast(placed.schema["_i"]))])
    return out.join(placed, on="_i", how="left", maintain_order="left")


def bulk_lines(
    block: bytes,
    first: int,
    times: Callable[[pa.Array], tuple[pa.Array, dict[int, str]]],
    error_of: Callable[[str], str | None],
    lines: int | None = None,
) -> tuple[pa.Table | None, list[int]]:
    """A block of whole lines, numbered from ``first`` → (the chunk ``_Rows.flush`` would build for the
    lines taken in bulk, the indices of the lines left to the line-by-line reader).

    ``times`` is ``agentstore._times`` and ``error_of`` gives the error message of an error event's
    payload text (both passed in: this module sits below ``agentstore``); ``lines``, the block's
    number of newlines where the caller has counted them already.
    """
    count = (block.count(b"\n") if lines is None else lines) + (0 if block.endswith(b"\n") else 1)
    if not block or b"\r" in block or b"\x00" in block or block.startswith(b"\xef\xbb\xbf"):
        return None, list(range(count))
    try:  # one column per line (blank lines are nulls): UTF-8 checked and lines split by Polars' CSV reader
        frame = pl.read_csv(
            io.BytesIO(block),
            has_header=False,
            separator="\x00",
            quote_char=None,
            new_columns=["line"],
            schema={"line": pl.String},
        )
    except pl.exceptions.PolarsError:  # not UTF-8
        return None, list(range(count))
    if frame.height != count:
        return None, list(range(count))
    line = pl.col("line")
    at = {name: line.str.find(sep, literal=True) for name, sep in _SEPARATORS.items()}
    frame = frame.with_row_index("_i").with_columns(**{f"_{n}": e for n, e in at.items()}, _len=line.str.len_bytes())
    seq_at, type_at, payload_at, ts_at, meta_at = (pl.col(f"_{n}") for n in _SEPARATORS)

    def piece(start: pl.Expr, end: pl.Expr) -> pl.Expr:
        return line.str.slice(start, end - start)

    parts = frame.filter(
        line.str.starts_with('{"session_id":"')
        & line.str.ends_with("}}")
        & (seq_at < type_at)
        & (type_at < payload_at)
        & (payload_at < ts_at)
        & (ts_at < meta_at)
    ).select(
        "_i",
        sid=piece(pl.lit(15), seq_at),
        seq=piece(seq_at + 20, type_at),
        typ=piece(type_at + 9, payload_at - 1),
        payload=piece(payload_at + 11, ts_at),
        ts=piece(ts_at + 14, meta_at),
        meta=piece(meta_at + 14, pl.col("_len") - 2),
    )
    parts = parts.filter(
        pl.col("sid").str.contains(r'^[^"\\\x00-\x1f]+$')
        & pl.col("seq").str.contains(r"^[1-9][0-9]{0,17}$")
        & pl.col("typ").str.contains("^" + _PLAIN + "+$")
        & pl.col("ts").str.contains(r"^[0-9A-Za-z:.+\-]+$")
    )
    if not parts.height:
        return None, list(range(count))
    parts = parts.filter(canonical_as_written(parts, "payload"))
    # Metadata differ mostly by their numbers: the members are read once per template, the metadata with
    # the number of every tokens/duration/cost key written 1; each line's numbers come from its own text.
    meta = pl.col("meta")
    parts = parts.with_columns(
        _template=meta.str.replace_all(_NUMBER_MEMBER, "${1}1"),
        **{f"_{k}": meta.str.extract(_NUMBER_OF[k], 1) for k in _NUMBER_KEYS},
    )
    templates = parts.select(meta=pl.col("_template").unique()).with_row_index("_i")
    info = (
        _members(templates)
        .join(templates, on="_i")
        .select(
            _template="meta",
            # a key of a number column nested in another value had its number rewritten: not taken
            _meta_ok=pl.col("_meta_ok") & (pl.col("meta").str.count_matches(_NUMBER_KEY) == pl.col("_keyed")),
            model="model",
            tool_name="tool_name",
            _before="_before",
            _after="_after",
        )
    )
    parts = parts.join(info, on="_template", how="left", maintain_order="left")
    ok = pl.col("_meta_ok").fill_null(False)
    for k in _NUMBER_KEYS:
        ok = ok & (pl.col(f"_{k}").is_null() | _value_ok(k, pl.col(f"_{k}")))
    parts = parts.filter(ok).rename({f"_{k}": k for k in _NUMBER_KEYS}).with_columns(
        _cost_key=_cost_key(pl.col("cost_usd"))
    )
    occurred, bad = times(parts.get_column("ts").to_arrow())
    if bad:
        keep = pl.Series([i not in bad for i in range(parts.height)])
        parts = parts.filter(keep)
        occurred = occurred.filter(pa.array(keep.to_list()))
    if not parts.height:
        return None, list(range(count))
    parts = parts.with_columns(_us=pl.Series(pc.cast(occurred, pa.int64())))
    # the same columns as _Rows.add, then the id's content key
    # the members that stay in metadata, sorted, with source_sequence_number in its place
    before, after = pl.col("_before").fill_null(""), pl.col("_after").fill_null("")
    meta = pl.concat_str(
        pl.lit("{"),
        before,
        pl.when(before != "").then(pl.lit(",")).otherwise(pl.lit("")),
        pl.lit(_SSN + ":"),
        pl.col("seq"),
        pl.when(after != "").then(pl.lit(",")).otherwise(pl.lit("")),
        after,
        pl.lit("}"),
    )
    duration = pl.col("duration_ms")
    none = pl.lit("None")
    parts = parts.with_columns(
        metadata=meta,
        tokens_in=pl.col("tokens_in").cast(pl.Int64),
        tokens_out=pl.col("tokens_out").cast(pl.Int64),
        model=pl.col("model").str.slice(1, pl.col("model").str.len_bytes() - 2),
        tool_name=pl.col("tool_name").str.slice(1, pl.col("tool_name").str.len_bytes() - 2),
        _duration_repr=pl.when(duration.str.contains(r"\.")).then(duration).otherwise(duration + ".0"),
    )
    quoted = {n: pl.lit("'") + pl.col(n) + pl.lit("'") for n in ("typ", "model", "tool_name")}
    parts = parts.with_columns(
        _name=pl.concat_str(
            pl.lit("agentstore/"),
            pl.col("sid"),
            pl.lit("/"),
            pl.col("seq"),
            pl.lit("/"),
            quoted["typ"],
            pl.lit("\x1e"),
            pl.col("payload"),
            pl.lit("\x1e"),
            pl.col("metadata"),
            pl.lit("\x1e"),
            pl.col("tokens_in").cast(pl.String).fill_null(none),
            pl.lit("\x1e"),
            pl.col("tokens_out").cast(pl.String).fill_null(none),
            pl.lit("\x1e"),
            quoted["model"].fill_null(none),
            pl.lit("\x1e"),
            quoted["tool_name"].fill_null(none),
            pl.lit("\x1e"),
            pl.col("_duration_repr").fill_null(none),
            pl.lit("\x1e"),
            pl.col("_cost_key").fill_null(none),
            pl.lit("\x1e"),
            pl.col("_us").cast(pl.String),
        )
    )
    ids = uuid5_texts(IMPORT_NAMESPACE.bytes, parts.get_column("_name"))
    # an error event's message: its payload decoded by ``error_of`` (one call per error event)
    wanted = parts.select((pl.col("typ") == "error") & pl.col("payload").str.starts_with("{")).to_series()
    errors = pl.Series("error", [None] * parts.height, dtype=pl.String)
    if wanted.any():
        rows = wanted.arg_true()
        errors = errors.scatter(rows, [error_of(p) for p in parts.get_column("payload").gather(rows).to_list()])
    chunk = (
        parts.select(
            _where=pl.col("_i").cast(pl.Int64) + first,
            _seq=pl.col("seq").cast(pl.Int64),
            stream_id="sid",
            event_id=ids,
            event_type="typ",
            occurred_at="_us",
            model="model",
            tool_name="tool_name",
            tokens_in="tokens_in",
            tokens_out="tokens_out",
            cost_usd="cost_usd",
            duration_ms=duration.cast(pl.Float64),
            error=errors,
            data="payload",
            metadata="metadata",
        )
        .to_arrow()
    )
    chunk = chunk.cast(_CHUNK_SCHEMA)
    taken = parts.get_column("_i").cast(pl.Int64).implode()
    left = pl.int_range(count, dtype=pl.Int64, eager=True)
    return chunk, left.filter(~left.is_in(taken)).to_list()


def lines_at(block: bytes, indices: list[int]) -> list[bytes]:
    """The lines of ``block`` at ``indices`` (sorted), each with its newline but a cut-off last one."""
    wanted = set(indices)
    out: list[bytes] = []
    start = 0
    for i in range(indices[-1] + 1 if indices else 0):
        end = block.find(b"\n", start)
        stop = len(block) if end < 0 else end + 1
        if i in wanted:
            out.append(block[start:stop])
        start = stop
    return out
