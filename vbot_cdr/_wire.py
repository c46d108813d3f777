"""The sans-I/O core: requests built from arguments, responses read into models or errors.

Nothing here performs I/O. The client sends what `Request` describes and hands the raw
``(status, headers, body)`` back to `read_response`, which either returns the envelope's
``data`` or raises the typed error that the response means. Every mapping from an HTTP status
or an envelope to an exception lives in `error_for_status` and `read_response`.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Callable, Mapping
from typing import Any, Final, TypedDict

import attrs
import orjson

from ._errors import APIError, AuthenticationError, RateLimitError, ResponseFormatError
from ._models import (
    STRUCTURE_ERRORS,
    BotConversation,
    CallFilter,
    CallRecord,
    TimeUnit,
    describe_structure_error,
    structure_record,
)

__all__ = [
    "COUNT_ALL",
    "GET_ALL",
    "GET_BOT_CONVERSATION",
    "Request",
    "auth_headers",
    "conversation_reader",
    "conversation_request",
    "count_request",
    "error_for_status",
    "list_request",
    "parse_retry_after",
    "read_count",
    "read_records",
    "read_response",
]

COUNT_ALL: Final = "countAll"
GET_ALL: Final = "getAll"
GET_BOT_CONVERSATION: Final = "getBotConversation"
API_PREFIX: Final = "/api/campaignCall/cdr/"


@attrs.frozen
class Request:
    """One GET to the API: the endpoint name, its query parameters, and the page it asks for."""

    endpoint: str
    params: Mapping[str, str]
    page: int | None = None

    @property
    def path(self) -> str:
        return API_PREFIX + self.endpoint


def _identity(vbot_id: str | None, project_code: str | None) -> dict[str, str]:
    return {k: v for k, v in (("vbot_id", vbot_id), ("project_code", project_code)) if v}


def count_request(
    filter: CallFilter, *, vbot_id: str | None, project_code: str | None, time_unit: TimeUnit
) -> Request:
    """The ``countAll`` request for ``filter``."""
    params = _identity(vbot_id, project_code) | filter.to_params(time_unit)
    return Request(COUNT_ALL, params)


def list_request(
    filter: CallFilter,
    *,
    page: int,
    size: int,
    vbot_id: str | None,
    project_code: str | None,
    time_unit: TimeUnit,
) -> Request:
    """The ``getAll`` request for one page of ``filter``."""
    params = _identity(vbot_id, project_code) | filter.to_params(time_unit)
    params["page"] = str(page)
    params["size"] = str(size)
    return Request(GET_ALL, params, page=page)


def conversation_request(
    trans_id: str, *, bot_id: str | None, vbot_id: str | None, project_code: str | None
) -> Request:
    """The ``getBotConversation`` request for one call."""
    params = _identity(vbot_id, project_code)
    if bot_id:
        params["bot_id"] = bot_id
    params["trans_id"] = trans_id
    return Request(GET_BOT_CONVERSATION, params)


def auth_headers(token: str) -> dict[str, str]:
    """The headers of every API request."""
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Read a ``Retry-After`` header (delta-seconds or an HTTP date) as seconds to wait.

    Returns ``None`` when the header is absent or unreadable, and never a negative number.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
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


def _where(request: Request) -> _Where:
    return {"endpoint": request.endpoint, "page": request.page}


def _text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")


def _envelope_fields(body: bytes) -> tuple[int | None, str | None]:
    """The ``error`` code and ``message`` of a body, if it is an envelope (or OAuth2 error)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    code = doc.get("error")
    message = doc.get("message") or doc.get("error_description")
    if not isinstance(message, str) and isinstance(code, str):
        message = code  # OAuth2 style: {"error": "invalid_grant", ...}
    return (
        code if type(code) is int else None,
        message if isinstance(message, str) else None,
    )


def error_for_status(
    request: Request, status: int, headers: Mapping[str, str], body: bytes
) -> APIError | None:
    """The error an HTTP status means, or ``None`` for a 2xx.

    401/403 are `AuthenticationError`, 429 is `RateLimitError` (with ``Retry-After``), a 3xx is
    an `APIError` (redirects are never followed, so the token never travels to another
    host), and anything else non-2xx is an `APIError` carrying the server's code and message.
    """
    if 200 <= status < 300:
        return None
    code, message = _envelope_fields(body)
    if status in (301, 302, 303, 307, 308):
        message = f"unexpected redirect to {headers.get('Location', '?')} (not followed)"
    message = message or f"HTTP {status}"
    where = _where(request)
    if status in (401, 403):
        return AuthenticationError(
            message, error_code=code, http_status=status, body=_text(body), **where
        )
    if status == 429:
        return RateLimitError(
            message,
            retry_after=parse_retry_after(headers.get("Retry-After")),
            error_code=code,
            body=_text(body),
            **where,
        )
    return APIError(message, error_code=code, http_status=status, body=_text(body), **where)


def read_response(request: Request, status: int, headers: Mapping[str, str], body: bytes) -> Any:
    """Check a response and return the envelope's ``data``.

    Raises:
        APIError: (or a subclass) for a non-2xx status, or a failure envelope (``status`` 0).
        ResponseFormatError: The body is not JSON or not an envelope (``retryable``).
    """
    error = error_for_status(request, status, headers, body)
    if error is not None:
        raise error
    where = _where(request)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ResponseFormatError(
            f"body is not JSON ({exc})", retryable=True, body=_text(body), **where
        ) from None
    if type(doc) is not dict or doc.get("status") not in (0, 1) or type(doc["status"]) is not int:
        raise ResponseFormatError(
            "body is not the {status, error, message, data} envelope",
            retryable=True,
            body=_text(body),
            **where,
        )
    if doc["status"] == 0:
        code = doc.get("error")
        message = doc.get("message")
        raise APIError(
            message if isinstance(message, str) and message else "failure envelope",
            error_code=code if type(code) is int else None,
            http_status=status,
            body=_text(body),
            **where,
        )
    if "data" not in doc:
        raise ResponseFormatError(
            "success envelope without data", retryable=True, body=_text(body), **where
        )
    return doc["data"]


def _format_error(request: Request, message: str, field: str) -> ResponseFormatError:
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
            type (``field`` names it, e.g. ``data[3].duration``).
    """
    if type(data) is not list:
        raise _format_error(request, f"data must be an array, got {type(data).__name__}", "data")
    try:
        return [structure_record(item) for item in data]
    except STRUCTURE_ERRORS:
        # The fast path gave no index; find the first bad record and say why it is bad.
        for index, item in enumerate(data):
            try:
                structure_record(item)
            except STRUCTURE_ERRORS as exc:
                field, reason = describe_structure_error(exc, f"data[{index}]")
                raise _format_error(request, f"{field}: {reason}", field) from exc
        raise


def conversation_reader(trans_id: str) -> Callable[[Request, Any], BotConversation]:
    """A reader of ``getBotConversation``'s data (a string) for the call ``trans_id``."""

    def read(request: Request, data: Any) -> BotConversation:
        if type(data) is not str:
            raise _format_error(
                request, f"conversation must be a string, got {type(data).__name__}", "data"
            )
        return BotConversation.from_raw(trans_id, data)

    return read
