"""`FakeTokenEndpoint`: VBot's ``POST /token`` for the fake server, with tokens a test can expire.

It follows ``shared/spec/AUTH.md``: a form-encoded ``grant_type=password`` (with ``username``
and ``password``) or ``grant_type=refresh_token`` (with ``refresh_token``), answered with an
OAuth2-style ``{access_token, token_type, expires_in, refresh_token}``. Where the document is
silent, the fake chooses and says so here:

- a refused grant is HTTP 400 ``{"error": "invalid_grant", "error_description": ...}``
  (``refusal="oauth2"``), or HTTP 401 with a failure envelope (``refusal="envelope"``);
- refresh tokens rotate: a refresh answers a new one, and the old one is refused after;
- a body that is not form-encoded, or a request without ``Accept: application/json``, is
  400 ``invalid_request``; an unknown grant type is 400 ``unsupported_grant_type``.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson
from aiohttp import web

__all__ = ["FakeTokenEndpoint"]

_FORM = "application/x-www-form-urlencoded"
_BAD_LOGIN = "Sai tên đăng nhập hoặc mật khẩu"
_BAD_REFRESH = "Refresh token không hợp lệ hoặc đã hết hạn"


class FakeTokenEndpoint:
    """Issues short-lived tokens to known users, and tells the API which tokens are valid.

    Every `FakeVBotServer` has one, as ``server.token_endpoint``, serving ``POST /token``;
    the API endpoints accept its valid access tokens besides ``server.token``. The server
    counts ``/token`` requests (``server.count("token")``) and injects faults into them
    (``server.inject(Fault(status=503), endpoint="token")``) as it does for the API.

    Usage::

        async with FakeVBotServer() as server:
            server.token_endpoint.users["alice"] = "s3cret"
            client = VBotClient.from_password("alice", "s3cret", base_url=server.base_url)

    Args:
        users: Passwords by username.
        expires_in: The lifetime of the access tokens it issues, in seconds.
        clock: Seconds on a monotonic clock; a test shares a fake one with the client's
            `PasswordAuth` to move time on at will.
        refusal: How a refused grant is answered: ``"oauth2"`` or ``"envelope"`` (above).

    Attributes:
        grants: The ``grant_type`` of every ``/token`` request, in arrival order.
        issued: Every ``(access_token, refresh_token)`` pair issued, in order.
    """

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        expires_in: float = 899,
        clock: Callable[[], float] = time.monotonic,
        refusal: Literal["oauth2", "envelope"] = "oauth2",
    ):
        self.users = dict(users or {})
        self.expires_in = expires_in
        self.clock = clock
        self.refusal = refusal
        self.grants: list[str] = []
        self.issued: list[tuple[str, str]] = []
        self._access: dict[str, float] = {}  # access token -> when it expires
        self._refresh: dict[str, str] = {}  # refresh token -> its user
        self._serial = itertools.count(1)

    def accepts(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header holds an access token issued here, still valid."""
        scheme, _, token = (authorization or "").partition(" ")
        expires = self._access.get(token) if scheme == "Bearer" else None
        return expires is not None and self.clock() < expires

    def expire_access_tokens(self) -> None:
        """Refuse every access token issued so far, as if its time had run out."""
        self._access.clear()

    def revoke_refresh_tokens(self) -> None:
        """Refuse every refresh token issued so far."""
        self._refresh.clear()

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one ``POST /token``."""
        form = await request.post() if request.content_type == _FORM else None
        fields = {k: v for k, v in (form or {}).items() if isinstance(v, str)}
        grant = fields.get("grant_type", "")
        self.grants.append(grant)
        if form is None or "application/json" not in request.headers.get("Accept", ""):
            return _json(400, {"error": "invalid_request", "error_description": "form + JSON"})
        if grant == "password":
            username = fields.get("username", "")
            password = self.users.get(username)
            if password is None or fields.get("password") != password:
                return self._refuse(_BAD_LOGIN)
            return self._issue(username)
        if grant == "refresh_token":
            username = self._refresh.pop(fields.get("refresh_token", ""), "")
            if username not in self.users:
                return self._refuse(_BAD_REFRESH)
            return self._issue(username)
        return _json(400, {"error": "unsupported_grant_type"})

    def _issue(self, username: str) -> web.Response:
        serial = next(self._serial)
        access = f"at{serial}-{secrets.token_hex(8)}"
        refresh = f"rt{serial}-{secrets.token_hex(8)}"
        self._access[access] = self.clock() + self.expires_in
        self._refresh[refresh] = username
        self.issued.append((access, refresh))
        return _json(
            200,
            {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": self.expires_in,
                "refresh_token": refresh,
            },
        )

    def _refuse(self, reason: str) -> web.Response:
        if self.refusal == "envelope":
            return _json(401, {"status": 0, "error": 401, "message": reason, "data": None})
        return _json(400, {"error": "invalid_grant", "error_description": reason})


def _json(status: int, doc: Mapping[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")
