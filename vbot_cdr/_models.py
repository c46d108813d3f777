"""Typed records of the VBot call-history API, the search filter, and the record converter.

Field names and types follow the ``getAll`` example of the API document. The example's values
are placeholders, so every field is optional: a record with missing or ``null`` fields still
parses, and fields the document does not list are kept in `CallRecord.extras`. A field of the
wrong type is an error, never silently coerced.

The v3 CDR endpoints send the same records in camelCase (``transId``, ``createAt``,
``member.vbotId``): each field is read from its snake_case name or its camelCase twin, into the
same attribute, so one `CallRecord` serves every dialect.
"""

from __future__ import annotations

import datetime as dt
import itertools
import linecache
import re
import types
import typing
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal

import attrs
import cattrs
import msgspec
import orjson
from cattrs.gen import make_dict_structure_fn, override

from ._errors import ResponseFormatError

__all__ = [
    "STRUCTURE_ERRORS",
    "BotConversation",
    "CallFilter",
    "CallRecord",
    "CallRow",
    "CamelRecord",
    "CollectedField",
    "Hotline",
    "Member",
    "SnakeRecord",
    "TimeUnit",
    "build_records",
    "camel_case",
    "describe_structure_error",
    "epoch_to_datetime",
    "iso_date",
    "structure_record",
    "structure_records",
    "to_epoch",
]

TimeUnit = Literal["s", "ms"]

#: Epoch values at or above this are milliseconds (10**11 s is the year 5138).
MILLISECONDS_THRESHOLD: Final = 10**11

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


def epoch_to_datetime(value: int | None) -> dt.datetime | None:
    """Turn a Unix epoch in seconds or milliseconds (told apart by magnitude) into aware UTC.

    ``None`` and 0 give ``None``: the API sends 0 for a time that never came (a call that was
    not answered has ``answer_at`` 0), and no call was made at the epoch itself.

    Raises:
        ResponseFormatError: The value is outside what a datetime can hold (years 1 to 9999).
    """
    if not value:
        return None
    seconds = value / 1000 if abs(value) >= MILLISECONDS_THRESHOLD else value
    try:
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        # The record itself parsed; only this reading of one of its times is impossible.
        raise ResponseFormatError(f"epoch {value} is outside the datetime range") from None


@attrs.frozen(kw_only=True)
class Member:
    """The member (agent) of a call."""

    name: str | None = None
    color: str | None = None
    vbot_id: str | None = None


@attrs.frozen(kw_only=True)
class Hotline:
    """The hotline a call was placed on."""

    code: str | None = None
    name: str | None = None
    phone_number: str | None = None


@attrs.frozen(kw_only=True)
class CollectedField:
    """One item of data collected during a call."""

    cfkey: str | None = None
    cfname: str | None = None
    cfvalue: str | None = None
    description: str | None = None


@attrs.frozen(kw_only=True, slots=False)
class CallRecord:
    """One call of the history, as ``getAll`` (or v3's ``get-all``) returns it.

    Every field is optional (``None`` when the server left it out or sent ``null``).
    Times are kept as the server sent them (Unix epoch); `created`, `answered` and `ended`
    give them as aware UTC datetimes. A camelCase record (v3) fills the same snake_case
    attributes; `external_call_id`, `campaign_id`, `campaign_group_id`, `template_script_id`
    and `bot_member_status_connect` are sent by v3 only. Fields no dialect documents are kept,
    as sent, in `extras`.
    """

    phone: str | None = None
    name: str | None = None
    customer_uid: str | None = None
    duration: int | None = None
    billsec: int | None = None
    sip_code: str | None = None
    disposition: str | None = None
    input_log: str | None = None
    status: int | None = None
    postage: float | None = None
    service_charge: float | None = None
    postage_bot_service: float | None = None
    member: Member | None = None
    hotline: Hotline | None = None
    call_collected_data: tuple[CollectedField, ...] = ()
    answer_at: int | None = None
    end_call_at: int | None = None
    campaign_name: str | None = None
    campaign_code: str | None = None
    campaign_group_name: str | None = None
    campaign_group_code: str | None = None
    template_script_name: str | None = None
    template_script_code: str | None = None
    voice_text: str | None = None
    create_at: int | None = None
    bot_id: str | None = None
    trans_id: str | None = None
    create_by: str | None = None
    score: float | None = None
    is_record: bool | None = None
    # The v3 CDR endpoints' own fields.
    external_call_id: str | None = None
    campaign_id: int | None = None
    campaign_group_id: int | None = None
    template_script_id: int | None = None
    bot_member_status_connect: str | None = None
    # Out of the hash (still in eq): a mapping is unhashable, and without this every
    # record, being frozen, would raise on hash() and could not go in a set.
    extras: Mapping[str, Any] = attrs.field(default=_EMPTY, repr=False, hash=False)

    @property
    def created(self) -> dt.datetime | None:
        """`create_at` as an aware UTC datetime."""
        return epoch_to_datetime(self.create_at)

    @property
    def answered(self) -> dt.datetime | None:
        """`answer_at` as an aware UTC datetime."""
        return epoch_to_datetime(self.answer_at)

    @property
    def ended(self) -> dt.datetime | None:
        """`end_call_at` as an aware UTC datetime."""
        return epoch_to_datetime(self.end_call_at)

    def to_dict(self) -> dict[str, Any]:
        """Return the record in the seed API's snake_case shape, whatever dialect sent it
        (every attribute, ``extras`` merged back in as sent), ready for JSON."""
        data: dict[str, Any] = _converter.unstructure(self)
        del data["extras"]
        data.update(self.extras)
        return data


