"""The exception tree of vbot_cdr.

Every error the public API raises derives from `VBotError`::

    VBotError
    ├── APIError                 the server answered, and the answer is a failure
    │   ├── AuthenticationError  401/403, or a token that could not be obtained
    │   └── RateLimitError       429 that outlasted the retries (or asked for too long a wait)
    ├── TransportError           no usable answer: connection failure or timeout, past the retries
    ├── ResponseFormatError      an answer that is not the documented envelope or record shape
    ├── IncompleteError          an iteration whose pages could not be made to match countAll
    ├── StateError               a sync state file that cannot be used
    ├── DatabaseError            a database sink that cannot connect, load or commit
    ├── CallError                a bulk read's request about one call (its conversation, its
    │                            recording) failed: names the call; the failure is its cause
    └── WebhookError             a webhook body that cannot be read (also a ValueError)

No exception ever carries the access token, the refresh token or a password: messages are
built from the endpoint name, the page, status codes and (truncated) response bodies only.

Text from a server is shown escaped: every error's message (and `APIError.message`) has its
unprintable characters written as escapes (``\n``, ``\x1b``, ``\u202e``), here, where the
errors are built, so that one line stays one line and no terminal escape gets through,
wherever the message is shown (a terminal, a log, a summary).
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "AuthenticationError",
    "CallError",
    "DatabaseError",
    "IncompleteError",
    "RateLimitError",
    "ResponseFormatError",
    "StateError",
    "TransportError",
    "VBotError",
    "WebhookError",
]

#: How much of a response body an error keeps, in characters.
BODY_EXCERPT_CHARS = 200


def _excerpt(body: str | None) -> str | None:
    if body is None or len(body) <= BODY_EXCERPT_CHARS:
        return body
    return body[:BODY_EXCERPT_CHARS] + "…"


def printable(text: str) -> str:
    """``text`` with each character that is not printable (control characters, line and
    paragraph separators, bidirectional overrides...) written as its escape, ``\x1b``."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def _where(endpoint: str | None, page: int | None) -> str:
    if endpoint is None:
        return ""
    return f"{endpoint} (page {page})" if page is not None else endpoint


class VBotError(Exception):
    """Base class of every error raised by vbot_cdr.

    Attributes:
        endpoint: The API endpoint name (``"getAll"``, ``"countAll"``, ...) or ``None``.
        page: The page number for ``getAll`` requests, else ``None``.
    """

    def __init__(self, message: str, *, endpoint: str | None = None, page: int | None = None):
        self.endpoint = endpoint
        self.page = page
        where = _where(endpoint, page)
        super().__init__(printable(f"{where}: {message}" if where else message))


class APIError(VBotError):
    """The server answered with a failure.

    Raised for a failure envelope (``status`` 0, ``http_status`` 200) and for an HTTP status
    that is not retried (or that outlasted the retries).

    Attributes:
        error_code: The envelope's ``error`` code, or ``None`` when the body had no envelope.
        message: The envelope's ``message`` (or the HTTP reason), as the server gave it but
            for its unprintable characters, escaped.
        http_status: The HTTP status code of the response.
        retry_after: The wait the server asked for (``Retry-After``), in seconds, or ``None``.
        body: The start of the response body, for diagnosis.
    """

    def __init__(
        self,
        message: str,
        *,
        error_code: int | None = None,
        http_status: int,
        retry_after: float | None = None,
        body: str | None = None,
        endpoint: str | None = None,
        page: int | None = None,
    ):
        self.error_code = error_code
        self.retry_after = retry_after
        self.message = printable(message)
        self.http_status = http_status
        self.body = _excerpt(body)
        code = f", error {error_code}" if error_code is not None else ""
        super().__init__(f"HTTP {http_status}{code}: {message}", endpoint=endpoint, page=page)


class AuthenticationError(APIError):
    """The server refused the credentials (HTTP 401/403, or a failed login)."""


