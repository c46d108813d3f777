"""`json_lines_encoder`: a page of rows (snake_case twins, camelCase twins, records with
extras) as the lines the typed path writes (`json_document`, encoded by orjson)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import orjson
import pytest

from tests._records import json_document
from vbot_cdr._decoding import CamelRecord, SnakeRecord, build_records, camel_case, structure_record
from vbot_cdr._errors import ResponseFormatError
from vbot_cdr._json_lines import json_lines_encoder
from vbot_cdr.testing import FakeVBotServer

TZ = ZoneInfo("Europe/Dublin")  # an offset that changes with the seasons


def raw_records() -> list[dict[str, Any]]:
    records = [dict(record) for record in FakeVBotServer(count=6).records]
    records[0] |= {"answer_at": 0, "member": None, "hotline": None, "postage": 1e15 + 0.5}
    records[1] |= {"end_call_at": 1_764_547_276_123, "name": 'Đỗ "Huy"\n\u2028\t\u0001 😀'}
    records[2] |= {"create_at": -86_400, "meta_data": {"nested": [1, None, {"x": 2.5}]}}
    records[3] |= {"call_collected_data": [{"cfkey": "k", "cfvalue": None}], "score": -0.0}
    return records


def camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {camel_case(key): camel(item) for key, item in value.items()}
    if isinstance(value, list):
        return [camel(item) for item in value]
    return value


def typed_lines(records: list[Any]) -> bytes:
    newline = orjson.OPT_APPEND_NEWLINE
    return b"".join(orjson.dumps(json_document(record, TZ), option=newline) for record in records)


@pytest.mark.parametrize("twin", [SnakeRecord, CamelRecord], ids=["snake", "camel"])
def test_twins_give_the_typed_lines(twin: Any) -> None:
    raw = raw_records()
    body = orjson.dumps([camel(record) for record in raw] if twin is CamelRecord else raw)
    rows = msgspec.json.decode(body, type=list[twin])
    typed = [structure_record(record) for record in raw]
    assert build_records(rows) == typed
    assert json_lines_encoder(TZ)(rows) == typed_lines(typed)


def test_records_keep_their_extras_last() -> None:
    raw = raw_records()
    raw[4] |= {"surprise": {"kept": True}, "anotherOne": [1]}
    records = [structure_record(record) for record in raw]
    assert records[4].extras
    lines = json_lines_encoder(TZ)(records)
    assert lines == typed_lines(records)
    assert list(orjson.loads(lines.splitlines()[4]))[-2:] == ["surprise", "anotherOne"]


def test_a_float_of_1e16_or_more_is_the_same_number() -> None:
    """msgspec spells it 1e16 where orjson spells 1e+16 (see the module's docstring)."""
    raw = raw_records()[:1]
    raw[0] |= {"postage": 1e16, "score": 1.5e300}
    rows = msgspec.json.decode(orjson.dumps(raw), type=list[SnakeRecord])
    line = json_lines_encoder(TZ)(rows)
    assert b'"postage":1e16' in line
    assert orjson.loads(line) == orjson.loads(typed_lines(build_records(rows)))


def test_an_impossible_time_is_refused() -> None:
    raw = raw_records()[:1]
    raw[0] |= {"create_at": 10**17}
    rows = msgspec.json.decode(orjson.dumps(raw), type=list[SnakeRecord])
    with pytest.raises(ResponseFormatError, match="outside the datetime range"):
        json_lines_encoder(dt.timezone.utc)(rows)
