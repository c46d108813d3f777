"""The sans-I/O core: requests built from arguments, responses read into models or errors.

Nothing here performs I/O. The client sends what `Request` describes and hands the raw
``(status, headers, body)`` back to `read_response`, which either returns the envelope's
``data`` or raises the typed error that the response means. Token exchanges work the same way:
`TokenRequest` describes a ``POST /token`` and `read_token_response` reads its answer. Every
mapping from an HTTP status or an envelope to an exception lives in `error_for_status`,
`read_response` and `read_token_response`; what differs between the API's dialects (paths,
header, parameters, envelope) comes from the request's `Dialect`.

Secrets: a server may echo the credential it was sent (a 401 body, a failure envelope's
message, an HTML page that prints the request headers). Every body an error keeps or quotes
passes through `redact` first, with the secrets of the request that got it.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import http
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final, TypedDict, Union, cast
from urllib.parse import urlencode

import attrs
import msgspec
import orjson

from ._decoding import (
    STRUCTURE_ERRORS,
    CallRow,
    CamelRecord,
    SnakeRecord,
    describe_structure_error,
    structure_record,
    structure_records,
)
from ._dialects import (
    COUNT_ALL,
    GET_ALL,
    GET_BOT_CONVERSATION,
    NO_DATA,
    Dialect,
    Envelope,
    read_error_envelope,
    read_v3_envelope,
)
from ._errors import (
    APIError,
    AuthenticationError,
    RateLimitError,
    ResponseFormatError,
    VBotError,
)
from ._models import BotConversation, CallFilter, CallRecord, TimeUnit
from ._redact import redact

__all__ = [
    "COUNT_ALL",
    "GET_ALL",
    "GET_BOT_CONVERSATION",
    "TOKEN",
    "Request",
    "TokenGrant",
    "TokenRequest",
    "conversation_reader",
    "conversation_request",
    "count_request",
    "decode_record_page",
    "error_for_status",
    "finds_nothing",
    "list_request",
    "parse_retry_after",
    "password_grant",
    "read_count",
    "read_record_page",
    "read_records",
    "read_response",
    "read_token_response",
    "refresh_grant",
    "refuses_token",
]

TOKEN: Final = "token"


@attrs.frozen
class Request:
    """One GET to the API: the endpoint (by its seed name), its query parameters, the page it
    asks for, and the dialect that says where it goes and how its answer reads."""

    endpoint: str
    params: Mapping[str, str]
    page: int | None = None
    dialect: Dialect = attrs.field(kw_only=True, repr=False)

    @property
    def path(self) -> str:
        return self.dialect.paths[self.endpoint]


def count_request(
    filter: CallFilter,
    *,
    vbot_id: str | None,
    project_code: str | None,
    time_unit: TimeUnit,
    dialect: Dialect,
) -> Request:
    """The ``countAll`` request for ``filter``: the identity and the criteria that are set,
    under ``dialect``'s names (dates in ``time_unit``).

    Raises:
        ValueError: A criterion the dialect does not have.
    """
    params = dialect.identity_params(vbot_id, project_code)
    params |= dialect.filter_params(filter, time_unit)
    return Request(COUNT_ALL, params, dialect=dialect)


def list_request(count: Request, *, page: int, size: int) -> Request:
    """The ``getAll`` request for one page of the calls that ``count`` (a `count_request`)
    counts: the same parameters and dialect, then ``page`` and ``size``.

    Raises:
        ValueError: ``count`` is not a ``countAll`` request.
    """
    if count.endpoint != COUNT_ALL:
        raise ValueError(f"a page is listed from a {COUNT_ALL} request, not {count.endpoint}")
    params = {**count.params, "page": str(page), "size": str(size)}
    return Request(GET_ALL, params, page=page, dialect=count.dialect)


def conversation_request(
    trans_id: str,
    *,
    bot_id: str | None,
    vbot_id: str | None,
    project_code: str | None,
    dialect: Dialect,
) -> Request:
    """The ``getBotConversation`` request for one call."""
    params = dialect.identity_params(vbot_id, project_code)
    if bot_id:
        params["bot_id"] = bot_id
    params["trans_id"] = trans_id
    return Request(GET_BOT_CONVERSATION, params, dialect=dialect)


@attrs.frozen
class TokenRequest:
    """One ``POST /token``, form-encoded.

    The fields hold the password or the refresh token, so the repr shows the grant type only.
    """

    grant_type: str
    fields: Mapping[str, str] = attrs.field(repr=False)

    endpoint: ClassVar[str] = TOKEN
    page: ClassVar[None] = None
    path: ClassVar[str] = "/" + TOKEN
    headers: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
    )

    @property
    def body(self) -> bytes:
        """The form, URL-encoded, ``grant_type`` last (as VBot's documentation lists it)."""
        return urlencode({**self.fields, "grant_type": self.grant_type}).encode()

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values that must never be shown: the password or the refresh token."""
        return tuple(v for k, v in self.fields.items() if k in ("password", "refresh_token"))


def password_grant(username: str, password: str) -> TokenRequest:
    """The login request: ``grant_type=password`` with ``username`` and ``password``."""
    return TokenRequest("password", {"username": username, "password": password})


def refresh_grant(refresh_token: str) -> TokenRequest:
    """The renewal request: ``grant_type=refresh_token`` with the refresh token."""
    return TokenRequest("refresh_token", {"refresh_token": refresh_token})


@attrs.frozen
class TokenGrant:
    """A successful ``/token`` answer. The tokens are secret: the repr shows ``expires_in`` only.

    Attributes:
        access_token: The Bearer token for API requests.
        refresh_token: The token for ``grant_type=refresh_token``, or ``None`` if none was given.
        expires_in: The access token's lifetime in seconds, or ``None`` if the server gave none.
    """

    access_token: str = attrs.field(repr=False)
    refresh_token: str | None = attrs.field(repr=False)
    expires_in: float | None


def refuses_token(exc: AuthenticationError) -> bool:
    """Whether ``exc`` refuses the credential itself (HTTP 401, or an envelope's 401), so a
    renewed token may succeed where a 403 ("not allowed") will not."""
    return exc.http_status == 401 or exc.error_code == 401


def finds_nothing(exc: VBotError) -> bool:
    """Whether ``exc`` is the server saying that what was asked for does not exist: HTTP 404,
    or a failure envelope with code 404 (a call without a conversation or a recording)."""
    return isinstance(exc, APIError) and 404 in (exc.http_status, exc.error_code)


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Read a ``Retry-After`` header (delta-seconds or an HTTP date) as seconds to wait.

    Returns ``None`` when the header is absent or unreadable, and never a negative number.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():  # RFC 9110 delta-seconds: digits only ("nan", "1e400" are not)
        return float(value)
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # Fractions are out of spec but harmless; non-finite values are unreadable.
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())


class _Where(TypedDict):
    endpoint: str
    page: int | None


def _where(request: Union[Request, TokenRequest]) -> _Where:
    return {"endpoint": request.endpoint, "page": request.page}


def _shown(body: bytes, secrets: tuple[str, ...]) -> str:
    """``body`` as an error may keep or quote it: text (bytes that are not UTF-8 as
    replacement characters), each of ``secrets`` blanked out."""
    return redact(body.decode("utf-8", errors="replace"), secrets)


def _envelope_fields(body: str) -> tuple[int | None, str | None]:
    """The code and message of a body, if it is an envelope of any dialect (or OAuth2 error)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    envelope = read_v3_envelope(doc)
    if envelope is not None:
        return envelope.code, envelope.message
    code = doc.get("error")
    message = doc.get("message") or doc.get("error_description")
    if not isinstance(message, str) and isinstance(code, str):
        message = code  # OAuth2 style: {"error": "invalid_grant", ...}
    return (
        code if type(code) is int else None,
        message if isinstance(message, str) else None,
    )


def error_for_status(
    request: Union[Request, TokenRequest], status: int, headers: Mapping[str, str], body: str
) -> APIError | None:
    """The error an HTTP status means, or ``None`` for a 2xx; ``body`` is the text the error
    keeps (redacted already).

    401/403 are `AuthenticationError`, and so is 400 to a `TokenRequest` (OAuth2 answers a
    refused grant with 400) and any status whose envelope carries one of the dialect's refusal
    codes (401, 403; v3's 803). 429 is `RateLimitError` (with ``Retry-After``), a 3xx is an
    `APIError` (redirects are never followed, so the token never travels to another host), and
    anything else non-2xx is an `APIError` carrying the server's code and message.
    """
    if 200 <= status < 300:
        return None
    code, message = _envelope_fields(body)
    if status in (301, 302, 303, 307, 308):
        message = f"unexpected redirect to {headers.get('Location', '?')} (not followed)"
    message = message or _reason(status)
    where = _where(request)
    retry_after = parse_retry_after(headers.get("Retry-After"))
    # The envelope's own refusal codes count whatever the status (v3 answers 803 with 500).
    refusals = request.dialect.auth_codes if isinstance(request, Request) else frozenset()
    if (
        status in (401, 403)
        or (status == 400 and isinstance(request, TokenRequest))
        or code in refusals
    ):
        return AuthenticationError(message, error_code=code, http_status=status, body=body, **where)
    if status == 429:
        return RateLimitError(message, retry_after=retry_after, error_code=code, body=body, **where)
    return APIError(
        message,
        error_code=code,
        http_status=status,
        retry_after=retry_after,
        body=body,
        **where,
    )


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "no reason given"


def read_response(
    request: Request,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: tuple[str, ...] = (),
) -> Any:
    """Check a response and return the envelope's ``data``.

    ``secrets`` (the credential sent) are blanked out of every body an error keeps or quotes.

    Raises:
        AuthenticationError: HTTP 401/403, or a failure envelope whose code is one of the
            dialect's refusals (401, 403; v3's 803 "not allowed to view").
        APIError: (or another subclass) any other non-2xx status, or a failure envelope.
        ResponseFormatError: The body is not JSON or not the dialect's envelope (``retryable``).
    """
    if 200 <= status < 300:
        try:
            envelope = request.dialect.read_envelope(orjson.loads(body))
        except orjson.JSONDecodeError:
            envelope = None
        if envelope is not None and envelope.ok and envelope.data is not NO_DATA:
            return envelope.data
    raise _failure(request, status, headers, _shown(body, secrets))


def _failure(request: Request, status: int, headers: Mapping[str, str], shown: str) -> Exception:
    """The error a response other than a success envelope means; ``shown`` is the body's text,
    redacted."""
    error = error_for_status(request, status, headers, shown)
    if error is not None:
        return error
    where = _where(request)
    try:
        doc = orjson.loads(shown)
    except orjson.JSONDecodeError as exc:
        return ResponseFormatError(f"body is not JSON ({exc})", retryable=True, body=shown, **where)
    dialect = request.dialect
    envelope = dialect.read_envelope(doc)
    if envelope is None:
        return ResponseFormatError(
            f"body is not the {dialect.envelope_shape} envelope of the {dialect.name} API",
            retryable=True,
            body=shown,
            **where,
        )
    if envelope.ok:
        # Without data, or with data in bytes that are not UTF-8 (which only the text, with
        # replacement characters, could read).
        reason = "without data" if envelope.data is NO_DATA else "that is not UTF-8"
        return ResponseFormatError(
            f"success envelope {reason}", retryable=True, body=shown, **where
        )
    return _envelope_error(envelope, dialect, status, shown, where)


def _envelope_error(
    envelope: Envelope, dialect: Dialect, status: int, body: str, where: _Where
) -> APIError:
    kind = AuthenticationError if envelope.code in dialect.auth_codes else APIError
    return kind(
        envelope.message or "failure envelope",
        error_code=envelope.code,
        http_status=status,
        body=body,
        **where,
    )


def read_token_response(
    request: TokenRequest, status: int, headers: Mapping[str, str], body: bytes
) -> TokenGrant:
    """Read the answer to a ``/token`` request.

    Success is an OAuth2-style object: ``access_token`` (a non-empty string, required),
    ``token_type`` (``"bearer"`` if present), ``expires_in`` (positive seconds; missing or
    ``null`` means unknown) and ``refresh_token`` (missing, ``null`` or empty means none).
    No error keeps a secret: a refusal's body is kept with the password or refresh token
    that was sent blanked out, and a 2xx body (which may hold a token) is never kept.

    Raises:
        AuthenticationError: The grant was refused: HTTP 400/401/403, or a failure envelope
            (``status`` 0) with any status. The message is the server's reason: the OAuth2
            ``error_description`` (else ``error``) or the envelope's ``message``.
        APIError: (or `RateLimitError`) any other non-2xx status; 429 and 5xx are transient.
        ResponseFormatError: A 2xx body that is neither a token nor a failure envelope
            (``retryable`` when it is not JSON at all).
    """
    shown = _shown(body, request.secrets)
    error = error_for_status(request, status, headers, shown)
    if error is not None:
        raise error
    where = _where(request)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ResponseFormatError("token answer is not JSON", retryable=True, **where) from None
    if type(doc) is dict and "access_token" in doc:
        return _token_grant(request, doc)
    failure = read_error_envelope(doc) or read_v3_envelope(doc)
    if failure is not None and not failure.ok:
        code, message = _envelope_fields(shown)
        raise AuthenticationError(
            message or "failure envelope",
            error_code=code,
            http_status=status,
            body=shown,
            **where,
        )
    raise ResponseFormatError("answer is neither an OAuth2 token nor a failure envelope", **where)


def _token_grant(request: TokenRequest, doc: dict[str, Any]) -> TokenGrant:
    # Messages name types, never values: the values are tokens.
    access, refresh = doc.get("access_token"), doc.get("refresh_token") or None
    expires_in, token_type = doc.get("expires_in"), doc.get("token_type")
    if type(access) is not str or not access:
        raise _format_error(
            request,
            f"access_token must be a non-empty string, got {type(access).__name__}",
            "access_token",
        )
    if refresh is not None and type(refresh) is not str:
        raise _format_error(
            request,
            f"refresh_token must be a string, got {type(refresh).__name__}",
            "refresh_token",
        )
    if expires_in is not None and (type(expires_in) not in (int, float) or not expires_in > 0):
        raise _format_error(
            request, "expires_in must be a positive number of seconds", "expires_in"
        )
    if token_type is not None and (type(token_type) is not str or token_type.lower() != "bearer"):
        raise _format_error(request, "token_type must be 'bearer'", "token_type")
    return TokenGrant(access, refresh, None if expires_in is None else float(expires_in))


def _format_error(
    request: Union[Request, TokenRequest], message: str, field: str
) -> ResponseFormatError:
    return ResponseFormatError(message, field=field, endpoint=request.endpoint, page=request.page)


def read_count(request: Request, data: Any) -> int:
    """``countAll``'s data: a non-negative int."""
    if type(data) is not int or data < 0:
        raise _format_error(request, f"count must be a non-negative int, got {data!r:.40}", "data")
    return data


def read_records(request: Request, data: Any) -> list[CallRecord]:
    """``getAll``'s data: an array of call records.

    Raises:
        ResponseFormatError: ``data`` is not an array, or a record has a field of the wrong
            type (``field`` names it as sent, e.g. ``data[3].duration``, ``data[3].createAt``).
    """
    if type(data) is not list:
        raise _format_error(request, f"data must be an array, got {type(data).__name__}", "data")
    try:
        return structure_records(data)
    except STRUCTURE_ERRORS:
        # The fast path gave no index; find the first bad record and say why it is bad.
        for index, item in enumerate(data):
            try:
                structure_record(item)
            except STRUCTURE_ERRORS as exc:
                field, reason = describe_structure_error(exc, f"data[{index}]", item)
                raise _format_error(request, f"{field}: {reason}", field) from exc
        raise


#: The fields an envelope of any dialect may have besides ``data``.
_ENVELOPE_FIELDS: Final = ("status", "error", "message", "errorCode", "msg")


def _page_struct(record: Any) -> Any:
    """A ``getAll`` envelope whose ``data`` is an array of ``record`` (a record twin)."""
    fields = [(name, Any, msgspec.UNSET) for name in _ENVELOPE_FIELDS]
    return msgspec.defstruct(
        f"{record.__name__}Page", [("data", list[record] | None, None), *fields]
    )


#: The page decoders, the spelling of v2 and v3-legacy first: a camelCase page fails the
#: snake_case decoder at its first record's first camelCase field, at once.
_PAGE_DECODERS: Final = tuple(
    msgspec.json.Decoder(_page_struct(record)).decode for record in (SnakeRecord, CamelRecord)
)


def read_record_page(
    request: Request,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: tuple[str, ...] = (),
) -> list[CallRow]:
    """Read a ``getAll`` answer into its records: `read_response`, then `read_records`.

    A success envelope (by the request's dialect) whose records have only known fields, each
    of the right type, is decoded by msgspec in one go (`decode_record_page`) into twins,
    which `build_records` makes records of when the page is handed over; any other answer
    takes the general path, which returns the same records (with their extras) or raises
    the same error, with ``secrets`` blanked out of what it quotes.
    """
    if 200 <= status < 300:
        page = decode_record_page(body)
        if page is not None:
            envelope = request.dialect.read_envelope(page[0])
            if envelope is not None and envelope.ok:
                return page[1]
    data = read_response(request, status, headers, body, secrets=secrets)
    return cast(list[CallRow], read_records(request, data))  # a list is not covariant


def decode_record_page(body: bytes) -> tuple[dict[str, Any], list[CallRow]] | None:
    """The envelope (its fields but ``data``) and the record twins of a page, decoded by
    msgspec; or ``None`` when ``data`` is no array of records the fast path can read (see
    `_decoding.SnakeRecord`), and the general path must say what the body is."""
    for decode in _PAGE_DECODERS:
        try:
            page = decode(body)
        except msgspec.MsgspecError:
            continue
        if page.data is None:
            return None
        envelope = {name: getattr(page, name) for name in _ENVELOPE_FIELDS}
        envelope = {name: value for name, value in envelope.items() if value is not msgspec.UNSET}
        return envelope, page.data
    return None


def conversation_reader(trans_id: str) -> Callable[[Request, Any], BotConversation]:
    """A reader of ``getBotConversation``'s data (a string) for the call ``trans_id``."""

    def read(request: Request, data: Any) -> BotConversation:
        if type(data) is not str:
            raise _format_error(
                request, f"conversation must be a string, got {type(data).__name__}", "data"
            )
        return BotConversation.from_raw(trans_id, data)

    return read
