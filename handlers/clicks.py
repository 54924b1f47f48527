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
from handlers.card_actions import RetryFailed
from handlers.context import CommandContext, IncomingMessage, Services
from handlers.i18n import Text
from handlers.invite import offer_retry, send_invitations
from handlers.invite_cards import result_card

log = structlog.get_logger("handlers.clicks")

EXPIRED = Text("这个按钮已失效或已用过。", "This button has expired or was already used.")
WORKING = Text("收到，正在重试未成功的邀请…", "Got it: retrying the failed invitations…")


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
    if await services.actions.peek(_action_id(event)) is None:
        return ClickVerdict(False, toast("error", EXPIRED))
    return ClickVerdict(True, toast("info", WORKING))


async def on_click(services: Services, envelope: EventEnvelope) -> None:
    event = parse_card_action(envelope)
    action_id = _action_id(event)
    action = await services.actions.take(action_id)
    if action is None:
        log.info("click on a used or expired button; ignored")  # the second of a double click
        return
    clicker = event.operator.open_id
    context = _context_of(services, envelope, event, action)
    if await services.authority.current(action.tenant_key, clicker) is None:
        await services.actions.put_back(action_id, action)  # for the click to run after authorizing
        await ask_to_authorize(context)
        return
    await _retry_failed(context, event, action)


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
    card = result_card(action.meeting, outcomes, retry_action=next_retry)
    await context.services.client.patch_message(
        event.context.open_message_id, MessagePatchRequest(content=card_content(card))
    )


def _context_of(
    services: Services, envelope: EventEnvelope, event: CardActionEvent, action: RetryFailed
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
