"""``vbot-cdr count`` and ``vbot-cdr conversation``: one request each, its answer printed."""

from __future__ import annotations

from ._options import ConversationOptions, CountOptions
from ._settings import open_client
from ._status import Context, UsageError

__all__ = ["run_conversation", "run_count"]


async def run_count(options: CountOptions, context: Context) -> int:
    """Print how many calls match the filters (countAll)."""
    async with open_client(options.connection, context) as client:
        try:
            total = await client.count_calls(options.filter)
        except ValueError as exc:  # a filter the dialect does not have
            raise UsageError(str(exc)) from None
    print(total)
    context.summary.expected = total
    return 0


async def run_conversation(options: ConversationOptions, context: Context) -> int:
    """Print the bot conversation of one call, as the server sends it."""
    async with open_client(options.connection, context) as client:
        conversation = await client.get_bot_conversation(options.trans_id, bot_id=options.bot_id)
    print(conversation.raw)
    return 0
