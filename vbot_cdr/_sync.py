"""Incremental sync: the calls new since the last run, each once, with a crash-safe state file.

A run reads ``[watermark - lookback, now - settle)`` in time windows (`_iteration`). The
state file keeps the watermark, what the state was made for (the criteria, ``vbot_id``,
``project_code`` and ``time_unit``, and a fingerprint of them), and the ``trans_id`` of every
call handed out in the last ``lookback`` before the watermark, so the next run re-reads that
overlap for late calls without handing out again the calls it already did.

The file is only ever replaced whole (temporary file in the same directory, fsync, rename,
fsync of the directory), so a crash at any instant leaves the old state or the new one.

Where the state lives is a `StateStore`: `FileStateStore` is the state file; a
`DocumentStateStore` keeps the same document under a key elsewhere (a database sink keeps it
in a table of its own, saved in the transaction that holds the rows).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, runtime_checkable

import attrs
import orjson

from ._errors import StateError
from ._files import fsync_directory
from ._iteration import CallIterator, Iteration, OpenIteration
from ._models import CallFilter, TimeUnit, to_epoch
from ._windows import Windows

__all__ = [
    "STATE_VERSION",
    "CallSync",
    "DocumentStateStore",
    "FileStateStore",
    "StateStore",
    "SyncState",
    "decode_state",
    "encode_state",
    "fingerprint",
    "load_state",
    "made_for",
    "open_sync",
    "plan_sync",
    "write_state",
]

#: The layout version of the state file.
STATE_VERSION: Final = 1


@attrs.frozen
class SyncState:
    """What a state file holds beyond what it was made for.

    Attributes:
        watermark: Every call created before it (in ``time_unit``) has been handed out, save
            those that arrive late, which a run looks for in ``[watermark - lookback, ...)``.
        boundary: ``trans_id`` → ``create_at`` of the calls handed out from
            ``watermark - lookback`` on: not to be handed out again.
    """

    watermark: int
    boundary: Mapping[str, int]


def made_for(
    filter: CallFilter, *, vbot_id: str | None, project_code: str | None, time_unit: TimeUnit
) -> dict[str, str]:
    """What a state file is valid for: the criteria and identity sent, and the time unit.

    ``start_date`` and ``end_date`` are left out: they say where to read, not which calls.
    """
    identity = {"vbot_id": vbot_id or "", "project_code": project_code or ""}
    criteria = attrs.evolve(filter, start_date=None, end_date=None).to_params(time_unit)
    return {k: v for k, v in identity.items() if v} | criteria | {"time_unit": time_unit}


def fingerprint(purpose: Mapping[str, str]) -> str:
    """The key of a state: a hash of what it was made for (`made_for`)."""
    canonical = orjson.dumps(dict(purpose), option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_state(path: Path, *, purpose: Mapping[str, str], now: int) -> SyncState | None:
    """Read the state file at ``path``; ``None`` if there is none.

    Args:
        path: The state file.
        purpose: What the caller's sync is for (`made_for`); the file must match it.
        now: The current time in the state's ``time_unit``; the watermark may not be later.

    Raises:
        StateError: The file cannot be read, is not a state file of this version, was made
            for other criteria, or holds a watermark later than ``now``.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read the sync state {path}: {exc}") from exc
    return decode_state(raw, where=str(path), purpose=purpose, now=now)


def decode_state(
    raw: bytes | str, *, where: str, purpose: Mapping[str, str], now: int
) -> SyncState:
    """Check and read a state document (as `encode_state` makes it); ``where`` names it.

    Raises:
        StateError: As for `load_state`.
    """
    unusable = f"the sync state {where} is unusable"
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StateError(f"{unusable}: not JSON ({exc}); reset it to start over") from exc
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise StateError(f"{unusable}: not a version-{STATE_VERSION} vbot_cdr sync state")
    if data.get("fingerprint") != fingerprint(purpose):
        raise StateError(
            f"the sync state {where} was made for {data.get('made_for')!r}, not for "
            f"{dict(purpose)!r}; use another state file, or reset it to start over"
        )
    watermark, boundary = data.get("watermark"), data.get("boundary")
    if not isinstance(watermark, int) or isinstance(watermark, bool):
        raise StateError(f"{unusable}: the watermark {watermark!r} is not an integer")
    if not isinstance(boundary, dict) or not all(_is_int(at) for at in boundary.values()):
        raise StateError(f"{unusable}: the boundary is not a map of trans_id to create_at")
    if watermark > now:
        raise StateError(
            f"the sync state {where} has its watermark at {watermark}, later than now ({now}): "
            "the clock went back, or the state is not this server's; reset it to start over"
        )
    return SyncState(watermark, boundary)


