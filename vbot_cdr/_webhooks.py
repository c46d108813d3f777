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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs
import orjson

from ._decoding import STRUCTURE_ERRORS, describe_structure_error, structure_record
from ._errors import WebhookError
from ._models import CallRecord

__all__ = ["CallEvent", "OtherEvent", "WebhookEvent", "parse_header", "parse_webhook"]


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
