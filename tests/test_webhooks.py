"""VBot's webhooks: the sans-I/O parser, the receiver over loopback into real databases, and
the fake server pushing into it, reconciled by the pull."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests import test_sinks
from tests._sync_worker import START
from tests.test_sinks import query
from vbot_cdr import (
    CallEvent,
    CallFilter,
    CallRecord,
    CollectedField,
    Hotline,
    OtherEvent,
    PushedCall,
    VBotClient,
    WebhookError,
    WebhookSink,
    parse_webhook,
    sync_to_database,
    webhook_app,
)
from vbot_cdr._models import WEBHOOK_FIELDS
from vbot_cdr._sinks._backends import open_database
from vbot_cdr._sinks._columns import RECORD_COLUMNS
from vbot_cdr._sinks._url import parse_database_url
from vbot_cdr._webhooks import pushed_call
from vbot_cdr.testing import FakeVBotServer, PushHabits, WebhookPusher
from vbot_cdr.testing._data import RecordGenerator
from vbot_cdr.testing._pusher import webhook_body, webhook_fields

# The sink tests' database fixtures (PostgreSQL, DuckDB, SQLite), registered here too.
database = test_sinks.database
postgres_database = test_sinks.postgres_database
postgres_server = test_sinks.postgres_server

HEADER = "X-VBot-Token: s3cret-never-shown"
AUTH = {"X-VBot-Token": "s3cret-never-shown"}

# -- the parser --------------------------------------------------------------------------------

#: An AUTO_CALL_COMPLETE body as VBot's documentation samples it.
LOG: dict[str, Any] = {
    "transId": "T1",
    "externalCallId": "ext1",
    "phone": "0901234567",
    "duration": 88,
    "billsec": 80,
    "disposition": "ANSWER",
    "createAt": 1_764_547_200_000,
    "answerAt": 1_764_547_288_000,
    "endCallAt": 1_764_547_288_000,
    "postage": 880.0,
    "serviceCharge": 200,
    "postageService": 100.0,
    "postageBotService": 50.0,
    "hotlineCode": "HL1",
    "memberName": "Lan",
    "memberAccId": "acc7",
    "memberNo": "12",
    "botId": "BOT1",
    "templateScriptCode": "TS1",
    "templateScriptName": "Nhắc nợ",
    "campaignName": "",
    "campaignGroupName": "G1",
    "inputLog": "1",
    "voiceText": "vâng",
    "telcoCode": "VTL",
    "callNet": "OFFNET",
    "projectCode": "PRJ",
    "metaData": '{"ref": "R1", "amount": 5}',
    "metaDataDescription": '[{"cfkey": "ref"}]',
    "callCollectedData": '[{"cfkey": "k", "cfname": "n", "cfvalue": "v", "description": "d"}]',
}
COMPLETE = {
    "autoCallLog": LOG,
    "autoCallAIExtraction": {"transId": "T1", "externalCallId": "ext1", "callCollectedData": "[]"},
    "autoCallRecording": {"transId": "T1", "externalCallId": "ext1", "recordUrl": "https://r/T1"},
}


def test_auto_call_complete_gives_the_call_in_a_pulled_calls_attributes() -> None:
    """Every field of the log lands in the attribute a pulled call fills, JSON inside strings
    parsed, the recording's URL added; fields no model lists are kept as sent."""
    event = parse_webhook(orjson.dumps(COMPLETE))
    assert isinstance(event, CallEvent)
    assert event.name == "AUTO_CALL_COMPLETE"
    record = event.record
    assert record.trans_id == "T1"
    assert record.external_call_id == "ext1"
    assert (record.create_at, record.end_call_at) == (1_764_547_200_000, 1_764_547_288_000)
    assert record.ended == dt.datetime(2025, 12, 1, 0, 1, 28, tzinfo=dt.timezone.utc)
    assert record.service_charge == 200.0  # an int where a number is documented
    assert record.hotline == Hotline(code="HL1")
    assert record.member is not None
    assert (record.member.name, record.member.acc_id, record.member.number) == (
        "Lan",
        "acc7",
        "12",
    )
    assert record.call_collected_data == (
        CollectedField(cfkey="k", cfname="n", cfvalue="v", description="d"),
    )
    assert record.meta_data == {"ref": "R1", "amount": 5}
    assert (record.telco_code, record.call_net, record.project_code) == ("VTL", "OFFNET", "PRJ")
    assert (record.postage_service, record.record_url) == (100.0, "https://r/T1")
    assert record.campaign_name == ""
    assert dict(record.extras) == {"metaDataDescription": '[{"cfkey": "ref"}]'}
    assert record.customer_uid is None  # the CDR's own: the pull fills it


