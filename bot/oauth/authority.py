"""Acting as a user: a usable access token, refreshed once at a time, and calls retried after a refresh.

Refresh tokens are single use and rotate (feishu-protocol §6.3): two refreshes racing with the same refresh
token would leave one of them holding a dead token, and the user would have to authorize again. So a
user's refresh runs under an in-process lock *and* a lease in the store (for processes sharing it), and
the new pair is written back with compare-and-set before anyone uses it.
"""

from __future__ import annotations

import asyncio
import secrets
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import structlog

from bot.clock import Clock, backoff
from bot.feishu.client import FeishuClient
from bot.feishu.errors import (
    AUTHORIZATION_GONE,
    OAUTH_RETRYABLE,
    SCOPE_NOT_GRANTED,
    UNAVAILABLE,
    USER_TOKEN_EXPIRED,
    FeishuApiError,
)
from bot.feishu.models import OAuthTokenRequest, OAuthTokenResponse
from bot.metrics import Metrics
from bot.oauth.records import UserToken
from bot.oauth.token_store import UserTokenStore
from bot.store import Store

log = structlog.get_logger("bot.oauth")

T = TypeVar("T")

# Refresh this long before the access token expires, so a call never starts with a dying token.
REFRESH_MARGIN_SECONDS = 300.0
_LEASE_NAMESPACE = "lease"
# Longer than the slowest refresh (3 attempts of at most 10 s each, plus backoff), so a lease cannot
# lapse while its holder is still refreshing.
_LEASE_SECONDS = 120.0
_LEASE_WAIT_SECONDS = _LEASE_SECONDS + 5.0
_REFRESH_ATTEMPTS = 3


