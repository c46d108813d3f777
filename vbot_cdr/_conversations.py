"""`iter_conversations`: the bot conversation of every call a filter selects, each once.

The calls come from the ordinary iteration (`iter_call_pages`: complete, or an error), read
one page at a time; each call's ``getBotConversation`` is then asked by `fan_out`, with at
most the client's ``concurrency`` of them in flight, under its rate limit and retries.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, Final

import attrs
import orjson

from . import _wire
from ._errors import CallError, VBotError
from ._fanout import fan_out
from ._iteration import CallPageIterator, IteratorBase
from ._models import BotConversation, CallRecord

__all__ = [
    "CallConversation",
    "ConversationIterator",
    "FetchConversation",
    "conversation_of",
    "turn_rows",
]


#: Fetches the conversation of one call (``client.get_bot_conversation`` with the
#: iteration's counters).
FetchConversation = Callable[[str, str | None], Awaitable[BotConversation]]


@attrs.frozen
class CallConversation:
    """One call and its bot conversation.

    Attributes:
        call: The call, as `iter_calls` yields it.
        conversation: Its conversation; ``None`` when the call has none: the server answers
            "not found" (HTTP 404, or a failure envelope with code 404) for it, or the
            record has no ``trans_id`` to ask with.

    .. versionadded:: Unreleased
    """

    call: CallRecord
    conversation: BotConversation | None

    @property
    def trans_id(self) -> str | None:
        """The call's ``trans_id``."""
        return self.call.trans_id


async def conversation_of(fetch: FetchConversation, call: CallRecord) -> CallConversation:
    """``call`` and its conversation, fetched by ``fetch`` (``None``: the server has none,
    or the call has no ``trans_id``).

    Raises:
        CallError: The conversation could not be fetched (not a 404); it names the call.
    """
    if call.trans_id is None:
        return CallConversation(call, None)
    try:
        conversation = await fetch(call.trans_id, call.bot_id)
    except VBotError as exc:
        if _wire.finds_nothing(exc):
            return CallConversation(call, None)
        raise CallError(call.trans_id, exc) from exc
    return CallConversation(call, conversation)


#: Where a turn's role and text are, in the shapes seen (v3's text; JSON turns).
_ROLE_KEYS: Final = ("role", "speaker")
_CONTENT_KEYS: Final = ("content", "text")


def _pick(turn: dict[str, Any], keys: Sequence[str]) -> Any:
    return next((turn[key] for key in keys if key in turn), None)


def turn_rows(item: CallConversation) -> list[dict[str, Any]]:
    """The rows of one call, as ``vbot-cdr conversations`` writes them: one per turn
    (``turn`` from 1), or, for a call without a conversation or with no turns, one whose
    ``turn``, ``role`` and ``content`` are ``None``."""
    created = item.call.created
    call = {
        "trans_id": item.trans_id,
        "create_at": item.call.create_at,
        "created": created,
    }
    turns = item.conversation.turns if item.conversation is not None else ()
    if not turns:
        return [{"trans_id": item.trans_id, "turn": None, "role": None, "content": None, **call}]
    rows = []
    for number, turn in enumerate(turns, start=1):
        if isinstance(turn, dict):
            role, content = _pick(turn, _ROLE_KEYS), _pick(turn, _CONTENT_KEYS)
        else:
            role, content = None, orjson.dumps(turn).decode()
        rows.append({"trans_id": item.trans_id, "turn": number, "role": role, "content": content})
        rows[-1].update(call)
    return rows


class ConversationIterator(IteratorBase[CallConversation]):
    """``async for item in client.iter_conversations(...)``: a `CallConversation` per call.

    Every call the filter selects comes once, in the order its conversation arrives (not the
    server's order). Use it as ``async with`` (or call `aclose`) so that stopping early
    cancels the requests in flight. In `stats`, ``yielded`` counts the calls read so far (a
    few more than the conversations handed out).

    .. versionadded:: Unreleased
    """

    def __init__(self, calls: CallPageIterator, fetch: FetchConversation, *, concurrency: int):
        super().__init__(calls)
        self._calls = calls
        self._fetch = fetch
        self._items: AsyncGenerator[CallConversation, None] = fan_out(
            calls, self._conversation_of, width=concurrency
        )

    async def _conversation_of(self, call: CallRecord) -> CallConversation:
        return await conversation_of(self._fetch, call)

    async def __anext__(self) -> CallConversation:
        """The next call and its conversation.

        Raises:
            CallError: A call's conversation could not be fetched (not a 404) after the
                retries; it names the call.
            VBotError: Reading the calls failed (`IncompleteError`, ...).
        """
        return await self._items.__anext__()

    async def aclose(self) -> None:
        """Stop: cancel every request in flight and wait until they are gone. Idempotent."""
        await self._items.aclose()
        await self._calls.aclose()
