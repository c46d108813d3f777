"""What the client makes of the fake server's records."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs

from vbot_cdr import Hotline, Member
from vbot_cdr._table import DEFAULT_TZ, local_time, zone

#: The CallRecord fields only the v3 CDR endpoints send.
V3_ONLY_FIELDS = (
    "external_call_id",
    "campaign_id",
    "campaign_group_id",
    "template_script_id",
    "bot_member_status_connect",
)
_NESTED = {"member": Member, "hotline": Hotline}


def exported(raw: dict[str, Any]) -> dict[str, Any]:
    """A served record (snake_case) as ``CallRecord.to_dict()`` gives it back: the fields the
    dialect did not send (v3's own; v3-legacy's ``member.vbot_id``) null."""
    record = {**dict.fromkeys(V3_ONLY_FIELDS), **raw}
    for name, cls in _NESTED.items():
        if isinstance(record.get(name), dict):
            record[name] = {**dict.fromkeys(a.name for a in attrs.fields(cls)), **record[name]}
    return record


#: The zone the command line shows times in unless told otherwise.
VIETNAM = zone(DEFAULT_TZ)


def exported_line(raw: dict[str, Any], tz: dt.tzinfo = VIETNAM) -> dict[str, Any]:
    """A served record as a JSON Lines export writes it: `exported`, with its times as ISO
    8601 text with their offset in ``tz`` (null for a time that never came)."""
    record = exported(raw)
    for name in ("create_at", "answer_at", "end_call_at"):
        moment = local_time(record.get(name), tz)
        record[name] = None if moment is None else moment.isoformat()
    return record
