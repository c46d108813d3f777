"""``vbot-cdr count`` and ``vbot-cdr conversation`` (`vbot_cdr.cli._count`)."""

from __future__ import annotations

import pytest

from tests._cli import (
    one_line,
    run,
)
from vbot_cdr.cli import main
from vbot_cdr.testing import FakeVBotServer, Fault, generate_records, make_conversation


def test_count_and_conversation(capsys: pytest.CaptureFixture[str]) -> None:
    """count prints the number; conversation prints the server's string as is."""
    assert main(["count", "--demo", "--demo-records", "99"]) == 0
    assert capsys.readouterr().out == "99\n"
    assert main(["conversation", "--demo", "TX0-00000003"]) == 0
    assert capsys.readouterr().out == make_conversation(generate_records(4)[3]) + "\n"


async def test_failure_envelope(server: FakeVBotServer, capsys: pytest.CaptureFixture[str]) -> None:
    """A failure envelope prints the server's code and message."""
    server.inject(Fault(envelope_error=1001, message="Sai mã dự án"), endpoint="countAll")
    assert await run("count") == 1
    assert one_line(capsys.readouterr().err) == (
        "vbot-cdr: count failed: countAll: HTTP 200, error 1001: Sai mã dự án"
    )
