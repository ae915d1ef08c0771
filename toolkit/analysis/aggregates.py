"""Aggregates: a name, typed event models, an initial state, a reducer, upcasters.

An :class:`Aggregate` says how the events of one stream fold into a state::

    state = aggregate.initial()
    for event in stream:                    # in version order
        state = aggregate.reducer(state, event)

The reducer may update ``state`` in place and return it (fast) or return a new value (pure);
the fold copies a state with ``aggregate.copy`` whenever it must keep one.

Events reach the reducer as :class:`Event`: the envelope columns as attributes, ``data`` (the
payload parsed lazily from JSON) and ``payload`` (the payload validated by the event model of
its type, after upcasting; ``None`` when the aggregate has no model for the type). Events read
from the journal are :class:`SharedEvent`: every fold of the stream gets the same objects, so
their data and columns are read-only (copy ``e.data`` to change it). A fold never sets
``payload`` on the events it is given: an event with a model reaches the reducer as a copy
carrying its payload (:meth:`Event.with_payload`), so folds of one stream by different
aggregates, in threads at once, each see their own models.

``fingerprint`` is derived from the reducer's source code, the initial state's code (each with
the file defining it, so its constants and helpers count), the event models' JSON schemas and the
upcasters' code: snapshots taken with another fingerprint are never used.

>>> from pydantic import BaseModel
>>> class Deposited(BaseModel):
...     amount: int
>>> def apply(balance: int, event: Event) -> int:
...     return balance + event.payload.amount if event.event_type == "Deposited" else balance
>>> account = Aggregate("account", initial=lambda: 0, reducer=apply, events={"Deposited": Deposited})
>>> account.fold([Event.of("Deposited", {"amount": 5}), Event.of("Deposited", {"amount": 7})])
12
>>> len(account.fingerprint)
16
"""

from __future__ import annotations

import copy as _copy
import dataclasses
import datetime as dt
import hashlib
import inspect
import json
import operator
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Generic, NoReturn, TypeVar

from pydantic import BaseModel, ValidationError

from toolkit.errors import EventValidationError, ReplayError, ToolkitError
from toolkit.journal.store import AppendResult, Journal

S = TypeVar("S")

UTC = dt.UTC
EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=UTC)
EVENT_VERSION_KEY: Final = "event_version"  # metadata key holding the version of an event's model

# the columns an Event carries, in the order fold readers fetch them
EVENT_COLUMNS: Final = (
    "stream_id",
    "version",
    "position",
    "event_type",
    "source_type",
    "occurred_at",
    "model",
    "tool_name",
    "tool_call_id",
    "tokens_in",
    "tokens_out",
    "tokens_cache_read",
    "tokens_cache_write",
    "tokens_reasoning",
    "cost_usd",
    "duration_ms",
    "is_error",
    "error",
    "data",
    "metadata",
    "event_id",
    "causation_id",
)

_MISSING: Any = object()


