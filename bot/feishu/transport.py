"""The Open API transport: one aiohttp session, one token manager, one rate limiter, bounded retries.

Retries cover what is transient (network errors, 5xx, HTTP 429 and the rate-limit codes), with exponential
backoff and jitter. POSTs are retried too: every message the bot sends carries a `uuid`, which Feishu
deduplicates for an hour, so a retry after a lost answer never shows a message twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import aiohttp
import structlog
from pydantic import BaseModel, SecretStr, ValidationError

from bot.clock import Clock, backoff, system_clock
from bot.feishu.endpoints import (
    TENANT_TOKEN,
    Endpoint,
)
from bot.feishu.errors import (
    DEFERRED,
    RATE_LIMITED,
    TENANT_TOKEN_INVALID,
    UNAVAILABLE,
    UNREADABLE_RESPONSE,
    FeishuApiError,
)
from bot.feishu.models import (
    ApiResponse,
    TenantAccessTokenRequest,
    TenantAccessTokenResponse,
)
from bot.feishu.ratelimit import Limit, RateLimiter, SharedRateLimiter
from bot.feishu.tokens import TenantTokenManager
from bot.metrics import Metrics

log = structlog.get_logger("bot.feishu")

R = TypeVar("R", bound=ApiResponse)
RetryWhen = Literal["transient", "rate_limited", "never"]

LOG_ID_HEADER = "X-Tt-Logid"
RATE_LIMIT_RESET_HEADER = "x-ogw-ratelimit-reset"


@dataclass(frozen=True)
class Retry:
    attempts: int = 4
    base_seconds: float = 0.5
    cap_seconds: float = 10.0


class FeishuTransport:
    """How every call is made; `FeishuClient` adds the typed calls themselves."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        domain: str,
        app_id: str,
        app_secret: SecretStr,
        metrics: Metrics,
        limiter: RateLimiter | SharedRateLimiter | None = None,
        retry: Retry = Retry(),
        clock: Clock = system_clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._session = session
        self._domain = domain.rstrip("/")
        self._app_id = app_id
        self._app_secret = app_secret
        self._metrics = metrics
        self._limiter: RateLimiter | SharedRateLimiter = limiter or RateLimiter()
        self._retry = retry
        self._sleep = sleep
        self.tenant_tokens = TenantTokenManager(self._fetch_tenant_token, clock)

    @classmethod
    def open_session(cls, timeout_seconds: float = 10.0) -> aiohttp.ClientSession:
        """The process's one HTTP session: pooled connections to the Open API."""
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_seconds, connect=5.0),
            connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
            headers={"User-Agent": "feishu-invite-bot/0.1"},
        )

    # --- the calls -------------------------------------------------------------------------------------

    @property
    def app_id(self) -> str:
        return self._app_id

    @property
    def app_secret(self) -> str:
        return self._app_secret.get_secret_value()

    async def _fetch_tenant_token(self) -> tuple[str, int]:
        body = TenantAccessTokenRequest(app_id=self._app_id, app_secret=self._app_secret.get_secret_value())
        response = await self.call(TENANT_TOKEN, TenantAccessTokenResponse, body=body, auth=None)
        return response.tenant_access_token, response.expire

    # --- the machinery ---------------------------------------------------------------------------------

    async def call(
        self,
        endpoint: Endpoint,
        response_model: type[R],
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: BaseModel | None = None,
        auth: Literal["tenant", "user"] | None = "tenant",
        user_access_token: str | None = None,
        extra_limits: Sequence[tuple[str, Sequence[Limit]]] = (),
        retry: RetryWhen = "transient",
        background: bool = False,
    ) -> R:
        """Make one API call with retries. `auth`: "tenant", "user" (with user_access_token) or None.

        `retry` says what may be repeated. "transient": network errors, 5xx and rate limits (safe for
        reads and for messages, which carry a uuid). "rate_limited": only a refusal that says the call
        was not processed, for calls with effects a lost answer could hide (an invitation rings a phone).
        "never": the caller decides (a refresh whose answer was lost may already have rotated the token).

        `background`: a periodic call that gives way to commands (feishu-protocol §7.3): made only while
        the endpoint's budget has room to spare, else FeishuApiError(DEFERRED) at once, without waiting.
        """
        url = self._domain + endpoint.path.format(**(path_params or {}))
        payload = None if body is None else body.model_dump_json(exclude_none=True).encode()
        token_refetched = False
        attempt = 0
        while True:
            attempt += 1
            if not background:
                await self._limiter.acquire(endpoint.name, endpoint.limits)
            elif not await self._limiter.try_acquire(endpoint.name, endpoint.limits):
                self._metrics.api_calls.labels(endpoint.name, "deferred").inc()
                raise FeishuApiError(DEFERRED, "no room for a background call now", endpoint=endpoint.name)
            for key, limits in extra_limits:
                await self._limiter.acquire(key, limits)
            headers = {"Content-Type": "application/json; charset=utf-8"}
            token = await self._token_for(auth, user_access_token)
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            started = time.perf_counter()
            try:
                status, response_headers, data = await self._send(endpoint, url, params, payload, headers)
            finally:
                self._metrics.api_latency.labels(endpoint.name).observe(time.perf_counter() - started)
            outcome = _interpret(endpoint, response_model, status, response_headers, data)
            if not isinstance(outcome, FeishuApiError):
                self._metrics.api_calls.labels(endpoint.name, "ok").inc()
                return outcome
            if (
                auth == "tenant"
                and token is not None
                and outcome.code in TENANT_TOKEN_INVALID
                and not token_refetched
            ):
                # Revoked or rotated early: fetch a new token and try once more at once (not an attempt).
                self.tenant_tokens.invalidate(token)
                token_refetched = True
                attempt -= 1
                continue
            rate_limited = status == 429 or outcome.code in RATE_LIMITED
            retryable = (retry == "transient" and outcome.transient) or (retry != "never" and rate_limited)
            if not retryable or attempt >= self._retry.attempts:
                self._metrics.api_calls.labels(endpoint.name, str(outcome.code)).inc()
                log.warning(
                    "feishu call failed",
                    endpoint=endpoint.name,
                    code=outcome.code,
                    msg=outcome.msg,
                    http_status=outcome.http_status,
                    log_id=outcome.log_id,
                )
                raise outcome
            delay = self._backoff(attempt, response_headers.get(RATE_LIMIT_RESET_HEADER))
            log.warning(
                "feishu call failed; retrying",
                endpoint=endpoint.name,
                code=outcome.code,
                http_status=status,
                log_id=outcome.log_id,
                retry_in=round(delay, 2),
                attempt=attempt,
            )
            await self._sleep(delay)

    async def _token_for(
        self, auth: Literal["tenant", "user"] | None, user_access_token: str | None
    ) -> str | None:
        if auth == "tenant":
            return await self.tenant_tokens.get()
        if auth == "user":
            if not user_access_token:
                raise ValueError("a user call needs the user's access token")
            return user_access_token
        return None

    async def _send(
        self,
        endpoint: Endpoint,
        url: str,
        params: Mapping[str, str] | None,
        payload: bytes | None,
        headers: dict[str, str],
    ) -> tuple[int, Mapping[str, str], dict[str, Any] | None]:
        """One HTTP exchange; network failures come back as status 0 instead of raising."""
        try:
            async with self._session.request(
                endpoint.method, url, params=params, data=payload, headers=headers
            ) as response:
                raw = await response.read()
                return response.status, response.headers, _json_object(raw)
        except (aiohttp.ClientError, TimeoutError) as error:
            log.info("feishu network error", endpoint=endpoint.name, error=type(error).__name__)
            return 0, {}, None

    def _backoff(self, attempt: int, reset_header: str | None) -> float:
        if reset_header is not None:
            try:
                # Seconds until the gateway's window resets; wait that long, plus a little spread.
                reset = float(reset_header)
                return min(self._retry.cap_seconds * 6, reset) + random.uniform(0, 0.25)  # noqa: S311
            except ValueError:
                pass
        return backoff(attempt, base=self._retry.base_seconds, cap=self._retry.cap_seconds)


