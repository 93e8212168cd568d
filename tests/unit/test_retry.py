"""Retry with exponential backoff on transient failures (AC-0002-03-09): the loop, over a scripted handler."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from acme_customer.config import DEFAULT_BACKOFF
from acme_customer.errors import PublishFailed, StoreUnavailable, TransientError
from acme_customer.stream.records import Record
from acme_customer.stream.retry import Unfinished, retry_unfinished

AC09_DELAYS = (1, 2, 4, 8, 16)
RECORDS = (Record("identity.user.events", 0, 1, None, b"{}", []), Record("identity.user.events", 0, 2, None, b"{}", []))


class RecordedSleep:
    """A ``sleep`` that only notes the delay asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@dataclass
class Scripted:
    """Each attempt fails with the next error of ``errors`` (None: succeeds); ``give_up`` refuses ``refusals`` times."""

    errors: list[TransientError | None]
    refusals: int = 0
    attempts: list[tuple[Record, ...]] = field(default_factory=list)
    given_up: list[tuple[Unfinished, int]] = field(default_factory=list)

    async def attempt(self, records: Sequence[Record]) -> Unfinished | None:
        self.attempts.append(tuple(records))
        error = self.errors.pop(0) if self.errors else None
        return None if error is None else Unfinished(tuple(records), error)

    async def give_up(self, unfinished: Unfinished, attempts: int) -> Unfinished | None:
        self.given_up.append((unfinished, attempts))
        if self.refusals:
            self.refusals -= 1
            return Unfinished(unfinished.records, PublishFailed("the DLQ did not acknowledge"))
        return None


def first_failure(error: TransientError | None = None) -> Unfinished:
    return Unfinished(RECORDS, error or StoreUnavailable("first"))


async def test_nothing_unfinished_means_no_retry_and_no_sleep() -> None:
    handler, sleep = Scripted([]), RecordedSleep()

    await retry_unfinished(handler, None, AC09_DELAYS, sleep)

    assert (handler.attempts, handler.given_up, sleep.delays) == ([], [], [])


async def test_three_more_failures_then_success_sleep_1_2_4_8_and_retry_the_same_records() -> None:
    errors: list[TransientError | None] = [StoreUnavailable("two"), PublishFailed("three"), StoreUnavailable("four")]
    handler, sleep = Scripted(errors), RecordedSleep()

    await retry_unfinished(handler, first_failure(), AC09_DELAYS, sleep)

    assert sleep.delays == [1, 2, 4, 8]
    assert handler.attempts == [RECORDS] * 4
    assert handler.given_up == []


async def test_ac09_always_failing_sleeps_1_2_4_8_16_then_gives_up_after_6_attempts_with_the_last_error() -> None:
    errors: list[TransientError | None] = [StoreUnavailable(f"attempt {n}") for n in range(2, 7)]
    last = errors[-1]
    handler, sleep = Scripted(list(errors)), RecordedSleep()

    await retry_unfinished(handler, first_failure(), AC09_DELAYS, sleep)

    assert sleep.delays == [1, 2, 4, 8, 16]
    assert len(handler.attempts) == 5  # the 5 retries; the first attempt was the caller's
    ((unfinished, attempts),) = handler.given_up
    assert attempts == 6
    assert unfinished.error is last


async def test_ac09_the_default_backoff_setting_is_1_2_4_8_16_seconds() -> None:
    handler, sleep = Scripted([StoreUnavailable("down")] * 5), RecordedSleep()

    await retry_unfinished(handler, first_failure(), DEFAULT_BACKOFF, sleep)

    assert sleep.delays == [1, 2, 4, 8, 16]
    assert handler.given_up[0][1] == 6


async def test_what_the_handler_cannot_give_up_yet_is_handed_back_at_the_last_delay_with_the_original_reason() -> None:
    reason = StoreUnavailable("the reason it was given up for")
    handler, sleep = Scripted([reason] * 5, refusals=2), RecordedSleep()

    await retry_unfinished(handler, first_failure(), AC09_DELAYS, sleep)

    assert sleep.delays == [1, 2, 4, 8, 16, 16, 16]
    assert [attempts for _, attempts in handler.given_up] == [6, 6, 6]  # x-attempts counts processing attempts
    assert all(unfinished.error is reason for unfinished, _ in handler.given_up)


@pytest.mark.parametrize("delays", [(), (0.5,)], ids=["no-retries", "one-retry"])
async def test_the_schedule_bounds_the_retries(delays: tuple[float, ...]) -> None:
    handler, sleep = Scripted([StoreUnavailable("down")] * 3), RecordedSleep()

    await retry_unfinished(handler, first_failure(), delays, sleep)

    assert sleep.delays == list(delays)
    assert len(handler.attempts) == len(delays)
    assert handler.given_up[0][1] == len(delays) + 1
