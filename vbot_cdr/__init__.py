"""vbot_cdr: an async client of the VBot campaign call-history API.

Everything importable from here is public and stable; modules whose name starts with an
underscore are not.
"""

from __future__ import annotations

from ._auth import PasswordAuth
from ._client import VBotClient
from ._config import RetryPolicy
from ._errors import (
    APIError,
    AuthenticationError,
    IncompleteError,
    RateLimitError,
    ResponseFormatError,
    StateError,
    TransportError,
    VBotError,
)
from ._iteration import CallIterator, CallPageIterator
from ._models import BotConversation, CallFilter, CallRecord, CollectedField, Hotline, Member
from ._stats import IterationStats
from ._sync import CallSync
from ._transport import AiohttpTransport, Transport

__all__ = [
    "APIError",
    "AiohttpTransport",
    "AuthenticationError",
    "BotConversation",
    "CallFilter",
    "CallIterator",
    "CallPageIterator",
    "CallRecord",
    "CallSync",
    "CollectedField",
    "Hotline",
    "IncompleteError",
    "IterationStats",
    "Member",
    "PasswordAuth",
    "RateLimitError",
    "ResponseFormatError",
    "RetryPolicy",
    "StateError",
    "Transport",
    "TransportError",
    "VBotClient",
    "VBotError",
]

for _name in __all__:
    # Tracebacks and reprs show vbot_cdr.APIError, not vbot_cdr._errors.APIError.
    globals()[_name].__module__ = __name__
del _name


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version

        return version("vbot_cdr")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
