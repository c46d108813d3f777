"""A dlt source of VBot call history (``pip install 'vbot_cdr[dlt]'``).

Usage::

    import dlt
    from vbot_cdr.dlt import vbot_source

    pipeline = dlt.pipeline("vbot_tenant_a", destination="duckdb", dataset_name="vbot")
    pipeline.run(vbot_source(token, base_url, start_date=1_764_547_200, campaign_code="C1"))
    # v3: vbot_source(api_key=key, base_url=..., start_date=..., campaign_code="C1")

The ``calls`` resource has the one table shape of a call (`vbot_cdr.CALL_COLUMNS`), with
explicit column types: times are timestamps with a zone (UTC), codes are text,
``call_collected_data`` and ``extras`` are JSON columns (no child tables). It reads the
calls created since dlt's last run of the pipeline: its incremental cursor is ``create_at``,
and each run reads again ``lookback`` before the largest ``create_at`` loaded (dlt's
``lag``), for calls whose records were written late. Calls read
again are merged on ``trans_id``, so the destination holds each call once. A call without a
``trans_id`` (or with an empty one) fails the load, as dlt's primary key cannot be null,
instead of being merged into another call's row. It stops ``settle``
before now, as `VBotClient.sync` does. With ``conversations=True``, a ``conversations``
transformer adds the bot conversation of each call (``raw`` null for a call the server has
none for), with at most the client's ``concurrency`` requests in flight across all pages.

dlt keeps the cursor in the pipeline's state, at the destination: one pipeline (name and
state) per tenant and set of criteria.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs
import dlt
from dlt.extract import DltResource

from ._client import VBotClient
from ._config import DEFAULT_CONCURRENCY, DEFAULT_LOOKBACK, DEFAULT_SETTLE, DEFAULT_WINDOW
from ._dialects import Api
from ._errors import APIError, ResponseFormatError
from ._models import CallFilter, epoch_to_datetime
from ._table import CALL_COLUMNS, Kind, plain_json, row_encoder
from ._wire import finds_nothing

__all__ = ["vbot_source"]

#: dlt's type of each kind of column.
_DLT_TYPES: dict[Kind, str] = {
    "text": "text",
    "integer": "bigint",
    "float": "double",
    "bool": "bool",
    "timestamp": "timestamp",
    "json": "json",
}

_COLUMN_HINTS: dict[str, dict[str, Any]] = {
    column.name: {
        "data_type": _DLT_TYPES[column.kind],
        "nullable": column.name != "trans_id",
        **({"timezone": True} if column.kind == "timestamp" else {}),
    }
    for column in CALL_COLUMNS
}


_encode_row = row_encoder({"timestamp": epoch_to_datetime, "json": plain_json})
_NAMES = tuple(column.name for column in CALL_COLUMNS)


def _first_start(start_date: object) -> dt.datetime:
    """``start_date`` as the cursor's initial value, checked when the source is built.

    Raises:
        TypeError: Neither an aware datetime nor an epoch int (a date string, say).
        ValueError: A naive datetime, or an epoch no datetime can hold.
    """
    if isinstance(start_date, dt.datetime):
        if start_date.utcoffset() is None:
            raise ValueError(
                f"start_date {start_date.isoformat()} has no time zone; give it one "
                "(e.g. zoneinfo.ZoneInfo('Asia/Ho_Chi_Minh')) so it means one instant"
            )
        return start_date
    if isinstance(start_date, bool) or not isinstance(start_date, int) or start_date <= 0:
        raise TypeError(
            f"start_date must be an aware datetime or a positive Unix epoch int, got {start_date!r}"
        )
    try:
        first = epoch_to_datetime(start_date)
    except ResponseFormatError as exc:
        raise ValueError(f"start_date: {exc}") from None
    assert first is not None  # a positive epoch
    return first


@dlt.source(name="vbot")
def vbot_source(
    token: str | None = dlt.secrets.value,
    base_url: str = dlt.config.value,
    *,
    api_key: str | None = dlt.secrets.value,
    api: Api | None = None,
    start_date: int | dt.datetime,
    lookback: dt.timedelta = DEFAULT_LOOKBACK,
    settle: dt.timedelta = DEFAULT_SETTLE,
    window: dt.timedelta = DEFAULT_WINDOW,
    conversations: bool = False,
    client_options: Mapping[str, Any] | None = None,
    **filters: Any,
) -> list[DltResource]:
    """The ``calls`` resource (and with ``conversations`` the ``conversations`` transformer).

    Args:
        token: The v2 API token (dlt reads ``sources.vbot.token`` from its secrets if not
            given).
        base_url: The API's address (``sources.vbot.base_url`` from its config if not given).
        api_key: The v3 API key, instead of a token (``sources.vbot.api_key`` from dlt's
            secrets if not given). Exactly one of ``token`` and ``api_key``, as for
            `VBotClient`.
        api: The API dialect, as for `VBotClient` (``None``: inferred from the credential).
        start_date: Where the first run starts (an aware datetime, or a Unix epoch in
            seconds or milliseconds, told apart by magnitude); later runs start from dlt's
            cursor, the largest ``create_at`` loaded (a UTC timestamp).
        lookback: How far before the largest ``create_at`` loaded a run reads again (dlt's
            ``lag``).
        settle: How far behind now a run stops.
        window: The width of each time window of the reads (see `VBotClient.iter_calls`).
        conversations: Add the ``conversations`` transformer: one request per call.
        client_options: Keywords for `VBotClient` (``time_unit``, ``vbot_id``, ``timeout``...).
        filters: Criteria of `CallFilter`, other than the dates.

    Raises:
        ValueError, TypeError: Bad criteria, a ``start_date`` that is not an aware datetime or
            an epoch int (a date string, a naive datetime), or not exactly one credential
            (before any request).
    """
    options = {**(client_options or {}), "api_key": api_key, "base_url": base_url, "api": api}
    call_filter = CallFilter(**filters)
    first = _first_start(start_date)

    def open_client() -> VBotClient:
        return VBotClient(token, **options)

    # Built here only to check the settings.
    open_client()

    @dlt.resource(
        name="calls", primary_key="trans_id", write_disposition="merge", columns=_COLUMN_HINTS
    )
    async def calls(
        # dlt's idiom: the default declares the cursor, and dlt passes in its state.
        created: dlt.sources.incremental[dt.datetime] = dlt.sources.incremental(  # noqa: B008
            "create_at",
            initial_value=first,
            lag=lookback.total_seconds(),  # noqa: B008
        ),
    ) -> AsyncIterator[list[dict[str, Any]]]:
        start = created.start_value
        assert start is not None  # the initial value, or the last run's cursor less the lag
        upper = dt.datetime.now(dt.timezone.utc) - settle
        read = attrs.evolve(call_filter, start_date=start, end_date=upper)
        async with open_client() as client:
            async for page in client.iter_call_pages(read, window=window):
                rows = [dict(zip(_NAMES, _encode_row(record), strict=True)) for record in page]
                for row in rows:
                    if not row.get("trans_id"):
                        # An empty id is no key: merged on it, such calls would collapse
                        # into one row. As null, dlt refuses the load (its key is not null).
                        row["trans_id"] = None
                yield rows

    # dlt may transform several pages at once: one bound for all of them, the client's.
    in_flight = asyncio.Semaphore(options.get("concurrency", DEFAULT_CONCURRENCY))

    @dlt.transformer(name="conversations", primary_key="trans_id", write_disposition="merge")
    async def bot_conversations(page: list[dict[str, Any]]) -> list[dict[str, Any]]:
        async with open_client() as client:

            async def row(call: dict[str, Any]) -> dict[str, Any]:
                async with in_flight:
                    try:
                        found = await client.get_bot_conversation(
                            call["trans_id"], bot_id=call.get("bot_id")
                        )
                    except APIError as exc:
                        if not finds_nothing(exc):
                            raise
                        return {"trans_id": call["trans_id"], "raw": None}  # it has none
                return {"trans_id": found.trans_id, "raw": found.raw}

            return list(await asyncio.gather(*(row(c) for c in page if c.get("trans_id"))))

    calls_read = calls()
    resources: list[DltResource] = [calls_read]
    if conversations:
        resources.append(calls_read | bot_conversations)
    return resources