def encode_state(state: SyncState, *, purpose: Mapping[str, str], time_unit: TimeUnit) -> bytes:
    """The state as the JSON document a state file holds (keys sorted, indented)."""
    seconds = state.watermark / 1000 if time_unit == "ms" else state.watermark
    document = {
        "version": STATE_VERSION,
        "made_for": dict(purpose),
        "fingerprint": fingerprint(purpose),
        "watermark": state.watermark,
        # For people reading the file; never read back.
        "watermark_utc": dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(),
        "boundary": dict(state.boundary),
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


def write_state(
    path: Path, state: SyncState, *, purpose: Mapping[str, str], time_unit: TimeUnit
) -> None:
    """Replace the state file at ``path`` atomically and durably.

    The bytes go to a temporary file in the same directory, which is fsynced, renamed over
    ``path`` and made durable by an fsync of the directory: a crash at any instant leaves
    either the old file or the new one, never a mix.

    Raises:
        StateError: The file could not be written (the old one is then left as it was).
    """
    body = encode_state(state, purpose=purpose, time_unit=time_unit)
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(body)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        fsync_directory(path.parent)
    except OSError as exc:
        raise StateError(f"cannot write the sync state {path}: {exc}") from exc


@runtime_checkable
class StateStore(Protocol):
    """Where a sync keeps its state: `FileStateStore`, or a database sink's table.

    `CallSync.commit` calls `save` in a worker thread, one call at a time; `save` returns
    once the state is durable, and must leave the old state whole if it fails.
    """

    def load(self, *, purpose: Mapping[str, str], now: int) -> SyncState | None:
        """The saved state (checked as `load_state` does); ``None`` if there is none.

        Raises:
            StateError: The saved state is unusable (see `load_state`).
        """
        ...

    def save(self, state: SyncState, *, purpose: Mapping[str, str], time_unit: TimeUnit) -> None:
        """Make ``state`` the saved state, durably (see `write_state`).

        Raises:
            StateError: It could not be saved; the previous state is intact.
        """
        ...


class DocumentStateStore(abc.ABC):
    """A `StateStore` keeping the state file's JSON document under a key, elsewhere than in a
    file: subclass it and say where (`read_document`, `write_document`).

    The key is a fingerprint of what the state is for (the criteria, ``vbot_id``,
    ``project_code``, ``time_unit``), so one table or bucket can hold the states of many
    syncs. The document is checked on `load` as a state file is. ``str()`` of the store
    names it in messages.

    .. versionadded:: Unreleased
    """

    @abc.abstractmethod
    def read_document(self, key: str) -> bytes | str | None:
        """The document saved under ``key``; ``None`` if there is none.

        Raises:
            VBotError: The store cannot be read (e.g. `DatabaseError`).
        """

    @abc.abstractmethod
    def write_document(self, key: str, document: bytes) -> None:
        """Make ``document`` the one saved under ``key``, durably, or leave the old one whole.

        Raises:
            VBotError: It could not be saved (e.g. `StateError`, `DatabaseError`).
        """

    def load(self, *, purpose: Mapping[str, str], now: int) -> SyncState | None:
        """The state saved for ``purpose``, checked as `load_state` checks a state file."""
        document = self.read_document(fingerprint(purpose))
        if document is None:
            return None
        return decode_state(document, where=str(self), purpose=purpose, now=now)

    def save(self, state: SyncState, *, purpose: Mapping[str, str], time_unit: TimeUnit) -> None:
        """`write_document` of the state's document under ``purpose``'s fingerprint."""
        document = encode_state(state, purpose=purpose, time_unit=time_unit)
        self.write_document(fingerprint(purpose), document)


@attrs.frozen
class FileStateStore:
    """The state in a JSON file (`load_state`, `write_state`); its directory must exist."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)

    def load(self, *, purpose: Mapping[str, str], now: int) -> SyncState | None:
        """`load_state` of `path`."""
        return load_state(self.path, purpose=purpose, now=now)

    def save(self, state: SyncState, *, purpose: Mapping[str, str], time_unit: TimeUnit) -> None:
        """`write_state` to `path`."""
        write_state(self.path, state, purpose=purpose, time_unit=time_unit)

    def check_writable(self) -> None:
        """Make and remove a file where `save` makes its temporary one, so that a state that
        cannot be saved is known before a sync writes any output.

        Raises:
            StateError: The directory is missing, or the state cannot be written in it.
        """
        path = self.path
        if not path.parent.is_dir():
            raise StateError(f"cannot keep the sync state {path}: {path.parent} is not a directory")
        try:
            fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StateError(f"cannot write the sync state {path}: {exc.strerror or exc}") from exc


class CallSync(CallIterator):
    """``async for record in client.sync(...)``: the calls new since the saved state, once.

    Made by `VBotClient.sync`, which reads the state file and plans the windows before any
    request. Iterating yields records window by window, oldest window first (within a window,
    in the server's order). Nothing is saved until `commit`:

    - ``await sync.commit()`` saves the state as of the last window whose records have all
      been yielded; the records yielded since are not covered by it, and a run after a crash
      yields them again;
    - ``async with client.sync(...) as sync:`` commits on a clean exit only (not when the
      block raises), then closes.

    Commit after your own output is durable (flushed and fsynced). `committable` says when
    there is something new to save, so a loader can commit after each window.

    Attributes:
        path: The state file (``None`` when the state lives elsewhere: see `store`).
        store: Where the state is kept.
        windows: The planned windows ``(start, end)``, in the client's ``time_unit``;
            ``stats.windows_done`` of them are done.
        total: The sum of the counts of the windows begun so far.
    """

    def __init__(
        self,
        source: Iteration,
        *,
        store: StateStore,
        purpose: Mapping[str, str],
        time_unit: TimeUnit,
        resumed: SyncState | None,
    ):
        super().__init__(source)
        self.store = store
        self.path = store.path if isinstance(store, FileStateStore) else None
        self.windows = source.windows
        self._purpose = purpose
        self._time_unit = time_unit
        self._saved = None if resumed is None else resumed.watermark
        self._lock = asyncio.Lock()

    @property
    def watermark(self) -> int | None:
        """The watermark of the state file as last read or committed (``None``: none yet)."""
        return self._saved

    @property
    def committable(self) -> bool:
        """Whether a window has been yielded in full since the last commit."""
        checkpoint = self._iteration.checkpoint
        return checkpoint is not None and checkpoint.watermark != self._saved

    async def commit(self) -> None:
        """Save the state as of the last fully yielded window; a no-op if nothing is new.

        Raises:
            StateError: The state could not be saved; the previous one is intact.
        """
        async with self._lock:  # so that two commits never land out of order
            checkpoint = self._iteration.checkpoint
            if checkpoint is None or checkpoint.watermark == self._saved:
                return
            state = SyncState(checkpoint.watermark, checkpoint.seen)
            # fsync may take a while: keep the event loop (and the requests) going meanwhile.
            await asyncio.to_thread(
                self.store.save, state, purpose=self._purpose, time_unit=self._time_unit
            )
            self._saved = checkpoint.watermark

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self.commit()
        finally:
            await self.aclose()


def plan_sync(
    filter: CallFilter,
    state: SyncState | None,
    *,
    path: Path | StateStore,
    now: int,
    lookback: int,
    settle: int,
    window: int,
    time_unit: TimeUnit,
) -> Sequence[tuple[int, int]]:
    """The windows a sync reads, in ``time_unit``: ``[watermark - lookback, upper)`` sliced.

    ``upper`` is ``now - settle``, or the filter's ``end_date`` if earlier. Without a state,
    the read starts at the filter's ``start_date``. The first window reaches back over the
    lookback; every window ends after the saved watermark, so committing never moves it back.
    Nothing is read when ``upper`` is not past the watermark.

    Raises:
        StateError: There is no state and the filter has no ``start_date``.
    """
    upper = now - settle
    if filter.end_date is not None:
        upper = min(upper, to_epoch(filter.end_date, time_unit))
    if state is not None:
        start, reach = state.watermark, state.watermark - lookback
    elif filter.start_date is not None:
        start = reach = to_epoch(filter.start_date, time_unit)
    else:
        raise StateError(
            f"there is no sync state at {path} yet: give the filter a start_date, where the "
            "first sync starts"
        )
    if upper <= start:
        return ()
    return Windows(start, upper, window, reach=reach)


def open_sync(
    open_iteration: OpenIteration,
    filter: CallFilter,
    store: StateStore,
    *,
    now: int,
    lookback: int,
    settle: int,
    window: int,
    reset: bool,
    vbot_id: str | None,
    project_code: str | None,
    time_unit: TimeUnit,
) -> CallSync:
    """Read and check the state, plan the windows, and return the sync; no request is sent.

    Durations and ``now`` are in ``time_unit``. ``reset`` ignores the state file (it is
    replaced at the first commit).

    Raises:
        StateError: The state file is unusable (see `load_state`), there is none and the
            filter has no ``start_date``, or it cannot be written (no such directory, or one
            the process may not write in): known before any output is written.
    """
    if isinstance(store, FileStateStore):
        store.check_writable()
    purpose = made_for(filter, vbot_id=vbot_id, project_code=project_code, time_unit=time_unit)
    state = None if reset else store.load(purpose=purpose, now=now)
    windows = plan_sync(
        filter,
        state,
        path=store,
        now=now,
        lookback=lookback,
        settle=settle,
        window=window,
        time_unit=time_unit,
    )
    source = open_iteration(
        windows=windows, boundary=None if state is None else state.boundary, margin=lookback
    )
    return CallSync(source, store=store, purpose=purpose, time_unit=time_unit, resumed=state)
