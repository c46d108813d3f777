"""The manual: every command's options, with their help and defaults, as argparse parsers.

`build_parser` is what ``vbot-cdr --help`` and each command's ``--help`` print, and what
``vbot-cdr --print-completion bash|zsh`` turns into a shell completion script (shtab). Each
option's ``dest`` is the name of a field of the command's options class
(`vbot_cdr.cli._options`), where the parsed values become typed.

The parsers (`Parser`) never read an abbreviation as an option (``--token`` as
``--token-file``), never echo a value they refuse (it may be a secret passed by mistake),
print the usage of the command that went wrong, and suggest the option or command meant
(``did you mean --page-size?``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import re
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final, NoReturn

import shtab

from .._config import (
    DEFAULT_CONCURRENCY,
    DEFAULT_LOOKBACK,
    DEFAULT_PAGE_SIZE,
    DEFAULT_SETTLE,
    DEFAULT_TIMEOUT,
    DEFAULT_WINDOW,
)
from .._recordings import DEFAULT_MAX_RECORDING_BYTES
from .._table import DEFAULT_TZ
from ._outputs import APPENDABLE, FORMATS, PARQUET_ROW_GROUP
from ._runlog import ENV_LOG, LOG_FORMATS
from ._settings import (
    APIS,
    DEMO_RECORDS,
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_PROJECT_CODE,
    ENV_TOKEN,
    ENV_USERNAME,
    ENV_VBOT_ID,
    ENV_WEBHOOK_HEADER,
    ENVIRONMENT,
)
from ._status import EXIT_STATUSES, EXIT_USAGE
from ._timezone import ENV_TZ
from ._turns import TURN_FORMATS
from ._values import (
    FILTERS,
    count,
    duration,
    fault_mix,
    positive_int,
    push_habits,
    seconds,
    timeout,
    window,
)

__all__ = ["PROG", "BadOptions", "Parser", "build_parser"]

PROG: Final = "vbot-cdr"


class BadOptions(SystemExit):
    """The options did not parse: exit status 2, after argparse's usage and reason."""

    def __init__(self, message: str):
        super().__init__(EXIT_USAGE)
        self.message = message


#: argparse quotes the value of a bad choice, which may be a secret: the value given after an
#: option the parser does not know lands in COMMAND (``vbot-cdr --token SECRET count``).
_BAD_CHOICE: Final = re.compile(r"invalid choice: .*?(?= \(choose from |$)", re.DOTALL)

#: The forms of a database URL (``sync --to``, ``listen --to``), for the help.
_DATABASE_URLS: Final = (
    "postgresql://USER@HOST/DB, duckdb:///PATH, sqlite:///PATH, or a path ending in "
    ".duckdb, .db or .sqlite"
)

#: ``--out`` of the commands that write one file whole (export, conversations).
_WHOLE_FILE_HELP: Final = (
    "write to FILE, replaced only once complete; '-' is standard output (default: standard output)"
)


def _did_you_mean(given: str, known: Sequence[str]) -> str:
    """`` (did you mean X?)`` for the known name closest to ``given``, or nothing."""
    close = difflib.get_close_matches(given, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


class Parser(argparse.ArgumentParser):
    """A parser that refuses abbreviations, hides refused values and suggests names.

    Attributes:
        commands: The parsers of the commands, by name (on the top-level parser).
    """

    def __init__(self, **options: Any):
        super().__init__(allow_abbrev=False, **options)
        self.commands: dict[str, Parser] = {}
        self._hint = ""

    def error(self, message: str) -> NoReturn:
        message = _BAD_CHOICE.sub("invalid choice (value not shown)", message) + self._hint
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise BadOptions(message)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # A misspelt choice (a command, a dialect) gets the closest one as a hint: a name we
        # show, never the value given.
        if action.choices is not None and value not in action.choices:
            self._hint = _did_you_mean(str(value), [str(choice) for choice in action.choices])
        super()._check_value(action, value)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: None = None
    ) -> argparse.Namespace:
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            # Reported by the command's parser, with its usage and its options as hints.
            parser = self.commands[parsed.command] if self.commands else self
            names = sorted({arg.partition("=")[0] for arg in unknown if arg.startswith("-")})
            shown = ", ".join(names) if names else f"{len(unknown)} extra arguments"
            known = [option for action in parser._actions for option in action.option_strings]
            parser._hint = "".join(_did_you_mean(name, known) for name in names)
            parser.error(f"unrecognized arguments: {shown} (values not shown)")
        return parsed


def _complete_files(action: argparse.Action) -> None:
    # The completion scripts offer file names after this option.
    action.complete = shtab.FILE  # type: ignore[attr-defined]


