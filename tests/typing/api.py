"""The public API as users write it, checked by ``mypy --strict`` and never run.

pytest does not collect this file (its name does not match ``test_*.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import aiohttp
import aiohttp.web
from typing_extensions import assert_type

from vbot_cdr import (
    AiohttpTransport,
    APIError,
    AuthenticationError,
    BotConversation,
    CallColumn,
    CallConversation,
    CallError,
    CallEvent,
    CallFilter,
    CallIterator,
    CallPageIterator,
    CallRecord,
    CallSync,
    CollectedField,
    ConversationIterator,
    DatabaseLoad,
    DatabaseSync,
    DocumentStateStore,
    Hotline,
    IncompleteError,
    IterationStats,
    Member,
    OtherEvent,
    PasswordAuth,
    RateLimitError,
    Recording,
    RecordingDownload,
    ResponseFormatError,
    RetryPolicy,
    StateError,
    StateStore,
    StreamingTransport,
    Transport,
    TransportError,
    VBotClient,
    VBotError,
    WebhookError,
    WebhookSink,
    WebhookStats,
    call_columns,
    open_database_sync,
    parse_webhook,
    sync_to_database,
    table_row,
    webhook_app,
)
from vbot_cdr.testing import (
    FakeVBotServer,
    Fault,
    PagingHabits,
    instant_retries,
    remembered_ids,
)


async def fetch_token() -> str:
    return "token"


async def static_token(session: aiohttp.ClientSession) -> None:
    policy = RetryPolicy(max_attempts=3, backoff=0.1, max_backoff=2.0, max_retry_after=10.0)
    client = VBotClient(
        "token",
        base_url="https://api.example.vn",
        vbot_id="VB0001",
        project_code="PRJ",
        session=session,
        concurrency=4,
        page_size=200,
        first_page=0,
        retry=policy,
        timeout=10.0,
        time_unit="ms",
    )
    async with client as entered:
        assert_type(entered, VBotClient)
    await client.aclose()


async def traced() -> None:
    trace = aiohttp.TraceConfig()
    async with VBotClient("t", base_url="https://api.example.vn", trace_configs=[trace]) as client:
        assert_type(client, VBotClient)


async def endpoints() -> None:
    async with VBotClient(fetch_token, base_url="https://api.example.vn") as client:
        assert_type(await client.count_calls(), int)
        assert_type(await client.count_calls(campaign_code="CMP"), int)
        since = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
        call_filter = CallFilter(
            bot_id="BOT",
            campaign_code="CMP",
            member="Lan",
            template_script_code="TPL",
            disposition="ANSWERED",
            key="0901",
            start_date=since,
            end_date=1_767_225_600,
            hotline="HL1",
            input_log_search="thanh toán",
            status=1,
        )
        assert_type(await client.count_calls(call_filter), int)
        calls = await client.get_calls(call_filter, page=1, size=50)
        assert_type(calls, list[CallRecord])
        assert_type(await client.get_calls(page=2, bot_id="BOT"), list[CallRecord])
        several = CallFilter(campaign_code=["A", "B"], disposition=("answer", "busy"))
        assert_type(several.campaign_code, str | tuple[str, ...] | None)
        assert_type(several.variants(), list[CallFilter])
        assert_type(await client.count_calls(several), int)
        conversation = await client.get_bot_conversation("TX1", bot_id="BOT")
        assert_type(conversation, BotConversation)
        assert_type(conversation.raw, str)
        assert_type(conversation.turns, tuple[Any, ...])


def records(record: CallRecord) -> None:
    assert_type(record.trans_id, str | None)
    assert_type(record.duration, int | None)
    assert_type(record.postage, float | None)
    assert_type(record.is_record, bool | None)
    assert_type(record.member, Member | None)
    assert_type(record.hotline, Hotline | None)
    assert_type(record.call_collected_data, tuple[CollectedField, ...])
    assert_type(record.created, dt.datetime | None)
    assert_type(record.answered, dt.datetime | None)
    assert_type(record.ended, dt.datetime | None)
    assert_type(record.extras, Mapping[str, Any])
    assert_type(record.to_dict(), dict[str, Any])
    if record.member is not None:
        assert_type(record.member.name, str | None)
    for field in record.call_collected_data:
        assert_type(field.cfvalue, str | None)


def errors(exc: VBotError) -> None:
    if isinstance(exc, RateLimitError):
        assert_type(exc.retry_after, float | None)
    if isinstance(exc, APIError):
        assert_type(exc.error_code, int | None)
        assert_type(exc.message, str)
        assert_type(exc.http_status, int)
    if isinstance(exc, ResponseFormatError):
        assert_type(exc.field, str | None)
        assert_type(exc.retryable, bool)
    assert_type(exc.endpoint, str | None)
    assert_type(exc.page, int | None)
    if isinstance(exc, IncompleteError):
        assert_type(exc.expected, int)
        assert_type(exc.yielded, int)
        assert_type(exc.missing, int)
    assert issubclass(AuthenticationError, APIError)
    assert issubclass(TransportError, VBotError)


class MemoryTransport:
    """A user's fake network, typed by the `Transport` protocol."""

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        timeout: float,
    ) -> tuple[int, Mapping[str, str], bytes]:
        return 200, {}, b'{"status": 1, "error": 0, "data": 0}'

    async def aclose(self) -> None:
        pass


