"""Settings: the environment, secret files and credentials, made into a client.

The client commands read the API's address and credentials from the environment
(``VBOT_BASE_URL``, ``VBOT_API_KEY``, ``VBOT_TOKEN``, ``VBOT_ID``, ``VBOT_PROJECT_CODE``) or
from options (``--base-url``, ``--api-key-file``, ``--token-file``, ``--vbot-id``,
``--project-code``); with ``--demo`` they run against an in-process fake server with generated
data instead, the only case (with ``serve-fake``) that imports `vbot_cdr.testing`. An API key
speaks the v3 API, a token (or a login) the v2 one; ``--api`` names the dialect outright
(``v3-legacy``: an API key on the v2 paths). Without a key or a token they log in as
``VBOT_USERNAME`` with ``VBOT_PASSWORD``, or with a password asked for without echo when a
terminal is attached. Neither the key, the token nor the password is ever printed, or taken as
an option value (other users of the machine can read command lines).
"""

from __future__ import annotations

import contextlib
import getpass
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Final

from .._auth import PasswordAuth
from .._client import VBotClient
from .._table import DEFAULT_TZ
from ._options import ConnectionOptions, PagingOptions
from ._runlog import ENV_LOG
from ._status import Context, UsageError
from ._timezone import ENV_TZ

__all__ = [
    "APIS",
    "DEMO_RECORDS",
    "ENVIRONMENT",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "ENV_PASSWORD",
    "ENV_PROJECT_CODE",
    "ENV_TOKEN",
    "ENV_USERNAME",
    "ENV_VBOT_ID",
    "ENV_WEBHOOK_HEADER",
    "open_client",
    "resolve_api_key",
    "resolve_credential",
    "webhook_header",
]

ENV_TOKEN: Final = "VBOT_TOKEN"
ENV_API_KEY: Final = "VBOT_API_KEY"
ENV_USERNAME: Final = "VBOT_USERNAME"
ENV_PASSWORD: Final = "VBOT_PASSWORD"
ENV_BASE_URL: Final = "VBOT_BASE_URL"
ENV_VBOT_ID: Final = "VBOT_ID"
ENV_PROJECT_CODE: Final = "VBOT_PROJECT_CODE"
#: ``listen``'s static header, ``"Name: value"``, as configured in VBot's console.
ENV_WEBHOOK_HEADER: Final = "VBOT_WEBHOOK_HEADER"
#: The API dialects (`VBotClient`'s ``api``).
APIS: Final = ("v2", "v3", "v3-legacy")
#: How many calls ``--demo`` and ``serve-fake`` generate unless told.
DEMO_RECORDS: Final = 10_000

#: The environment variables, as ``vbot-cdr --help`` lists them.
ENVIRONMENT: Final = (
    (ENV_BASE_URL, "the API's base URL (--base-url wins)"),
    (ENV_API_KEY, "the v3 API key (--api-key-file wins; with VBOT_TOKEN, pass --api)"),
    (ENV_TOKEN, "the access token (--token-file wins)"),
    (ENV_USERNAME, "without a token: log in as this user"),
    (ENV_PASSWORD, "... with this password (asked for on a terminal when unset)"),
    (ENV_VBOT_ID, "your VBotID (--vbot-id wins)"),
    (ENV_PROJECT_CODE, "your group code (--project-code wins)"),
    (ENV_WEBHOOK_HEADER, 'listen: the webhook header "Name: value" (--webhook-header-file wins)'),
    (ENV_LOG, "log level: debug, info or warning (default: warning; -v is info)"),
    (ENV_TZ, f"the time zone of dates and times shown (--tz wins; default: {DEFAULT_TZ})"),
)


def resolve_credential(
    options: ConnectionOptions, environ: Mapping[str, str]
) -> str | PasswordAuth:
    """The token the client authenticates with, when it takes no API key (`resolve_api_key`).

    The first line of ``--token-file`` if given, else ``$VBOT_TOKEN``, else a login as
    ``$VBOT_USERNAME`` with ``$VBOT_PASSWORD`` (asked for without echo if it is unset and
    standard input is a terminal).

    Raises:
        UsageError: No credential is configured, or the token file cannot be read, is not
            UTF-8 text or is empty.
    """
    if options.token_file is not None:
        return _first_line(options.token_file, "token")
    token = environ.get(ENV_TOKEN, "").strip()
    if token:
        return token
    username = environ.get(ENV_USERNAME, "").strip()
    if not username:
        raise UsageError(
            f"no credentials: set {ENV_TOKEN}, or {ENV_USERNAME} and {ENV_PASSWORD}, or "
            f"{ENV_API_KEY} (v3), or pass --token-file or --api-key-file (or try --demo)"
        )
    password = environ.get(ENV_PASSWORD) or _ask_password(username)
    return PasswordAuth(username, password)


