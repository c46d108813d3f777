"""A dlt source of VBot call history (``pip install 'vbot_cdr[dlt]'``, with pyarrow).

Usage::

    import dlt
    from vbot_cdr.dlt import vbot_source

    pipeline = dlt.pipeline("vbot_tenant_a", destination="duckdb", dataset_name="vbot")
    pipeline.run(vbot_source(token, base_url, start_date=1_764_547_200, campaign_code="C1"))
    # v3: vbot_source(api_key=key, base_url=..., start_date=..., campaign_code="C1")

The ``calls`` resource has the one table shape of a call (`vbot_cdr.CALL_COLUMNS`), with
explicit column types: times are timestamps with a zone (UTC), codes are text,
``call_collected_data`` and ``extras`` are JSON columns (no child tables). Each page goes to
dlt as one Arrow record batch built straight from the decoded page (the Parquet export's
columns, `vbot_cdr._arrow`), which dlt writes as it is instead of normalizing a dict per call.
It reads the calls created since dlt's last run of the pipeline: its incremental cursor is
``create_at``, and each run reads again ``lookback`` before the largest ``create_at`` loaded
(dlt's ``lag``), for calls whose records were written late. Calls read again are merged on
``trans_id``, so the destination holds each call once. A call without a ``trans_id`` (or
with an empty one) fails the run (`ResponseFormatError`), instead of being merged into
another call's row. It stops ``settle`` before now, as `VBotClient.sync` does. With
``conversations=True``, a ``conversations`` resource adds the bot conversation of each call
(``raw`` null for a call the server has none for), read by `VBotClient.iter_conversations`
(at most the client's ``concurrency`` conversation requests in flight), with its own
``create_at`` cursor: turned on after calls were loaded, its first run backfills the
conversations from ``start_date`` on.

dlt keeps the cursor in the pipeline's state, at the destination: one pipeline (name and
state) per tenant and set of criteria.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

import attrs
import dlt
from dlt.extract import DltResource

from ._arrow import arrow_schema, record_batch
from ._client import VBotClient
from ._config import DEFAULT_LOOKBACK, DEFAULT_SETTLE, DEFAULT_WINDOW
from ._conversations import CallConversation
from ._decoding import CallRow
from ._dialects import Api
from ._errors import ResponseFormatError
from ._iteration import row_pages
from ._models import CallFilter, CallRecord, epoch_to_datetime
from ._table import CALL_COLUMNS, Kind

if TYPE_CHECKING:
    import pyarrow

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


#: The conversations table: the call's id and time (the resource's cursor), and the
#: conversation as VBot sent it (null: the call has none).
_CONVERSATION_HINTS: dict[str, dict[str, Any]] = {
    "trans_id": {"data_type": "text", "nullable": False},
    "create_at": {"data_type": "timestamp", "nullable": True, "timezone": True},
    "raw": {"data_type": "json", "nullable": True},
}
#: Conversations handed to dlt at a time.
_CONVERSATION_BATCH = 500


def _conversation_row(item: CallConversation) -> dict[str, Any]:
    found = item.conversation
    return {
        "trans_id": item.call.trans_id or None,
        "create_at": item.call.created,
        "raw": None if found is None else found.raw,
    }


def _arrow_calls() -> pyarrow.Schema:
    """The calls table as Arrow, as dlt's hints have it: the Parquet export's columns
    (`arrow_schema`), times in microseconds (dlt's precision of a timestamp with a zone),
    ``trans_id`` not nullable. The JSON columns are JSON text: see `_JsonAsText`."""
    import pyarrow as pa

    fields = []
    for field in arrow_schema():
        if pa.types.is_timestamp(field.type):
            field = field.with_type(pa.timestamp("us", tz="UTC"))
        fields.append(field.with_nullable(_COLUMN_HINTS[field.name]["nullable"]))
    return pa.schema(fields)


class _JsonAsText(logging.Filter):
    """Drops dlt's warning, given for every batch, that the ``calls`` batches and the
    resource's hints differ: they do by design, in the JSON columns alone. Arrow has no JSON
    type dlt reads, so those travel as JSON text, and dlt keeps the hints (JSON), which is
    what the table must have (the destination reads the text as JSON)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_HINTS_DIFFER)


