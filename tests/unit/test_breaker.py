"""The circuit breaker (with a fake clock) and Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from semrouter.config.schema import BreakerConfig
from semrouter.proxy.breaker import BreakerState, CircuitBreaker
from semrouter.proxy.upstream import MAX_RETRY_AFTER_S, retry_after_s


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(clock: Clock, changes: list[BreakerState], **config: object) -> CircuitBreaker:
    settings = BreakerConfig.model_validate({"failures": 3, "open_s": 10.0, **config})
    return CircuitBreaker(settings, changes.append, clock)


def test_opens_after_consecutive_failures_only(clock: Clock) -> None:
    changes: list[BreakerState] = []
    b = breaker(clock, changes)
    for _ in range(2):
        assert b.acquire()
        b.failure()
    b.success()  # resets the count
    for _ in range(2):
        b.failure()
    assert b.state is BreakerState.CLOSED and b.acquire()
    b.failure()
    assert changes == [BreakerState.OPEN]
    assert not b.acquire()
    assert b.ready_in() == pytest.approx(10.0)


def test_half_open_lets_one_probe_through_and_its_success_closes(clock: Clock) -> None:
    changes: list[BreakerState] = []
    b = breaker(clock, changes)
    for _ in range(3):
        b.failure()
    clock.now += 9.9
    assert not b.acquire()
    clock.now += 0.2
    assert b.acquire()  # the probe
    assert b.state is BreakerState.HALF_OPEN
    assert not b.acquire()  # only one probe at a time
    b.success()
    assert b.acquire() and b.acquire()
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_failed_probe_reopens_for_another_period(clock: Clock) -> None:
    changes: list[BreakerState] = []
    b = breaker(clock, changes)
    for _ in range(3):
        b.failure()
    clock.now += 10
    assert b.acquire()
    b.failure()
    assert b.state is BreakerState.OPEN
    clock.now += 5
    assert not b.acquire()
    assert b.ready_in() == pytest.approx(5.0)
    clock.now += 5
    assert b.acquire()
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN] * 2


def test_probe_without_verdict_frees_the_slot(clock: Clock) -> None:
    b = breaker(clock, [])
    for _ in range(3):
        b.failure()
    clock.now += 10
    assert b.acquire()
    assert not b.acquire()
    b.release()  # e.g. the client went away
    assert b.acquire()
    assert b.state is BreakerState.HALF_OPEN


def test_late_failure_while_open_does_not_extend_it(clock: Clock) -> None:
    b = breaker(clock, [])
    for _ in range(3):
        b.failure()
    clock.now += 8
    b.failure()  # a stream that started before the breaker opened
    clock.now += 2
    assert b.acquire()


def test_disabled_breaker_never_opens(clock: Clock) -> None:
    b = breaker(clock, [], enabled=False)
    for _ in range(100):
        b.failure()
    assert b.acquire() and b.state is BreakerState.CLOSED


def test_retry_after_hold_is_independent_of_the_state(clock: Clock) -> None:
    b = breaker(clock, [])
    b.hold(2.5)
    assert not b.acquire()
    assert b.ready_in() == pytest.approx(2.5)
    b.hold(1.0)  # never shortens a hold
    clock.now += 2.0
    assert not b.acquire()
    clock.now += 0.6
    assert b.acquire()
    assert b.state is BreakerState.CLOSED and b.ready_in() == 0.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Thu, 03 Dec 2026 08:00:30 GMT", 30.0),
        ("Thu, 03 Dec 2026 07:59:00 GMT", 0.0),  # in the past
        ("99999", MAX_RETRY_AFTER_S),
        ("soon", None),
        ("-3", None),
        (None, None),
    ],
)
def test_retry_after_values(value: str | None, seconds: float | None) -> None:
    now = datetime(2026, 12, 3, 8, 0, 0, tzinfo=UTC)
    assert retry_after_s(value, now) == seconds
