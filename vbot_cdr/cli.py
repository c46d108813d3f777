"""The ``vbot-cdr`` command line: export, sync, count and read VBot call history.

Usage::

    vbot-cdr export [--out FILE] [--format jsonl|csv|parquet] [FILTERS] [--limit N] ...
    vbot-cdr sync --state FILE --out DIR_OR_FILE [FILTERS] [--lookback 10m] [--reset] ...
    vbot-cdr sync --to postgresql://...|duckdb:///PATH|sqlite:///PATH [--table T] [FILTERS] ...
    vbot-cdr count [FILTERS]
    vbot-cdr conversation TRANS_ID [--bot-id BOT]
    vbot-cdr schema
    vbot-cdr serve-fake [--records N] [--latency SECONDS] [--arrivals-per-second R] ...

`build_parser` is the manual: every option's help, the environment variables and the exit
statuses are in ``vbot-cdr --help`` and the commands' ``--help``. This module holds the
options and the commands; file outputs live in `vbot_cdr._outputs`, log lines and run
summaries in `vbot_cdr._runlog`, the record schema in `vbot_cdr._schema`.

The client commands read the API's address and credentials from the environment
(``VBOT_BASE_URL``, ``VBOT_API_KEY``, ``VBOT_TOKEN``, ``VBOT_ID``, ``VBOT_PROJECT_CODE``) or
from options (``--base-url``, ``--api-key-file``, ``--token-file``, ``--vbot-id``,
``--project-code``); with ``--demo`` they run against an in-process fake server with generated
data instead. An API key speaks the v3 API, a token (or a login) the v2 one; ``--api`` names
the dialect outright (``v3-legacy``: an API key on the v2 paths). Without a key or a token
they log in as ``VBOT_USERNAME`` with ``VBOT_PASSWORD``, or with a password asked for without
echo when a terminal is attached. Neither the key, the token nor the password is ever
printed, or taken as an option value (other users of the machine can read command lines).

Exit status (`EXIT_STATUSES`): 0 success; 1 the command failed, with one line on stderr
saying what failed; 2 bad options or configuration; 128 + the signal's number when SIGINT
(130), SIGTERM (143) or SIGHUP (129) stopped it, after which the output holds only whole
lines. All of them are mapped to in one place, `_run`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import getpass
import logging
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final, NoReturn

import attrs
import orjson
from tqdm import tqdm

from vbot_cdr import (
    CallFilter,
    CallSync,
    IterationStats,
    PasswordAuth,
    StateError,
    VBotClient,
    VBotError,
    sync_to_database,
)
from vbot_cdr.testing import FakeVBotServer, FaultMix

from ._outputs import (
    CSV_COLUMNS,
    FORMATS,
    PARQUET_ROW_GROUP,
    ExportFile,
    OutputError,
    OutputFormat,
    append_file,
    append_output,
    choose_format,
    drop_torn_tail,
    export_file,
    make_durable,
    stream_output,
)
from ._runlog import ENV_LOG, LOG_FORMATS, LOG_LEVELS, RunLog, RunSummary, progress_interval
from ._schema import json_schema
from ._sinks import parse_database_url

__all__ = [
    "CSV_COLUMNS",
    "EXIT_STATUSES",
    "build_parser",
    "main",
    "parse_date",
    "resolve_api_key",
    "resolve_credential",
]

PROG: Final = "vbot-cdr"
#: The commands, as `build_parser` adds them.
COMMANDS: Final = ("export", "sync", "count", "conversation", "schema", "serve-fake")
ENV_TOKEN: Final = "VBOT_TOKEN"
ENV_API_KEY: Final = "VBOT_API_KEY"
#: The API dialects (`VBotClient`'s ``api``).
_APIS: Final = ("v2", "v3", "v3-legacy")
ENV_USERNAME: Final = "VBOT_USERNAME"
ENV_PASSWORD: Final = "VBOT_PASSWORD"
ENV_BASE_URL: Final = "VBOT_BASE_URL"
ENV_VBOT_ID: Final = "VBOT_ID"
ENV_PROJECT_CODE: Final = "VBOT_PROJECT_CODE"
DEMO_RECORDS: Final = 10_000

EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

#: The environment variables, as ``vbot-cdr --help`` lists them.
ENVIRONMENT: Final = (
    (ENV_BASE_URL, "the API's base URL (--base-url wins)"),
    (ENV_TOKEN, "the access token (--token-file wins)"),
    (ENV_USERNAME, "without a token: log in as this user"),
    (ENV_PASSWORD, "... with this password (asked for on a terminal when unset)"),
    (ENV_VBOT_ID, "your VBotID (--vbot-id wins)"),
    (ENV_PROJECT_CODE, "your group code (--project-code wins)"),
    (ENV_LOG, "log level: debug, info or warning (default: warning; -v is info)"),
)

#: The exit statuses, as ``vbot-cdr --help`` lists them.
EXIT_STATUSES: Final = (
    (0, "done (export: the file is complete and in place)"),
    (EXIT_FAILED, "the command failed (API refused, network, output); one line says what"),
    (EXIT_USAGE, "bad options or configuration, before any request"),
    (129, "stopped by SIGHUP: whole lines only, sync state at the last whole window"),
    (EXIT_INTERRUPTED, "interrupted by Ctrl-C (SIGINT): the same"),
    (143, "stopped by SIGTERM (cron timeout, Airflow, Kubernetes): the same"),
)

logger = logging.getLogger("vbot_cdr")


class UsageError(Exception):
    """Options or configuration that cannot work; exit status 2."""


class CommandError(Exception):
    """A command that failed for an expected reason; its message is the one line shown."""


class Interrupted(CommandError):
    """A signal (Ctrl-C, SIGTERM, SIGHUP) stopped a command; exit status 128 + its number."""


@attrs.define
class _Context:
    """What a command gets besides its options.

    Attributes:
        environ: The environment variables.
        log: Its stderr.
        summary: What it did so far (for ``--summary`` and the progress lines).
        stopped_by: The signal that stopped it, if one did.
        error: What ended it, if it failed.
    """

    environ: Mapping[str, str]
    log: RunLog
    summary: RunSummary
    stopped_by: int | None = None
    error: BaseException | None = None


Command = Callable[[argparse.Namespace, _Context], Awaitable[int]]


# -- options -----------------------------------------------------------------------------------


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive_int: Final = _int_at_least(1)
_count: Final = _int_at_least(0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text}")
    return value


def _timeout(text: str) -> float:
    value = _seconds(text)
    if not value:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION: Final = re.compile(r"(\d+(?:\.\d*)?)([smhdw]?)")


def _duration(text: str) -> dt.timedelta:
    """``90s``, ``10m``, ``6h``, ``1d``, ``2w``, or a number of seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use 90s, 10m, 6h, 1d or 2w)")
    number, unit = match.groups()
    try:
        return dt.timedelta(seconds=float(number) * _DURATION_UNITS[unit or "s"])
    except OverflowError:
        raise argparse.ArgumentTypeError(f"too long a duration: {text!r}") from None


