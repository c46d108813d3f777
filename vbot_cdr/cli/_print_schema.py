"""``vbot-cdr schema``: the JSON Schema of an exported call, generated from the models."""

from __future__ import annotations

import sys

import orjson

from .._schema import json_schema
from ._options import SchemaOptions
from ._status import Context

__all__ = ["run_schema"]


async def run_schema(options: SchemaOptions, context: Context) -> int:
    """Print the JSON Schema of one line of an export's JSON Lines."""
    sys.stdout.buffer.write(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2) + b"\n")
    return 0
