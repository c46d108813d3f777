"""A Spark data source of VBot call history (``pip install 'vbot_cdr[spark]'``, Spark >= 4.0).

Usage::

    from vbot_cdr.spark import VBotDataSource

    spark.dataSource.register(VBotDataSource)
    calls = (
        spark.read.format("vbot_cdr")
        .option("base_url", "https://open-api-h01.vbot.vn/v3.0")
        .option("api_key_env", "VBOT_API_KEY")      # read on each executor, never in the plan
        .option("start_date", "2025-01-01")
        .load()
    )

The calls are read by the library's own iteration (`VBotClient.iter_calls`): every call of
each partition once, verified against ``countAll``, or a failed task. A partition is one
account (tenant) and one half-open time window ``[a, b)`` of ``partition_window`` on a grid
from ``start_date``: a call created exactly at ``b`` belongs to the next window whether the
server's ``end_date`` includes it or not (the client drops it from the window that asked
up to ``b``). A partition runs on its own event loop and hands Spark one Arrow record batch
per page, built straight from the page as decoded (`row_pages`: no `CallRecord` per call),
so an executor holds a page, not a window. The columns are those of the Parquet
export (`vbot_cdr._arrow`), so the DataFrame equals ``vbot-cdr export --format parquet`` of
the same calls; with ``tenants`` a ``tenant`` column comes first.

Options (strings, as Spark passes them):

- ``base_url``, ``api`` (``v2``, ``v3-legacy``, ``v3``; default: by the credential),
  ``vbot_id``, ``project_code``, ``first_page``, ``timeout`` (seconds).
- The credential, exactly one of: ``api_key_env`` / ``token_env`` (the name of an
  environment variable, read on the executor), ``api_key_file`` / ``token_file`` (a file
  every executor can read, its first line), or ``api_key`` / ``token`` (the literal value:
  anyone who can read the query plan or the event log sees it unless
  ``spark.redaction.regex`` matches ``api_key``).
- ``start_date`` (required) and ``end_date`` (default: now less ``settle``): ISO 8601 dates
  or datetimes; without an offset they are read in ``tz`` (default ``Asia/Ho_Chi_Minh``,
  VBot's own zone).
- ``partition_window`` (default ``1d``), ``settle`` (``2m``), ``lookback`` (``10m``,
  streaming): durations such as ``90s``, ``15m``, ``6h``, ``1d``, ``2w`` (a bare number is
  seconds).
- ``concurrency``, ``page_size``, ``rate_limit`` (requests per second, per partition).
- The filters of `CallFilter` but the dates (``campaign_code``, ``disposition``, ...).
- ``tenants``: a JSON object ``{"name": {"base_url": ..., "api_key_env": ...}, ...}`` to read
  many accounts at once; each entry takes the account options above (``base_url``, ``api``,
  a credential, ``vbot_id``, ``project_code``, ``first_page``) and falls back to the
  top-level ones for those it does not give.
- ``now``: an ISO 8601 datetime taken as the current time (replays and tests).

Streaming (``spark.readStream.format("vbot_cdr")``): the offset is, per tenant, the end of the
last closed window on the grid (now less ``settle``), as an ISO 8601 UTC time; each
micro-batch reads from the previous offset less ``lookback`` (calls written late) up to the
new one, so a call may come in two micro-batches: merge on ``trans_id`` (see the README).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import types
import typing
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Union, cast

import attrs

try:
    from pyspark.sql.datasource import (
        DataSource,
        DataSourceReader,
        DataSourceStreamReader,
        InputPartition,
    )
except ImportError as exc:  # no pyspark, or one older than 4.0 (no Python data sources)
    raise ImportError(
        "vbot_cdr.spark needs pyspark 4.0 or later: pip install 'vbot_cdr[spark]'"
    ) from exc

from ._arrow import arrow_schema, record_batch
from ._client import VBotClient
from ._config import DEFAULT_LOOKBACK, DEFAULT_SETTLE, DEFAULT_WINDOW
from ._decoding import CallRow
from ._dialects import Api
from ._errors import VBotError
from ._iteration import row_pages
from ._models import CallFilter, CallRecord
from ._table import DEFAULT_TZ, epoch_milliseconds
from ._table import zone as table_zone
from ._windows import parse_duration

if TYPE_CHECKING:
    import pyarrow
    from pyspark.sql.types import StructType

__all__ = ["NAME", "PartitionError", "VBotDataSource"]

#: The format name: ``spark.read.format(NAME)``.
NAME: Final = "vbot_cdr"

#: The column that names the account of each call, with ``tenants``.
TENANT: Final = "tenant"

#: The most partitions one read plans (a window too narrow for the range is refused).
MAX_PARTITIONS: Final = 100_000

#: The offset key of the one account of a read without ``tenants``.
_SINGLE: Final = "default"

_CREDENTIALS: Final = {
    "api_key_env": ("api_key", "env"),
    "api_key_file": ("api_key", "file"),
    "api_key": ("api_key", "literal"),
    "token_env": ("token", "env"),
    "token_file": ("token", "file"),
    "token": ("token", "literal"),
}
_ACCOUNT: Final = ("base_url", "api", "vbot_id", "project_code", "first_page", *_CREDENTIALS)
_DATES: Final = ("start_date", "end_date")
_FILTERS: Final = tuple(f.name for f in attrs.fields(CallFilter) if f.name not in _DATES)
_READ: Final = (
    *_DATES,
    "tz",
    "partition_window",
    "settle",
    "lookback",
    "concurrency",
    "page_size",
    "rate_limit",
    "timeout",
    "tenants",
    "now",
)
_KNOWN: Final = frozenset((*_ACCOUNT, *_READ, *_FILTERS))


class PartitionError(RuntimeError):
    """A partition that could not be read in full; it fails the Spark task, and so the job.

    Its message names the library's error type, the tenant and the window, and carries the
    library's message (which never holds a credential).
    """


# -- options -----------------------------------------------------------------------------------


@attrs.frozen
class _Credential:
    """Where an account's credential is read: never the secret itself, but for a literal."""

    kind: Literal["api_key", "token"]
    source: Literal["env", "file", "literal"]
    where: str = attrs.field(repr=False)

    def __repr__(self) -> str:
        shown = "<literal>" if self.source == "literal" else repr(self.where)
        return f"_Credential({self.kind}_{self.source}={shown})"

    def resolve(self) -> str:
        """The credential, read now (on the executor).

        Raises:
            ValueError: The variable is unset or empty, or the file is empty.
            OSError: The file cannot be read.
        """
        if self.source == "literal":
            value = self.where
        elif self.source == "env":
            value = os.environ.get(self.where, "")
            if not value.strip():
                raise ValueError(
                    f"the environment variable {self.where} is not set (or empty) here"
                )
        else:
            text = Path(self.where).read_text(encoding="utf-8", errors="strict")
            value = next(iter(text.splitlines()), "")
            if not value.strip():
                raise ValueError(f"the file {self.where} is empty")
        return value.strip()