class Event:
    """One stored event as a reducer sees it (cheap to build: slots, payload parsed lazily).

    ``occurred_us`` is the time in microseconds since the epoch (UTC); ``occurred_at`` converts.
    """

    __slots__ = (
        "_data",
        "_meta",
        "causation_id",
        "cost_usd",
        "data_json",
        "duration_ms",
        "error",
        "event_id",
        "event_type",
        "is_error",
        "metadata_json",
        "model",
        "occurred_us",
        "payload",
        "position",
        "source_type",
        "stream_id",
        "tokens_cache_read",
        "tokens_cache_write",
        "tokens_in",
        "tokens_out",
        "tokens_reasoning",
        "tool_call_id",
        "tool_name",
        "version",
    )

    stream_id: str
    version: int
    position: int
    event_type: str
    source_type: str | None
    occurred_us: int
    model: str | None
    tool_name: str | None
    tool_call_id: str | None
    tokens_in: int | None
    tokens_out: int | None
    tokens_cache_read: int | None
    tokens_cache_write: int | None
    tokens_reasoning: int | None
    cost_usd: Decimal | None
    duration_ms: float | None
    is_error: bool
    error: str | None
    data_json: str
    metadata_json: str
    event_id: str
    causation_id: str | None
    payload: Any

    def __init__(self, row: tuple[Any, ...]) -> None:
        """``row``: the values of :data:`EVENT_COLUMNS` in that order (occurred_at in µs)."""
        (
            self.stream_id,
            self.version,
            self.position,
            self.event_type,
            self.source_type,
            self.occurred_us,
            self.model,
            self.tool_name,
            self.tool_call_id,
            self.tokens_in,
            self.tokens_out,
            self.tokens_cache_read,
            self.tokens_cache_write,
            self.tokens_reasoning,
            self.cost_usd,
            self.duration_ms,
            self.is_error,
            self.error,
            self.data_json,
            self.metadata_json,
            self.event_id,
            self.causation_id,
        ) = row
        self._data = _MISSING
        self._meta = _MISSING
        self.payload = None

    @classmethod
    def of(
        cls,
        event_type: str,
        data: Any = None,
        *,
        version: int = 0,
        stream_id: str = "",
        occurred_at: dt.datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        **columns: Any,
    ) -> Event:
        """An event built by hand (tests, counterfactual inserts); unknown columns are refused."""
        values: dict[str, Any] = dict.fromkeys(EVENT_COLUMNS)
        unknown = set(columns) - set(EVENT_COLUMNS)
        if unknown:
            raise TypeError(f"Event.of: unknown column(s) {sorted(unknown)}")
        values.update(columns)
        values.update(
            stream_id=stream_id,
            version=version,
            position=columns.get("position") or 0,
            event_type=event_type,
            occurred_at=to_us(occurred_at) if occurred_at is not None else 0,
            is_error=bool(columns.get("is_error") or event_type == "error"),
            data=json.dumps(data, sort_keys=True, default=str),
            metadata=json.dumps(dict(metadata or {}), sort_keys=True, default=str),
            event_id=columns.get("event_id") or "",
        )
        if values["cost_usd"] is not None and not isinstance(values["cost_usd"], Decimal):
            values["cost_usd"] = Decimal(str(values["cost_usd"]))
        return cls(tuple(values[c] for c in EVENT_COLUMNS))

    @property
    def data(self) -> Any:
        """The payload parsed from JSON (the raw text when it is not JSON)."""
        if self._data is _MISSING:
            _set(self, "_data", _parse_data(self.data_json))
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._data = value

    @property
    def metadata(self) -> dict[str, Any]:
        if self._meta is _MISSING:
            _set(self, "_meta", _parse_metadata(self.metadata_json))
        meta: dict[str, Any] = self._meta
        return meta

    @property
    def occurred_at(self) -> dt.datetime:
        return EPOCH + dt.timedelta(microseconds=self.occurred_us)

    def row(self) -> dict[str, Any]:
        """The event as a row dict with canonical column names (explainers, exports)."""
        out = {c: getattr(self, c) for c in EVENT_COLUMNS if c not in {"occurred_at", "data", "metadata"}}
        out["occurred_at"] = self.occurred_at
        out["data"] = self.data_json
        out["metadata"] = self.metadata_json
        return out

    def with_payload(self, payload: Any) -> Event:
        """This event carrying ``payload``, as a copy (the event itself is unchanged): the folds hand
        it to the reducer. A shared event's copy is shared too (read-only, its parsed data the same).

        >>> e = Event.of("Deposited", {"amount": 5})
        >>> e.with_payload(5).payload, e.payload
        (5, None)
        """
        out = Event(_row_of(self))
        out._data, out._meta, out.payload = self._data, self._meta, payload
        if type(self) is not Event:
            out.__class__ = type(self)  # SharedEvent: the same slots
        return out

    def replace(self, **changes: Any) -> Event:
        """A copy with some columns changed (``data=`` takes a Python value)."""
        values = {c: getattr(self, c) for c in EVENT_COLUMNS if c not in {"occurred_at", "data", "metadata"}}
        values["occurred_at"] = self.occurred_us
        values["data"] = self.data_json
        values["metadata"] = self.metadata_json
        unknown = set(changes) - set(EVENT_COLUMNS)
        if unknown:
            raise TypeError(f"Event.replace: unknown column(s) {sorted(unknown)}")
        if "occurred_at" in changes and isinstance(changes["occurred_at"], dt.datetime):
            changes["occurred_at"] = to_us(changes["occurred_at"])
        if "data" in changes:
            changes["data"] = json.dumps(changes["data"], sort_keys=True, default=str)
        if "metadata" in changes:
            changes["metadata"] = json.dumps(changes["metadata"], sort_keys=True, default=str)
        values.update(changes)
        return Event(tuple(values[c] for c in EVENT_COLUMNS))

    # A state may keep the events it was handed, and the fold copies states (``Aggregate.copy``, a
    # deep copy by default). Copies are plain events (a shared event's copy can be changed), and
    # the lazily parsed payload is copied as not parsed yet, never as a stray sentinel object.
    def __copy__(self) -> Event:
        out = Event.__new__(Event)
        for name in Event.__slots__:
            _set(out, name, getattr(self, name))
        return out

    def __deepcopy__(self, memo: dict[int, Any]) -> Event:
        out = Event.__new__(Event)
        memo[id(self)] = out
        for name in Event.__slots__:
            value = getattr(self, name)
            _set(out, name, value if value is _MISSING else _copy.deepcopy(value, memo))
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as a plain event of the same columns (its payload is parsed again when read)."""
        return (Event, (self._row(),))

    def _row(self) -> tuple[Any, ...]:
        values = {c: getattr(self, c) for c in EVENT_COLUMNS if c not in {"occurred_at", "data", "metadata"}}
        values |= {"occurred_at": self.occurred_us, "data": self.data_json, "metadata": self.metadata_json}
        return tuple(values[c] for c in EVENT_COLUMNS)

    def __repr__(self) -> str:
        return f"Event({self.stream_id!r} v{self.version} {self.event_type})"


_set: Final = object.__setattr__
# the slots Event.__init__ sets from a row, in its order (with_payload copies through it: fastest)
_row_of: Final = operator.attrgetter(
    *({"occurred_at": "occurred_us", "data": "data_json", "metadata": "metadata_json"}.get(c, c) for c in EVENT_COLUMNS)
)


def _parse_data(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _parse_metadata(text: str) -> dict[str, Any]:
    try:
        m = json.loads(text) if text else {}
    except (TypeError, ValueError):
        m = {}
    return m if isinstance(m, dict) else {}


READ_ONLY_HINT: Final = "copy it first and change the copy, e.g. data = copy.deepcopy(e.data)"


def _refuse(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(f"the data of a stored event is read-only (every fold reads it again): {READ_ONLY_HINT}")


class ReadOnlyDict(dict[str, Any]):
    """A JSON object of a shared event's data: reads as a dict, refuses changes; copies are plain dicts."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {k: _copy.deepcopy(v, memo) for k, v in self.items()}

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))


