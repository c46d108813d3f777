"""client.sync: new calls exactly once across runs, at least once across crashes, safe state."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests import _sync_worker as worker
from vbot_cdr import (
    CallFilter,
    CallSync,
    DocumentStateStore,
    StateError,
    StateStore,
    VBotClient,
)
from vbot_cdr.testing import FakeVBotServer
from vbot_cdr.testing._data import RecordGenerator

START = worker.START
SPACING = 37  # seconds between generated records
LOOKBACK = 600  # seconds: the worker's settings, as ints
SETTLE = 120
WINDOW = 3600
UTC = dt.timezone.utc


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, seconds: int):
        self.seconds = seconds

    def __call__(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.seconds, UTC)


def open_sync(client: VBotClient, state: Path | StateStore, **options: Any) -> CallSync:
    options.setdefault("lookback", worker.LOOKBACK)
    options.setdefault("settle", worker.SETTLE)
    options.setdefault("window", worker.WINDOW)
    return client.sync(state, options.pop("filter", CallFilter(start_date=START)), **options)


async def load(
    sync: CallSync,
    sink: list[tuple[str, int]],
    *,
    stop_after: int | None = None,
    stop: Callable[[], Any] | None = None,
) -> None:
    """Consume ``sync`` as a loader should: commit after each whole window.

    After ``stop_after`` calls, ``await stop()`` (which raises, or blocks to be cancelled).
    """
    async with sync:
        async for record in sync:
            if sync.committable:
                await sync.commit()  # ``sink`` holds the whole window: it is "durable"
            assert record.trans_id is not None
            assert record.create_at is not None
            sink.append((record.trans_id, record.create_at))
            if stop is not None and len(sink) == stop_after:
                await stop()


def served(server: FakeVBotServer, upper: int) -> set[str]:
    """The trans_ids the server holds, created at or before ``upper``."""
    return {r["trans_id"] for r in server.records if r["create_at"] <= upper}


def late_calls(prefix: str, created: list[int]) -> list[dict[str, Any]]:
    """Calls written now that were created at ``created`` (CDRs are written when calls end)."""
    generator = RecordGenerator(seed=7, id_prefix=prefix)
    return [generator.record(i, created=at) for i, at in enumerate(created)]


class Boom(Exception):
    """The consumer's own failure."""


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def read_state(path: Path) -> dict[str, Any]:
    state: dict[str, Any] = orjson.loads(path.read_bytes())
    return state


# -- exactly once across clean runs ------------------------------------------------------------


async def test_two_syncs_with_new_and_late_calls_between_yield_each_call_once(
    tmp_path: Path, make_client: Callable[..., VBotClient], dialect: dict[str, Any]
) -> None:
    """Run, write new and late calls, run again: the union is the server's set, none twice
    (in every dialect; times in seconds, the unit this test's clock counts in)."""
    state = tmp_path / "state.json"
    async with FakeVBotServer(count=600, time_unit="s", **dialect) as server:
        clock = Clock(START + 600 * SPACING)
        client = make_client(server, clock=clock, time_unit="s")
        first: list[tuple[str, int]] = []
        await load(open_sync(client, state), first)
        watermark = clock.seconds - SETTLE
        assert read_state(state)["watermark"] == watermark
        assert {key for key, _ in first} == served(server, watermark)

        # Late calls inside the lookback (one exactly at the watermark, one at its far edge),
        # and new calls after the first run's upper bound, some of them late too.
        clock.seconds += 2 * WINDOW + 123
        server.add_records(
            late_calls(
                "LATE",
                [watermark, watermark - 1, watermark - 300, watermark - LOOKBACK, watermark + 5],
            )
        )
        server.add_records(
            late_calls("NEW", list(range(watermark + 60, clock.seconds - SETTLE, 97)))
        )
        second: list[tuple[str, int]] = []
        sync = open_sync(client, state)
        await load(sync, second)
        ids = [key for key, _ in first + second]
        assert len(ids) == len(set(ids))
        assert set(ids) == served(server, clock.seconds - SETTLE)
        assert sync.stats.duplicates > 0  # the lookback did re-read calls, and dropped them

        # Nothing new: a third run yields nothing, and re-reads the overlap only.
        clock.seconds += 60
        third: list[tuple[str, int]] = []
        await load(open_sync(client, state), third)
        assert third == []


