"""Retry policy: a pure decision from (failures so far, limits) to "run again at T" or "give up".

Kept out of the stores so every backend retries the same way and the policy is testable alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    not_before: float | None  # epoch seconds; None when giving up


def backoff_delay(
    failures: int, base_s: float, cap_s: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with equal jitter: half the step is fixed, half random.

    The fixed half guarantees a minimum pause (a crashing job cannot spin); the random half
    spreads retries of jobs that failed together (a dead node) so they don't return in lockstep.
    """
    step = min(cap_s, base_s * 2.0 ** max(0, failures - 1))
    jitter = rng.random() if rng is not None else random.random()
    return step / 2 + step / 2 * jitter


def decide(
    failures: int, max_attempts: int, retryable: bool, now: float, base_s: float, cap_s: float
) -> RetryDecision:
    """`failures` counts failed attempts including the one that just ended."""
    if not retryable or failures >= max_attempts:
        return RetryDecision(retry=False, not_before=None)
    return RetryDecision(retry=True, not_before=now + backoff_delay(failures, base_s, cap_s))
