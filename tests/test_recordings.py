"""Recordings over loopback: one (`download_recording`) and in bulk (`download_recordings`),
streamed to disk atomically, with a manifest, resumable, bounded and typed on failure."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests import _recording_worker as worker
from tests._loopback import raw_server
from vbot_cdr import (
    AiohttpTransport,
    APIError,
    CallError,
    Recording,
    ResponseFormatError,
    RetryPolicy,
    VBotClient,
)
from vbot_cdr._recordings import _SYNC_EVERY
from vbot_cdr.testing import FakeVBotServer, Fault, FaultMix, RecordingHabits, generate_records

RECORD = "record"
#: Small recordings (100 bytes a second), so that the tests move little data.
SMALL = RecordingHabits(bytes_per_second=100)


def manifest(directory: Path) -> dict[str, dict[str, Any]]:
    """The manifest's entries by trans_id (the last line of each wins)."""
    entries = {}
    for line in (directory / "manifest.jsonl").read_bytes().splitlines():
        entry = orjson.loads(line)
        entries[entry["trans_id"]] = entry
    return entries


def assert_whole(fake: FakeVBotServer, directory: Path) -> None:
    """Every file under a final name is exactly the call's recording as the server has it."""
    for path in directory.iterdir():
        if path.name == "manifest.jsonl" or path.name.endswith(".partial"):
            continue
        served = fake.recording(path.stem)
        assert served is not None, path
        assert path.read_bytes() == served[1], path


def names(directory: Path, pattern: str = "*") -> list[str]:
    """The names of the files of ``directory`` that match ``pattern``, sorted."""
    return sorted(path.name for path in directory.glob(pattern))


def expected_reasons(fake: FakeVBotServer) -> dict[str, str | None]:
    """What the manifest should say of each call: no reason (a file) or why there is none."""
    reasons: dict[str, str | None] = {}
    for record in fake.records:
        if not record["is_record"]:
            reasons[record["trans_id"]] = "not recorded"
        elif fake.recording(record["trans_id"]) is None:
            reasons[record["trans_id"]] = "not found"
        else:
            reasons[record["trans_id"]] = None
    return reasons


@pytest.fixture
async def fake() -> Any:
    """A v2 fake with 120 calls and small recordings."""
    async with FakeVBotServer(count=120, recordings=SMALL) as server:
        yield server


async def test_one_recording_in_each_dialect(
    any_server: FakeVBotServer, make_client: Callable[..., VBotClient], tmp_path: Path
) -> None:
    """download_recording writes the call's recording whole, with its size, SHA-256 and type,
    sending the dialect's credential."""
    any_server.recordings = SMALL
    trans_id = next(
        r["trans_id"] for r in any_server.records if any_server.recording(r["trans_id"])
    )
    media_type, body = any_server.recording(trans_id) or ("", b"")
    client = make_client(any_server)
    target = tmp_path / "call.audio"
    recording = await client.download_recording(trans_id, target)
    assert target.read_bytes() == body
    assert recording == Recording(
        trans_id=trans_id,
        file=str(target),
        bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        content_type=media_type,
    )
    assert names(tmp_path) == ["call.audio"]
    assert any_server.requests[-1].authorized
    assert any_server.count(RECORD) == 1


async def test_one_recording_not_found(
    fake: FakeVBotServer, make_client: Callable[..., VBotClient], tmp_path: Path
) -> None:
    """A call without a recording is APIError 404, and no file (not even a partial) is left."""
    trans_id = next(r["trans_id"] for r in fake.records if not r["is_record"])
    with pytest.raises(APIError) as caught:
        await make_client(fake).download_recording(trans_id, tmp_path / "x.mp3")
    assert caught.value.http_status == 404
    assert names(tmp_path) == []
    assert fake.count(RECORD) == 1  # a 404 is an answer: not retried


