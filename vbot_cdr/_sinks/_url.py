"""Database URLs: which backend, where, and how to show them without the password.

Accepted forms::

    postgresql://user:password@host:5432/dbname?sslmode=require   (or postgres://)
    duckdb:///relative/path.duckdb    duckdb:////absolute/path.duckdb
    sqlite:///relative/path.db        sqlite:////absolute/path.db
    calls.duckdb   calls.db   calls.sqlite   (a bare path)

As in SQLAlchemy, three slashes start a relative path and four an absolute one. A bare
``.db`` file is SQLite, unless it exists and is a DuckDB file.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Final, Literal

import attrs

__all__ = ["Backend", "DatabaseURL", "parse_database_url"]

Backend = Literal["postgresql", "duckdb", "sqlite"]

_SCHEMES: Final[dict[str, Backend]] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "duckdb": "duckdb",
    "sqlite": "sqlite",
}
_SUFFIXES: Final[dict[str, Backend]] = {
    ".duckdb": "duckdb",
    ".db": "sqlite",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
}
_FORMS: Final = (
    "postgresql://USER:PASSWORD@HOST/DB, duckdb:///PATH, sqlite:///PATH, "
    "or a path ending in .duckdb, .db or .sqlite"
)
#: A password in the query string (``?password=...``), which libpq also accepts.
_QUERY_PASSWORD: Final = re.compile(r"(?i)((?:^|[?&])password=)[^&]*")
_MASK: Final = "***"


@attrs.frozen(repr=False)
class DatabaseURL:
    """A parsed database URL; its `str` and `repr` mask the password.

    Attributes:
        backend: ``"postgresql"``, ``"duckdb"`` or ``"sqlite"``.
        target: What the driver connects to: the URL itself for PostgreSQL, else the path.
    """

    backend: Backend
    target: str
    _password: str | None = attrs.field(default=None, alias="password")  # as written in the URL

    def __str__(self) -> str:
        return self.redact(self.target)

    def __repr__(self) -> str:
        return f"DatabaseURL({self.backend!r}, {str(self)!r})"

    def redact(self, text: str) -> str:
        """``text`` with the password of this URL masked wherever it appears."""
        if self._password:
            for form in {self._password, urllib.parse.unquote(self._password)}:
                text = text.replace(form, _MASK)
        return _QUERY_PASSWORD.sub(rf"\g<1>{_MASK}", text)


def _is_duckdb_file(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(12)[8:12] == b"DUCK"
    except OSError:
        return False


def parse_database_url(url: str) -> DatabaseURL:
    """Tell the backend and the target of ``url``; nothing is opened.

    Raises:
        ValueError: Not one of the accepted forms (the message masks any password, also in
            a mistyped URL such as ``postgresql:/user:password@host/db``).
    """
    shown = repr(str(DatabaseURL("postgresql", url, password=_password_of(url))))
    scheme, colon, rest = url.partition("://")
    if not colon:
        suffix = Path(url).suffix.lower()
        backend = _SUFFIXES.get(suffix)
        if backend is None:
            raise ValueError(f"not a database URL: {shown}; give {_FORMS}")
        if backend == "sqlite" and suffix == ".db" and _is_duckdb_file(Path(url)):
            backend = "duckdb"
        return DatabaseURL(backend, url)
    backend = _SCHEMES.get(scheme.lower())
    if backend is None:
        raise ValueError(f"unsupported database URL {shown}; give {_FORMS}")
    if backend == "postgresql":  # libpq reads the rest, and says what is wrong with it
        return DatabaseURL(backend, url, password=_password_of(url))
    if not rest.startswith("/") or rest == "/":
        raise ValueError(f"{shown} names no file: write {scheme}:///PATH (////PATH if absolute)")
    return DatabaseURL(backend, rest[1:])


def _password_of(url: str) -> str | None:
    """The password ``url`` holds, also where a mistyped scheme hides it from urllib."""
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:  # a malformed port: still mask what looks like a password
        password = None
    if password is None:
        userinfo = url.rpartition("@")[0].rpartition("/")[2]
        password = userinfo.partition(":")[2] or None
    return password or None
