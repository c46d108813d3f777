"""The ``vbot-cdr`` command line: export, sync, count, read and receive VBot call history.

Usage::

    vbot-cdr export [--out FILE] [--format jsonl|csv|parquet|xlsx] [--tz ZONE] [FILTERS] ...
    vbot-cdr sync --state FILE --out DIR_OR_FILE [FILTERS] [--lookback 10m] [--reset] ...
    vbot-cdr sync --to postgresql://...|duckdb:///PATH|sqlite:///PATH [--table T] [FILTERS] ...
    vbot-cdr count [FILTERS]
    vbot-cdr conversation TRANS_ID [--bot-id BOT]
    vbot-cdr conversations [--out FILE] [--format jsonl|csv|parquet|xlsx] [FILTERS] ...
    vbot-cdr recordings --out DIR [FILTERS] [--max-bytes N] [--concurrency N] ...
    vbot-cdr schema
    vbot-cdr serve-fake [--records N] [--latency SECONDS] [--arrivals-per-second R] ...
    vbot-cdr listen --to URL [--host H] [--port P] [--path /] [--reconcile-every 10m] ...
    vbot-cdr --print-completion bash|zsh

``vbot-cdr --help`` and the commands' ``--help`` are the manual. One module per concern:

- `_main`: the entry point; every outcome mapped to an exit status in one place.
- `_timezone`: the run's zone (`--tz`), in which dates without an offset are read.
- `_status`: the exit statuses, the errors that pick them, the run's context.
- `_commands`: the command table: options builder and body of each command.
- `_parser`: the options as argparse parsers (help, defaults, suggestions, completion).
- `_values`: how option values are read; `_options`: the typed options of each command.
- `_settings`: environment, secret files and credentials, made into a client (or a demo).
- `_progress`: progress bar and lines; `_runlog`: log lines; `_summary`: ``--summary``.
- `_outputs`: the file formats and files that are never torn.
- `_turns`: the rows of ``conversations``, one per turn.
- One module per command family: `_export`, `_sync_file`, `_sync_database`, `_count`
  (count and conversation), `_bulk` (conversations and recordings), `_print_schema`,
  `_serve_fake`, `_listen` (the webhook receiver).

Imports flow downward: the command modules import the shared steps, never this module, and
none imports the package face `vbot_cdr`; the fake server (`vbot_cdr.testing`) is imported only
for ``--demo`` and ``serve-fake``.
"""

from __future__ import annotations

from ._commands import COMMANDS, parse_options
from ._main import main
from ._outputs import CSV_COLUMNS
from ._parser import build_parser
from ._settings import (
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_PASSWORD,
    ENV_PROJECT_CODE,
    ENV_TOKEN,
    ENV_USERNAME,
    ENV_VBOT_ID,
    resolve_api_key,
    resolve_credential,
)
from ._status import EXIT_STATUSES, CommandError, UsageError
from ._timezone import ENV_TZ
from ._values import parse_date

__all__ = [
    "COMMANDS",
    "CSV_COLUMNS",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "ENV_PASSWORD",
    "ENV_PROJECT_CODE",
    "ENV_TOKEN",
    "ENV_TZ",
    "ENV_USERNAME",
    "ENV_VBOT_ID",
    "EXIT_STATUSES",
    "CommandError",
    "UsageError",
    "build_parser",
    "main",
    "parse_date",
    "parse_options",
    "resolve_api_key",
    "resolve_credential",
]
