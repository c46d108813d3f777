"""``vbot-cdr schema`` (`vbot_cdr.cli._print_schema`) and the data dictionary."""

from __future__ import annotations

import asyncio
import json
import re

import attrs

from tests._cli import (
    PATIENCE,
    ROOT,
    spawn,
)
from vbot_cdr import CallRecord, CollectedField, Hotline, Member
from vbot_cdr.testing import generate_records


async def test_schema_is_generated_from_the_models() -> None:
    """``vbot-cdr schema`` prints a JSON Schema with a property per field of CallRecord."""
    child = await spawn("schema")
    stdout, stderr = await asyncio.wait_for(child.communicate(), PATIENCE)
    assert child.returncode == 0, stderr
    schema = json.loads(stdout)
    fields = [f.name for f in attrs.fields(CallRecord) if f.name != "extras"]
    assert list(schema["properties"]) == fields
    assert schema["properties"]["create_at"] == {"type": ["string", "null"], "format": "date-time"}
    member = schema["properties"]["member"]
    assert list(member["properties"]) == [f.name for f in attrs.fields(Member)]
    item = schema["properties"]["call_collected_data"]["items"]
    assert list(item["properties"]) == [f.name for f in attrs.fields(CollectedField)]
    record = generate_records(1)[0]
    assert set(record) <= set(schema["properties"])


def test_fields_dictionary_covers_every_field() -> None:
    """docs/fields.md has a row for every field of CallRecord and of the objects it holds."""
    text = (ROOT / "docs" / "fields.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", text, re.MULTILINE))
    wanted = {f.name for f in attrs.fields(CallRecord)}
    wanted |= {f"member.{f.name}" for f in attrs.fields(Member)}
    wanted |= {f"hotline.{f.name}" for f in attrs.fields(Hotline)}
    wanted |= {f.name for f in attrs.fields(CollectedField)}
    assert sorted(wanted - documented) == []
