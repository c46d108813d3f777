"""Test helpers for code that uses vbot_cdr: a faithful fake VBot server on loopback.

Everything importable from here is public and stable. `FakeVBotServer` serves seeded
synthetic data (`generate_records`) with faults on demand (`Fault`, `FaultMix`), and can push
the calls it writes to a webhook receiver (`WebhookPusher`, `PushHabits`); the pytest
plugin ``vbot_cdr.testing.pytest_plugin`` gives tests a running one as the ``vbot_server``
fixture. `instant_retries` makes every client's retries wait zero seconds, and
`remembered_ids` shrinks the exactly-once stage's memory so small data exercise its pruning;
`ledger_records` lowers the bound of its ledger so that a read of a few hundred calls is
planned in windows as one of millions is.
"""

from __future__ import annotations

from .._exactly_once import ledger_records, remembered_ids
from .._retry import instant_retries
from ._data import generate_records, make_conversation
from ._pusher import PushHabits, WebhookPusher
from ._recordings import RecordingHabits
from ._server import (
    ENDPOINTS,
    FakeVBotServer,
    Fault,
    FaultMix,
    PagingHabits,
    RecordedRequest,
)
from ._token import FakeTokenEndpoint

__all__ = [
    "ENDPOINTS",
    "FakeTokenEndpoint",
    "FakeVBotServer",
    "Fault",
    "FaultMix",
    "PagingHabits",
    "PushHabits",
    "RecordedRequest",
    "RecordingHabits",
    "WebhookPusher",
    "generate_records",
    "instant_retries",
    "ledger_records",
    "make_conversation",
    "remembered_ids",
]
