"""RFC 3339 timestamps: what is accepted on input and the one form written on the wire."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acme_customer.domain.clock import format_rfc3339, parse_rfc3339

WIRE_FORM = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3}|\.\d{6})?Z\Z")


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-01-02T10:30:02Z", datetime(2026, 1, 2, 10, 30, 2, tzinfo=UTC), id="Z"),
        pytest.param("2026-01-02t10:30:02z", datetime(2026, 1, 2, 10, 30, 2, tzinfo=UTC), id="lower-case t and z"),
        pytest.param("2026-01-02T10:30:02+00:00", datetime(2026, 1, 2, 10, 30, 2, tzinfo=UTC), id="+00:00"),
        pytest.param("2026-01-02T10:30:02-00:00", datetime(2026, 1, 2, 10, 30, 2, tzinfo=UTC), id="-00:00"),
        pytest.param("2026-01-02T11:30:02+01:00", datetime(2026, 1, 2, 10, 30, 2, tzinfo=UTC), id="+01:00"),
        pytest.param("2026-01-02T05:00:02-05:30", datetime(2026, 1, 2, 10, 30, 2, tzinfo=UTC), id="-05:30"),
        pytest.param("2026-01-01T00:30:00+01:00", datetime(2025, 12, 31, 23, 30, 0, tzinfo=UTC), id="crosses a year"),
    ],
)
def test_parse_accepts_z_and_numeric_offsets_and_returns_utc(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)

    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "microsecond"),
    [
        ("2026-01-02T10:30:02.5Z", 500_000),
        ("2026-01-02T10:30:02.123Z", 123_000),
        ("2026-01-02T10:30:02.123456Z", 123_456),
        ("2026-01-02T10:30:02.1234567Z", 123_456),
        ("2026-01-02T10:30:02.123456789Z", 123_456),
        ("2026-01-02T10:30:02.000000001Z", 0),
    ],
)
def test_parse_accepts_fractions_and_truncates_past_microseconds(text: str, microsecond: int) -> None:
    parsed = parse_rfc3339(text)

    assert parsed.microsecond == microsecond
    assert parsed.replace(microsecond=0) == datetime(2026, 1, 2, 10, 30, 2, tzinfo=UTC)


def test_nanoseconds_are_truncated_not_rounded_into_the_next_second() -> None:
    assert parse_rfc3339("2026-01-31T23:59:59.999999999Z") == datetime(2026, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)


def test_a_fraction_with_an_offset_keeps_both() -> None:
    assert parse_rfc3339("2026-01-02T11:30:02.123456789+01:00") == datetime(2026, 1, 2, 10, 30, 2, 123_456, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2026-01-02T10:30:02", id="no offset"),
        pytest.param("2026-01-02T10:30:02.123", id="fraction but no offset"),
        pytest.param("2026-01-02 10:30:02Z", id="space instead of T"),
        pytest.param("2026-01-02", id="date only"),
        pytest.param("10:30:02Z", id="time only"),
        pytest.param("2026-01-02T10:30Z", id="no seconds"),
        pytest.param("2026-1-2T10:30:02Z", id="unpadded date"),
        pytest.param("20260102T103002Z", id="ISO basic format"),
        pytest.param("2026-01-02T10:30:02+0100", id="offset without colon"),
        pytest.param("2026-01-02T10:30:02+01", id="offset hours only"),
        pytest.param("2026-01-02T10:30:02.Z", id="empty fraction"),
        pytest.param("2026-01-02T10:30:02.1234567890Z", id="ten fraction digits"),
        pytest.param("2026-13-02T10:30:02Z", id="month 13"),
        pytest.param("2026-02-30T10:30:02Z", id="30 February"),
        pytest.param("2026-01-02T24:30:02Z", id="hour 24"),
        pytest.param(" 2026-01-02T10:30:02Z", id="leading space"),
        pytest.param("2026-01-02T10:30:02Z ", id="trailing space"),
        pytest.param("2026-01-02T10:30:02Z\n", id="trailing newline"),
        pytest.param("", id="empty"),
        pytest.param("yesterday", id="words"),
    ],
)
def test_parse_rejects_what_is_not_an_rfc3339_date_time_with_offset(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


def test_parse_rejection_message_does_not_echo_the_input() -> None:
    with pytest.raises(ValueError) as caught:
        parse_rfc3339("jane.doe@example.com")

    assert str(caught.value) == "not an RFC 3339 date-time"


@pytest.mark.parametrize("text", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_parse_raises_value_error_for_moments_outside_the_representable_range(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


# --- formatting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(datetime(2026, 1, 2, 10, 30, 2, tzinfo=UTC), "2026-01-02T10:30:02Z", id="whole seconds"),
        pytest.param(datetime(2026, 1, 2, 10, 30, 2, 500_000, tzinfo=UTC), "2026-01-02T10:30:02.500Z", id="millis"),
        pytest.param(datetime(2026, 1, 2, 10, 30, 2, 1_000, tzinfo=UTC), "2026-01-02T10:30:02.001Z", id="1 ms"),
        pytest.param(datetime(2026, 1, 2, 10, 30, 2, 123_456, tzinfo=UTC), "2026-01-02T10:30:02.123456Z", id="micros"),
        pytest.param(datetime(2026, 1, 2, 10, 30, 2, 1, tzinfo=UTC), "2026-01-02T10:30:02.000001Z", id="1 µs"),
        pytest.param(
            datetime(2026, 1, 2, 11, 30, 2, tzinfo=timezone(timedelta(hours=1))),
            "2026-01-02T10:30:02Z",
            id="offset converted to UTC",
        ),
        pytest.param(
            datetime(2025, 12, 31, 19, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
            "2026-01-01T00:00:00Z",
            id="conversion crosses a year",
        ),
    ],
)
def test_format_writes_utc_with_z_and_a_fraction_only_when_there_is_one(moment: datetime, text: str) -> None:
    assert format_rfc3339(moment) == text


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30), timezones=st.just(UTC)))
def test_format_output_is_always_the_wire_form_and_parses_back_to_the_same_instant(moment: datetime) -> None:
    text = format_rfc3339(moment)

    assert WIRE_FORM.match(text), text
    assert "+00:00" not in text
    assert parse_rfc3339(text) == moment


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(9998, 12, 30),
        timezones=st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m))),
    )
)
def test_parsing_an_offset_form_gives_the_same_instant_as_its_utc_form(moment: datetime) -> None:
    with_offset = moment.isoformat()  # e.g. 2026-01-02T11:30:02.123456+01:00

    assert parse_rfc3339(with_offset) == moment
    assert format_rfc3339(parse_rfc3339(with_offset)) == format_rfc3339(moment)
