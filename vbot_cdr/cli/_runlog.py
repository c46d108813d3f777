"""What a command-line run tells those watching it: log lines, progress lines and its summary.

- `RunLog`: the stderr of a run, as text for people or as JSON objects for machines
  (``--log-format``), every log line with an ISO 8601 timestamp. It also carries the
  library's log records (retries, rate-limit waits, repairs), at the level ``-v`` or
  ``VBOT_CDR_LOG`` sets.
- `RunSummary`: the one JSON object ``--summary FILE`` receives when the run ends, whatever
  the outcome; `RunSummary.progress` is the line printed every `PROGRESS_INTERVAL` seconds
  when stderr is not a terminal.

This sits above the client; it imports the defining private modules, never the package face.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Final

import attrs
import orjson
from tqdm.contrib.logging import logging_redirect_tqdm

from .._redact import redact
from .._stats import IterationStats
from .._table import DEFAULT_TZ, zone

__all__ = [
    "ENV_LOG",
    "ENV_PROGRESS_INTERVAL",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "PROGRESS_INTERVAL",
    "RunLog",
    "RunSummary",
    "redact",
]

#: Sets the log level without flags, as ``OPENAI_LOG`` does: ``debug``, ``info`` or ``warning``.
ENV_LOG: Final = "VBOT_CDR_LOG"
#: Seconds between progress lines; not documented in ``--help``: tests shorten it.
ENV_PROGRESS_INTERVAL: Final = "VBOT_CDR_PROGRESS_INTERVAL"
#: Seconds between progress lines when stderr is not a terminal.
PROGRESS_INTERVAL: Final = 30.0

LOG_FORMATS: Final = ("text", "json")
LOG_LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
}

_LOGGER: Final = "vbot_cdr"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _default_zone() -> dt.tzinfo:
    return zone(DEFAULT_TZ)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


class _Formatter(logging.Formatter):
    def __init__(self, run_log: RunLog):
        super().__init__()
        self._run_log = run_log

    def format(self, record: logging.LogRecord) -> str:
        moment = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
        return self._run_log.line(record.getMessage(), level=record.levelname.lower(), at=moment)


@attrs.define
class RunLog:
    """The stderr of one run.

    Attributes:
        json: One JSON object per line instead of text.
        secrets: Strings never written (tokens, passwords), hidden (see `redact`).
        stream: Where lines go (stderr).
        tz: The zone of the lines' times (``--tz``), never the machine's.
    """

    json: bool = False
    secrets: list[str] = attrs.field(factory=list)
    stream: IO[str] = attrs.field(factory=lambda: sys.stderr)
    tz: dt.tzinfo = attrs.field(factory=_default_zone)

    def line(
        self, message: str, *, level: str = "info", at: dt.datetime | None = None, **fields: Any
    ) -> str:
        """One line: ``<time> <LEVEL> <message>``, or a JSON object of those and ``fields``."""
        message = redact(message, self.secrets)
        moment = _iso((at or _now()).astimezone(self.tz))
        if self.json:
            entry = {"time": moment, "level": level, "message": message, **fields}
            return orjson.dumps(entry).decode()
        return f"{moment} {level.upper()} {message}"

    def event(self, message: str, *, level: str = "info", **fields: Any) -> None:
        """Write one log line now, whatever the log level (progress lines)."""
        print(self.line(message, level=level, **fields), file=self.stream, flush=True)

    def say(self, message: str, *, level: str = "info") -> None:
        """The line a command ends with, or an error: ``vbot-cdr: message`` for people."""
        if self.json:
            self.event(message, level=level)
        else:
            print(f"vbot-cdr: {redact(message, self.secrets)}", file=self.stream, flush=True)

    @contextlib.contextmanager
    def capturing(self, level: int) -> Iterator[None]:
        """Write the library's log records at ``level`` and above as lines of this log."""
        logger = logging.getLogger(_LOGGER)
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(_Formatter(self))
        previous = logger.level
        logger.addHandler(handler)
        logger.setLevel(level)
        try:
            # Log lines go above the progress bar instead of through it.
            with logging_redirect_tqdm(loggers=[logger]):
                yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(previous)


