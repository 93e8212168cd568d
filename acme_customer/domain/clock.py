"""RFC 3339 timestamps: parsing and the one output form used on the wire (UTC, ``Z``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# RFC 3339 date-time: full date, "T" (or "t"/space is not allowed here), time, optional
# fraction, and a mandatory offset ("Z" or ±hh:mm).
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 date-time into an aware UTC datetime; raise ValueError otherwise."""
    if not _RFC3339.match(text):
        raise ValueError("not an RFC 3339 date-time")
    normalised = text.upper().replace("Z", "+00:00")
    head, _, rest = normalised.partition(".")
    if rest:  # Python accepts at most 6 fraction digits: truncate nanoseconds
        digits = re.match(r"\d+", rest)
        assert digits is not None
        normalised = f"{head}.{digits.group()[:6]}{rest[len(digits.group()):]}"
    return datetime.fromisoformat(normalised).astimezone(UTC)


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
