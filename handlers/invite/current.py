"""The meetings the sender is in right now, asked of Feishu with their own token (feishu-protocol §14).

`GET /vc/v1/bots/user_active_meeting` answers the question an /invite without a number asks. It is
released to tenants gradually, so a refusal means "not available here", not an error: the command falls
back to the remembered meeting or asks, and the refusal is remembered per tenant for a while so that the
next commands do not ask Feishu again. A user who authorized before the bot asked for the scope is not
asked Feishu at all (their token would be refused); they are offered, once, to authorize again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import structlog

from bot.feishu.endpoints import ACTIVE_MEETING_SCOPE, ACTIVE_MEETING_SCOPES
from bot.feishu.errors import FeishuApiError
from bot.feishu.models import ActiveMeeting
from bot.oauth.authority import AuthorizationRequired
from handlers.context import Services

log = structlog.get_logger("handlers.invite.current")

__all__ = ["ACTIVE_MEETING_SCOPE", "Current", "availability", "current_meetings", "first_offer"]


# What Feishu last said about the API, per tenant: a refusal is kept an hour (a gradual release does
# not change by the minute), an answer a week (for `invite-bot check`; refreshed at most hourly).
AVAILABILITY_NAMESPACE = "active_meeting"
REFUSAL_TTL_SECONDS = 3600.0
AVAILABLE_TTL_SECONDS = 7 * 86400.0
AVAILABLE_REWRITE_SECONDS = 3600.0
# Users already offered to authorize again for the scope: once, for as long as a token can live.
OFFERED_NAMESPACE = "active_meeting_offered"
OFFERED_TTL_SECONDS = 365 * 86400.0


@dataclass(frozen=True)
class Current:
    """What Feishu said the sender is in now. Empty when it could not say (refused, lacking scope)."""

    meetings: tuple[ActiveMeeting, ...] = ()
    # The sender's authorization predates the scope: the number is needed until they authorize again.
    lacks_scope: bool = False


# The stored record: {"state": "available"|"refused", "at": unix seconds, "code": Feishu's code}.
Availability = dict[str, object]


async def current_meetings(services: Services, tenant_key: str, open_id: str) -> Current:
    """Ask Feishu which meetings `open_id` is in now, unless it is known that it will not say."""
    token = await services.authority.current(tenant_key, open_id)
    if token is None:
        return Current()
    if token.scopes and not ACTIVE_MEETING_SCOPES.intersection(token.scopes):
        return Current(lacks_scope=True)
    known = await availability(services, tenant_key)
    if known is not None and known.get("state") == "refused":
        return Current()
    try:
        meetings = await services.authority.call_as(
            tenant_key, open_id, lambda access: services.client.user_active_meetings(user_access_token=access)
        )
    except AuthorizationRequired as required:
        if not required.missing_scopes:
            raise  # the authorization itself is gone: the command asks for it
        if not token.scopes:
            # Feishu did not list the granted scopes: its refusal is the only sign this user lacks it.
            return Current(lacks_scope=True)
        # Granted, yet refused: the app or the tenant does not have the API for user identities.
        await _remember_refusal(services, tenant_key, 99991679)
        return Current()
    except FeishuApiError as error:
        if error.transient:
            log.info("current meeting unknown just now", code=error.code, log_id=error.log_id)
            return Current()
        await _remember_refusal(services, tenant_key, error.code)
        return Current()
    await _remember_answer(services, tenant_key, known)
    return Current(meetings=tuple(meetings))


async def availability(services: Services, tenant_key: str) -> Availability | None:
    stored = await services.store.get(AVAILABILITY_NAMESPACE, tenant_key, now=services.clock())
    if stored is None:
        return None
    try:
        value = json.loads(stored.value)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def first_offer(services: Services, tenant_key: str, open_id: str) -> bool:
    """True once per user: whether to offer them the re-authorization that adds the scope."""
    now = services.clock()
    return await services.store.compare_and_set(
        OFFERED_NAMESPACE,
        f"{tenant_key}/{open_id}",
        b"1",
        expected_version=None,
        expires_at=now + OFFERED_TTL_SECONDS,
        now=now,
    )


async def _remember_refusal(services: Services, tenant_key: str, code: int) -> None:
    log.info("current meeting not available for this tenant; remembered", code=code)
    now = services.clock()
    record = json.dumps({"state": "refused", "at": now, "code": code}).encode()
    await services.store.put(AVAILABILITY_NAMESPACE, tenant_key, record, expires_at=now + REFUSAL_TTL_SECONDS)


async def _remember_answer(services: Services, tenant_key: str, known: Availability | None) -> None:
    now = services.clock()
    at = known.get("at") if known is not None else None
    if isinstance(at, (int, float)) and now - at < AVAILABLE_REWRITE_SECONDS:
        return
    record = json.dumps({"state": "available", "at": now, "code": 0}).encode()
    await services.store.put(
        AVAILABILITY_NAMESPACE, tenant_key, record, expires_at=now + AVAILABLE_TTL_SECONDS
    )
