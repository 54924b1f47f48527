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
from handlers.card_actions import CancelInvite, ConfirmInvite, RetryFailed
from handlers.cards import Card
from handlers.context import CommandContext, IncomingMessage, Services
from handlers.i18n import Text
from handlers.invite import carry_out, offer_retry, send_invitations
from handlers.invite_cards import cancelled_card, result_card
from handlers.invite_reasons import NEEDS_AUTHORIZATION

log = structlog.get_logger("handlers.clicks")

EXPIRED = Text("这个按钮已失效或已用过。", "This button has expired or was already used.")
WORKING = Text("收到，正在重试未成功的邀请…", "Got it: retrying the failed invitations…")
INVITING = Text("收到，正在邀请…", "Got it: inviting…")
CANCELLING = Text("已取消。", "Cancelled.")
NOT_YOURS = Text("只有发起邀请的人可以确认或取消。", "Only the person who asked can confirm or cancel.")


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
    return ClickVerdict(True, toast("info", INVITING if isinstance(action, ConfirmInvite) else CANCELLING))


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
    else:
        await _retry_failed(context, event, action)


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
    services: Services, envelope: EventEnvelope, event: CardActionEvent, action: RetryFailed | ConfirmInvite
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
