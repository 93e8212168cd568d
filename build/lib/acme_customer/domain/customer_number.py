"""Customer numbers: ``ACME-YYYYMM-NNNNNN``, gapless per UTC month of registration."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

PREFIX = "ACME"
# ASCII digits only; six digits, or more without a leading zero (past 999999)
_PATTERN = re.compile(r"ACME-([0-9]{4})(0[1-9]|1[0-2])-([0-9]{6}|[1-9][0-9]{6,})")
_YEAR_MONTH = re.compile(r"[0-9]{4}(0[1-9]|1[0-2])")


def year_month_of(registered_at: datetime) -> str:
    """The ``YYYYMM`` bucket of a registration: its month in UTC."""
    utc = registered_at.astimezone(UTC)
    return f"{utc.year:04d}{utc.month:02d}"  # strftime("%Y") does not pad years before 1000


@dataclass(frozen=True, order=True)
class CustomerNumber:
    """A month bucket and the sequence number within it (1-based)."""

    year_month: str
    sequence: int

    def __post_init__(self) -> None:
        if not _YEAR_MONTH.fullmatch(self.year_month):
            raise ValueError(f"year_month must be YYYYMM, got {self.year_month!r}")
        if self.sequence < 1:
            raise ValueError(f"sequence starts at 1, got {self.sequence}")

    def __str__(self) -> str:
        # six digits, zero-padded; past 999999 the number grows a digit instead of failing
        return f"{PREFIX}-{self.year_month}-{self.sequence:06d}"

    @classmethod
    def parse(cls, text: str) -> CustomerNumber:
        match = _PATTERN.fullmatch(text)
        if not match:
            raise ValueError(f"not a customer number: {text!r}")
        return cls(match.group(1) + match.group(2), int(match.group(3)))


def allocate(year_month: str, last_before: int, count: int) -> list[CustomerNumber]:
    """The ``count`` numbers that follow ``last_before`` in a month, in order."""
    return [CustomerNumber(year_month, last_before + offset) for offset in range(1, count + 1)]
