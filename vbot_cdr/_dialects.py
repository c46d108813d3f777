"""The dialects of the VBot call-history API: what differs on the wire, and nothing else.

``shared/spec/API-VERSIONS.md`` lays them side by side. The client speaks three:

- ``"v2"``: ``/api/campaignCall/cdr/{getAll,countAll,getBotConversation}``, a Bearer token,
  ``vbot_id`` and ``project_code``, the ``{status, error, message, data}`` envelope of the seed
  document *and* the ``{error, message, data}`` one served since 2026-04 (no ``status``:
  ``error == 0`` is success). Record times in seconds (undocumented; the seed's choice).
- ``"v3-legacy"``: the same paths with an ``X-API-Key`` header, no ``vbot_id`` or
  ``project_code``, the ``{error, message, data}`` envelope, times in milliseconds (as the
  documented example has them).
- ``"v3"``: ``/m-auto-call/api/cdr/{get-all,count,get-bot-conversation}``, ``X-API-Key``,
  ``project_code`` optional, ``{status, msg, errorCode, data}`` (``errorCode == 0`` is
  success), camelCase records, times in milliseconds, filters ``key_search``,
  ``disposition_search``, ``min_postage`` and ``max_postage``.

A `Dialect` turns the client's arguments into paths, headers and query parameters, and an
envelope into an `Envelope`; `_wire` does the rest the same way for every dialect, so above
the wire there is one `CallRecord` and one error tree. Records need no dialect: the record
reader takes camelCase and snake_case alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

import attrs

from ._models import FILTER_NAMES, CallFilter, TimeUnit

__all__ = [
    "COUNT_ALL",
    "DIALECTS",
    "GET_ALL",
    "GET_BOT_CONVERSATION",
    "NO_DATA",
    "V2",
    "V3",
    "V3_LEGACY",
    "Api",
    "Dialect",
    "Envelope",
    "dialect_for",
]

#: The API dialects the client speaks.
Api = Literal["v2", "v3", "v3-legacy"]

# The endpoints by their seed names, as errors, the fake server and its faults name them.
COUNT_ALL: Final = "countAll"
GET_ALL: Final = "getAll"
GET_BOT_CONVERSATION: Final = "getBotConversation"

#: ``Envelope.data`` of an envelope without ``data``.
NO_DATA: Final[Any] = object()


@attrs.frozen
class Envelope:
    """What an envelope says: success or not, the server's code and message, the data."""

    ok: bool
    code: int | None
    message: str | None
    data: Any = NO_DATA


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _code(value: Any) -> int | None:
    return value if type(value) is int else None


def read_error_envelope(doc: Any) -> Envelope | None:
    """v2 and v3-legacy: ``{status?, error, message, data}``; ``None`` if ``doc`` is not one.

    With ``status`` (the seed's form), 1 is success and 0 failure. Without it (since
    2026-04), ``error == 0`` is success and any other int a failure.
    """
    if type(doc) is not dict:
        return None
    code = _code(doc.get("error"))
    if "status" in doc:
        status = doc["status"]
        if type(status) is not int or status not in (0, 1):
            return None
        ok = status == 1
    elif code is None:
        return None
    else:
        ok = code == 0
    return Envelope(ok, code, _text(doc.get("message")), doc.get("data", NO_DATA))


def read_v3_envelope(doc: Any) -> Envelope | None:
    """v3: ``{status, msg, errorCode, data}``, ``errorCode == 0`` is success; else ``None``."""
    if type(doc) is not dict:
        return None
    code = _code(doc.get("errorCode"))
    if code is None:
        return None
    return Envelope(code == 0, code, _text(doc.get("msg")), doc.get("data", NO_DATA))


# The filters are declared once, as the fields of `CallFilter`; a dialect only says which of them
# it lacks and which it sends under another name.
#: The criteria only v3 has.
_V3_ONLY: Final = frozenset({"min_postage", "max_postage"})
#: The criteria v3 sends under a name of its own.
_V3_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {"key": "key_search", "disposition": "disposition_search"}
)
if not _V3_ONLY | _V3_NAMES.keys() <= set(FILTER_NAMES):
    raise TypeError("_V3_ONLY and _V3_NAMES must name CallFilter criteria")


