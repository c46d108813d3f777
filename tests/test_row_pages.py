"""`row_pages`: the pages as decoded, read like the records they stand for.

The bulk outputs encode rows straight from these pages (twins, or records where a page
needed the readers); every row encoder must give the same values for a twin as for the
`CallRecord` built from it, in every dialect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vbot_cdr import CallRecord, VBotClient
from vbot_cdr._decoding import CamelRecord, SnakeRecord
from vbot_cdr._iteration import row_pages
from vbot_cdr._table import _table_row_encoder, zone
from vbot_cdr.testing import FakeVBotServer


async def test_rows_encode_as_the_records_they_stand_for(
    any_server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    encode = _table_row_encoder(zone("Asia/Ho_Chi_Minh"))
    typed: list[tuple[Any, ...]] = []
    async with make_client(any_server).iter_calls(page_size=40) as calls:
        async for page in calls.pages():
            typed += map(encode, page)
    rows: list[Any] = []
    async with make_client(any_server).iter_calls(page_size=40) as calls:
        pages = row_pages(calls)
        async for row_page in pages:
            rows += row_page
        assert pages.stats.yielded == 250
    assert {type(row) for row in rows} == {CamelRecord if any_server.api == "v3" else SnakeRecord}
    assert [encode(row) for row in rows] == typed
    assert len(typed) == 250


async def test_a_page_the_twins_refuse_comes_as_records_with_their_extras(
    make_client: Callable[..., VBotClient],
) -> None:
    records = FakeVBotServer(count=30).records[:30]
    records[7] = {**records[7], "surprise": {"kept": True}}
    async with FakeVBotServer(records=records) as fake:
        calls = make_client(fake).iter_calls(page_size=10)
        rows = [row async for page in row_pages(calls) for row in page]
    kinds = [type(row) for row in rows]
    assert kinds.count(CallRecord) == 10  # the page holding the unknown field, whole
    assert [row.extras for row in rows if row.extras] == [{"surprise": {"kept": True}}]
    encode = _table_row_encoder(zone("UTC"))
    assert encode(rows[7])[-1] == {"surprise": {"kept": True}}
    assert {encode(row)[-1] for row in rows if type(row) is not CallRecord} == {None}


async def test_row_pages_continue_after_the_records_handed_out(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    async with make_client(server).iter_calls(page_size=50) as calls:
        first = [await calls.__anext__() for _ in range(3)]
        rest = [row async for page in row_pages(calls) for row in page]
    ids = [row.trans_id for row in first + rest]
    assert len(ids) == len(set(ids)) == 250