async def transports(session: aiohttp.ClientSession) -> None:
    fake: Transport = MemoryTransport()
    async with VBotClient("token", base_url="https://api.example.vn", transport=fake) as client:
        assert_type(await client.count_calls(), int)
    default = AiohttpTransport(session=session, max_response_bytes=1 << 20, connections=10)
    status, _, body = await default.send("GET", "https://api.example.vn", headers={}, timeout=1.0)
    assert_type(status, int)
    assert_type(body, bytes)
    await default.aclose()


async def iterators_and_streams(session: aiohttp.ClientSession) -> None:
    async with VBotClient("token", base_url="https://api.example.vn") as client:
        assert_type(client.iter_calls(), CallIterator)
        assert_type(client.iter_conversations(), ConversationIterator)
    streaming: StreamingTransport = AiohttpTransport(session=session)
    url = "https://api.example.vn/recording.mp3"
    async with streaming.stream("GET", url, headers={}, timeout=1.0) as (status, _, chunks):
        assert_type(status, int)
        async for chunk in chunks:
            assert_type(chunk, bytes)
    try:
        pass
    except StateError as exc:
        assert_type(exc, StateError)


async def paging_habits() -> None:
    habits = PagingHabits(size_cap=50, deep_cap=1000, shuffle_ties=True, seed=1)
    async with FakeVBotServer(count=10, paging=habits) as server:
        server.paging = PagingHabits(past_end_last=True, ignore_page=True)
        async with VBotClient(server.token, base_url=server.base_url) as client:
            async with client.iter_calls() as calls:
                async for _ in calls:
                    pass
            assert_type(calls.stats.replans, int)
            assert_type(calls.stats.recounts, int)
            assert_type(calls.stats.repair_pages, int)
            assert_type(calls.stats.repaired, int)


async def fake_server() -> None:
    async with FakeVBotServer(count=10) as server:
        server.inject(Fault(status=503), Fault(status=429, retry_after="1"))
        async with VBotClient(server.token, base_url=server.base_url) as client:
            assert_type(await client.count_calls(), int)
        assert_type(server.count("countAll"), int)


def misuse() -> None:
    VBotClient("token", "https://api.example.vn")  # type: ignore[call-arg]
    CallFilter(campaign="CMP")  # type: ignore[call-arg]
    CallFilter(start_date="2025-01-01")  # type: ignore[arg-type]
    VBotClient("token", base_url="https://x", time_unit="us")  # type: ignore[arg-type]


async def password_login(clock_seconds: float) -> None:
    auth = PasswordAuth("alice", "secret", refresh_margin=30.0, clock=lambda: clock_seconds)
    async with VBotClient(auth, base_url="https://api.example.vn") as client:
        assert_type(await client.count_calls(), int)
    client = VBotClient.from_password(
        "alice", "secret", base_url="https://api.example.vn", page_size=50, retry=RetryPolicy()
    )
    assert_type(client, VBotClient)
    assert_type(auth.username, str)
    await client.aclose()


async def windows_and_sync(now: dt.datetime) -> None:
    async with VBotClient("token", base_url="https://x", clock=lambda: now) as client:
        first = dt.datetime(2025, 12, 1, tzinfo=dt.timezone.utc)
        calls = client.iter_calls(start_date=first, window=dt.timedelta(days=1))
        assert_type(calls.stats.windows_done, int)
        sync = client.sync("state.json", CallFilter(start_date=first), reset=True)
        assert_type(sync, CallSync)
        async with sync:
            async for call in sync:
                assert_type(call, CallRecord)
                if sync.committable:
                    await sync.commit()
        assert_type(sync.watermark, int | None)
        assert_type(sync.windows, Sequence[tuple[int, int]])
        resumed = client.sync("state.json", CallFilter(start_date=first))
        async with resumed.pages() as pages:
            async for page in pages:
                assert_type(page, list[CallRecord])
        await resumed.commit()


async def fetch_key() -> str:
    return "key"


async def dialects() -> None:
    async with VBotClient(api_key="key", base_url="https://open-api-h01.vbot.vn/v3.0") as v3:
        assert_type(v3.api, Literal["v2", "v3", "v3-legacy"])
        assert_type(v3.time_unit, Literal["s", "ms"])
        postage = CallFilter(min_postage=100.0, max_postage=1000, key="0901")
        assert_type(postage.min_postage, float | None)
        assert_type(await v3.count_calls(postage), int)
    legacy = VBotClient(api_key=fetch_key, base_url="https://x", api="v3-legacy", time_unit=None)
    await legacy.aclose()
    v2 = VBotClient(token="token", base_url="https://x", api="v2", vbot_id="VB1")
    await v2.aclose()
    async with FakeVBotServer(api="v3", envelope_status=False, echo_credentials=True) as server:
        assert_type(server.api_key, str)
        assert_type(server.api, Literal["v2", "v3", "v3-legacy"])
    record = CallRecord()
    assert_type(record.external_call_id, str | None)
    assert_type(record.campaign_id, int | None)
    assert_type(record.campaign_group_id, int | None)
    assert_type(record.template_script_id, int | None)
    assert_type(record.bot_member_status_connect, str | None)


