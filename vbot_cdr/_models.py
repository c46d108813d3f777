"""The typed records of the VBot call-history API and the search filter.

Field names and types follow the ``getAll`` example of the API document. The example's values
are placeholders, so every field is optional: a record with missing or ``null`` fields still
parses, and fields the document does not list are kept in `CallRecord.extras`. A field of the
wrong type is an error, never silently coerced.

The v3 CDR endpoints send the same records in camelCase (``transId``, ``createAt``,
``member.vbotId``): each field is read from its snake_case name or its camelCase twin, into the
same attribute, so one `CallRecord` serves every dialect. How a record is read from JSON (the
generated readers, the msgspec twins, the checking converter) is `_decoding`'s business; this
module holds the classes only.
"""

from __future__ import annotations

import datetime as dt
import itertools
import linecache
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, Literal

import attrs
import orjson

from ._errors import ResponseFormatError

__all__ = [
    "FILTER_NAMES",
    "MILLISECONDS_THRESHOLD",
    "NO_EXTRAS",
    "WEBHOOK_FIELDS",
    "WEBHOOK_ONLY",
    "BotConversation",
    "CallFilter",
    "CallRecord",
    "CollectedField",
    "Hotline",
    "Member",
    "TimeUnit",
    "epoch_to_datetime",
    "record_dict_encoder",
    "to_epoch",
]

TimeUnit = Literal["s", "ms"]

#: Epoch values at or above this are milliseconds (10**11 s is the year 5138).
MILLISECONDS_THRESHOLD: Final = 10**11

#: The `CallRecord.extras` of a record that has none.
NO_EXTRAS: Final[Mapping[str, Any]] = MappingProxyType({})


#: The fields only the webhook sends (a nested record's as ``member.acc_id``): the pull
#: leaves them ``None``, so a pulled row never blanks what a push filled in them.
WEBHOOK_ONLY: Final = frozenset(
    {
        "postage_service",
        "telco_code",
        "call_net",
        "project_code",
        "meta_data",
        "record_url",
        "member.acc_id",
        "member.number",
    }
)


#: Every field an ``AUTO_CALL_COMPLETE`` webhook may fill (`WEBHOOK_ONLY` among them): a
#: pulled row keeps what a push wrote in these where the pull has nothing.
WEBHOOK_FIELDS: Final = WEBHOOK_ONLY | frozenset(
    {
        "trans_id",
        "external_call_id",
        "phone",
        "duration",
        "billsec",
        "disposition",
        "create_at",
        "answer_at",
        "end_call_at",
        "postage",
        "service_charge",
        "postage_bot_service",
        "hotline.code",
        "member.name",
        "bot_id",
        "template_script_code",
        "template_script_name",
        "campaign_name",
        "campaign_group_name",
        "input_log",
        "voice_text",
        "call_collected_data",
        "extras",  # metaDataDescription, which no model lists
    }
)


def epoch_to_datetime(value: int | None, tz: dt.tzinfo = dt.timezone.utc) -> dt.datetime | None:
    """Turn a Unix epoch in seconds or milliseconds (told apart by magnitude) into an aware
    datetime in ``tz`` (UTC unless given).

    ``None`` and 0 give ``None``: the API sends 0 for a time that never came (a call that was
    not answered has ``answer_at`` 0), and no call was made at the epoch itself.

    Raises:
        ResponseFormatError: The value is outside what a datetime can hold (years 1 to 9999).
    """
    if not value:
        return None
    seconds = value / 1000 if abs(value) >= MILLISECONDS_THRESHOLD else value
    try:
        return dt.datetime.fromtimestamp(seconds, tz)
    except (OverflowError, OSError, ValueError):
        # The record itself parsed; only this reading of one of its times is impossible.
        raise ResponseFormatError(f"epoch {value} is outside the datetime range") from None


@attrs.frozen(kw_only=True)
class Member:
    """The member (agent) of a call."""

    name: str | None = None
    color: str | None = None
    vbot_id: str | None = None
    # Sent by the webhook only (``memberAccId``, ``memberNo``): None for a pulled call.
    acc_id: str | None = None
    number: str | None = None


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
    # Sent by the webhook (``AUTO_CALL_COMPLETE``) only: None for a call that was only pulled.
    postage_service: float | None = None
    telco_code: str | None = None
    call_net: str | None = None
    project_code: str | None = None
    # Out of the hash, as `extras`: a JSON object (the script's inputs) is an unhashable dict.
    meta_data: Mapping[str, Any] | None = attrs.field(default=None, hash=False)
    record_url: str | None = None
    # Out of the hash (still in eq): a mapping is unhashable, and without this every
    # record, being frozen, would raise on hash() and could not go in a set.
    extras: Mapping[str, Any] = attrs.field(default=NO_EXTRAS, repr=False, hash=False)

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
        return _record_to_dict(self)


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


def _iso_date(value: int | dt.datetime) -> str:
    """A filter date as a message shows it: a datetime in ISO 8601, an epoch int as given
    followed by its instant in ISO 8601 (its unit told by magnitude)."""
    return value.isoformat() if isinstance(value, dt.datetime) else _iso_epoch(value)