@attrs.frozen(kw_only=True)
class BotConversation:
    """The bot conversation of one call, as ``getBotConversation`` returns it.

    `raw` is the API's string exactly as received. `turns` holds its turns in either format
    seen: the items of a JSON array, or, for the text format v3 documents
    (``"assistant: Xin chào ... | user: Vâng ... |"``: turns split on ``|``, the role before
    the first ``": "``), one ``{"role": ..., "content": ...}`` dict per turn. Anything else
    gives no turns: the library does not guess at other formats.
    """

    trans_id: str
    raw: str
    # Out of the hash: JSON objects are unhashable dicts, and raw already determines turns.
    turns: tuple[Any, ...] = attrs.field(default=(), hash=False)

    @classmethod
    def from_raw(cls, trans_id: str, raw: str) -> BotConversation:
        """Build a conversation from the API's string, parsing `turns` (see the class)."""
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return cls(trans_id=trans_id, raw=raw, turns=_text_turns(raw))
        turns = tuple(parsed) if isinstance(parsed, list) else ()
        return cls(trans_id=trans_id, raw=raw, turns=turns)


def _text_turns(raw: str) -> tuple[dict[str, str], ...]:
    """The turns of v3's ``role: content | role: content |`` text, or none if it is not that."""
    if "|" not in raw:
        return ()
    turns = []
    for part in raw.split("|"):
        if not part.strip():
            continue
        role, separator, content = part.strip().partition(": ")
        if not separator or not role or any(c.isspace() for c in role):
            return ()
        turns.append({"role": role, "content": content.strip()})
    return tuple(turns)


def camel_case(name: str) -> str:
    """``name`` (snake_case) as the v3 API spells it: ``trans_id`` is ``transId``."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _camel_aliases(cls: type) -> Mapping[str, str]:
    """Each camelCase field name of ``cls`` (``transId``) to its attribute (``trans_id``)."""
    names = (a.name for a in attrs.fields(cls) if a.name != "extras")
    return MappingProxyType({camel_case(name): name for name in names if camel_case(name) != name})


_ALIASES: Final[Mapping[type, Mapping[str, str]]] = MappingProxyType(
    {cls: _camel_aliases(cls) for cls in (Member, Hotline, CollectedField, CallRecord)}
)


def _snake_keys(data: dict[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    """``data`` with each camelCase field name replaced by its attribute name."""
    return {aliases.get(key, key): value for key, value in data.items()}


def _check_date(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"{attribute.name} is a naive datetime; give it a timezone "
                "(e.g. datetime.now(timezone.utc)) so it means one instant"
            )
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be an int or an aware datetime, got {value!r}")


def _check_status(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{attribute.name} must be an int, got {value!r}")


def _check_number(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise TypeError(f"{attribute.name} must be a number, got {value!r}")


_optional_str = attrs.validators.optional(attrs.validators.instance_of(str))


def to_epoch(value: int | dt.datetime, time_unit: TimeUnit) -> int:
    """A filter date as the epoch int sent for it: ints verbatim, datetimes in ``time_unit``."""
    if not isinstance(value, dt.datetime):
        return value
    seconds = value.timestamp()
    return round(seconds * 1000) if time_unit == "ms" else int(seconds)


def _iso_epoch(value: int) -> str:
    """An epoch (seconds or milliseconds, by magnitude) with its instant in ISO 8601."""
    try:
        moment = epoch_to_datetime(value)
    except ResponseFormatError:
        return str(value)
    return f"{value} = {moment.isoformat() if moment else '1970-01-01T00:00:00+00:00'}"


def _later(start: int | dt.datetime, end: int | dt.datetime) -> bool:
    """Whether ``start`` is after ``end``. Two ints are in one unit, whatever their size (a
    repair's ranges reach 2**62); an int beside a datetime is judged in the unit its
    magnitude says (the client refuses an int in the other unit before any request)."""
    if isinstance(start, int) and isinstance(end, int):
        return start > end
    if isinstance(start, dt.datetime) and isinstance(end, dt.datetime):
        return start > end

    def seconds(value: int | dt.datetime) -> float:
        if isinstance(value, dt.datetime):
            return value.timestamp()
        return value / 1000 if abs(value) >= MILLISECONDS_THRESHOLD else value

    return seconds(start) > seconds(end)


def _check_unit(name: str, value: int, time_unit: TimeUnit) -> None:
    if time_unit == "s" and abs(value) >= MILLISECONDS_THRESHOLD:
        raise ValueError(
            f"{name} {_iso_epoch(value)} is in epoch milliseconds, but this client sends "
            f"epoch seconds: give {value // 1000}, or a datetime"
        )
    if time_unit == "ms" and 0 < abs(value) < MILLISECONDS_THRESHOLD:
        raise ValueError(
            f"{name} {_iso_epoch(value)} is in epoch seconds, but this client sends epoch "
            f"milliseconds: give {value * 1000}, or a datetime"
        )


def iso_date(value: int | dt.datetime) -> str:
    """A filter date as a message shows it: a datetime in ISO 8601, an epoch int as given
    followed by its instant in ISO 8601 (its unit told by magnitude)."""
    return value.isoformat() if isinstance(value, dt.datetime) else _iso_epoch(value)


def _several(value: Any) -> Any:
    """A criterion that may take several values: a string as is; several strings as a tuple
    of the distinct ones, in the order given (one value alone is that string).

    Raises:
        TypeError: Not a string nor an iterable of strings.
        ValueError: An empty collection of values.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, typing.Iterable):
        raise TypeError(f"expected a string or a list of strings, got {value!r:.60}")
    values = tuple(dict.fromkeys(value))
    if not all(isinstance(v, str) and v for v in values):
        raise TypeError(f"expected non-empty strings, got {list(values)!r:.60}")
    if not values:
        raise ValueError("an empty list of values matches no call; leave the criterion out")
    return values[0] if len(values) == 1 else values


