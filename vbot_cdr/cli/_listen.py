"""``vbot-cdr listen --to URL``: VBot's webhooks committed into a database table, and, with
``--reconcile-every``, the pull over every closed window into the same table.

The receiver is `webhook_app` on aiohttp's server; the pull is `sync_to_database` with its
own state. A stop by SIGTERM (or Ctrl-C) closes the listening socket, lets the requests in
flight finish and commit, writes the summary, and exits 0: a receiver that stops when told
has done its job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .._client import VBotClient
from .._errors import IncompleteError, StateError, VBotError
from .._receiver import WebhookSink, webhook_app
from .._sinks import sync_to_database
from .._webhooks import parse_header
from ._options import ListenOptions
from ._settings import ENV_WEBHOOK_HEADER, open_client, webhook_header
from ._status import CommandError, Context, UsageError

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["run_listen"]

#: Seconds the requests in flight get to finish once a stop is asked for.
_DRAIN_SECONDS = 30.0


async def run_listen(options: ListenOptions, context: Context) -> int:
    """Receive until a signal stops it; the summary holds what the receiver and pulls saw.

    Raises:
        UsageError: No webhook header (and no ``--allow-unauthenticated``), a malformed one,
            or a bad database URL.
        CommandError: The port cannot be listened on.
        DatabaseError: The database cannot be opened at the start.
    """
    header = _header(options, context)
    try:
        sink = WebhookSink(options.to, table=options.table)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    await sink.open()
    reconciled: dict[str, Any] = {
        "reconciles": 0,
        "pulled": 0,
        "missing_from_push": 0,
        "completed_by_pull": 0,
        "incomplete": 0,
        "failed": 0,
        "without_trans_id": 0,
    }

    def report() -> None:
        context.summary.records = sink.stats.stored
        context.summary.webhooks = {**sink.stats.as_dict(), **reconciled}

    context.summary.tables.append(f"{sink.database} {sink.table}")
    async with _serving(webhook_app(sink, header=header, path=options.path), options) as url:
        context.log.say(f"listening on {url} into {options.table}; SIGTERM stops")
        try:
            every = options.reconcile_every
            if every is None:
                await asyncio.Event().wait()
            else:
                async with open_client(options.connection, context, options.paging) as client:
                    while True:  # the first pull at once: what was missed while down, found
                        await _reconcile(client, sink, options, context, reconciled)
                        report()
                        _write_summary(context, options)
                        await asyncio.sleep(every.total_seconds())
        except asyncio.CancelledError:
            if context.stopped_by is None:
                raise
            # The stop was asked for: drain (below) and end normally. The cancellation is
            # withdrawn (Python 3.11+), or aiohttp's drain would take it as its own.
            uncancel = getattr(asyncio.current_task(), "uncancel", None)
            if uncancel is not None:
                uncancel()
            context.log.say("stopping: no new requests; finishing those in flight")
        finally:
            report()
    report()  # after the drain: every acknowledged call counted
    figures = sink.stats.as_dict()
    refused = ", ".join(f"{reason} {n}" for reason, n in sorted(figures["refused"].items()))
    lag = figures["push_lag_ms"]
    lags = (
        "" if lag["p50"] is None else f"; push lag p50 {lag['p50']:.0f} ms, p99 {lag['p99']:.0f} ms"
    )
    context.log.say(
        f"stopped: {figures['received']} received, {figures['stored']} stored, "
        f"{figures['duplicates']} duplicates, {sum(figures['other_events'].values())} other "
        f"events, {sum(figures['refused'].values())} refused{f' ({refused})' if refused else ''}"
        f"{lags}; pulls: {reconciled['reconciles']}, {reconciled['missing_from_push']} calls "
        f"missing from the push, {reconciled['completed_by_pull']} completed"
    )
    return 0


def _header(options: ListenOptions, context: Context) -> str | None:
    """The webhook header, checked, its value made a secret of the run's log."""
    header = webhook_header(options.webhook_header_file, context.environ)
    if header is None:
        if options.allow_unauthenticated:
            context.log.say(
                "warning: --allow-unauthenticated: anyone who reaches the port can write calls",
                level="warning",
            )
            return None
        raise UsageError(
            f'listen needs the webhook header VBot sends: {ENV_WEBHOOK_HEADER}="Name: value" '
            "or --webhook-header-file FILE (or --allow-unauthenticated)"
        )
    try:
        _, value = parse_header(header)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    context.log.secrets.append(value)
    return header


@contextlib.asynccontextmanager
async def _serving(app: web.Application, options: ListenOptions) -> AsyncIterator[str]:
    """``app`` on ``--host``/``--port``; on exit, stop accepting, finish the requests in
    flight and run the app's cleanup (which commits and closes the sink)."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_DRAIN_SECONDS)
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port)
        try:
            await site.start()
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {options.host}:{options.port}: {exc.strerror}"
            ) from None
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}{options.path}"
    finally:
        await runner.cleanup()


async def _reconcile(
    client: VBotClient,
    sink: WebhookSink,
    options: ListenOptions,
    context: Context,
    reconciled: dict[str, Any],
) -> None:
    """One pull over the closed windows into the sink's table; a failure is logged and
    counted, and the next pull tries again.

    Raises:
        UsageError: The pull cannot work as configured (no state and no ``--start-date``, a
            filter the dialect lacks): the receiver stops, after draining.
    """
    reconciled["reconciles"] += 1
    try:
        only_before, both_before = await sink.count_sources()
        done = await sync_to_database(
            client, options.to, options.filter, table=options.table, **options.pull_settings()
        )
        only_after, both_after = await sink.count_sources()
    except StateError as exc:  # no state and no --start-date: no later pull can do better
        raise UsageError(f"{exc} (see --start-date)") from None
    except ValueError as exc:  # a filter the dialect lacks, before any request
        raise UsageError(str(exc)) from None
    except VBotError as exc:  # the database's, the API's: the next pull tries again
        reconciled["incomplete" if isinstance(exc, IncompleteError) else "failed"] += 1
        context.log.say(f"reconcile failed: {exc}", level="error")
        return
    reconciled["pulled"] += done.loaded
    reconciled["without_trans_id"] += done.without_trans_id
    reconciled["missing_from_push"] += only_after - only_before
    reconciled["completed_by_pull"] += both_after - both_before
    context.log.say(
        f"reconciled: {done.loaded} calls pulled over {done.windows} windows, "
        f"{only_after - only_before} missing from the push, "
        f"{both_after - both_before} pushed calls completed"
    )
    if done.without_trans_id:  # no key, no exactly-once: said, as sync --to says it
        context.log.say(
            f"warning: {done.without_trans_id} calls without trans_id were not loaded",
            level="warning",
        )


def _write_summary(context: Context, options: ListenOptions) -> None:
    """Write the summary so far (as it stands after a pull), if ``--summary`` is given."""
    if options.run.summary is None:
        return
    try:
        context.summary.write(options.run.summary)
    except OSError as exc:
        context.log.say(f"cannot write the summary: {exc.strerror or exc}", level="error")