def _window(text: str) -> dt.timedelta:
    value = _duration(text)
    if not value:
        raise argparse.ArgumentTypeError("a window must be longer than 0")
    return value


def _status(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def parse_date(text: str) -> int | dt.datetime:
    """Read a ``--start-date``/``--end-date`` value.

    Digits are a Unix epoch, sent as given. Anything else is an ISO 8601 date or date-time
    (``2025-12-01``, ``2025-12-01T08:30``, ``2025-12-01T08:30+07:00``, ``...Z``); one
    without an offset is in the machine's local time zone, and a date alone is its midnight.

    Raises:
        argparse.ArgumentTypeError: Neither.
    """
    if text.isdigit():
        return int(text)
    try:
        # Python 3.10's fromisoformat does not read the "Z" suffix.
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date: {text!r} (use 2025-12-01, 2025-12-01T08:30+07:00 or a Unix epoch)"
        ) from None
    return value if value.tzinfo is not None else value.astimezone()


#: The filter options: `CallFilter` field, value type, metavar, help.
#: How each `CallFilter` criterion is read from its option; the rest are plain text.
_FILTER_PARSERS: Final[Mapping[str, Callable[[str], Any]]] = {
    "start_date": parse_date,
    "end_date": parse_date,
    "status": _status,
    "min_postage": float,
    "max_postage": float,
}
#: The criteria, in `CallFilter`'s order, as (name, parser, metavar, help).
_FILTERS: Final = tuple(
    (
        field.name,
        _FILTER_PARSERS.get(field.name, str),
        field.metadata["metavar"],
        field.metadata["help"],
    )
    for field in attrs.fields(CallFilter)
)


class _BadOptions(SystemExit):
    """The options did not parse: exit status 2, after argparse's usage and reason."""

    def __init__(self, message: str):
        super().__init__(EXIT_USAGE)
        self.message = message


#: argparse quotes the value of a bad choice, which may be a secret: the value given after an
#: option the parser does not know lands in COMMAND (``vbot-cdr --token SECRET count``).
_BAD_CHOICE: Final = re.compile(r"invalid choice: .*?(?= \(choose from |$)", re.DOTALL)


class _Parser(argparse.ArgumentParser):
    """A parser that never reads an abbreviation as an option (``--token`` as ``--token-file``)
    and never echoes the values of options it does not know: one may be a secret."""

    def __init__(self, **options: Any):
        super().__init__(allow_abbrev=False, **options)

    def error(self, message: str) -> NoReturn:
        message = _BAD_CHOICE.sub("invalid choice (value not shown)", message)
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise _BadOptions(message)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: None = None
    ) -> argparse.Namespace:
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            names = sorted({arg.partition("=")[0] for arg in unknown if arg.startswith("-")})
            shown = ", ".join(names) if names else f"{len(unknown)} extra arguments"
            self.error(f"unrecognized arguments: {shown} (values not shown)")
        return parsed


def _run_options() -> _Parser:
    parser = _Parser(add_help=False)
    group = parser.add_argument_group("logs and summary")
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help=f"log at info: retries, rate-limit waits, repairs, sync commits (default: ${ENV_LOG}, "
        "else warnings only)",
    )
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="log lines on stderr as text with ISO 8601 times, or one JSON object each "
        "(default: text)",
    )
    group.add_argument(
        "--summary",
        type=Path,
        metavar="FILE",
        help="when the run ends, whatever the outcome, write one JSON object to FILE: command, "
        "times, records, pages, requests, retries, windows, files, complete, exit code, error "
        "(default: none)",
    )
    return parser


def _connection_options() -> _Parser:
    parser = _Parser(add_help=False)
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--base-url", metavar="URL", help=f"the API's base URL (default: ${ENV_BASE_URL})"
    )
    group.add_argument(
        "--token-file",
        metavar="FILE",
        type=Path,
        help=f"read the access token from FILE's first line (default: ${ENV_TOKEN}, else a "
        f"login as ${ENV_USERNAME})",
    )
    group.add_argument(
        "--api-key-file",
        metavar="FILE",
        type=Path,
        help=f"read the v3 API key from FILE's first line (default: ${ENV_API_KEY})",
    )
    group.add_argument(
        "--api",
        choices=_APIS,
        help="the API dialect (default: v3 with an API key, v2 with a token or login)",
    )
    group.add_argument("--vbot-id", metavar="ID", help=f"your VBotID (default: ${ENV_VBOT_ID})")
    group.add_argument(
        "--project-code", metavar="CODE", help=f"group code (default: ${ENV_PROJECT_CODE})"
    )
    group.add_argument(
        "--first-page",
        type=int,
        choices=(0, 1),
        default=1,
        help="the number the server gives its first page (default: 1)",
    )
    group.add_argument(
        "--time-unit",
        choices=("s", "ms"),
        help="unit of the epoch dates sent for date filters (default: the dialect's, "
        "s for v2, ms for v3)",
    )
    group.add_argument(
        "--timeout",
        type=_timeout,
        default=30.0,
        metavar="SECONDS",
        help="time one request may take (default: 30)",
    )
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="DANGEROUS: allow plain http:// to a host other than loopback. The token (or "
        "password) and every call record, phone numbers included, then cross the network "
        "unencrypted, readable and alterable by anyone on the way (default: refused)",
    )
    demo = parser.add_argument_group("demo")
    demo.add_argument(
        "--demo",
        action="store_true",
        help="run against an in-process fake server with generated data, no account needed "
        "(default: off)",
    )
    demo.add_argument(
        "--demo-records",
        type=_count,
        metavar="N",
        help=f"how many records the demo server has (default: {DEMO_RECORDS})",
    )
    demo.add_argument(
        "--demo-seed", type=int, metavar="SEED", help="seed of the demo data (default: 0)"
    )
    return parser