def _about(metavar: str, help: str) -> dict[str, Any]:
    """A criterion's description, which the CLI's options and the docs are derived from."""
    return {"metavar": metavar, "help": help}


def _several_about(about: dict[str, Any]) -> dict[str, Any]:
    """The description of a criterion that may take several values (``several``: True)."""
    return about | {"several": True}


@attrs.frozen(kw_only=True)
class CallFilter:
    """Search criteria for ``countAll`` and ``getAll``; every one optional.

    Only the criteria that are set (not ``None``, not an empty string) are sent, under the
    names of the client's API dialect (``key`` is ``key_search`` and ``disposition`` is
    ``disposition_search`` in v3). ``min_postage`` and ``max_postage`` exist in v3 only; a
    criterion the dialect lacks is a ``ValueError`` before any request. ``start_date`` and
    ``end_date`` take an int in the client's ``time_unit`` (one in the other unit is refused
    by the client), or an aware datetime, converted to it.

    ``bot_id``, ``campaign_code``, ``member``, ``template_script_code``, ``disposition`` and
    ``hotline`` take one value or several (a list): the API takes one per request, so the
    client reads each combination of values on its own (`variants`), counted and verified
    one by one, and hands out the calls of every one. ``disposition`` takes every spelling
    VBot documents, in any case (``answer``, ``ANSWERED``, ``no answer``...); the client sends
    its dialect's.

    Raises:
        TypeError: A criterion of the wrong type, or an unknown criterion name.
        ValueError: A naive datetime, ``start_date`` after ``end_date`` (both ints or both
            datetimes), ``min_postage`` above ``max_postage``, or an empty list of values.
    """

    bot_id: str | tuple[str, ...] | None = attrs.field(
        default=None, converter=_several, metadata=_several_about(_about("BOT", "bot code"))
    )
    campaign_code: str | tuple[str, ...] | None = attrs.field(
        default=None, converter=_several, metadata=_several_about(_about("CODE", "campaign code"))
    )
    member: str | tuple[str, ...] | None = attrs.field(
        default=None,
        converter=_several,
        metadata=_several_about(_about("MEMBER", "member (agent)")),
    )
    template_script_code: str | tuple[str, ...] | None = attrs.field(
        default=None,
        converter=_several,
        metadata=_several_about(_about("CODE", "script template code")),
    )
    disposition: str | tuple[str, ...] | None = attrs.field(
        default=None,
        converter=_several,
        metadata=_several_about(
            _about("OUTCOME", "call outcome, any spelling VBot uses: answer, 'no answer', busy...")
        ),
    )
    key: str | None = attrs.field(
        default=None, validator=_optional_str, metadata=_about("TEXT", "search keyword")
    )
    start_date: int | dt.datetime | None = attrs.field(
        default=None,
        validator=_check_date,
        metadata=_about("DATE", "earliest creation time (ISO 8601 or Unix epoch)"),
    )
    end_date: int | dt.datetime | None = attrs.field(
        default=None,
        validator=_check_date,
        metadata=_about("DATE", "latest creation time (ISO 8601 or Unix epoch)"),
    )
    hotline: str | tuple[str, ...] | None = attrs.field(
        default=None, converter=_several, metadata=_several_about(_about("HOTLINE", "hotline"))
    )
    input_log_search: str | None = attrs.field(
        default=None, validator=_optional_str, metadata=_about("TEXT", "search in the input log")
    )
    status: int | None = attrs.field(
        default=None, validator=_check_status, metadata=_about("N", "call status (an integer)")
    )
    min_postage: float | None = attrs.field(
        default=None,
        validator=_check_number,
        metadata=_about("VND", "lowest call charge (v3 only)"),
    )
    max_postage: float | None = attrs.field(
        default=None,
        validator=_check_number,
        metadata=_about("VND", "highest call charge (v3 only)"),
    )

    def __attrs_post_init__(self) -> None:
        start, end = self.start_date, self.end_date
        if start is not None and end is not None and _later(start, end):
            raise ValueError(f"start_date ({iso_date(start)}) is after end_date ({iso_date(end)})")
        low, high = self.min_postage, self.max_postage
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_postage ({low!r}) is above max_postage ({high!r})")

    @classmethod
    def coalesce(cls, filter: CallFilter | None, criteria: Mapping[str, Any]) -> CallFilter:
        """Merge the two ways of giving a filter: an object or keyword criteria, not both.

        Raises:
            TypeError: Both were given, or a criterion name is unknown.
        """
        if filter is not None and criteria:
            raise TypeError("pass either a CallFilter or keyword criteria, not both")
        if filter is not None:
            if not isinstance(filter, CallFilter):
                raise TypeError(f"filter must be a CallFilter, got {type(filter).__name__}")
            return filter
        unknown = sorted(set(criteria) - _FILTER_NAMES)
        if unknown:
            raise TypeError(f"unknown filter criteria {unknown}; known: {sorted(_FILTER_NAMES)}")
        return cls(**criteria)

    def to_params(self, time_unit: TimeUnit) -> dict[str, str]:
        """The criteria that are set, as query parameters (datetimes in ``time_unit``).

        A criterion of several values is its values sorted and joined by commas: how a sync's
        state names them. A request takes one (see `variants`).
        """
        params: dict[str, str] = {}
        for name in _FILTER_ORDER:
            value = getattr(self, name)
            if value is None or value == "":
                continue
            if isinstance(value, dt.datetime):
                value = to_epoch(value, time_unit)
            elif isinstance(value, tuple):
                value = ",".join(sorted(value))
            params[name] = str(value)
        return params

    def in_unit(self, time_unit: TimeUnit) -> CallFilter:
        """This filter with its dates as the epoch ints sent for them, in ``time_unit``.

        An int is taken in ``time_unit`` only when that is unambiguous: an int of 10**11 or
        more is milliseconds (as seconds, the year 5138 or later), and a positive one below
        is seconds (as milliseconds, before March 1973, when no call was recorded).

        Raises:
            ValueError: An int in the other unit (the message says which is expected), or
                ``start_date`` after ``end_date``.
        """
        dates: dict[str, int | None] = {}
        for name in ("start_date", "end_date"):
            value = getattr(self, name)
            if isinstance(value, int):
                _check_unit(name, value, time_unit)
            dates[name] = None if value is None else to_epoch(value, time_unit)
        start, end = dates["start_date"], dates["end_date"]
        if start is not None and end is not None and start > end:
            given = self.start_date, self.end_date
            raise ValueError(
                f"start_date ({iso_date(given[0] or start)}) is after end_date "
                f"({iso_date(given[1] or end)})"
            )
        return attrs.evolve(self, start_date=start, end_date=end)

    def several(self) -> dict[str, tuple[str, ...]]:
        """The criteria given several values, by name."""
        return {name: value for name in _SEVERAL if isinstance(value := getattr(self, name), tuple)}

    def variants(self) -> list[CallFilter]:
        """One filter per combination of the values of the criteria given several, each
        criterion one value; ``[self]`` when none has several. In the order given, the last
        criterion varying fastest.
        """
        several = self.several()
        if not several:
            return [self]
        names = list(several)
        return [
            attrs.evolve(self, **dict(zip(names, values, strict=True)))  # type: ignore[arg-type]
            for values in itertools.product(*several.values())
        ]


