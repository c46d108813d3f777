"""The fake VBot server: its data, every filter, paging, faults, counters and pytest plugin."""

from __future__ import annotations

import asyncio
import contextlib
import random
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from tests._records import exported
from vbot_cdr import RetryPolicy, VBotClient
from vbot_cdr.testing import (
    FakeVBotServer,
    Fault,
    FaultMix,
    generate_records,
    make_conversation,
)

pytest_plugins = ["pytester"]

API = "/api/campaignCall/cdr/"
NO_WAIT = RetryPolicy(max_attempts=6, backoff=0.0, max_backoff=0.0)
Record = dict[str, Any]


class Raw:
    """Plain HTTP requests to a fake server, to see exactly what it sends."""

    def __init__(self, session: aiohttp.ClientSession, server: FakeVBotServer):
        self.session = session
        self.server = server

    async def get(
        self, endpoint: str, *, token: str | None = None, timeout: float = 10, **params: Any
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"Authorization": f"Bearer {token or self.server.token}"}
        async with self.session.get(
            self.server.base_url + API + endpoint,
            params={k: str(v) for k, v in params.items()},
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            body = await response.read()
            return response.status, dict(response.headers), orjson.loads(body) if body else None

    async def data(self, endpoint: str, **params: Any) -> Any:
        status, _, envelope = await self.get(endpoint, **params)
        assert (status, envelope["status"], envelope["error"]) == (200, 1, 0), envelope
        return envelope["data"]

    async def all_pages(self, size: int = 37, **params: Any) -> list[Record]:
        records: list[Record] = []
        page = self.server.first_page
        while True:
            batch = await self.data("getAll", page=page, size=size, **params)
            records += batch
            if len(batch) < size:
                return records
            page += 1


@contextlib.asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[tuple[FakeVBotServer, Raw]]:
    """A fake server made with ``options``, and plain HTTP to it."""
    async with FakeVBotServer(**options) as server, aiohttp.ClientSession() as session:
        yield server, Raw(session, server)


@pytest.fixture
async def fake() -> AsyncIterator[FakeVBotServer]:
    """A fake server with 300 generated records."""
    async with FakeVBotServer(count=300) as server:
        yield server


@pytest.fixture
async def raw(fake: FakeVBotServer) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession() as session:
        yield Raw(session, fake)


def ids(records: list[Record]) -> list[str]:
    return [r["trans_id"] for r in records]


# -- the data ----------------------------------------------------------------------------------


def test_same_seed_same_data() -> None:
    """Records depend on the seed and their index only, not on how many are generated."""
    assert generate_records(50, seed=7) == generate_records(50, seed=7)
    assert generate_records(50, seed=7) != generate_records(50, seed=8)
    assert generate_records(10, seed=7) == generate_records(60, seed=7)[:10]


def test_outcomes_look_real() -> None:
    """Dispositions come in a realistic mix, each with matching SIP codes, times and charges."""
    records = generate_records(5000, seed=3)
    shares = Counter(r["disposition"] for r in records)
    assert 0.55 < shares["ANSWERED"] / 5000 < 0.70
    assert 0.15 < shares["NO ANSWER"] / 5000 < 0.25
    assert 0.07 < shares["BUSY"] / 5000 < 0.15
    assert 0.04 < shares["FAILED"] / 5000 < 0.10
    sip = {"ANSWERED": {"200"}, "NO ANSWER": {"480", "487"}, "BUSY": {"486", "600"}}
    for record in records:
        assert record["sip_code"] in sip.get(record["disposition"], {"404", "484", "500", "503"})
        assert record["end_call_at"] == record["create_at"] + record["duration"]
        if record["disposition"] == "ANSWERED":
            assert record["create_at"] < record["answer_at"] < record["end_call_at"]
            assert record["billsec"] > 0
            assert record["postage"] > 0
            assert record["is_record"]
            assert record["postage"] == -(-record["billsec"] // 6) * 88.0
        else:
            assert record["answer_at"] is None
            assert record["billsec"] == 0
            assert record["postage"] == record["service_charge"] == 0.0
            assert record["call_collected_data"] == []
            assert record["input_log"] == ""
    answered = [r for r in records if r["disposition"] == "ANSWERED"]
    assert sum(bool(r["call_collected_data"]) for r in answered) > 0.8 * len(answered)
    assert len({r["phone"] for r in records}) > 4990
    assert all(r["phone"].startswith("0") and len(r["phone"]) == 10 for r in records)


def test_conversation_follows_the_record() -> None:
    """The conversation asks the collected fields and replies with the input log."""
    answered, missed = (
        next(r for r in generate_records(50) if (r["disposition"] == "ANSWERED") is want)
        for want in (True, False)
    )
    turns = orjson.loads(make_conversation(answered))
    replies = [t["text"] for t in turns if t["speaker"] == "customer"]
    assert replies == answered["input_log"].split(" | ")[: len(answered["call_collected_data"])]
    assert turns[0] == {"speaker": "bot", "text": answered["voice_text"]}
    assert make_conversation(missed) == "[]"


def test_millisecond_times() -> None:
    """With time_unit="ms" every time is in milliseconds, still in creation order."""
    records = generate_records(20, time_unit="ms")
    assert all(r["create_at"] >= 10**11 for r in records)
    assert [r["create_at"] for r in records] == sorted(r["create_at"] for r in records)


async def test_records_survive_the_client(fake: FakeVBotServer, raw: Raw) -> None:
    """Every generated record parses as a CallRecord and round-trips to the same JSON."""
    async with VBotClient(fake.token, base_url=fake.base_url, retry=NO_WAIT) as client:
        records = [r.to_dict() async for r in client.iter_calls(page_size=100)]
    assert records == [exported(r) for r in fake.records]


# -- filters and paging ------------------------------------------------------------------------

SERVED = generate_records(300)
MIDDLE = sorted(r["create_at"] for r in SERVED)[150]

FILTERS: list[tuple[dict[str, Any], Callable[[Record], bool]]] = [
    ({"campaign_code": "CMP_KHAOSAT_CSKH"}, lambda r: r["campaign_code"] == "CMP_KHAOSAT_CSKH"),
    ({"bot_id": "BOT_NHACNO"}, lambda r: r["bot_id"] == "BOT_NHACNO"),
    (
        {"template_script_code": "TPL_XACNHAN_03"},
        lambda r: r["template_script_code"] == "TPL_XACNHAN_03",
    ),
    ({"disposition": "noanswer"}, lambda r: r["disposition"] == "noanswer"),
    ({"status": 3}, lambda r: r["status"] == 3),
    ({"member": "Trần Thu Hà"}, lambda r: r["member"]["name"] == "Trần Thu Hà"),
    ({"member": "VB0001-NV02"}, lambda r: r["member"]["vbot_id"] == "VB0001-NV02"),
    ({"hotline": "HL_HCM_01"}, lambda r: r["hotline"]["code"] == "HL_HCM_01"),
    ({"hotline": "02363009999"}, lambda r: r["hotline"]["phone_number"] == "02363009999"),
    ({"key": "098"}, lambda r: any("098" in r[f] for f in ("phone", "name", "customer_uid"))),
    ({"key": "nguyễn"}, lambda r: "Nguyễn" in r["name"]),
    ({"key": "KH1"}, lambda r: "KH1" in r["customer_uid"]),
    ({"input_log_search": "THỨ SÁU"}, lambda r: "thứ sáu" in r["input_log"]),
    ({"start_date": MIDDLE}, lambda r: r["create_at"] >= MIDDLE),
    ({"end_date": MIDDLE}, lambda r: r["create_at"] <= MIDDLE),
    ({"start_date": MIDDLE, "end_date": MIDDLE}, lambda r: r["create_at"] == MIDDLE),
    (
        {"end_date": MIDDLE, "disposition": "answer", "hotline": "HL_HN_01"},
        lambda r: (
            r["create_at"] <= MIDDLE
            and r["disposition"] == "answer"
            and r["hotline"]["code"] == "HL_HN_01"
        ),
    ),
    ({"campaign_code": "", "vbot_id": "VB9", "project_code": "P", "other": "x"}, lambda r: True),
]


@pytest.mark.parametrize(
    ("params", "wanted"), FILTERS, ids=[",".join(map(str, p)) for p, _ in FILTERS]
)
async def test_filters(
    fake: FakeVBotServer, raw: Raw, params: dict[str, Any], wanted: Callable[[Record], bool]
) -> None:
    """countAll and getAll select the same records, as the module docstring documents."""
    expected = [r for r in fake.records if wanted(r)]
    assert 0 < len(expected) <= 300
    assert await raw.data("countAll", **params) == len(expected)
    assert ids(await raw.all_pages(**params)) == ids(expected)


def test_dates_are_inclusive_on_both_ends() -> None:
    """A record created exactly at start_date or end_date is included."""
    assert sum(r["create_at"] == MIDDLE for r in SERVED) == 1


async def test_served_newest_first(fake: FakeVBotServer, raw: Raw) -> None:
    """Records come in create_at descending order, the whole history across pages."""
    served = await raw.all_pages(size=64)
    assert len(served) == 300
    assert [r["create_at"] for r in served] == sorted(
        (r["create_at"] for r in SERVED), reverse=True
    )


@pytest.mark.parametrize("first_page", [0, 1])
async def test_pages_count_from_first_page(first_page: int) -> None:
    """Page first_page holds the newest records; the pages tile the data; past the end is []."""
    async with serving(count=25, first_page=first_page) as (server, raw):
        pages = [await raw.data("getAll", page=first_page + n, size=10) for n in range(4)]
        status, _, below = await raw.get("getAll", page=first_page - 1, size=10)
    assert [len(p) for p in pages] == [10, 10, 5, 0]
    assert ids([r for p in pages for r in p]) == ids(server.records)
    assert (status, below["status"], below["error"]) == (200, 0, 400)


@pytest.mark.parametrize(
    "params",
    [
        {"size": 10},
        {"page": 1},
        {"page": "x", "size": 10},
        {"page": 1, "size": 0},
        {"page": 1, "size": 1001},
        {"page": 1, "size": 10, "start_date": "hôm qua"},
        {"page": 1, "size": 10, "status": "1.5"},
    ],
    ids=["no-page", "no-size", "bad-page", "size-0", "size-over-max", "bad-date", "bad-status"],
)
async def test_bad_requests_are_failure_envelopes(raw: Raw, params: dict[str, Any]) -> None:
    """Malformed paging or criteria are answered HTTP 200 with a failure envelope, error 400."""
    status, _, envelope = await raw.get("getAll", **params)
    assert (status, envelope["status"], envelope["error"], envelope["data"]) == (200, 0, 400, None)
    assert envelope["message"]


async def test_bearer_token_is_checked(raw: Raw) -> None:
    """A wrong token is HTTP 401 with a failure envelope."""
    status, _, envelope = await raw.get("countAll", token="wrong")
    assert (status, envelope["status"], envelope["error"]) == (401, 0, 401)


async def test_unknown_endpoint(raw: Raw) -> None:
    """An unknown endpoint is HTTP 404 with a failure envelope."""
    status, _, envelope = await raw.get("getEverything")
    assert (status, envelope["status"]) == (404, 0)


async def test_conversation(fake: FakeVBotServer, raw: Raw) -> None:
    """getBotConversation answers the record's conversation as a string, or error 404."""
    record = fake.records[5]
    assert await raw.data("getBotConversation", trans_id=record["trans_id"]) == (
        make_conversation(record)
    )
    _, _, missing = await raw.get("getBotConversation", trans_id="NOPE")
    _, _, absent = await raw.get("getBotConversation")
    assert (missing["status"], missing["error"]) == (0, 404)
    assert (absent["status"], absent["error"]) == (0, 400)


async def test_given_records_are_served_in_order() -> None:
    """Records given to the server are served newest first, whatever order they came in."""
    given = generate_records(30, seed=4)
    random.Random(1).shuffle(given)
    async with serving(records=given) as (server, raw):
        assert ids(server.records) == ids(sorted(given, key=lambda r: -r["create_at"]))
        record = server.records[3]
        assert await raw.data("getBotConversation", trans_id=record["trans_id"])
        assert await raw.data("countAll", key=record["phone"]) >= 1


async def serve_a_history(count: int) -> tuple[list[Any], int]:
    """Count, page deep, filter by date and find a conversation; return answers and peak memory."""
    tracemalloc.start()
    try:
        async with serving(count=count) as (_, raw):
            newest = await raw.data("getAll", page=1, size=1)
            answers = [
                await raw.data("countAll"),
                (await raw.data("getAll", page=count // 100, size=100))[-1]["trans_id"],
                newest[0]["trans_id"],
                await raw.data("countAll", start_date=newest[0]["create_at"] - 7 * 86400),
                await raw.data("getBotConversation", trans_id=f"TX0-{count // 2:08d}"),
            ]
        return answers, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_a_million_records_cost_no_memory() -> None:
    """A million generated records are served in the memory a thousand take."""
    _, small = await serve_a_history(1000)
    answers, large = await serve_a_history(1_000_000)
    count, oldest, newest, week, conversation = answers
    assert (count, oldest, newest) == (1_000_000, "TX0-00000000", "TX0-00999999")
    assert week == 7 * 86400 // 37 + 1
    assert conversation.startswith("[")
    assert large < small + 1024 * 1024


# -- calls written while a client pages -------------------------------------------------------


async def test_added_records_take_their_place(fake: FakeVBotServer, raw: Raw) -> None:
    """A call written later is served at its place in the order, filtered like the others."""
    base = fake.records
    late = dict(generate_records(1, seed=99, id_prefix="NEW")[0])
    late["create_at"] = base[10]["create_at"] - 1
    late["campaign_code"] = base[10]["campaign_code"]
    fake.add_records([late])
    assert ids(await raw.all_pages()) == [*ids(base[:11]), "NEW99-00000000", *ids(base[11:])]
    same = [r for r in base if r["campaign_code"] == late["campaign_code"]]
    served = ids(await raw.all_pages(size=5, campaign_code=late["campaign_code"]))
    assert served == ids(sorted([*same, late], key=lambda r: -r["create_at"]))
    assert await raw.data("getBotConversation", trans_id="NEW99-00000000")


async def test_arrivals_are_late_calls_and_reproducible() -> None:
    """arrive() writes calls with past creation times, the same for the same seed."""
    async with FakeVBotServer(count=100, seed=5) as one, FakeVBotServer(count=100, seed=5) as two:
        oldest, newest = one.records[-1]["create_at"], one.records[0]["create_at"]
        first = one.arrive(4)
        assert first == two.arrive(4)
        assert [r["trans_id"] for r in first] == [f"LATE5-0000000{i}" for i in range(4)]
        assert all(oldest <= r["create_at"] <= newest for r in first)
        assert len(one.records) == 104
        assert one.arrive(1)[0]["trans_id"] == "LATE5-00000004"


async def test_insert_after_a_request(fake: FakeVBotServer, raw: Raw) -> None:
    """insert_after writes the calls when the n-th getAll arrives, before it is read."""
    newer = dict(generate_records(1, id_prefix="NEW")[0], create_at=2_000_000_000)
    fake.insert_after(2, [newer])
    first = await raw.data("getAll", page=1, size=5)
    second = await raw.data("getAll", page=1, size=5)
    assert first[0]["trans_id"] != "NEW0-00000000"
    assert second[0]["trans_id"] == "NEW0-00000000"


async def test_remove_records(fake: FakeVBotServer, raw: Raw) -> None:
    """Removed records are no longer counted, paged or found."""
    gone = fake.records[7]["trans_id"]
    busy = sum(r["disposition"] == "busy" for r in fake.records)  # BUSY in the seed's shape
    assert fake.remove_records(lambda r: r["disposition"] == "BUSY" or r["trans_id"] == gone) == (
        busy + 1
    )
    assert await raw.data("countAll") == 300 - busy - 1
    assert gone not in ids(await raw.all_pages())
    _, _, missing = await raw.get("getBotConversation", trans_id=gone)
    assert missing["error"] == 404


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "envelope", "retry_after"),
    [
        (Fault(status=503), 503, (0, 503), None),
        (Fault(status=429, retry_after="3"), 429, (0, 429), "3"),
        (Fault(envelope_error=1001, message="Sai mã dự án"), 200, (0, 1001), None),
        (Fault(status=200, body=b'{"status": 1}'), 200, (1, None), None),
        (Fault(delay=0.01), 200, (1, 0), None),
    ],
    ids=["5xx", "429", "envelope", "body", "delay"],
)
async def test_answer_faults(
    fake: FakeVBotServer,
    raw: Raw,
    fault: Fault,
    status: int,
    envelope: tuple[int, int | None],
    retry_after: str | None,
) -> None:
    """An injected fault replaces the status, the envelope or the body, once."""
    fake.inject(fault, endpoint="countAll")
    got_status, headers, body = await raw.get("countAll")
    assert (got_status, (body["status"], body.get("error"))) == (status, envelope)
    assert headers.get("Retry-After") == retry_after
    assert await raw.data("countAll") == 300
    assert [r.fault for r in fake.requests] == [fault.kind, None]


async def test_truncated_body(fake: FakeVBotServer, raw: Raw) -> None:
    """A truncated body promises more than it sends, then the connection closes."""
    fake.inject(Fault(truncate=True))
    with pytest.raises(aiohttp.ClientPayloadError):
        await raw.get("getAll", page=1, size=50)


async def test_connection_reset(fake: FakeVBotServer, raw: Raw) -> None:
    """A disconnect closes the connection without an answer (aiohttp retries a GET once)."""
    fake.inject(Fault(disconnect=True), Fault(disconnect=True), endpoint="countAll")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await raw.get("countAll")
    assert fake.faults_served() == {"disconnect": 2}


@pytest.mark.parametrize("fault", [Fault(hang=True), Fault(truncate=True, hang=True)])
async def test_hanging_requests_end_with_the_server(fault: Fault) -> None:
    """A request that never gets (all of) its answer holds its slot until the server stops."""
    async with serving(count=50) as (server, raw):
        server.inject(fault)
        request = asyncio.create_task(raw.get("getAll", page=1, size=50))
        await server.wait_for_requests(1)
        assert server.in_flight == 1
        await server.stop()
        with pytest.raises((aiohttp.ClientError, ValueError)):
            await request
    assert server.in_flight == 0


async def test_page_faults_come_first(fake: FakeVBotServer, raw: Raw) -> None:
    """A fault queued for a page is served before the faults queued for the endpoint."""
    fake.inject(Fault(status=500))
    fake.inject(Fault(status=502), page=2)
    assert (await raw.get("getAll", page=2, size=5))[0] == 502
    assert (await raw.get("getAll", page=2, size=5))[0] == 500
    assert (await raw.get("getAll", page=2, size=5))[0] == 200
    assert fake.faults_served() == {"500": 1, "502": 1}


def test_fault_mix_draws_at_its_rates() -> None:
    """A mix draws each fault at about its rate, and the same seed draws the same faults."""
    mix = FaultMix(seed=1, server_error=0.1, rate_limit=0.05, truncate=0.05, disconnect=0.05)

    def kinds(seed: int) -> list[str | None]:
        rng = random.Random(seed)
        return [getattr(mix.draw(rng), "kind", None) for _ in range(20_000)]

    assert kinds(1) == kinds(1) != kinds(2)
    drawn = Counter(kinds(1))
    assert 0.08 < sum(drawn[s] for s in ("500", "502", "503", "504")) / 20_000 < 0.12
    for kind in ("429", "truncate", "disconnect"):
        assert 0.04 < drawn[kind] / 20_000 < 0.06
    assert 0.72 < drawn[None] / 20_000 < 0.78


@pytest.mark.parametrize(
    "options",
    [
        {"server_error": 1.5},
        {"server_error": 0.6, "rate_limit": 0.6},
        {"min_delay": 0.2, "max_delay": 0.1},
        {"arrival_size": 0},
        {"endpoints": ["getAll", "nope"]},
    ],
)
def test_fault_mix_rejects_nonsense(options: dict[str, Any]) -> None:
    """Rates outside [0, 1] or summing past 1, bad delays and unknown endpoints are refused."""
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        FaultMix(**options)


async def test_fault_mix_is_reproducible() -> None:
    """The same mix and the same sequence of requests get the same faults."""
    served = []
    for _ in range(2):
        mix = FaultMix(seed=9, server_error=0.3, rate_limit=0.2, retry_after=None)
        async with serving(count=20, fault_mix=mix) as (server, raw):
            for _ in range(30):
                await raw.get("getAll", page=1, size=5)
        served.append([r.fault for r in server.requests])
    assert served[0] == served[1]
    assert {"429", None} <= set(served[0])


@pytest.mark.parametrize("seed", range(6))
async def test_clients_survive_a_fault_mix(seed: int) -> None:
    """Under transient faults and new calls, a sequential client still reads every record once.

    (With concurrency, a call written between two pages answered in reverse order can hide
    one record at their boundary: the README's paging guarantees say so.)
    """
    mix = FaultMix(
        seed=seed,
        server_error=0.1,
        rate_limit=0.05,
        truncate=0.05,
        disconnect=0.05,
        max_delay=0.002,
        arrivals=0.3,
        arrival_size=2,
    )
    async with FakeVBotServer(count=400, seed=seed) as server:
        before = set(ids(server.records))
        server.fault_mix = mix
        async with VBotClient(
            server.token, base_url=server.base_url, retry=NO_WAIT, page_size=25, concurrency=1
        ) as client:
            got = [r.trans_id async for r in client.iter_calls()]
        after = set(ids(server.records))
    assert len(got) == len(set(got))
    assert before <= set(got) <= after
    assert len(after) > len(before)
    assert server.faults_served()


# -- counters ----------------------------------------------------------------------------------


async def test_counts_and_peak_in_flight() -> None:
    """The server counts requests per endpoint and the most it answered at once."""
    async with serving(count=50) as (server, raw):
        server.inject(*[Fault(hang=True)] * 3)
        held = [asyncio.create_task(raw.get("getAll", page=1, size=5)) for _ in range(3)]
        await server.wait_for_requests(3, endpoint="getAll")
        assert (server.in_flight, server.peak_in_flight) == (3, 3)
        await raw.data("countAll")
        assert server.peak_in_flight == 4
        assert server.counts() == {"getAll": 3, "countAll": 1}
        assert server.count("getAll") == 3
        server.reset_counters()
        assert (server.counts(), server.requests, server.peak_in_flight) == (Counter(), [], 3)
        await server.stop()
        await asyncio.gather(*held, return_exceptions=True)


async def test_max_in_flight_answers_429() -> None:
    """Past max_in_flight concurrent requests, the server answers 429."""
    async with serving(count=50, max_in_flight=1) as (server, raw):
        server.inject(Fault(hang=True))
        held = asyncio.create_task(raw.get("getAll", page=1, size=5))
        await server.wait_for_requests(1)
        status, headers, _ = await raw.get("countAll")
        await server.stop()
        await asyncio.gather(held, return_exceptions=True)
    assert status == 429
    assert "Retry-After" not in headers


async def test_wait_for_requests_returns_at_once_when_reached(
    fake: FakeVBotServer, raw: Raw
) -> None:
    """Waiting for requests already seen returns at once."""
    await raw.data("countAll")
    await asyncio.wait_for(fake.wait_for_requests(1, endpoint="countAll"), 5)
    await asyncio.wait_for(fake.wait_for_requests(0, endpoint="getAll"), 5)


# -- the pytest plugin -------------------------------------------------------------------------


def test_pytest_plugin(pytester: pytest.Pytester) -> None:
    """The plugin's vbot_server fixture runs a server configured by markers and options."""
    pytester.makeconftest('pytest_plugins = ["vbot_cdr.testing.pytest_plugin"]')
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        import pytest
        from vbot_cdr import VBotClient

        @pytest.fixture
        def vbot_server_options():
            return {"count": 12, "token": "secret"}

        @pytest.mark.asyncio
        async def test_defaults(vbot_server):
            assert vbot_server.token == "secret"
            async with VBotClient("secret", base_url=vbot_server.base_url) as client:
                assert await client.count_calls() == 12

        @pytest.mark.asyncio
        @pytest.mark.vbot_server(count=3, first_page=0)
        async def test_marker(vbot_server):
            assert (len(vbot_server.records), vbot_server.first_page) == (3, 0)
            assert vbot_server.token == "secret"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error", "--strict-markers")
    result.assert_outcomes(passed=2)
