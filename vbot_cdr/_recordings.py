"""Recordings: ``GET {base}/api/crm/historycall/record/{trans_id}``, streamed to disk.

One recording (`VBotClient.download_recording`) or those of every call a filter selects
(`VBotClient.download_recordings`, a `RecordingDownload`). A recording is written to
``NAME.partial``, hashed (SHA-256) and counted as it arrives, never held whole in memory,
fsynced, and only then renamed to ``NAME``: whatever happens (SIGKILL included), a file
under its final name is whole.

The bulk form names each file by ``trans_id`` with the extension of its Content-Type and
keeps a manifest, ``manifest.jsonl``, beside the files: one JSON object per call with
``trans_id``, ``file``, ``bytes``, ``sha256``, ``content_type``, and ``reason`` when there
is no file (``"not found"``: the server has none, 404; ``"not recorded"``: the record's
``is_record`` is false, so nothing is asked; ``"no trans_id"``). A re-run reads it and
fetches only what is missing: a call without an entry, or whose file is absent or does not
match the entry's size and SHA-256 (a 404 is asked again: the recording may have come since).

The client sends the request (`FetchRecording`: its credential, retries and rate limit) and
hands the answer, as it streams, to a `RecordingWriter`, which checks it and writes the file;
`RecordingDownload` runs one per call (`fan_out`) and keeps the manifest.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import BinaryIO, Final, Protocol, cast
from urllib.parse import quote

import attrs
import orjson

from . import _wire
from ._dialects import Dialect
from ._errors import CallError, ResponseFormatError, VBotError
from ._fanout import fan_out
from ._files import fsync_directory
from ._iteration import CallPageIterator, IteratorBase
from ._models import CallRecord
from ._redact import redact

__all__ = [
    "DEFAULT_MAX_RECORDING_BYTES",
    "MANIFEST",
    "RECORDING",
    "FetchRecording",
    "ReadStream",
    "Recording",
    "RecordingDownload",
    "RecordingRequest",
    "RecordingWriter",
    "recording_request",
]

#: The endpoint's name, as errors and the fake server's counters give it.
RECORDING: Final = "record"
_PATH: Final = "/api/crm/historycall/record/"
#: A larger recording is refused (256 MiB: hours of telephone audio, even uncompressed).
DEFAULT_MAX_RECORDING_BYTES: Final = 256 * 1024 * 1024
#: The manifest's file name, in the directory of the recordings.
MANIFEST: Final = "manifest.jsonl"
_PARTIAL: Final = ".partial"
#: How much of a body that is not audio is read, to say what it is.
_EXCERPT_BYTES: Final = 4096
#: Extensions of the audio types VBot is known or likely to send; others ask `mimetypes`.
_EXTENSIONS: Final = {
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/wav": ".wav",
    "audio/wave": ".wav",
    "audio/x-wav": ".wav",
    "audio/vnd.wave": ".wav",
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/mp4": ".m4a",
    "audio/aac": ".aac",
    "audio/flac": ".flac",
    "audio/amr": ".amr",
    "application/octet-stream": ".bin",
}


@attrs.frozen
class RecordingRequest(_wire.Request):
    """The request of one call's recording: its path holds the ``trans_id``."""

    trans_id: str = attrs.field(kw_only=True)

    @property
    def path(self) -> str:
        return _PATH + quote(self.trans_id, safe="")


def recording_request(trans_id: str, dialect: Dialect) -> RecordingRequest:
    """The request of the recording of ``trans_id`` (no query: the path says it all)."""
    return RecordingRequest(RECORDING, {}, dialect=dialect, trans_id=trans_id)


@attrs.frozen(kw_only=True)
class Recording:
    """One call's recording on disk, or why there is none: a line of the manifest.

    Attributes:
        trans_id: The call.
        file: The file: its name in the directory (bulk), or the path given
            (`download_recording`); ``None`` with a ``reason``.
        bytes: Its size.
        sha256: The SHA-256 of its bytes, in hex.
        content_type: Its media type, as the server sent it (without parameters).
        reason: Why there is no file: ``"not found"`` (the server has none: 404),
            ``"not recorded"`` (the call was not recorded; not asked), ``"no trans_id"``.
        reused: The file was already there, whole, from an earlier run (not fetched again).

    .. versionadded:: Unreleased
    """

    trans_id: str | None
    file: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    reason: str | None = None
    reused: bool = attrs.field(default=False, eq=False)

    def to_dict(self) -> dict[str, object]:
        """The manifest's line (without `reused`)."""
        data = attrs.asdict(self)
        del data["reused"]
        return data