_FILTER_ORDER: Final = tuple(a.name for a in attrs.fields(CallFilter))
_FILTER_NAMES: Final = frozenset(_FILTER_ORDER)
_SEVERAL: Final = tuple(a.name for a in attrs.fields(CallFilter) if a.metadata.get("several"))


def _strict(*types: type) -> Any:
    """A structure hook for ``T | None`` that accepts exactly ``types`` (no coercion)."""
    names = " or ".join(t.__name__ for t in types)

    def structure(value: Any, _: Any) -> Any:
        if value is None or type(value) in types:
            return value
        raise TypeError(f"expected {names} or null, got {type(value).__name__} {value!r:.40}")

    return structure


#: The ints a record may hold: what every database sink stores (a signed 64-bit integer).
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


def _int64_or_none(value: Any, _: Any) -> int | None:
    """An int within 64 bits, or null: a larger one is refused when the page is read, so
    that no sink (SQLite, PostgreSQL, DuckDB, Parquet) meets it, and all refuse it alike."""
    if value is None:
        return None
    if type(value) is not int:
        raise TypeError(f"expected int or null, got {type(value).__name__} {value!r:.40}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise TypeError(f"expected an int within 64 bits (signed), got {value}")
    return value


def _float_or_none(value: Any, _: Any) -> float | None:
    kind = type(value)
    if value is None or kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return float(value)
    raise TypeError(f"expected a number or null, got {kind.__name__} {value!r:.40}")


def _only_json_objects(hook: Any, aliases: Mapping[str, str]) -> Any:
    """Guard a generated hook (cattrs would read a string's characters as "keys"), and read
    camelCase field names as their attributes."""

    def structure(value: Any, cls: Any) -> Any:
        if type(value) is not dict:
            raise TypeError(f"expected an object, got {type(value).__name__} {value!r:.40}")
        return hook(_snake_keys(value, aliases), cls)

    return structure


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    converter.register_structure_hook(str | None, _strict(str))
    converter.register_structure_hook(int | None, _int64_or_none)
    converter.register_structure_hook(bool | None, _strict(bool))
    converter.register_structure_hook(float | None, _float_or_none)
    for cls in (Member, Hotline, CollectedField):
        converter.register_structure_hook(
            cls, _only_json_objects(make_dict_structure_fn(cls, converter), _ALIASES[cls])
        )
    collected = converter.get_structure_hook(tuple[CollectedField, ...])

    def structure_collected(value: Any, cls: Any) -> tuple[CollectedField, ...]:
        if value is None:
            return ()
        if type(value) is not list:
            raise TypeError(f"expected an array, got {type(value).__name__} {value!r:.40}")
        return collected(value, cls)  # type: ignore[no-any-return]

    converter.register_structure_hook_func(
        lambda cls: cls == tuple[CollectedField, ...], structure_collected
    )
    converter.register_structure_hook(
        CallRecord,
        _only_json_objects(
            make_dict_structure_fn(CallRecord, converter, extras=override(omit=True)),
            _ALIASES[CallRecord],
        ),
    )
    return converter


_converter: Final = _make_converter()
#: What structuring raises for data of the wrong shape.
STRUCTURE_ERRORS: Final = (TypeError, ValueError, cattrs.BaseValidationError)
_structure_record_fields: Final = _converter.get_structure_hook(CallRecord)
_RECORD_FIELDS: Final = frozenset(a.name for a in attrs.fields(CallRecord)) - {"extras"}


# -- the hot path --------------------------------------------------------------------------
#
# Structuring is most of the client's CPU per record (benchmarks/RESULTS.md). The converter
# above is thorough but slow for this: per field it dispatches through a hook inside a
# try/except that collects detailed errors, and attrs' frozen __init__ sets every attribute
# through object.__setattr__. So each model class also gets a *reader*, generated once from
# its attrs fields: straight-line code that checks every field's type inline, exactly as the
# strict hooks do (exact str/int/bool or null; int widened to float; nested objects and
# arrays), then builds the instance. A reader never explains a failure: it raises `_Invalid`
# and the record goes through the converter, whose error names the field. A reader handles an
# object whose keys are exactly the fields; any other object (camelCase ones included) is
# reshaped first (`_reshaper`).
# Objects made only of strings (members, hotlines, collected fields) repeat across a
# campaign's records, so their readers keep the last few thousand and hand the same frozen
# instance out again: no building, and a fraction of the memory and garbage-collector work.


class _Invalid(Exception):
    """A reader met a value of the wrong type; the converter will say which and why."""


_NONE_TYPES: Final = (type(None),)


def _optional(hint: Any) -> Any:
    """``T`` for ``T | None``, else ``None``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 2:
        if args[1] in _NONE_TYPES:
            return args[0]
        if args[0] in _NONE_TYPES:
            return args[1]
    return None


# The code that checks (and converts) ``v``, the value of one field, by the field's type.
_EXACT_OR_NULL: Final = """
    if {v}.__class__ is not {kind} and {v} is not None:
        raise _Invalid
"""
_INT64_OR_NULL: Final = f"""
    if {{v}}.__class__ is not int:
        if {{v}} is not None:
            raise _Invalid
    elif not {INT64_MIN} <= {{v}} <= {INT64_MAX}:
        raise _Invalid
"""
_NUMBER_OR_NULL: Final = """
    if {v}.__class__ is not float and {v} is not None:
        if {v}.__class__ is not int:
            raise _Invalid
        {v} = float({v})
"""
_OBJECT_OR_NULL: Final = """
    if {v} is not None:
        {v} = {read}({v})
"""
_ARRAY_OR_NULL: Final = """
    if {v}.__class__ is list:
        {v} = tuple([{read}(x) for x in {v}])
    elif {v} is None:
        {v} = ()
    else:
        raise _Invalid
"""
_ANY_OTHER: Final = """
    try:
        {v} = {hook}({v}, {hint})
    except STRUCTURE_ERRORS:
        raise _Invalid from None
"""


def _check_source(v: str, hint: Any, readers: Mapping[type, Any], env: dict[str, Any]) -> str:
    """The code that checks ``v``, the value of a field of type ``hint``; fills ``env``."""
    inner, args = _optional(hint), typing.get_args(hint)
    if inner is int:
        return _INT64_OR_NULL.format(v=v)
    if inner in (str, bool):
        return _EXACT_OR_NULL.format(v=v, kind=inner.__name__)
    if inner is float:
        return _NUMBER_OR_NULL.format(v=v)
    if inner in readers:
        env[f"read_{v}"] = readers[inner]
        return _OBJECT_OR_NULL.format(v=v, read=f"read_{v}")
    if typing.get_origin(hint) is tuple and args[1:] == (...,) and args[0] in readers:
        env[f"read_{v}"] = readers[args[0]]
        return _ARRAY_OR_NULL.format(v=v, read=f"read_{v}")
    # Any other type: the converter's own hook, as strict, only slower.
    env[f"hook_{v}"], env[f"hint_{v}"] = _converter.get_structure_hook(hint), hint
    return _ANY_OTHER.format(v=v, hook=f"hook_{v}", hint=f"hint_{v}")


_READER: Final = """
def read(o):
    if o.__class__ is not dict:
        raise _Invalid
    n = len(o)
    if n != {count} and n != {required}:
        return reshape(o)
    try:
{reads}
{optional_reads}
    except KeyError:
        return reshape(o)
{lookup}{checks}
{build}{store}
    return r
"""
# Fields one dialect leaves out (v3's own fields, v3-legacy's member.vbot_id) are read when the
# object has every field, and are null when it has every field but those.
_OPTIONAL_READS: Final = """
        if n == {count}:
{reads}
        else:
            {nulls} = None
"""
# A class with a plain __init__ and an instance __dict__ gets a copy of the object, fixed up,
# as that __dict__: one C-level copy instead of one object.__setattr__ per field.
_BUILD_FROM_COPY: Final = """
    d = o.copy()
{stores}
    r = new(cls)
    set_attribute(r, "__dict__", d)
"""
_BUILD_BY_CALL: Final = """
    r = cls({arguments})
"""
_LOOKUP: Final = """
    key = ({values},)
    try:
        r = shared.get(key)
    except TypeError:  # an unhashable value, which the checks below refuse
        r = None
    if r is not None:
        return r
"""
_STORE: Final = """
    if len(shared) >= SHARED_MAX:
        shared.clear()
    shared[key] = r
"""


def _has_plain_init(cls: type) -> bool:
    """Whether ``cls.__init__`` only stores its arguments (no validators, converters, hooks)."""
    return not (
        any(a.validator or a.converter for a in attrs.fields(cls))
        or hasattr(cls, "__attrs_pre_init__")
        or hasattr(cls, "__attrs_post_init__")
    )


def _compile_reader(
    cls: type,
    readers: Mapping[type, Any],
    *,
    extras: str | None = None,
    optional: frozenset[str] = frozenset(),
) -> Callable[[Any], Any]:
    """Generate the reader of ``cls`` (see above); ``extras`` names the unknown-keys field,
    ``optional`` the fields an object may leave out all together and still be read directly."""
    hints = typing.get_type_hints(cls)
    names = [a.name for a in attrs.fields(cls) if a.name != extras]
    env: dict[str, Any] = {
        "cls": cls,
        "_Invalid": _Invalid,
        "STRUCTURE_ERRORS": STRUCTURE_ERRORS,
        "EMPTY": _EMPTY,
        "new": object.__new__,
        "set_attribute": object.__setattr__,
    }
    values = {name: f"v{i}" for i, name in enumerate(names)}
    required = [name for name in names if name not in optional]
    left_out = [name for name in names if name in optional]
    reads = "\n".join(f"        {values[name]} = o[{name!r}]" for name in required)
    optional_reads = ""
    if optional:
        optional_reads = _OPTIONAL_READS.format(
            count=len(names),
            reads="\n".join(f"            {values[name]} = o[{name!r}]" for name in left_out),
            nulls=" = ".join(values[name] for name in left_out),
        )
    checks = "".join(_check_source(v, hints[name], readers, env) for name, v in values.items())
    if _has_plain_init(cls) and "__slots__" not in cls.__dict__:
        # Only the values a check may have replaced, and the fields the object may lack,
        # are stored again.
        stores = [
            f"    d[{name!r}] = {v}"
            for name, v in values.items()
            if _optional(hints[name]) not in (str, int, bool) or name in optional
        ]
        if extras is not None:
            stores.append(f"    d[{extras!r}] = EMPTY")
        build = _BUILD_FROM_COPY.format(stores="\n".join(stores))
    else:
        arguments = ", ".join(f"{name}={v}" for name, v in values.items())
        build = _BUILD_BY_CALL.format(arguments=arguments)
    lookup = store = ""
    if extras is None and all(_optional(hints[name]) is str for name in names):
        env["shared"], env["SHARED_MAX"] = {}, 4096
        lookup = _LOOKUP.format(values=", ".join(values.values()))
        store = _STORE
    source = _READER.format(
        count=len(names),
        required=len(required),
        reads=reads,
        optional_reads=optional_reads,
        lookup=lookup,
        checks=checks,
        build=build,
        store=store,
    )
    filename = f"<vbot_cdr reader {cls.__qualname__}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), env)
    read: Callable[[Any], Any] = env["read"]
    env["reshape"] = _reshaper(read, names, extras, _ALIASES[cls])
    return read


def _reshaper(
    read: Callable[[Any], Any], names: list[str], extras: str | None, aliases: Mapping[str, str]
) -> Any:
    """Read an object with camelCase field names, missing fields (read as null) or unknown
    ones (kept in ``extras`` as sent)."""

    def reshape(data: dict[str, Any]) -> Any:
        known: dict[str, Any] = dict.fromkeys(names)
        unknown: dict[str, Any] = {}
        for key, value in data.items():
            name = aliases.get(key, key)
            if name in known:
                known[name] = value
            else:
                unknown[key] = value
        instance = read(known)
        if unknown and extras is not None:
            object.__setattr__(instance, extras, MappingProxyType(unknown))
        return instance

    return reshape


#: The fields of each class that a dialect leaves out (read directly all the same).
_LEFT_OUT: Final[Mapping[type, frozenset[str]]] = MappingProxyType(
    {
        Member: frozenset({"vbot_id"}),  # v3-legacy
        CallRecord: frozenset(  # all but v3
            {
                "external_call_id",
                "campaign_id",
                "campaign_group_id",
                "template_script_id",
                "bot_member_status_connect",
            }
        ),
    }
)


def _compile_readers() -> Callable[[Any], Any]:
    readers: dict[type, Any] = {}
    for cls in (Member, Hotline, CollectedField):
        readers[cls] = _compile_reader(cls, readers, optional=_LEFT_OUT.get(cls, frozenset()))
    return _compile_reader(CallRecord, readers, extras="extras", optional=_LEFT_OUT[CallRecord])


_read_record: Final = _compile_readers()


def structure_record(data: Any) -> CallRecord:
    """Build a `CallRecord` from one decoded JSON object.

    Raises:
        TypeError: ``data`` is not a JSON object.
        cattrs.BaseValidationError: A field has the wrong type (`describe_structure_error`
            names it).
    """
    try:
        return _read_record(data)  # type: ignore[no-any-return]
    except _Invalid:
        return _structure_with_converter(data)


def structure_records(data: list[Any]) -> list[CallRecord]:
    """`structure_record` of each object of a page, in order (the hot path)."""
    try:
        return list(map(_read_record, data))
    except _Invalid:
        return [structure_record(item) for item in data]


def _structure_with_converter(data: Any) -> CallRecord:
    if type(data) is dict:
        data = _snake_keys(data, _ALIASES[CallRecord])
    record: CallRecord = _structure_record_fields(data, CallRecord)
    if not _RECORD_FIELDS.issuperset(data):
        # Unknown fields are rare; paying for a second construction (evolve) on every such
        # record would double the decode cost, so the frozen slot is filled in place, once.
        extras = {k: v for k, v in data.items() if k not in _RECORD_FIELDS}
        object.__setattr__(record, "extras", MappingProxyType(extras))
    return record


def _reason(exc: BaseException, kind: Any) -> str:
    """Why a value was refused: the strict hooks' own words (they say what was expected and
    what came), else cattrs'."""
    if isinstance(exc, TypeError) and str(exc).startswith("expected "):
        return str(exc)
    return cattrs.v.format_exception(exc, kind)


