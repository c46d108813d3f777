"""Typed records of the VBot call-history API, the search filter, and the record converter.

Field names and types follow the ``getAll`` example of the API document. The example's values
are placeholders, so every field is optional: a record with missing or ``null`` fields still
parses, and fields the document does not list are kept in `CallRecord.extras`. A field of the
wrong type is an error, never silently coerced.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Literal

import attrs
import cattrs
import orjson
from cattrs.gen import make_dict_structure_fn, override

__all__ = [
    "STRUCTURE_ERRORS",
    "BotConversation",
    "CallFilter",
    "CallRecord",
    "CollectedField",
    "Hotline",
    "Member",
    "TimeUnit",
    "describe_structure_error",
    "epoch_to_datetime",
    "structure_record",
]

TimeUnit = Literal["s", "ms"]

#: Epoch values at or above this are milliseconds (10**11 s is the year 5138).
MILLISECONDS_THRESHOLD: Final = 10**11

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


def epoch_to_datetime(value: int | None) -> dt.datetime | None:
    """Turn a Unix epoch in seconds or milliseconds (told apart by magnitude) into aware UTC."""
    if value is None:
        return None
    seconds = value / 1000 if abs(value) >= MILLISECONDS_THRESHOLD else value
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


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


@attrs.frozen(kw_only=True)
class CallRecord:
    """One call of the history, as ``getAll`` returns it.

    Every field is optional (``None`` when the server left it out or sent ``null``).
    Times are kept as the server sent them (Unix epoch); `created`, `answered` and `ended`
    give them as aware UTC datetimes. Fields the API document does not list are kept, as
    sent, in `extras`.
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
        """Return the record in the API's shape (``extras`` merged back in), ready for JSON."""
        data: dict[str, Any] = _converter.unstructure(self)
        del data["extras"]
        data.update(self.extras)
        return data


@attrs.frozen(kw_only=True)
class BotConversation:
    """The bot conversation of one call, as ``getBotConversation`` returns it.

    The API documents ``data`` only as a string; its inner format is not documented. `raw` is
    that string exactly as received. `turns` holds the items of `raw` when it is a JSON
    array, and is empty otherwise: the library does not guess at any other format.
    """

    trans_id: str
    raw: str
    # Out of the hash: JSON objects are unhashable dicts, and raw already determines turns.
    turns: tuple[Any, ...] = attrs.field(default=(), hash=False)

    @classmethod
    def from_raw(cls, trans_id: str, raw: str) -> BotConversation:
        """Build a conversation from the API's string, parsing `turns` when it is a JSON array."""
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        turns = tuple(parsed) if isinstance(parsed, list) else ()
        return cls(trans_id=trans_id, raw=raw, turns=turns)


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


_optional_str = attrs.validators.optional(attrs.validators.instance_of(str))


def _date_seconds(value: int | dt.datetime) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return value / 1000 if abs(value) >= MILLISECONDS_THRESHOLD else value


@attrs.frozen(kw_only=True)
class CallFilter:
    """Search criteria for ``countAll`` and ``getAll``; every one optional.

    Only the criteria that are set (not ``None``, not an empty string) are sent.
    ``start_date`` and ``end_date`` take an int, sent verbatim, or an aware datetime,
    converted to the client's ``time_unit``.

    Raises:
        TypeError: A criterion of the wrong type, or an unknown criterion name.
        ValueError: A naive datetime, or ``start_date`` after ``end_date``.
    """

    bot_id: str | None = attrs.field(default=None, validator=_optional_str)
    campaign_code: str | None = attrs.field(default=None, validator=_optional_str)
    member: str | None = attrs.field(default=None, validator=_optional_str)
    template_script_code: str | None = attrs.field(default=None, validator=_optional_str)
    disposition: str | None = attrs.field(default=None, validator=_optional_str)
    key: str | None = attrs.field(default=None, validator=_optional_str)
    start_date: int | dt.datetime | None = attrs.field(default=None, validator=_check_date)
    end_date: int | dt.datetime | None = attrs.field(default=None, validator=_check_date)
    hotline: str | None = attrs.field(default=None, validator=_optional_str)
    input_log_search: str | None = attrs.field(default=None, validator=_optional_str)
    status: int | None = attrs.field(default=None, validator=_check_status)

    def __attrs_post_init__(self) -> None:
        start, end = self.start_date, self.end_date
        if start is not None and end is not None and _date_seconds(start) > _date_seconds(end):
            raise ValueError(
                f"start_date ({self.start_date!r}) is after end_date ({self.end_date!r})"
            )

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
        """The criteria that are set, as query parameters (datetimes in ``time_unit``)."""
        params: dict[str, str] = {}
        for name in _FILTER_ORDER:
            value = getattr(self, name)
            if value is None or value == "":
                continue
            if isinstance(value, dt.datetime):
                seconds = value.timestamp()
                value = round(seconds * 1000) if time_unit == "ms" else int(seconds)
            params[name] = str(value)
        return params


