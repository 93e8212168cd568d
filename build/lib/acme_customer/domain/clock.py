"""RFC 3339 timestamps: parsing and the one output form used on the wire (UTC, ``Z``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# RFC 3339 date-time: full date, "T" (or "t"/space is not allowed here), time, optional
# fraction, and a mandatory offset ("Z" or ±hh:mm).
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 date-time into an aware UTC datetime; raise ValueError otherwise."""
    if not _RFC3339.fullmatch(text):
        raise ValueError("not an RFC 3339 date-time")
    normalised = text.upper().replace("Z", "+00:00")
    head, _, rest = normalised.partition(".")
    if rest:  # Python accepts at most 6 fraction digits: truncate nanoseconds
        digits = re.match(r"[0-9]+", rest)
        assert digits is not None
        normalised = f"{head}.{digits.group()[:6]}{rest[len(digits.group()) :]}"
    try:
        return datetime.fromisoformat(normalised).astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:30:00+01:00 falls before year 1 in UTC
        raise ValueError("date-time out of range") from None


def format_rfc3339(moment: datetime) -> str:
    """UTC, ``Z`` suffix; fraction only when there is one (``2026-01-02T10:30:02Z``)."""
    utc = moment.astimezone(UTC)
    if utc.microsecond == 0:
        timespec = "seconds"
    elif utc.microsecond % 1000 == 0:
        timespec = "milliseconds"
    else:
        timespec = "microseconds"
    return utc.isoformat(timespec=timespec).replace("+00:00", "Z")