def describe_structure_error(exc: Exception, path: str, data: Any = None) -> tuple[str, str]:
    """The field path and reason of a failure to structure ``data`` (found at ``path``).

    The path names each field as the server sent it: ``data[3].member.name`` for a
    snake_case record, ``data[3].createAt`` for a camelCase one.
    """
    if isinstance(exc, cattrs.BaseValidationError):
        message = cattrs.transform_error(exc, path=path, format_exception=_reason)[0]
        reason, _, where = message.rpartition(" @ ")
        return _path_as_sent(data, path, where), reason
    return path, str(exc)


_PATH_STEP: Final = re.compile(r"\.(\w+)|\[(\d+)\]")


def _path_as_sent(data: Any, root: str, where: str) -> str:
    """``where`` (attribute names below ``root``) with each name spelled as ``data`` has it."""
    if not where.startswith(root):
        return where
    spelled, value = [root], data
    for match in _PATH_STEP.finditer(where, len(root)):
        name, index = match.groups()
        if index is not None:
            spelled.append(f"[{index}]")
            value = value[int(index)] if type(value) is list and int(index) < len(value) else None
            continue
        if type(value) is dict and name not in value and camel_case(name) in value:
            name = camel_case(name)
        spelled.append(f".{name}")
        value = value.get(name) if type(value) is dict else None
    return "".join(spelled)


