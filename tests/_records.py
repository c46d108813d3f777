"""Records as the API document shows them, and what the client makes of the fake server's."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs

from vbot_cdr import CallRecord, Hotline, Member
from vbot_cdr._models import WEBHOOK_ONLY, epoch_to_datetime
from vbot_cdr._table import DEFAULT_TZ, zone

#: The fields only the v3 CDR endpoints send.
V3_FIELDS = {
    "external_call_id": "EXT-1",
    "campaign_id": 11,
    "campaign_group_id": 12,
    "template_script_id": 13,
    "bot_member_status_connect": "CONNECTED",
}
_NESTED = {"member": Member, "hotline": Hotline}


def exported(raw: dict[str, Any]) -> dict[str, Any]:
    """A served record (snake_case) as ``CallRecord.to_dict()`` gives it back: the fields the
    dialect did not send (v3's own; v3-legacy's ``member.vbot_id``; the webhook's own) null."""
    pushed = {name: None for name in WEBHOOK_ONLY if "." not in name}
    record = {**dict.fromkeys(V3_FIELDS), **pushed, **raw}
    for name, cls in _NESTED.items():
        if isinstance(record.get(name), dict):
            record[name] = {**dict.fromkeys(a.name for a in attrs.fields(cls)), **record[name]}
    return record


#: The seed's dispositions as the fake v2 server serves them (v2's lowercase words).
_V2_OUTCOMES = {
    "ANSWERED": "answer",
    "NO ANSWER": "noanswer",
    "BUSY": "busy",
    "FAILED": "chanunavail",
}


def served_by_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """A seed record as the fake v2 server serves it: its disposition in v2's spelling."""
    disposition = raw.get("disposition")
    return raw | {"disposition": _V2_OUTCOMES.get(str(disposition), disposition)}


#: The zone the command line shows times in unless told otherwise.
VIETNAM = zone(DEFAULT_TZ)


def exported_line(raw: dict[str, Any], tz: dt.tzinfo = VIETNAM) -> dict[str, Any]:
    """A served record as a JSON Lines export writes it: `exported`, with its times as ISO
    8601 text with their offset in ``tz`` (null for a time that never came)."""
    record = exported(raw)
    for name in ("create_at", "answer_at", "end_call_at"):
        moment = epoch_to_datetime(record.get(name), tz)
        record[name] = None if moment is None else moment.isoformat()
    return record


def json_document(record: CallRecord, tz: dt.tzinfo) -> dict[str, Any]:
    """``record`` as a JSON Lines export writes it, worked out independently of the library's
    generated encoder: `CallRecord.to_dict`, times as ISO 8601 text with their offset in
    ``tz`` through `datetime` (null for a time that never came)."""
    document = record.to_dict()
    for name in ("create_at", "answer_at", "end_call_at"):
        moment = epoch_to_datetime(getattr(record, name), tz)
        document[name] = None if moment is None else moment.isoformat()
    return document


#: The getAll example of the API document, with its placeholder values.
EXAMPLE: dict[str, Any] = {
    "phone": "sample string 1",
    "name": "sample string 2",
    "customer_uid": "sample string 3",
    "duration": 4,
    "billsec": 5,
    "sip_code": "sample string 6",
    "disposition": "sample string 7",
    "input_log": "sample string 8",
    "status": 9,
    "postage": 10.1,
    "service_charge": 11.1,
    "postage_bot_service": 12.1,
    "member": {"name": "sample string 1", "color": "sample string 2", "vbot_id": "sample 3"},
    "hotline": {"code": "sample string 1", "name": "sample string 2", "phone_number": "3"},
    "call_collected_data": [
        {"cfkey": "k1", "cfname": "n1", "cfvalue": "v1", "description": "d1"},
        {"cfkey": "k2", "cfname": "n2", "cfvalue": "v2", "description": "d2"},
    ],
    "answer_at": 1_735_689_605,
    "end_call_at": 1_735_689_665,
    "campaign_name": "sample string 14",
    "campaign_code": "sample string 15",
    "campaign_group_name": "sample string 16",
    "campaign_group_code": "sample string 17",
    "template_script_name": "sample string 18",
    "template_script_code": "sample string 19",
    "voice_text": "sample string 20",
    "create_at": 1_735_689_600,
    "bot_id": "sample string 22",
    "trans_id": "sample string 23",
    "create_by": "sample string 24",
    "score": 25.1,
    "is_record": True,
}


#: EXAMPLE plus the v3 fields, spelled as the v3 CDR endpoints spell them (camelCase).
CAMEL_EXAMPLE: dict[str, Any] = {
    "phone": "sample string 1",
    "name": "sample string 2",
    "customerUid": "sample string 3",
    "duration": 4,
    "billsec": 5,
    "sipCode": "sample string 6",
    "disposition": "sample string 7",
    "inputLog": "sample string 8",
    "status": 9,
    "postage": 10.1,
    "serviceCharge": 11.1,
    "postageBotService": 12.1,
    "member": {"name": "sample string 1", "color": "sample string 2", "vbotId": "sample 3"},
    "hotline": {"code": "sample string 1", "name": "sample string 2", "phoneNumber": "3"},
    "callCollectedData": [
        {"cfkey": "k1", "cfname": "n1", "cfvalue": "v1", "description": "d1"},
        {"cfkey": "k2", "cfname": "n2", "cfvalue": "v2", "description": "d2"},
    ],
    "answerAt": 1_735_689_605,
    "endCallAt": 1_735_689_665,
    "campaignName": "sample string 14",
    "campaignCode": "sample string 15",
    "campaignGroupName": "sample string 16",
    "campaignGroupCode": "sample string 17",
    "templateScriptName": "sample string 18",
    "templateScriptCode": "sample string 19",
    "voiceText": "sample string 20",
    "createAt": 1_735_689_600,
    "botId": "sample string 22",
    "transId": "sample string 23",
    "createBy": "sample string 24",
    "score": 25.1,
    "isRecord": True,
    "externalCallId": "EXT-1",
    "campaignId": 11,
    "campaignGroupId": 12,
    "templateScriptId": 13,
    "botMemberStatusConnect": "CONNECTED",
}
