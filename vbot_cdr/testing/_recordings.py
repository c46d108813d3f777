"""The fake server's recordings: ``GET /api/crm/historycall/record/{trans_id}``.

What the documents leave open (``shared/spec/WEBHOOKS.md``, "Recordings"), the fake chooses:

- a call has a recording when its record says ``is_record`` and it is not among the
  `RecordingHabits.missing` share (chosen by ``trans_id``, so always the same calls); any
  other call, or an unknown ``trans_id``, is HTTP 404 with the dialect's failure envelope
  (error 404, "recording not found");
- the recording is ``billsec * bytes_per_second`` bytes (at least one second's worth) of
  deterministic noise behind a real header: an MP3 (``audio/mpeg``, an ID3 tag) for three
  calls in four, a WAV (``audio/wav``, a RIFF header) for the others; the same call always
  gets the same bytes;
- the `RecordingHabits.slow` share takes ``slow_delay`` seconds more; the ``flaky`` share
  answers its first request with HTTP 503; the ``html`` share answers 200 with an HTML page
  (as a login page or a proxy does) instead of audio.

Faults queued with ``server.inject(..., endpoint="record")`` apply as to every endpoint.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Mapping
from typing import Any, Final

import attrs
from aiohttp import web

__all__ = ["RECORDING_PREFIX", "RecordingHabits", "Recordings", "served_recording"]

#: Where the recordings are served, in every dialect.
RECORDING_PREFIX: Final = "/api/crm/historycall/record/"
_NOISE: Final = random.Random("fake-vbot-recordings").randbytes(1 << 20)
_HTML: Final = b"<!DOCTYPE html><html><head><title>Login</title></head><body>login</body></html>"


def _share(text: str, salt: str) -> float:
    """A stable number in [0, 1) for ``text``: which calls fall in a share."""
    return zlib.crc32(f"{salt}:{text}".encode()) / 2**32


def _rate(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within [0, 1], got {value!r}")


@attrs.frozen(kw_only=True)
class RecordingHabits:
    """How the fake serves recordings (see the module documentation).

    Args:
        missing: The share of recorded calls (``is_record``) without a recording (404).
        slow: The share of recordings answered ``slow_delay`` seconds late.
        slow_delay: Seconds a slow recording takes, on top of the server's latency.
        flaky: The share of recordings whose first request is answered HTTP 503.
        html: The share answered HTTP 200 with an HTML page instead of audio.
        bytes_per_second: The size of a second of recording (8,000: 64 kbit/s telephone
            audio).
    """

    missing: float = attrs.field(default=0.1, validator=_rate)
    slow: float = attrs.field(default=0.0, validator=_rate)
    slow_delay: float = 0.2
    flaky: float = attrs.field(default=0.0, validator=_rate)
    html: float = attrs.field(default=0.0, validator=_rate)
    bytes_per_second: int = 8000


def recording_of(record: Mapping[str, Any], bytes_per_second: int) -> tuple[str, bytes]:
    """The media type and bytes of ``record``'s recording (deterministic)."""
    trans_id = str(record.get("trans_id"))
    seconds = max(1, int(record.get("billsec") or 0))
    size = seconds * bytes_per_second
    if _share(trans_id, "format") < 0.75:
        media_type, header = "audio/mpeg", b"ID3\x04\x00\x00\x00\x00\x00\x00"
    else:
        media_type = "audio/wav"
        header = b"RIFF" + struct.pack("<I", size + 36) + b"WAVEfmt "
        header += struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16) + b"data"
        header += struct.pack("<I", size)
    start = zlib.crc32(trans_id.encode()) % len(_NOISE)
    body = bytearray(header)
    while len(body) < size:
        body += _NOISE[start : start + size - len(body)]
        start = 0
    return media_type, bytes(body[: max(size, len(header))])


def served_recording(
    record: Mapping[str, Any] | None, habits: RecordingHabits
) -> tuple[str, bytes] | None:
    """The media type and bytes of ``record``'s recording; ``None`` when it has none."""
    if record is None or not record.get("is_record"):
        return None
    if _share(str(record.get("trans_id")), "missing") < habits.missing:
        return None
    return recording_of(record, habits.bytes_per_second)


class Recordings:
    """The recordings endpoint of one fake server: which calls it has answered already."""

    def __init__(self) -> None:
        self._asked: set[str] = set()

    @staticmethod
    def delay(trans_id: str, habits: RecordingHabits) -> float:
        """Seconds the recording of ``trans_id`` takes beyond the server's latency."""
        return habits.slow_delay if _share(trans_id, "slow") < habits.slow else 0.0

    def answer(
        self,
        trans_id: str,
        record: Mapping[str, Any] | None,
        habits: RecordingHabits,
        not_found: web.Response,
    ) -> web.Response:
        """The answer to a request of ``trans_id``'s recording (``not_found`` when none)."""
        first = trans_id not in self._asked
        self._asked.add(trans_id)
        if first and _share(trans_id, "flaky") < habits.flaky:
            return web.Response(status=503, text="Service Unavailable")
        if _share(trans_id, "html") < habits.html:
            return web.Response(body=_HTML, content_type="text/html")
        served = served_recording(record, habits)
        if served is None:
            return not_found
        media_type, body = served
        return web.Response(body=body, content_type=media_type)