class AuthorizationRequired(Exception):
    """The user has to authorize (again). `missing_scopes` names what to ask for, when Feishu said."""

    def __init__(self, reason: str, missing_scopes: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing_scopes = missing_scopes


def token_from_response(
    response: OAuthTokenResponse,
    *,
    tenant_key: str,
    open_id: str,
    name: str,
    authorized_at: float,
    now: float,
) -> UserToken:
    return UserToken(
        tenant_key=tenant_key,
        open_id=open_id,
        name=name,
        access_token=response.access_token,
        access_expires_at=now + response.expires_in,
        refresh_token=response.refresh_token,
        refresh_expires_at=(
            now + response.refresh_token_expires_in if response.refresh_token_expires_in else None
        ),
        scopes=tuple(response.scope.split()),
        authorized_at=authorized_at,
    )


class TokenUnavailable(FeishuApiError):
    """No usable token could be had just now (the token endpoint failed): the call was never sent."""

    @classmethod
    def of(cls, error: FeishuApiError) -> TokenUnavailable:
        return cls(
            error.code, error.msg, log_id=error.log_id, http_status=error.http_status, endpoint=error.endpoint
        )


class _TokenRefused(Exception):
    """Feishu answered 99991668 or 99991677: this access token is not (or no longer) accepted."""


async def _as_user(call: Callable[[str], Awaitable[T]], access_token: str) -> T:
    try:
        return await call(access_token)
    except FeishuApiError as error:
        if error.code == SCOPE_NOT_GRANTED:
            raise AuthorizationRequired("scope not granted", error.missing_scopes) from None
        if error.code in USER_TOKEN_EXPIRED:
            raise _TokenRefused from None
        raise


# How long a /logout waits for calls already under way as that user before it goes ahead regardless.
_LOGOUT_WAIT_SECONDS = 30.0


class _Acting:
    """The calls under way as one user, and whether a logout is waiting for them to end.

    A logout is confirmed only once no call that read the user's token before it is still running (in
    this process), and no call starts while it waits: afterwards every call reads the tombstone.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.open = asyncio.Event()
        self.open.set()

    @asynccontextmanager
    async def call(self) -> AsyncIterator[None]:
        await self.open.wait()
        self.calls += 1
        self.idle.clear()
        try:
            yield
        finally:
            self.calls -= 1
            if self.calls == 0:
                self.idle.set()


class UserAuthority:
    def __init__(
        self,
        client: FeishuClient,
        tokens: UserTokenStore,
        store: Store,
        clock: Clock,
        *,
        metrics: Metrics | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._client = client
        self._tokens = tokens
        self._store = store
        self._clock = clock
        self._sleep = sleep
        # Weak: a user's lock lives while someone holds or waits for it, not forever.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._acting: weakref.WeakValueDictionary[str, _Acting] = weakref.WeakValueDictionary()
        # Who holds a lease: unique per process, so a lease is never mistaken for one's own.
        self._owner = secrets.token_hex(8).encode()

    async def current(self, tenant_key: str, open_id: str) -> UserToken | None:
        """A token good for at least a few minutes, refreshed if needed; None if the user must authorize."""
        stored = await self._tokens.get(tenant_key, open_id, now=self._clock())
        if stored is None:
            return None
        if stored.token.access_valid(self._clock(), REFRESH_MARGIN_SECONDS):
            return stored.token
        return await self.refresh(tenant_key, open_id, stale_access_token=stored.token.access_token)

    def _acting_as(self, tenant_key: str, open_id: str) -> _Acting:
        key = f"{tenant_key}/{open_id}"
        acting = self._acting.get(key)
        if acting is None:
            acting = self._acting[key] = _Acting()
        return acting

    async def call_as(self, tenant_key: str, open_id: str, call: Callable[[str], Awaitable[T]]) -> T:
        """Run `call(user_access_token)`; on an expired-token answer refresh once and retry once."""
        acting = self._acting_as(tenant_key, open_id)
        async with acting.call():
            return await self._call_as(tenant_key, open_id, call)

    async def _call_as(self, tenant_key: str, open_id: str, call: Callable[[str], Awaitable[T]]) -> T:
        try:
            token = await self.current(tenant_key, open_id)
        except FeishuApiError as error:
            raise TokenUnavailable.of(error) from None
        if token is None:
            raise AuthorizationRequired("not authorized")
        try:
            return await _as_user(call, token.access_token)
        except _TokenRefused:
            pass
        try:
            refreshed = await self.refresh(tenant_key, open_id, stale_access_token=token.access_token)
        except FeishuApiError as error:
            raise TokenUnavailable.of(error) from None
        if refreshed is None:
            raise AuthorizationRequired("authorization ended")
        try:
            return await _as_user(call, refreshed.access_token)
        except _TokenRefused:
            # Refused even fresh from a refresh: Feishu no longer honours this authorization.
            await self._tokens.forget(tenant_key, open_id, now=self._clock())
            raise AuthorizationRequired("token refused after refresh") from None

    async def forget(self, tenant_key: str, open_id: str) -> bool:
        """/logout. Once this returns the bot acts as this user no more: calls already under way have
        ended, and no refresh in flight can bring the token back (see TOMBSTONE)."""
        acting = self._acting_as(tenant_key, open_id)
        acting.open.clear()
        try:
            try:
                async with asyncio.timeout(_LOGOUT_WAIT_SECONDS):
                    await acting.idle.wait()
            except TimeoutError:
                log.warning("logout went ahead while a call as the user was still running", open_id=open_id)
            return await self._tokens.forget(tenant_key, open_id, now=self._clock())
        finally:
            acting.open.set()

    async def refresh(self, tenant_key: str, open_id: str, *, stale_access_token: str) -> UserToken | None:
        """Replace `stale_access_token`, unless someone already did; None when the authorization is gone."""
        key = f"{tenant_key}/{open_id}"
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock, self._lease(key):
            now = self._clock()
            stored = await self._tokens.get(tenant_key, open_id, now=now)
            if stored is None:
                return None
            token = stored.token
            if token.access_token != stale_access_token and token.access_valid(now, REFRESH_MARGIN_SECONDS):
                return token  # refreshed meanwhile, by a coroutine or process that held the lock before us
            if not token.refreshable(now) or token.refresh_token is None:
                await self._tokens.forget(tenant_key, open_id, now=self._clock())
                log.info("authorization expired; the user must authorize again", open_id=open_id)
                return None
            # Shielded: once Feishu has rotated the pair, a cancelled caller (say, at shutdown) must
            # not stop the new pair from being saved, or the user would have to authorize again.
            return await asyncio.shield(self._rotate(token, stored.version))

    async def _rotate(self, token: UserToken, version: int) -> UserToken | None:
        """Spend the refresh token, then save the new pair before anyone uses it."""
        assert token.refresh_token is not None
        try:
            response = await self._refresh_call(token.refresh_token)
        except FeishuApiError as error:
            gone = error.code in AUTHORIZATION_GONE
            self._metrics.token_refreshes.labels("gone" if gone else "failed").inc()
            if gone:
                await self._tokens.forget(token.tenant_key, token.open_id, now=self._clock())
                log.info("authorization revoked or used up", open_id=token.open_id, code=error.code)
                return None
            raise
        self._metrics.token_refreshes.labels("ok").inc()
        fresh = token_from_response(
            response,
            tenant_key=token.tenant_key,
            open_id=token.open_id,
            name=token.name,
            authorized_at=token.authorized_at,
            now=self._clock(),
        )
        if await self._tokens.put(fresh, expected_version=version, now=self._clock()):
            log.info("user token refreshed", open_id=token.open_id)
            return fresh
        latest = await self._tokens.get(token.tenant_key, token.open_id, now=self._clock())
        if latest is None:
            # Withdrawn meanwhile (/logout, or Feishu revoked it): the pair in hand is dropped, never
            # written back, so the bot does not act as this user again until they authorize anew.
            log.info(
                "authorization withdrawn during a refresh; the new pair is dropped", open_id=token.open_id
            )
            return None
        # Someone wrote a newer authorization (the user signed in again): that one wins.
        log.warning("token record changed during a refresh; keeping the newer one", open_id=token.open_id)
        return latest.token

    async def _refresh_call(self, refresh_token: str) -> OAuthTokenResponse:
        request = OAuthTokenRequest(
            grant_type="refresh_token",
            client_id=self._client.app_id,
            client_secret=self._client.app_secret,
            refresh_token=refresh_token,
        )
        for attempt in range(1, _REFRESH_ATTEMPTS + 1):
            try:
                return await self._client.oauth_token(request)
            except FeishuApiError as error:
                # 20050/20072 say the server did not act; a lost answer (UNAVAILABLE) may have rotated
                # the token already, and then the retry ends in 20064/20073 and a new authorization.
                if error.code not in OAUTH_RETRYABLE and error.code != UNAVAILABLE:
                    raise
                if attempt == _REFRESH_ATTEMPTS:
                    raise
                await self._sleep(backoff(attempt, base=0.4))
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def _lease(self, key: str) -> AsyncIterator[None]:
        """Hold the store-wide refresh lease for `key`; wait for another holder to finish first."""
        name = f"refresh/{key}"
        waited = 0.0
        while not await self._store.compare_and_set(
            _LEASE_NAMESPACE,
            name,
            self._owner,
            expected_version=None,
            expires_at=self._clock() + _LEASE_SECONDS,
            now=self._clock(),
        ):
            if waited >= _LEASE_WAIT_SECONDS:
                raise FeishuApiError(UNAVAILABLE, "another process is refreshing this user's token")
            await self._sleep(0.05)
            waited += 0.05
        try:
            yield
        finally:
            # Only our own lease: had it lapsed and been taken, deleting it would let a third in.
            await self._store.delete_if(_LEASE_NAMESPACE, name, self._owner)