class ReadOnlyList(list[Any]):
    """A JSON array of a shared event's data: reads as a list, refuses changes; copies are plain lists."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = append = clear = extend = insert = pop = remove = _refuse
    reverse = sort = _refuse

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return [_copy.deepcopy(v, memo) for v in self]

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))


def read_only(value: Any) -> Any:
    """JSON data with every object and array made read-only (scalars are immutable already).

    >>> d = read_only({"items": [1]})
    >>> d == {"items": [1]}, isinstance(d["items"], list)
    (True, True)
    >>> d["items"].append(2)
    Traceback (most recent call last):
    TypeError: the data of a stored event is read-only (every fold reads it again): copy it first and change the copy, e.g. data = copy.deepcopy(e.data)
    """
    t = type(value)
    if t is dict:
        return ReadOnlyDict({k: read_only(v) for k, v in value.items()})
    if t is list:
        return ReadOnlyList([read_only(v) for v in value])
    return value


class SharedEvent(Event):
    """An event of the per-process stream cache: every fold of the stream is handed this same
    object, so it refuses changes — its ``data`` and ``metadata`` are read-only and its columns
    cannot be set (a reducer that changed them would change what the next fold reads). Its
    ``payload`` is never set either: folds in other threads read the same object, so a fold hands
    its reducer a copy carrying the payload of its own aggregate (:meth:`Event.with_payload`).
    """

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(
            f"{self!r}: {name} of a stored event is read-only (every fold reads it again): {READ_ONLY_HINT}"
        )

    @property
    def data(self) -> Any:
        if self._data is _MISSING:
            _set(self, "_data", read_only(_parse_data(self.data_json)))
        return self._data

    @data.setter
    def data(self, value: Any) -> None:  # __setattr__ refuses first
        raise TypeError(READ_ONLY_HINT)

    @property
    def metadata(self) -> dict[str, Any]:
        if self._meta is _MISSING:
            _set(self, "_meta", read_only(_parse_metadata(self.metadata_json)))
        meta: dict[str, Any] = self._meta
        return meta

    @classmethod
    def share(cls, events: list[Event]) -> list[Event]:
        """The same events, made read-only in place (the class of an event is its only change)."""
        for e in events:
            e.__class__ = cls  # same slots: no copy of the event is made
        return events


def to_us(t: dt.datetime) -> int:
    if t.tzinfo is None:
        raise ValueError(f"{t.isoformat()}: a time needs a time zone (UTC)")
    d = t - EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


@dataclass(frozen=True)
class Upcaster:
    """Turns the data of ``event_type`` at model version ``from_version`` into ``from_version + 1``."""

    event_type: str
    from_version: int
    upcast: Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class ReplayProblem:
    """An event whose stored data does not fit its model: reported, not applied."""

    stream_id: str
    version: int
    event_type: str
    errors: str


def _state_dict(state: Any) -> Any:
    if isinstance(state, BaseModel):
        return state.model_dump(mode="json")
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        return dataclasses.asdict(state)
    return state


@dataclass(frozen=True)
class Aggregate(Generic[S]):
    """How a stream's events fold into a state (see the module docstring)."""

    name: str
    initial: Callable[[], S]
    reducer: Callable[[S, Event], S]
    events: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    upcasters: tuple[Upcaster, ...] = ()
    event_versions: Mapping[str, int] = field(default_factory=dict)  # current model version per type
    copy: Callable[[S], S] = _copy.deepcopy
    to_dict: Callable[[S], Any] = _state_dict  # JSON-able form (snapshots, diffs, CLI)
    from_dict: Callable[[Any], S] | None = None  # inverse of to_dict; None: snapshots not possible
    description: str = ""
    depends_on: tuple[Any, ...] = ()  # modules/classes/functions the reducer uses: in the fingerprint

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"aggregate name {self.name!r}: use letters, digits, '_', '-', '.'")
        for u in self.upcasters:
            if u.from_version < 1:
                raise ValueError(f"upcaster for {u.event_type}: from_version must be >= 1")

    @property
    def fingerprint(self) -> str:
        """16 hex digits over the reducer, initial state, models and upcasters."""
        cached = self.__dict__.get("_fingerprint")
        if cached is not None:
            return str(cached)
        h = hashlib.sha256(self.name.encode())
        for fn in (self.reducer, self.initial, self.to_dict, self.from_dict, *self.depends_on):
            h.update(b"\0" + code_of(fn).encode())
        for et in sorted(self.events):
            schema = self.events[et].model_json_schema()
            h.update(f"\0{et}\0{json.dumps(schema, sort_keys=True)}".encode())
        for et, v in sorted(self.event_versions.items()):
            h.update(f"\0{et}={v}".encode())
        for u in sorted(self.upcasters, key=lambda u: (u.event_type, u.from_version)):
            h.update(f"\0{u.event_type}@{u.from_version}\0{code_of(u.upcast)}".encode())
        fp = h.hexdigest()[:16]
        object.__setattr__(self, "_fingerprint", fp)
        return fp

    def current_version(self, event_type: str) -> int:
        return self.event_versions.get(event_type, 1)

    def prepare(self, event: Event) -> ReplayProblem | None:
        """Upcast and validate ``event`` in place (sets ``payload``); a problem when it does not fit.

        For events the caller owns: a shared (cached) event refuses it; the folds use :meth:`parse`.
        """
        if event.event_type not in self.events:
            return None
        payload, problem = self.parse(event)
        if problem is None:
            event.payload = payload
        return problem

    def parse(self, event: Event) -> tuple[Any, ReplayProblem | None]:
        """The payload of ``event`` upcast and validated by the model of its type (None: no model),
        or the problem when it does not fit; ``event`` is not changed."""
        model = self.events.get(event.event_type)
        if model is None:
            return None, None
        data = event.data
        if self.upcasters:
            have = event.metadata.get(EVENT_VERSION_KEY, 1)
            have = have if isinstance(have, int) else 1
            want = self.current_version(event.event_type)
            while have < want:
                up = self._upcaster(event.event_type, have)
                if up is None:
                    return None, ReplayProblem(
                        event.stream_id, event.version, event.event_type, f"no upcaster from version {have} to {want}"
                    )
                data = up.upcast(dict(data) if isinstance(data, Mapping) else {"value": data})
                have += 1
        try:
            return model.model_validate(data), None
        except ValidationError as e:
            return None, ReplayProblem(event.stream_id, event.version, event.event_type, _errors(e))

    def _upcaster(self, event_type: str, version: int) -> Upcaster | None:
        for u in self.upcasters:
            if u.event_type == event_type and u.from_version == version:
                return u
        return None

    def validate(self, event_type: str, data: Any) -> str | None:
        """Errors of ``data`` against the model of ``event_type`` (None: it fits or has no model)."""
        model = self.events.get(event_type)
        if model is None:
            return None
        try:
            model.model_validate(data)
        except ValidationError as e:
            return _errors(e)
        return None

    def fold(self, events: Iterable[Event], state: S | None = None) -> S:
        """Fold events into a state (events that do not fit their model are skipped; the events are
        not changed: the reducer gets a copy carrying the payload, see :meth:`Event.with_payload`)."""
        s = self.initial() if state is None else state
        reducer = self.reducer
        models = self.events
        for e in events:
            if e.event_type in models:
                payload, problem = self.parse(e)
                if problem is not None:
                    continue
                e = e.with_payload(payload)
            elif e.payload is not None:
                e = e.with_payload(None)  # an event the caller prepared for another aggregate
            try:
                s = reducer(s, e)
            except ToolkitError:
                raise
            except Exception as err:
                raise reducer_failed(self, e, err) from err
        return s


