"""Test helpers for code that uses vbot_cdr: a faithful fake VBot server on loopback.

Everything importable from here is public and stable.
"""

from __future__ import annotations

from ._data import generate_records
from ._server import FakeVBotServer, Fault, RecordedRequest

__all__ = ["FakeVBotServer", "Fault", "RecordedRequest", "generate_records"]
