"""The ``vbot-cdr`` command line: export, count and read VBot call history.

Usage::

    vbot-cdr export [--out FILE] [--format jsonl|csv] [FILTERS] [--limit N] [--window 1d] ...
    vbot-cdr sync --state FILE --out DIR_OR_FILE [FILTERS] [--lookback 10m] [--reset] ...
    vbot-cdr sync --to postgresql://...|duckdb:///PATH|sqlite:///PATH [--table T] [FILTERS] ...
    vbot-cdr count [FILTERS]
    vbot-cdr conversation TRANS_ID [--bot-id BOT]
    vbot-cdr serve-fake [--records N] [--latency SECONDS] [--port PORT] ...

The client commands read the API's address and credentials from the environment
(``VBOT_BASE_URL``, ``VBOT_TOKEN``, ``VBOT_ID``, ``VBOT_PROJECT_CODE``) or from options
(``--base-url``, ``--token-file``, ``--vbot-id``, ``--project-code``); with ``--demo`` they
run against an in-process fake server with generated data instead. Without a token they log
in as ``VBOT_USERNAME`` with ``VBOT_PASSWORD``, or with a password asked for without echo
when a terminal is attached. Neither the token nor the password is ever printed, or taken as
an option value (other users of the machine can read command lines).

Exit status: 0 success; 1 the command failed (the API refused, the network failed, the output
could not be written), with one line on stderr saying what failed, with the server's code and
message; 2 bad options or configuration; 130 interrupted (Ctrl-C), after which the output file
holds only complete lines.

Output of ``export``: JSON Lines (default) is one JSON object per call, in the API's shape
(`CallRecord.to_dict`). CSV (``--format csv``, or an ``--out`` ending in ``.csv``) is UTF-8
with a header row; it flattens each call into `CSV_COLUMNS`:

- top-level fields are columns of the same name, in the API document's order;
- ``member`` and ``hotline`` become dotted columns (``member.name``, ``member.color``,
  ``member.vbot_id``, ``hotline.code``, ``hotline.name``, ``hotline.phone_number``);
- ``call_collected_data`` stays one column holding its JSON array;
- the last column, ``extras``, holds the fields the API document does not list, as a JSON
  object (empty when there are none);
- null is an empty cell, booleans are ``true``/``false``, times stay the epoch numbers the
  server sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import getpass
import io
import logging
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final, NoReturn, Protocol

import attrs
import orjson
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from vbot_cdr import (
    CallFilter,
    CallRecord,
    CallSync,
    Hotline,
    IterationStats,
    Member,
    PasswordAuth,
    StateError,
    VBotClient,
    VBotError,
    sync_to_database,
)
from vbot_cdr.testing import FakeVBotServer, FaultMix

__all__ = ["CSV_COLUMNS", "build_parser", "main", "parse_date", "resolve_credential"]

PROG: Final = "vbot-cdr"
ENV_TOKEN: Final = "VBOT_TOKEN"
ENV_USERNAME: Final = "VBOT_USERNAME"
ENV_PASSWORD: Final = "VBOT_PASSWORD"
ENV_BASE_URL: Final = "VBOT_BASE_URL"
ENV_VBOT_ID: Final = "VBOT_ID"
ENV_PROJECT_CODE: Final = "VBOT_PROJECT_CODE"
DEMO_RECORDS: Final = 10_000

EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

logger = logging.getLogger("vbot_cdr")


class UsageError(Exception):
    """Options or configuration that cannot work; exit status 2."""


class CommandError(Exception):
    """A command that failed for an expected reason; its message is the one line shown."""


class Interrupted(CommandError):
    """Ctrl-C stopped a command; exit status 130."""


@attrs.define
class _Context:
    """What a command gets besides its options."""

    environ: Mapping[str, str]
    interrupted: bool = False


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
_FILTERS: Final[tuple[tuple[str, Callable[[str], Any], str, str], ...]] = (
    ("campaign_code", str, "CODE", "campaign code"),
    ("bot_id", str, "BOT", "bot code"),
    ("member", str, "MEMBER", "member (agent)"),
    ("template_script_code", str, "CODE", "script template code"),
    ("disposition", str, "OUTCOME", "call outcome: ANSWERED, 'NO ANSWER', BUSY, FAILED..."),
    ("key", str, "TEXT", "search keyword"),
    ("start_date", parse_date, "DATE", "earliest creation time (ISO 8601 or Unix epoch)"),
    ("end_date", parse_date, "DATE", "latest creation time (ISO 8601 or Unix epoch)"),
    ("hotline", str, "HOTLINE", "hotline"),
    ("input_log_search", str, "TEXT", "search in the input log"),
    ("status", _status, "N", "call status (an integer)"),
)


def _connection_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--base-url", metavar="URL", help=f"the API's base URL (default: ${ENV_BASE_URL})"
    )
    group.add_argument(
        "--token-file",
        metavar="FILE",
        type=Path,
        help=f"read the access token from FILE's first line (default: ${ENV_TOKEN})",
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
        default="s",
        help="unit of the epoch dates sent for date filters (default: s)",
    )
    group.add_argument(
        "--timeout",
        type=_timeout,
        default=30.0,
        metavar="SECONDS",
        help="time one request may take (default: 30)",
    )
    group.add_argument("-v", "--verbose", action="store_true", help="log retries and warnings")
    demo = parser.add_argument_group("demo")
    demo.add_argument(
        "--demo",
        action="store_true",
        help="run against an in-process fake server with generated data (no account needed)",
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


def _filter_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("filters (only those given are sent)")
    for name, kind, metavar, text in _FILTERS:
        group.add_argument(
            "--" + name.replace("_", "-"), dest=name, type=kind, metavar=metavar, help=text
        )
    return parser


def _paging_options(*, limit: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("paging")
    if limit:
        group.add_argument("--limit", type=_count, metavar="N", help="stop after N records")
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


def _output_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("output")
    group.add_argument(
        "-o", "--out", metavar="FILE", help="write to FILE (default, or '-': standard output)"
    )
    group.add_argument(
        "--format",
        choices=("jsonl", "csv"),
        help="JSON Lines or CSV (default: csv if FILE ends in .csv, else jsonl)",
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no summary on stderr"
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vbot-cdr``, one subcommand per command."""
    from vbot_cdr import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Export and inspect the call history of VBot voice-bot campaigns.",
        epilog="Try it without an account: vbot-cdr export --demo --out calls.jsonl",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    connection, filters = _connection_options(), _filter_options()
    paging, output = _paging_options(), _output_options()

    export = commands.add_parser(
        "export",
        parents=[connection, filters, paging, output],
        help="stream every matching call to JSON Lines or CSV",
        description="Stream every call matching the filters to JSON Lines or CSV.",
    )
    _add_window(export, None, shown="none")
    export.set_defaults(run=_export)

    sync = commands.add_parser(
        "sync",
        parents=[connection, filters, _paging_options(limit=False), output],
        help="append the calls that are new since the last sync",
        description=(
            "Append the calls created since the last sync to --out (a directory: one new "
            "file per run; a file: appended to), and keep where it stopped in --state. The "
            "state moves only after the output is flushed and fsynced, window by window, so "
            "a run that dies is resumed by the next without losing a call. The first run "
            "starts at --start-date."
        ),
    )
    group = sync.add_argument_group("sync")
    where = group.add_mutually_exclusive_group(required=True)
    where.add_argument("--state", type=Path, metavar="FILE", help="the JSON state file")
    where.add_argument(
        "--to",
        metavar="URL",
        help=(
            "load into a database table instead of --out, each call exactly once, the state "
            "kept in the same database: postgresql://USER@HOST/DB, duckdb:///PATH, "
            "sqlite:///PATH, or a path ending in .duckdb, .db or .sqlite"
        ),
    )
    group.add_argument(
        "--table", default="vbot_calls", help="the table of calls for --to (default: vbot_calls)"
    )
    group.add_argument(
        "--reset",
        action="store_true",
        help="ignore the state file (unusable, or made for other filters): start at --start-date",
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
        parents=[connection, filters],
        help="print how many calls match",
        description="Print how many calls match the filters (countAll).",
    )
    count.set_defaults(run=_count_calls)

    conversation = commands.add_parser(
        "conversation",
        parents=[connection],
        help="print the bot conversation of one call",
        description="Print the bot conversation of one call, as the server sends it.",
    )
    conversation.add_argument("trans_id", metavar="TRANS_ID", help="the call's transaction id")
    conversation.add_argument("--bot-id", metavar="BOT", help="the bot code")
    conversation.set_defaults(run=_conversation)

    serve = commands.add_parser(
        "serve-fake",
        help="run the fake VBot server on loopback",
        description="Run the fake VBot server until Ctrl-C; print its URL and token.",
    )
    serve.add_argument("--records", type=_count, default=DEMO_RECORDS, metavar="N")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="default: any free port")
    serve.add_argument("--token", default="fake-vbot-token", help="the token it accepts")
    serve.add_argument("--first-page", type=int, default=1)
    serve.add_argument("--latency", type=_seconds, default=0.0, metavar="SECONDS")
    serve.add_argument("--max-page-size", type=_positive_int, default=1000, metavar="N")
    serve.add_argument(
        "--faults",
        type=_fault_mix,
        metavar="NAME=VALUE,...",
        help="random faults: FaultMix fields, e.g. seed=1,server_error=0.05,rate_limit=0.02",
    )
    serve.set_defaults(run=_serve_fake)
    return parser


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
    """The credential the client authenticates with.

    The first line of ``--token-file`` if given, else ``$VBOT_TOKEN``, else a login as
    ``$VBOT_USERNAME`` with ``$VBOT_PASSWORD`` (asked for without echo if it is unset and
    standard input is a terminal).

    Raises:
        UsageError: No credential is configured.
        CommandError: The token file cannot be read, or is empty.
    """
    if args.token_file is not None:
        try:
            text: str = args.token_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read the token file: {exc}") from None
        token = text.strip().partition("\n")[0].strip()
        if not token:
            raise CommandError(f"the token file {args.token_file} is empty")
        return token
    token = environ.get(ENV_TOKEN, "").strip()
    if token:
        return token
    username = environ.get(ENV_USERNAME, "").strip()
    if not username:
        raise UsageError(
            f"no credentials: set {ENV_TOKEN}, or {ENV_USERNAME} and {ENV_PASSWORD}, "
            "or pass --token-file (or try --demo)"
        )
    password = environ.get(ENV_PASSWORD) or _ask_password(username)
    return PasswordAuth(username, password)


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
    credential: str | PasswordAuth
    async with contextlib.AsyncExitStack() as stack:
        if args.demo:
            server = await stack.enter_async_context(
                FakeVBotServer(
                    count=DEMO_RECORDS if args.demo_records is None else args.demo_records,
                    seed=args.demo_seed or 0,
                    first_page=args.first_page,
                )
            )
            credential, base_url = server.token, server.base_url
        else:
            if args.demo_records is not None or args.demo_seed is not None:
                raise UsageError("--demo-records and --demo-seed need --demo")
            base_url = args.base_url or context.environ.get(ENV_BASE_URL, "")
            if not base_url:
                raise UsageError(f"no API address: set {ENV_BASE_URL} or pass --base-url")
            credential = resolve_credential(args, context.environ)
            options["vbot_id"] = args.vbot_id or context.environ.get(ENV_VBOT_ID) or None
            options["project_code"] = (
                args.project_code or context.environ.get(ENV_PROJECT_CODE) or None
            )
        try:
            client = VBotClient(credential, base_url=base_url, **options)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        yield await stack.enter_async_context(client)


