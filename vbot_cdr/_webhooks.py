"""VBot's webhooks, sans I/O: a request body (``bytes``) in, a typed event out.

VBot names no event in its bodies (see the README, "Push and pull"): `parse_webhook` tells
them apart by shape.

- ``{"autoCallLog": {...}, ...}`` is ``AUTO_CALL_COMPLETE``; a flat object with the fields of
  an auto call's log (``botId``, ``templateScriptCode``, ...) is ``AUTO_CALL_LOG`` (or its
  deprecated twin ``CAMPAIGN_CALL``). Both give a `CallEvent` carrying a `CallRecord`, in the
  same attributes a pulled call fills: ``hotlineCode`` is ``hotline.code``, ``memberName``
  ``member.name``, and ``callCollectedData`` and ``metaData``, which arrive as JSON inside a
  string, are parsed into the collected fields and the mapping a record holds.
- anything else that is a JSON object (manual calls, AI extractions, recordings, incoming
  calls) is an `OtherEvent`, named as well as its shape allows.

A framework of any kind can call it: it does no I/O and keeps no state. `parse_header` reads
the static header that authenticates VBot's posts, as the receiver and the test sender take it.

The receiver reads most bodies another way (`pushed_call`): straight from the bytes into a
msgspec struct shaped like ``autoCallLog``, which the sinks' row encoder stores as it is, with
no `CallRecord` per call. It yields exactly the row `parse_webhook`'s record does, or ``None``
for anything it does not read the same way (an odd shape, an unknown field, a bad value), which
then goes through `parse_webhook`.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Annotated, Any, Final, Protocol

import attrs
import msgspec
import orjson

from ._decoding import (
    INT64_MAX,
    INT64_MIN,
    STRUCTURE_ERRORS,
    camel_case,
    describe_structure_error,
    structure_record,
)
from ._errors import WebhookError
from ._models import CallRecord, CollectedField, Hotline, Member

__all__ = [
    "CallEvent",
    "OtherEvent",
    "PushedCall",
    "WebhookEvent",
    "parse_header",
    "parse_webhook",
    "pushed_call",
]


@attrs.frozen
class CallEvent:
    """An auto call's log: ``AUTO_CALL_COMPLETE``, or the flat ``AUTO_CALL_LOG`` /
    ``CAMPAIGN_CALL``.

    Attributes:
        name: ``"AUTO_CALL_COMPLETE"`` or ``"AUTO_CALL_LOG"`` (VBot's bodies cannot tell
            ``AUTO_CALL_LOG`` from ``CAMPAIGN_CALL``).
        record: The call; its `CallRecord.trans_id` is a non-empty string.
    """

    name: str
    record: CallRecord


@attrs.frozen
class OtherEvent:
    """An event VBot sends to the same URL that is not an auto call's log.

    Attributes:
        name: The event its shape says (``"IN_COMINGCALL"``, ``"CALL_RECORDING"``,
            ``"CALL_AI_EXTRACTION"``, ``"MANUAL_CALL_COMPLETE"``, ...) or ``"UNKNOWN"``.
    """

    name: str


#: What `parse_webhook` returns.
WebhookEvent = CallEvent | OtherEvent

#: Fields only the log of an auto (campaign) call has: a flat object with one is AUTO_CALL_LOG.
_AUTO_CALL_FIELDS: Final = frozenset(
    {
        "botId",
        "templateScriptCode",
        "templateScriptName",
        "campaignName",
        "campaignGroupName",
        "postageBotService",
    }
)
#: The log's fields that go into a nested record: field → (attribute, attribute inside).
_NESTED: Final[Mapping[str, tuple[str, str]]] = {
    "hotlineCode": ("hotline", "code"),
    "memberName": ("member", "name"),
    "memberAccId": ("member", "acc_id"),
    "memberNo": ("member", "number"),
}
#: The log's fields that arrive as JSON inside a string, and the JSON type each must hold.
_JSON_IN_STRING: Final[Mapping[str, type]] = {"callCollectedData": list, "metaData": dict}


def parse_webhook(body: bytes) -> WebhookEvent:
    """Read one webhook body.

    Args:
        body: The request body, as received.

    Returns:
        A `CallEvent` for an auto call's log, else an `OtherEvent`.

    Raises:
        WebhookError: ``body`` is not a JSON object; an auto call's log has no ``transId``
            (or an empty one), a field of the wrong type, or JSON-in-a-string that is not
            JSON of the documented type.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WebhookError(f"the body is not JSON: {exc}") from None
    if type(data) is not dict:
        raise WebhookError(f"the body is JSON {type(data).__name__}, not an object")
    log = data.get("autoCallLog")
    if log is not None:
        if type(log) is not dict:
            raise WebhookError("autoCallLog is not an object")
        return CallEvent("AUTO_CALL_COMPLETE", _record(log, "autoCallLog", data))
    if not _AUTO_CALL_FIELDS.isdisjoint(data):
        return CallEvent("AUTO_CALL_LOG", _record(data, "body", {}))
    return OtherEvent(_other_name(data))


