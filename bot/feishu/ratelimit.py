"""One client-side rate limiter for every Open API call.

Sliding-window logs: a call may go when fewer than `count` calls went in the last `period` seconds, for
every limit that applies to it. This stays under Feishu's published limits by construction instead of
learning them from 99991400 answers, and unlike a token bucket it never allows a burst larger than the
window's count.

Callers under one key are admitted in the order they asked. Without a line, every waiter wakes when a
slot frees, one wins at random and the rest sleep again: under a burst some commands starve for seconds
while newer ones pass, and the wake-ups cost CPU for nothing.

Background calls (the live card's periodic meeting reads) share an endpoint's budget with commands but
never wait for it: `try_acquire` admits one only while every window is less than BACKGROUND_SHARE full and
no command is waiting on the key, and otherwise says no at once, so the caller tries again on its next
round. Measured before this rule: 60 followed meetings' reads took the meeting lookups of a 600-command
burst past Feishu's 1000/min and its cards arrived 2.3 times later (bench/README.md, day_load burst).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bot.clock import Clock


@dataclass(frozen=True)
class Limit:
    count: int
    period: float


_PRUNE_ABOVE = 4096
# The share of a window a background call may fill: commands keep at least the rest of Feishu's budget.
BACKGROUND_SHARE = 0.5
# Windows are measured here at sending, but Feishu counts at arrival, and network jitter can bring two
# calls a window apart closer together. A little slack keeps us under the limit as Feishu sees it.
_SLACK = 1.05


class _Line:
    """The callers of one key waiting for room, in the order they came."""

    def __init__(self) -> None:
        self.turn = asyncio.Lock()
        self.waiting = 0


class RateLimiter:
    """One process's limiter: the windows live in this process's memory."""

    def __init__(
        self,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._logs: dict[tuple[str, Limit], deque[float]] = {}
        self._lines: dict[str, _Line] = {}

    async def acquire(self, key: str, limits: Sequence[Limit]) -> float:
        """Wait until a call under `key` fits every limit, record it, and return the seconds waited."""
        line = self._lines.get(key)
        if (line is None or not line.waiting) and self._admit(key, limits) <= 0:
            return 0.0  # room now and nobody ahead: the common case takes no lock
        if line is None:
            line = self._lines[key] = _Line()
        waited = 0.0
        line.waiting += 1
        try:
            async with line.turn:  # asyncio.Lock wakes its waiters first come, first served
                while (wait := self._admit(key, limits)) > 0:
                    await self._sleep(wait)
                    waited += wait
        finally:
            line.waiting -= 1
        return waited

    async def try_acquire(self, key: str, limits: Sequence[Limit]) -> bool:
        """Admit and record a background call if it fits BACKGROUND_SHARE of every limit now and no
        foreground caller is waiting on `key`; never waits."""
        line = self._lines.get(key)
        if line is not None and line.waiting:
            return False
        return self._admit(key, limits, share=BACKGROUND_SHARE) <= 0

    def _admit(self, key: str, limits: Sequence[Limit], *, share: float = 1.0) -> float:
        """Record a call and return 0 when it fits `share` of every limit now; otherwise the seconds
        until it may."""
        now = self._clock()
        wait = 0.0
        for limit in limits:
            log = self._log(key, limit, now)
            room = _room(limit, share)
            if len(log) >= room:
                # Room comes back when the call `room` places from the newest leaves the window.
                wait = max(wait, log[len(log) - room] + limit.period * _SLACK - now)
        if wait <= 0:
            # No await between the check and the record, so concurrent callers cannot both pass.
            for limit in limits:
                self._log(key, limit, now).append(now)
        return wait

    def _log(self, key: str, limit: Limit, now: float) -> deque[float]:
        log = self._logs.get((key, limit))
        if log is None:
            if len(self._logs) > _PRUNE_ABOVE:
                self._prune(now)
            log = self._logs[(key, limit)] = deque()
        while log and log[0] <= now - limit.period * _SLACK:
            log.popleft()
        return log

    def _prune(self, now: float) -> None:
        # Per-chat keys come and go; forget the ones whose windows are empty.
        stale = [
            entry for entry, log in self._logs.items() if not log or log[-1] <= now - entry[1].period * _SLACK
        ]
        for entry in stale:
            del self._logs[entry]
        for key in [key for key, line in self._lines.items() if not line.waiting]:
            del self._lines[key]


def _room(limit: Limit, share: float) -> int:
    return max(1, int(limit.count * share))


@runtime_checkable
class SharedCallLog(Protocol):
    """Windows of calls that several processes share (the PostgreSQL store keeps them)."""

    async def admit_call(self, key: str, windows: Sequence[tuple[int, float]]) -> float:
        """Record a call under `key` and return 0 if it fits every (count, seconds) window now, counted
        over every process; otherwise record nothing and return the seconds until it may."""
        ...


class SharedRateLimiter:
    """The limiter for replicas: the calls of every process together stay under Feishu's limits, since
    each admission is decided against the shared log. Callers in this process still queue in arrival
    order per key, so a burst asks the shared log once per freed slot, not once per waiter."""

    def __init__(self, log: SharedCallLog, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._log = log
        self._sleep = sleep
        self._lines: dict[str, asyncio.Lock] = {}

    async def acquire(self, key: str, limits: Sequence[Limit]) -> float:
        windows = [(limit.count, limit.period * _SLACK) for limit in limits]
        line = self._lines.setdefault(key, asyncio.Lock())
        waited = 0.0
        async with line:
            while (wait := await self._log.admit_call(key, windows)) > 0:
                await self._sleep(wait)
                waited += wait
        if not line.locked() and len(self._lines) > _PRUNE_ABOVE:
            self._lines = {k: v for k, v in self._lines.items() if v.locked()}
        return waited

    async def try_acquire(self, key: str, limits: Sequence[Limit]) -> bool:
        """As `RateLimiter.try_acquire`, against every replica's calls: the shared log admits it only
        below BACKGROUND_SHARE of each window. Commands waiting in this process also hold it back."""
        line = self._lines.get(key)
        if line is not None and line.locked():
            return False
        windows = [(_room(limit, BACKGROUND_SHARE), limit.period * _SLACK) for limit in limits]
        return await self._log.admit_call(key, windows) <= 0
