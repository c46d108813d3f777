"""The options of each command, typed: one frozen attrs class per command, built from the
parsed arguments in one place (`build`), so mypy checks every use of every option.

A class's field names are the parser's ``dest`` names (`vbot_cdr.cli._parser` defines the
options), except the fields named after an option group (`_GROUPS`: ``run``, ``connection``,
``filter``, ``paging``, ``output``), built the same way from the same arguments: the groups
shared by several commands, and the filters, read straight into a `CallFilter`. A test checks
that every option of every command lands in exactly one field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs

from .._dialects import Api
from .._models import CallFilter
from .._webhooks import parse_header
from ._status import UsageError

if TYPE_CHECKING:
    from vbot_cdr.testing import FaultMix, PushHabits

__all__ = [
    "ConnectionOptions",
    "ConversationOptions",
    "ConversationsOptions",
    "CountOptions",
    "DatabaseSyncOptions",
    "ExportOptions",
    "FileSyncOptions",
    "ListenOptions",
    "OutputOptions",
    "PagingOptions",
    "RecordingsOptions",
    "RunOptions",
    "SchemaOptions",
    "ServeFakeOptions",
    "SyncOptions",
    "build",
    "sync_options",
]

_Options = TypeVar("_Options", bound=attrs.AttrsInstance)


def build(kind: type[_Options], values: Mapping[str, Any]) -> _Options:
    """The options ``kind`` from the parsed arguments ``values`` (``vars(namespace)``).

    Raises:
        UsageError: The values do not go together (a start date after the end date).
        KeyError: ``kind`` has a field the parser does not define (a bug a test catches).
    """
    fields = {
        field.name: build(_GROUPS[field.name], values)
        if field.name in _GROUPS
        else values[field.name]
        for field in attrs.fields(kind)
    }
    try:
        return kind(**fields)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


@attrs.frozen(kw_only=True)
class RunOptions:
    """Logs, summary and time zone, for every command: ``-v``, ``--log-format``,
    ``--summary``, ``--tz``."""

    verbose: bool
    log_format: str
    summary: Path | None
    tz: str | None


@attrs.frozen(kw_only=True)
class ConnectionOptions:
    """Where the API is and who we are, or ``--demo`` and its data."""

    base_url: str | None
    token_file: Path | None
    api_key_file: Path | None
    api: Api | None
    vbot_id: str | None
    project_code: str | None
    first_page: int
    time_unit: str | None
    timeout: float
    allow_insecure_http: bool
    demo: bool
    demo_records: int | None
    demo_seed: int | None


@attrs.frozen(kw_only=True)
class PagingOptions:
    """How the calls are paged: ``--concurrency``, ``--page-size``."""

    concurrency: int
    page_size: int


@attrs.frozen(kw_only=True)
class OutputOptions:
    """Where and how the calls are written, and whether stderr shows progress."""

    out: str | None
    format: str | None
    excel: bool
    quiet: bool


#: The option groups, by the name of the fields that hold them.
_GROUPS: Final[Mapping[str, type[attrs.AttrsInstance]]] = {
    "run": RunOptions,
    "connection": ConnectionOptions,
    "filter": CallFilter,
    "paging": PagingOptions,
    "output": OutputOptions,
}


@attrs.frozen(kw_only=True)
class ExportOptions:
    """``vbot-cdr export``."""

    run: RunOptions
    connection: ConnectionOptions
    filter: CallFilter
    paging: PagingOptions
    output: OutputOptions
    limit: int | None
    window: dt.timedelta | None


@attrs.frozen(kw_only=True)
class SyncOptions:
    """What both kinds of ``vbot-cdr sync`` take: where the run starts and how it pages."""

    run: RunOptions
    connection: ConnectionOptions
    filter: CallFilter
    paging: PagingOptions
    lookback: dt.timedelta
    settle: dt.timedelta
    window: dt.timedelta
    reset: bool
    quiet: bool

    def settings(self) -> dict[str, Any]:
        """The keyword arguments of `VBotClient.sync` and `sync_to_database` these set."""
        return {
            "lookback": self.lookback,
            "settle": self.settle,
            "window": self.window,
            "reset": self.reset,
            "page_size": self.paging.page_size,
            "concurrency": self.paging.concurrency,
        }


@attrs.frozen(kw_only=True)
class FileSyncOptions(SyncOptions):
    """``vbot-cdr sync --state FILE --out DIR/|FILE``."""

    state: Path
    out: str
    format: str | None
    excel: bool


@attrs.frozen(kw_only=True)
class DatabaseSyncOptions(SyncOptions):
    """``vbot-cdr sync --to URL``."""

    to: str
    table: str
    conversations: bool


def sync_options(values: Mapping[str, Any]) -> FileSyncOptions | DatabaseSyncOptions:
    """The options of ``sync``: to a file (``--state``) or into a database (``--to``).

    Raises:
        UsageError: Options of the one kind given to the other, or no ``--out`` for a file.
    """
    if values["to"] is not None:
        if values["out"] not in (None, "-"):
            raise UsageError("--to loads the calls into the database: drop --out")
        if values["format"] is not None or values["excel"]:
            raise UsageError(
                "--to loads the calls into the database: --format and --excel are for --out"
            )
        return build(DatabaseSyncOptions, values)
    if values["conversations"]:
        raise UsageError("--conversations loads into the database of --to: give --to")
    if values["out"] in (None, "-"):
        raise UsageError("sync needs --out DIR/ or FILE: the state follows only fsynced output")
    return build(FileSyncOptions, values)


@attrs.frozen(kw_only=True)
class CountOptions:
    """``vbot-cdr count``."""

    run: RunOptions
    connection: ConnectionOptions
    filter: CallFilter


@attrs.frozen(kw_only=True)
class ConversationOptions:
    """``vbot-cdr conversation``."""

    run: RunOptions
    connection: ConnectionOptions
    trans_id: str
    bot_id: str | None


@attrs.frozen(kw_only=True)
class ConversationsOptions:
    """``vbot-cdr conversations``."""

    run: RunOptions
    connection: ConnectionOptions
    filter: CallFilter
    paging: PagingOptions
    output: OutputOptions
    window: dt.timedelta | None


@attrs.frozen(kw_only=True)
class RecordingsOptions:
    """``vbot-cdr recordings``."""

    run: RunOptions
    connection: ConnectionOptions
    filter: CallFilter
    paging: PagingOptions
    out: Path
    max_bytes: int
    window: dt.timedelta | None
    quiet: bool


@attrs.frozen(kw_only=True)
class SchemaOptions:
    """``vbot-cdr schema``."""

    run: RunOptions


@attrs.frozen(kw_only=True)
class ServeFakeOptions:
    """``vbot-cdr serve-fake``."""

    run: RunOptions
    records: int
    seed: int
    host: str
    port: int
    token: str
    first_page: int
    latency: float
    max_page_size: int
    arrivals_per_second: float
    api: Api
    faults: FaultMix | None
    webhook_url: str | None
    webhook_header: str | None = attrs.field(repr=False)  # its value is a secret
    webhook_habits: PushHabits | None

    def __attrs_post_init__(self) -> None:
        if self.webhook_header is not None:
            parse_header(self.webhook_header)  # its message holds no part of it


@attrs.frozen(kw_only=True)
class ListenOptions:
    """``vbot-cdr listen --to URL``: the webhook receiver, and its reconciling pull."""

    run: RunOptions
    connection: ConnectionOptions
    filter: CallFilter
    paging: PagingOptions
    to: str
    table: str
    host: str
    port: int
    path: str
    webhook_header_file: Path | None
    allow_unauthenticated: bool
    reconcile_every: dt.timedelta | None
    lookback: dt.timedelta
    settle: dt.timedelta
    window: dt.timedelta

    def __attrs_post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"--path must start with /, got {self.path!r}")
        if self.reconcile_every is not None and not self.reconcile_every:
            raise ValueError("--reconcile-every must be longer than 0")

    def pull_settings(self) -> dict[str, Any]:
        """The keyword arguments of `sync_to_database` for the reconciling pull."""
        return {
            "lookback": self.lookback,
            "settle": self.settle,
            "window": self.window,
            "page_size": self.paging.page_size,
            "concurrency": self.paging.concurrency,
        }