def _call_filter(args: argparse.Namespace) -> CallFilter:
    criteria = {name: getattr(args, name) for name, *_ in _FILTERS}
    try:
        return CallFilter(**criteria)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


# -- export ------------------------------------------------------------------------------------


def _columns() -> tuple[str, ...]:
    columns: list[str] = []
    for field in attrs.fields(CallRecord):
        if field.name == "member":
            columns += [f"member.{f.name}" for f in attrs.fields(Member)]
        elif field.name == "hotline":
            columns += [f"hotline.{f.name}" for f in attrs.fields(Hotline)]
        else:
            columns.append(field.name)
    return tuple(columns)


#: The columns of ``export --format csv``, in order (see the module docstring).
CSV_COLUMNS: Final = _columns()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    return str(value)


def _csv_row(record: CallRecord) -> list[str]:
    data = record.to_dict()
    row: list[str] = []
    for column in CSV_COLUMNS:
        if column == "extras":
            extras = {name: data[name] for name in record.extras}
            row.append(_cell(extras) if extras else "")
            continue
        parent, _, child = column.partition(".")
        value = data.get(parent)
        if child:
            value = value.get(child) if isinstance(value, dict) else None
        row.append(_cell(value))
    return row


class _Writer(Protocol):
    """Turns calls into bytes of one output format."""

    def header(self) -> bytes:
        """What starts the output."""
        ...

    def encode(self, records: Sequence[CallRecord]) -> bytes:
        """Whole lines for ``records``."""
        ...