async def test_every_call_once_with_a_manifest(
    any_server: FakeVBotServer, make_client: Callable[..., VBotClient], tmp_path: Path
) -> None:
    """Each call is in the manifest once: a whole file named by trans_id and Content-Type, or
    why there is none; calls not recorded are not asked about."""
    any_server.recordings = SMALL
    client = make_client(any_server, concurrency=5)
    async with client.download_recordings(tmp_path) as download:
        recordings = [r async for r in download]
    reasons = expected_reasons(any_server)
    assert sorted(r.trans_id or "" for r in recordings) == sorted(reasons)
    entries = manifest(tmp_path)
    assert len((tmp_path / "manifest.jsonl").read_bytes().splitlines()) == len(reasons)
    assert {k: e["reason"] for k, e in entries.items()} == reasons
    for trans_id, entry in entries.items():
        if entry["reason"] is None:
            media_type, body = any_server.recording(trans_id) or ("", b"")
            extension = ".mp3" if media_type == "audio/mpeg" else ".wav"
            assert entry["file"] == trans_id + extension
            assert entry["content_type"] == media_type
            assert entry["bytes"] == len(body)
            assert entry["sha256"] == hashlib.sha256(body).hexdigest()
    assert_whole(any_server, tmp_path)
    asked = sum(1 for reason in reasons.values() if reason != "not recorded")
    assert any_server.count(RECORD) == asked
    assert any_server.peak_in_flight <= 5 + 1
    assert not names(tmp_path, "*.partial")


async def test_transient_failures_are_retried(
    make_client: Callable[..., VBotClient], tmp_path: Path
) -> None:
    """Recordings failing transiently (503s, a body cut short) are fetched again, once more each."""
    habits = RecordingHabits(bytes_per_second=100, flaky=0.3, slow=0.2, slow_delay=0.05)
    async with FakeVBotServer(count=80, recordings=habits) as fake:
        fake.inject(Fault(truncate=True), endpoint=RECORD)
        recordings = [r async for r in make_client(fake).download_recordings(tmp_path)]
        fetched = [r for r in recordings if r.file is not None]
        assert len(fetched) == sum(1 for r in expected_reasons(fake).values() if r is None)
        flaky = sum(1 for r in fake.requests if r.endpoint == RECORD) - sum(
            1 for r in recordings if r.reason != "not recorded"
        )
        assert flaky >= 2  # at least the cut body and one 503
        assert_whole(fake, tmp_path)


