"""The options (`vbot_cdr.cli._parser`, `_values`, `_options`): help and defaults, refused values
never echoed, suggestions, each command's own usage, completion, typed options."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from tests._cli import (
    PATIENCE,
    ROOT,
    SECRET,
    one_line,
    spawn,
    subcommands,
)
from vbot_cdr import CallFilter, cli
from vbot_cdr._config import (
    DEFAULT_CONCURRENCY,
    DEFAULT_LOOKBACK,
    DEFAULT_PAGE_SIZE,
    DEFAULT_SETTLE,
    DEFAULT_TIMEOUT,
    DEFAULT_WINDOW,
)
from vbot_cdr.cli import _options, _values, main, parse_date


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["export", "--limit", "-1"],
        ["export", "--concurrency", "0"],
        ["export", "--format", "xml"],
        ["export", "--start-date", "hôm qua"],
        ["export", "--status", "ANSWERED"],
        ["export", "--timeout", "0"],
        ["export", "--first-page", "2"],
        ["conversation"],
        ["serve-fake", "--faults", "meteor_strike=0.1"],
        ["serve-fake", "--faults", "server_error=2"],
    ],
    ids=lambda argv: " ".join(argv) or "no-command",
)
def test_bad_options(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad options exit 2 with argparse's usage and a one-line reason."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_start_after_end(capsys: pytest.CaptureFixture[str]) -> None:
    """A start date after the end date is refused before any request."""
    assert main(["count", "--demo", "--start-date", "2025-12-02", "--end-date", "2025-12-01"]) == 2
    assert "is after end_date" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1764547200", 1764547200),
        ("2025-12-01T07:00:00+07:00", 1764547200),
        ("2025-12-01T00:00:00Z", 1764547200),
    ],
)
def test_parse_date(text: str, expected: int) -> None:
    """Dates are epochs (kept as given) or ISO 8601 with an offset."""
    value = parse_date(text)
    assert (value if isinstance(value, int) else int(value.timestamp())) == expected


def test_dates_without_offset_are_left_for_the_run_zone() -> None:
    """An ISO date without an offset is a naive datetime, its midnight: the run's zone
    (--tz) is applied to it later, never the machine's."""
    value = parse_date("2025-12-01")
    assert not isinstance(value, int)
    assert value.tzinfo is None
    assert (value.year, value.month, value.day, value.hour) == (2025, 12, 1, 0)


async def test_abbreviations_are_refused_and_values_never_echoed() -> None:
    """``--token X`` is not read as ``--token-file X``: exit 2, and X is not shown."""
    child = await spawn("count", "--token", SECRET)
    stdout, stderr = await asyncio.wait_for(child.communicate(), PATIENCE)
    assert child.returncode == 2
    assert "unrecognized arguments: --token (values not shown)" in stderr.decode()
    assert SECRET not in (stdout + stderr).decode()


@pytest.mark.parametrize(
    "argv",
    [["--token", SECRET, "count"], ["count", "--api", SECRET]],
    ids=["value-read-as-command", "bad-choice"],
)
async def test_a_bad_choice_is_not_echoed(argv: list[str], tmp_path: Path) -> None:
    """A value argparse reads as a bad choice (the command, ``--api``) is not shown, neither
    on stderr nor in the summary: after an unknown option, it is likely a secret."""
    summary = tmp_path / "summary.json"
    child = await spawn(*argv, "--summary", str(summary))
    stdout, stderr = await asyncio.wait_for(child.communicate(), PATIENCE)
    assert child.returncode == 2
    assert "invalid choice (value not shown)" in stderr.decode()
    written = summary.read_text()
    assert SECRET not in (stdout + stderr).decode() + written
    assert json.loads(written)["command"] == "count"


def test_the_commands_constant_lists_the_parsers_commands() -> None:
    assert set(cli.COMMANDS) == set(subcommands())


def test_every_option_has_help_with_its_default() -> None:
    """Every option of every command says what it does and its default; none takes an
    abbreviation."""
    for name, parser in subcommands().items():
        assert not parser.allow_abbrev, name
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, (name, action.option_strings)
            assert "(default: " in action.help or "(required)" in action.help, (
                name,
                action.option_strings,
            )


def test_sync_help_does_not_offer_standard_output() -> None:
    """sync refuses standard output, so its help does not offer it."""
    text = subcommands()["sync"].format_help()
    assert "standard output" not in text
    assert "--out FILE" in text