def _reversed(start: int | dt.datetime, end: int | dt.datetime) -> ValueError:
    return ValueError(f"start_date ({_iso_date(start)}) is after end_date ({_iso_date(end)})")


def _several(value: Any) -> Any:
    """A criterion that may take several values: a string as is; several strings as a tuple
    of the distinct ones, in the order given (one value alone is that string).

    Raises:
        TypeError: Not a string nor an iterable of strings.
        ValueError: An empty collection of values.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
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
            raise _reversed(start, end)
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
        unknown = sorted(set(criteria) - _KNOWN_FILTERS)
        if unknown:
            raise TypeError(f"unknown filter criteria {unknown}; known: {sorted(_KNOWN_FILTERS)}")
        return cls(**criteria)

    def to_params(self, time_unit: TimeUnit) -> dict[str, str]:
        """The criteria that are set, as query parameters (datetimes in ``time_unit``).

        A criterion of several values is its values sorted and joined by commas: how a sync's
        state names them. A request takes one (see `variants`).
        """
        params: dict[str, str] = {}
        for name in FILTER_NAMES:
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
            raise _reversed(self.start_date or start, self.end_date or end)
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


#: The criteria of `CallFilter`, in the order they are declared (and sent).
FILTER_NAMES: Final = tuple(a.name for a in attrs.fields(CallFilter))
_KNOWN_FILTERS: Final = frozenset(FILTER_NAMES)
_SEVERAL: Final = tuple(a.name for a in attrs.fields(CallFilter) if a.metadata.get("several"))

# -- to_dict, generated ---------------------------------------------------------------------
#
# One compiled function per class, as cattrs' unstructuring would give (a dict per record in
# field order, nested records as dicts, tuples as lists) without its per-field dispatch: one
# dict display of attribute reads. Generated from the fields, so a field added to a class is
# in its output with no edit here.

_TO_DICT: Final = """
def to_dict(o):
{nested}    data = {{{items}}}
{extras}    return data
"""


def _compile_to_dict(
    cls: type,
    nested: Mapping[str, Callable[[Any], Any]],
    tuples: Mapping[str, Callable[[Any], Any]],
    converters: Mapping[str, Callable[[Any], Any]] | None = None,
) -> Callable[[Any], dict[str, Any]]:
    """The ``to_dict`` of ``cls``: ``nested`` maps a field to the function turning its record
    (or ``None``) into a dict, ``tuples`` a field to the one for each item of its tuple,
    ``converters`` a field to the function its value goes through; an ``extras`` field is
    merged in last, as sent. It reads attributes only, so it takes anything that has them."""
    names = [a.name for a in attrs.fields(cls)]
    env: dict[str, Any] = {}
    lines, items = [], []
    for i, name in enumerate(names):
        if name == "extras":
            continue
        if name in nested:
            env[f"f{i}"] = nested[name]
            lines.append(f"    v{i} = o.{name}\n")
            items.append(f"{name!r}: None if v{i} is None else f{i}(v{i})")
        elif name in tuples:
            env[f"f{i}"] = tuples[name]
            items.append(f"{name!r}: [f{i}(item) for item in o.{name}]")
        elif converters and name in converters:
            env[f"f{i}"] = converters[name]
            items.append(f"{name!r}: f{i}(o.{name})")
        else:
            items.append(f"{name!r}: o.{name}")
    extras = "    if o.extras:\n        data.update(o.extras)\n" if "extras" in names else ""
    source = _TO_DICT.format(nested="".join(lines), items=", ".join(items), extras=extras)
    # Named for what it converts: the same fields give the same source.
    filename = f"<vbot_cdr to_dict {cls.__qualname__}{sorted(converters or ())}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), env)
    to_dict: Callable[[Any], dict[str, Any]] = env["to_dict"]
    return to_dict


_member_to_dict: Final = _compile_to_dict(Member, {}, {})
_hotline_to_dict: Final = _compile_to_dict(Hotline, {}, {})
_collected_field_to_dict: Final = _compile_to_dict(CollectedField, {}, {})
_NESTED_TO_DICT: Final = {"member": _member_to_dict, "hotline": _hotline_to_dict}
_TUPLES_TO_DICT: Final = {"call_collected_data": _collected_field_to_dict}
_record_to_dict: Final = _compile_to_dict(CallRecord, _NESTED_TO_DICT, _TUPLES_TO_DICT)


def record_dict_encoder(
    converters: Mapping[str, Callable[[Any], Any]],
) -> Callable[[Any], dict[str, Any]]:
    """A `CallRecord.to_dict` whose fields named in ``converters`` go through their
    function (``{"create_at": to_text}``), generated once: the same keys, in the same order,
    with the same nesting and ``extras``. It reads attributes only, so it takes a record or
    anything with the same attributes (the msgspec twins of `vbot_cdr._decoding`)."""
    return _compile_to_dict(CallRecord, _NESTED_TO_DICT, _TUPLES_TO_DICT, converters)
