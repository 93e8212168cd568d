"""Profile completeness: the scoring table and the initial score (AC-0002-03-08)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acme_customer.domain.completeness import SCORING_TABLE, profile_completeness
from acme_customer.domain.customer import register_customer
from acme_customer.domain.customer_number import CustomerNumber
from tests.unit.builders import CUSTOMER_EVENT_ID, CUSTOMER_ID, STORY_MOMENT, ids, user_registered

# The weights, written down here rather than read from the table under test: a change to the
# table must change this line too. Only name + email = 25 is the story's (AC-08); the rest is ours.
POINTS = {
    "name": 15,
    "email": 10,
    "email_verified": 10,
    "phone": 15,
    "date_of_birth": 10,
    "gender": 5,
    "address": 25,
    "segments": 10,
}


def test_the_scoring_table_holds_the_agreed_weights_in_order() -> None:
    assert [(part, points) for part, points, _ in SCORING_TABLE] == list(POINTS.items())


def initial_profile() -> dict[str, Any]:
    customer, _ = register_customer(
        user_registered(), CustomerNumber("202601", 142), STORY_MOMENT, ids(CUSTOMER_ID, CUSTOMER_EVENT_ID)
    )
    return customer.to_profile()


def filled(profile: dict[str, Any], part: str) -> dict[str, Any]:
    """``profile`` with one more part of the scoring table filled in."""
    result = copy.deepcopy(profile)
    if part == "name":
        result["name"].update(firstName="Jane", lastName="Doe")
    elif part == "email":
        result["email"]["address"] = "customer@example.com"
    elif part == "email_verified":
        result["email"]["verified"] = True
    elif part == "phone":
        result["phone"] = {"countryCode": "+1", "number": "5551234567", "verified": False}
    elif part == "date_of_birth":
        result["profile"]["dateOfBirth"] = "1990-05-17"
    elif part == "gender":
        result["profile"]["gender"] = "FEMALE"
    elif part == "address":
        result["addresses"] = [{"type": "SHIPPING", "line1": "1 Main St", "city": "Springfield", "country": "US"}]
    elif part == "segments":
        result["segments"] = ["NEW_CUSTOMER"]
    else:  # a row added to the table without teaching this test how to fill it
        raise AssertionError(f"unknown scoring part {part!r}")
    return result


def empty_profile() -> dict[str, Any]:
    profile = initial_profile()
    profile["name"].update(firstName="", lastName="", displayName="")
    profile["email"]["address"] = ""
    return profile


def test_ac08_initial_profile_scores_25() -> None:
    assert profile_completeness(initial_profile()) == 25


def test_ac08_the_25_points_come_from_name_and_email_only() -> None:
    profile = initial_profile()
    present = [part for part, _, is_present in SCORING_TABLE if is_present(profile)]

    assert present == ["name", "email"]
    assert POINTS["name"] + POINTS["email"] == 25


def test_scoring_table_sums_to_100() -> None:
    assert sum(points for _, points, _ in SCORING_TABLE) == 100


def test_scoring_table_parts_are_unique_and_each_worth_something() -> None:
    parts = [part for part, _, _ in SCORING_TABLE]

    assert len(parts) == len(set(parts))
    assert all(points > 0 for _, points, _ in SCORING_TABLE)


def test_a_profile_without_name_or_email_scores_0() -> None:
    assert profile_completeness(empty_profile()) == 0


def test_a_name_needs_both_first_and_last_name_to_count() -> None:
    profile = empty_profile()
    profile["name"]["firstName"] = "Jane"

    assert profile_completeness(profile) == 0


def test_adding_a_phone_adds_the_phone_points() -> None:
    assert profile_completeness(filled(initial_profile(), "phone")) == 25 + POINTS["phone"]


def test_adding_an_address_adds_the_address_points() -> None:
    assert profile_completeness(filled(initial_profile(), "address")) == 25 + POINTS["address"]


def test_adding_phone_and_address_adds_both() -> None:
    profile = filled(filled(initial_profile(), "phone"), "address")

    assert profile_completeness(profile) == 25 + POINTS["phone"] + POINTS["address"]


def test_a_complete_profile_scores_100() -> None:
    profile = empty_profile()
    for part in POINTS:
        profile = filled(profile, part)

    assert profile_completeness(profile) == 100


@pytest.mark.parametrize("part", sorted(set(POINTS) - {"name", "email"}))
def test_each_missing_part_adds_exactly_its_points_to_the_initial_score(part: str) -> None:
    assert profile_completeness(filled(initial_profile(), part)) == 25 + POINTS[part]


@given(parts=st.sets(st.sampled_from(sorted(POINTS))))
def test_score_is_the_sum_of_the_points_of_the_parts_present(parts: set[str]) -> None:
    profile = empty_profile()
    for part in parts:
        profile = filled(profile, part)

    score = profile_completeness(profile)

    assert score == sum(POINTS[part] for part in parts)
    assert 0 <= score <= 100
