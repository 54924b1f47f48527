"""Per-app frequency control of one API, on the emulator clock (doc: "接口频率限制", e.g. 1000/min, 50/s).

Sliding windows: a call is admitted when every window still has room, and only admitted calls count, so
a client that backs off for the advertised reset time gets through. A refusal carries the headers
Feishu's gateway sends with 99991400 (feishu-protocol §4.1: `x-ogw-ratelimit-*`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence

from aiohttp import web

from emulator import replies
from emulator.replies import Refusal

PER_SECOND = 1.0
PER_MINUTE = 60.0


class RateLimit:
    def __init__(self, windows: Sequence[tuple[int, float]], clock: Callable[[], float]) -> None:
        """`windows`: (calls, seconds) pairs, e.g. ((50, PER_SECOND), (1000, PER_MINUTE))."""
        self._windows = tuple(windows)
        self._clock = clock
        self._longest = max(seconds for _, seconds in self._windows)
        self._admitted: deque[float] = deque()

    def check(self) -> None:
        """Admit one call now, or raise Refusal with 99991400 / HTTP 429."""
        now = self._clock()
        while self._admitted and self._admitted[0] <= now - self._longest:
            self._admitted.popleft()
        for limit, seconds in self._windows:
            in_window = [at for at in self._admitted if at > now - seconds]
            if len(in_window) >= limit:
                # The window frees a slot when its oldest admitted call ages out.
                wait = in_window[-limit] + seconds - now
                raise Refusal(_refusal(limit, wait))
        self._admitted.append(now)

    def reset(self) -> None:
        self._admitted.clear()


def _refusal(limit: int, wait: float) -> web.Response:
    headers = {
        "x-ogw-ratelimit-limit": str(limit),
        "x-ogw-ratelimit-reset": str(max(1, math.ceil(wait))),
    }
    return replies.error(replies.RATE_LIMITED, headers=headers)
