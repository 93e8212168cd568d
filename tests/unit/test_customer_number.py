"""Customer numbers: ``ACME-YYYYMM-NNNNNN`` (story "Customer Number Format", AC-0002-03-03, DESIGN Contract)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acme_customer.domain.customer_number import CustomerNumber, allocate, year_month_of

VARCHAR_20 = 20  # customers.customer_number VARCHAR(20)

year_months = st.builds(
    lambda year, month: f"{year:04d}{month:02d}",
    st.integers(min_value=0, max_value=9999),
    st.integers(min_value=1, max_value=12),
)
sequences = st.integers(min_value=1, max_value=10**9)
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def tz(hours: int, minutes: int = 0) -> timezone:
    return timezone(timedelta(hours=hours, minutes=minutes))


# --- formatting -------------------------------------------------------------------------------


def test_number_is_prefix_year_month_and_six_digit_sequence_like_the_storys_example() -> None:
    assert str(CustomerNumber("202601", 142)) == "ACME-202601-000142"


@pytest.mark.parametrize(
    ("sequence", "text"),
    [
        (1, "ACME-202601-000001"),
        (9, "ACME-202601-000009"),
        (10, "ACME-202601-000010"),
        (99_999, "ACME-202601-099999"),
        (999_999, "ACME-202601-999999"),
    ],
)
def test_sequence_is_zero_padded_to_six_digits(sequence: int, text: str) -> None:
    assert str(CustomerNumber("202601", sequence)) == text


def test_past_999999_the_number_grows_a_seventh_digit_instead_of_failing() -> None:
    number = CustomerNumber("202601", 1_000_000)

    assert str(number) == "ACME-202601-1000000"
    assert CustomerNumber.parse("ACME-202601-1000000") == number


def test_a_seven_digit_number_fits_varchar_20() -> None:
    assert len(str(CustomerNumber("202601", 9_999_999))) <= VARCHAR_20


def test_numbers_up_to_eight_digits_fit_varchar_20() -> None:
    assert len(str(CustomerNumber("999912", 99_999_999))) == VARCHAR_20


def test_numbers_of_one_month_order_by_sequence() -> None:
    assert CustomerNumber("202601", 2) < CustomerNumber("202601", 10) < CustomerNumber("202601", 1_000_000)


# --- the month bucket (UTC) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "year_month"),
    [
        pytest.param(datetime(2026, 1, 2, 10, 30, 2, tzinfo=UTC), "202601", id="story example"),
        pytest.param(datetime(2026, 1, 31, 23, 59, 59, tzinfo=tz(-1)), "202602", id="late Jan at -01:00 is Feb in UTC"),
        pytest.param(datetime(2026, 2, 1, 0, 30, 0, tzinfo=tz(1)), "202601", id="early Feb at +01:00 is Jan in UTC"),
        pytest.param(datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC), "202601", id="first instant of the month"),
        pytest.param(datetime(2026, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC), "202601", id="last instant of the month"),
        pytest.param(datetime(2026, 12, 31, 20, 0, 0, tzinfo=tz(-5)), "202701", id="year rolls over in UTC"),
        pytest.param(datetime(2027, 1, 1, 5, 0, 0, tzinfo=tz(5, 30)), "202612", id="year not yet rolled over in UTC"),
        pytest.param(datetime(2028, 2, 29, 23, 0, 0, tzinfo=UTC), "202802", id="leap day"),
    ],
)
def test_year_month_is_the_utc_month_of_registration(moment: datetime, year_month: str) -> None:
    assert year_month_of(moment) == year_month


@given(
    moment=st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets),
    other=offsets,
)
def test_year_month_does_not_depend_on_the_offset_the_moment_is_written_in(moment: datetime, other: timezone) -> None:
    assert year_month_of(moment) == year_month_of(moment.astimezone(other))
    assert year_month_of(moment) == moment.astimezone(UTC).strftime("%Y%m")


def test_year_month_is_always_six_digits_even_for_years_before_1000() -> None:
    assert year_month_of(datetime(999, 5, 1, tzinfo=UTC)) == "099905"


# --- allocation (AC-0002-03-03) ---------------------------------------------------------------


def test_ac03_numbers_start_at_000001_in_a_month_with_no_customers_yet() -> None:
    assert [str(n) for n in allocate("202601", 0, 3)] == [
        "ACME-202601-000001",
        "ACME-202601-000002",
        "ACME-202601-000003",
    ]


def test_ac03_numbers_restart_at_000001_each_month() -> None:
    january = allocate("202601", 141, 1)
    february = allocate("202602", 0, 1)

    assert [str(n) for n in january] == ["ACME-202601-000142"]
    assert [str(n) for n in february] == ["ACME-202602-000001"]


def test_ac03_the_same_sequence_in_different_months_gives_different_numbers() -> None:
    assert str(CustomerNumber("202601", 1)) != str(CustomerNumber("202602", 1))


def test_allocate_continues_after_last_before() -> None:
    assert allocate("202601", 141, 2) == [CustomerNumber("202601", 142), CustomerNumber("202601", 143)]


def test_allocating_nothing_gives_no_numbers() -> None:
    assert allocate("202601", 5, 0) == []


def test_allocate_rejects_a_month_that_is_not_yyyymm() -> None:
    with pytest.raises(ValueError, match="YYYYMM"):
        allocate("2026-01", 0, 1)


@given(year_month=year_months, last_before=st.integers(min_value=0, max_value=10**7), count=st.integers(0, 200))
def test_ac03_allocate_is_gapless_ordered_and_unique(year_month: str, last_before: int, count: int) -> None:
    numbers = allocate(year_month, last_before, count)

    assert [n.sequence for n in numbers] == list(range(last_before + 1, last_before + count + 1))
    assert all(n.year_month == year_month for n in numbers)
    assert numbers == sorted(numbers)
    assert len({str(n) for n in numbers}) == count


@given(
    year_month=year_months,
    last_before=st.integers(min_value=0, max_value=10**7),
    first=st.integers(0, 50),
    second=st.integers(0, 50),
)
def test_ac03_consecutive_batches_join_without_gaps_or_repeats(
    year_month: str, last_before: int, first: int, second: int
) -> None:
    batch_one = allocate(year_month, last_before, first)
    batch_two = allocate(year_month, last_before + first, second)

    assert batch_one + batch_two == allocate(year_month, last_before, first + second)


# --- parsing ----------------------------------------------------------------------------------


def test_parse_reads_the_storys_example() -> None:
    assert CustomerNumber.parse("ACME-202601-000142") == CustomerNumber("202601", 142)


@given(year_month=year_months, sequence=sequences)
def test_parse_and_str_round_trip_for_any_valid_number(year_month: str, sequence: int) -> None:
    number = CustomerNumber(year_month, sequence)
    text = str(number)

    assert CustomerNumber.parse(text) == number
    assert str(CustomerNumber.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ACME-202601-00142",  # five digits
        "ACME-202601-",
        "ACME-202613-000001",  # month 13
        "ACME-202600-000001",  # month 00
        "ACME-2026-01-000001",
        "ACME-20261-000001",
        "acme-202601-000001",
        "ACME202601000001",
        "ACMX-202601-000001",
        "XACME-202601-000001",
        " ACME-202601-000001",
        "ACME-202601-000001 ",
        "ACME-202601-00000a",
        "ACME-202601--00001",
        "ACME-202601-+00001",
    ],
)
def test_parse_rejects_text_that_is_not_a_customer_number(text: str) -> None:
    with pytest.raises(ValueError, match="not a customer number"):
        CustomerNumber.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("ACME-202601-000142\n", id="trailing newline ($ matches before it)"),
        pytest.param("ACME-\u0662\u0660\u0662\u066601-000142", id="Arabic-Indic digits in the year (\\d is Unicode)"),
        pytest.param("ACME-202601-0000142", id="seven digits with a leading zero"),
    ],
)
def test_parse_rejects_non_canonical_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a customer number"):
        CustomerNumber.parse(text)


def test_constructor_rejects_non_ascii_digits_in_the_month() -> None:
    with pytest.raises(ValueError):
        CustomerNumber("\u0662\u0660\u0662\u066601", 1)


@pytest.mark.parametrize(
    ("year_month", "sequence"),
    [
        ("202613", 1),
        ("202600", 1),
        ("2026-1", 1),
        ("20261", 1),
        ("2026011", 1),
        ("", 1),
        ("abcdef", 1),
        ("202601", 0),
        ("202601", -1),
    ],
)
def test_constructor_rejects_a_bad_month_or_a_sequence_below_1(year_month: str, sequence: int) -> None:
    with pytest.raises(ValueError):
        CustomerNumber(year_month, sequence)
