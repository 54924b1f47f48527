"""The clock every time-dependent part takes, so tests can move time instead of sleeping."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

Clock = Callable[[], float]


def system_clock() -> float:
    return time.time()


def backoff(attempt: int, *, base: float, cap: float = float("inf")) -> float:
    """How long to wait before retry number `attempt` (1 for the first retry): `base` doubled per attempt,
    capped at `cap`, then spread by ±50% so that callers failing together do not retry in lockstep.
    The one backoff of the bot: the inbox, the Open API transport and token refreshes all use it."""
    delay = min(cap, base * 2.0 ** (max(attempt, 1) - 1))
    return delay * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not security
