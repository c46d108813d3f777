"""Calls as JSON Lines, straight from the decoded pages: one generated encoder per output.

A line is the call as `vbot_cdr._table.json_document_encoder` gives it
(`CallRecord.to_dict`'s keys, order and nesting, times as ISO 8601 text with their offset),
however the call was read:

- a snake_case twin (`vbot_cdr._decoding.SnakeRecord`) already has those names and that
  nesting, so msgspec encodes a copy of it with its three times replaced by their text, in C;
- a camelCase twin (v3) is first copied into a snake_case one (its nested ``member`` and
  ``hotline`` too: the fields are the same, in the same order), whose encoding names its
  fields as ``to_dict`` does;
- a `CallRecord` (a page the twins refused: unknown fields, odd values) goes through the
  generated `json_document_encoder`, which merges its ``extras`` in last.

msgspec encodes the page in one call (``encode_lines``). Its text is orjson's (what the
typed path writes) for every value but a float of 1e16 or more, which it spells ``1e16``
where orjson spells ``1e+16``: the same number.
"""

from __future__ import annotations

import datetime as dt
import linecache
from collections.abc import Callable, Iterable
from typing import Any, Final

import msgspec

from ._clock import iso_times
from ._decoding import CamelRecord, SnakeRecord
from ._table import TIMES, json_document_encoder

__all__ = ["json_lines_encoder"]


def _snake_nested() -> dict[str, Any]:
    """The snake_case twin of each nested record, by the field that holds it."""
    nested = {}
    for field in msgspec.structs.fields(SnakeRecord):
        kinds = getattr(field.type, "__args__", ())
        structs = [kind for kind in kinds if isinstance(kind, type) and kind is not type(None)]
        if len(structs) == 1 and issubclass(structs[0], msgspec.Struct):
            nested[field.name] = structs[0]
    return nested


_NESTED: Final = _snake_nested()

# The line of one row; see the module's docstring. Generated from the twins' fields, so a
# field added to the models is in it with no edit here.
_LINE: Final = """
def line(row):
    kind = type(row)
    if kind is Snake:
        return replace(row, {times})
    if kind is Camel:
        return replace(Snake(*astuple(row)), {times}{nested})
    return document(row)
"""


def json_lines_encoder(tz: dt.tzinfo) -> Callable[[Iterable[Any]], bytes]:
    """The function writing a page of rows (twins, or `CallRecord`\\ s where a page needed
    the readers) as JSON Lines: a `json_document_encoder` document per line, times in
    ``tz``, each line ending in a newline, as one bytes object. Generated once per output.

    Raises (the function made):
        ResponseFormatError: A time is outside what a datetime can hold.
    """
    times = ", ".join(f"{name}=iso(row.{name})" for name in TIMES)
    nested = "".join(
        f", {name}=(None if (v := row.{name}) is None else Snake_{name}(*astuple(v)))"
        for name in _NESTED
    )
    source = _LINE.format(times=times, nested=nested)
    filename = "<vbot_cdr JSON Lines encoder>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    env: dict[str, Any] = {
        "Snake": SnakeRecord,
        "Camel": CamelRecord,
        "replace": msgspec.structs.replace,
        "astuple": msgspec.structs.astuple,
        "iso": iso_times(tz),
        "document": json_document_encoder(tz),
        **{f"Snake_{name}": cls for name, cls in _NESTED.items()},
    }
    exec(compile(source, filename, "exec"), env)
    line: Callable[[Any], Any] = env["line"]
    encode_lines = msgspec.json.Encoder().encode_lines

    def encode(rows: Iterable[Any]) -> bytes:
        return encode_lines([line(row) for row in rows])

    return encode