#: Reads a streamed answer: the request, status, headers, body chunks and the secrets sent.
class ReadStream(Protocol):
    def __call__(
        self,
        request: RecordingRequest,
        status: int,
        headers: Mapping[str, str],
        chunks: AsyncIterator[bytes],
        secrets: tuple[str, ...],
    ) -> Awaitable[Recording]: ...


#: Sends the recording request of a call (with the client's retries, pacing and
#: credential) and returns what ``read`` makes of the answer.
FetchRecording = Callable[[str, ReadStream], Awaitable[Recording]]


def _media_type(headers: Mapping[str, str]) -> str:
    return headers.get("Content-Type", "").partition(";")[0].strip().lower()


def _is_audio(media_type: str) -> bool:
    return media_type.startswith("audio/") or media_type == "application/octet-stream"


def _extension(media_type: str) -> str:
    """The file extension of ``media_type`` (``.bin`` when none is known)."""
    return _EXTENSIONS.get(media_type) or mimetypes.guess_extension(media_type) or ".bin"


def _stem(trans_id: str) -> str:
    """``trans_id`` as a file name: percent-encoded, so no id can leave the directory."""
    stem = quote(trans_id, safe="-_.~@+=")
    return "%2E" + stem[1:] if stem.startswith(".") else stem


async def _excerpt(chunks: AsyncIterator[bytes]) -> bytes:
    """The first `_EXCERPT_BYTES` of a body (enough to say what it is)."""
    kept = b""
    async for chunk in chunks:
        kept += chunk
        if len(kept) >= _EXCERPT_BYTES:
            break
    return kept[:_EXCERPT_BYTES]


def _close_and_rename(file: BinaryIO, partial: Path, target: Path) -> None:
    """Make ``file`` (open on ``partial``) durable, close it, and give it its final name.

    The name itself becomes durable with the directory's fsync: `download_recording` does it
    at once; a bulk download once at its end (a rename a power cut loses leaves a manifest
    line without its file, which is fetched again).
    """
    with file:
        os.fsync(file.fileno())
    os.replace(partial, target)


class RecordingWriter:
    """Reads a recording's answer as it streams and writes it to ``NAME.partial``, then ``NAME``.

    Args:
        target: The final path, given the media type (whose extension it may take).
        name: What `Recording.file` says of the final path.
        max_bytes: A larger recording is refused.
        sync_directory: fsync the directory after the rename (a bulk download does it once,
            at its end).
    """

    def __init__(
        self,
        target: Callable[[str], Path],
        *,
        name: Callable[[Path], str] = str,
        max_bytes: int = DEFAULT_MAX_RECORDING_BYTES,
        sync_directory: bool = True,
    ):
        self._target = target
        self._sync_directory = sync_directory
        self._name = name
        self._max_bytes = max_bytes

    async def __call__(
        self,
        request: RecordingRequest,
        status: int,
        headers: Mapping[str, str],
        chunks: AsyncIterator[bytes],
        secrets: tuple[str, ...],
    ) -> Recording:
        """Check the answer, stream it to disk; return what was written.

        Raises:
            APIError: A status other than 2xx (404: no recording), or a failure envelope.
            ResponseFormatError: The body is not audio (by its Content-Type: an HTML page, a
                JSON body), or it is larger than ``max_bytes`` (announced, or as it comes).
            TransportError: The body broke off (a new attempt starts the file again).
        """
        media_type = _media_type(headers)
        if not 200 <= status < 300 or not _is_audio(media_type):
            raise _not_audio(request, status, headers, await _excerpt(chunks), secrets)
        announced = headers.get("Content-Length", "")
        if announced.isdigit() and int(announced) > self._max_bytes:
            raise self._too_large(request)
        target = self._target(media_type)
        partial = target.with_name(target.name + _PARTIAL)
        digest = hashlib.sha256()
        size = 0
        # Opened and written on the loop: a chunk is a copy into the page cache (a thread
        # would leak the file when cancelled in the middle of opening it).
        file = open(partial, "wb")  # noqa: ASYNC230, SIM115 (closed below)
        handed_over = False
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > self._max_bytes:
                    raise self._too_large(request)
                digest.update(chunk)
                file.write(chunk)
            handed_over = True  # the thread closes it, even if this task is cancelled meanwhile
            await asyncio.to_thread(_close_and_rename, file, partial, target)
            if self._sync_directory:
                await asyncio.to_thread(fsync_directory, target.parent)
        except BaseException:
            if not handed_over:
                file.close()
                partial.unlink(missing_ok=True)
            raise
        return Recording(
            trans_id=request.trans_id,
            file=self._name(target),
            bytes=size,
            sha256=digest.hexdigest(),
            content_type=media_type,
        )

    def _too_large(self, request: RecordingRequest) -> ResponseFormatError:
        return ResponseFormatError(
            f"recording larger than max_bytes={self._max_bytes}",
            endpoint=request.endpoint,
        )