def _run_options() -> Parser:
    parser = Parser(add_help=False)
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
    _complete_files(
        group.add_argument(
            "--summary",
            type=Path,
            metavar="FILE",
            help="when the run ends, whatever the outcome, write one JSON object to FILE: "
            "command, time zone, times, records, pages, requests, retries, windows, files, "
            "complete, exit code, error (default: none)",
        )
    )
    parser.add_argument_group("time").add_argument(
        "--tz",
        metavar="ZONE",
        help="the IANA time zone in which dates without an offset are read and times are shown "
        f"(logs, summary, JSON Lines, CSV, xlsx) (default: ${ENV_TZ}, else {DEFAULT_TZ}, "
        "VBot's own zone; never the machine's)",
    )
    return parser


def _connection_options() -> Parser:
    parser = Parser(add_help=False)
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--base-url", metavar="URL", help=f"the API's base URL (default: ${ENV_BASE_URL})"
    )
    _complete_files(
        group.add_argument(
            "--token-file",
            metavar="FILE",
            type=Path,
            help=f"read the access token from FILE's first line (default: ${ENV_TOKEN}, else a "
            f"login as ${ENV_USERNAME})",
        )
    )
    _complete_files(
        group.add_argument(
            "--api-key-file",
            metavar="FILE",
            type=Path,
            help=f"read the v3 API key from FILE's first line (default: ${ENV_API_KEY})",
        )
    )
    group.add_argument(
        "--api",
        choices=APIS,
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
        type=timeout,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"time one request may take (default: {DEFAULT_TIMEOUT:g})",
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
        type=count,
        metavar="N",
        help=f"how many records the demo server has (default: {DEMO_RECORDS})",
    )
    demo.add_argument(
        "--demo-seed", type=int, metavar="SEED", help="seed of the demo data (default: 0)"
    )
    return parser


def _filter_options() -> Parser:
    parser = Parser(add_help=False)
    group = parser.add_argument_group("filters (only those given are sent)")
    for name, kind, metavar, text, several in FILTERS:
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


def _paging_options(*, limit: bool) -> Parser:
    parser = Parser(add_help=False)
    group = parser.add_argument_group("paging")
    if limit:
        group.add_argument(
            "--limit", type=count, metavar="N", help="stop after N records (default: all)"
        )
    group.add_argument(
        "--concurrency",
        type=positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"requests in flight (default: {DEFAULT_CONCURRENCY})",
    )
    group.add_argument(
        "--page-size",
        type=positive_int,
        default=DEFAULT_PAGE_SIZE,
        metavar="N",
        help=f"records per page (default: {DEFAULT_PAGE_SIZE})",
    )
    return parser


def _add_output_options(
    parser: argparse.ArgumentParser, *, out_help: str, formats: Sequence[str]
) -> None:
    group = parser.add_argument_group("output")
    _complete_files(group.add_argument("-o", "--out", metavar="FILE", help=out_help))
    group.add_argument(
        "--format",
        choices=formats,
        help=f"the output format (default: from FILE's suffix: {_suffixes(formats)}; "
        "any other suffix needs --format)",
    )
    group.add_argument(
        "--excel",
        action="store_true",
        help="CSV for Excel: a UTF-8 byte-order mark (so Vietnamese text shows right), times "
        "as 2025-12-01 07:00:00 in --tz and codes of digits as =\"0912...\" (so Excel keeps "
        "their leading zeros); the same columns (default: off)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar, progress lines or closing line on stderr (default: off)",
    )


def _suffixes(formats: Sequence[str]) -> str:
    """The file names a command reads its format from: only the formats it can write."""
    shown = {
        "jsonl": ".jsonl or .json",
        "csv": ".csv",
        "parquet": ".parquet",
        "xlsx": ".xlsx",
    }
    text = ", ".join(shown[name] for name in formats)
    # JSON Lines and CSV are also written gzipped, except by sync (it appends).
    return text if formats == APPENDABLE else f"{text} (JSON Lines and CSV optionally .gz)"


def _add_window(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: dt.timedelta | None
) -> None:
    shown = "none" if default is None else _shown(default)
    parser.add_argument(
        "--window",
        type=window,
        default=default,
        metavar="DURATION",
        help=(
            "read the date range in windows this long (e.g. 1d), each paged on its own, "
            f"so no page is deep; needs --start-date (default: {shown})"
        ),
    )


def _shown(value: dt.timedelta) -> str:
    """A duration as its option would be written: ``10m``, ``1d``."""
    total = value.total_seconds()
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)):
        if total >= size and not total % size:
            return f"{total // size:g}{unit}"
    return f"{total:g}s"


