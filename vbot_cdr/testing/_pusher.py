"""The fake server's webhook sender: each call it writes, posted as ``AUTO_CALL_COMPLETE``.

A real sender documents no retries, ordering or deduplication (see the README, "Push and
pull"), so this one has the habits such a sender has (`PushHabits`): posts dropped, sent
twice, held back behind later ones (reordered), delayed, and other events mixed in. It never
retries: what it fails to deliver, the pull must find. The calls it posts are the records the
server's ``getAll`` serves, in VBot's documented webhook shape (camelCase, epochs in
milliseconds, ``callCollectedData`` and ``metaData`` as JSON inside a string, the webhook's
own fields filled from the call's ``trans_id``).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final

import aiohttp
import attrs
import orjson

from .._models import MILLISECONDS_THRESHOLD
from .._webhooks import parse_header

__all__ = ["PushHabits", "WebhookPusher", "webhook_body", "webhook_fields"]


def _rate(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within [0, 1], got {value!r}")


@attrs.frozen(kw_only=True)
class PushHabits:
    """How the fake's webhook sender misbehaves; each a probability per call, drawn from
    ``seed`` in the order calls arrive.

    Attributes:
        drop: The call is never posted.
        duplicate: The call is posted twice.
        reorder: The call is held back and posted after the next one.
        other_events: An other event (an AI extraction, a recording, an incoming call) is
            posted before the call.
        delay: Seconds each post waits before it is sent.
        seed: The seed of the draws.
    """

    drop: float = attrs.field(default=0.0, validator=_rate)
    duplicate: float = attrs.field(default=0.0, validator=_rate)
    reorder: float = attrs.field(default=0.0, validator=_rate)
    other_events: float = attrs.field(default=0.0, validator=_rate)
    delay: float = 0.0
    seed: int = 0


def _ms(epoch: Any) -> Any:
    """An epoch as the webhook sends it: milliseconds (0 for a time that never came)."""
    if not isinstance(epoch, int):
        return 0
    return epoch if abs(epoch) >= MILLISECONDS_THRESHOLD else epoch * 1000


def webhook_fields(trans_id: str) -> dict[str, Any]:
    """The webhook's own fields of the call ``trans_id`` (the CDR has none of them), the same
    on every run."""
    h = int.from_bytes(hashlib.sha256(trans_id.encode()).digest()[:8], "big")
    return {
        "telcoCode": ("VTL", "VNP", "VMS")[h % 3],
        "callNet": ("ONNET", "OFFNET")[(h >> 8) % 2],
        "projectCode": "PRJ",
        "metaData": orjson.dumps({"ref": f"R{h % 10**6:06d}"}).decode(),
        "memberAccId": f"acc{(h >> 16) % 1000:03d}",
        "memberNo": str((h >> 32) % 100),
        "postageService": float((h >> 40) % 5 * 100),
    }


def webhook_body(record: Mapping[str, Any]) -> dict[str, Any]:
    """A served record (the seed's snake_case shape) as VBot's ``AUTO_CALL_COMPLETE`` body."""
    trans_id = record["trans_id"]
    member = record.get("member") or {}
    hotline = record.get("hotline") or {}
    log = {
        "transId": trans_id,
        "externalCallId": record.get("external_call_id") or "",
        "phone": record.get("phone"),
        "duration": record.get("duration"),
        "billsec": record.get("billsec"),
        "disposition": record.get("disposition"),
        "createAt": _ms(record.get("create_at")),
        "answerAt": _ms(record.get("answer_at")),
        "endCallAt": _ms(record.get("end_call_at")),
        "postage": record.get("postage"),
        "serviceCharge": record.get("service_charge"),
        "postageBotService": record.get("postage_bot_service"),
        "hotlineCode": hotline.get("code"),
        "memberName": member.get("name"),
        "botId": record.get("bot_id"),
        "templateScriptCode": record.get("template_script_code"),
        "templateScriptName": record.get("template_script_name"),
        "campaignName": record.get("campaign_name"),
        "campaignGroupName": record.get("campaign_group_name"),
        "inputLog": record.get("input_log"),
        "voiceText": record.get("voice_text"),
        "callCollectedData": orjson.dumps(record.get("call_collected_data") or []).decode(),
        "metaDataDescription": "[]",
        **webhook_fields(trans_id),
    }
    recording = {
        "transId": trans_id,
        "externalCallId": log["externalCallId"],
        "recordUrl": f"https://v2.vbot.vn/api/crm/historycall/record/{trans_id}",
    }
    extraction = {
        "transId": trans_id,
        "externalCallId": log["externalCallId"],
        "callCollectedData": log["callCollectedData"],
    }
    return {"autoCallLog": log, "autoCallAIExtraction": extraction, "autoCallRecording": recording}


def _other_event(rng: random.Random, trans_id: str) -> dict[str, Any]:
    kind = rng.randrange(3)
    if kind == 0:
        return {"transId": trans_id, "externalCallId": "", "callCollectedData": "[]"}
    if kind == 1:
        return {"transId": trans_id, "externalCallId": "", "recordUrl": "https://v2.vbot.vn/r"}
    return {"event": "IN_COMINGCALL", "phone": "0900000000", "hotline": "1900"}


#: How long the sender waits for one answer, in seconds.
_TIMEOUT: Final = 30.0


class WebhookPusher:
    """Posts calls to a webhook receiver as VBot would, with `PushHabits`.

    Attributes:
        url: Where it posts.
        posted: Posts sent (calls, duplicates and other events), by answer status (``0``:
            no answer, the connection failed).
        acknowledged: The ``trans_id`` of each call answered 200, in order (twice if posted
            twice).
        dropped: The ``trans_id`` of each call never posted.

    Raises:
        ValueError: ``header`` is not ``"Name: value"`` (as the receiver's `parse_header`).
    """

    def __init__(self, url: str, header: str | None = None, habits: PushHabits = PushHabits()):
        self.url = url
        self.habits = habits
        self._headers = {}
        if header is not None:
            name, value = parse_header(header)
            self._headers[name] = value
        self._rng = random.Random(habits.seed)
        self._session: aiohttp.ClientSession | None = None
        self._held: dict[str, Any] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.posted: Counter[int] = Counter()
        self.acknowledged: list[str] = []
        self.dropped: list[str] = []

    def __repr__(self) -> str:  # the header's value is a secret
        return f"WebhookPusher({self.url!r}, habits={self.habits!r})"

    def push(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Post each of ``records`` (as its habits say), without waiting; see `drain`."""
        for record in records:
            trans_id = record["trans_id"]
            habits, rng = self.habits, self._rng
            if rng.random() < habits.other_events:
                self._post(_other_event(rng, trans_id), None)
            if rng.random() < habits.drop:
                self.dropped.append(trans_id)
                continue
            body = webhook_body(record)
            copies = 2 if rng.random() < habits.duplicate else 1
            if rng.random() < habits.reorder and self._held is None:
                self._held = body
                continue
            for _ in range(copies):
                self._post(body, trans_id)
            if self._held is not None:
                held, self._held = self._held, None
                self._post(held, held["autoCallLog"]["transId"])

    def _post(self, body: dict[str, Any], trans_id: str | None) -> None:
        task = asyncio.get_running_loop().create_task(self._send(orjson.dumps(body), trans_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, data: bytes, trans_id: str | None) -> None:
        if self.habits.delay:
            await asyncio.sleep(self.habits.delay)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=_TIMEOUT),
                headers={"Content-Type": "application/json", **self._headers},
            )
        try:
            async with self._session.post(self.url, data=data) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError):
            status = 0
        self.posted[status] += 1
        if status == 200 and trans_id is not None:
            self.acknowledged.append(trans_id)

    async def drain(self) -> None:
        """Post a call still held back, then wait until every post is answered."""
        if self._held is not None:
            held, self._held = self._held, None
            self._post(held, held["autoCallLog"]["transId"])
        while self._tasks:
            await asyncio.gather(*self._tasks)

    async def close(self) -> None:
        """`drain`, then close the connections."""
        await self.drain()
        if self._session is not None:
            await self._session.close()
            self._session = None