def reducer_failed(aggregate: Aggregate[Any], event: Event, err: Exception) -> ReplayError:
    """The error for a reducer (or upcaster) that raised: the aggregate, the event and the line
    that raised (the last one in the reducer's file when the error came from code it called)."""
    frames = traceback.extract_tb(err.__traceback__)
    try:
        own = inspect.getsourcefile(aggregate.reducer)
    except TypeError:
        own = None
    frame = next((f for f in reversed(frames) if f.filename == own), frames[-1] if frames else None)
    where = f" at {frame.filename}:{frame.lineno}" if frame is not None else ""
    return ReplayError(
        f"aggregate {aggregate.name!r} failed on stream {event.stream_id!r} version {event.version} "
        f"({event.event_type}){where}: {type(err).__name__}: {err}",
        hint="fix the reducer (in your plugin file); journal --debug shows the traceback",
        aggregate=aggregate.name,
        stream_id=event.stream_id,
        version=event.version,
        event_type=event.event_type,
    )


def _errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or '<data>'}: {err['msg']}" for err in e.errors())


def code_of(fn: Any) -> str:
    """The function's source and the digest of the whole file defining it: a module constant or
    helper the function uses changes its code too (code it imports from elsewhere does not: name
    that in ``depends_on``)."""
    if fn is None:
        return "-"
    try:
        own = inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        own = f"{code.co_code.hex()}{code.co_consts!r}{code.co_names!r}" if code is not None else repr(fn)
    module = inspect.getmodule(fn)
    try:
        whole = inspect.getsource(module) if module is not None else ""
    except (OSError, TypeError):
        whole = ""
    return own + "\0" + hashlib.sha256(whole.encode()).hexdigest()