def _epilog() -> str:
    width = max(len(name) for name, _ in ENVIRONMENT)
    lines = ["environment variables:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in ENVIRONMENT]
    lines += ["", "exit status:"]
    lines += [f"  {status:<3}  {text}" for status, text in EXIT_STATUSES]
    lines += ["", "Try it without an account: vbot-cdr export --demo --out calls.jsonl"]
    return "\n".join(lines)


def build_parser() -> Parser:
    """The argument parser of ``vbot-cdr``, one subcommand per command (``.commands``)."""
    parser = Parser(
        prog=PROG,
        description="Export and inspect the call history of VBot voice-bot campaigns.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('vbot_cdr')}")
    shtab.add_argument_to(
        parser, "--print-completion", help="print a shell completion script (bash, zsh) and exit"
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    connection, filters, run = _connection_options(), _filter_options(), _run_options()

    export = commands.add_parser(
        "export",
        parents=[connection, filters, _paging_options(limit=True), run],
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
        out_help=_WHOLE_FILE_HELP,
        formats=FORMATS,
    )
    _add_window(export, None)

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
        formats=APPENDABLE,
    )
    _add_sync_options(sync)

    commands.add_parser(
        "count",
        parents=[connection, filters, run],
        help="print how many calls match",
        description="Print how many calls match the filters (countAll).",
    )

    conversation = commands.add_parser(
        "conversation",
        parents=[connection, run],
        help="print the bot conversation of one call",
        description="Print the bot conversation of one call, as the server sends it.",
    )
    conversation.add_argument("trans_id", metavar="TRANS_ID", help="the call's transaction id")
    conversation.add_argument("--bot-id", metavar="BOT", help="the bot code (default: not sent)")

    conversations = commands.add_parser(
        "conversations",
        parents=[connection, filters, _paging_options(limit=False), run],
        help="write the bot conversation of every matching call, one row per turn",
        description=(
            "Write the bot conversation of every call matching the filters, one row per turn "
            "(trans_id, turn, role, content, create_at, created), to JSON Lines, CSV, "
            "Parquet or xlsx (a sheet 'turns', create_at an Excel datetime in --tz); a "
            "call without a conversation is one row with no turn. Each call once, "
            "--concurrency conversations asked at a time. A file is replaced only once "
            "complete, as export does."
        ),
    )
    _add_output_options(
        conversations,
        out_help=_WHOLE_FILE_HELP,
        formats=TURN_FORMATS,
    )
    _add_window(conversations, None)

    recordings = commands.add_parser(
        "recordings",
        parents=[connection, filters, _paging_options(limit=False), run],
        help="download the recording of every matching call into a directory",
        description=(
            "Download the recording of every call matching the filters into DIR, one file "
            "per call named by its trans_id and the extension of its Content-Type, each "
            "written whole (NAME.partial, then renamed), with DIR/manifest.jsonl listing "
            "every call: its file, bytes and SHA-256, or why it has none (not found, not "
            "recorded). Run it again to resume: only what is missing or does not match the "
            "manifest is fetched."
        ),
    )
    group = recordings.add_argument_group("output")
    _complete_files(
        group.add_argument(
            "-o",
            "--out",
            metavar="DIR",
            type=Path,
            required=True,
            help="the directory of the recordings and their manifest, made if missing (required)",
        )
    )
    group.add_argument(
        "--max-bytes",
        type=positive_int,
        default=DEFAULT_MAX_RECORDING_BYTES,
        metavar="N",
        help="refuse a recording larger than N bytes (default: "
        f"{DEFAULT_MAX_RECORDING_BYTES // (1024 * 1024)} MiB)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar, progress lines or closing line on stderr (default: off)",
    )
    _add_window(recordings, None)

    commands.add_parser(
        "schema",
        parents=[run],
        help="print the JSON Schema of an exported call",
        description=(
            "Print the JSON Schema of one exported call (a line of JSON Lines), generated "
            "from the library's models. docs/fields.md explains every field."
        ),
    )

    serve = commands.add_parser(
        "serve-fake",
        parents=[run],
        help="run the fake VBot server on loopback",
        description=(
            "Run the fake VBot server until Ctrl-C (or SIGTERM); print its URL and token as "
            "two shell lines to paste into another terminal."
        ),
    )
    _add_serve_fake(serve)

    listen = commands.add_parser(
        "listen",
        parents=[connection, filters, _paging_options(limit=False), run],
        help="receive VBot's webhooks into a database, reconciled by the pull",
        description=(
            "Serve VBot's webhooks (AUTO_CALL_COMPLETE, AUTO_CALL_LOG) over HTTP and commit "
            "each pushed call into the table sync --to loads, before answering 200. Other "
            "events are counted. The request must carry the header configured in VBot's "
            f"console, given as ${ENV_WEBHOOK_HEADER}=\"Name: value\" or in "
            "--webhook-header-file. With --reconcile-every, the pull (as sync --to, with its "
            "own state) runs over every closed window into the same table, finding the calls "
            "never pushed and completing the pushed ones. SIGTERM stops accepting, finishes "
            "the requests in flight, commits, and exits 0."
        ),
    )
    _add_listen(listen)
    parser.commands = dict(commands.choices)
    return parser


def _add_listen(listen: argparse.ArgumentParser) -> None:
    group = listen.add_argument_group("listen")
    group.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help=f"the database, as for sync --to: {_DATABASE_URLS} (required)",
    )
    group.add_argument(
        "--table", default="vbot_calls", help="the table of calls (default: vbot_calls)"
    )
    group.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    group.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    group.add_argument("--path", default="/", help="where VBot posts (default: /)")
    _complete_files(
        group.add_argument(
            "--webhook-header-file",
            type=Path,
            metavar="FILE",
            help=f'read the header "Name: value" from FILE\'s first line (default: '
            f"${ENV_WEBHOOK_HEADER}; one of them is required)",
        )
    )
    group.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="DANGEROUS: accept posts without a header, so anyone who can reach the port "
        "writes calls into the table (default: refused)",
    )
    group.add_argument(
        "--reconcile-every",
        type=window,
        metavar="DURATION",
        help="run the pull over the closed windows at start, then this often (e.g. 10m), "
        "with the connection options and filters (default: never; a cron'd sync --to does "
        "the same)",
    )
    _add_pull_timing(group)


