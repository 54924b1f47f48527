"""The tenant_access_token, fetched once at a time and renewed well before it expires."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bot.clock import Clock

# (token, seconds it stays valid) as Feishu answered.
TokenFetch = Callable[[], Awaitable[tuple[str, int]]]

_MAX_MARGIN_SECONDS = 600.0


class TenantTokenManager:
    def __init__(self, fetch: TokenFetch, clock: Clock) -> None:
        self._fetch = fetch
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        token = self._token
        if token is not None and self._clock() < self._renew_at:
            return token
        async with self._lock:
            # Whoever waited on the lock finds the token the first caller fetched.
            if self._token is not None and self._clock() < self._renew_at:
                return self._token
            token, expire = await self._fetch()
            # Feishu hands back the same token while it has 30 min or more left, so a fresh answer may
            # already be old; renew a quarter of its remaining life (at most 10 min) before its end.
            margin = min(_MAX_MARGIN_SECONDS, expire * 0.25)
            self._token, self._renew_at = token, self._clock() + expire - margin
            return token

    def invalidate(self, token: str) -> None:
        """Forget `token` after Feishu refused it; a newer token fetched meanwhile is kept."""
        if self._token == token:
            self._token = None
