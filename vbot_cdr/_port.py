"""`CallsPort`: the two calls an iteration needs from a client (count a range, fetch a page)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import Protocol

from ._decoding import CallRow
from ._models import CallFilter

__all__ = ["CallsPort", "InFlightSlot"]

#: A slot of the in-flight limit (`_pagination.InFlightLimit`): entered around every attempt
#: of a request, so that at most the limit's attempts are on the wire at once.
InFlightSlot = contextlib.AbstractAsyncContextManager[object]


class CallsPort(Protocol):
    """What the iteration needs from a client: count a filter, fetch a page of it.

    Both raise a `VBotError` on failure; ``fetch`` enters ``in_flight`` around each attempt. The
    port owns the iteration's deadline and counts its requests.
    """

    def count(self, filter: CallFilter) -> Awaitable[int]: ...

    def fetch(
        self, filter: CallFilter, page: int, size: int, in_flight: InFlightSlot
    ) -> Awaitable[list[CallRow]]: ...
