"""What the client makes of the fake server's records."""

from __future__ import annotations

from typing import Any

import attrs

from vbot_cdr import Hotline, Member

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