# -- the fastest path: msgspec, from bytes straight to records -------------------------------
#
# msgspec decodes and checks a page's JSON in C, without building a dict per value first. It
# cannot build the attrs records itself the way the readers do (it would skip unknown fields
# rather than keep them, read a field only under its attribute's name, and read an int of any
# size, where orjson reads one beyond 64 bits as a float, which the readers refuse). So each
# model class gets two *twins*, msgspec structs with its fields, one naming them in
# snake_case and one in camelCase (v3), typed as the readers check them (ints within 64
# bits), refusing any field they do not name. A page decodes into the twins of its spelling
# and `build_records` makes `CallRecord`s of them (one C-level dict per record, as the readers
# build theirs; equal members and hotlines shared, as the readers share them). Anything the
# twins refuse (a bad value, an unknown field, mixed spellings, null for
# `call_collected_data`) goes through the readers above, which give the same records, the
# extras, or the error naming the field.

# orjson reads ints up to 2**64 - 1; msgspec bounds only go to 2**63 - 1, so the few ints
# between take the readers, which refuse them too (`INT64_MAX`): no sink could store them.
_INT64: Final = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_NESTED: Final[tuple[type, ...]] = (Member, Hotline)


def _twin(cls: type, camel: bool, nested: Mapping[type, Any]) -> Any:
    """``cls``'s fields as a msgspec struct (see above), in camelCase if ``camel``."""
    hints = typing.get_type_hints(cls)

    def kind(hint: Any) -> Any:
        inner = _optional(hint)
        if inner is int:
            return _INT64 | None
        if inner in nested:
            return nested[inner] | None
        return hint

    fields = [(a.name, kind(hints[a.name]), a.default) for a in attrs.fields(cls)]
    fields = [field for field in fields if field[0] != "extras"]
    rename = {name: alias for alias, name in _ALIASES[cls].items()} if camel else None
    return msgspec.defstruct(
        f"{'Camel' if camel else 'Snake'}{cls.__name__}",
        fields,
        rename=rename,
        forbid_unknown_fields=True,
        frozen=True,  # hashable, so equal members and hotlines can be shared
        gc=False,  # short-lived and acyclic: the collector need not track them
    )