class RateLimitError(APIError):
    """The server kept answering 429, or asked to wait longer than the policy allows.

    ``retry_after`` is the wait the server asked for, in seconds, or ``None`` if it gave none.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None,
        error_code: int | None = None,
        http_status: int = 429,
        body: str | None = None,
        endpoint: str | None = None,
        page: int | None = None,
    ):
        super().__init__(
            message,
            error_code=error_code,
            http_status=http_status,
            retry_after=retry_after,
            body=body,
            endpoint=endpoint,
            page=page,
        )


class TransportError(VBotError):
    """No answer could be had: a connection failure or a timeout, after the retries."""


class ResponseFormatError(VBotError):
    """The body is not the documented envelope, or a record does not have the documented shape.

    Attributes:
        field: The offending field (``"data[3].duration"``), or ``None`` when the fault is
            in the body as a whole.
        retryable: ``True`` when the body could not be read at all (not JSON, truncated,
            not an envelope), which a new attempt may cure; ``False`` for a wrong field or an
            oversized body, which will not fix itself.
        body: The start of the response body, for diagnosis.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        retryable: bool = False,
        body: str | None = None,
        endpoint: str | None = None,
        page: int | None = None,
    ):
        self.field = field
        self.retryable = retryable
        self.body = _excerpt(body)
        super().__init__(message, endpoint=endpoint, page=page)


class IncompleteError(VBotError):
    """An iteration could not hand out every record ``countAll`` reports for its range.

    Raised at the end of an iteration (or of a time window) when the pages, re-read and
    re-counted, still hold fewer records than the server counts; or when the range holds
    calls without ``trans_id`` that the server's moving order may have repeated, so that a
    repeat may stand in for a missing call (``missing`` may then be 0 or less).

    Attributes:
        expected: The records ``countAll`` reports for the range (re-counted at the end).
        yielded: The records the iteration handed out for it (repeats of calls without
            ``trans_id`` included).
        missing: ``expected - yielded``.
    """

    def __init__(
        self,
        message: str,
        *,
        expected: int,
        yielded: int,
        endpoint: str | None = None,
        page: int | None = None,
    ):
        self.expected = expected
        self.yielded = yielded
        self.missing = expected - yielded
        if self.missing > 0:
            shortfall = f"{self.missing} of {expected} calls missing ({yielded} yielded)"
        else:  # as many as counted, but some may be repeats standing in for missing calls
            shortfall = f"{yielded} calls yielded for {expected} counted, not verifiable"
        super().__init__(
            f"{shortfall}: {message}",
            endpoint=endpoint,
            page=page,
        )


class StateError(VBotError):
    """A sync state file is unreadable, made for other filters, or otherwise unusable."""


class DatabaseError(VBotError):
    """A database sink could not connect, create its tables, load or commit.

    The message names the database by its URL with the password masked; the transaction of
    the window being loaded is rolled back, so the next run loads that window again.

    Attributes:
        refused: The database refused the rows themselves (a value it cannot hold, a
            constraint), rather than failing to run (unreachable, down, out of space):
            loading the same rows again fails the same way.
        trans_id: The call whose row was refused, when it is known.
        column: The column of that row whose value the database cannot hold, when known.

    .. versionchanged:: Unreleased
       ``refused``, ``trans_id`` and ``column``.
    """

    def __init__(
        self,
        message: str,
        *,
        refused: bool = False,
        trans_id: str | None = None,
        column: str | None = None,
    ):
        self.refused = refused
        self.trans_id = trans_id
        self.column = column
        super().__init__(message)


class CallError(VBotError):
    """A bulk read (`iter_conversations`, `download_recordings`) could not get what it asked
    about one call, after the retries.

    The bulk read stops there (the other requests in flight are cancelled); what it handed
    out so far stands. The failure itself is `error` (and the ``__cause__``).

    Attributes:
        trans_id: The call.
        error: The failure (`APIError`, `TransportError`, `ResponseFormatError`...).

    .. versionadded:: Unreleased
    """

    def __init__(self, trans_id: str, error: VBotError):
        self.trans_id = trans_id
        self.error = error
        super().__init__(f"call {trans_id}: {error}")
        # The error's own message already names its endpoint; the attributes still say it.
        self.endpoint, self.page = error.endpoint, error.page


class WebhookError(VBotError, ValueError):
    """A webhook body that cannot be read: not JSON, not an object, an auto call without
    ``transId``, or a field of the wrong type. A receiver answers it with HTTP 400.

    The message says what is wrong and where (``autoCallLog.duration``), never the body.
    """