def resolve_api_key(options: ConnectionOptions, environ: Mapping[str, str]) -> str | None:
    """The API key, if the client authenticates with one (else ``None``: a token).

    The first line of ``--api-key-file``, else ``$VBOT_API_KEY``. A token (``--token-file``,
    ``$VBOT_TOKEN``, ``$VBOT_USERNAME``) is for v2, a key for v3 and v3-legacy; without
    ``--api`` the credential says which, and a token and a key together are ambiguous.

    Raises:
        UsageError: Both a token and a key and no ``--api`` (naming both); a credential that
            does not fit ``--api`` (naming the one that does); or a key file that cannot be
            read, is not UTF-8 text or is empty.
    """
    api, key_file, token_file = options.api, options.api_key_file, options.token_file
    if key_file is not None and token_file is not None:
        raise UsageError("give --api-key-file or --token-file, not both")
    key = environ.get(ENV_API_KEY, "").strip()
    tokens = [name for name in (ENV_TOKEN, ENV_USERNAME) if environ.get(name, "").strip()]
    if api == "v2":
        if key_file is not None or (key and not tokens and token_file is None):
            given = "--api-key-file" if key_file is not None else f"${ENV_API_KEY}"
            raise UsageError(
                f"the v2 API takes a token, not an API key ({given}): set {ENV_TOKEN} (or "
                f"{ENV_USERNAME} and {ENV_PASSWORD}) or pass --token-file; an API key is for "
                "--api v3 or v3-legacy"
            )
        return None
    if api is not None and key_file is None and (token_file is not None or not key):
        given = "--token-file" if token_file is not None else " and ".join(f"${n}" for n in tokens)
        refused = f", not a token ({given})" if given else ""
        raise UsageError(
            f"the {api} API takes an API key{refused}: set {ENV_API_KEY} or pass "
            "--api-key-file; a token is for --api v2"
        )
    if key_file is not None:
        return _first_line(key_file, "API key")
    if token_file is not None:
        return None
    if api is None and key and tokens:
        raise UsageError(
            f"both {' and '.join(tokens)} and {ENV_API_KEY} are set: pass --api v2 to use the "
            "token, --api v3 (or v3-legacy) to use the API key, or unset one"
        )
    return key or None


def _first_line(path: Path, what: str) -> str:
    """The first line of the secret file ``path``, stripped.

    Raises:
        UsageError: The file cannot be read, is not UTF-8 text, or is empty.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"the {what} file {path} is not UTF-8 text") from None
    line = text.strip().partition("\n")[0].strip()
    if not line:
        raise UsageError(f"the {what} file {path} is empty")
    return line


def _ask_password(username: str) -> str:
    if not sys.stdin.isatty():
        raise UsageError(f"no password for {username}: set {ENV_PASSWORD}")
    # The event loop's Ctrl-C handler would only act once the prompt returns; stop at once.
    loop_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        password = getpass.getpass(f"VBot password for {username}: ")
    finally:
        signal.signal(signal.SIGINT, loop_handler)
    if not password:
        raise UsageError("no password given")
    return password


@contextlib.asynccontextmanager
async def open_client(
    options: ConnectionOptions, context: Context, paging: PagingOptions | None = None
) -> AsyncIterator[VBotClient]:
    """A client of the API the options and environment name, or of a demo server.

    Every secret the client is given goes into ``context.log.secrets``, so that no line or
    summary of the run shows it.

    Raises:
        UsageError: The configuration is incomplete or invalid, or a secret file cannot be
            read.
    """
    settings: dict[str, Any] = {
        "first_page": options.first_page,
        "time_unit": options.time_unit,
        "timeout": options.timeout,
        "allow_insecure_http": options.allow_insecure_http,
    }
    if paging is not None:
        settings.update(concurrency=paging.concurrency, page_size=paging.page_size)
    async with contextlib.AsyncExitStack() as stack:
        if options.demo:
            settings.update(await stack.enter_async_context(_demo_server(options)))
        else:
            settings.update(_account(options, context))
        try:
            client = VBotClient(**settings)
        except (TypeError, ValueError) as exc:
            message = str(exc).replace("allow_insecure_http=True", "--allow-insecure-http")
            raise UsageError(message) from None
        yield await stack.enter_async_context(client)


def _account(options: ConnectionOptions, context: Context) -> dict[str, Any]:
    """The address, credential and account of the real API, from options and environment."""
    if options.demo_records is not None or options.demo_seed is not None:
        raise UsageError("--demo-records and --demo-seed need --demo")
    environ = context.environ
    base_url = options.base_url or environ.get(ENV_BASE_URL, "")
    if not base_url:
        raise UsageError(f"no API address: set {ENV_BASE_URL} or pass --base-url")
    account: dict[str, Any] = {
        "base_url": base_url,
        "api": options.api,
        "vbot_id": options.vbot_id or environ.get(ENV_VBOT_ID) or None,
        "project_code": options.project_code or environ.get(ENV_PROJECT_CODE) or None,
    }
    api_key = resolve_api_key(options, environ)
    if api_key is not None:
        context.log.secrets.append(api_key)
        return account | {"api_key": api_key}
    token = resolve_credential(options, environ)
    # The password a login uses, whether from $VBOT_PASSWORD or typed at the prompt.
    context.log.secrets.append(token if isinstance(token, str) else token._password)
    return account | {"token": token}


@contextlib.asynccontextmanager
async def _demo_server(options: ConnectionOptions) -> AsyncIterator[dict[str, Any]]:
    """A fake server with generated data, and the address and credential of its dialect."""
    # Imported here: the fake server (and aiohttp.web) is for --demo and serve-fake only.
    from vbot_cdr.testing import FakeVBotServer

    async with FakeVBotServer(
        count=DEMO_RECORDS if options.demo_records is None else options.demo_records,
        seed=options.demo_seed or 0,
        first_page=options.first_page,
        api=options.api or "v2",
    ) as server:
        if server.api == "v2":
            yield {"base_url": server.base_url, "token": server.token, "api": "v2"}
        else:
            yield {"base_url": server.base_url, "api_key": server.api_key, "api": server.api}


def webhook_header(file: Path | None, environ: Mapping[str, str]) -> str | None:
    """``listen``'s header, ``"Name: value"``: ``file``'s first line, else
    `ENV_WEBHOOK_HEADER`, else ``None``.

    Raises:
        CommandError: The file cannot be read, or is empty.
    """
    if file is not None:
        return _first_line(file, "webhook header")
    return environ.get(ENV_WEBHOOK_HEADER, "").strip() or None