@attrs.frozen
class _Account:
    """One VBot account of a read: its name (``None`` without ``tenants``) and connection."""

    name: str | None
    base_url: str
    api: Api | None
    credential: _Credential
    vbot_id: str | None = None
    project_code: str | None = None
    first_page: int = 1

    @property
    def key(self) -> str:
        """The account's key in a streaming offset."""
        return _SINGLE if self.name is None else self.name


@attrs.frozen
class _Settings:
    """Every option of a read, parsed and checked (picklable: it travels to the executors)."""

    accounts: tuple[_Account, ...]
    start: dt.datetime
    end: dt.datetime | None
    window: dt.timedelta
    settle: dt.timedelta
    lookback: dt.timedelta
    now: dt.datetime | None
    concurrency: int | None
    page_size: int | None
    rate_limit: float | None
    timeout: float | None
    filters: Mapping[str, Any]

    @property
    def tenants(self) -> bool:
        return self.accounts[0].name is not None

    def clock(self) -> dt.datetime:
        """The current time: ``now`` if given, else the machine's clock (UTC)."""
        return self.now or dt.datetime.now(dt.timezone.utc)

    def upper(self) -> dt.datetime:
        """Where a batch read ends: ``end_date``, else now less ``settle``."""
        return self.end or self.clock() - self.settle


