"""tenant_access_token issuing with Feishu's reuse rule (feishu-protocol §5).

A call returns the current token while it has at least 30 minutes left (with `expire` = what is left),
otherwise a fresh token; the old one stays valid until its own expiry, so two can be valid at once.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

REISSUE_BELOW_SECONDS = 30 * 60


class TenantTokens:
    def __init__(self, ttl_seconds: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._expires_at: dict[str, float] = {}
        self._current: str | None = None
        self.issued_count = 0
        # Every token ever handed out, so tests can prove none of them leaked into a log or a file.
        self.history: list[str] = []

    def issue(self) -> tuple[str, int]:
        """The token to hand out now and its remaining lifetime in whole seconds."""
        now = self._clock()
        current = self._current
        if current is not None:
            remaining = self._expires_at.get(current, now) - now
            if remaining >= REISSUE_BELOW_SECONDS:
                return current, int(remaining)
        token = "t-" + secrets.token_hex(20)
        self._expires_at[token] = now + self._ttl
        self._current = token
        self.issued_count += 1
        self.history.append(token)
        return token, self._ttl

    def is_valid(self, token: str) -> bool:
        expires_at = self._expires_at.get(token)
        return expires_at is not None and self._clock() < expires_at

    def revoke_all(self) -> None:
        """Every issued token stops working at once, as after an App Secret reset."""
        self._expires_at.clear()
        self._current = None
