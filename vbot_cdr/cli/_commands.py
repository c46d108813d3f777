"""The command table: each command's name, how its typed options are built from the parsed
arguments, and the function that runs it."""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Generic, TypeVar

import attrs

from ._bulk import run_conversations, run_recordings
from ._count import run_conversation, run_count
from ._export import run_export
from ._listen import run_listen
from ._options import (
    ConversationOptions,
    ConversationsOptions,
    CountOptions,
    DatabaseSyncOptions,
    ExportOptions,
    FileSyncOptions,
    ListenOptions,
    RecordingsOptions,
    SchemaOptions,
    ServeFakeOptions,
    build,
    sync_options,
)
from ._parser import build_parser
from ._print_schema import run_schema
from ._serve_fake import run_serve_fake
from ._status import Context
from ._sync_database import run_database_sync
from ._sync_file import run_file_sync
from ._timezone import apply_zone

__all__ = ["COMMANDS", "TABLE", "Command", "parse_options"]

_Options = TypeVar("_Options")


@attrs.frozen
class Command(Generic[_Options]):
    """A command: its options from the parsed arguments, and its body.

    Attributes:
        options: Builds the typed options from ``vars(namespace)``; raises `UsageError` for
            options that do not go together.
        run: Runs the command; returns its exit status, or raises (see `vbot_cdr.cli._main`).
    """

    options: Callable[[Mapping[str, Any]], _Options]
    run: Callable[[_Options, Context], Awaitable[int]]

    async def __call__(self, namespace: argparse.Namespace, context: Context) -> int:
        return await self.run(self.options(vars(namespace)), context)


async def _sync(options: FileSyncOptions | DatabaseSyncOptions, context: Context) -> int:
    """``sync``: into a database with ``--to``, else to a file (see `sync_options`)."""
    if isinstance(options, DatabaseSyncOptions):
        return await run_database_sync(options, context)
    return await run_file_sync(options, context)


def _command(
    options: Callable[[Mapping[str, Any]], _Options],
    run: Callable[[_Options, Context], Awaitable[int]],
) -> Command[Any]:
    # Built here, not in the table's context, so that mypy checks each run takes its options.
    return Command(options, run)


#: The commands, by the names `build_parser` gives their parsers (a test holds them equal).
TABLE: Final[Mapping[str, Command[Any]]] = {
    "export": _command(functools.partial(build, ExportOptions), run_export),
    "sync": _command(sync_options, _sync),
    "count": _command(functools.partial(build, CountOptions), run_count),
    "conversation": _command(functools.partial(build, ConversationOptions), run_conversation),
    "conversations": _command(functools.partial(build, ConversationsOptions), run_conversations),
    "recordings": _command(functools.partial(build, RecordingsOptions), run_recordings),
    "schema": _command(functools.partial(build, SchemaOptions), run_schema),
    "serve-fake": _command(functools.partial(build, ServeFakeOptions), run_serve_fake),
    "listen": _command(functools.partial(build, ListenOptions), run_listen),
}
#: The commands' names.
COMMANDS: Final = tuple(TABLE)


def parse_options(argv: Sequence[str]) -> Any:
    """The typed options of the command ``argv`` names (``["count", "--demo"]``).

    Raises:
        BadOptions: The arguments do not parse (after printing the usage and reason).
        UsageError: The options do not go together.
    """
    namespace = build_parser().parse_args(argv)
    apply_zone(namespace, os.environ)
    return TABLE[namespace.command].options(vars(namespace))
