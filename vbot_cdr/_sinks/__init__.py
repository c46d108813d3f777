"""Database sinks: calls, and their conversation turns, loaded into PostgreSQL, DuckDB or
SQLite exactly once.

Above the client: they use `VBotClient.sync` and a `StateStore` of their own, and import
their drivers only when a database of theirs is opened.
"""

from ._load import (
    DatabaseLoad,
    DatabaseStateStore,
    DatabaseSync,
    open_database_sync,
    sync_to_database,
)
from ._turns import TurnsLoad, sync_conversations_to_database
from ._url import DatabaseURL, parse_database_url

__all__ = [
    "DatabaseLoad",
    "DatabaseStateStore",
    "DatabaseSync",
    "DatabaseURL",
    "TurnsLoad",
    "open_database_sync",
    "parse_database_url",
    "sync_conversations_to_database",
    "sync_to_database",
]