def _filter_options() -> _Parser:
    parser = _Parser(add_help=False)
    group = parser.add_argument_group("filters (only those given are sent)")
    for name, kind, metavar, text in _FILTERS:
        several = attrs.fields_dict(CallFilter)[name].metadata.get("several", False)
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            metavar=metavar,
            # Given several times: every value's calls, each read and verified on its own.
            action="append" if several else "store",
            help=f"{text}{'; repeat for several' if several else ''} (default: not sent)",
        )
    return parser


def _paging_options(*, limit: bool = True) -> _Parser:
    parser = _Parser(add_help=False)
    group = parser.add_argument_group("paging")
    if limit:
        group.add_argument(
            "--limit", type=_count, metavar="N", help="stop after N records (default: all)"
        )
    group.add_argument(
        "--concurrency",
        type=_positive_int,
        default=8,
        metavar="N",
        help="requests in flight (default: 8)",
    )
    group.add_argument(
        "--page-size",
        type=_positive_int,
        default=100,
        metavar="N",
        help="records per page (default: 100)",
    )
    return parser


def _add_output_options(
    parser: argparse.ArgumentParser, *, out_help: str, formats: Sequence[str]
) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("-o", "--out", metavar="FILE", help=out_help)
    group.add_argument(
        "--format",
        choices=formats,
        help="the output format (default: from FILE's suffix: .jsonl or .json, .csv, each "
        "optionally .gz, or .parquet; any other suffix needs --format)",
    )
    group.add_argument(
        "--excel",
        action="store_true",
        help="CSV for Excel: a UTF-8 byte-order mark (so Vietnamese text shows right) and a "
        "<time>_local column of local time (TZ) after each epoch column (default: off)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar, progress lines or closing line on stderr (default: off)",
    )