def _record_twin(camel: bool) -> Any:
    return _twin(CallRecord, camel, {cls: _twin(cls, camel, {}) for cls in _NESTED})


#: A snake_case record as msgspec decodes it; `build_records` makes it a `CallRecord`.
SnakeRecord: Final[Any] = _record_twin(camel=False)
#: A camelCase (v3) record as msgspec decodes it; `build_records` makes it a `CallRecord`.
CamelRecord: Final[Any] = _record_twin(camel=True)

_NESTED_FIELDS: Final = tuple(
    (name, cls)
    for name, hint in typing.get_type_hints(CallRecord).items()
    for cls in _NESTED
    if _optional(hint) is cls
)
_SHARED_MAX: Final = 4096
# build_records makes a CallRecord from its __dict__, as the readers do: that takes a plain
# __init__ (nothing it would skip) and an instance __dict__.
if not _has_plain_init(CallRecord) or "__slots__" in CallRecord.__dict__:
    raise TypeError("CallRecord must keep a plain __init__ and an instance __dict__")


class CallRow(typing.Protocol):
    """A record on its way through the paging stages: a `CallRecord`, or the twin a clean
    page decodes into (`SnakeRecord`, `CamelRecord`), which becomes one in `build_records`.

    The stages read only these two fields, which both kinds have under the same names. A
    page waiting its turn thus holds twins, which the garbage collector does not track,
    rather than records, which it would walk over again and again.
    """

    @property
    def trans_id(self) -> str | None: ...

    @property
    def create_at(self) -> int | None: ...