def _duration(name: str, text: str) -> dt.timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _moment(name: str, text: str, zone: dt.tzinfo) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{name} must be an ISO 8601 date or datetime (2025-12-01, "
            f"2025-12-01T08:00:00+07:00), got {text!r}"
        ) from None
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def _number(name: str, text: str, kind: type[int] | type[float]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if not value > 0 and name != "first_page":
        raise ValueError(f"{name} must be > 0, got {text!r}")
    return value


def _filter_value(name: str, text: str) -> Any:
    """A filter option as `CallFilter` takes it: a number where its field is one."""
    hint = typing.get_type_hints(CallFilter)[name]
    union = typing.get_origin(hint) in (Union, types.UnionType)
    kinds = set(typing.get_args(hint)) if union else {hint}
    for kind in (int, float):
        if kind in kinds:
            return _number(name, text, kind)
    return text


def _credential(options: Mapping[str, str], where: str) -> _Credential:
    given = [key for key in _CREDENTIALS if options.get(key)]
    if len(given) != 1:
        names = ", ".join(_CREDENTIALS)
        found = f"got {', '.join(given)}" if given else "got none"
        raise ValueError(f"{where}: give exactly one credential option of {names} ({found})")
    kind, source = _CREDENTIALS[given[0]]
    return _Credential(kind, source, options[given[0]])  # type: ignore[arg-type]


def _account(name: str | None, options: Mapping[str, str]) -> _Account:
    where = "options" if name is None else f"tenant {name!r}"
    base_url = options.get("base_url")
    if not base_url:
        raise ValueError(f"{where}: base_url is required")
    api = options.get("api") or None
    if api not in (None, "v2", "v3", "v3-legacy"):
        raise ValueError(f"{where}: api must be v2, v3-legacy or v3, got {api!r}")
    account = _Account(
        name,
        base_url,
        api,  # type: ignore[arg-type]
        _credential(options, where),
        vbot_id=options.get("vbot_id") or None,
        project_code=options.get("project_code") or None,
        first_page=_number("first_page", options.get("first_page", "1"), int),
    )
    # The client checks the rest (URL, dialect and credential, identity) before any request.
    _client(account, "-", None)
    return account


def _accounts(options: Mapping[str, str]) -> tuple[_Account, ...]:
    shared = {key: options[key] for key in _ACCOUNT if key in options}
    if "tenants" not in options:
        return (_account(None, shared),)
    try:
        tenants = json.loads(options["tenants"])
    except ValueError:
        raise ValueError("tenants must be a JSON object: name -> account options") from None
    if not isinstance(tenants, dict) or not tenants:
        raise ValueError("tenants must be a non-empty JSON object: name -> account options")
    accounts = []
    for name, own in tenants.items():
        if not isinstance(own, dict) or not all(isinstance(v, str) for v in own.values()):
            raise ValueError(f"tenant {name!r}: its options must be a JSON object of strings")
        unknown = sorted(set(own) - set(_ACCOUNT))
        if unknown:
            raise ValueError(f"tenant {name!r}: unknown options {unknown} (known: {_ACCOUNT})")
        base = shared
        if any(key in own for key in _CREDENTIALS):  # its own credential replaces the shared one
            base = {k: v for k, v in shared.items() if k not in _CREDENTIALS}
        accounts.append(_account(name, {**base, **own}))
    return tuple(accounts)


def _settings(options: Mapping[str, str]) -> _Settings:
    """Parse and check the options (before any request).

    Raises:
        ValueError: An unknown option, a missing or malformed one, or account settings the
            client refuses.
    """
    unknown = sorted(set(options) - _KNOWN)
    if unknown:
        raise ValueError(f"unknown options {unknown}; known: {sorted(_KNOWN)}")
    # The zone of dates given without an offset, unless ``tz`` says otherwise: VBot's own.
    tz_name = options.get("tz", DEFAULT_TZ)
    try:
        zone = table_zone(tz_name)
    except ValueError as exc:
        raise ValueError(f"tz: {exc}") from None
    if not options.get("start_date"):
        raise ValueError("start_date is required: where the first window begins")

    def maybe(name: str, parse: Any, *args: Any) -> Any:
        return parse(name, options[name], *args) if options.get(name) else None

    settings = _Settings(
        accounts=_accounts(options),
        start=_moment("start_date", options["start_date"], zone),
        end=maybe("end_date", _moment, zone),
        window=maybe("partition_window", _duration) or DEFAULT_WINDOW,
        settle=maybe("settle", _duration) or DEFAULT_SETTLE,
        lookback=maybe("lookback", _duration) or DEFAULT_LOOKBACK,
        now=maybe("now", _moment, zone),
        concurrency=maybe("concurrency", _number, int),
        page_size=maybe("page_size", _number, int),
        rate_limit=maybe("rate_limit", _number, float),
        timeout=maybe("timeout", _number, float),
        filters={name: _filter_value(name, options[name]) for name in _FILTERS if name in options},
    )
    if settings.window <= dt.timedelta(0):
        raise ValueError("partition_window must be > 0")
    if settings.end is not None and settings.end < settings.start:
        raise ValueError(
            f"start_date ({settings.start.isoformat()}) is after end_date "
            f"({settings.end.isoformat()})"
        )
    CallFilter(**settings.filters)  # its own checks, before any request
    return settings


# -- reading -----------------------------------------------------------------------------------


@attrs.frozen
class _Window(InputPartition):
    """One partition: an account and the half-open window ``[start, end)`` of its calls."""

    account: _Account
    start: dt.datetime
    end: dt.datetime

    def describe(self) -> str:
        tenant = "" if self.account.name is None else f"tenant {self.account.name!r}, "
        return f"{tenant}window [{self.start.isoformat()}, {self.end.isoformat()})"


def _client(account: _Account, credential: str, settings: _Settings | None) -> VBotClient:
    extra: dict[str, Any] = {}
    if settings is not None:
        extra = {
            key: value
            for key, value in (
                ("concurrency", settings.concurrency),
                ("page_size", settings.page_size),
                ("rate_limit", settings.rate_limit),
                ("timeout", settings.timeout),
            )
            if value is not None
        }
    if account.credential.kind == "api_key":
        extra["api_key"] = credential
    else:
        extra["token"] = credential
    return VBotClient(
        base_url=account.base_url,
        api=account.api,
        vbot_id=account.vbot_id,
        project_code=account.project_code,
        first_page=account.first_page,
        **extra,
    )


def _plan(
    account: _Account, start: dt.datetime, end: dt.datetime, width: dt.timedelta
) -> list[_Window]:
    """The windows ``[a, b)`` of ``width`` from ``start`` to ``end`` (the last one shorter).

    Raises:
        ValueError: More than `MAX_PARTITIONS` windows.
    """
    if (end - start) / width > MAX_PARTITIONS:
        raise ValueError(
            f"partition_window {width} makes more than {MAX_PARTITIONS} partitions from "
            f"{start.isoformat()} to {end.isoformat()}: give a wider one"
        )
    windows = []
    a = start
    while a < end:
        b = min(a + width, end)
        windows.append(_Window(account, a, b))
        a = b
    return windows


_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _microseconds(moment: dt.datetime) -> int:
    """``moment`` as microseconds since the epoch, exactly (no float)."""
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


async def _pages(settings: _Settings, window: _Window) -> AsyncGenerator[list[CallRow], None]:
    """The calls of ``window``, a page at a time, as decoded (`row_pages`: no `CallRecord`
    built): those created in ``[start, end)``.

    Raises:
        ResponseFormatError: A ``create_at`` no datetime can hold.
    """
    client = _client(window.account, window.account.credential.resolve(), settings)
    read = CallFilter(start_date=window.start, end_date=window.end, **settings.filters)
    start, end = _microseconds(window.start), _microseconds(window.end)
    async with client, client.iter_calls(read) as calls:
        async for page in row_pages(calls):
            # The server may include a call created exactly at ``end``; it is the next
            # window's. A call without a time cannot be placed and is kept.
            yield [
                row
                for row in page
                if (ms := epoch_milliseconds(row.create_at)) is None
                or start <= ms * 1000 < end
            ]


def _read(
    settings: _Settings, schema: pyarrow.Schema, window: _Window
) -> Iterator[pyarrow.RecordBatch]:
    """Run the window's iteration on an event loop of its own; yield a record batch per page.

    Raises:
        PartitionError: The iteration failed (a request after its retries, an incomplete
            window), or the credential could not be read.
    """
    constants = {TENANT: window.account.name} if settings.tenants else None
    loop = asyncio.new_event_loop()
    pages = _pages(settings, window)
    try:
        while True:
            try:
                page = loop.run_until_complete(anext(pages))
            except StopAsyncIteration:
                return
            except (VBotError, OSError, ValueError, TypeError) as exc:
                raise PartitionError(
                    f"{type(exc).__name__} in {window.describe()}: {exc}"
                ) from exc
            if page:
                # The rows read like the records they stand for, which is all it reads.
                yield record_batch(cast("Sequence[CallRecord]", page), schema, constants)
    finally:
        # Stopped early (a limit, a cancelled task) or done: cancel what is in flight.
        loop.run_until_complete(pages.aclose())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _preflight(settings: _Settings, ranges: Sequence[_Window]) -> None:
    """Count each account's whole range once, on the driver, where its credential can be
    read there: a refused credential (or a server that cannot serve the read) then fails the
    query once, at planning, instead of in every task and each of Spark's retries of it.

    Raises:
        PartitionError: A count failed after the library's retries.
    """

    async def count(whole: _Window) -> None:
        try:
            credential = whole.account.credential.resolve()
        except (OSError, ValueError):
            return  # readable on the executors only: they will say so
        read = CallFilter(start_date=whole.start, end_date=whole.end, **settings.filters)
        try:
            async with _client(whole.account, credential, settings) as client:
                await client.count_calls(read)
        except VBotError as exc:
            raise PartitionError(f"{type(exc).__name__} in {whole.describe()}: {exc}") from exc

    await asyncio.gather(*(count(whole) for whole in ranges))


class _BatchReader(DataSourceReader):
    def __init__(self, settings: _Settings, schema: pyarrow.Schema):
        self._settings = settings
        self._schema = schema

    def partitions(self) -> Sequence[InputPartition]:
        settings = self._settings
        upper = settings.upper()
        windows = [
            window
            for account in settings.accounts
            for window in _plan(account, settings.start, upper, settings.window)
        ]
        asyncio.run(
            _preflight(settings, [_Window(a, settings.start, upper) for a in settings.accounts])
        )
        return windows

    def read(self, partition: InputPartition) -> Iterator[pyarrow.RecordBatch]:
        assert isinstance(partition, _Window)
        return _read(self._settings, self._schema, partition)


class _StreamReader(DataSourceStreamReader):
    """Offsets: ``{tenant: ISO 8601 UTC end of its last closed window}``."""

    def __init__(self, settings: _Settings, schema: pyarrow.Schema):
        self._settings = settings
        self._schema = schema

    def _closed(self) -> dt.datetime:
        """The end of the last closed window on the grid: now less settle, rounded down."""
        settings = self._settings
        edge = settings.clock() - settings.settle
        if settings.end is not None:
            edge = min(edge, settings.end)
        if edge <= settings.start:
            return settings.start
        return settings.start + ((edge - settings.start) // settings.window) * settings.window

    def initialOffset(self) -> dict[str, str]:
        start = self._settings.start.astimezone(dt.timezone.utc).isoformat()
        return {account.key: start for account in self._settings.accounts}

    def latestOffset(
        self, start: dict[str, str] | None = None, limit: object = None
    ) -> dict[str, str]:
        closed = self._closed()
        latest = {}
        for account in self._settings.accounts:
            previous = (start or {}).get(account.key)
            edge = closed if previous is None else max(closed, _utc(previous))
            latest[account.key] = edge.astimezone(dt.timezone.utc).isoformat()
        return latest

    def partitions(self, start: dict[str, str], end: dict[str, str]) -> Sequence[InputPartition]:
        settings = self._settings
        windows = []
        for account in settings.accounts:
            upper = _utc(end[account.key])
            previous = start.get(account.key)
            lower = settings.start if previous is None else _utc(previous)
            if upper <= lower:
                continue
            # The lookback is a partition of its own, so the others stay on the grid.
            back = max(settings.start, lower - settings.lookback)
            if back < lower:
                windows.append(_Window(account, back, lower))
            windows += _plan(account, lower, upper, settings.window)
        return windows

    def read(self, partition: InputPartition) -> Iterator[pyarrow.RecordBatch]:
        assert isinstance(partition, _Window)
        return _read(self._settings, self._schema, partition)


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


class VBotDataSource(DataSource):
    """The ``vbot_cdr`` data source: ``spark.dataSource.register(VBotDataSource)``.

    See the module's documentation for the options. They are checked when Spark asks for
    the schema or a reader, before any request: a bad one fails the query with a
    `ValueError` that names it.
    """

    @classmethod
    def name(cls) -> str:
        return NAME

    def _settings(self) -> _Settings:
        return _settings(dict(self.options))

    def _arrow_schema(self, settings: _Settings) -> pyarrow.Schema:
        import pyarrow as pa

        # The Parquet export's columns, with Spark's unit of time (microseconds).
        calls = pa.schema(
            [
                field.with_type(pa.timestamp("us", tz="UTC"))
                if pa.types.is_timestamp(field.type)
                else field
                for field in arrow_schema()
            ]
        )
        if not settings.tenants:
            return calls
        return pa.schema([pa.field(TENANT, pa.string()), *calls])

    def schema(self) -> StructType:
        from pyspark.sql.pandas.types import from_arrow_schema

        return from_arrow_schema(self._arrow_schema(self._settings()), prefer_timestamp_ntz=False)

    def reader(self, schema: StructType) -> DataSourceReader:
        settings = self._settings()
        return _BatchReader(settings, self._arrow_schema(settings))

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        settings = self._settings()
        return _StreamReader(settings, self._arrow_schema(settings))
