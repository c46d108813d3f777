"""Recordings: ``GET {base}/api/crm/historycall/record/{trans_id}``, streamed to disk.

One recording (`VBotClient.download_recording`) or those of every call a filter selects
(`VBotClient.download_recordings`, a `RecordingDownload`). A recording is written to
``NAME.partial``, hashed (SHA-256) and counted as it arrives, in one pass, never held whole
in memory, and only once all of it is written renamed to ``NAME``: a process stopped at any
moment (SIGKILL included) leaves no partial file under a final name, since what it wrote is
in the system's page cache, which outlives it.

Durability (a power cut, an OS crash) is another matter. `download_recording` fsyncs the
file before its rename and the directory after it: once it returns, the file is on disk. A
bulk download does not fsync file by file (that cost about 8 ms a file, serial at
concurrency 1): every `_SYNC_EVERY` files, and when it ends, a worker thread fsyncs the
files written since the last such pass, then the directory, then the manifest (this
download's own files only, not the whole file system), while the downloads go on. After a
power cut, the files of the passes that completed are whole, with their manifest lines; a
file of the last ones may be missing, empty or cut short even under its final name, and its
manifest line missing or there. A re-run repairs that: it fetches again every call without
a manifest line, and every call whose file does not have the size and SHA-256 of its line.
A pass that fails is an `OSError` naming the directory, raised by the download's next step:
the recording whose line was just written is handed out first (not yet durable either).

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
import contextlib
import hashlib
import mimetypes
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, Final, Protocol, cast
from urllib.parse import quote

import attrs
import orjson

from . import _wire
from ._dialects import Dialect
from ._errors import CallError, ResponseFormatError, VBotError
from ._fanout import fan_out
from ._files import fsync_directory, fsync_file
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
    """Make ``file`` (open on ``partial``) durable, close it, give it its final name, and make
    that name durable."""
    with file:
        os.fsync(file.fileno())
    os.replace(partial, target)
    fsync_directory(target.parent)


class RecordingWriter:
    """Reads a recording's answer as it streams and writes it to ``NAME.partial``, then ``NAME``.

    Args:
        target: The final path, given the media type (whose extension it may take).
        name: What `Recording.file` says of the final path.
        max_bytes: A larger recording is refused.
        durable: fsync the file before its rename and the directory after it, so that the
            file is on disk once the call returns; a bulk download, which makes its files
            durable in batches, says ``False`` (the module tells what holds then).
    """

    def __init__(
        self,
        target: Callable[[str], Path],
        *,
        name: Callable[[Path], str] = str,
        max_bytes: int = DEFAULT_MAX_RECORDING_BYTES,
        durable: bool = True,
    ):
        self._target = target
        self._durable = durable
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
        # Opened, written, closed and renamed on the loop: a chunk is a copy into the page
        # cache, a rename a change of an entry (a thread would leak the file when cancelled
        # in the middle of opening it). Hashed in the same loop: the bytes are read once.
        file = open(partial, "wb")  # noqa: ASYNC230, SIM115 (closed below)
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > self._max_bytes:
                    raise self._too_large(request)
                digest.update(chunk)
                file.write(chunk)
            if not self._durable:
                file.close()
                os.replace(partial, target)
        except BaseException:
            file.close()
            partial.unlink(missing_ok=True)
            raise
        if self._durable:  # the thread closes the file, even if this task is cancelled meanwhile
            await asyncio.to_thread(_close_and_rename, file, partial, target)
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


#: A bulk download makes its files durable every so many files (and at its end): the names
#: of at most this many are held meanwhile.
_SYNC_EVERY: Final = 256


def _not_durable(directory: Path, files: int, error: OSError) -> OSError:
    """The error of a durability pass that failed with ``error``: an `OSError` of the same
    errno (so the same subclass: `PermissionError`, ...), naming the directory (a path the
    caller gave; no secret is ever in it) and what may be lost to a power cut."""
    return OSError(
        error.errno,
        f"{files} recordings and the manifest's lines may not be durable (a re-run fetches"
        f" again what a power cut left incomplete): {error.strerror or error}",
        str(directory),
    )


class _Manifest:
    """``manifest.jsonl``: the last line of each call is its entry.

    Opening it rewrites it with one line per call (atomically), dropping a line a crash cut
    short. Each entry is then appended once its file is in place, and flushed: a process
    killed after that has left it to the system. The files and their lines are made durable
    in passes (`take_unsynced`, `make_durable`), not line by line: a line lost to a power cut
    only means that its call is fetched again.
    """

    def __init__(self, directory: Path):
        self.path = directory / MANIFEST
        self.entries: dict[str, Recording] = {}
        self._file: BinaryIO | None = None
        self._unsynced: list[str] = []

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

    def append(self, entry: Recording) -> int:
        """Write ``entry``'s line (into the page cache); the files not yet made durable."""
        assert self._file is not None, "append before open"
        self._file.write(self._line(entry))
        self._file.flush()
        if entry.trans_id is not None:
            self.entries[entry.trans_id] = entry
        if entry.file is not None:
            self._unsynced.append(entry.file)
        return len(self._unsynced)

    def take_unsynced(self) -> list[str]:
        """The files appended since the last call (for `make_durable`)."""
        names, self._unsynced = self._unsynced, []
        return names

    def make_durable(self, names: Sequence[str]) -> None:
        """Make the files ``names`` (a pass's batch), their names and the manifest's lines
        durable: an fsync of each file, then of the directory, then of the manifest (these
        files only: other processes' writes are not flushed with them). Blocks: run in a
        worker thread; it does not touch the manifest's open file, which the loop appends to.

        Raises:
            OSError: A file, the directory or the manifest could not be flushed: of the
                failure's kind (its errno), its ``filename`` the directory, its message
                how many files may not be durable (`_not_durable`).
        """
        directory = self.path.parent
        try:
            for name in names:
                fsync_file(directory / name)
            fsync_directory(directory)
            fsync_file(self.path)
        except OSError as exc:
            raise _not_durable(directory, len(names), exc) from exc

    def close(self) -> None:
        """Make the files and entries not yet durable so, and close the file. Idempotent."""
        if self._file is not None:
            file, self._file = self._file, None
            with file:
                self.make_durable(self.take_unsynced())

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
        self._syncing: asyncio.Future[None] | None = None
        #: A durability pass that failed, raised by the next step (`_start_sync`).
        self._failure: OSError | None = None

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
            OSError: The directory or a file cannot be written, or a pass could not make
                the files durable (it names the directory; raised by the step after the one
                whose recording it was, so that recording is handed out first): the
                downloads in flight are then cancelled.
        """
        if self._items is None:
            await asyncio.to_thread(self._prepare)
            self._items = fan_out(self._calls, self._recording_of, width=self._concurrency)
        if self._failure is not None:
            failure, self._failure = self._failure, None
            with contextlib.suppress(OSError):  # the disk failing again: `failure` says it
                await self.aclose()
            raise failure
        try:
            recording = await self._items.__anext__()
        except BaseException:  # the end, a failure or a cancellation: the lines so far stay
            await self._close_manifest()
            raise
        # A write into the page cache; each `_SYNC_EVERY` files, a pass makes them durable.
        if not recording.reused and self._manifest.append(recording) >= _SYNC_EVERY:
            await self._start_sync()
        return recording

    async def _start_sync(self) -> None:
        """Start a pass making the files written so far durable, in a worker thread, once
        the last pass is done (one at a time: at most `_SYNC_EVERY` names wait)."""
        if self._syncing is not None:
            try:
                await asyncio.shield(self._syncing)  # a cancelled wait leaves it to `aclose`
            except OSError as exc:
                # Raised by the next step: the recording just appended is handed out first
                # (its file stays in the next pass, which `aclose` tries).
                self._failure = exc
                self._syncing = None
                return
        names = self._manifest.take_unsynced()
        self._syncing = asyncio.ensure_future(asyncio.to_thread(self._manifest.make_durable, names))

    async def _close_manifest(self) -> None:
        """Wait for the pass under way (shielded: its thread runs on whatever happens to this
        task), then make the rest durable and close the manifest."""
        syncing, self._syncing = self._syncing, None
        try:
            if syncing is not None:
                await asyncio.shield(syncing)
        finally:
            await asyncio.to_thread(self._manifest.close)

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
            durable=False,  # in passes, by the manifest
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
        await self._close_manifest()
