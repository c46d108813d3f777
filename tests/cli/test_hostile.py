"""The command line under issue 20's filters and hostile inputs: each refusal exits 2 with one
line before any request or file, each hostile answer exits 1 with one printable line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests._cli import SECRET, one_line, run
from vbot_cdr.cli import main
from vbot_cdr.testing import FakeVBotServer, Fault, generate_records

KEY = "key-never-shown-9b2c"
CODES = ["CMP_NHACNO_T11", "CMP_KHAOSAT_CSKH"]


# -- filters -----------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["v2", "v3"])
@pytest.mark.parametrize("spelling", ["ANSWERED", "answer", "ANSWER"])
def test_any_spelling_of_a_disposition_finds_the_calls(
    api: str, spelling: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--disposition in any documented spelling counts the answered calls of either dialect."""
    answered = sum(r["disposition"] == "ANSWERED" for r in generate_records(300))
    argv = ["count", "--demo", "--demo-records", "300", "--api", api, "--disposition", spelling]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"{answered}\n"
    assert answered > 0


def test_an_unknown_disposition_exits_2_listing_the_valid_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An outcome no dialect knows: exit 2, one line naming the valid values."""
    assert main(["count", "--demo", "--disposition", "ANSWERD"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "'ANSWERD'" in line
    assert "answer, " in line
    assert "noanswer" in line


def test_campaign_code_repeated_exports_the_calls_of_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--campaign-code A --campaign-code B: the calls of both codes, each once."""
    out = tmp_path / "calls.jsonl"
    argv = ["export", "--demo", "--demo-records", "300", "--out", str(out)]
    assert main([*argv, "--campaign-code", CODES[0], "--campaign-code", CODES[1]]) == 0
    ids = [json.loads(line)["trans_id"] for line in out.read_text().splitlines()]
    expected = {r["trans_id"] for r in generate_records(300) if r["campaign_code"] in CODES}
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
    assert main(["count", "--demo", "--demo-records", "300", "--campaign-code", CODES[0]]) == 0


