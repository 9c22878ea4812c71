"""Instants and durations of the temporal API: ISO 8601 text <-> integer microseconds (UTC).

History is ordered and compared as integers, never as text: two valid spellings of one instant
("...T12:00:00Z", "...T12:00:00.000+00:00") must compare equal, and text would not.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from citytwin.errors import BadRequestData

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z, in microseconds from the epoch
LAST = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
_MICROS: dict[str, int] = {}


def now_iso() -> str:
    """This instant as an NGSI-LD DateTime (UTC, microseconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_micros(text: str) -> int:
    """An ISO 8601 DateTime as microseconds since the epoch (no zone given: UTC)."""
    cached = _MICROS.get(text)
    if cached is not None:
        return cached
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise BadRequestData(f"{text!r} is not an ISO 8601 DateTime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if not FIRST <= micros <= LAST:
        raise BadRequestData(f"{text!r} is outside the years 1 to 9999 in UTC")
    if len(_MICROS) > 65_536:
        _MICROS.clear()
    _MICROS[text] = micros
    return micros


@functools.lru_cache(maxsize=65_536)
def from_micros(micros: int) -> str:
    """The DateTime form citytwin writes: UTC, with a fraction only when there is one."""
    moment = EPOCH + timedelta(microseconds=micros)
    if micros % 1_000_000 == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if micros % 1000 == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_DURATION = re.compile(
    r"P(?!$)(?:(?P<Y>\d+(?:[.,]\d+)?)Y)?(?:(?P<M>\d+(?:[.,]\d+)?)M)?(?:(?P<W>\d+(?:[.,]\d+)?)W)?"
    r"(?:(?P<D>\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+(?:[.,]\d+)?)H)?(?:(?P<m>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<s>\d+(?:[.,]\d+)?)S)?)?"
)
_FIXED = {"W": 7 * 86_400, "D": 86_400, "h": 3_600, "m": 60, "s": 1}


@dataclass(frozen=True)
class Duration:
    """An ISO 8601 duration: whole calendar months, plus a fixed number of microseconds."""

    months: int
    micros: int

    @property
    def zero(self) -> bool:
        return self.months == 0 and self.micros == 0

    def nth(self, origin: int, n: int) -> int:
        """The instant n of these durations after `origin`: months are added on the calendar
        from the origin each time (from Jan 31: Feb 29, Mar 31...), so periods do not drift."""
        start = origin
        if self.months:
            moment = EPOCH + timedelta(microseconds=origin)
            total = moment.year * 12 + moment.month - 1 + self.months * n
            year, month = divmod(total, 12)
            if not 1 <= year <= 9999:
                raise BadRequestData("aggrPeriodDuration runs past the year 9999")
            day = min(moment.day, _days_in(year, month + 1))
            start = to_micros(moment.replace(year=year, month=month + 1, day=day).isoformat())
        return start + self.micros * n


MAX_DURATION = 1000 * 366 * 86_400 * 1_000_000  # microseconds: a thousand years


def parse_duration(text: object, what: str = "aggrPeriodDuration") -> Duration:
    if not isinstance(text, str) or not text.isascii():
        raise BadRequestData(f"{what} must be an ISO 8601 duration such as PT1H, not {text!r}")
    match = _DURATION.fullmatch(text)
    if match is None or text.endswith("T"):
        raise BadRequestData(f"{what} must be an ISO 8601 duration such as PT1H, not {text!r}")
    parts = {k: float(v.replace(",", ".")) for k, v in match.groupdict().items() if v is not None}
    months = parts.pop("Y", 0) * 12 + parts.pop("M", 0)
    if months != int(months):
        raise BadRequestData(f"{what}: years and months must be whole, not {text!r}")
    seconds = sum(_FIXED[k] * v for k, v in parts.items())
    if months > 12_000 or seconds * 1_000_000 > MAX_DURATION:
        raise BadRequestData(f"{what} is longer than a thousand years: {text!r}")
    return Duration(int(months), round(seconds * 1_000_000))


def _days_in(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (datetime(year, month + 1, 1) - datetime(year, month, 1)).days
