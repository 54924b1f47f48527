"""Clicks on the bot's cards: a quick verdict for Feishu's 3-second answer, then the work itself.

The click path knows no button by name. A click carries only an action id; the button kept under it
says its kind, its class says who may press it and which toast to answer, and the kind's `ButtonKind`
(declared by its feature) does the work. Every press that acts runs as the person who clicked, with
their own token; someone who has not authorized is asked privately, and their click runs once they have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from bot.feishu.errors import FeishuApiError
from bot.feishu.events import CardActionEvent, EventEnvelope, MalformedEvent, parse_card_action
from bot.feishu.models import EphemeralSendRequest, MessagePatchRequest, MessageReplyRequest, card_content
from bot.oauth.authority import AuthorizationRequired
from handlers.account import ask_to_authorize
from handlers.buttons import NOT_YOURS, ON_IT, Button
from handlers.cards import Card, card, ephemeral_notice, markdown
from handlers.context import CommandContext, IncomingMessage, Services, reply_uuid
from handlers.i18n import Text

log = structlog.get_logger("handlers.clicks")

EXPIRED = Text("这个按钮已失效或已用过。", "This button has expired or was already used.")
NOT_DONE = Text("没有完成", "Not done")
CLICK_FAILED = Text(
    "刚才的点击没有完成（暂时连不上飞书），什么都没有发出。按钮可以再用，请稍后再点一次。",
    "Your click did not go through (Feishu could not be reached) and nothing was sent. "
    "The button works again: press it once more in a little while.",
)
CLICK_SENT_NOT_SHOWN = Text(
    "邀请已经发出，但我没能更新卡片。请在会议里查看谁已加入。",
    "The invitations went out, but I could not update the card: check the meeting to see who joined.",
)
# ON_IT and NOT_STORED are also what the web intake answers by itself (bot/app.py hands them over), so
# that every toast a clicker reads is worded in the handlers.
NOT_STORED = Text("没有成功，请再试一次。", "That did not go through; please try again.")
__all__ = ["NOT_STORED", "ON_IT", "ClickVerdict", "on_click", "on_click_dead", "preflight", "toast"]


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
    button = await services.actions.peek(_action_id(event))
    if button is None:
        return ClickVerdict(False, toast("error", EXPIRED))
    if not button.pressable_by(event.operator.open_id):
        return ClickVerdict(False, toast("warning", NOT_YOURS))
    problem = button.problem(event)
    if problem is not None:
        return ClickVerdict(False, toast("error", problem))
    return ClickVerdict(True, toast("info", button.accepted))


async def on_click(services: Services, envelope: EventEnvelope) -> None:
    """Carry out a click, once. The button is claimed for this click's event, so a retry of the event
    (after a transient failure) carries on where the last attempt stopped, and any other click on the
    same button does nothing."""
    event = parse_card_action(envelope)
    action_id = _action_id(event)
    clicker = event.operator.open_id
    button = await services.actions.claim(action_id, envelope.event_id, clicker)
    if button is None:
        # The second of a double click, an expired button, or a sender-only button pressed by someone
        # else (looked at, never claimed: the sender's own click still finds it).
        log.info("click on a used, expired or someone else's button; ignored")
        return
    kind = services.actions.table.kind_of(button)
    context = _context_of(services, envelope, event, button)
    try:
        if button.acts_as_clicker and await services.authority.current(button.tenant_key, clicker) is None:
            raise AuthorizationRequired("not authorized")
        await kind.handler(context, event, button)
    except AuthorizationRequired as required:
        # Nothing was sent for this click: let go of the button (first expiry kept) for after authorizing.
        await services.actions.release(action_id, envelope.event_id)
        await ask_to_authorize(context, missing_scopes=required.missing_scopes)
        return
    await services.actions.void(action_id)  # done: its card now carries new buttons


async def on_click_dead(services: Services, envelope: EventEnvelope, reason: str) -> None:
    """A click whose work kept failing until the inbox gave up: tell the clicker, and give the button
    back if nothing was done (if invitations went out, pressing it again could ring people twice)."""
    try:
        event = parse_card_action(envelope)
    except MalformedEvent:
        return
    action_id = _action_id(event)
    # Still claimed by this click, so it reads back: what it was for, and in which kind of chat.
    button = await services.actions.claim(action_id, envelope.event_id)
    context = _context_of(services, envelope, event, button)
    # A button whose state is gone (expired) has no kind to ask: ask every kind about this run.
    kinds = [services.actions.table.kind_of(button)] if button else services.actions.table.all()
    acted = any([await kind.has_acted(context) for kind in kinds])
    if acted:
        await services.actions.void(action_id)
    else:
        await services.actions.release(action_id, envelope.event_id)
    log.warning("a click could not be carried out", reason=reason[:200], invitations_sent=acted)
    note = CLICK_SENT_NOT_SHOWN if acted else CLICK_FAILED
    try:
        await _tell_clicker(context, event, note)
    except FeishuApiError as error:
        log.warning(
            "could not tell the clicker that their click failed", code=error.code, log_id=error.log_id
        )


async def _tell_clicker(context: CommandContext, event: CardActionEvent, note: Text) -> None:
    services, message = context.services, context.message
    if message.chat_type == "group":
        await services.client.send_ephemeral(
            EphemeralSendRequest(
                chat_id=message.chat_id,
                open_id=event.operator.open_id,
                card=ephemeral_notice(NOT_DONE, note, template="red"),
            )
        )
    else:
        failed = card(NOT_DONE, [markdown(note)], template="red")
        await context.reply_card(failed, purpose=f"click-failed:{context.envelope.event_id}")


async def update_card(services: Services, event: CardActionEvent, card: Card) -> str:
    """Show a press's outcome in the clicked card; if Feishu refuses the update, as a reply to it.
    Returns the message that shows it."""
    message_id = event.context.open_message_id
    try:
        await services.client.patch_message(message_id, MessagePatchRequest(content=card_content(card)))
        return message_id
    except FeishuApiError as error:
        if error.transient:
            raise  # a blip: the inbox retries the click, which sends nothing twice
        log.warning("card update refused; replying instead", code=error.code, log_id=error.log_id)
        sent = await services.client.reply_message(
            message_id,
            MessageReplyRequest(
                content=card_content(card),
                msg_type="interactive",
                uuid=reply_uuid(message_id, event.token[:20]),
            ),
            chat_id=event.context.open_chat_id,
        )
        return sent.message_id


def _context_of(
    services: Services, envelope: EventEnvelope, event: CardActionEvent, button: Button | None
) -> CommandContext:
    """The click as a command by the clicker, in the card's chat (for prompts and invitations)."""
    message = IncomingMessage(
        message_id=event.context.open_message_id,
        chat_id=button.chat_id if button is not None else event.context.open_chat_id,
        chat_type=button.chat_type if button is not None else "group",
        thread_id=None,
        sender_open_id=event.operator.open_id,
        tenant_key=button.tenant_key if button is not None else envelope.tenant_key,
        text="",
        mentions=(),
        mentioned_bot=False,
    )
    return CommandContext(services=services, message=message, envelope=envelope, word="", args="")