def test_a_millisecond_epoch_for_v2_exits_2_saying_the_unit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A millisecond epoch to a seconds dialect: exit 2, one line that names both units."""
    assert main(["count", "--demo", "--start-date", "1764547200000"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "milliseconds" in line
    assert "seconds" in line
    assert "1764547200" in line


def test_dates_after_each_other_are_shown_in_iso_8601(capsys: pytest.CaptureFixture[str]) -> None:
    """start after end: exit 2, the dates in ISO 8601, no Python repr."""
    dates = ["--start-date", "2025-12-02T00:00+07:00", "--end-date", "2025-12-01Z"]
    assert main(["count", "--demo", *dates]) == 2
    line = one_line(capsys.readouterr().err)
    assert "2025-12-02T00:00:00+07:00" in line
    assert "datetime.datetime" not in line


# -- a server's words --------------------------------------------------------------------------

HOSTILE = "ok\r\n\x1b[2K\x1b[1Avbot-cdr: exported 250 calls\x1b]0;pwned\x07"


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_hostile_server_message_is_one_escaped_line(
    server: FakeVBotServer, capfd: pytest.CaptureFixture[str], log_format: str
) -> None:
    """A failure message with CR, LF and terminal escapes: exit 1, one printable line."""
    server.inject(Fault(envelope_error=500, message=HOSTILE), endpoint="countAll")
    assert await run("count", "--log-format", log_format) == 1
    line = one_line(capfd.readouterr().err)
    assert line.isprintable()
    assert "\x1b" not in line
    assert "exported 250 calls" in line  # shown, as text, escaped
    print(f"\n[{log_format}] {line}")  # the figure the issue asks for (pytest -s shows it)


# -- credentials -------------------------------------------------------------------------------


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> None:
    """An API address (never reached: each case is refused before any request)."""
    monkeypatch.setenv("VBOT_BASE_URL", "https://open-api-h01.vbot.vn/v3.0")


def test_both_credentials_without_api_exit_2_naming_both(
    account: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """VBOT_TOKEN and VBOT_API_KEY together, no --api: exit 2 naming both, no secret shown."""
    monkeypatch.setenv("VBOT_TOKEN", SECRET)
    monkeypatch.setenv("VBOT_API_KEY", KEY)
    assert main(["count"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "VBOT_TOKEN" in line
    assert "VBOT_API_KEY" in line
    assert "--api" in line
    assert SECRET not in line
    assert KEY not in line


@pytest.mark.parametrize(
    ("env", "api", "named"),
    [
        ("VBOT_API_KEY", "v2", "VBOT_TOKEN"),
        ("VBOT_TOKEN", "v3", "VBOT_API_KEY"),
        ("VBOT_TOKEN", "v3-legacy", "VBOT_API_KEY"),
    ],
)
def test_a_credential_that_does_not_fit_the_api_names_the_one_that_does(
    account: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: str,
    api: str,
    named: str,
) -> None:
    """An API key with --api v2 (or a token with v3): exit 2 naming the credential it takes."""
    monkeypatch.setenv(env, KEY)
    assert main(["count", "--api", api]) == 2
    line = one_line(capsys.readouterr().err)
    assert named in line
    assert env in line
    assert KEY not in line


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\x00bad", b"", b"\n  \n", None],
    ids=["not-utf8", "empty", "blank", "missing"],
)
def test_a_bad_token_file_exits_2_in_one_line(
    account: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None
) -> None:
    """A token file that is not UTF-8, is empty or is missing: exit 2, one line, no traceback."""
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content)
    assert main(["count", "--token-file", str(path)]) == 2
    assert "token file" in one_line(capsys.readouterr().err)


# -- files left behind -------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["sqlite", "duckdb"])
def test_a_refused_sync_to_a_database_file_leaves_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheme: str
) -> None:
    """A sync refused (no state yet and no --start-date) creates no database file."""
    target = tmp_path / f"calls.{'db' if scheme == 'sqlite' else 'duckdb'}"
    assert main(["sync", "--demo", "--to", f"{scheme}:///{target}"]) == 2
    assert "start_date" in one_line(capsys.readouterr().err)
    assert os.listdir(tmp_path) == []


def test_a_state_that_cannot_be_saved_is_refused_before_any_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """sync --state where no state can be written: exit 2 before any output is written."""
    state = tmp_path / ("s" * 250 + ".json")
    out = tmp_path / "calls.jsonl"
    argv = ["sync", "--demo", "--state", str(state), "--out", str(out), "--start-date", "0"]
    assert main(argv) == 2
    assert "cannot write the sync state" in one_line(capsys.readouterr().err)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("failing", [1, 2], ids=["first-window", "second-window"])
async def test_a_failed_sync_never_claims_a_save_it_did_not_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], failing: int
) -> None:
    """A sync failing in its first window says nothing was saved, and saves nothing; one
    failing in its second says the state is saved up to the first, as it is."""
    records = generate_records(250, spacing=600)  # about 1.7 days: two windows of 1d
    async with FakeVBotServer(records=records, token=SECRET) as server:
        monkeypatch.setenv("VBOT_BASE_URL", server.base_url)
        monkeypatch.setenv("VBOT_TOKEN", SECRET)
        faults = [Fault()] * (failing - 1) + [Fault(status=400)]
        server.inject(*faults, endpoint="getAll", page=1)
        state, out = tmp_path / "state.json", tmp_path / "calls.jsonl"
        argv = ["sync", "--state", str(state), "--out", str(out), "--page-size", "1000"]
        start = records[0]["create_at"]
        dates = ["--start-date", str(start), "--end-date", str(start + 2 * 86400)]
        assert await run(*argv, *dates) == 1
    line = one_line(capfd.readouterr().err)
    if failing == 1:
        assert "nothing was saved" in line
        assert not state.exists()
    else:
        assert "the state is saved up to the last whole window" in line
        assert json.loads(state.read_text())["watermark"] == start + 86400