def progress_interval(environ: Mapping[str, str]) -> float:
    """Seconds between progress lines: `PROGRESS_INTERVAL`, unless `ENV_PROGRESS_INTERVAL`."""
    try:
        value = float(environ.get(ENV_PROGRESS_INTERVAL, PROGRESS_INTERVAL))
    except ValueError:
        return PROGRESS_INTERVAL
    return value if value > 0 else PROGRESS_INTERVAL


@attrs.define
class RunSummary:
    """What one run did, for ``--summary FILE``.

    The command fills it in as it goes: ``stats`` are the counters of its iteration, the
    files and tables it wrote are listed as they are written (a database sink appends its
    tables to ``tables``), and `finish` records the outcome. ``tz`` is the zone of the run
    (``--tz``): the summary's times are in it, and it names it. ``listen`` puts what its
    receiver and its pulls saw in ``webhooks`` (left out of the JSON when ``None``).
    """

    command: str
    tz: dt.tzinfo = attrs.field(factory=_default_zone, kw_only=True)
    started_at: dt.datetime = attrs.field(factory=_now)
    ended_at: dt.datetime | None = None
    records: int = 0
    expected: int | None = None
    #: Calls read but not written: no ``trans_id``, so no key to load them exactly once by.
    without_trans_id: int = 0
    stats: IterationStats | None = None
    files: list[str] = attrs.field(factory=list)
    tables: list[str] = attrs.field(factory=list)
    partial_files: list[str] = attrs.field(factory=list)
    complete: bool = False
    exit_code: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    webhooks: dict[str, Any] | None = None

    def finish(self, exit_code: int, error: BaseException | None, secrets: Iterable[str]) -> None:
        """Record how the run ended; the error's message has ``secrets`` redacted."""
        self.ended_at = _now()
        self.exit_code = exit_code
        self.complete = exit_code == 0
        if error is not None:
            self.error_type = type(error).__name__
            self.error_message = redact(str(error), secrets)

    def progress(self) -> tuple[str, dict[str, Any]]:
        """The progress line of the run so far, and its numbers."""
        elapsed = (_now() - self.started_at).total_seconds()
        numbers = self._counters()
        # A database load counts its calls when it ends; until then, those read so far.
        records = max(self.records, self.stats.yielded if self.stats else 0)
        text = f"{self.command}: {records} calls"
        if self.expected is not None:
            text += f" of {self.expected}"
        text += f", {numbers['pages']} pages, {numbers['requests']} requests"
        text += f", {numbers['retries']} retries"
        if numbers["windows"]:
            text += f", window {numbers['windows_done']}/{numbers['windows']} done"
        return f"{text}, {elapsed:.0f}s", {"records": records, **numbers, "elapsed_s": elapsed}

    def _counters(self) -> dict[str, int]:
        stats = self.stats or IterationStats()
        return {
            "pages": stats.pages,
            "requests": stats.requests,
            "retries": stats.retries,
            "windows": stats.windows,
            "windows_done": stats.windows_done,
        }

    def to_json(self) -> dict[str, Any]:
        """The summary as one JSON object (times ISO 8601, durations in seconds)."""
        numbers = self._counters()
        ended = self.ended_at or _now()
        webhooks = {} if self.webhooks is None else {"webhooks": self.webhooks}
        return {
            "command": self.command,
            "tz": str(self.tz),
            "started_at": _iso(self.started_at.astimezone(self.tz)),
            "ended_at": _iso(ended.astimezone(self.tz)),
            "duration_s": round((ended - self.started_at).total_seconds(), 3),
            "records": self.records,
            "pages": numbers["pages"],
            "requests": numbers["requests"],
            "retries": numbers["retries"],
            "windows": {"planned": numbers["windows"], "done": numbers["windows_done"]},
            "files": self.files,
            "partial_files": self.partial_files,
            "tables": self.tables,
            "complete": self.complete,
            "counts": {
                "written": self.records,
                "expected": self.expected,
                "without_trans_id": self.without_trans_id,
            },
            "exit_code": self.exit_code,
            "error": (
                None
                if self.error_type is None
                else {"type": self.error_type, "message": self.error_message}
            ),
            **webhooks,
        }

    def write(self, path: Path) -> None:
        """Write the summary to ``path`` atomically (a temporary file renamed into place).

        Raises:
            OSError: It cannot be written.
        """
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        try:
            with open(descriptor, "wb") as stream:
                stream.write(orjson.dumps(self.to_json(), option=orjson.OPT_APPEND_NEWLINE))
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