def dialect_misuse() -> None:
    VBotClient(api_key="k", base_url="https://x", api="v4")  # type: ignore[arg-type]
    VBotClient(api_key=42, base_url="https://x")  # type: ignore[arg-type]
    CallFilter(min_postage="100")  # type: ignore[arg-type]


async def database_sink() -> None:
    async with VBotClient("token", base_url="https://api.example.vn") as client:
        done: DatabaseLoad = await sync_to_database(
            client, "calls.duckdb", start_date=1_764_547_200, table="calls"
        )
        loaded: int = done.loaded
        skipped: int = done.without_trans_id
        shown: str = done.database
        assert_type(done.windows, int)
        del loaded, skipped, shown


async def bulk_reads() -> None:
    async with VBotClient("token", base_url="https://api.example.vn") as client:
        async with client.iter_conversations(campaign_code="C1", concurrency=16) as items:
            async for item in items:
                assert_type(item, CallConversation)
                assert_type(item.conversation, BotConversation | None)
                assert_type(item.trans_id, str | None)
            assert_type(items.total, int | None)
        one = await client.download_recording("TX1", Path("a.mp3"), max_bytes=1 << 20)
        assert_type(one, Recording)
        assert_type(one.sha256, str | None)
        download = client.download_recordings("out", CallFilter(bot_id="B1"), max_bytes=1000)
        assert_type(download, RecordingDownload)
        async for recording in download:
            assert_type(recording.reason, str | None)
            assert_type(recording.reused, bool)
    try:
        pass
    except CallError as exc:
        assert_type(exc.trans_id, str)
        assert_type(exc.error, VBotError)


async def seams() -> None:
    async def sleep(delay: float) -> None:
        pass

    policy = RetryPolicy(max_attempts=2, sleep=sleep)
    with instant_retries(max_attempts=2) as waits, remembered_ids(0):
        assert_type(waits, list[float])
        async with VBotClient("token", base_url="https://x", retry=policy) as client:
            pages = client.iter_call_pages(limit=10, window=dt.timedelta(hours=1))
            assert_type(pages, CallPageIterator)
            assert_type(pages.stats.in_flight_limit, int)
            assert_type(pages.stats.in_flight_cuts, int)
            client.iter_call_pages(limit="10")  # type: ignore[arg-type]


class Documents(DocumentStateStore):
    def __init__(self) -> None:
        self.saved: dict[str, bytes] = {}

    def read_document(self, key: str) -> bytes | None:
        return self.saved.get(key)

    def write_document(self, key: str, document: bytes) -> None:
        self.saved[key] = document


async def followed_database_sink() -> None:
    async with VBotClient("token", base_url="https://api.example.vn") as client:
        async with open_database_sync(client, "calls.duckdb", start_date=1_764_547_200) as load:
            assert_type(load, DatabaseSync)
            assert_type(load.stats, IterationStats)
            assert_type(load.windows, Sequence[tuple[int, int]])
            assert_type(await load.run(), DatabaseLoad)
        store: StateStore = Documents()
        assert_type(client.sync(store, start_date=1_764_547_200), CallSync)


def one_table_shape(record: CallRecord) -> None:
    """The columns of every tabular output, and a call as their values."""
    columns = call_columns()
    assert_type(columns, tuple[CallColumn, ...])
    kinds: list[str] = [column.kind for column in columns]
    row = table_row(record, tz="UTC")
    assert_type(row, dict[str, Any])
    del kinds, row


async def webhooks(body: bytes) -> None:
    event = parse_webhook(body)
    if isinstance(event, CallEvent):
        assert_type(event.record, CallRecord)
        assert_type(event.record.meta_data, Mapping[str, Any] | None)
        assert_type(event.record.telco_code, str | None)
    else:
        assert_type(event, OtherEvent)
        assert_type(event.name, str)
    try:
        parse_webhook(b"[]")
    except WebhookError as exc:
        assert_type(exc, WebhookError)
    sink = WebhookSink("postgresql://etl@db/calls", table="vbot_calls")
    app = webhook_app(sink, header="X-VBot-Token: s3cret", path="/vbot")
    assert_type(app, aiohttp.web.Application)
    assert_type(sink.stats, WebhookStats)
    assert_type(sink.stats.as_dict(), dict[str, Any])
    if isinstance(event, CallEvent):
        assert_type(await sink.store(event.record), bool)
    await sink.close()
