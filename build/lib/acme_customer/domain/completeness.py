"""Profile completeness: a documented scoring table that later stories extend.

Each entry names a part of the profile and the points it adds once present. The
registration gives name and email, hence the initial score of 25 (AC-0002-03-08).
Later stories (phone, address, date of birth, verified email, …) add rows here;
the points add up to 100 for a complete profile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Profile = Mapping[str, Any]

# (part, points, present?)  -- keep the points summing to 100
SCORING_TABLE: tuple[tuple[str, int, Callable[[Profile], bool]], ...] = (
    ("name", 15, lambda p: bool(p["name"]["firstName"]) and bool(p["name"]["lastName"])),
    ("email", 10, lambda p: bool(p["email"]["address"])),
    ("email_verified", 10, lambda p: bool(p["email"]["verified"])),
    ("phone", 15, lambda p: p.get("phone") is not None),
    ("date_of_birth", 10, lambda p: p["profile"].get("dateOfBirth") is not None),
    ("gender", 5, lambda p: p["profile"].get("gender") is not None),
    ("address", 25, lambda p: len(p.get("addresses", [])) > 0),
    ("segments", 10, lambda p: len(p.get("segments", [])) > 0),
)

assert sum(points for _, points, _ in SCORING_TABLE) == 100


def profile_completeness(profile: Profile) -> int:
    """Percentage (0–100) of the scoring table that the profile fills."""
    return sum(points for _, points, present in SCORING_TABLE if present(profile))