def test_the_fields_a_webhook_fills_are_those_the_pull_keeps() -> None:
    """`WEBHOOK_FIELDS`, which a pulled row keeps when it has nothing, is exactly what a
    complete body fills."""
    event = parse_webhook(orjson.dumps(COMPLETE))
    assert isinstance(event, CallEvent)
    filled = set()
    for name, value in event.record.to_dict().items():
        if name in ("member", "hotline"):
            filled |= {f"{name}.{part}" for part, inner in value.items() if inner is not None}
        elif value is not None:
            filled.add(name)
    assert filled - {"metaDataDescription"} | {"extras"} == WEBHOOK_FIELDS


def test_a_flat_auto_call_log_is_the_same_call() -> None:
    """AUTO_CALL_LOG (and CAMPAIGN_CALL) is the log alone: the same record, no recording."""
    event = parse_webhook(orjson.dumps(LOG))
    assert isinstance(event, CallEvent)
    assert event.name == "AUTO_CALL_LOG"
    complete = parse_webhook(orjson.dumps(COMPLETE))
    assert isinstance(complete, CallEvent)
    assert event.record == CallRecord(
        **{**_fields(complete.record), "record_url": None}, extras=complete.record.extras
    )


def _fields(record: CallRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.to_dict() if hasattr(record, name)}


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ({"transId": "T1", "externalCallId": "", "callCollectedData": "[]"}, "CALL_AI_EXTRACTION"),
        ({"transId": "T1", "externalCallId": "", "recordUrl": "https://r"}, "CALL_RECORDING"),
        ({"event": "IN_COMINGCALL", "phone": "0900"}, "IN_COMINGCALL"),
        ({"manualCallLog": {"transId": "M1"}}, "MANUAL_CALL_COMPLETE"),
        ({"transId": "P1", "phone": "0900", "duration": 3}, "UNKNOWN"),
    ],
)
def test_other_events_are_named_by_their_shape(body: dict[str, Any], name: str) -> None:
    assert parse_webhook(orjson.dumps(body)) == OtherEvent(name)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'"text"', "JSON str, not an object"),
        (orjson.dumps({"autoCallLog": {**LOG, "transId": None}}), "autoCallLog.transId"),
        (orjson.dumps({"autoCallLog": {**LOG, "transId": ""}}), "autoCallLog.transId"),
        (orjson.dumps({k: v for k, v in LOG.items() if k != "transId"}), "body.transId"),
        (orjson.dumps({"autoCallLog": [LOG]}), "autoCallLog is not an object"),
        (orjson.dumps({"autoCallLog": {**LOG, "duration": "88"}}), "autoCallLog.duration"),
        (orjson.dumps({"autoCallLog": {**LOG, "metaData": "{"}}), "metaData is not JSON"),
        (orjson.dumps({"autoCallLog": {**LOG, "metaData": "[1]"}}), "metaData holds a JSON list"),
        (
            orjson.dumps({"autoCallLog": {**LOG, "callCollectedData": "{}"}}),
            "callCollectedData holds a JSON dict",
        ),
    ],
)
def test_bodies_that_cannot_be_read_are_webhook_errors(body: bytes, reason: str) -> None:
    with pytest.raises(WebhookError, match=reason):
        parse_webhook(body)


def test_the_fake_pushes_the_calls_it_serves_in_the_documented_shape() -> None:
    """A generated call, pushed, is the same call as served, but for the webhook's own
    fields, the times in milliseconds, and the CDR's own fields it lacks."""
    served = RecordGenerator(seed=3).record(5)
    event = parse_webhook(orjson.dumps(webhook_body(served)))
    assert isinstance(event, CallEvent)
    record = event.record
    assert record.trans_id == served["trans_id"]
    assert record.create_at == served["create_at"] * 1000
    assert record.telco_code == webhook_fields(served["trans_id"])["telcoCode"]
    assert [f.cfvalue for f in record.call_collected_data] == [
        f["cfvalue"] for f in served["call_collected_data"]
    ]
    assert record.customer_uid is None


# -- the receiver ------------------------------------------------------------------------------