async def test_many_runs_with_calls_written_up_to_lookback_plus_settle_late(
    tmp_path: Path, make_client: Callable[..., VBotClient]
) -> None:
    """Over clean runs, each call written within lookback + settle of its time comes once."""
    rng = random.Random(3)
    state = tmp_path / "state.json"
    async with FakeVBotServer(records=[]) as server:
        clock = Clock(START + 1000)
        client = make_client(server, clock=clock)
        yielded: list[str] = []
        written = 0
        for _ in range(12):
            # Between runs, calls are written with create_at up to lookback + settle ago.
            for _batch in range(rng.randint(0, 3)):
                step = rng.randint(1, 900)
                for at in sorted(rng.randint(-LOOKBACK - SETTLE, 0) for _ in range(4)):
                    server.add_records(late_calls(f"R{written}-", [clock.seconds + at]))
                    written += 1
                clock.seconds += step
            clock.seconds += rng.randint(1, 2 * WINDOW)
            sink: list[tuple[str, int]] = []
            await load(open_sync(client, state), sink)
            yielded += [key for key, _ in sink]
        clock.seconds += LOOKBACK + SETTLE  # a last run after everything has settled
        sink = []
        await load(open_sync(client, state), sink)
        yielded += [key for key, _ in sink]
        assert written > 40
        assert len(yielded) == len(set(yielded))
        assert set(yielded) == {r["trans_id"] for r in server.records}


async def test_a_call_later_than_the_lookback_is_not_guaranteed(
    tmp_path: Path, make_client: Callable[..., VBotClient]
) -> None:
    """The documented limit: a call written after the lookback has passed it is not read."""
    state = tmp_path / "state.json"
    async with FakeVBotServer(count=100) as server:
        clock = Clock(START + 100 * SPACING + LOOKBACK + SETTLE)
        client = make_client(server, clock=clock)
        await load(open_sync(client, state), [])
        watermark = clock.seconds - SETTLE
        server.add_records(late_calls("TOOLATE", [watermark - LOOKBACK - 1]))
        clock.seconds += 60
        sink: list[tuple[str, int]] = []
        await load(open_sync(client, state), sink)
        assert sink == []


# -- the state file ----------------------------------------------------------------------------


async def test_state_file_holds_watermark_purpose_and_boundary(
    tmp_path: Path, make_client: Callable[..., VBotClient]
) -> None:
    """The state names what it was made for, the watermark, and the ids of the lookback span."""
    state = tmp_path / "state.json"
    async with FakeVBotServer(count=300) as server:
        clock = Clock(START + 300 * SPACING)
        client = make_client(server, clock=clock, vbot_id="VB0001")
        sink: list[tuple[str, int]] = []
        await load(open_sync(client, state, filter=CallFilter(start_date=START, status=1)), sink)
        saved = read_state(state)
        watermark = clock.seconds - SETTLE
        assert saved["version"] == 1
        assert saved["made_for"] == {"status": "1", "time_unit": "s", "vbot_id": "VB0001"}
        assert saved["fingerprint"].startswith("sha256:")
        assert saved["watermark"] == watermark
        assert saved["boundary"] == {
            key: at for key, at in sink if watermark - LOOKBACK <= at <= watermark
        }
        assert saved["boundary"]  # some calls fall in the last ten minutes
        assert files_in(tmp_path) == ["state.json"]  # no temporary file left


async def test_commits_on_clean_exit_only(
    tmp_path: Path, make_client: Callable[..., VBotClient]
) -> None:
    """async with commits when the block ends cleanly (even after break), not when it raises."""
    state = tmp_path / "state.json"
    async with FakeVBotServer(count=400) as server:
        client = make_client(server, clock=Clock(START + 400 * SPACING))

        async def fail_in_window_three() -> None:
            async with open_sync(client, state) as sync:
                async for _ in sync:
                    if sync.stats.windows_done == 2:
                        raise Boom

        with pytest.raises(Boom):
            await fail_in_window_three()
        assert not state.exists()
        async with open_sync(client, state) as sync:
            async for _ in sync:
                if sync.stats.windows_done == 2:
                    break
        assert read_state(state)["watermark"] == sync.windows[1][1] == START + 2 * WINDOW


