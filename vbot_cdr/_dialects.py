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


def _outcome_key(spelling: str) -> str:
    """A disposition as typed, folded so that every documented spelling of an outcome meets:
    case, spaces, ``_`` and ``-`` do not count (``NO ANSWER``, ``no_answer``, ``noanswer``)."""
    return "".join(ch for ch in spelling.casefold() if ch not in " _-")


#: The spellings of a call outcome VBot documents (v2's lowercase, v3's uppercase, the v3
#: page's other revision ``ANSWERED``, ``NO ANSWER``, ``FAILED``), folded, to the outcome.
_OUTCOMES: Final = MappingProxyType(
    {
        _outcome_key(spelling): outcome
        for outcome, spellings in {
            "answer": ("answer", "answered"),
            "noanswer": ("noanswer", "no answer"),
            "busy": ("busy",),
            "failed": ("failed",),
            **{o: (o,) for o in ("misscall", "cancel", "congestion", "chanunavail", "dontcall")},
            **{o: (o,) for o in ("torture", "invalidargs", "someoneanswered", "logout")},
            **{o: (o,) for o in ("botivr", "more")},
            **{o: (o,) for o in ("not_money", "not_found_price", "not_found_telco")},
            "server_error": ("server_error",),
        }.items()
        for spelling in spellings
    }
)
#: v2 (and v3-legacy): each outcome in its lowercase spelling. ``failed`` (the v3 page's older
#: word) is what Asterisk, which VBot's dispositions come from, calls a call that could not be
#: set up: ``chanunavail`` or ``congestion``.
_LOWERCASE_OUTCOMES: Final = MappingProxyType(
    {
        **{o: (o,) for o in set(_OUTCOMES.values()) if not o.startswith(("not_", "server"))},
        "failed": ("chanunavail", "congestion"),
    }
)
#: v3: the documented uppercase values; ``failed`` is every one that is not a connection.
_UPPERCASE_OUTCOMES: Final = MappingProxyType(
    {
        **{o: (o.upper(),) for o in ("answer", "noanswer", "busy", "not_money", "server_error")},
        **{o: (o.upper(),) for o in ("not_found_price", "not_found_telco")},
        "failed": ("NOT_MONEY", "NOT_FOUND_PRICE", "NOT_FOUND_TELCO", "SERVER_ERROR"),
    }
)


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
        outcomes: Each call outcome the dialect has (see `_OUTCOMES`) to the ``disposition``
            value(s) it is sent as.
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
    outcomes: Mapping[str, tuple[str, ...]] = _LOWERCASE_OUTCOMES

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

    def wire_filter(self, filter: CallFilter, time_unit: TimeUnit) -> CallFilter:
        """``filter`` as this dialect takes it: its dispositions in the dialect's spelling
        (an outcome may be sent as several), its criteria checked.

        Raises:
            ValueError: A criterion the dialect does not have (``min_postage`` in v2), or a
                disposition that is not a call outcome the dialect knows (the message lists
                those it knows).
        """
        for name in filter.to_params(time_unit):
            self._wire_name(name)
        given = filter.disposition
        if not given:
            return filter
        sent: list[str] = []
        for value in (given,) if isinstance(given, str) else given:
            outcome = _OUTCOMES.get(_outcome_key(value), "")
            if outcome not in self.outcomes:
                known = ", ".join(sorted(self.outcomes))
                raise ValueError(
                    f"disposition {value!r} is not a call outcome the {self.name} API knows; "
                    f"give one of: {known} (in any case; also answered, 'no answer')"
                )
            sent += self.outcomes[outcome]
        return attrs.evolve(filter, disposition=sent)

    def filter_params(self, filter: CallFilter, time_unit: TimeUnit) -> dict[str, str]:
        """The criteria of ``filter`` (as `wire_filter` made it) that are set, under this
        dialect's parameter names.

        Raises:
            ValueError: A criterion the dialect does not have, or one of several values (a
                request takes one: see `CallFilter.variants`).
        """
        several = filter.several()
        if several:
            raise ValueError(f"a request takes one value of each criterion, got {several}")
        return {self._wire_name(name): value for name, value in filter.to_params(time_unit).items()}

    def _wire_name(self, criterion: str) -> str:
        """The query parameter of ``criterion``; `ValueError` if the dialect has none."""
        wire_name = self.filters.get(criterion)
        if wire_name is None:
            offered = [n for n in FILTER_NAMES if n in self.filters]
            raise ValueError(f"the {self.name} API has no {criterion} filter; it has {offered}")
        return wire_name


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
    outcomes=_UPPERCASE_OUTCOMES,
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