@asynccontextmanager
async def receiving(
    sink: WebhookSink, header: str | None = HEADER, **options: Any
) -> AsyncIterator[str]:
    """``webhook_app(sink)`` on loopback; yields its URL."""
    runner = web.AppRunner(webhook_app(sink, header=header, **options), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def rows(url: str) -> int:
    ((count,),) = query(url, "SELECT count(*) FROM vbot_calls")
    return int(count)


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=AUTH if headers is None else headers) as answer,
    ):
        await answer.read()
        return answer.status


async def test_refused_requests_write_nothing(tmp_path: Path) -> None:
    """401 (no or a wrong header), 405, 400 and 413 leave the table empty; the body of a 401
    is never read; /health answers without authentication."""
    url = f"sqlite:///{tmp_path}/calls.db"
    sink = WebhookSink(url)
    await sink.open()
    good = orjson.dumps(COMPLETE)
    async with receiving(sink, max_body=64 * 1024) as base:
        assert await post(base + "/", good, headers={}) == 401
        assert await post(base + "/", good, headers={"X-VBot-Token": "s3cret-never-show"}) == 401
        assert await post(base + "/", good, headers={"x-vbot-token": "wrong"}) == 401
        assert await post(base + "/", b"[1]") == 400
        assert await post(base + "/", b"{") == 400
        assert await post(base + "/", orjson.dumps({"autoCallLog": {"phone": "1"}})) == 400
        assert await post(base + "/", b"{" + b" " * (64 * 1024) + b"}") == 413
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/", headers=AUTH) as answer:
                assert answer.status == 405
            async with session.get(base + "/health") as answer:
                assert (answer.status, await answer.text()) == (200, "ok\n")
        assert rows(url) == 0
        assert dict(sink.stats.refused) == {
            "unauthorized": 3,
            "bad_body": 3,
            "too_large": 1,
            "method": 1,
        }
        assert await post(base + "/", good) == 200
        assert rows(url) == 1


async def test_a_chunked_body_over_the_limit_is_413_without_reading_it_all(
    tmp_path: Path,
) -> None:
    """A body without a length stops being read once past the limit."""
    sink = WebhookSink(f"sqlite:///{tmp_path}/calls.db")
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 64 * 1024 * 1024:
            sent += 64 * 1024
            yield b" " * (64 * 1024)

    async with receiving(sink, max_body=1024 * 1024) as base, aiohttp.ClientSession() as session:
        try:
            async with session.post(base + "/", data=endless(), headers=AUTH) as answer:
                status = answer.status
        except aiohttp.ClientError:
            status = 413  # the server closed while the client was still sending
        assert status == 413
    assert sent < 64 * 1024 * 1024
    assert sink.stats.refused["too_large"] == 1


async def test_a_database_that_is_down_is_503_then_recovers_by_itself(tmp_path: Path) -> None:
    """While the database cannot be opened, posts get 503 and nothing is kept; once it can,
    the next post is stored, with no restart."""
    directory = tmp_path / "not-yet"
    url = f"sqlite:///{directory}/calls.db"
    sink = WebhookSink(url)
    async with receiving(sink) as base:
        assert await post(base + "/", orjson.dumps(COMPLETE)) == 503
        assert sink.stats.refused["unavailable"] == 1
        directory.mkdir()
        assert await post(base + "/", orjson.dumps(COMPLETE)) == 200
    assert query(url, "SELECT trans_id, telco_code FROM vbot_calls") == [("T1", "VTL")]
    assert (sink.stats.stored, sink.stats.duplicates) == (1, 0)