_shared: Final[dict[Any, Any]] = {}


def _share(cls: type, twin: Any) -> Any:
    """``twin`` as a ``cls``, kept for the next equal twin (the last few thousand)."""
    if len(_shared) >= _SHARED_MAX:
        _shared.clear()
    instance = _shared[twin] = cls(**msgspec.structs.asdict(twin))
    return instance


# build_records' loop, generated: one C-level copy of a dict of every field for each record,
# then one store per field read off the twin (no dict growing key by key, as asdict's does).
_BUILDER: Final = """
def build_records(rows):
    records = []
    append = records.append
    for row in rows:
        if type(row) is CallRecord:
            append(row)
            continue
        d = template.copy()
{stores}
        record = new(CallRecord)
        set_attribute(record, "__dict__", d)
        append(record)
    return records
"""
_NESTED_STORE: Final = """
        nested = row.{name}
        if nested is not None:
            d[{name!r}] = shared(nested) or share({cls}, nested)"""


def _compile_builder() -> Callable[[typing.Sequence[CallRow]], list[CallRecord]]:
    nested = dict(_NESTED_FIELDS)
    names = [a.name for a in attrs.fields(CallRecord) if a.name != "extras"]
    stores = "".join(
        _NESTED_STORE.format(name=name, cls=nested[name].__name__)
        if name in nested
        else f"\n        d[{name!r}] = row.{name}"
        for name in names
    )
    env: dict[str, Any] = {
        "CallRecord": CallRecord,
        **{cls.__name__: cls for cls in _NESTED},
        "template": {**dict.fromkeys(names), "extras": _EMPTY},
        "new": object.__new__,
        "set_attribute": object.__setattr__,
        "shared": _shared.get,
        "share": _share,
    }
    source = _BUILDER.format(stores=stores)
    filename = "<vbot_cdr record builder>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), env)
    build: Callable[[typing.Sequence[CallRow]], list[CallRecord]] = env["build_records"]
    return build


#: ``rows`` as `CallRecord`\ s, in order: each twin built into one (without extras: twins
#: have none), each `CallRecord` as it is.
build_records: Final = _compile_builder()
