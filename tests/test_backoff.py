"""The one backoff: doubling from its base, capped, spread by ±50%."""

from __future__ import annotations

import pytest

from bot.clock import backoff


@pytest.mark.parametrize(("attempt", "middle"), [(1, 2.0), (2, 4.0), (3, 8.0), (5, 30.0), (40, 30.0)])
def test_backoff_doubles_up_to_its_cap_with_spread(attempt: int, middle: float) -> None:
    delays = [backoff(attempt, base=2.0, cap=30.0) for _ in range(400)]
    assert all(0.5 * middle <= delay <= 1.5 * middle for delay in delays)
    assert max(delays) - min(delays) > 0.5 * middle  # really spread, not a fixed delay


def test_an_attempt_below_one_counts_as_the_first() -> None:
    assert all(0.5 <= backoff(0, base=1.0) <= 1.5 for _ in range(50))