# ---------------------------------------------------------------------------- registry and appends

_REGISTRY: dict[str, Aggregate[Any]] = {}


def register_aggregate(aggregate: Aggregate[S]) -> Aggregate[S]:
    """Make an aggregate available by name (``--aggregate NAME``); replaces one of that name."""
    _REGISTRY[aggregate.name] = aggregate
    return aggregate


def get_aggregate(name: str) -> Aggregate[Any]:
    if name not in _REGISTRY:
        import toolkit.analysis.agent_run  # noqa: F401  (registers the built-in)
    found = _REGISTRY.get(name)
    if found is None:
        raise ReplayError(
            f"no aggregate {name!r}",
            hint=f"known: {', '.join(sorted(_REGISTRY))}; load your own with --plugins FILE.py",
            name=name,
        )
    return found


def aggregates() -> dict[str, Aggregate[Any]]:
    return dict(sorted(_REGISTRY.items()))


def append_events(
    journal: Journal,
    aggregate: Aggregate[Any],
    stream_id: str,
    events: Iterable[Mapping[str, Any]],
    *,
    expected_version: int | None = None,
    stream_type: str | None = None,
) -> AppendResult:
    """Append events to a stream through an aggregate: each event's data must fit its model.

    A misfit raises ``EventValidationError`` naming the stream, the event's index and the field;
    nothing is written. Events get ``metadata.event_version`` (the model's current version), so
    upcasters know what they read later.
    """
    rows = []
    for i, e in enumerate(events):
        et = e.get("event_type")
        model = aggregate.events.get(et) if isinstance(et, str) else None
        if model is not None:
            try:
                model.model_validate(e.get("data"))
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(map(str, first["loc"])) or "data"
                raise EventValidationError(
                    f"stream {stream_id!r}: event {i} ({et}): field {where!r}: {first['msg']}",
                    hint=f"the data of {et} must fit {model.__name__} of aggregate {aggregate.name!r}",
                    stream_id=stream_id,
                    index=i,
                    field=where,
                    reason=_errors(err),
                ) from err
            meta = dict(e.get("metadata") or {})
            meta.setdefault(EVENT_VERSION_KEY, aggregate.current_version(str(et)))
            e = {**e, "metadata": meta}
        rows.append(e)
    return journal.append(stream_id, rows, expected_version=expected_version, stream_type=stream_type)