class _JsonLines:
    """One JSON object per line, in the API's shape."""

    def header(self) -> bytes:
        return b""

    def encode(self, records: Sequence[CallRecord]) -> bytes:
        return b"".join(
            orjson.dumps(record.to_dict(), option=orjson.OPT_APPEND_NEWLINE) for record in records
        )


class _Csv:
    """`CSV_COLUMNS`, one row per call."""

    def _rows(self, rows: list[list[str]] | list[tuple[str, ...]]) -> bytes:
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        return text.getvalue().encode("utf-8")

    def header(self) -> bytes:
        return self._rows([CSV_COLUMNS])

    def encode(self, records: Sequence[CallRecord]) -> bytes:
        return self._rows([_csv_row(record) for record in records])


_FORMATS: Final[Mapping[str, Callable[[], _Writer]]] = {"jsonl": _JsonLines, "csv": _Csv}


@contextlib.contextmanager
def _output(path: str | None, *, append: bool = False) -> Iterator[tuple[IO[bytes], str]]:
    """The binary stream to write to (``append``: readable too), and its name for messages."""
    if path in (None, "-"):
        yield sys.stdout.buffer, "standard output"
        return
    try:
        stream = open(path, "a+b" if append else "wb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    with stream:
        yield stream, path


def _progress(args: argparse.Namespace, label: str) -> tqdm[Any]:
    return tqdm(
        desc=label,
        unit=" calls",
        unit_scale=True,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=args.quiet or not sys.stderr.isatty(),
    )


@contextlib.contextmanager
def _reporting(
    command: str,
    name: str,
    context: _Context,
    written: Callable[[], int],
    *,
    failed: str,
    stopped: str,
) -> Iterator[None]:
    """Turn what stops a command midway into its one-line message.

    ``failed`` (after an API error) and ``stopped`` (after Ctrl-C) say what that leaves in the
    output ``name``.
    """
    try:
        yield
    except VBotError as exc:
        raise CommandError(f"{command} failed after {written()} calls ({failed}): {exc}") from exc
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise CommandError(f"cannot write {name}: {exc.strerror or exc}") from None
    except asyncio.CancelledError:
        if context.interrupted:
            raise Interrupted(f"interrupted after {written()} calls ({stopped})") from None
        raise


def _show_windows(bar: tqdm[Any], label: str, stats: IterationStats) -> None:
    current = min(stats.windows_done + 1, stats.windows)
    bar.set_description_str(f"{label} window {current}/{stats.windows}", refresh=False)


async def _export(args: argparse.Namespace, context: _Context) -> int:
    call_filter = _call_filter(args)
    out_format = args.format or ("csv" if str(args.out).lower().endswith(".csv") else "jsonl")
    writer = _FORMATS[out_format]()
    started = time.monotonic()
    written = 0
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
        with (
            _output(args.out) as (stream, name),
            _progress(args, "export") as bar,
            _reporting(
                "export",
                name,
                context,
                lambda: written,
                failed=f"{name} is incomplete",
                stopped=f"{name} holds them, whole lines only",
            ),
        ):
            stream.write(writer.header())
            async with pages:
                async for page in pages:
                    if args.window is not None:
                        _show_windows(bar, "export", pages.stats)
                    elif bar.total is None and pages.total is not None:
                        bar.total = (
                            pages.total if args.limit is None else min(pages.total, args.limit)
                        )
                    # One write per page: a stop between pages leaves only whole lines.
                    stream.write(writer.encode(page))
                    stream.flush()
                    written += len(page)
                    bar.update(len(page))
    if not args.quiet:
        elapsed = time.monotonic() - started
        _say(f"exported {written} calls to {name} in {elapsed:.1f}s")
    return 0


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


def _drop_torn_tail(stream: IO[bytes]) -> int:
    """Cut off a partial last line, which only a crash mid-write leaves; return the new size.

    The calls of that line were not committed, so this run yields them again.
    """
    size = end = stream.seek(0, os.SEEK_END)
    while end > 0:
        start = max(0, end - 65_536)
        stream.seek(start)
        newline = stream.read(end - start).rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end != size:
        stream.truncate(end)
    return end


async def _commit(sync: CallSync, stream: IO[bytes]) -> None:
    """Make the output durable, then move the state past it."""
    stream.flush()
    await asyncio.to_thread(os.fsync, stream.fileno())
    await sync.commit()


async def _sync(args: argparse.Namespace, context: _Context) -> int:
    if args.to is not None:
        return await _sync_to_database(args, context)
    if args.out in (None, "-"):
        raise UsageError("sync needs --out DIR/ or FILE: the state follows only fsynced output")
    call_filter = _call_filter(args)
    out_format = args.format or ("csv" if str(args.out).lower().endswith(".csv") else "jsonl")
    writer = _FORMATS[out_format]()
    started = time.monotonic()
    written = 0
    async with open_client(args, context) as client:
        try:
            sync = client.sync(
                args.state,
                call_filter,
                lookback=args.lookback,
                settle=args.settle,
                window=args.window,
                reset=args.reset,
                page_size=args.page_size,
                concurrency=args.concurrency,
            )
        except StateError as exc:  # before any request: the state or the filters must change
            raise UsageError(f"{exc} (see --reset and --start-date)") from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not sync.windows:
            if not args.quiet:
                _say(f"nothing to sync yet: {args.state} is up to date")
            return 0
        target = _sync_target(args.out, sync, out_format, args.time_unit)
        resumes = "the state is saved up to the last whole window; the next run resumes there"
        with (
            _output(str(target), append=True) as (stream, name),
            _progress(args, "sync") as bar,
            _reporting("sync", name, context, lambda: written, failed=resumes, stopped=resumes),
        ):
            new_file = _drop_torn_tail(stream) == 0
            if new_file:
                stream.write(writer.header())
            async with sync:
                async for record in sync:
                    if sync.committable:  # the calls written so far end a window
                        await _commit(sync, stream)
                    stream.write(writer.encode([record]))
                    written += 1
                    bar.update(1)
                    _show_windows(bar, "sync", sync.stats)
                await _commit(sync, stream)
    if new_file and not written and target != Path(args.out):
        target.unlink()  # a run's file in DIR/ holds its new calls; there were none
    if not args.quiet:
        elapsed = time.monotonic() - started
        where = f" to {name}" if written else ""
        _say(
            f"synced {written} new calls{where} in {elapsed:.1f}s "
            f"({len(sync.windows)} windows); state saved in {args.state}"
        )
    return 0


async def _sync_to_database(args: argparse.Namespace, context: _Context) -> int:
    if args.out not in (None, "-"):
        raise UsageError("--to loads the calls into the database: drop --out")
    started = time.monotonic()
    async with open_client(args, context) as client:
        try:
            done = await sync_to_database(
                client,
                args.to,
                _call_filter(args),
                table=args.table,
                lookback=args.lookback,
                settle=args.settle,
                window=args.window,
                reset=args.reset,
                page_size=args.page_size,
                concurrency=args.concurrency,
            )
        except StateError as exc:  # before any request: the state or the filters must change
            raise UsageError(f"{exc} (see --reset and --start-date)") from None
        except ValueError as exc:  # a bad URL or bad options, before anything is opened
            raise UsageError(str(exc)) from None
    if done.without_trans_id:
        _say(f"warning: {done.without_trans_id} calls without trans_id were not loaded")
    if not args.quiet:
        elapsed = time.monotonic() - started
        _say(
            f"synced {done.loaded} calls into {done.table} in {done.database} in {elapsed:.1f}s "
            f"({done.windows} windows, each committed with the state)"
        )
    return 0


# -- the other commands ------------------------------------------------------------------------


async def _count_calls(args: argparse.Namespace, context: _Context) -> int:
    call_filter = _call_filter(args)
    async with open_client(args, context) as client:
        total = await client.count_calls(call_filter)
    print(total)
    return 0


async def _conversation(args: argparse.Namespace, context: _Context) -> int:
    async with open_client(args, context) as client:
        conversation = await client.get_bot_conversation(args.trans_id, bot_id=args.bot_id)
    print(conversation.raw)
    return 0


async def _serve_fake(args: argparse.Namespace, context: _Context) -> int:
    server = FakeVBotServer(
        count=args.records,
        seed=args.seed,
        token=args.token,
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
            print(f"export {ENV_TOKEN}={server.token}", flush=True)
            _say(f"serving {args.records} fake calls on {server.base_url}; Ctrl-C stops")
            await asyncio.Event().wait()
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    except asyncio.CancelledError:
        if not context.interrupted:
            raise
    return 0


# -- running -----------------------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _interrupt_cancels(task: asyncio.Task[Any], context: _Context) -> Iterator[None]:
    """Turn Ctrl-C into cancelling ``task``, so it stops at an ``await``, never mid-write."""
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        context.interrupted = True
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, interrupt)
    except (NotImplementedError, RuntimeError, ValueError):
        # No loop signal handlers here (Windows, or not the main thread): Ctrl-C stays a
        # KeyboardInterrupt, which main() reports.
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    context = _Context(environ)
    task = asyncio.current_task()
    assert task is not None
    run: Command = args.run
    with _interrupt_cancels(task, context):
        try:
            return await run(args, context)
        except UsageError as exc:
            _say(f"error: {exc}")
            return EXIT_USAGE
        except Interrupted as exc:
            _say(str(exc))
            return EXIT_INTERRUPTED
        except CommandError as exc:
            _say(str(exc))
            return EXIT_FAILED
        except VBotError as exc:
            _say(f"{args.command} failed: {exc}")
            return EXIT_FAILED
        except asyncio.CancelledError:
            if not context.interrupted:
                raise
            _say("interrupted")
            return EXIT_INTERRUPTED


@contextlib.contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """Show the library's warnings (and with ``verbose`` its retries) as lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        # Log lines go above the progress bar instead of through it.
        with logging_redirect_tqdm(loggers=[logger]):
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _silence_stdout() -> NoReturn:
    # The reader of our output went away (``vbot-cdr export | head``): stop quietly, and keep
    # Python from failing again when it flushes stdout at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(EXIT_FAILED)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vbot-cdr`` with ``argv`` (default: the process's arguments); return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        with _logging(getattr(args, "verbose", False)):
            return asyncio.run(_run(args, os.environ))
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
