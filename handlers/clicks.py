"""Clicks on the bot's cards: a quick verdict for Feishu's 3-second answer, then the work itself.

Every action runs as the person who clicked, with their own token; someone who has not authorized is
asked privately, and their click runs once they have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from bot.feishu.events import CardActionEvent, EventEnvelope, MalformedEvent, parse_card_action
from bot.feishu.models import MessagePatchRequest, card_content
from handlers.account import ask_to_authorize
from handlers.card_actions import CancelInvite, ConfirmInvite, GiveMeeting, RetryFailed
from handlers.cards import Card
from handlers.context import CommandContext, IncomingMessage, Services
from handlers.i18n import Text
from handlers.invite import InviteLimits, carry_out, offer_retry, proceed, send_invitations
from handlers.invite_cards import MEETING_FIELD, cancelled_card, result_card
from handlers.invite_grammar import InviteRequest, meeting_number
from handlers.invite_reasons import NEEDS_AUTHORIZATION

log = structlog.get_logger("handlers.clicks")

EXPIRED = Text("这个按钮已失效或已用过。", "This button has expired or was already used.")
WORKING = Text("收到，正在重试未成功的邀请…", "Got it: retrying the failed invitations…")
INVITING = Text("收到，正在邀请…", "Got it: inviting…")
CANCELLING = Text("已取消。", "Cancelled.")
NOT_YOURS = Text("只有发起邀请的人可以操作。", "Only the person who asked can do this.")
NO_NUMBER = Text("请填写 9 位会议号或会议链接。", "Fill in a 9-digit meeting number or a meeting link.")


@dataclass(frozen=True)
class ClickVerdict:
    """Whether to act on a click, and the toast Feishu shows the clicker at once."""

    act: bool
    toast: dict[str, Any]


def toast(kind: str, text: Text) -> dict[str, Any]:
    return {"type": kind, "content": text.en_us, "i18n": {"zh_cn": text.zh_cn, "en_us": text.en_us}}


def _action_id(event: CardActionEvent) -> str:
    value = event.action.value
    action_id = value.get("action_id") if isinstance(value, dict) else None
    return action_id if isinstance(action_id, str) else ""


async def preflight(services: Services, envelope: EventEnvelope) -> ClickVerdict:
    """Answer within Feishu's deadline: only a store read, no Open API call."""
    try:
        event = parse_card_action(envelope)
    except MalformedEvent:
        return ClickVerdict(False, toast("error", EXPIRED))
    action = await services.actions.peek(_action_id(event))
    if action is None:
        return ClickVerdict(False, toast("error", EXPIRED))
    if isinstance(action, RetryFailed):
        return ClickVerdict(True, toast("info", WORKING))
    if action.sender_open_id != event.operator.open_id:
        return ClickVerdict(False, toast("warning", NOT_YOURS))
    if isinstance(action, GiveMeeting) and _given_meeting(event) is None:
        return ClickVerdict(False, toast("error", NO_NUMBER))
    return ClickVerdict(True, toast("info", CANCELLING if isinstance(action, CancelInvite) else INVITING))


def _given_meeting(event: CardActionEvent) -> str | None:
    field = (event.action.form_value or {}).get(MEETING_FIELD)
    return meeting_number(field) if isinstance(field, str) else None


async def on_click(services: Services, envelope: EventEnvelope) -> None:
    event = parse_card_action(envelope)
    action_id = _action_id(event)
    action = await services.actions.take(action_id)
    if action is None:
        log.info("click on a used or expired button; ignored")  # the second of a double click
        return
    clicker = event.operator.open_id
    if not isinstance(action, RetryFailed) and action.sender_open_id != clicker:
        await services.actions.put_back(action_id, action)  # someone else's button: leave it be
        log.info("confirmation pressed by someone other than its sender; ignored")
        return
    if isinstance(action, CancelInvite):
        await services.actions.void(action.sibling)
        await _update_card(services, event, cancelled_card(action.count))
        return
    context = _context_of(services, envelope, event, action)
    if await services.authority.current(action.tenant_key, clicker) is None:
        await services.actions.put_back(action_id, action)  # for the click to run after authorizing
        await ask_to_authorize(context)
        return
    if isinstance(action, ConfirmInvite):
        await services.actions.void(action.sibling)
        await _confirmed(context, event, action)
    elif isinstance(action, GiveMeeting):
        await _meeting_given(context, event, action)
    else:
        await _retry_failed(context, event, action)


async def _meeting_given(context: CommandContext, event: CardActionEvent, action: GiveMeeting) -> None:
    request = InviteRequest(
        meeting_no=_given_meeting(event),
        open_ids=tuple(action.open_ids),
        emails=tuple(action.emails),
        everyone=action.everyone,
    )

    async def respond(card: Card) -> None:
        await _update_card(context.services, event, card)

    await proceed(context, request, InviteLimits(action.ceiling, action.confirm_above), respond)


async def _confirmed(context: CommandContext, event: CardActionEvent, action: ConfirmInvite) -> None:
    unknown = [stored.restore() for stored in action.unknown]
    outcomes = await carry_out(context, action.meeting, action.people, unknown)
    retry = await offer_retry(context, action.meeting, outcomes)
    await _update_card(context.services, event, result_card(action.meeting, outcomes, retry_action=retry))
    if any(outcome.reason is NEEDS_AUTHORIZATION for outcome in outcomes):
        await ask_to_authorize(context)


async def _update_card(services: Services, event: CardActionEvent, card: Card) -> None:
    await services.client.patch_message(
        event.context.open_message_id, MessagePatchRequest(content=card_content(card))
    )


async def _retry_failed(context: CommandContext, event: CardActionEvent, action: RetryFailed) -> None:
    retried = {
        outcome.open_id: outcome
        for outcome in await send_invitations(context, action.meeting, action.failed_open_ids())
    }
    outcomes = [
        retried.get(stored.open_id, stored.restore()) if stored.open_id else stored.restore()
        for stored in action.outcomes
    ]
    invited = sum(1 for outcome in retried.values() if outcome.invited)
    log.info(
        "retried failed invitations", retried=len(retried), invited=invited, clicker=event.operator.open_id
    )
    next_retry = await offer_retry(context, action.meeting, outcomes)
    await _update_card(
        context.services, event, result_card(action.meeting, outcomes, retry_action=next_retry)
    )


def _context_of(
    services: Services,
    envelope: EventEnvelope,
    event: CardActionEvent,
    action: RetryFailed | ConfirmInvite | GiveMeeting,
) -> CommandContext:
    """The click as a command by the clicker, in the card's chat (for prompts and invitations)."""
    message = IncomingMessage(
        message_id=event.context.open_message_id,
        chat_id=action.chat_id,
        chat_type=action.chat_type,
        thread_id=None,
        sender_open_id=event.operator.open_id,
        tenant_key=action.tenant_key,
        text="",
        mentions=(),
        mentioned_bot=False,
    )
    return CommandContext(services=services, message=message, envelope=envelope, word="", args="")
