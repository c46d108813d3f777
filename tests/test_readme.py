"""The README's quick start runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