async def test_rerun_fetches_only_what_is_missing_or_wrong(
    fake: FakeVBotServer, make_client: Callable[..., VBotClient], tmp_path: Path
) -> None:
    """After a crash (a leftover .partial, a truncated file, a file of the right size but the
    wrong bytes, a deleted file, a manifest line cut short), a re-run fetches exactly those
    and the 404s again, and reuses the rest."""
    client = make_client(fake)
    first = [r async for r in client.download_recordings(tmp_path)]
    files = sorted(r.file for r in first if r.file is not None)
    truncated, corrupted, deleted, unlisted = files[:4]
    data = (tmp_path / truncated).read_bytes()
    (tmp_path / truncated).write_bytes(data[: len(data) // 2])
    data = (tmp_path / corrupted).read_bytes()
    (tmp_path / corrupted).write_bytes(bytes(b ^ 0xFF for b in data))  # same size
    (tmp_path / deleted).unlink()
    (tmp_path / "leftover.mp3.partial").write_bytes(b"half a recording")
    lines = [
        line
        for line in (tmp_path / "manifest.jsonl").read_bytes().splitlines()
        if orjson.loads(line)["file"] != unlisted
    ]
    (tmp_path / "manifest.jsonl").write_bytes(b"\n".join(lines) + b'\n{"trans_id": "TX')
    fake.reset_counters()

    again = [r async for r in client.download_recordings(tmp_path)]
    refetched = sorted(r.file for r in again if r.file is not None and not r.reused)
    assert refetched == sorted([truncated, corrupted, deleted, unlisted])
    not_found = sum(1 for r in first if r.reason == "not found")
    assert fake.count(RECORD) == 4 + not_found
    assert_whole(fake, tmp_path)
    assert not names(tmp_path, "*.partial")
    assert manifest(tmp_path) == {r.trans_id: r.to_dict() for r in first}


async def test_killed_download_leaves_no_truncated_file(tmp_path: Path) -> None:
    """A downloader killed with SIGKILL mid-download leaves only whole files under final
    names; a re-run completes the directory, fetching only what is not there whole."""
    habits = RecordingHabits(bytes_per_second=2000)
    async with FakeVBotServer(count=200, latency=0.01, recordings=habits) as fake:
        fake.inject(Fault(truncate=True, hang=True), endpoint=RECORD)  # a download stalls
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            worker.__file__,
            fake.base_url,
            fake.token,
            str(tmp_path),
            "--ready-after",
            "10",
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        assert await child.stdout.readline() == b"ready\n"
        child.send_signal(signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL
        assert names(tmp_path, "*.partial")  # the kill came mid-download
        assert_whole(fake, tmp_path)
        survived = {
            k
            for k, e in manifest(tmp_path).items()
            if e["file"] and (tmp_path / e["file"]).exists()
        }
        assert survived  # whole files, listed, that the re-run must reuse
        fake.reset_counters()

        async with VBotClient(fake.token, base_url=fake.base_url) as client:
            again = [r async for r in client.download_recordings(tmp_path)]
        assert {r.trans_id for r in again if r.reused} == survived
        reasons = expected_reasons(fake)
        assert {k: e["reason"] for k, e in manifest(tmp_path).items()} == reasons
        asked = sum(1 for reason in reasons.values() if reason != "not recorded")
        assert fake.count(RECORD) == asked - len(survived)
        assert_whole(fake, tmp_path)
        assert not names(tmp_path, "*.partial")


@pytest.mark.parametrize(
    ("fault", "shown"),
    [
        (Fault(status=200, body=b'{"error": "no"}'), "application/json"),
        (Fault(status=200, body=b"<html>login</html>"), "application/json"),
    ],
    ids=["json-body", "html-body-typed-json"],
)
async def test_a_body_that_is_not_audio_is_an_error(
    fake: FakeVBotServer,
    make_client: Callable[..., VBotClient],
    tmp_path: Path,
    fault: Fault,
    shown: str,
) -> None:
    """A 200 whose body is not audio names its call in a CallError; no file is written."""
    fake.inject(fault, endpoint=RECORD)
    with pytest.raises(CallError) as caught:
        async for _ in make_client(fake).download_recordings(tmp_path):
            pass
    error = caught.value
    assert isinstance(error.error, ResponseFormatError)
    assert shown in str(error)
    assert error.trans_id in str(error)
    assert not names(tmp_path, f"{error.trans_id}*")
    assert fake.count(RECORD) >= 1


async def test_an_html_page_is_not_a_recording(
    make_client: Callable[..., VBotClient], tmp_path: Path
) -> None:
    """An HTML page served as text/html (a login page) is a ResponseFormatError, not a file."""
    async with FakeVBotServer(count=20, recordings=RecordingHabits(html=1.0)) as fake:
        trans_id = fake.records[0]["trans_id"]
        with pytest.raises(ResponseFormatError, match="text/html"):
            await make_client(fake).download_recording(trans_id, tmp_path / "x.mp3")
        assert fake.count(RECORD) == 1  # not retried: it will not turn into audio
    assert names(tmp_path) == []


async def test_a_failure_envelope_404_means_no_recording(
    fake: FakeVBotServer, make_client: Callable[..., VBotClient], tmp_path: Path
) -> None:
    """A failure envelope with code 404 (HTTP 200) is "not found" in the manifest."""
    fake.inject(Fault(envelope_error=404, message="recording not found"), endpoint=RECORD)
    recordings = [r async for r in make_client(fake).download_recordings(tmp_path)]
    fetchable = sum(1 for r in expected_reasons(fake).values() if r is None)
    assert sum(1 for r in recordings if r.file is not None) == fetchable - 1


async def test_too_large_a_recording_is_refused(
    fake: FakeVBotServer, make_client: Callable[..., VBotClient], tmp_path: Path
) -> None:
    """A recording announced larger than max_bytes raises a CallError naming it; no file."""
    with pytest.raises(CallError, match="max_bytes=50") as caught:
        async for _ in make_client(fake).download_recordings(tmp_path, max_bytes=50):
            pass
    assert isinstance(caught.value.error, ResponseFormatError)
    assert not names(tmp_path, f"{caught.value.trans_id}*")
    assert not names(tmp_path, "*.partial")


async def test_too_large_an_unannounced_recording_is_refused_as_it_comes(
    tmp_path: Path,
) -> None:
    """A chunked recording (no Content-Length) past max_bytes is refused while streaming."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\n")
        writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(8):
            writer.write(b"400\r\n" + b"\xff" * 0x400 + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with raw_server(respond) as raw, VBotClient("t", base_url=raw.url) as client:
        with pytest.raises(ResponseFormatError, match="max_bytes=5000"):
            await client.download_recording("TX1", tmp_path / "a.mp3", max_bytes=5000)
        recording = await client.download_recording("TX1", tmp_path / "b.mp3", max_bytes=8192)
    assert recording.bytes == 8192
    assert names(tmp_path) == ["b.mp3"]


class SendOnly:
    """A transport without `stream`: only `send`, through an AiohttpTransport."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport()

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
        return await self.inner.send(
            method, url, headers=headers, params=params, data=data, timeout=timeout
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_transport_that_cannot_stream_still_downloads(
    fake: FakeVBotServer, tmp_path: Path
) -> None:
    """A custom Transport with only send() serves recordings too (whole, within its limit)."""
    transport = SendOnly()
    trans_id = next(r["trans_id"] for r in fake.records if fake.recording(r["trans_id"]))
    async with VBotClient(fake.token, base_url=fake.base_url, transport=transport) as client:
        recording = await client.download_recording(trans_id, tmp_path / "a")
    await transport.aclose()
    assert (tmp_path / "a").read_bytes() == (fake.recording(trans_id) or ("", b""))[1]
    assert recording.bytes == len((tmp_path / "a").read_bytes())


async def test_odd_trans_ids_stay_in_the_directory(
    make_client: Callable[..., VBotClient], tmp_path: Path
) -> None:
    """A trans_id with path separators or dots names a file inside the directory."""
    records = generate_records(3)
    for record, odd in zip(records, ["../escape", ".hidden", "a/b"], strict=True):
        record["trans_id"], record["is_record"] = odd, True
    habits = RecordingHabits(bytes_per_second=10, missing=0.0)
    async with FakeVBotServer(records, recordings=habits) as fake:
        out = tmp_path / "out"
        recordings = [r async for r in make_client(fake).download_recordings(out)]
    assert all(r.file is not None for r in recordings)
    assert names(out) == sorted([r.file or "" for r in recordings] + ["manifest.jsonl"])
    assert names(tmp_path) == ["out"]


async def test_no_credential_in_the_manifest_errors_or_logs(
    make_client: Callable[..., VBotClient], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The token is never written into the manifest, an error or a log, even when the server
    echoes it."""
    caplog.set_level(logging.DEBUG)
    habits = RecordingHabits(bytes_per_second=100, flaky=0.5)
    async with FakeVBotServer(count=40, recordings=habits, echo_credentials=True) as fake:
        fake.inject(Fault(status=409), endpoint=RECORD)  # "bad key or no access"
        client = make_client(fake)
        with pytest.raises(CallError) as caught:
            async for _ in client.download_recordings(tmp_path):
                pass
        async for _ in client.download_recordings(tmp_path):
            pass
        token = fake.token
    error = caught.value.error
    assert isinstance(error, APIError)
    assert error.http_status == 409
    assert "<hidden>" in (error.body or "")  # the page echoed it; the error blanks it out
    assert token not in str(caught.value)
    assert token not in repr(caught.value.error.__dict__)
    assert token not in (tmp_path / "manifest.jsonl").read_text()
    assert token not in caplog.text
    assert any("retrying record" in r.getMessage() for r in caplog.records)


async def test_bad_arguments_fail_before_any_request(
    fake: FakeVBotServer, make_client: Callable[..., VBotClient], tmp_path: Path
) -> None:
    """Bad arguments are errors at the call: nothing is sent, nothing written."""
    client = make_client(fake)
    with pytest.raises(ValueError, match="max_bytes"):
        client.download_recordings(tmp_path / "d", max_bytes=0)
    with pytest.raises(ValueError, match="concurrency"):
        client.download_recordings(tmp_path / "d", concurrency=0)
    with pytest.raises(TypeError):
        client.download_recordings(tmp_path / "d", no_such_criterion=1)
    with pytest.raises(ValueError, match="trans_id"):
        await client.download_recording("", tmp_path / "x")
    assert fake.requests == []
    assert names(tmp_path) == []


async def test_a_recording_is_streamed_not_buffered(
    make_client: Callable[..., VBotClient], tmp_path: Path
) -> None:
    """A recording larger than the most the client buffers of an answer (max_response_bytes)
    is still downloaded whole: it streams to disk, in chunks, never read into one body."""
    async with FakeVBotServer(count=20, recordings=RecordingHabits(bytes_per_second=4000)) as fake:
        trans_id = next(r["trans_id"] for r in fake.records if fake.recording(r["trans_id"]))
        body = (fake.recording(trans_id) or ("", b""))[1]
        assert len(body) > 100_000
        client = make_client(fake, max_response_bytes=10_000)
        recording = await client.download_recording(trans_id, tmp_path / "big")
    assert recording.bytes == len(body)
    assert (tmp_path / "big").read_bytes() == body


@pytest.mark.parametrize("seed", [1, 2])
async def test_every_recording_whole_through_random_faults(
    make_client: Callable[..., VBotClient], tmp_path: Path, seed: int
) -> None:
    """Under random 5xx, 429s, cut bodies and resets, every recording ends whole, listed once."""
    mix = FaultMix(seed=seed, server_error=0.05, rate_limit=0.03, truncate=0.05, disconnect=0.02)
    async with FakeVBotServer(count=150, recordings=SMALL, fault_mix=mix) as fake:
        client = make_client(fake, concurrency=6, retry=RetryPolicy(max_attempts=8, backoff=0.0))
        recordings = [r async for r in client.download_recordings(tmp_path)]
        fake.fault_mix = None
        assert sum(1 for r in fake.requests if r.fault == "truncate") >= 1
        assert {k: e["reason"] for k, e in manifest(tmp_path).items()} == expected_reasons(fake)
        assert len(recordings) == 150
        assert_whole(fake, tmp_path)
    assert not names(tmp_path, "*.partial")


async def test_more_files_than_a_durability_pass_all_whole_and_listed(
    make_client: Callable[..., VBotClient], tmp_path: Path
) -> None:
    """More recordings than one pass makes durable (`_SYNC_EVERY`): passes run while the
    downloads go on, and every file is whole, listed once, no partial left; a re-run reuses
    them all."""
    async with FakeVBotServer(count=1000, recordings=SMALL) as fake:
        reasons = expected_reasons(fake)
        assert sum(1 for reason in reasons.values() if reason is None) > 2 * _SYNC_EVERY
        client = make_client(fake, concurrency=8)
        recordings = [r async for r in client.download_recordings(tmp_path)]
        assert sorted(r.trans_id or "" for r in recordings) == sorted(reasons)
        assert {k: e["reason"] for k, e in manifest(tmp_path).items()} == reasons
        assert_whole(fake, tmp_path)
        assert not names(tmp_path, "*.partial")

        fake.reset_counters()
        again = [r async for r in client.download_recordings(tmp_path)]
        assert all(r.reused for r in again if r.file is not None)
        assert fake.count(RECORD) == sum(1 for reason in reasons.values() if reason == "not found")


async def test_a_failed_durability_pass_is_an_error_naming_the_directory_after_its_turn(
    make_client: Callable[..., VBotClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass that cannot fsync (here the manifest, once: EIO) is an `OSError` of that errno
    whose filename is the directory, never the token; it comes from the step after the one
    whose recording was written, so every recording with a manifest line was handed out; no
    partial file is left, and a re-run completes the directory."""
    real_fsync = os.fsync
    failures = []

    def failing_fsync(descriptor: int) -> None:
        # Linux names what a descriptor opens: fail the first fsync of the manifest itself.
        if not failures and os.readlink(f"/proc/self/fd/{descriptor}").endswith("/manifest.jsonl"):
            failures.append(descriptor)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    async with FakeVBotServer(count=1000, recordings=SMALL) as fake:
        reasons = expected_reasons(fake)
        client = make_client(fake, concurrency=8)
        handed: list[Recording] = []

        async def download_all() -> None:
            async with client.download_recordings(tmp_path) as download:
                async for recording in download:
                    handed.append(recording)

        with pytest.raises(OSError, match="may not be durable") as caught:
            await download_all()
        assert failures  # the first pass failed, and only that
        assert caught.value.errno == errno.EIO
        assert caught.value.filename == str(tmp_path)
        assert fake.token not in str(caught.value)
        # The failure was seen when the second pass was due: that recording came out first.
        with_files = [r for r in handed if r.file is not None]
        assert len(with_files) == 2 * _SYNC_EVERY
        assert handed[-1].file is not None
        assert {r.trans_id for r in handed} == set(manifest(tmp_path))
        assert not names(tmp_path, "*.partial")
        assert_whole(fake, tmp_path)

        again = [r async for r in client.download_recordings(tmp_path)]
        assert {k: e["reason"] for k, e in manifest(tmp_path).items()} == reasons
        assert sum(1 for r in again if r.reused) == len(with_files)
        assert_whole(fake, tmp_path)