def _not_audio(
    request: RecordingRequest,
    status: int,
    headers: Mapping[str, str],
    excerpt: bytes,
    secrets: tuple[str, ...],
) -> VBotError:
    """The error an answer that is not a recording means: the status's, the failure
    envelope's, or (a 2xx body of another kind) a `ResponseFormatError`."""
    shown = redact(excerpt.decode("utf-8", errors="replace"), secrets)
    error = _wire.error_for_status(request, status, headers, shown)
    if error is not None:
        return error
    try:
        envelope = request.dialect.read_envelope(orjson.loads(excerpt))
    except orjson.JSONDecodeError:
        envelope = None
    if envelope is not None and not envelope.ok:
        try:
            _wire.read_response(request, status, headers, excerpt, secrets=secrets)
        except VBotError as failure:  # the envelope's error, as every endpoint reads it
            return failure
    media_type = _media_type(headers) or "none"
    return ResponseFormatError(
        f"the body is not audio (Content-Type {media_type})",
        body=shown,
        endpoint=request.endpoint,
    )


def _matches(path: Path, size: int | None, sha256: str | None) -> bool:
    """Whether ``path`` exists with exactly ``size`` bytes whose SHA-256 is ``sha256``."""
    try:
        if size is None or path.stat().st_size != size:
            return False
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            while block := file.read(1024 * 1024):
                digest.update(block)
        return digest.hexdigest() == sha256
    except OSError:
        return False


class _Manifest:
    """``manifest.jsonl``: the last line of each call is its entry.

    Opening it rewrites it with one line per call (atomically), dropping a line a crash cut
    short. Each entry is then appended once its file is in place, and flushed: a process
    killed after that has left it to the system. It is fsynced when the download ends
    (closing it), not line by line: a line lost to a power cut only means that its file,
    whole under its name, is fetched again.
    """

    def __init__(self, directory: Path):
        self.path = directory / MANIFEST
        self.entries: dict[str, Recording] = {}
        self._file: BinaryIO | None = None

    def open(self) -> None:
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            lines = []
        fields = {a.name for a in attrs.fields(Recording)} - {"reused"}
        for line in lines:
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line cut short by a crash: its call is fetched again
            if isinstance(doc, dict) and isinstance(doc.get("trans_id"), str):
                entry = Recording(**{k: v for k, v in doc.items() if k in fields})
                self.entries[cast(str, entry.trans_id)] = entry
        compact = self.path.with_name(self.path.name + _PARTIAL)
        with open(compact, "wb") as file:
            file.write(b"".join(self._line(e) for e in self.entries.values()))
            os.fsync(file.fileno())
        os.replace(compact, self.path)
        fsync_directory(self.path.parent)
        self._file = open(self.path, "ab")  # noqa: SIM115 (closed by `close`)

    def append(self, entry: Recording) -> None:
        assert self._file is not None, "append before open"
        self._file.write(self._line(entry))
        self._file.flush()
        if entry.trans_id is not None:
            self.entries[entry.trans_id] = entry

    def close(self) -> None:
        """Make the entries durable and close the file. Idempotent."""
        if self._file is not None:
            file, self._file = self._file, None
            with file:
                os.fsync(file.fileno())
            fsync_directory(self.path.parent)  # the renames of the recordings too

    @staticmethod
    def _line(entry: Recording) -> bytes:
        return orjson.dumps(entry.to_dict()) + b"\n"