async def test_a_database_lost_mid_run_is_503_then_recovers(postgres_database: str) -> None:
    """A connection killed under the sink: the group fails with 503, the next reconnects."""
    sink = WebhookSink(postgres_database)
    async with receiving(sink) as base:
        assert await post(base + "/", orjson.dumps(COMPLETE)) == 200
        query(
            postgres_database,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        second = {"autoCallLog": {**LOG, "transId": "T2"}}
        assert await post(base + "/", orjson.dumps(second)) == 503
        assert await post(base + "/", orjson.dumps(second)) == 200
    assert sorted(query(postgres_database, "SELECT trans_id FROM vbot_calls")) == [
        ("T1",),
        ("T2",),
    ]


async def test_concurrent_posts_share_commits(database: str) -> None:
    """64 posts at once are each committed before their 200, in far fewer transactions."""
    sink = WebhookSink(database)
    await sink.open()
    bodies = [orjson.dumps({"autoCallLog": {**LOG, "transId": f"T{i}"}}) for i in range(64)]
    async with receiving(sink) as base, aiohttp.ClientSession(headers=AUTH) as session:

        async def send(body: bytes) -> int:
            async with session.post(base + "/", data=body) as answer:
                return answer.status

        statuses = await asyncio.gather(*(send(body) for body in bodies))
        assert statuses == [200] * 64
        assert rows(database) == 64
    assert sink.commits < 64
    assert sink.stats.stored == 64


async def test_a_subclass_overriding_store_sees_every_post(tmp_path: Path) -> None:
    """The application stores through the public `WebhookSink.store`: a subclass overriding
    it sees the usual body (read by the fast path into a `PushedCall`) and a body only
    `parse_webhook` reads (a `CallRecord`), and what it answers is what the sender gets."""

    class Watching(WebhookSink):
        seen: list[tuple[str, bool]]

        async def store(self, record: CallRecord | PushedCall) -> bool:
            self.seen.append((record.trans_id or "", isinstance(record, CallRecord)))
            return await super().store(record)

    url = f"sqlite:///{tmp_path}/calls.db"
    sink = Watching(url)
    sink.seen = []
    usual = orjson.dumps({**COMPLETE, "autoCallLog": {**LOG, "transId": "FAST"}})
    flat = orjson.dumps({**LOG, "transId": "TYPED"})  # a flat log: parse_webhook's
    assert pushed_call(usual) is not None
    assert pushed_call(flat) is None
    async with receiving(sink) as base:
        assert await post(base + "/", usual) == 200
        assert await post(base + "/", flat) == 200
    assert sink.seen == [("FAST", False), ("TYPED", True)]
    assert sorted(query(url, "SELECT trans_id FROM vbot_calls")) == [("FAST",), ("TYPED",)]


# -- push and pull into one table ----------------------------------------------------------------

#: Columns only the pull fills (the CDR's own), and only the push (the webhook's own).
CDR_ONLY = ("name", "customer_uid", "sip_code", "status", "campaign_code", "score", "is_record")
PUSH_ONLY = (
    "telco_code",
    "call_net",
    "project_code",
    "member_acc_id",
    "record_url",
    "external_call_id",  # the fake's v2 CDR has none; its push sends ""
)


def table(url: str) -> dict[str, tuple[Any, ...]]:
    """The calls table: trans_id → the row's other columns (a few compared ones)."""
    columns = ", ".join(("billsec", "duration", "phone", *CDR_ONLY, *PUSH_ONLY))
    found = query(url, f"SELECT trans_id, {columns} FROM vbot_calls")
    by_key = {row[0]: tuple(row[1:]) for row in found}
    assert len(by_key) == len(found)
    return by_key


def calls(count: int, seed: int = 5) -> list[dict[str, Any]]:
    generator = RecordGenerator(seed=seed, id_prefix="PUSH")
    return [generator.record(i, created=START + 60 * i) for i in range(count)]


async def pull(fake: FakeVBotServer, url: str) -> int:
    async with VBotClient(fake.token, base_url=fake.base_url) as client:
        done = await sync_to_database(
            client, url, CallFilter(start_date=START), window=dt.timedelta(days=30)
        )
    return done.loaded


@pytest.mark.parametrize("order", ["push-then-pull", "pull-then-push"])
async def test_push_and_pull_merge_the_same_either_way(database: str, order: str) -> None:
    """Whichever comes first, the row ends with the pull's values for the fields both have,
    the CDR's own fields, and the webhook's own; pushing again changes nothing."""
    sink = WebhookSink(database)
    async with receiving(sink) as base:
        fake = FakeVBotServer(count=0, webhook_url=base + "/", webhook_header=HEADER)
        async with fake:
            assert fake.webhooks is not None
            if order == "pull-then-push":
                fake.webhooks.habits = PushHabits(drop=1.0)
                fake.add_records(calls(20))
                await pull(fake, database)
                fake.webhooks.habits = PushHabits()
                fake.webhooks.push(fake.records)
            else:
                fake.add_records(calls(20))
                await fake.webhooks.drain()
                pushed = table(database)
                # The push alone: the CDR's own fields are empty until the pull.
                assert set(pushed) == {c["trans_id"] for c in calls(20)}
                assert all(
                    row[3 : 3 + len(CDR_ONLY)] == (None,) * len(CDR_ONLY) for row in pushed.values()
                )
                await pull(fake, database)
            await fake.webhooks.drain()
            merged = table(database)
            assert merged == expected_table(fake.records)
            fake.webhooks.push(fake.records)  # every call pushed once more
            await fake.webhooks.drain()
            assert table(database) == merged
    assert sink.stats.duplicates >= 20


def expected_table(records: list[dict[str, Any]], pushed: set[str] | None = None) -> dict[str, Any]:
    """What the table holds once ``records`` were pulled and ``pushed`` (all by default)."""
    expected = {}
    for record in records:
        own = webhook_fields(record["trans_id"])
        webhook = (
            (
                own["telcoCode"],
                own["callNet"],
                own["projectCode"],
                own["memberAccId"],
                f"https://v2.vbot.vn/api/crm/historycall/record/{record['trans_id']}",
                "",
            )
            if pushed is None or record["trans_id"] in pushed
            else (None,) * len(PUSH_ONLY)
        )
        cdr = tuple(record.get(name) for name in CDR_ONLY)
        expected[record["trans_id"]] = (
            record["billsec"],
            record["duration"],
            record["phone"],
            *cdr,
            *webhook,
        )
    return expected


async def test_a_lossy_sender_ends_exactly_once_after_one_reconcile(database: str) -> None:
    """Posts dropped, duplicated, reordered, delayed, with other events mixed in: after one
    pull over the same table, it holds the fake's calls exactly once, every CDR-only field
    filled, and the webhook's fields of every call that got through."""
    sink = WebhookSink(database)
    habits = PushHabits(drop=0.2, duplicate=0.2, reorder=0.3, other_events=0.2, seed=7)
    async with receiving(sink) as base:
        fake = FakeVBotServer(
            count=0, webhook_url=base + "/", webhook_header=HEADER, webhook_habits=habits
        )
        async with fake:
            assert fake.webhooks is not None
            fake.add_records(calls(150))
            await fake.webhooks.drain()
            pusher: WebhookPusher = fake.webhooks
            acknowledged = set(pusher.acknowledged)
            assert rows(database) == len(acknowledged) == 150 - len(pusher.dropped)
            assert pusher.dropped
            assert len(pusher.acknowledged) > len(acknowledged)
            missing = await pull(fake, database)
            assert missing == 150  # every call pulled; those dropped are now in the table too
            assert table(database) == expected_table(fake.records, acknowledged)
    stats = sink.stats
    assert stats.stored == len(acknowledged)
    assert stats.duplicates == len(pusher.acknowledged) - len(acknowledged)
    assert sum(stats.other_events.values()) > 0
    assert not stats.refused


def test_the_sink_refuses_a_bad_url_before_anything() -> None:
    with pytest.raises(ValueError, match="database"):
        WebhookSink("ftp://nowhere")


def test_the_header_value_is_never_in_a_message() -> None:
    """A malformed header is refused without echoing it, and the app keeps its value out of
    the sink's repr."""
    with pytest.raises(ValueError, match="Name: value") as info:
        webhook_app(WebhookSink("sqlite:///x.db"), header="s3cret-never-shown")
    assert "s3cret" not in str(info.value)
    assert "s3cret" not in repr(WebhookPusher("http://x/", HEADER))


@pytest.mark.parametrize(
    "header", ["s3cret-never-shown", "Bearer s3cret-never-shown:x", "X-Hook:"], ids=str
)
def test_receiver_and_sender_refuse_the_same_malformed_headers(header: str) -> None:
    """The test sender reads its header as the receiver does: a malformed one is refused by
    both, and neither message holds any part of it."""
    for refuse in (
        lambda: webhook_app(WebhookSink("sqlite:///x.db"), header=header),
        lambda: WebhookPusher("http://x/", header),
    ):
        with pytest.raises(ValueError, match="Name: value") as info:
            refuse()
        assert "s3cret" not in str(info.value)


def test_a_pushed_group_writes_every_column_as_a_pull_would(database: str) -> None:
    """The push's upsert (its own statement on PostgreSQL) stores each column of a call, times,
    JSON and flags included, as the pull's does; a call twice in a group is stored once."""
    records = [parse_webhook(orjson.dumps(webhook_body(call))).record for call in calls(40)]
    target = parse_database_url(database)
    rows = {}
    for table_name, pushed in (("pulled", False), ("pushed", True)):
        db = open_database(target, table_name, RECORD_COLUMNS)
        try:
            db.upsert(RECORD_COLUMNS, records, pushed=pushed)
            if pushed:
                db.upsert(RECORD_COLUMNS, records[:5], pushed=True)
            db.commit_pushed()
        finally:
            db.finish()
        rows[table_name] = sorted(query(database, f"SELECT * FROM {table_name}"), key=str)
    assert len(rows["pushed"]) == 40
    assert rows["pushed"] == rows["pulled"]
