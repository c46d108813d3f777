"""`iso_times`: the text of an epoch in a zone, the same as through `datetime`, for every
value: seconds and milliseconds, summer time and its changes, odd offsets, the edges of the
fast path and values past them."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest

from vbot_cdr._clock import iso_times
from vbot_cdr._errors import ResponseFormatError
from vbot_cdr._models import epoch_to_datetime

ZONES = [
    dt.timezone.utc,
    ZoneInfo("Asia/Ho_Chi_Minh"),
    ZoneInfo("America/New_York"),
    ZoneInfo("Australia/Lord_Howe"),  # summer time of half an hour
    ZoneInfo("Asia/Kathmandu"),  # +05:45
    ZoneInfo("America/St_Johns"),  # -03:30, and summer time
    dt.timezone(dt.timedelta(hours=-9, minutes=-30)),
    dt.timezone(dt.timedelta(hours=5, seconds=17)),  # not whole minutes: the slow path
]


def epochs() -> list[int | None]:
    chosen = random.Random(21)
    values: list[int | None] = [None, 0, 1, -1, 59, 60, 3599, 3600, 86_399, 86_400, -86_401]
    values += [10**11 - 1, 10**11, 10**11 + 7, 2**32 - 1, 2**32, 2**32 * 1000 - 1, 2**32 * 1000]
    values += [-(10**12) - 5, 253_402_000_000, 253_402_000_000_123]  # up to the year 9999
    values += [chosen.randrange(1, 2**32 + 10**7) for _ in range(3000)]
    values += [chosen.randrange(10**11, 2**32 * 1000 + 10**10) for _ in range(3000)]
    # Every 7 minutes through the weeks where these zones change to and from summer time.
    for year in (2025, 2037):
        for month in (3, 10):
            start = int(dt.datetime(year, month, 1, tzinfo=dt.timezone.utc).timestamp())
            values += range(start, start + 40 * 86_400, 421)
            values += [v * 1000 + 999 for v in range(start, start + 40 * 86_400, 4219)]
    return values


@pytest.mark.parametrize("excel", [False, True], ids=["iso", "excel"])
@pytest.mark.parametrize("tz", ZONES, ids=str)
def test_the_same_text_as_datetime(tz: dt.tzinfo, excel: bool) -> None:
    convert = iso_times(tz, excel=excel)
    for value in epochs():
        moment = epoch_to_datetime(value, tz)
        if moment is None:
            expected = None
        else:
            expected = f"{moment:%Y-%m-%d %H:%M:%S}" if excel else moment.isoformat()
        assert convert(value) == expected, value


def test_a_time_no_datetime_holds_is_refused() -> None:
    with pytest.raises(ResponseFormatError, match="outside the datetime range"):
        iso_times(ZoneInfo("UTC"))(10**17)