def _other_name(data: Mapping[str, Any]) -> str:
    """The name of an event that is not an auto call's log, as far as its shape tells."""
    if "IN_COMINGCALL" in data.values():  # the one event that names itself
        return "IN_COMINGCALL"
    for key in data:
        if key.endswith("CallLog") and isinstance(data[key], dict):  # manualCallLog, ...
            return key.removesuffix("CallLog").upper() + "_CALL_COMPLETE"
    if "recordUrl" in data:
        return "CALL_RECORDING"
    if "callCollectedData" in data:
        return "CALL_AI_EXTRACTION"
    return "UNKNOWN"


def _record(log: Mapping[str, Any], where: str, parts: Mapping[str, Any]) -> CallRecord:
    """The `CallRecord` of an auto call's ``log`` (found at ``where``), completed by the
    ``autoCallRecording`` and ``autoCallAIExtraction`` among ``parts``."""
    trans_id = log.get("transId")
    if not isinstance(trans_id, str) or not trans_id:
        raise WebhookError(f"{where}.transId is missing or not a non-empty string")
    fields: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in log.items():
        if key in _NESTED:
            attribute, part = _NESTED[key]
            nested.setdefault(attribute, {})[part] = value
        elif key in _JSON_IN_STRING:
            fields[key] = _json_in_string(value, f"{where}.{key}", _JSON_IN_STRING[key])
        else:
            fields[key] = value
    fields.update(nested)
    recording = parts.get("autoCallRecording")
    if isinstance(recording, dict) and recording.get("transId") in (None, trans_id):
        fields.setdefault("recordUrl", recording.get("recordUrl"))
    extraction = parts.get("autoCallAIExtraction")
    if (
        fields.get("callCollectedData") is None
        and isinstance(extraction, dict)
        and extraction.get("transId") in (None, trans_id)
    ):
        fields["callCollectedData"] = _json_in_string(
            extraction.get("callCollectedData"), "autoCallAIExtraction.callCollectedData", list
        )
    try:
        return structure_record(fields)
    except STRUCTURE_ERRORS as exc:
        path, reason = describe_structure_error(exc, where, fields)
        raise WebhookError(f"{path}: {reason}") from None