class RecordingDownload(IteratorBase[Recording]):
    """``async for recording in client.download_recordings(directory, ...)``: one
    `Recording` per call the filter selects, each once, as its download ends.

    The files and the manifest are written as described in the module's documentation;
    nothing is written before the first step. Use it as ``async with`` (or call `aclose`)
    so that stopping early cancels the downloads in flight (their ``.partial`` files are
    removed). One download at a time per directory.

    .. versionadded:: Unreleased
    """

    def __init__(
        self,
        calls: CallPageIterator,
        fetch: FetchRecording,
        directory: Path,
        *,
        concurrency: int,
        max_bytes: int,
    ):
        super().__init__(calls)
        self._calls = calls
        self._fetch = fetch
        self._directory = directory
        self._max_bytes = max_bytes
        self._manifest = _Manifest(directory)
        self._items: AsyncGenerator[Recording, None] | None = None
        self._concurrency = concurrency

    @property
    def directory(self) -> Path:
        """Where the recordings and the manifest are written."""
        return self._directory

    async def __anext__(self) -> Recording:
        """The next call's recording (or why it has none), once its entry is in the manifest.

        Raises:
            CallError: A call's recording could not be had (not a 404) after the retries:
                too large or not audio (`ResponseFormatError`), refused (`APIError`), or
                no whole answer (`TransportError`). It names the call.
            VBotError: Reading the calls failed (`IncompleteError`, ...).
            OSError: The directory or a file cannot be written.
        """
        if self._items is None:
            await asyncio.to_thread(self._prepare)
            self._items = fan_out(self._calls, self._recording_of, width=self._concurrency)
        try:
            recording = await self._items.__anext__()
        except BaseException:  # the end, a failure or a cancellation: the lines so far stay
            await asyncio.to_thread(self._manifest.close)
            raise
        if not recording.reused:
            self._manifest.append(recording)  # a write into the page cache
        return recording

    def _prepare(self) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        for leftover in self._directory.glob("*" + _PARTIAL):
            leftover.unlink(missing_ok=True)  # a download a crash cut short
        self._manifest.open()

    async def _recording_of(self, call: CallRecord) -> Recording:
        trans_id = call.trans_id
        if trans_id is None:
            return Recording(trans_id=None, reason="no trans_id")
        if call.is_record is False:
            return Recording(trans_id=trans_id, reason="not recorded")
        known = self._manifest.entries.get(trans_id)
        if known is not None and known.file is not None:
            path = self._directory / known.file
            if await asyncio.to_thread(_matches, path, known.bytes, known.sha256):
                return attrs.evolve(known, reused=True)
        stem = _stem(trans_id)
        writer = RecordingWriter(
            lambda media_type: self._directory / (stem + _extension(media_type)),
            name=lambda path: path.name,
            max_bytes=self._max_bytes,
            sync_directory=False,  # once, when the manifest closes
        )
        try:
            recording = await self._fetch(trans_id, writer)
        except VBotError as exc:
            if _wire.finds_nothing(exc):
                return Recording(trans_id=trans_id, reason="not found")
            raise CallError(trans_id, exc) from exc
        if known is not None and known.file not in (None, recording.file):
            (self._directory / known.file).unlink(missing_ok=True)  # its type changed
        return recording

    async def aclose(self) -> None:
        """Stop: cancel the downloads in flight and wait until they are gone. Idempotent."""
        if self._items is not None:
            await self._items.aclose()
        await self._calls.aclose()
        await asyncio.to_thread(self._manifest.close)