_HINTS_DIFFER = "In resource: calls, when merging arrow schema with dlt schema"
_JSON_AS_TEXT: Final = _JsonAsText()


def _calls_batch(page: Sequence[CallRow], schema: pyarrow.Schema) -> pyarrow.RecordBatch:
    """A decoded page as one record batch of ``schema`` (no `CallRecord` built): dlt writes
    it as it is, instead of normalizing a dict per call.

    Raises:
        ResponseFormatError: A call without a ``trans_id`` (or with an empty one): merged
            on it, such calls would collapse into one row.
    """
    missing = sum(1 for row in page if not row.trans_id)
    if missing:
        raise ResponseFormatError(
            f"{missing} call(s) without a trans_id: the calls are merged on it, so they "
            "cannot be loaded (they would collapse into one row)"
        )
    # The rows read like the records they stand for, which is all record_batch reads.
    return record_batch(cast("Sequence[CallRecord]", page), schema)


def _cursor(first: dt.datetime, lookback: dt.timedelta) -> dlt.sources.incremental[dt.datetime]:
    """A resource's ``create_at`` cursor: ``first`` on its first run, then the largest
    ``create_at`` it loaded, read again from ``lookback`` before it (dlt's ``lag``)."""
    return dlt.sources.incremental("create_at", initial_value=first, lag=lookback.total_seconds())


def _read_since(
    call_filter: CallFilter,
    created: dlt.sources.incremental[dt.datetime],
    settle: dt.timedelta,
) -> CallFilter:
    """The calls a run reads: from the cursor's start to ``settle`` before now."""
    start = created.start_value
    assert start is not None  # the initial value, or the last run's cursor less the lag
    upper = dt.datetime.now(dt.timezone.utc) - settle
    return attrs.evolve(call_filter, start_date=start, end_date=upper)


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
    """The ``calls`` resource (and with ``conversations`` the ``conversations`` resource).

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
        conversations: Add the ``conversations`` resource: each call's bot conversation
            (`VBotClient.iter_conversations`: the client's concurrency bounds its requests),
            with a cursor of its own, so enabling it later also fetches those of the calls
            loaded before (from ``start_date`` on).
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
        created: dlt.sources.incremental[dt.datetime] = _cursor(first, lookback),  # noqa: B008
    ) -> AsyncIterator[pyarrow.RecordBatch]:
        read = _read_since(call_filter, created, settle)
        schema = _arrow_calls()
        dlt_logger = logging.getLogger("dlt")
        dlt_logger.addFilter(_JSON_AS_TEXT)  # while dlt extracts these batches only
        try:
            async with open_client() as client, client.iter_calls(read, window=window) as calls:
                async for page in row_pages(calls):
                    if page:
                        yield _calls_batch(page, schema)
        finally:
            dlt_logger.removeFilter(_JSON_AS_TEXT)

    @dlt.resource(
        name="conversations",
        primary_key="trans_id",
        write_disposition="merge",
        columns=_CONVERSATION_HINTS,
    )
    async def conversations_read(
        # A cursor of its own: enabled after calls were loaded, it starts at start_date and
        # fetches the conversations of those calls too.
        created: dlt.sources.incremental[dt.datetime] = _cursor(first, lookback),  # noqa: B008
    ) -> AsyncIterator[list[dict[str, Any]]]:
        read = _read_since(call_filter, created, settle)
        async with open_client() as client, client.iter_conversations(read, window=window) as items:
            rows: list[dict[str, Any]] = []
            async for item in items:
                rows.append(_conversation_row(item))
                if len(rows) == _CONVERSATION_BATCH:
                    yield rows
                    rows = []
            if rows:
                yield rows

    resources: list[DltResource] = [calls()]
    if conversations:
        resources.append(conversations_read())
    return resources