def _add_pull_timing(group: argparse._ArgumentGroup) -> None:
    """``--lookback``, ``--settle``, ``--window``: where a database sync's windows lie."""
    group.add_argument(
        "--lookback",
        type=duration,
        default=DEFAULT_LOOKBACK,
        metavar="DURATION",
        help="how far before the last run's end to look again for late calls "
        f"(default: {_shown(DEFAULT_LOOKBACK)})",
    )
    group.add_argument(
        "--settle",
        type=duration,
        default=DEFAULT_SETTLE,
        metavar="DURATION",
        help="how far behind now to stop, for calls still being written "
        f"(default: {_shown(DEFAULT_SETTLE)})",
    )
    _add_window(group, DEFAULT_WINDOW)


def _add_sync_options(sync: argparse.ArgumentParser) -> None:
    group = sync.add_argument_group("sync")
    where = group.add_mutually_exclusive_group(required=True)
    _complete_files(
        where.add_argument(
            "--state",
            type=Path,
            metavar="FILE",
            help="the JSON state file; this or --to (required)",
        )
    )
    where.add_argument(
        "--to",
        metavar="URL",
        help=(
            "load into a database table instead of --out, each call exactly once, the state "
            f"kept in the same database: {_DATABASE_URLS}; this or --state (required)"
        ),
    )
    group.add_argument(
        "--table", default="vbot_calls", help="the table of calls for --to (default: vbot_calls)"
    )
    group.add_argument(
        "--conversations",
        action="store_true",
        help="with --to: then load the bot conversations of the calls into "
        "vbot_conversation_turns, one row per turn, with a state of their own (its first run "
        "backfills from --start-date) (default: off)",
    )
    group.add_argument(
        "--reset",
        action="store_true",
        help="ignore the state file (unusable, or made for other filters): start at "
        "--start-date (default: off)",
    )
    _add_pull_timing(group)


def _add_serve_fake(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--records",
        type=count,
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
        type=seconds,
        default=0.0,
        metavar="SECONDS",
        help="time every request waits before it is answered (default: 0)",
    )
    serve.add_argument(
        "--max-page-size",
        type=positive_int,
        default=1000,
        metavar="N",
        help="the largest page size accepted (default: 1000)",
    )
    serve.add_argument(
        "--arrivals-per-second",
        type=seconds,
        default=0.0,
        metavar="R",
        help="new calls written per second while it runs, created now, as a live feed for "
        "sync (default: 0)",
    )
    serve.add_argument(
        "--api", choices=APIS, default="v2", help="the dialect it speaks (default: v2)"
    )
    serve.add_argument(
        "--faults",
        type=fault_mix,
        metavar="NAME=VALUE,...",
        help="random faults: FaultMix fields, e.g. seed=1,server_error=0.05,rate_limit=0.02 "
        "(default: none)",
    )
    serve.add_argument(
        "--webhook-url",
        metavar="URL",
        help="post each new call (--arrivals-per-second) to URL as VBot's AUTO_CALL_COMPLETE "
        "webhook (default: none)",
    )
    serve.add_argument(
        "--webhook-header",
        metavar='"NAME: VALUE"',
        help="the static header those posts carry (default: none)",
    )
    serve.add_argument(
        "--webhook-habits",
        type=push_habits,
        metavar="NAME=VALUE,...",
        help="how the posts misbehave: PushHabits fields, e.g. "
        "drop=0.05,duplicate=0.05,reorder=0.1,other_events=0.1,delay=0.2,seed=1 "
        "(default: none)",
    )