def test_readme_command_line_matches_help() -> None:
    """Every option and command in ``--help`` appears in the README's command-line section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Command line") : text.index("## Daily loads")]
    missing = []
    for name, parser in subcommands().items():
        if f"`{name}" not in section:
            missing.append(name)
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and option not in section:
                    missing.append(f"{name} {option}")
    assert missing == []


# -- suggestions and each command's usage ------------------------------------------------------


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The lines on stderr of options that do not parse (exit 2)."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.splitlines()


@pytest.mark.parametrize(
    ("argv", "usage", "said"),
    [
        (
            ["export", "--pagesize", SECRET],
            "usage: vbot-cdr export ",
            "vbot-cdr export: error: unrecognized arguments: --pagesize (values not shown) "
            "(did you mean --page-size?)",
        ),
        (
            ["sync", "--state", "s.json", "--look-back", "1h"],
            "usage: vbot-cdr sync ",
            "(did you mean --lookback?)",
        ),
        (["exprot", "--demo"], "usage: vbot-cdr ", "(did you mean export?)"),
        (["count", "--api", "v33"], "usage: vbot-cdr count ", "(did you mean v3?)"),
    ],
    ids=["option", "sync-option", "command", "choice"],
)
def test_a_misspelt_name_gets_a_suggestion(
    argv: list[str], usage: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt option, command or choice is refused with the closest name as a hint, after
    the usage of the command it was given to; the value given is never shown."""
    lines = refused(argv, capsys)
    assert lines[0].startswith(usage)
    assert lines[-1].endswith(said)
    assert SECRET not in "\n".join(lines)


@pytest.mark.parametrize(
    "argv",
    [
        ["count", "--limit", "3"],
        ["sync", "--state", "s.json", "--lookback", "soon"],
        ["conversation"],
        ["serve-fake", "--records", "many"],
    ],
    ids=["unknown-option", "bad-value", "missing-argument", "serve-fake"],
)
def test_a_commands_mistake_prints_that_commands_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever the mistake, the usage shown is that of the command given, not the top-level
    one, and the last line says what was wrong."""
    lines = refused(argv, capsys)
    assert lines[0].startswith(f"usage: vbot-cdr {argv[0]} ")
    assert lines[-1].startswith(f"vbot-cdr {argv[0]}: error: ")


def test_no_suggestion_without_a_close_name(capsys: pytest.CaptureFixture[str]) -> None:
    """A name like none of the known ones gets no hint."""
    assert "did you mean" not in refused(["count", "--zzzzzz"], capsys)[-1]


# -- completion --------------------------------------------------------------------------------


def completion(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(["--print-completion", shell])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_zsh_completion_knows_the_commands_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    """The zsh script completes every command, and the options with their help."""
    script = completion("zsh", capsys)
    assert script.startswith("#compdef vbot-cdr")
    for name in cli.COMMANDS:
        assert name in script
    assert "--page-size" in script
    assert "records per page" in script


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_completes_commands_and_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sourced into bash, the script completes a command's name, its options, and a file after
    --out."""
    script = tmp_path / "vbot-cdr.bash"
    script.write_text(completion("bash", capsys), encoding="utf-8")
    (tmp_path / "calls.jsonl").touch()

    def complete(*words: str) -> list[str]:
        line = " ".join(["vbot-cdr", *words])
        program = (
            f"source {shlex.quote(str(script))}; COMP_WORDS=(vbot-cdr {' '.join(words)}); "
            f"COMP_CWORD={len(words)}; COMP_LINE={shlex.quote(line)}; COMP_POINT={len(line)}; "
            f'_shtab_vbot_cdr vbot-cdr {shlex.quote(words[-1])} vbot-cdr; echo "${{COMPREPLY[@]}}"'
        )
        done = subprocess.run(
            ["bash", "-c", program],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            check=True,
        )
        return done.stdout.split()

    assert complete("ex") == ["export"]
    assert complete("se") == ["serve-fake"]
    assert complete("export", "--page") == ["--page-size"]
    assert complete("sync", "--look") == ["--lookback"]
    assert complete("export", "--out", "cal") == ["calls.jsonl"]


# -- typed options -----------------------------------------------------------------------------