def _epilog() -> str:
    width = max(len(name) for name, _ in ENVIRONMENT)
    lines = ["environment variables:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in ENVIRONMENT]
    lines += ["", "exit status:"]
    lines += [f"  {status:<3}  {text}" for status, text in EXIT_STATUSES]
    lines += ["", "Try it without an account: vbot-cdr export --demo --out calls.jsonl"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vbot-cdr``, one subcommand per command."""
    from vbot_cdr import __version__

    parser = _Parser(
        prog=PROG,
        description="Export and inspect the call history of VBot voice-bot campaigns.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    connection, filters, run = _connection_options(), _filter_options(), _run_options()

    export = commands.add_parser(
        "export",
        parents=[connection, filters, _paging_options(), run],
        help="stream every matching call to JSON Lines, CSV or Parquet",
        description=(
            "Stream every call matching the filters to a file or standard output. A file is "
            "written beside its target and renamed into place once complete: a failed or "
            "stopped export never replaces or truncates it, and keeps what it wrote as "
            f"FILE.partial. Parquet is written in row groups of {PARQUET_ROW_GROUP} calls."
        ),
    )
    _add_output_options(
        export,
        out_help="write to FILE, replaced only once complete; '-' is standard output "
        "(default: standard output)",
        formats=FORMATS,
    )
    _add_window(export, None, shown="none")
    export.set_defaults(run=_export)

    sync = commands.add_parser(
        "sync",
        parents=[connection, filters, _paging_options(limit=False), run],
        help="append the calls that are new since the last sync",
        description=(
            "Append the calls created since the last sync to --out (a directory: one new "
            "file per run; a file: appended to), and keep where it stopped in --state. The "
            "state moves only after the output is flushed and fsynced, window by window, so "
            "a run that dies is resumed by the next without losing a call. The first run "
            "starts at --start-date."
        ),
    )
    _add_output_options(
        sync,
        out_help="a directory DIR/ (one new file per run) or a FILE to append to; with --state "
        "(required)",
        formats=("jsonl", "csv"),
    )
    group = sync.add_argument_group("sync")
    where = group.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--state", type=Path, metavar="FILE", help="the JSON state file; this or --to (required)"
    )
    where.add_argument(
        "--to",
        metavar="URL",
        help=(
            "load into a database table instead of --out, each call exactly once, the state "
            "kept in the same database: postgresql://USER@HOST/DB, duckdb:///PATH, "
            "sqlite:///PATH, or a path ending in .duckdb, .db or .sqlite; this or --state "
            "(required)"
        ),
    )
    group.add_argument(
        "--table", default="vbot_calls", help="the table of calls for --to (default: vbot_calls)"
    )
    group.add_argument(
        "--reset",
        action="store_true",
        help="ignore the state file (unusable, or made for other filters): start at "
        "--start-date (default: off)",
    )
    group.add_argument(
        "--lookback",
        type=_duration,
        default=dt.timedelta(minutes=10),
        metavar="DURATION",
        help="how far before the last run's end to look again for late calls (default: 10m)",
    )
    group.add_argument(
        "--settle",
        type=_duration,
        default=dt.timedelta(minutes=2),
        metavar="DURATION",
        help="how far behind now to stop, for calls still being written (default: 2m)",
    )
    _add_window(sync, dt.timedelta(days=1), shown="1d")
    sync.set_defaults(run=_sync)

    count = commands.add_parser(
        "count",
        parents=[connection, filters, run],
        help="print how many calls match",
        description="Print how many calls match the filters (countAll).",
    )
    count.set_defaults(run=_count_calls)

    conversation = commands.add_parser(
        "conversation",
        parents=[connection, run],
        help="print the bot conversation of one call",
        description="Print the bot conversation of one call, as the server sends it.",
    )
    conversation.add_argument("trans_id", metavar="TRANS_ID", help="the call's transaction id")
    conversation.add_argument("--bot-id", metavar="BOT", help="the bot code (default: not sent)")
    conversation.set_defaults(run=_conversation)

    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of an exported call",
        description=(
            "Print the JSON Schema of one exported call (a line of JSON Lines), generated "
            "from the library's models. docs/fields.md explains every field."
        ),
    )
    schema.set_defaults(run=_schema)

    _add_serve_fake(commands, run)
    return parser


def _add_serve_fake(commands: Any, run: argparse.ArgumentParser) -> None:
    serve = commands.add_parser(
        "serve-fake",
        parents=[run],
        help="run the fake VBot server on loopback",
        description=(
            "Run the fake VBot server until Ctrl-C (or SIGTERM); print its URL and token as "
            "two shell lines to paste into another terminal."
        ),
    )
    serve.add_argument(
        "--records",
        type=_count,
        default=DEMO_RECORDS,
        metavar="N",
        help=f"generated calls it starts with (default: {DEMO_RECORDS})",
    )
    serve.add_argument("--seed", type=int, default=0, help="seed of the data (default: 0)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    serve.add_argument(
        "--token", default="fake-vbot-token", help="the token it accepts (default: fake-vbot-token)"
    )
    serve.add_argument(
        "--first-page",
        type=int,
        default=1,
        help="the number of its first page (default: 1)",
    )
    serve.add_argument(
        "--latency",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="time every request waits before it is answered (default: 0)",
    )
    serve.add_argument(
        "--max-page-size",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="the largest page size accepted (default: 1000)",
    )
    serve.add_argument(
        "--arrivals-per-second",
        type=_seconds,
        default=0.0,
        metavar="R",
        help="new calls written per second while it runs, created now, as a live feed for "
        "sync (default: 0)",
    )
    serve.add_argument(
        "--api", choices=_APIS, default="v2", help="the dialect it speaks (default: v2)"
    )
    serve.add_argument(
        "--faults",
        type=_fault_mix,
        metavar="NAME=VALUE,...",
        help="random faults: FaultMix fields, e.g. seed=1,server_error=0.05,rate_limit=0.02 "
        "(default: none)",
    )
    serve.set_defaults(run=_serve_fake)


def _add_window(
    parser: argparse.ArgumentParser, default: dt.timedelta | None, *, shown: str
) -> None:
    parser.add_argument(
        "--window",
        type=_window,
        default=default,
        metavar="DURATION",
        help=(
            "read the date range in windows this long (e.g. 1d), each paged on its own, "
            f"so no page is deep; needs --start-date (default: {shown})"
        ),
    )


def _fault_mix(text: str) -> FaultMix:
    """A `FaultMix` from ``name=value`` pairs of its number and text fields."""
    fields = {f.name: f for f in attrs.fields(FaultMix) if f.name != "endpoints"}
    options: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        field = fields.get(name.strip())
        if field is None:
            raise argparse.ArgumentTypeError(f"unknown fault {name!r}; known: {sorted(fields)}")
        kind = type(field.default) if field.default is not None else str
        try:
            options[field.name] = kind(value.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad value for {name}: {value!r}") from None
    try:
        return FaultMix(**options)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- configuration -----------------------------------------------------------------------------


def resolve_credential(args: argparse.Namespace, environ: Mapping[str, str]) -> str | PasswordAuth:
    """The token the client authenticates with, when it takes no API key (`resolve_api_key`).

    The first line of ``--token-file`` if given, else ``$VBOT_TOKEN``, else a login as
    ``$VBOT_USERNAME`` with ``$VBOT_PASSWORD`` (asked for without echo if it is unset and
    standard input is a terminal).

    Raises:
        UsageError: No credential is configured, or the token file cannot be read, is not
            UTF-8 text or is empty.
    """
    if args.token_file is not None:
        return _first_line(args.token_file, "token")
    token = environ.get(ENV_TOKEN, "").strip()
    if token:
        return token
    username = environ.get(ENV_USERNAME, "").strip()
    if not username:
        raise UsageError(
            f"no credentials: set {ENV_TOKEN}, or {ENV_USERNAME} and {ENV_PASSWORD}, or "
            f"{ENV_API_KEY} (v3), or pass --token-file or --api-key-file (or try --demo)"
        )
    password = environ.get(ENV_PASSWORD) or _ask_password(username)
    return PasswordAuth(username, password)


def resolve_api_key(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """The API key, if the client authenticates with one (else ``None``: a token).

    The first line of ``--api-key-file``, else ``$VBOT_API_KEY``; a token (``--token-file``,
    ``$VBOT_TOKEN``, ``$VBOT_USERNAME``) is for v2, a key for v3 and v3-legacy. Without
    ``--api`` the credential says which; with both a token and a key that is ambiguous.

    Raises:
        UsageError: Both a token and a key and no ``--api`` (naming both); a credential that
            does not fit ``--api`` (naming the one that does); or a key file that cannot be
            read, is not UTF-8 text or is empty.
    """
    api, key_file, token_file = args.api, args.api_key_file, args.token_file
    if key_file is not None and token_file is not None:
        raise UsageError("give --api-key-file or --token-file, not both")
    key = environ.get(ENV_API_KEY, "").strip()
    tokens = [name for name in (ENV_TOKEN, ENV_USERNAME) if environ.get(name, "").strip()]
    if api == "v2":
        if key_file is not None or (key and not tokens and token_file is None):
            given = "--api-key-file" if key_file is not None else f"${ENV_API_KEY}"
            raise UsageError(
                f"the v2 API takes a token, not an API key ({given}): set {ENV_TOKEN} (or "
                f"{ENV_USERNAME} and {ENV_PASSWORD}) or pass --token-file; an API key is for "
                "--api v3 or v3-legacy"
            )
        return None
    if api is not None and key_file is None and (token_file is not None or not key):
        given = "--token-file" if token_file is not None else " and ".join(f"${n}" for n in tokens)
        refused = f", not a token ({given})" if given else ""
        raise UsageError(
            f"the {api} API takes an API key{refused}: set {ENV_API_KEY} or pass "
            "--api-key-file; a token is for --api v2"
        )
    if key_file is not None:
        return _first_line(key_file, "API key")
    if token_file is not None:
        return None
    if api is None and key and tokens:
        raise UsageError(
            f"both {' and '.join(tokens)} and {ENV_API_KEY} are set: pass --api v2 to use the "
            f"token, --api v3 (or v3-legacy) to use the API key, or unset one"
        )
    return key or None


def _first_line(path: Path, what: str) -> str:
    """The first line of the secret file ``path``, stripped.

    Raises:
        UsageError: The file cannot be read, is not UTF-8 text, or is empty.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"the {what} file {path} is not UTF-8 text") from None
    line = text.strip().partition("\n")[0].strip()
    if not line:
        raise UsageError(f"the {what} file {path} is empty")
    return line


def _ask_password(username: str) -> str:
    if not sys.stdin.isatty():
        raise UsageError(f"no password for {username}: set {ENV_PASSWORD}")
    # The event loop's Ctrl-C handler would only act once the prompt returns; stop at once.
    loop_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        password = getpass.getpass(f"VBot password for {username}: ")
    finally:
        signal.signal(signal.SIGINT, loop_handler)
    if not password:
        raise UsageError("no password given")
    return password


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "first_page": args.first_page,
        "time_unit": args.time_unit,
        "timeout": args.timeout,
        "allow_insecure_http": args.allow_insecure_http,
    }
    for name in ("concurrency", "page_size"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    return options


@contextlib.asynccontextmanager
async def open_client(args: argparse.Namespace, context: _Context) -> AsyncIterator[VBotClient]:
    """A client of the API the options and environment name, or of a demo server.

    Raises:
        UsageError: The configuration is incomplete or invalid.
    """
    options = _client_options(args)
    credential: dict[str, Any]
    async with contextlib.AsyncExitStack() as stack:
        if args.demo:
            server = await stack.enter_async_context(
                FakeVBotServer(
                    count=DEMO_RECORDS if args.demo_records is None else args.demo_records,
                    seed=args.demo_seed or 0,
                    first_page=args.first_page,
                    api=args.api or "v2",
                )
            )
            credential, base_url = _demo_credential(server), server.base_url
        else:
            if args.demo_records is not None or args.demo_seed is not None:
                raise UsageError("--demo-records and --demo-seed need --demo")
            base_url = args.base_url or context.environ.get(ENV_BASE_URL, "")
            if not base_url:
                raise UsageError(f"no API address: set {ENV_BASE_URL} or pass --base-url")
            api_key = resolve_api_key(args, context.environ)
            if api_key is None:
                token = resolve_credential(args, context.environ)
                context.log.secrets += _secrets_of(token)
                credential = {"token": token, "api": args.api}
            else:
                context.log.secrets.append(api_key)
                credential = {"api_key": api_key, "api": args.api}
            options["vbot_id"] = args.vbot_id or context.environ.get(ENV_VBOT_ID) or None
            options["project_code"] = (
                args.project_code or context.environ.get(ENV_PROJECT_CODE) or None
            )
        try:
            client = VBotClient(base_url=base_url, **credential, **options)
        except (TypeError, ValueError) as exc:
            message = str(exc).replace("allow_insecure_http=True", "--allow-insecure-http")
            raise UsageError(message) from None
        yield await stack.enter_async_context(client)


def _secrets_of(credential: str | PasswordAuth) -> list[str]:
    """What no line or summary of the run may show, should a message ever carry it."""
    if isinstance(credential, str):
        return [credential]
    # The password the login uses, whether from $VBOT_PASSWORD or typed at the prompt.
    return [credential._password]


def _demo_credential(server: FakeVBotServer) -> dict[str, Any]:
    """The credential of the demo server's dialect."""
    if server.api == "v2":
        return {"token": server.token, "api": "v2"}
    return {"api_key": server.api_key, "api": server.api}


def _call_filter(args: argparse.Namespace) -> CallFilter:
    criteria = {name: getattr(args, name) for name, *_ in _FILTERS}
    try:
        return CallFilter(**criteria)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


# -- export ------------------------------------------------------------------------------------


def _output_format(args: argparse.Namespace) -> OutputFormat:
    try:
        return choose_format(args.out, args.format, excel=args.excel)
    except OutputError as exc:
        raise UsageError(str(exc)) from None


def _progress_bar(args: argparse.Namespace, label: str) -> tqdm[Any]:
    return tqdm(
        desc=label,
        unit=" calls",
        unit_scale=True,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=args.quiet or not sys.stderr.isatty(),
    )


@contextlib.asynccontextmanager
async def _progress_lines(args: argparse.Namespace, context: _Context) -> AsyncIterator[None]:
    """Log a progress line every interval while the block runs, when stderr is no terminal.

    A scheduler's log (cron mail, Airflow, Kubernetes) shows no progress bar: these lines
    show that a long run is alive, and how far it got.
    """
    if args.quiet or sys.stderr.isatty():
        yield
        return
    interval = progress_interval(context.environ)

    async def tick() -> None:
        while True:
            await asyncio.sleep(interval)
            text, numbers = context.summary.progress()
            context.log.event(text, event="progress", **numbers)

    ticker = asyncio.create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


@contextlib.contextmanager
def _reporting(
    command: str,
    context: _Context,
    name: str,
    *,
    failed: Callable[[], str],
    stopped: Callable[[], str],
) -> Iterator[None]:
    """Turn what stops a command midway into its one-line message.

    ``failed`` (after an API error) and ``stopped`` (after a signal) say what that leaves in
    the output; they are asked once the output has been closed.
    """
    written = context.summary
    try:
        yield
    except VBotError as exc:
        raise CommandError(
            f"{command} failed after {written.records} calls ({failed()}): {exc}"
        ) from exc
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise CommandError(f"cannot write {name}: {exc.strerror or exc}") from None
    except asyncio.CancelledError:
        if context.stopped_by is not None:
            raise Interrupted(
                f"{_stop_name(context.stopped_by)} after {written.records} calls ({stopped()})"
            ) from None
        raise


def _show_windows(bar: tqdm[Any], label: str, stats: IterationStats) -> None:
    current = min(stats.windows_done + 1, stats.windows)
    bar.set_description_str(f"{label} window {current}/{stats.windows}", refresh=False)


def _left_behind(result: ExportFile) -> str:
    """What an export that did not complete leaves, for its message."""
    if result.target == Path("-"):
        return "standard output holds them, whole lines only"
    kept = "nothing was written"
    if result.partial is not None:
        kept = f"{result.partial} holds them, whole lines only"
    return f"{kept}; {result.target} was not touched"


async def _export(args: argparse.Namespace, context: _Context) -> int:
    call_filter = _call_filter(args)
    out_format = _output_format(args)
    summary = context.summary
    started = time.monotonic()
    async with open_client(args, context) as client:
        if args.window is not None and call_filter.start_date is None:
            raise UsageError("--window needs --start-date, where the first window begins")
        try:
            pages = client.iter_call_pages(
                call_filter,
                limit=args.limit,
                page_size=args.page_size,
                concurrency=args.concurrency,
                window=args.window,
            )
        except ValueError as exc:  # a --window shorter than --time-unit
            raise UsageError(str(exc)) from None
        summary.stats = pages.stats
        to_file = args.out not in (None, "-")
        result = ExportFile(Path(args.out or "-"))
        with contextlib.ExitStack() as stack:
            left_behind = functools.partial(_left_behind, result)
            stack.enter_context(
                _reporting(
                    "export", context, args.out or "-", failed=left_behind, stopped=left_behind
                )
            )
            # Runs once the file is closed, renamed or kept as partial, whatever the outcome.
            stack.callback(_record_file, summary, result)
            output = stack.enter_context(
                export_file(result.target, out_format, result)
                if to_file
                else stream_output(sys.stdout.buffer, out_format)
            )
            bar = stack.enter_context(_progress_bar(args, "export"))
            async with _progress_lines(args, context), pages:
                async for page in pages:
                    if args.window is not None:
                        _show_windows(bar, "export", pages.stats)
                    elif summary.expected is None and pages.total is not None:
                        summary.expected = (
                            pages.total if args.limit is None else min(pages.total, args.limit)
                        )
                        bar.total = summary.expected
                    output.write(page)
                    summary.records += len(page)
                    bar.update(len(page))
    if not args.quiet:
        elapsed = time.monotonic() - started
        context.log.say(f"exported {summary.records} calls to {output.name} in {elapsed:.1f}s")
    return 0


def _record_file(summary: RunSummary, result: ExportFile) -> None:
    if result.complete:
        summary.files.append(str(result.target))
    elif result.partial is not None:
        summary.partial_files.append(str(result.partial))


# -- sync --------------------------------------------------------------------------------------


def _sync_target(out: str, sync: CallSync, out_format: str, time_unit: str) -> Path:
    """``--out`` itself, or in a directory (``DIR/``), a file named after what this run reads."""
    path = Path(out)
    if not (out.endswith(("/", os.sep)) or path.is_dir()):
        return path
    if not path.is_dir():
        raise UsageError(f"the output directory {out} does not exist")
    scale = 1000 if time_unit == "ms" else 1

    def stamp(epoch: int) -> str:
        moment = dt.datetime.fromtimestamp(epoch / scale, dt.timezone.utc)
        return moment.strftime("%Y%m%dT%H%M%SZ")

    first, last = sync.windows[0][0], sync.windows[-1][1]
    return path / f"calls-{stamp(first)}-{stamp(last)}.{out_format}"


def _sync_format(args: argparse.Namespace) -> OutputFormat:
    if args.out.endswith(("/", os.sep)) or os.path.isdir(args.out):
        # A directory gets a file per run, named for the format: JSON Lines unless told.
        return OutputFormat(args.format or "jsonl", excel=args.excel)
    out_format = _output_format(args)
    if out_format.gzip or out_format.name == "parquet":
        raise UsageError("sync appends uncompressed JSON Lines or CSV; export writes the others")
    return out_format


def _sync_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of a sync, to a file or into a database."""
    return {
        "lookback": args.lookback,
        "settle": args.settle,
        "window": args.window,
        "reset": args.reset,
        "page_size": args.page_size,
        "concurrency": args.concurrency,
    }


async def _commit(sync: CallSync, stream: IO[bytes]) -> None:
    """Make the output durable, then move the state past it."""
    await asyncio.to_thread(make_durable, stream)
    await sync.commit()
    logger.info(
        "sync: window %d of %d committed; state saved in %s (watermark %s)",
        sync.stats.windows_done,
        len(sync.windows),
        sync.path,
        sync.watermark,
    )


async def _sync(args: argparse.Namespace, context: _Context) -> int:
    if args.to is not None:
        return await _sync_to_database(args, context)
    if args.out in (None, "-"):
        raise UsageError("sync needs --out DIR/ or FILE: the state follows only fsynced output")
    call_filter = _call_filter(args)
    out_format = _sync_format(args)
    summary = context.summary
    started = time.monotonic()
    async with open_client(args, context) as client:
        try:
            sync = client.sync(args.state, call_filter, **_sync_options(args))
        except StateError as exc:  # before any request: the state or the filters must change
            raise UsageError(f"{exc} (see --reset and --start-date)") from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        summary.stats = sync.stats
        if not sync.windows:
            if not args.quiet:
                context.log.say(f"nothing to sync yet: {args.state} is up to date")
            return 0
        target = _sync_target(args.out, sync, out_format.name, client.time_unit)
        resumed = sync.watermark

        def resumes() -> str:
            # Only a commit made by this run is claimed: a failure before it saved nothing.
            if sync.watermark == resumed:
                return "nothing was saved: the next run starts where this one did"
            return "the state is saved up to the last whole window; the next run resumes there"

        with contextlib.ExitStack() as stack:
            stack.enter_context(
                _reporting("sync", context, str(target), failed=resumes, stopped=resumes)
            )
            stream = stack.enter_context(append_file(target))
            new_file = drop_torn_tail(stream) == 0
            output = append_output(stream, out_format, str(target), new=new_file)
            bar = stack.enter_context(_progress_bar(args, "sync"))
            async with _progress_lines(args, context), sync:
                try:
                    async for record in sync:
                        if sync.committable:  # the calls written so far end a window
                            await _commit(sync, stream)
                        output.write([record])
                        summary.records += 1
                        bar.update(1)
                        _show_windows(bar, "sync", sync.stats)
                except VBotError:
                    # The windows written in full before the failure are kept, so that the
                    # next run does not append their calls again.
                    if sync.committable:
                        await _commit(sync, stream)
                    raise
                await _commit(sync, stream)
    if new_file and not summary.records and target != Path(args.out):
        target.unlink()  # a run's file in DIR/ holds its new calls; there were none
    elif summary.records:
        summary.files.append(str(target))
    if not args.quiet:
        elapsed = time.monotonic() - started
        where = f" to {target}" if summary.records else ""
        context.log.say(
            f"synced {summary.records} new calls{where} in {elapsed:.1f}s "
            f"({len(sync.windows)} windows); state saved in {args.state}"
        )
    return 0


async def _sync_to_database(args: argparse.Namespace, context: _Context) -> int:
    if args.out not in (None, "-"):
        raise UsageError("--to loads the calls into the database: drop --out")
    if args.format is not None or args.excel:
        raise UsageError(
            "--to loads the calls into the database: --format and --excel are for --out"
        )
    with _removed_if_refused(args.to):
        return await _load_into_database(args, context)


@contextlib.contextmanager
def _removed_if_refused(url: str) -> Iterator[None]:
    """Remove the database file of ``url`` (and its journals) if it is new and the run is
    refused: a refused run leaves no new file behind."""
    try:
        target = parse_database_url(url)
    except ValueError:
        target = None  # sync_to_database says what is wrong with it
    files = []
    if target is not None and target.backend != "postgresql":
        path = Path(target.target)
        candidates = [path, *(Path(f"{path}{end}") for end in ("-journal", "-wal", ".wal"))]
        files = [file for file in candidates if not file.exists()]
    try:
        yield
    except UsageError:
        for file in files:
            file.unlink(missing_ok=True)
        raise


async def _load_into_database(args: argparse.Namespace, context: _Context) -> int:
    summary = context.summary
    started = time.monotonic()
    followed: list[CallSync] = []

    def follow(sync: CallSync) -> None:
        followed.append(sync)
        summary.stats = sync.stats

    async with open_client(args, context) as client:
        try:
            async with _progress_lines(args, context):
                done = await sync_to_database(
                    client,
                    args.to,
                    _call_filter(args),
                    table=args.table,
                    watch=follow,
                    **_sync_options(args),
                )
        except StateError as exc:  # before any request: the state or the filters must change
            raise UsageError(f"{exc} (see --reset and --start-date)") from None
        except ValueError as exc:  # a bad URL or bad options, before anything is opened
            raise UsageError(str(exc)) from None
        finally:
            # The calls read so far: the summary of a run that fails or is stopped says it.
            summary.records = followed[0].stats.yielded if followed else 0
    summary.records = done.loaded
    summary.tables.append(f"{done.database} {done.table}")
    if done.without_trans_id:
        context.log.say(f"warning: {done.without_trans_id} calls without trans_id were not loaded")
    if not args.quiet:
        elapsed = time.monotonic() - started
        context.log.say(
            f"synced {done.loaded} calls into {done.table} in {done.database} in {elapsed:.1f}s "
            f"({done.windows} windows, each committed with the state)"
        )
    return 0


# -- the other commands ------------------------------------------------------------------------


async def _count_calls(args: argparse.Namespace, context: _Context) -> int:
    call_filter = _call_filter(args)
    async with open_client(args, context) as client:
        try:
            total = await client.count_calls(call_filter)
        except ValueError as exc:  # a filter the dialect does not have
            raise UsageError(str(exc)) from None
    print(total)
    context.summary.expected = total
    return 0


async def _conversation(args: argparse.Namespace, context: _Context) -> int:
    async with open_client(args, context) as client:
        conversation = await client.get_bot_conversation(args.trans_id, bot_id=args.bot_id)
    print(conversation.raw)
    return 0


async def _schema(args: argparse.Namespace, context: _Context) -> int:
    sys.stdout.buffer.write(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2) + b"\n")
    return 0


async def _arrive_every_second(server: FakeVBotServer, rate: float) -> None:
    """Write ``rate`` new calls a second into ``server``, created now, until cancelled."""
    due = 0.0
    while True:
        await asyncio.sleep(min(1.0, 1.0 / rate))
        due += rate * min(1.0, 1.0 / rate)
        if due >= 1:
            calls = server.arrive_now(int(due))
            due -= int(due)
            logger.debug("serve-fake: %d new calls, the last %s", len(calls), calls[-1]["trans_id"])


async def _serve_fake(args: argparse.Namespace, context: _Context) -> int:
    server = FakeVBotServer(
        count=args.records,
        seed=args.seed,
        token=args.token,
        api=args.api,
        first_page=args.first_page,
        latency=args.latency,
        max_page_size=args.max_page_size,
        fault_mix=args.faults,
        host=args.host,
        port=args.port,
    )
    try:
        async with server:
            # Shell syntax, so the two lines can be pasted into another terminal as they are.
            print(f"export {ENV_BASE_URL}={server.base_url}")
            if server.api == "v2":
                print(f"export {ENV_TOKEN}={server.token}", flush=True)
            else:
                print(f"export {ENV_API_KEY}={server.api_key}", flush=True)
            if server.api == "v3-legacy":
                context.log.say("it speaks v3-legacy: pass --api v3-legacy to the client commands")
            arriving = ""
            if args.arrivals_per_second:
                arriving = f", {args.arrivals_per_second:g} new calls a second"
            context.log.say(
                f"serving {args.records} fake calls on {server.base_url}{arriving}; Ctrl-C stops"
            )
            if args.arrivals_per_second:
                await _arrive_every_second(server, args.arrivals_per_second)
            await asyncio.Event().wait()
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    except asyncio.CancelledError:
        if context.stopped_by is None:
            raise
    return 0


# -- running -----------------------------------------------------------------------------------

#: The signals that stop a run the way Ctrl-C does; the exit status is 128 + the number.
STOP_SIGNALS: Final = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def _stop_name(signum: int) -> str:
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


@contextlib.contextmanager
def _signals_cancel(task: asyncio.Task[Any], context: _Context) -> Iterator[None]:
    """Turn Ctrl-C, SIGTERM and SIGHUP into cancelling ``task``: it stops at an ``await``,
    never mid-write, and the command's cleanup (closing files, cancelling requests) runs."""
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        if context.stopped_by is None:
            context.stopped_by = signum
            task.cancel()

    installed = []
    try:
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, stop, signum)
            installed.append(signum)
    except (NotImplementedError, RuntimeError, ValueError):
        # No loop signal handlers here (Windows, or not the main thread): Ctrl-C stays a
        # KeyboardInterrupt, which main() reports.
        pass
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _run(args: argparse.Namespace, context: _Context) -> int:
    """Run the command; map its outcome to the exit status, and report it in one line."""
    task = asyncio.current_task()
    assert task is not None
    run: Command = args.run
    log = context.log
    with _signals_cancel(task, context):
        try:
            return await run(args, context)
        except UsageError as exc:
            context.error = exc
            log.say(f"error: {exc}", level="error")
            return EXIT_USAGE
        except Interrupted as exc:
            context.error = exc
            log.say(str(exc), level="error")
            return _stopped_status(context)
        except CommandError as exc:
            context.error = exc
            log.say(str(exc), level="error")
            return EXIT_FAILED
        except VBotError as exc:
            context.error = exc
            log.say(f"{args.command} failed: {exc}", level="error")
            return EXIT_FAILED
        except asyncio.CancelledError:
            if context.stopped_by is None:
                raise
            context.error = Interrupted(_stop_name(context.stopped_by))
            log.say(_stop_name(context.stopped_by), level="error")
            return _stopped_status(context)