async def test_a_failed_write_leaves_the_old_state(
    tmp_path: Path, make_client: Callable[..., VBotClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the rename fails, commit raises StateError; the old file is intact, no temp is left."""
    state = tmp_path / "state.json"
    async with FakeVBotServer(count=400) as server:
        clock = Clock(START + 200 * SPACING)
        client = make_client(server, clock=clock)
        await load(open_sync(client, state), [])
        before = state.read_bytes()
        clock.seconds += 2 * WINDOW

        def refuse(*_: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", refuse)
        with pytest.raises(StateError, match="No space left"):
            await load(open_sync(client, state), [])
        monkeypatch.undo()
        assert state.read_bytes() == before
        assert files_in(tmp_path) == ["state.json"]


async def test_start_date_and_end_date_are_not_part_of_the_purpose(
    tmp_path: Path, make_client: Callable[..., VBotClient]
) -> None:
    """The same nightly command with another start_date resumes the state; end_date caps it."""
    state = tmp_path / "state.json"
    async with FakeVBotServer(count=400) as server:
        clock = Clock(START + 400 * SPACING)
        client = make_client(server, clock=clock)
        cap = START + 100 * SPACING
        sink: list[tuple[str, int]] = []
        await load(
            open_sync(client, state, filter=CallFilter(start_date=START, end_date=cap)), sink
        )
        assert read_state(state)["watermark"] == cap
        assert len(sink) == 101
        # A later start_date is ignored once there is a state: the read resumes at the watermark.
        await load(open_sync(client, state, filter=CallFilter(start_date=START + 10**6)), sink)
        ids = [key for key, _ in sink]
        assert len(ids) == len(set(ids)) == len(served(server, clock.seconds - SETTLE))
        # An end_date before the watermark reads nothing and moves nothing back.
        before = state.read_bytes()
        again = open_sync(client, state, filter=CallFilter(start_date=START, end_date=cap))
        assert again.windows == ()
        await load(again, [])
        assert state.read_bytes() == before


#: A time when all of 50 generated calls have settled.
SETTLED_50 = START + 50 * SPACING + SETTLE


def write_json(path: Path, data: object) -> None:
    path.write_bytes(orjson.dumps(data))


async def saved_state(tmp_path: Path, make_client: Callable[..., VBotClient]) -> dict[str, Any]:
    """A good state file's content, made by a real sync."""
    path = tmp_path / "good.json"
    async with FakeVBotServer(count=50) as server:
        client = make_client(server, clock=Clock(SETTLED_50))
        await load(open_sync(client, path), [])
    return read_state(path)


def _set(key: str, value: object) -> Callable[[dict[str, Any]], object]:
    def change(state: dict[str, Any]) -> object:
        return state | {key: value}

    return change


BAD_STATES: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("garbage", lambda _: None, "not JSON"),
    ("list", lambda _: [1, 2], "not a version-1"),
    ("version", _set("version", 2), "not a version-1"),
    ("other-filter", _set("fingerprint", "sha256:0"), "was made for"),
    ("future", _set("watermark", START + 10**7), "later than now"),
    ("watermark-type", _set("watermark", "yesterday"), "not an integer"),
    ("boundary-type", _set("boundary", {"TX": "x"}), "boundary"),
]


@pytest.mark.parametrize(
    ("change", "message"), [(c, m) for _, c, m in BAD_STATES], ids=[n for n, _, _ in BAD_STATES]
)
async def test_bad_state_fails_before_any_request_unless_reset(
    tmp_path: Path,
    make_client: Callable[..., VBotClient],
    change: Callable[[dict[str, Any]], object],
    message: str,
) -> None:
    """An unusable state file is a clear StateError before any request; reset=True overrides."""
    good = await saved_state(tmp_path, make_client)
    path = tmp_path / "state.json"
    bad = change(good)
    if bad is None:
        path.write_bytes(b'{"version": 1, "watermark": 17')  # torn, as no crash can leave it
    else:
        write_json(path, bad)
    async with FakeVBotServer(count=50) as server:
        client = make_client(server, clock=Clock(SETTLED_50))
        with pytest.raises(StateError, match=message) as caught:
            open_sync(client, path)
        assert str(path) in str(caught.value)
        assert server.requests == []
        sink: list[tuple[str, int]] = []
        await load(open_sync(client, path, reset=True), sink)
        assert len(sink) == 50
        assert read_state(path)["fingerprint"] == good["fingerprint"]


async def test_other_filters_are_named_in_the_error(
    tmp_path: Path, make_client: Callable[..., VBotClient]
) -> None:
    """A state made for other criteria, identity or time unit is refused, naming both."""
    path = tmp_path / "state.json"
    async with FakeVBotServer(count=50) as server:
        clock = Clock(START + 50 * SPACING)
        client = make_client(server, clock=clock)
        campaign = CallFilter(start_date=START, campaign_code="CMP_A")
        await load(open_sync(client, path, filter=campaign), [])
        other = CallFilter(start_date=START, campaign_code="CMP_B")
        with pytest.raises(StateError, match=r"'CMP_A'.*not for.*'CMP_B'"):
            open_sync(client, path, filter=other)
        with pytest.raises(StateError, match="was made for"):
            open_sync(make_client(server, clock=clock, vbot_id="VB9"), path, filter=campaign)
        in_ms = CallFilter(start_date=dt.datetime.fromtimestamp(START, UTC), campaign_code="CMP_A")
        with pytest.raises(StateError, match=r"'time_unit': 's'.*'time_unit': 'ms'"):
            open_sync(make_client(server, clock=clock, time_unit="ms"), path, filter=in_ms)
        assert server.count("countAll") == 1  # the first sync's single window only


async def test_first_sync_needs_a_start_date(
    tmp_path: Path, server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """Without a state file, the start is the filter's start_date, which is then required."""
    client = make_client(server, clock=Clock(START + 10**5))
    with pytest.raises(StateError, match="start_date"):
        client.sync(tmp_path / "state.json")
    with pytest.raises(StateError, match="not a directory"):
        client.sync(tmp_path / "missing" / "state.json", start_date=START)
    assert server.requests == []


# -- crashes -----------------------------------------------------------------------------------


def assert_recovered(
    server: FakeVBotServer,
    upper: int,
    before: list[tuple[str, int]],
    after: list[tuple[str, int]],
    watermark: int,
) -> None:
    """Nothing lost; the calls yielded twice are exactly those past the committed watermark."""
    assert {key for key, _ in before + after} == served(server, upper)
    again = {key for key, _ in before} & {key for key, _ in after}
    assert again == {key for key, at in before if at > watermark}
    assert len(again) <= WINDOW // SPACING + 1  # at most one window's calls
    assert len(after) == len({key for key, _ in after})


@pytest.mark.parametrize("stop_after", [1, 150, 250, 289])
async def test_exception_in_the_consumer_then_rerun_loses_nothing(
    tmp_path: Path, make_client: Callable[..., VBotClient], stop_after: int
) -> None:
    """A consumer that raises mid-window keeps the last per-window commit; a rerun completes."""
    state = tmp_path / "state.json"
    async with FakeVBotServer(count=400) as server:
        clock = Clock(START + 400 * SPACING)
        client = make_client(server, clock=clock)
        before: list[tuple[str, int]] = []

        async def fail() -> None:
            raise Boom

        with pytest.raises(Boom):
            await load(open_sync(client, state), before, stop_after=stop_after, stop=fail)
        watermark = read_state(state)["watermark"] if state.exists() else START - 1
        after: list[tuple[str, int]] = []
        await load(open_sync(client, state), after)
        assert_recovered(server, clock.seconds - SETTLE, before, after, watermark)


async def test_cancelled_task_then_rerun_loses_nothing(
    tmp_path: Path, make_client: Callable[..., VBotClient]
) -> None:
    """A loader task cancelled mid-window stops without committing; a rerun completes."""
    state = tmp_path / "state.json"
    async with FakeVBotServer(count=400) as server:
        clock = Clock(START + 400 * SPACING)
        client = make_client(server, clock=clock)
        before: list[tuple[str, int]] = []
        reached = asyncio.Event()

        async def hang() -> None:
            reached.set()
            await asyncio.Future()  # until cancelled

        task = asyncio.create_task(
            load(open_sync(client, state), before, stop_after=230, stop=hang)
        )
        await reached.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        watermark = read_state(state)["watermark"]
        assert watermark == START + 2 * WINDOW  # two whole windows were committed
        after: list[tuple[str, int]] = []
        await load(open_sync(client, state), after)
        assert_recovered(server, clock.seconds - SETTLE, before, after, watermark)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and signal.pause are POSIX")
async def test_killed_process_then_rerun_loses_nothing(tmp_path: Path) -> None:
    """A loader killed with SIGKILL mid-window leaves a state that parses; nothing is lost."""
    state, out = tmp_path / "state.json", tmp_path / "calls.txt"
    async with FakeVBotServer(count=400) as server:
        now = START + 400 * SPACING
        args = [sys.executable, worker.__file__, server.base_url, server.token, str(state)]
        child = await asyncio.create_subprocess_exec(
            *args, str(out), str(now), "--hang-after", "250", stdout=asyncio.subprocess.PIPE
        )
        assert child.stdout is not None
        assert await child.stdout.readline() == b"ready\n"
        child.send_signal(signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL
        watermark = read_state(state)["watermark"]
        assert watermark == START + 2 * WINDOW
        before = [
            (key, int(at)) for key, at in (line.split() for line in out.read_text().splitlines())
        ]
        assert len(before) == 250

        rerun = await asyncio.create_subprocess_exec(*args, str(out), str(now))
        assert await rerun.wait() == 0
        lines = [
            (key, int(at)) for key, at in (line.split() for line in out.read_text().splitlines())
        ]
        assert_recovered(server, now - SETTLE, before, lines[250:], watermark)
        assert read_state(state)["watermark"] == now - SETTLE


class MemoryStore(DocumentStateStore):
    """A `DocumentStateStore` in a dict, as a user would write one for their own storage."""

    def __init__(self) -> None:
        self.documents: dict[str, bytes | str] = {}

    def __str__(self) -> str:
        return "the memory store"

    def read_document(self, key: str) -> bytes | str | None:
        return self.documents.get(key)

    def write_document(self, key: str, document: bytes) -> None:
        self.documents[key] = document


async def test_a_document_store_keeps_each_state_under_its_fingerprint(
    make_client: Callable[..., VBotClient],
) -> None:
    """A custom store gets the state file's document, one per set of criteria; the next sync
    resumes from it; a document that is not a state is refused with the store's name."""
    store = MemoryStore()
    async with FakeVBotServer(count=400) as server:
        clock = Clock(START + 200 * SPACING)
        client = make_client(server, clock=clock)
        first: list[tuple[str, int]] = []
        await load(open_sync(client, store), first)
        other: list[tuple[str, int]] = []
        the_other = CallFilter(start_date=START, campaign_code="CMP_XACNHAN_DON")
        await load(open_sync(client, store, filter=the_other), other)
        assert len(store.documents) == 2
        assert all(key.startswith("sha256:") for key in store.documents)
        [key] = [k for k, doc in store.documents.items() if "CMP_XACNHAN_DON" not in str(doc)]
        watermark = orjson.loads(store.documents[key])["watermark"]
        assert watermark == open_sync(client, store).watermark
        clock.seconds += 100 * SPACING
        second: list[tuple[str, int]] = []
        await load(open_sync(client, store), second)
    ids = [trans_id for trans_id, _ in first + second]
    assert len(ids) == len(set(ids)) == len(served(server, clock.seconds - SETTLE))
    store.documents[key] = b"not json"
    with pytest.raises(StateError, match="the memory store is unusable"):
        open_sync(client, store)
