"""The webhook receiver: pushed calls committed to a database in groups, behind an aiohttp app.

`WebhookSink` writes each pushed call into the same calls table as `sync_to_database` (keyed
by ``trans_id``, merged so that a push never blanks nor overrides what the pull wrote: see
`Database.upsert_sql`). Its `WebhookSink.store` returns only once the call is committed, and
the calls stored while one commit runs share the next (group commit), so durability costs a
transaction per group, not per call. When the database is down, `store` raises
`DatabaseError` and the next call opens it again: the sink recovers by itself. When the
database refuses a group's rows (a value it cannot hold: `DatabaseError.refused`), the group
is committed again in halves until each refused call is alone, so that only the calls
refused fail: one bad call must not fail the calls it shares a transaction with.

`webhook_app` is the aiohttp `Application` of the receiver: authentication by a static header
compared in constant time, the body size limit, the answers VBot's sender sees (200 only
once committed; 400, 401, 405, 413, 422, 503 writing nothing), and ``GET /health``. It reads the
usual body with `pushed_call` (straight into the row the sink stores), any other with
`parse_webhook` (the same rows, or the reason for a 400).
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Final, cast

import attrs

from ._errors import DatabaseError, ResponseFormatError, WebhookError, printable
from ._models import CallRecord
from ._sinks._backends import Database, open_database, quote
from ._sinks._columns import RECORD_COLUMNS
from ._sinks._url import parse_database_url
from ._table import epoch_milliseconds
from ._webhooks import OtherEvent, PushedCall, parse_header, parse_webhook, pushed_call

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["MAX_BODY", "PULL_MARKS", "WebhookSink", "WebhookStats", "webhook_app"]

logger = logging.getLogger("vbot_cdr")

#: The largest body the receiver reads, in bytes; a longer one is 413.
MAX_BODY: Final = 1024 * 1024
#: Columns only the CDR fills: a row with one set was pulled.
PULL_MARKS: Final = ("customer_uid", "sip_code", "status", "campaign_code")
#: Columns only the webhook fills (`WEBHOOK_ONLY`): a row with one set was pushed.
_PUSH_MARKS: Final = ("telco_code", "call_net", "project_code", "record_url", "member_acc_id")
#: How many of the latest calls a sink remembers, to count a push of one of them again as a
#: duplicate.
_REMEMBERED: Final = 1_000_000
#: How many push lags the statistics keep (the latest), for the percentiles.
_LAGS_KEPT: Final = 100_000


def _percentile(values: collections.deque[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ``values``, or ``None`` if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@attrs.define
class WebhookStats:
    """What a receiver saw since it started.

    Attributes:
        received: Bodies read (authenticated POSTs within the size limit).
        stored: Auto calls committed that this sink had not committed before.
        duplicates: Auto calls committed again (pushed twice, among the last million
            calls); they changed nothing.
        other_events: Events counted, not stored, by name (see `OtherEvent`).
        refused: Requests answered with an error, by reason: ``unauthorized`` (401),
            ``method`` (405), ``too_large`` (413), ``bad_body`` (400), ``unstorable`` (422:
            the database refused the call), ``unavailable`` (503).
        lags_ms: The latest push lags: receipt time minus the call's ``endCallAt``, in ms.
    """

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    other_events: collections.Counter[str] = attrs.field(factory=collections.Counter)
    refused: collections.Counter[str] = attrs.field(factory=collections.Counter)
    lags_ms: collections.deque[float] = attrs.field(
        factory=lambda: collections.deque(maxlen=_LAGS_KEPT), repr=False
    )

    def as_dict(self) -> dict[str, Any]:
        """The statistics as plain JSON values, the lag as its p50 and p99 in ms."""
        return {
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "other_events": dict(self.other_events),
            "refused": dict(self.refused),
            "push_lag_ms": {
                "p50": _percentile(self.lags_ms, 0.50),
                "p99": _percentile(self.lags_ms, 0.99),
            },
        }


class WebhookSink:
    """Pushed calls into the calls table of a database, each committed before it is
    acknowledged, in groups.

    Usage::

        sink = WebhookSink("postgresql://etl@db/calls")
        app = webhook_app(sink, header="X-VBot-Token: s3cret")

    Args:
        url: As for `sync_to_database`.
        table: The calls table (that of `sync_to_database`, so both sources merge).

    Raises:
        ValueError: ``url`` is not a database URL (before anything is opened).
    """

    def __init__(self, url: str, *, table: str = "vbot_calls"):
        self._target = parse_database_url(url)
        #: The database, for messages (its password masked), and the calls table.
        self.database = str(self._target)
        self.table = table
        self.stats = WebhookStats()
        self._database: Database | None = None
        self._pending: list[tuple[PushedCall | CallRecord, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None
        # The latest calls committed, oldest first, to tell a duplicate push (bounded: a
        # receiver runs for months).
        self._committed: dict[str, None] = {}
        #: Transactions committed (each holding a group of calls, or a part of a group the
        #: database refused).
        self.commits = 0

    def __repr__(self) -> str:
        return f"WebhookSink({self.database!r}, table={self.table!r})"

    async def open(self) -> None:
        """Open the database now (else the first call opens it), creating the tables.

        Raises:
            DatabaseError: It cannot be reached or refuses the tables.
        """
        if self._database is None:
            self._database = await asyncio.to_thread(
                open_database, self._target, self.table, RECORD_COLUMNS
            )

    async def store(self, record: CallRecord | PushedCall) -> bool:
        """Commit ``record`` (whose ``trans_id`` is set), with the calls stored meanwhile.

        `webhook_app` stores each call it receives through this method, so a subclass that
        overrides it sees every post: a `CallRecord` (`parse_webhook`'s), or, for the usual
        body, the `PushedCall` its fast path reads (an object with every attribute of a
        `CallRecord`, not an instance of it).

        Returns:
            Whether this sink had committed the call before (a duplicate push).

        Raises:
            ValueError: ``record`` has no ``trans_id``, or a time no database can hold
                (`WebhookError`): it is refused alone, before it joins a group.
            DatabaseError: The database is down (nothing of the group not yet committed is
                committed; the next call tries again), or it refuses this call (``refused``:
                storing it again fails again); the other calls of the group are committed all
                the same.
            Exception: Any other error of the database's driver or the row encoder while
                this call was not yet committed (the calls committed before it stay so).
        """
        if not record.trans_id:
            raise ValueError("a pushed call needs a trans_id to be stored exactly once")
        _checked_end(record)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        # A waiter cancelled (a sender that hung up) cancels its own future, never the
        # writer task the others wait on: that one was created apart, and skips done futures.
        return await future

    async def _write(self) -> None:
        """Commit the pending calls, a group at a time, until none are left."""
        while self._pending:
            group, self._pending = self._pending, []
            records = list({r.trans_id: r for r, _ in reversed(group)}.values())
            try:
                failed = await asyncio.to_thread(self._commit_group, records)
            except Exception as exc:  # noqa: BLE001 - each waiting request answers it
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            seen: set[str] = set()
            for record, future in group:
                key = record.trans_id or ""  # store() admits none without one
                error = failed.get(key)
                if error is not None:
                    if not future.done():
                        future.set_exception(error)
                    continue
                duplicate = key in self._committed or key in seen
                seen.add(key)
                if duplicate:
                    self.stats.duplicates += 1
                else:
                    self.stats.stored += 1
                if not future.done():
                    future.set_result(duplicate)
            self._committed.update(dict.fromkeys(seen))
            while len(self._committed) > _REMEMBERED:
                del self._committed[next(iter(self._committed))]

    def _commit_group(self, records: list[PushedCall | CallRecord]) -> dict[str, Exception]:
        """Commit ``records`` (one per ``trans_id``, in a worker thread) in one transaction;
        if the database refuses it, in halves, each committed apart, until each refused call
        is alone (the driver does not say which row it refused): a group of n with one bad
        call takes about 2 log2(n) transactions, not n.

        Returns:
            The calls not committed, by ``trans_id``: each one refused (``refused``), and,
            once a part fails otherwise (the database down: not ``refused``; or any other
            error, of the driver or the row encoder), every call not yet committed, with that
            error. The parts committed before stay committed, and are not among them.
        """
        failed: dict[str, Exception] = {}
        parts = [records]
        while parts:
            part = parts.pop()
            try:
                self._commit(part)
                continue
            except DatabaseError as exc:
                if exc.refused:
                    if len(part) == 1:
                        failed[part[0].trans_id or ""] = exc
                    else:
                        middle = len(part) // 2
                        parts += [part[middle:], part[:middle]]
                    continue
                error: Exception = exc
            except Exception as exc:  # noqa: BLE001 - answered to the calls not yet committed
                error = exc
            # Not a refusal: nothing says the calls left would fare better, so they fail with
            # it (their senders send again); the parts committed stay committed (acknowledged).
            rest = [call for left in (part, *parts) for call in left]
            failed.update(dict.fromkeys((call.trans_id or "" for call in rest), error))
            break
        return failed

    def _commit(self, records: list[PushedCall | CallRecord]) -> None:
        """Upsert and commit ``records`` (in a worker thread); on failure, roll back, and
        unless the database refused the rows (it is well), close the connection, so that
        the next group reconnects."""
        if self._database is None:
            self._database = open_database(self._target, self.table, RECORD_COLUMNS)
        database = self._database
        try:
            # A pushed call has every attribute of a CallRecord that the row encoder reads.
            calls = cast("list[CallRecord]", records)
            database.upsert(RECORD_COLUMNS, calls, pushed=True)
            database.commit_pushed()
        except BaseException as exc:
            refused = isinstance(exc, DatabaseError) and exc.refused
            if not (refused and database.rolled_back()):
                self._database = None
                database.finish()
            raise
        self.commits += 1

    async def count_sources(self) -> tuple[int, int]:
        """How many rows of the table came from the pull alone, and from both the push and
        the pull (a pushed row the pull completed).

        A row was pushed if a column only the webhook fills (`WEBHOOK_ONLY`) is set, and
        pulled if a column only the CDR fills (`PULL_MARKS`) is.

        Raises:
            DatabaseError: The database is down or refused.
        """
        await self.open()
        database = self._database
        assert database is not None

        def any_set(names: tuple[str, ...]) -> str:
            return "(" + " OR ".join(f"{quote(name)} IS NOT NULL" for name in names) + ")"

        pushed, pulled = any_set(_PUSH_MARKS), any_set(PULL_MARKS)
        sql = (
            f"SELECT SUM(CASE WHEN {pulled} AND NOT {pushed} THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN {pulled} AND {pushed} THEN 1 ELSE 0 END) FROM {quote(self.table)}"
        )

        def count() -> tuple[int, int]:
            with database.lock, database.failing_as("count the calls in"):
                ((only, both),) = database.execute(sql)
                # Ends the read: SQLite would hold its lock against the pull's commits. What
                # a group upserted meanwhile is committed early, which it may be.
                database.commit()
            return int(only or 0), int(both or 0)

        return await asyncio.to_thread(count)

    async def close(self) -> None:
        """Commit what is pending, then close the database."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        if self._database is not None:
            database, self._database = self._database, None
            await asyncio.to_thread(database.finish)


def _checked_end(call: PushedCall | CallRecord) -> int | None:
    """The instant ``call`` ended, in epoch ms (``None`` if it has no end), once each of its
    times is one a database can hold.

    Raises:
        WebhookError: One is not (out of years 1-9999). Checked before the call joins a
            group, so that the group's upsert cannot fail on it, failing the others.
    """
    try:
        epoch_milliseconds(call.create_at)
        epoch_milliseconds(call.answer_at)
        return epoch_milliseconds(call.end_call_at)
    except ResponseFormatError as exc:
        raise WebhookError(f"a time of the call cannot be stored: {exc}") from None


def _text(status: int, message: str) -> web.Response:
    from aiohttp import web

    return web.Response(status=status, text=message + "\n")


def webhook_app(
    sink: WebhookSink,
    *,
    header: str | None,
    path: str = "/",
    max_body: int = MAX_BODY,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The aiohttp application that receives VBot's webhooks into ``sink``.

    ``POST path`` answers 200 once an auto call is committed (or an other event counted),
    401 without the header, 413 for a body over ``max_body`` (read no further), 400 for a
    body `parse_webhook` refuses, 503 while the database is down; any other method is 405.
    None of these writes anything. Any other error storing a call is a 500 (its sender sends
    it again); the calls committed before it in its group stay 200. ``GET /health`` answers
    200 without authentication and says nothing about the data. Closing the application (its
    cleanup) closes ``sink``. Each call goes through ``sink.store``, which a subclass may
    override.

    A call the database refuses (`DatabaseError.refused`: a value it cannot hold, such as
    U+0000 in PostgreSQL's text) is 422 and logged as an error naming its ``trans_id``;
    the calls of its group are committed (200) all the same. 422, not 400: the body was
    read (a 400's cannot be), but its content cannot be stored. A 4xx, not 503: sending it
    again would fail again, so the sender should stop rather than retry forever.

    Args:
        sink: Where the calls go; its ``stats`` count what the application sees.
        header: ``"Name: value"``, the static header configured in VBot's console, compared
            in constant time; ``None`` accepts any request (only behind other protection).
        path: Where VBot posts.
        max_body: The body size limit, in bytes.
        clock: The wall clock (epoch seconds), for the push lag.

    Raises:
        ValueError: ``header`` is not ``"Name: value"`` (the message never holds the value).
    """
    # Imported here: aiohttp's server side is for receivers only, not every client.
    from aiohttp import web

    expected = None if header is None else parse_header(header)
    stats = sink.stats

    def authorized(request: web.Request) -> bool:
        if expected is None:
            return True
        given = request.headers.get(expected[0], "")
        return hmac.compare_digest(
            given.encode("utf-8", "surrogateescape"), expected[1].encode("utf-8")
        )

    async def read_body(request: web.Request) -> bytes | None:
        """The body, or ``None`` once it is known to exceed ``max_body``."""
        length = request.content_length
        if length is not None:
            # One read of what is buffered (VBot's posts come whole), no copy: the parser
            # has checked the length.
            return None if length > max_body else await request.content.readexactly(length)
        body = bytearray()
        while chunk := await request.content.read(64 * 1024):
            body += chunk
            if len(body) > max_body:
                return None
        return bytes(body)

    async def receive(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            stats.refused["method"] += 1
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        if not authorized(request):
            stats.refused["unauthorized"] += 1
            return _text(401, "missing or wrong webhook header")
        body = await read_body(request)
        if body is None:
            stats.refused["too_large"] += 1
            response = _text(413, f"the body is over {max_body} bytes")
            response.force_close()  # the rest of the body is not read
            return response
        stats.received += 1
        call: PushedCall | CallRecord | None = pushed_call(body)
        try:
            if call is None:  # not the usual body: the typed parser reads or refuses it
                event = parse_webhook(body)
                if isinstance(event, OtherEvent):
                    stats.other_events[event.name] += 1
                    return _text(200, "counted")
                call = event.record
            ended = _checked_end(call)
        except WebhookError as exc:
            stats.refused["bad_body"] += 1
            return _text(400, str(exc))
        if ended is not None:
            stats.lags_ms.append(clock() * 1000 - ended)
        try:
            # The public method, which a subclass may override (it checks the call again:
            # a few µs).
            duplicate = await sink.store(call)
        except DatabaseError as exc:
            if not exc.refused:
                stats.refused["unavailable"] += 1
                return _text(503, "the database is unavailable; send again")
            stats.refused["unstorable"] += 1
            trans_id = printable(call.trans_id or "")
            logger.error("webhook: the call %s is refused by the database: %s", trans_id, exc)
            # Neither the value nor the database's message (which may quote it) goes back.
            what = "a value" if exc.column is None else f"the value of {exc.column}"
            return _text(
                422,
                f"the database cannot store {what} of the call {trans_id}; "
                "sending it again will fail again",
            )
        return _text(200, "duplicate" if duplicate else "stored")

    async def health(_: web.Request) -> web.StreamResponse:
        return _text(200, "ok")

    async def closing(_: web.Application) -> AsyncIterator[None]:
        yield
        await sink.close()

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_route("*", path, receive)
    app.cleanup_ctx.append(closing)
    return app