def leaf_fields(kind: type[attrs.AttrsInstance]) -> set[str]:
    """The options a class of options holds, its groups' included."""
    names: set[str] = set()
    for field in attrs.fields(kind):
        group = _options._GROUPS.get(field.name)
        names |= leaf_fields(group) if group else {field.name}
    return names


@pytest.mark.parametrize(
    ("command", "kinds"),
    [
        ("export", [_options.ExportOptions]),
        ("sync", [_options.FileSyncOptions, _options.DatabaseSyncOptions]),
        ("count", [_options.CountOptions]),
        ("conversation", [_options.ConversationOptions]),
        ("schema", [_options.SchemaOptions]),
        ("serve-fake", [_options.ServeFakeOptions]),
    ],
)
def test_every_option_lands_in_a_field_of_the_commands_options(
    command: str, kinds: list[type[attrs.AttrsInstance]]
) -> None:
    """The fields of a command's options classes are exactly the options its parser defines:
    none is dropped, none is read from a name the parser does not have."""
    parser = subcommands()[command]
    dests = {action.dest for action in parser._actions if action.dest != "help"}
    assert set().union(*map(leaf_fields, kinds)) == dests
    assert not dests & set(_options._GROUPS)  # a group's name is never an option's


def test_options_are_typed_frozen_and_default_from_the_library() -> None:
    """Parsed options are frozen attrs objects; their defaults are the library's constants."""
    export = cli.parse_options(["export", "--demo", "--start-date", "2025-12-01", "--limit", "5"])
    assert isinstance(export, _options.ExportOptions)
    assert export.limit == 5
    assert isinstance(export.filter, CallFilter)
    vietnam = dt.timezone(dt.timedelta(hours=7))  # the default zone, not the machine's
    assert export.filter.start_date == dt.datetime(2025, 12, 1, tzinfo=vietnam)
    assert export.paging == _options.PagingOptions(
        concurrency=DEFAULT_CONCURRENCY, page_size=DEFAULT_PAGE_SIZE
    )
    assert export.connection.timeout == DEFAULT_TIMEOUT
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        export.limit = 6  # type: ignore[misc]
    sync = cli.parse_options(["sync", "--state", "s.json", "--out", "calls.jsonl"])
    assert isinstance(sync, _options.FileSyncOptions)
    assert (sync.lookback, sync.settle, sync.window) == (
        DEFAULT_LOOKBACK,
        DEFAULT_SETTLE,
        DEFAULT_WINDOW,
    )
    assert isinstance(cli.parse_options(["sync", "--to", "x.duckdb"]), _options.DatabaseSyncOptions)


def test_the_help_shows_the_library_defaults() -> None:
    """The help states the library's defaults, durations written as an option is."""
    text = subcommands()["sync"].format_help()
    assert f"(default: {DEFAULT_CONCURRENCY})" in text
    assert f"(default: {DEFAULT_PAGE_SIZE})" in text
    for shown in ("(default: 10m)", "(default: 2m)", "(default: 1d)"):
        assert shown in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90", dt.timedelta(seconds=90)),
        ("90s", dt.timedelta(seconds=90)),
        ("10m", dt.timedelta(minutes=10)),
        ("1.5h", dt.timedelta(minutes=90)),
        (" 1d ", dt.timedelta(days=1)),
        ("2w", dt.timedelta(weeks=2)),
        ("0s", dt.timedelta(0)),
    ],
)
def test_durations(text: str, expected: dt.timedelta) -> None:
    """A duration is a number of seconds, or a number with s, m, h, d or w."""
    assert _values.duration(text) == expected


@pytest.mark.parametrize(
    ("parse", "text", "reason"),
    [
        (_values.duration, "10 minutes", "not a duration"),
        (_values.duration, "-1h", "not a duration"),
        (_values.duration, "9" * 400 + "w", "too long a duration"),
        (_values.window, "0h", "a window must be longer than 0"),
        (_values.seconds, "nan", "must be >= 0 seconds"),
        (_values.timeout, "0", "must be more than 0 seconds"),
        (_values.positive_int, "0", "must be >= 1, got 0"),
        (_values.count, "1.5", "not an integer"),
    ],
)
def test_refused_values_say_why(parse: Callable[[str], object], text: str, reason: str) -> None:
    """A value that cannot be read is refused with the reason argparse shows."""
    with pytest.raises(argparse.ArgumentTypeError, match=reason):
        parse(text)