def _interpret(
    endpoint: Endpoint,
    response_model: type[R],
    status: int,
    headers: Mapping[str, str],
    data: dict[str, Any] | None,
) -> R | FeishuApiError:
    """A parsed success, or the error that describes the failure (status 0: no answer at all)."""
    log_id = headers.get(LOG_ID_HEADER, "") or _log_id_in(data)
    code = _code_in(data)
    if code == 0 and status < 400 and data is not None:
        try:
            return response_model.model_validate(data)
        except ValidationError:
            return FeishuApiError(
                UNREADABLE_RESPONSE,
                "unexpected response shape",
                log_id=log_id,
                http_status=status,
                endpoint=endpoint.name,
            )
    if code is None:
        code = UNAVAILABLE if status >= 500 or status == 0 else UNREADABLE_RESPONSE
    return FeishuApiError(
        code,
        _msg_in(data) or (f"HTTP {status}" if status else "network error"),
        log_id=log_id,
        http_status=status,
        endpoint=endpoint.name,
        missing_scopes=_missing_scopes_in(data),
        oauth_error=_oauth_error_in(data),
    )


def _oauth_error_in(data: dict[str, Any] | None) -> str:
    error = None if data is None else data.get("error")
    return error[:64] if isinstance(error, str) else ""


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _code_in(data: dict[str, Any] | None) -> int | None:
    code = None if data is None else data.get("code")
    return code if isinstance(code, int) else None


def _msg_in(data: dict[str, Any] | None) -> str:
    msg = None if data is None else data.get("msg") or data.get("error_description")
    return msg if isinstance(msg, str) else ""


def _log_id_in(data: dict[str, Any] | None) -> str:
    error = None if data is None else data.get("error")
    log_id = error.get("log_id") if isinstance(error, dict) else None
    return log_id if isinstance(log_id, str) else ""


def _missing_scopes_in(data: dict[str, Any] | None) -> tuple[str, ...]:
    """The scopes named by a 99991679 answer's `error.permission_violations[].subject`."""
    error = None if data is None else data.get("error")
    violations = error.get("permission_violations") if isinstance(error, dict) else None
    if not isinstance(violations, list):
        return ()
    subjects = (item.get("subject") for item in violations if isinstance(item, dict))
    return tuple(subject for subject in subjects if isinstance(subject, str) and subject)