def _json_in_string(value: Any, where: str, kind: type) -> Any:
    """``value``, a JSON ``kind`` inside a string, decoded (``None`` for null or ``""``); a
    value already decoded is taken as it is."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise WebhookError(f"{where} is not JSON inside a string") from None
    if type(value) is not kind:
        raise WebhookError(f"{where} holds a JSON {type(value).__name__}, not {kind.__name__}")
    return value


def parse_header(text: str) -> tuple[str, str]:
    """``"Name: value"`` as ``(name, value)``, both stripped.

    Raises:
        ValueError: No ``:``, an empty name or value, or a name that is not a header name.
            The message holds no part of ``text`` (a malformed name may be the value).
    """
    name, separator, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not separator or not name or not value:
        raise ValueError('the webhook header must be "Name: value", with both parts non-empty')
    if any(c.isspace() or not c.isprintable() or not c.isascii() for c in name):
        # Not echoed: a name with a space is likely the value pasted without one.
        raise ValueError(
            'the webhook header must be "Name: value", its name one word of printable ASCII '
            "(this one is not: it is not shown, as it may hold the value)"
        )
    return name, value


# -- the receiver's path: bytes to the stored row, without a CallRecord ------------------------
#
# `parse_webhook` reads a body into a dict (orjson), renames and regroups its keys, then builds a
# `CallRecord` through the checking readers, which send a camelCase log with the webhook's own
# fields to the cattrs converter: most of the receiver's CPU per post. `pushed_call` decodes
# the usual body (``{"autoCallLog": ..., "autoCallAIExtraction": ..., "autoCallRecording":
# ...}``) in one msgspec pass into `_Envelope`, whose log struct has the attributes the sinks'
# row encoder reads (those of `CallRecord`), and fixes up the few that need more than a
# decode. Every struct refuses fields it does not name and reads each value as strictly as
# the readers do (exact str/bool, ints within 64 bits, numbers as floats), so msgspec never
# skips or coerces a value the readers would refuse; anything it refuses returns ``None`` and
# `parse_webhook` decides (the record, or the `WebhookError` a 400 gives).

_INT64: Final = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
_UNSET: Final = msgspec.UNSET
#: The log's attributes that are not plain fields of it: set after decoding.
_BUILT: Final = frozenset({"member", "hotline", "call_collected_data", "meta_data", "extras"})


def _scalar(hint: Any) -> Any:
    """The msgspec type of a scalar `CallRecord` field, as strict as the readers."""
    if hint == int | None:
        return _INT64 | None
    if hint in (str | None, float | None, bool | None):
        return hint
    raise TypeError(f"a pushed call cannot read a field typed {hint}")  # a new model field


def _nested_struct(cls: type) -> Any:
    """A frozen msgspec struct with the attributes of ``cls`` (built, never decoded)."""
    names = [a.name for a in attrs.fields(cls)]
    return msgspec.defstruct(f"Pushed{cls.__name__}", names, frozen=True, gc=False)


_PushedMember: Final[Any] = _nested_struct(Member)
_PushedHotline: Final[Any] = _nested_struct(Hotline)
#: An item of ``callCollectedData``: stored (as JSON) exactly as a `CollectedField` is.
_Collected: Final[Any] = msgspec.defstruct(
    "PushedCollectedField",
    [(a.name, str | None, None) for a in attrs.fields(CollectedField)],
    forbid_unknown_fields=True,
    gc=False,
)
_decode_collected: Final = msgspec.json.Decoder(tuple[_Collected, ...]).decode


def _log_struct() -> Any:
    """The struct of ``autoCallLog``: each scalar field of `CallRecord` under its camelCase
    name, the flat ``hotlineCode``/``member*`` fields, the JSON-in-a-string ones as strings,
    ``metaDataDescription`` (the one unknown field VBot sends: it goes to ``extras``), and the
    attributes set after decoding (`_BUILT`), which no body may fill (`pushed_call` checks)."""
    hints = typing.get_type_hints(CallRecord)
    fields: list[tuple[str, Any, Any]] = [
        (a.name, _scalar(hints[a.name]), None)
        for a in attrs.fields(CallRecord)
        if a.name not in _BUILT and a.name != "record_url"
    ]
    rename = {name: camel_case(name) for name, _, _ in fields}
    for key, (attribute, part) in _NESTED.items():
        fields.append((f"{attribute}_{part}", str | None, None))
        rename[f"{attribute}_{part}"] = key
    for name, key, kind in (
        ("record_url", "recordUrl", str | None | msgspec.UnsetType),
        ("description_text", "metaDataDescription", str | None | msgspec.UnsetType),
        ("collected_text", "callCollectedData", str | None),
        ("meta_text", "metaData", str | None),
    ):
        fields.append((name, kind, _UNSET if kind is not str | None else None))
        rename[name] = key
    fields += [(name, Any, _UNSET) for name in sorted(_BUILT)]
    return msgspec.defstruct(
        "PushedCall", fields, rename=rename, forbid_unknown_fields=True, gc=False
    )


_Log: Final[Any] = _log_struct()
_Part: Final[Any] = msgspec.defstruct(
    "PushedPart",
    [
        ("trans_id", str | None, None),
        ("external_call_id", str | None, None),
        ("record_url", str | None | msgspec.UnsetType, _UNSET),
        ("collected_text", str | None, None),
    ],
    rename={
        "trans_id": "transId",
        "external_call_id": "externalCallId",
        "record_url": "recordUrl",
        "collected_text": "callCollectedData",
    },
    forbid_unknown_fields=True,
    gc=False,
)
_Envelope: Final[Any] = msgspec.defstruct(
    "PushedEnvelope",
    [
        ("log", _Log | None, None),
        ("extraction", _Part | None, None),
        ("recording", _Part | None, None),
    ],
    rename={
        "log": "autoCallLog",
        "extraction": "autoCallAIExtraction",
        "recording": "autoCallRecording",
    },
    forbid_unknown_fields=True,
    gc=False,
)
_decode_envelope: Final = msgspec.json.Decoder(_Envelope).decode


class PushedCall(Protocol):
    """What `pushed_call` returns: an object with every attribute of a `CallRecord` (the
    sinks' row encoder reads them), its ``trans_id`` a non-empty string; what
    `WebhookSink.store` gets from `webhook_app` for the usual body (read without building a
    `CallRecord`: faster)."""

    @property
    def trans_id(self) -> str: ...

    @property
    def create_at(self) -> int | None: ...

    @property
    def answer_at(self) -> int | None: ...

    @property
    def end_call_at(self) -> int | None: ...


def pushed_call(body: bytes) -> PushedCall | None:
    """The call of an ``AUTO_CALL_COMPLETE`` body, as the row it is stored as.

    Returns:
        An object the sinks store exactly as they store ``parse_webhook(body).record``;
        ``None`` for a body this path does not read (not that shape, a field it does not
        name, a value of the wrong type, JSON-in-a-string it cannot read): `parse_webhook`
        then tells what it is, or why it is refused.
    """
    try:
        envelope = _decode_envelope(body)
    except msgspec.DecodeError:  # ValidationError is one
        return None
    log = envelope.log
    if (
        log is None
        or not log.trans_id
        or log.member is not _UNSET
        or log.hotline is not _UNSET
        or log.call_collected_data is not _UNSET
        or log.meta_data is not _UNSET
        or log.extras is not _UNSET
    ):
        return None  # no log, or a log parse_webhook must read (or refuse)
    trans_id = log.trans_id
    recording = envelope.recording
    if log.record_url is _UNSET:
        log.record_url = None
        if recording is not None and recording.trans_id in (None, trans_id):
            url = recording.record_url
            log.record_url = None if url is _UNSET else url
    collected = log.collected_text
    if not collected:  # null or "": the AI extraction's, if it is this call's
        extraction = envelope.extraction
        if extraction is not None and extraction.trans_id in (None, trans_id):
            collected = extraction.collected_text
    meta = log.meta_text
    try:
        log.call_collected_data = _decode_collected(collected) if collected else ()
        # orjson, as parse_webhook reads it: the script's inputs are kept as any JSON object.
        log.meta_data = orjson.loads(meta) if meta else None
    except (msgspec.DecodeError, orjson.JSONDecodeError):
        return None
    if meta and type(log.meta_data) is not dict:
        return None
    # A member or a hotline of null fields is stored as none: the same columns, all NULL.
    name, acc_id, number = log.member_name, log.member_acc_id, log.member_number
    log.member = None
    if name is not None or acc_id is not None or number is not None:
        log.member = _PushedMember(
            name=name, color=None, vbot_id=None, acc_id=acc_id, number=number
        )
    code = log.hotline_code
    log.hotline = None if code is None else _PushedHotline(code=code, name=None, phone_number=None)
    description = log.description_text
    log.extras = None if description is _UNSET else {"metaDataDescription": description}
    return log  # type: ignore[no-any-return]