_FILTER_ORDER: Final = tuple(a.name for a in attrs.fields(CallFilter))
_FILTER_NAMES: Final = frozenset(_FILTER_ORDER)


def _strict(*types: type) -> Any:
    """A structure hook for ``T | None`` that accepts exactly ``types`` (no coercion)."""
    names = " or ".join(t.__name__ for t in types)

    def structure(value: Any, _: Any) -> Any:
        if value is None or type(value) in types:
            return value
        raise TypeError(f"expected {names} or null, got {type(value).__name__} {value!r:.40}")

    return structure


def _float_or_none(value: Any, _: Any) -> float | None:
    kind = type(value)
    if value is None or kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return float(value)
    raise TypeError(f"expected a number or null, got {kind.__name__} {value!r:.40}")


def _only_json_objects(hook: Any) -> Any:
    """Guard a generated hook: cattrs would read a string's characters as "keys"."""

    def structure(value: Any, cls: Any) -> Any:
        if type(value) is not dict:
            raise TypeError(f"expected an object, got {type(value).__name__} {value!r:.40}")
        return hook(value, cls)

    return structure


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    converter.register_structure_hook(str | None, _strict(str))
    converter.register_structure_hook(int | None, _strict(int))
    converter.register_structure_hook(bool | None, _strict(bool))
    converter.register_structure_hook(float | None, _float_or_none)
    for cls in (Member, Hotline, CollectedField):
        converter.register_structure_hook(
            cls, _only_json_objects(make_dict_structure_fn(cls, converter))
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
            make_dict_structure_fn(CallRecord, converter, extras=override(omit=True))
        ),
    )
    return converter


_converter: Final = _make_converter()
#: What structuring raises for data of the wrong shape.
STRUCTURE_ERRORS: Final = (TypeError, ValueError, cattrs.BaseValidationError)
_structure_record_fields: Final = _converter.get_structure_hook(CallRecord)
_RECORD_FIELDS: Final = frozenset(a.name for a in attrs.fields(CallRecord)) - {"extras"}


def structure_record(data: Any) -> CallRecord:
    """Build a `CallRecord` from one decoded JSON object.

    Raises:
        TypeError: ``data`` is not a JSON object.
        cattrs.BaseValidationError: A field has the wrong type (`describe_structure_error`
            names it).
    """
    record: CallRecord = _structure_record_fields(data, CallRecord)
    if not _RECORD_FIELDS.issuperset(data):
        # Unknown fields are rare; paying for a second construction (evolve) on every such
        # record would double the decode cost, so the frozen slot is filled in place, once.
        extras = {k: v for k, v in data.items() if k not in _RECORD_FIELDS}
        object.__setattr__(record, "extras", MappingProxyType(extras))
    return record


def describe_structure_error(exc: Exception, path: str) -> tuple[str, str]:
    """The field path (``data[3].member.name``) and reason of a structuring failure."""
    if isinstance(exc, cattrs.BaseValidationError):
        message = cattrs.transform_error(exc, path=path)[0]
        reason, _, where = message.rpartition(" @ ")
        return where, reason
    return path, str(exc)