def _stopped_status(context: _Context) -> int:
    return 128 + (context.stopped_by or signal.SIGINT)


def _log_level(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``-v`` (info), else ``$VBOT_CDR_LOG``, else warning."""
    if getattr(args, "verbose", False):
        return logging.INFO
    name = environ.get(ENV_LOG, "").strip().lower()
    if name and name not in LOG_LEVELS:
        raise UsageError(f"{ENV_LOG} must be one of {', '.join(LOG_LEVELS)}, got {name!r}")
    return LOG_LEVELS.get(name, logging.WARNING)


def _silence_stdout() -> NoReturn:
    # The reader of our output went away (``vbot-cdr export | head``): stop quietly, and keep
    # Python from failing again when it flushes stdout at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(EXIT_FAILED)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vbot-cdr`` with ``argv`` (default: the process's arguments); return the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except _BadOptions as exc:
        _summarize_bad_options(sys.argv[1:] if argv is None else argv, exc)
        raise
    context = _Context(
        os.environ,
        log=RunLog(json=getattr(args, "log_format", "text") == "json"),
        summary=RunSummary(args.command),
    )
    status = EXIT_FAILED
    try:
        level = _log_level(args, os.environ)
    except UsageError as exc:
        context.log.say(f"error: {exc}", level="error")
        return EXIT_USAGE
    try:
        with context.log.capturing(level):
            status = asyncio.run(_run(args, context))
    except KeyboardInterrupt as exc:
        context.error = exc
        context.log.say("interrupted", level="error")
        status = EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
    finally:
        _write_summary(args, context, status)
    return status


def _summarize_bad_options(argv: Sequence[str], error: _BadOptions) -> None:
    """Write ``--summary``, if the options name one, for options that did not parse."""
    finder = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    finder.add_argument("--summary", type=Path)
    with contextlib.suppress(SystemExit):
        args, _ = finder.parse_known_args(argv)
        if args.summary is not None:
            # Only a command's name: any other word may be the value of a secret option.
            command = next((arg for arg in argv if arg in COMMANDS), "?")
            summary = RunSummary(command)
            summary.finish(EXIT_USAGE, UsageError(error.message), ())
            with contextlib.suppress(OSError):
                summary.write(args.summary)


def _write_summary(args: argparse.Namespace, context: _Context, status: int) -> None:
    path: Path | None = getattr(args, "summary", None)
    if path is None:
        return
    context.summary.finish(status, context.error, context.log.secrets)
    try:
        context.summary.write(path)
    except OSError as exc:
        context.log.say(f"cannot write the summary {path}: {exc.strerror or exc}", level="error")
