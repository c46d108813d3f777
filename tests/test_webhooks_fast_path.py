"""The receiver's own reading of a webhook body (`pushed_call`: msgspec, no `CallRecord`)
stores exactly the rows the typed path (`parse_webhook` -> `CallRecord` -> upsert) stores,
and leaves to `parse_webhook` every body it does not read the same way."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from tests import test_sinks
from tests.test_sinks import query
from tests.test_webhooks import COMPLETE, LOG, post, receiving, rows
from vbot_cdr import (
    CallEvent,
    CallRecord,
    ResponseFormatError,
    WebhookError,
    WebhookSink,
    parse_webhook,
)
from vbot_cdr._sinks._backends import _DuckDB, _PostgreSQL, _SQLite, open_database
from vbot_cdr._sinks._columns import RECORD_COLUMNS, encoder
from vbot_cdr._sinks._url import parse_database_url
from vbot_cdr._webhooks import PushedCall, pushed_call
from vbot_cdr.testing._data import RecordGenerator
from vbot_cdr.testing._pusher import webhook_body

database = test_sinks.database
postgres_database = test_sinks.postgres_database
postgres_server = test_sinks.postgres_server

EXTRACTION = COMPLETE["autoCallAIExtraction"]
RECORDING = COMPLETE["autoCallRecording"]
COLLECTED = '[{"cfkey": "x", "cfname": null, "cfvalue": "1", "description": "from the AI"}]'


def complete(log: dict[str, Any], **parts: Any) -> dict[str, Any]:
    """An AUTO_CALL_COMPLETE body of ``log`` with the documented parts, or ``parts``."""
    return {
        "autoCallLog": log,
        "autoCallAIExtraction": parts.get("extraction", EXTRACTION),
        "autoCallRecording": parts.get("recording", RECORDING),
    }


def without(log: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in log.items() if key not in keys}


#: Bodies of every shape an auto call comes in, odd ones included: name -> (body, whether
#: `pushed_call` reads it itself rather than leave it to `parse_webhook`).
BODIES: dict[str, tuple[dict[str, Any], bool]] = {
    "documented": (COMPLETE, True),
    "generated": (webhook_body(RecordGenerator(seed=4).record(1)), True),
    "the log alone in its envelope": ({"autoCallLog": LOG}, True),
    "only a transId": ({"autoCallLog": {"transId": "T"}}, True),
    "every field null": (complete({**dict.fromkeys(LOG), "transId": "T"}), True),
    "JSON in strings empty, the extraction's data taken": (
        complete(
            {**LOG, "callCollectedData": "", "metaData": ""},
            extraction={"transId": "T1", "callCollectedData": COLLECTED},
        ),
        True,
    ),
    "no data, the extraction's taken": (
        complete(
            without(LOG, "callCollectedData"),
            extraction={"transId": None, "callCollectedData": COLLECTED},
        ),
        True,
    ),
    "another call's extraction and recording ignored": (
        complete(
            {**LOG, "callCollectedData": None},
            extraction={"transId": "T2", "callCollectedData": COLLECTED},
            recording={"transId": "T2", "recordUrl": "https://r/T2"},
        ),
        True,
    ),
    "the log's null recordUrl kept": (complete({**LOG, "recordUrl": None}), True),
    "the log's recordUrl kept": (complete({**LOG, "recordUrl": "https://log"}), True),
    "no parts": (complete(LOG, extraction=None, recording=None), True),
    "a recording without a URL": (complete(LOG, recording={"transId": "T1"}), True),
    "numbers awkward to store": (
        complete({**LOG, "postage": 0.1, "serviceCharge": 1e300, "postageService": 5e-324}),
        True,
    ),
    "ints where numbers are documented": (
        complete({**LOG, "postage": 5, "serviceCharge": 0, "postageService": -3}),
        True,
    ),
    "only some member fields": (
        complete({**without(LOG, "memberName", "memberNo"), "memberAccId": None}),
        True,
    ),
    "a null hotline code": (complete({**LOG, "hotlineCode": None}), True),
    "no metaDataDescription": (complete(without(LOG, "metaDataDescription")), True),
    "a null metaDataDescription": (complete({**LOG, "metaDataDescription": None}), True),
    "text needing escapes": (
        complete({**LOG, "voiceText": 'a "quote" \\ back\nline \t ừ 🙂', "phone": ""}),
        True,
    ),
    "metaData nested and odd": (
        complete({**LOG, "metaData": '{"a": [1, 2.5, {"b": null}], "c": 18446744073709551615}'}),
        True,
    ),
    "the CDR's own fields too": (
        complete({**LOG, "customerUid": "C9", "status": 2, "isRecord": True, "score": 1}),
        True,
    ),
    "the largest 64-bit times": (
        complete({**LOG, "campaignId": 2**63 - 1, "templateScriptId": -(2**63)}),
        True,
    ),
    # Left to parse_webhook: the same rows, by the typed path.
    "an unknown field (kept in extras)": (complete({**LOG, "newField": [1, {"a": 2}]}), False),
    "a snake_case field": (complete({**without(LOG, "transId"), "trans_id": "T1"}), False),
    "a member object": (complete({**LOG, "member": {"name": "M", "color": "red"}}), False),
    "callCollectedData already decoded": (
        complete({**LOG, "callCollectedData": [{"cfkey": "k"}]}),
        False,
    ),
    "a collected field with an unknown key": (
        complete({**LOG, "callCollectedData": '[{"cfkey": "k", "extra": 1}]'}),
        False,
    ),
    "an unknown top-level part": ({**COMPLETE, "autoCallSomething": {}}, False),
    "an extraction with another field": (
        complete(LOG, extraction={**EXTRACTION, "confidence": 0.5}),
        False,
    ),
    "a recording that is not an object": (complete(LOG, recording="https://r"), False),
    "flat AUTO_CALL_LOG": (LOG, False),
}


def typed_record(body: bytes) -> CallRecord:
    event = parse_webhook(body)
    assert isinstance(event, CallEvent)
    return event.record


@pytest.mark.parametrize("name", BODIES)
def test_each_body_gives_the_typed_paths_row_or_is_left_to_it(name: str) -> None:
    """Every driver's values of the row (JSON columns as their text) are the same both ways;
    `pushed_call` reads the usual bodies itself and leaves the odd ones to `parse_webhook`."""
    data, fast = BODIES[name]
    body = orjson.dumps(data)
    call = pushed_call(body)
    assert (call is not None) == fast
    if call is not None:
        for backend in (_PostgreSQL, _DuckDB, _SQLite):
            encode = encoder(RECORD_COLUMNS, backend.json)
            assert orjson.dumps(encode(call)) == orjson.dumps(encode(typed_record(body)))


def test_the_stored_rows_are_equal_both_ways(database: str) -> None:
    """All the bodies above, each under its own transId, pushed in one group by each path into
    its own table of a real database: the two tables hold the same rows, those the pull's
    load (another statement on every database) writes of the same records."""
    bodies = []
    for number, (data, _) in enumerate(BODIES.values()):
        data = orjson.loads(orjson.dumps(data))
        log = data.get("autoCallLog", data)
        log["transId"] = f"T{number}"
        for part in ("autoCallAIExtraction", "autoCallRecording"):
            if isinstance(data.get(part), dict) and data[part].get("transId") == "T1":
                data[part]["transId"] = f"T{number}"
        bodies.append(orjson.dumps(data))
    typed = [typed_record(body) for body in bodies]
    fast: list[PushedCall | CallRecord] = []
    for body, record in zip(bodies, typed, strict=True):
        call = pushed_call(body)
        fast.append(record if call is None else call)
    assert sum(not isinstance(call, CallRecord) for call in fast) > len(bodies) // 2
    target = parse_database_url(database)
    stored = {}
    for table, calls, pushed in (
        ("typed", typed, True),
        ("fast", fast, True),
        ("pulled", typed, False),
    ):
        db = open_database(target, table, RECORD_COLUMNS)
        try:
            db.upsert(RECORD_COLUMNS, calls, pushed=pushed)  # type: ignore[arg-type]
            db.commit_pushed()
        finally:
            db.finish()
        stored[table] = sorted(query(database, f"SELECT * FROM {table}"), key=str)
    assert len(stored["fast"]) == len(bodies)
    assert stored["fast"] == stored["typed"] == stored["pulled"]


def stored(encode: Callable[[Any], tuple[Any, ...]], call: Any) -> bytes | str:
    """The row the driver gets, as JSON, or why it cannot be stored (a time out of range)."""
    try:
        return orjson.dumps(encode(call))
    except ResponseFormatError as exc:
        return str(exc)


#: Values of every JSON type, the awkward ones among them, for the fuzz below.
ODD_VALUES: list[Any] = [
    None,
    "",
    "text",
    "[]",
    "{}",
    "null",
    '[{"cfkey": 1}]',
    '[{"cfkey": "k"}]',
    '{"a": 1}',
    "{",
    0,
    -1,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**70,
    1.5,
    1e300,
    True,
    False,
    [],
    {},
    [{"cfkey": "k"}],
    {"name": "x"},
]


def test_any_value_in_any_field_is_read_alike_or_left_to_the_typed_path() -> None:
    """Fuzz: a generated body with random fields set to values of the wrong type, or to
    odd ones: `pushed_call` either leaves it to `parse_webhook` (None) or gives the row the
    typed path gives, never accepting a body `parse_webhook` refuses."""
    rng = random.Random(22)
    generator = RecordGenerator(seed=8)
    encode = encoder(RECORD_COLUMNS, _PostgreSQL.json)
    keys = [*LOG, "recordUrl", "customerUid", "status", "isRecord", "member"]
    read_fast = 0
    for number in range(3000):
        data = webhook_body(generator.record(number))
        for _ in range(rng.randint(1, 3)):
            part = rng.choice(["autoCallLog"] * 4 + ["autoCallAIExtraction", "autoCallRecording"])
            if part == "autoCallLog":
                data[part][rng.choice(keys)] = rng.choice(ODD_VALUES)
            else:
                data[part][rng.choice(["transId", "recordUrl", "callCollectedData", "x"])] = (
                    rng.choice([*ODD_VALUES, data["autoCallLog"]["transId"]])
                )
        body = msgspec.json.encode(data)  # orjson cannot write ints beyond 64 bits
        call = pushed_call(body)
        if call is None:
            continue
        read_fast += 1
        try:
            record = typed_record(body)
        except WebhookError as exc:
            pytest.fail(f"pushed_call read a body parse_webhook refuses ({exc}): {body!r}")
        assert stored(encode, call) == stored(encode, record), body
    assert read_fast > 300  # the fuzz reaches the fast path often enough to mean something


@pytest.mark.parametrize(
    "data",
    [
        {"autoCallLog": {**LOG, "transId": ""}},
        {"autoCallLog": {**LOG, "duration": 1.0}},
        {"autoCallLog": {**LOG, "isRecord": 1}},
        {"autoCallLog": {**LOG, "campaignId": 2**63}},
        {"autoCallLog": {**LOG, "metaData": "null"}},
        {"autoCallLog": {**LOG, "metaData": "[1]"}},
        {"autoCallLog": {**LOG, "callCollectedData": "null"}},
        {"autoCallLog": {**LOG, "callCollectedData": "[null]"}},
        {"autoCallLog": {**LOG, "callCollectedData": '[{"cfkey": 1}]'}},
        {
            "autoCallLog": {**LOG, "callCollectedData": ""},
            "autoCallAIExtraction": {"transId": "T1", "callCollectedData": "{}"},
        },
        {"autoCallLog": {**LOG, "recordUrl": None}, "autoCallRecording": {"transId": 1}},
    ],
)
def test_a_body_the_typed_path_refuses_is_left_to_it(data: dict[str, Any]) -> None:
    """`pushed_call` never reads a body `parse_webhook` refuses: the receiver's 400 (and its
    message) come from `parse_webhook`, as ever."""
    body = msgspec.json.encode(data)
    assert pushed_call(body) is None
    if "autoCallRecording" not in data:  # another call's recording: ignored, not refused
        with pytest.raises(WebhookError):
            parse_webhook(body)


async def test_a_time_no_database_can_hold_is_400_and_fails_no_other_call(tmp_path: Path) -> None:
    """A call whose time is out of years 1-9999 is refused (400) before it joins a group:
    the calls posted with it are committed."""
    url = f"sqlite:///{tmp_path}/calls.db"
    sink = WebhookSink(url)
    generator = RecordGenerator(seed=2, id_prefix="OK")
    good = [orjson.dumps(webhook_body(generator.record(i))) for i in range(20)]
    bad = [
        orjson.dumps({"autoCallLog": {**LOG, "transId": f"BAD{i}", field: 2**62}})
        for i, field in enumerate(("createAt", "answerAt", "endCallAt"))
    ]
    async with receiving(sink) as base:
        statuses = await asyncio.gather(*(post(base + "/", body) for body in [*good, *bad]))
    assert statuses == [200] * len(good) + [400] * len(bad)
    assert sink.stats.refused == {"bad_body": len(bad)}
    assert query(url, "SELECT count(*) FROM vbot_calls WHERE trans_id LIKE 'BAD%'") == [(0,)]
    assert rows(url) == len(good)
