"""vbot_cdr: an async client of the VBot campaign call-history API.

Everything importable from here is public and stable; modules whose name starts with an
underscore are not.
"""

from __future__ import annotations

import inspect
import typing

import attrs

from ._auth import PasswordAuth
from ._client import VBotClient
from ._config import RetryPolicy
from ._conversations import CallConversation, ConversationIterator
from ._errors import (
    APIError,
    AuthenticationError,
    CallError,
    DatabaseError,
    IncompleteError,
    RateLimitError,
    ResponseFormatError,
    StateError,
    TransportError,
    VBotError,
    WebhookError,
)
from ._iteration import CallIterator, CallPageIterator
from ._models import BotConversation, CallFilter, CallRecord, CollectedField, Hotline, Member
from ._receiver import WebhookSink, WebhookStats, webhook_app
from ._recordings import Recording, RecordingDownload
from ._sinks import (
    DatabaseLoad,
    DatabaseSync,
    TurnsLoad,
    open_database_sync,
    sync_conversations_to_database,
    sync_to_database,
)
from ._stats import IterationStats
from ._sync import CallSync, DocumentStateStore, StateStore
from ._table import CallColumn, call_columns, table_row
from ._transport import AiohttpTransport, StreamingTransport, Transport
from ._webhooks import CallEvent, OtherEvent, PushedCall, parse_webhook

__all__ = [
    "APIError",
    "AiohttpTransport",
    "AuthenticationError",
    "BotConversation",
    "CallColumn",
    "CallConversation",
    "CallError",
    "CallEvent",
    "CallFilter",
    "CallIterator",
    "CallPageIterator",
    "CallRecord",
    "CallSync",
    "CollectedField",
    "ConversationIterator",
    "DatabaseError",
    "DatabaseLoad",
    "DatabaseSync",
    "DocumentStateStore",
    "Hotline",
    "IncompleteError",
    "IterationStats",
    "Member",
    "OtherEvent",
    "PasswordAuth",
    "PushedCall",
    "RateLimitError",
    "Recording",
    "RecordingDownload",
    "ResponseFormatError",
    "RetryPolicy",
    "StateError",
    "StateStore",
    "StreamingTransport",
    "Transport",
    "TransportError",
    "TurnsLoad",
    "VBotClient",
    "VBotError",
    "WebhookError",
    "WebhookSink",
    "WebhookStats",
    "call_columns",
    "open_database_sync",
    "parse_webhook",
    "sync_conversations_to_database",
    "sync_to_database",
    "table_row",
    "webhook_app",
]


def _resolve_annotations(cls: type) -> None:
    """Replace ``cls``'s own string annotations by the types they name, in its home module.

    `typing.get_type_hints` evaluates a class's annotations in the module ``__module__``
    names; once that says ``vbot_cdr``, names only the defining module imports (``Mapping``,
    ``dt``) would be unknown. Resolved here, before the rename, they no longer need looking
    up, so tools built on type hints (cattrs, msgspec, pydantic, dlt) can read them.
    """
    own = inspect.get_annotations(cls)
    if not own:
        return
    hints = typing.get_type_hints(cls, include_extras=True)
    cls.__annotations__ = {name: hints[name] for name in own}
    if attrs.has(cls):
        attrs.resolve_types(cls)


for _name in __all__:
    if isinstance(globals()[_name], type):
        _resolve_annotations(globals()[_name])
    # Tracebacks and reprs show vbot_cdr.APIError, not vbot_cdr._errors.APIError.
    globals()[_name].__module__ = __name__
del _name


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version

        return version("vbot_cdr")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