@attrs.frozen(kw_only=True)
class Dialect:
    """How one dialect puts requests on the wire and reads its envelopes.

    Attributes:
        name: ``"v2"``, ``"v3-legacy"`` or ``"v3"``.
        paths: The path of each endpoint (by its seed name).
        api_key: Whether the credential goes in ``X-API-Key`` (else ``Authorization: Bearer``).
        identity: Which of ``vbot_id`` and ``project_code`` the dialect takes.
        filters: Each `CallFilter` criterion the dialect has, to its query parameter name.
        time_unit: The unit of the dialect's epoch dates.
        read_envelope: Reads a decoded body as an `Envelope`, or ``None`` if it is not one.
        envelope_shape: The envelope, as an error message names it.
        auth_codes: The failure codes that mean the credential was refused or is not allowed.
    """

    name: Api
    paths: Mapping[str, str]
    api_key: bool
    identity: frozenset[str]
    filters: Mapping[str, str]
    time_unit: TimeUnit
    read_envelope: Callable[[Any], Envelope | None]
    envelope_shape: str
    auth_codes: frozenset[int] = frozenset({401, 403})

    def auth_headers(self, credential: str) -> dict[str, str]:
        """The headers of every request: the credential, and JSON wanted back."""
        if self.api_key:
            return {"X-API-Key": credential, "Accept": "application/json"}
        return {"Authorization": f"Bearer {credential}", "Accept": "application/json"}

    def check_identity(self, vbot_id: str | None, project_code: str | None) -> None:
        """Refuse an identity parameter the dialect does not take.

        Raises:
            ValueError: ``vbot_id`` or ``project_code`` is set and the dialect has no such
                parameter (v3 takes its customer from the API key).
        """
        for name, value in (("vbot_id", vbot_id), ("project_code", project_code)):
            if value and name not in self.identity:
                raise ValueError(
                    f"the {self.name} API takes no {name} (the API key says who you are); "
                    'leave it out, or pass api="v2" for the token API'
                )

    def identity_params(self, vbot_id: str | None, project_code: str | None) -> dict[str, str]:
        """The identity parameters sent with every request (those set)."""
        given = (("vbot_id", vbot_id), ("project_code", project_code))
        return {name: value for name, value in given if value and name in self.identity}

    def filter_params(self, filter: CallFilter, time_unit: TimeUnit) -> dict[str, str]:
        """The criteria of ``filter`` that are set, under this dialect's parameter names.

        Raises:
            ValueError: A criterion the dialect does not have (``min_postage`` in v2).
        """
        params: dict[str, str] = {}
        for name, value in filter.to_params(time_unit).items():
            wire_name = self.filters.get(name)
            if wire_name is None:
                offered = [n for n in FILTER_NAMES if n in self.filters]
                raise ValueError(f"the {self.name} API has no {name} filter; it has {offered}")
            params[wire_name] = value
        return params


V2: Final = Dialect(
    name="v2",
    paths=MappingProxyType(
        {
            name: "/api/campaignCall/cdr/" + name
            for name in (COUNT_ALL, GET_ALL, GET_BOT_CONVERSATION)
        }
    ),
    api_key=False,
    identity=frozenset({"vbot_id", "project_code"}),
    filters=MappingProxyType({name: name for name in FILTER_NAMES if name not in _V3_ONLY}),
    time_unit="s",
    read_envelope=read_error_envelope,
    envelope_shape="{status?, error, message, data}",
)
V3_LEGACY: Final = attrs.evolve(
    V2, name="v3-legacy", api_key=True, identity=frozenset(), time_unit="ms"
)
V3: Final = Dialect(
    name="v3",
    paths=MappingProxyType(
        {
            COUNT_ALL: "/m-auto-call/api/cdr/count",
            GET_ALL: "/m-auto-call/api/cdr/get-all",
            GET_BOT_CONVERSATION: "/m-auto-call/api/cdr/get-bot-conversation",
        }
    ),
    api_key=True,
    identity=frozenset({"project_code"}),
    filters=MappingProxyType({name: _V3_NAMES.get(name, name) for name in FILTER_NAMES}),
    time_unit="ms",
    read_envelope=read_v3_envelope,
    envelope_shape="{status, msg, errorCode, data}",
    # 803: "not allowed to view".
    auth_codes=frozenset({401, 403, 803}),
)

#: Every dialect by name.
DIALECTS: Final[Mapping[str, Dialect]] = MappingProxyType({d.name: d for d in (V2, V3_LEGACY, V3)})


def dialect_for(api: str) -> Dialect:
    """The dialect named ``api``.

    Raises:
        ValueError: No such dialect.
    """
    try:
        return DIALECTS[api]
    except (KeyError, TypeError):
        raise ValueError(f"api must be one of {list(get_args(Api))}, got {api!r}") from None
