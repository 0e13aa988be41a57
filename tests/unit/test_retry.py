"""Retry policy: equal-jitter exponential backoff, capped, and when to give up."""

from __future__ import annotations

import random

import pytest

from ffleet.retry import backoff_delay, decide


class FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("failures", "step"), [(0, 2.0), (1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (6, 50.0), (40, 50.0)]
)
def test_backoff_doubles_per_failure_up_to_the_cap(failures: int, step: float) -> None:
    low = backoff_delay(failures, base_s=2.0, cap_s=50.0, rng=FixedRandom(0.0))
    high = backoff_delay(failures, base_s=2.0, cap_s=50.0, rng=FixedRandom(1.0))
    assert (low, high) == (step / 2, step)


def test_jitter_spreads_delays_between_half_and_full_step() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(3, base_s=1.0, cap_s=100.0, rng=rng) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays)  # third failure: step 4 s
    assert max(delays) - min(delays) > 1.5  # not in lockstep


def test_a_retryable_failure_runs_again_after_its_backoff() -> None:
    decision = decide(2, max_attempts=3, retryable=True, now=1000.0, base_s=2.0, cap_s=60.0)
    assert decision.retry
    assert decision.not_before is not None and 1002.0 <= decision.not_before <= 1004.0


def test_giving_up_when_attempts_are_spent_or_the_failure_is_final() -> None:
    spent = decide(3, max_attempts=3, retryable=True, now=1000.0, base_s=2.0, cap_s=60.0)
    final = decide(1, max_attempts=3, retryable=False, now=1000.0, base_s=2.0, cap_s=60.0)
    assert (spent.retry, spent.not_before) == (False, None)
    assert (final.retry, final.not_before) == (False, None)
