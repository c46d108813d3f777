"""The options (`vbot_cdr.cli._parser`, `_values`, `_options`): help and defaults, refused values
never echoed, suggestions, each command's own usage, completion, typed options."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests._cli import (
    PATIENCE,
    ROOT,
    SECRET,
    one_line,
    spawn,
    subcommands,
)
from vbot_cdr import cli
from vbot_cdr.cli import main, parse_date


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


def test_dates_without_offset_are_local() -> None:
    """An ISO date without an offset is an aware datetime in the local time zone."""
    value = parse_date("2025-12-01")
    assert not isinstance(value, int)
    assert value.tzinfo is not None
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
