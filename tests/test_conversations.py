"""`iter_conversations` over loopback: every call's conversation once, bounded, or a named error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from vbot_cdr import APIError, CallError, CallFilter, RetryPolicy, VBotClient
from vbot_cdr.testing import FakeVBotServer, Fault, FaultMix, make_conversation

CONVERSATION = "getBotConversation"


@pytest.fixture
def server(any_server: FakeVBotServer) -> FakeVBotServer:
    """The tests that take the shared server run against each dialect."""
    return any_server


async def test_every_call_once_with_its_conversation(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """Each of the 250 calls comes once, with the conversation get_bot_conversation gives."""
    client = make_client(server, page_size=50, concurrency=6)
    async with client.iter_conversations() as conversations:
        items = [item async for item in conversations]
    ids = [item.trans_id or "" for item in items]
    assert sorted(ids) == sorted(r["trans_id"] for r in server.records)
    assert len(set(ids)) == 250
    assert server.count(CONVERSATION) == 250
    assert server.peak_in_flight <= 6 + 1  # the conversations, and the page being read
    for item in items[:20]:
        assert item.trans_id is not None
        assert item.conversation == await client.get_bot_conversation(item.trans_id)
        assert item.call.trans_id == item.trans_id
    assert conversations.total == 250
    # The conversations, the count, 5 pages and the one after a full last page.
    assert conversations.stats.requests == 250 + 1 + 6


async def test_filters_select_the_calls(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """Only the calls the filter selects are asked about."""
    first = server.records[0]
    client = make_client(server)
    items = [i async for i in client.iter_conversations(CallFilter(bot_id=first["bot_id"]))]
    expected = {r["trans_id"] for r in server.records if r["bot_id"] == first["bot_id"]}
    assert {i.trans_id for i in items} == expected
    assert server.count(CONVERSATION) == len(expected)


async def test_server_errors_are_retried(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """A 503 and a dropped connection are retried: every conversation still comes, once."""
    server.inject(
        Fault(status=503), Fault(disconnect=True), Fault(status=500), endpoint=CONVERSATION
    )
    client = make_client(server, concurrency=4)
    items = [i async for i in client.iter_conversations()]
    assert len({i.trans_id for i in items}) == len(items) == 250
    assert all(i.conversation is not None for i in items)
    assert server.count(CONVERSATION) == 253


@pytest.mark.parametrize(
    "fault",
    [Fault(status=404), Fault(envelope_error=404, message="không có hội thoại")],
    ids=["http-404", "envelope-404"],
)
async def test_a_call_without_a_conversation_is_a_result(
    server: FakeVBotServer, make_client: Callable[..., VBotClient], fault: Fault
) -> None:
    """A 404 for one call yields that call with conversation None, not a gap or an error."""
    server.inject(fault, endpoint=CONVERSATION)
    client = make_client(server)
    items = [i async for i in client.iter_conversations()]
    assert len({i.trans_id for i in items}) == 250
    without = [i for i in items if i.conversation is None]
    assert len(without) == 1
    assert without[0].trans_id in {r["trans_id"] for r in server.records}
    assert server.count(CONVERSATION) == 250  # a 404 is an answer, not retried


async def test_a_conversation_that_cannot_be_fetched_is_named(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """A call whose conversation fails past its retries raises CallError naming it; the
    requests still in flight are cancelled."""
    server.inject(*[Fault(status=500)] * 4, endpoint=CONVERSATION)  # NO_WAIT: 4 attempts
    client = make_client(server, concurrency=1)
    conversations = client.iter_conversations()
    with pytest.raises(CallError) as caught:
        async for _ in conversations:
            pass
    error = caught.value
    failed = server.requests[[r.endpoint for r in server.requests].index(CONVERSATION)]
    assert error.trans_id == failed.params.get("trans_id", failed.params.get("transId"))
    assert error.trans_id in str(error)
    assert isinstance(error.error, APIError)
    assert error.error.http_status == 500
    assert error.__cause__ is error.error
    await conversations.aclose()
    await asyncio.wait_for(server.wait_idle(), 10)
    assert server.in_flight == 0


async def test_bad_arguments_fail_before_any_request(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """A bad concurrency or criterion is an error at the call, with nothing sent."""
    client = make_client(server)
    with pytest.raises(ValueError, match="concurrency"):
        client.iter_conversations(concurrency=0)
    with pytest.raises(TypeError):
        client.iter_conversations(no_such_criterion="x")
    assert server.requests == []


async def test_calls_are_not_gathered_first() -> None:
    """The first conversations come after one page of calls, not after reading every page;
    calls are read only as the conversations free up room (memory flat in the calls)."""
    async with (
        FakeVBotServer(count=5000) as fake,
        VBotClient(fake.token, base_url=fake.base_url, page_size=100) as client,
        client.iter_conversations(concurrency=4) as conversations,
    ):
        for _ in range(10):
            await conversations.__anext__()
        assert fake.count("getAll") <= 2
        assert conversations.stats.yielded <= 200


async def test_stopping_early_cancels_the_requests_in_flight() -> None:
    """Closing the iterator midway leaves no request in flight and sends no more."""
    async with FakeVBotServer(count=500, latency=0.01) as fake:
        async with VBotClient(fake.token, base_url=fake.base_url) as client:
            async with client.iter_conversations(concurrency=8) as conversations:
                async for _ in conversations:
                    break
            await asyncio.wait_for(fake.wait_idle(), 10)
            sent = len(fake.requests)
            assert fake.count(CONVERSATION) < 500
        assert len(fake.requests) == sent


async def test_rate_limit_bounds_the_pace() -> None:
    """Conversation requests obey the client's rate limit (a lower bound on the time)."""
    loop = asyncio.get_running_loop()
    async with (
        FakeVBotServer(count=30) as fake,
        VBotClient(fake.token, base_url=fake.base_url, rate_limit=200) as client,
    ):
        started = loop.time()
        items = [i async for i in client.iter_conversations(concurrency=8)]
        elapsed = loop.time() - started
    assert len(items) == 30
    assert elapsed >= (32 - 1) / 200 * 0.95  # 30 conversations, the count and a page


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_every_call_once_through_random_faults(
    make_client: Callable[..., VBotClient], seed: int
) -> None:
    """Under random 5xx, 429s, cut bodies and resets on every endpoint, each call comes once
    with its conversation, or the run names what failed: never a gap or a repeat."""
    mix = FaultMix(seed=seed, server_error=0.05, rate_limit=0.03, truncate=0.03, disconnect=0.02)
    async with FakeVBotServer(count=300, fault_mix=mix) as fake:
        client = make_client(fake, concurrency=6, retry=RetryPolicy(max_attempts=8, backoff=0.0))
        items = [i async for i in client.iter_conversations()]
        fake.fault_mix = None
        expected = {r["trans_id"]: r for r in fake.records}
    assert sorted(i.trans_id or "" for i in items) == sorted(expected)
    for item in items:
        assert item.conversation is not None
        assert item.conversation.raw == make_conversation(expected[item.trans_id or ""])
