"""The command line's outputs (`vbot_cdr.cli._outputs`): formats read from names, files that
are replaced only once complete, and the torn tail a crash leaves cut off."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import stat
from pathlib import Path

import pytest

from tests._records import json_document
from vbot_cdr._decoding import structure_record
from vbot_cdr._models import CallRecord
from vbot_cdr._table import DEFAULT_TZ, zone
from vbot_cdr.cli._outputs import (
    CSV_COLUMNS,
    ExportFile,
    OutputError,
    OutputFormat,
    append_file,
    append_output,
    choose_format,
    drop_torn_tail,
    export_file,
    stream_output,
)
from vbot_cdr.testing import generate_records

VIETNAM = zone(DEFAULT_TZ)


def records(count: int) -> list[CallRecord]:
    return [structure_record(raw) for raw in generate_records(count)]


class Boom(Exception):
    """What stops an export midway in these tests."""


def fail_after_writing(
    target: Path, out_format: OutputFormat, result: ExportFile, count: int
) -> None:
    """Export ``count`` calls to ``target``, then fail before the export completes."""
    with export_file(target, out_format, result) as output:
        if count:
            output.write(records(count))
        raise Boom


@pytest.mark.parametrize(
    ("out", "given", "expected"),
    [
        (None, None, OutputFormat("jsonl")),
        ("-", "csv", OutputFormat("csv")),
        ("calls.jsonl", None, OutputFormat("jsonl")),
        ("calls.JSON", None, OutputFormat("jsonl")),
        ("calls.csv.gz", None, OutputFormat("csv", gzip=True)),
        ("calls.parquet", None, OutputFormat("parquet")),
        ("calls.txt", "csv", OutputFormat("csv")),
        ("calls.txt.gz", "jsonl", OutputFormat("jsonl", gzip=True)),
    ],
)
def test_choose_format_reads_the_suffix_unless_told(
    out: str | None, given: str | None, expected: OutputFormat
) -> None:
    """--format wins; otherwise the suffix, optionally .gz, names the format."""
    assert choose_format(out, given) == expected


@pytest.mark.parametrize(
    ("out", "given", "excel", "message"),
    [
        ("calls.xls", None, False, "cannot tell the format of calls.xls"),
        ("-", "xlsx", False, "xlsx needs --out FILE"),
        ("-", "parquet", False, "parquet needs --out FILE"),
        ("calls.parquet.gz", None, False, "parquet needs --out FILE"),
        ("calls.jsonl", None, True, "--excel applies to CSV only"),
    ],
)
def test_choose_format_never_guesses(
    out: str, given: str | None, excel: bool, message: str
) -> None:
    """An unknown suffix, or a format that cannot go there, is refused."""
    with pytest.raises(OutputError, match=message):
        choose_format(out, given, excel=excel)


def test_a_complete_export_replaces_the_file_keeping_its_mode(tmp_path: Path) -> None:
    """The file is renamed into place once complete, with the previous file's permissions, and
    nothing else is left in the directory."""
    target = tmp_path / "calls.jsonl"
    target.write_text("old\n", encoding="utf-8")
    target.chmod(0o640)
    result = ExportFile(target)
    with export_file(target, OutputFormat("jsonl"), result) as output:
        output.write(records(3))
        assert target.read_text(encoding="utf-8") == "old\n"  # not yet
    assert result.complete
    assert result.records == 3
    assert result.partial is None
    lines = target.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [json_document(r, VIETNAM) for r in records(3)]
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["calls.jsonl"]


@pytest.mark.parametrize("name", ["calls.jsonl", "calls.jsonl.gz"])
def test_a_failed_export_keeps_what_it_wrote_as_partial(tmp_path: Path, name: str) -> None:
    """A failure leaves the target as it was and keeps the whole calls written in
    FILE.partial, a valid file of its format (a gzip stream that decompresses)."""
    target = tmp_path / name
    target.write_bytes(b"previous")
    result = ExportFile(target)
    out_format = choose_format(str(target), None)
    with pytest.raises(Boom):
        fail_after_writing(target, out_format, result, 4)
    assert not result.complete
    assert result.partial == tmp_path / f"{name}.partial"
    assert target.read_bytes() == b"previous"
    data = result.partial.read_bytes()
    text = gzip.decompress(data).decode() if out_format.gzip else data.decode()
    expected = [json_document(r, VIETNAM) for r in records(4)]
    assert [json.loads(line) for line in text.splitlines()] == expected
    assert sorted(os.listdir(tmp_path)) == sorted([name, f"{name}.partial"])


def test_a_failed_export_that_wrote_nothing_leaves_nothing(tmp_path: Path) -> None:
    """No call written: no partial file, no temporary file."""
    target = tmp_path / "calls.jsonl"
    result = ExportFile(target)
    with pytest.raises(Boom):
        fail_after_writing(target, OutputFormat("jsonl"), result, 0)
    assert result.partial is None
    assert os.listdir(tmp_path) == []


def test_csv_has_the_columns_and_excel_a_byte_order_mark() -> None:
    """CSV starts with CSV_COLUMNS; --excel adds a BOM and keeps the same columns."""
    plain, excel = io.BytesIO(), io.BytesIO()
    for stream, out_format in (
        (plain, OutputFormat("csv")),
        (excel, OutputFormat("csv", excel=True)),
    ):
        with stream_output(stream, out_format) as output:
            output.write(records(2))
    rows = list(csv.reader(io.StringIO(plain.getvalue().decode("utf-8"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 3
    text = excel.getvalue().decode("utf-8")
    assert text.startswith("\ufeff")
    header = next(csv.reader(io.StringIO(text[1:])))
    assert tuple(header) == CSV_COLUMNS


def test_drop_torn_tail_cuts_a_partial_last_line(tmp_path: Path) -> None:
    """A crash mid-write leaves a line without its newline: it is cut off, whole lines kept."""
    path = tmp_path / "calls.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": ')
    with append_file(path) as stream:
        assert drop_torn_tail(stream) == len(b'{"a": 1}\n{"b": 2}\n')
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    with append_file(path) as stream:  # whole lines: nothing to cut
        assert drop_torn_tail(stream) == len(b'{"a": 1}\n{"b": 2}\n')


def test_drop_torn_tail_of_a_file_without_any_newline(tmp_path: Path) -> None:
    """A file holding only a torn line (longer than one read) becomes empty."""
    path = tmp_path / "calls.jsonl"
    path.write_bytes(b"x" * 200_000)
    with append_file(path) as stream:
        assert drop_torn_tail(stream) == 0
    assert path.read_bytes() == b""


def test_appending_writes_the_csv_header_only_to_a_new_file(tmp_path: Path) -> None:
    """Two runs appending CSV to one file give one header."""
    path = tmp_path / "calls.csv"
    for _ in range(2):
        with append_file(path) as stream:
            new = drop_torn_tail(stream) == 0
            append_output(stream, OutputFormat("csv"), str(path), new=new).write(records(2))
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert [tuple(row) for row in rows].count(CSV_COLUMNS) == 1
    assert len(rows) == 5


def test_appending_refuses_gzip_parquet_and_xlsx(tmp_path: Path) -> None:
    """A compressed stream, a Parquet file or a workbook cannot be appended to."""
    with append_file(tmp_path / "calls") as stream:
        formats = (OutputFormat("jsonl", gzip=True), OutputFormat("parquet"), OutputFormat("xlsx"))
        for out_format in formats:
            with pytest.raises(OutputError):
                append_output(stream, out_format, "calls", new=True)
