"""How the fake server speaks each dialect of the API (``shared/spec/API-VERSIONS.md``).

The server keeps its records in the seed's shape; a `ServedDialect` renders them, their
envelopes and their conversations as the dialect does on the wire, and reads the dialect's
query parameters back into the seed's names.

- ``v2``: the seed's records with v2's lowercase dispositions (``answer``, ``noanswer``,
  ``busy``, ``chanunavail``), ``{status, error, message, data}`` or, for a server made with
  ``envelope_status=False``, ``{error, message, data}`` (both are live);
- ``v3-legacy``: v2's records with ``member`` lacking ``vbot_id``, ``{error, message,
  data}``;
- ``v3``: camelCase records (``member.vbotId``, ``hotline.phoneNumber`` likewise) with the v3
  fields (``externalCallId``, ``campaignId``, ``campaignGroupId``, ``templateScriptId``,
  ``botMemberStatusConnect``), the documented dispositions with their SIP codes (``ANSWER``
  200, ``NOANSWER`` 480, ``BUSY`` 486, ``SERVER_ERROR`` 500), ``{status: 200, msg, errorCode,
  data}`` (a failure: ``{status: 500, msg, errorCode, data: null}``), filters
  ``key_search``, ``disposition_search``, ``min_postage``, ``max_postage``, and conversations
  in the documented text format ``"assistant: ... | user: ... |"``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, Final

import attrs
import orjson

from .._decoding import camel_case
from .._dialects import DIALECTS, Api, Dialect
from ._data import make_conversation

__all__ = ["ServedDialect", "served_dialect"]

#: The seed's dispositions as v3 names them, with the SIP code v3 documents for each.
_V3_OUTCOMES: Final = {
    "ANSWERED": ("ANSWER", "200"),
    "NO ANSWER": ("NOANSWER", "480"),
    "BUSY": ("BUSY", "486"),
    "FAILED": ("SERVER_ERROR", "500"),
}
_SEED_DISPOSITION: Final = {v3: seed for seed, (v3, _) in _V3_OUTCOMES.items()}
#: The seed's dispositions as v2 and v3-legacy name them (lowercase, Asterisk's words).
_V2_OUTCOMES: Final = {
    "ANSWERED": "answer",
    "NO ANSWER": "noanswer",
    "BUSY": "busy",
    "FAILED": "chanunavail",
}
_SEED_FROM_V2: Final = {v2: seed for seed, v2 in _V2_OUTCOMES.items()}


def _camel_keys(value: Any) -> Any:
    if type(value) is dict:
        return {camel_case(k): _camel_keys(v) for k, v in value.items()}
    if type(value) is list:
        return [_camel_keys(v) for v in value]
    return value


def _stable(text: str, modulo: int) -> int:
    return zlib.crc32(text.encode()) % modulo


@attrs.frozen
class ServedDialect:
    """One dialect, as the fake server speaks it.

    Attributes:
        dialect: The client's description of it (paths, header, envelope).
        envelope_status: v2 only: whether envelopes carry the seed's ``status`` field.
    """

    dialect: Dialect
    envelope_status: bool = True

    @property
    def name(self) -> Api:
        return self.dialect.name

    # -- records -----------------------------------------------------------------------------

    def served(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """``record`` (seed shape) with the dialect's values, keys still in snake_case."""
        served = dict(record)
        if self.name != "v3":
            disposition = served.get("disposition")
            served["disposition"] = _V2_OUTCOMES.get(str(disposition), disposition)
        if self.name == "v2":
            return served
        if self.name == "v3-legacy":
            member = served.get("member")
            if isinstance(member, dict):
                served["member"] = {k: v for k, v in member.items() if k != "vbot_id"}
            return served
        outcome = _V3_OUTCOMES.get(str(served.get("disposition")))
        if outcome is not None:
            served["disposition"], served["sip_code"] = outcome
        trans_id = str(served.get("trans_id") or "")
        campaign = str(served.get("campaign_code") or "")
        served.setdefault("external_call_id", f"CRM-{trans_id}")
        served.setdefault("campaign_id", 100 + _stable(campaign, 900))
        served.setdefault("campaign_group_id", 10 + _stable(campaign, 90))
        served.setdefault("template_script_id", 1000 + _stable(campaign, 9000))
        connected = "CONNECTED" if served.get("disposition") == "ANSWER" else "NOT_CONNECTED"
        served.setdefault("bot_member_status_connect", connected)
        return served

    def wire_record(self, served: dict[str, Any]) -> dict[str, Any]:
        """A `served` record as it goes on the wire (camelCase in v3)."""
        return _camel_keys(served) if self.name == "v3" else served

    def conversation(self, record: Mapping[str, Any]) -> str:
        """The conversation string of ``record``: JSON turns, or v3's text format."""
        raw = make_conversation(record)
        if self.name != "v3":
            return raw
        roles = {"bot": "assistant", "customer": "user"}
        turns = orjson.loads(raw)
        return "".join(f"{roles[t['speaker']]}: {t['text']} | " for t in turns).rstrip()

    # -- envelopes ---------------------------------------------------------------------------

    def envelope(self, data: Any) -> bytes:
        """A success envelope carrying ``data``."""
        if self.name == "v3":
            return orjson.dumps({"status": 200, "msg": "success", "errorCode": 0, "data": data})
        envelope: dict[str, Any] = {"error": 0, "message": "Thành công", "data": data}
        if self.name == "v2" and self.envelope_status:
            envelope = {"status": 1, **envelope}
        return orjson.dumps(envelope)

    def failure(self, code: int, message: str) -> bytes:
        """A failure envelope with ``code`` and ``message``."""
        if self.name == "v3":
            return orjson.dumps({"status": 500, "msg": message, "errorCode": code, "data": None})
        envelope: dict[str, Any] = {"error": code, "message": message, "data": None}
        if self.name == "v2" and self.envelope_status:
            envelope = {"status": 0, **envelope}
        return orjson.dumps(envelope)

    # -- requests ----------------------------------------------------------------------------

    def credential(self, headers: Mapping[str, str]) -> str | None:
        """The credential a request carries in this dialect's header (a Bearer header whole)."""
        return headers.get("X-API-Key") if self.dialect.api_key else headers.get("Authorization")

    def seed_params(self, params: Mapping[str, str]) -> dict[str, str]:
        """The query parameters under the seed's names and values (v3: ``key_search`` is
        ``key``); a disposition in the dialect's spelling is its seed twin, matched exactly
        (any other spelling matches no call, as on a real server)."""
        seed = dict(params)
        if self.name != "v3":
            if "disposition" in params:
                value = params["disposition"]
                seed["disposition"] = _SEED_FROM_V2.get(value, "\0" + value)
            return seed
        for name in ("key", "disposition"):
            seed.pop(name, None)  # v3 does not know the seed's names
        if "key_search" in params:
            seed["key"] = params["key_search"]
        if "disposition_search" in params:
            value = params["disposition_search"]
            seed["disposition"] = _SEED_DISPOSITION.get(value, "\0" + value)
        return seed

    @property
    def endpoints(self) -> Mapping[str, str]:
        """Each endpoint's last path segment to its seed name."""
        return {path.rsplit("/", 1)[-1]: name for name, path in self.dialect.paths.items()}

    @property
    def prefix(self) -> str:
        """The path every endpoint shares."""
        path = next(iter(self.dialect.paths.values()))
        return path.rsplit("/", 1)[0] + "/"


def served_dialect(api: Api, *, envelope_status: bool = True) -> ServedDialect:
    """The dialect ``api`` as the fake serves it.

    Raises:
        ValueError: An unknown ``api``.
    """
    if api not in DIALECTS:
        raise ValueError(f"api must be one of {sorted(DIALECTS)}, got {api!r}")
    return ServedDialect(DIALECTS[api], envelope_status=envelope_status)
