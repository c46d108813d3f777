"""What the client makes of the fake server's records."""

from __future__ import annotations

from typing import Any

#: The CallRecord fields only the v3 CDR endpoints send.
V3_ONLY_FIELDS = (
    "external_call_id",
    "campaign_id",
    "campaign_group_id",
    "template_script_id",
    "bot_member_status_connect",
)


def exported(raw: dict[str, Any]) -> dict[str, Any]:
    """A seed-shaped record as ``CallRecord.to_dict()`` gives it back: the v3-only fields null."""
    return {**dict.fromkeys(V3_ONLY_FIELDS), **raw}
