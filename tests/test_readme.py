"""The README's quick start runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from vbot_cdr._models import FILTER_NAMES

README = Path(__file__).resolve().parent.parent / "README.md"


def test_quick_start_runs_as_written() -> None:
    """The quick start prints the count, then three calls with their UTC creation times."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Quick start") : text.index("## Public API")]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    result = subprocess.run(
        [sys.executable, "-c", code.group(1)],
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert int(lines[0]) > 3
    assert len(lines) == 4
    assert all(line.endswith("+00:00") for line in lines[1:])  # aware UTC datetimes


def test_readme_names_exactly_the_filters_of_call_filter() -> None:
    """The README's CallFilter signature and its list of CLI filter options name exactly the
    fields of CallFilter (the one declaration of the filters), so the docs cannot drift."""
    text = README.read_text(encoding="utf-8")
    signature = re.search(r"`CallFilter\(\*, ([a-z_, ]+)\)`", text)
    assert signature is not None
    assert signature.group(1).split(", ") == list(FILTER_NAMES)
    start = text.index("- **Filters:**")
    bullet = text[start : text.index("\n- **", start + 1)]
    documented = re.findall(r"`(--[a-z-]+)`", bullet)
    options = [f"--{name.replace('_', '-')}" for name in FILTER_NAMES]
    assert sorted(set(documented) - {"--time-unit"}) == sorted(options)
