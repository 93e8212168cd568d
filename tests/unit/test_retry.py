"""Retry with exponential backoff on transient failures (AC-0002-03-09)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from acme_customer.config import DEFAULT_BACKOFF
from acme_customer.errors import (
    InvalidEvent,
    PermanentError,
    PublishFailed,
    RecordRejected,
    StoreConflict,
    StoreUnavailable,
    TransientError,
)
from acme_customer.service_layer.retry import RetriesExhausted, with_backoff

AC09_DELAYS = (1, 2, 4, 8, 16)


class RecordedSleep:
    """A ``sleep`` that only notes the delay asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def failing(errors: list[BaseException], result: str = "done") -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """An operation raising ``errors`` one per call, then returning ``result``; and its call count."""
    calls = [0]

    async def operation() -> str:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return result

    return operation, calls


async def test_success_at_the_first_attempt_returns_the_result_without_sleeping() -> None:
    sleep = RecordedSleep()
    retries: list[tuple[int, TransientError]] = []
    operation, calls = failing([])

    result = await with_backoff(operation, AC09_DELAYS, "test", lambda a, e: retries.append((a, e)), sleep=sleep)

    assert result == "done"
    assert calls == [1]
    assert sleep.delays == []
    assert retries == []


async def test_three_transient_failures_then_success_sleep_1_2_4_and_report_each_retry() -> None:
    sleep = RecordedSleep()
    errors: list[BaseException] = [StoreUnavailable("one"), PublishFailed("two"), StoreUnavailable("three")]
    expected = list(errors)
    retries: list[tuple[int, TransientError]] = []
    operation, calls = failing(errors)

    result = await with_backoff(operation, AC09_DELAYS, "test", lambda a, e: retries.append((a, e)), sleep=sleep)

    assert result == "done"
    assert calls == [4]
    assert sleep.delays == [1, 2, 4]
    assert retries == [(1, expected[0]), (2, expected[1]), (3, expected[2])]


async def test_ac09_always_failing_sleeps_1_2_4_8_16_then_gives_up_after_6_attempts() -> None:
    sleep = RecordedSleep()
    errors: list[BaseException] = [StoreUnavailable(f"attempt {n}") for n in range(1, 7)]
    last = errors[-1]
    retries: list[int] = []
    operation, calls = failing(errors)

    with pytest.raises(RetriesExhausted) as caught:
        await with_backoff(operation, AC09_DELAYS, "test", lambda a, e: retries.append(a), sleep=sleep)

    assert sleep.delays == [1, 2, 4, 8, 16]
    assert calls == [6]  # the first attempt and 5 retries
    assert caught.value.attempts == 6
    assert caught.value.last is last
    assert caught.value.__cause__ is last
    assert retries == [1, 2, 3, 4, 5]  # no retry announced after the last attempt


async def test_ac09_the_default_backoff_setting_is_1_2_4_8_16_seconds() -> None:
    sleep = RecordedSleep()

    async def down() -> None:
        raise StoreUnavailable("down")

    with pytest.raises(RetriesExhausted) as caught:
        await with_backoff(down, DEFAULT_BACKOFF, "test", sleep=sleep)

    assert sleep.delays == [1, 2, 4, 8, 16]
    assert caught.value.attempts == 6


@pytest.mark.parametrize(
    "error",
    [
        PermanentError("refused"),
        InvalidEvent("payload.email: not an email address"),
        RecordRejected("bad data"),
        StoreConflict("uniqueness conflict"),
        ValueError("a bug"),
        asyncio.CancelledError(),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_errors_that_are_not_transient_propagate_at_once_without_retrying(error: BaseException) -> None:
    sleep = RecordedSleep()
    retries: list[int] = []
    operation, calls = failing([error])

    with pytest.raises(type(error)) as caught:
        await with_backoff(operation, AC09_DELAYS, "test", lambda a, e: retries.append(a), sleep=sleep)

    assert caught.value is error
    assert calls == [1]
    assert sleep.delays == []
    assert retries == []


async def test_a_permanent_error_after_a_transient_one_stops_the_retries() -> None:
    sleep = RecordedSleep()
    permanent = RecordRejected("bad data")
    operation, calls = failing([StoreUnavailable("down"), permanent])

    with pytest.raises(RecordRejected) as caught:
        await with_backoff(operation, AC09_DELAYS, "test", sleep=sleep)

    assert caught.value is permanent
    assert calls == [2]
    assert sleep.delays == [1]


async def test_no_delays_means_a_single_attempt() -> None:
    sleep = RecordedSleep()
    error = StoreUnavailable("down")
    operation, calls = failing([error])

    with pytest.raises(RetriesExhausted) as caught:
        await with_backoff(operation, (), "test", sleep=sleep)

    assert calls == [1]
    assert sleep.delays == []
    assert caught.value.attempts == 1
    assert caught.value.last is error
    assert caught.value.__cause__ is error


async def test_no_delays_still_returns_a_first_time_success() -> None:
    sleep = RecordedSleep()
    operation, calls = failing([])

    assert await with_backoff(operation, (), "test", sleep=sleep) == "done"
    assert calls == [1]
    assert sleep.delays == []
