"""OAuth device authorization (BOT_AUTH_FLOW=device): nothing comes back to the bot over HTTP.

The user opens a Feishu page and approves; the bot polls the token endpoint until they did (feishu-protocol
§10). The flow's state (the device code, sealed) is kept per user, so a new request replaces the old
one; the polling itself is an inbox event, so it survives a restart and runs on one replica at a time.
In a group anyone can open the link: the token is kept only if `user_info` says it is the user who asked.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import structlog
from pydantic import ValidationError

from bot.clock import Clock
from bot.feishu.client import FeishuClient
from bot.feishu.errors import FeishuApiError
from bot.feishu.events import DEVICE_AUTHORIZATION, EventEnvelope
from bot.feishu.models import OAuthTokenRequest
from bot.oauth.authority import token_from_response
from bot.oauth.flow import granted_event
from bot.oauth.records import DevicePoll, DeviceState
from bot.oauth.sealing import Sealer, SealError
from bot.oauth.token_store import UserTokenStore
from bot.store import Store

log = structlog.get_logger("bot.oauth.device")

DEVICE_NAMESPACE = "device_flow"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_SLOW_DOWN_STEP = 5.0
_MAX_INTERVAL = 60.0

OutcomeKind = Literal["authorized", "denied", "expired", "wrong_user", "replaced"]


@dataclass(frozen=True)
class DeviceStart:
    flow_id: str
    url: str  # verification_uri_complete: where the user approves
    expires_in: int
    poll: EventEnvelope  # the inbox event that polls until the user decided


@dataclass(frozen=True)
class DeviceOutcome:
    kind: OutcomeKind
    prompt_key: str
    signed_in_as: str = ""
    resume: EventEnvelope | None = None  # authorized: runs what waited, in the user's chat


def prompt_key(flow_id: str) -> str:
    # The same keying as the redirect flow's prompts (AuthorizationFlow.attach_prompt hashes its state).
    return hashlib.sha256(flow_id.encode()).hexdigest()


class DeviceFlow:
    def __init__(
        self,
        client: FeishuClient,
        tokens: UserTokenStore,
        store: Store,
        sealer: Sealer,
        *,
        accounts_url: str,
        scopes: tuple[str, ...],
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._tokens = tokens
        self._store = store
        self._sealer = sealer
        self._accounts_url = accounts_url
        self._scopes = scopes
        self._clock = clock
        self._sleep = sleep

    async def begin(
        self,
        tenant_key: str,
        open_id: str,
        *,
        pending: EventEnvelope | None,
        extra_scopes: tuple[str, ...] = (),
        locale: str = "zh_cn",
    ) -> DeviceStart:
        scopes = tuple(dict.fromkeys((*self._scopes, *extra_scopes)))
        started = await self._client.device_authorization(self._accounts_url, scopes)
        now = self._clock()
        flow_id = secrets.token_urlsafe(24)
        record = DeviceState(
            flow_id=flow_id,
            tenant_key=tenant_key,
            open_id=open_id,
            device_code=started.device_code,
            scopes=scopes,
            expires_at=now + started.expires_in,
            interval=float(started.interval),
            pending=pending,
            locale=locale,
        )
        await self._keep(record)  # replaces this user's earlier flow: its poll sees it and stops
        poll = DevicePoll(
            ordering_key=f"device:{tenant_key}/{open_id}",
            tenant_key=tenant_key,
            open_id=open_id,
            flow_id=flow_id,
        )
        envelope = EventEnvelope(
            schema_version="2.0",
            event_id="device-" + prompt_key(flow_id)[:32],
            event_type=DEVICE_AUTHORIZATION,
            create_time=str(int(now * 1000)),
            tenant_key=tenant_key,
            event=poll.model_dump(),
        )
        return DeviceStart(flow_id, started.verification_uri_complete, started.expires_in, envelope)

    async def poll(self, poll: DevicePoll) -> DeviceOutcome:
        """Poll at the interval Feishu asked for until the user decides, the code expires, or a newer
        request of the same user replaced this one. Raises on a transient failure (the inbox retries)."""
        key = prompt_key(poll.flow_id)
        while True:
            record = await self._read(poll.tenant_key, poll.open_id)
            if record is None or record.flow_id != poll.flow_id:
                return DeviceOutcome("replaced", key)
            if self._clock() >= record.expires_at:
                await self._forget(record)
                return DeviceOutcome("expired", key)
            request = OAuthTokenRequest(
                grant_type=DEVICE_GRANT,
                client_id=self._client.app_id,
                client_secret=self._client.app_secret,
                device_code=record.device_code,
            )
            try:
                response = await self._client.oauth_token(request)
            except FeishuApiError as error:
                answer = error.oauth_error
                if answer == "authorization_pending":
                    await self._sleep(record.interval)
                    continue
                if answer == "slow_down":
                    slower = record.model_copy(
                        update={"interval": min(_MAX_INTERVAL, record.interval + _SLOW_DOWN_STEP)}
                    )
                    await self._keep(slower)
                    await self._sleep(slower.interval)
                    continue
                if answer == "access_denied":
                    await self._forget(record)
                    log.info("user declined the device authorization")
                    return DeviceOutcome("denied", key)
                if answer in ("expired_token", "invalid_grant"):
                    await self._forget(record)
                    return DeviceOutcome("expired", key)
                raise
            user = await self._client.user_info(response.access_token)
            await self._forget(record)
            if user.open_id != record.open_id:
                # In a group anyone may open the link: a token of someone else is kept for nobody.
                log.warning("device authorization approved by a different account; discarded")
                return DeviceOutcome("wrong_user", key, signed_in_as=user.name or user.en_name)
            now = self._clock()
            token = token_from_response(
                response,
                tenant_key=record.tenant_key,
                open_id=user.open_id,
                name=user.name,
                authorized_at=now,
                now=now,
            )
            await self._tokens.replace(token)
            log.info("user authorized", scopes=" ".join(token.scopes), via="device")
            return DeviceOutcome(
                "authorized", key, signed_in_as=user.name, resume=self._resume(record, user.name)
            )

    def _resume(self, record: DeviceState, name: str) -> EventEnvelope:
        return granted_event(
            "authz-" + prompt_key(record.flow_id)[:32],
            tenant_key=record.tenant_key,
            open_id=record.open_id,
            name=name,
            locale=record.locale,
            prompt_key=prompt_key(record.flow_id),
            pending=record.pending,
            now=self._clock(),
        )

    # --- the per-user record ---------------------------------------------------------------------------

    async def _keep(self, record: DeviceState) -> None:
        name = _user_key(record.tenant_key, record.open_id)
        sealed = self._sealer.seal(record.model_dump_json().encode(), context=f"{DEVICE_NAMESPACE}/{name}")
        await self._store.put(DEVICE_NAMESPACE, name, sealed, expires_at=record.expires_at + 60)

    async def _read(self, tenant_key: str, open_id: str) -> DeviceState | None:
        name = _user_key(tenant_key, open_id)
        stored = await self._store.get(DEVICE_NAMESPACE, name, now=self._clock())
        if stored is None:
            return None
        try:
            plain = self._sealer.open(stored.value, context=f"{DEVICE_NAMESPACE}/{name}")
            return DeviceState.model_validate_json(plain)
        except (SealError, ValidationError):
            return None

    async def _forget(self, record: DeviceState) -> None:
        name = _user_key(record.tenant_key, record.open_id)
        current = await self._read(record.tenant_key, record.open_id)
        if current is not None and current.flow_id == record.flow_id:  # never a newer request's
            await self._store.delete(DEVICE_NAMESPACE, name)


def _user_key(tenant_key: str, open_id: str) -> str:
    return hashlib.sha256(f"{tenant_key}/{open_id}".encode()).hexdigest()
