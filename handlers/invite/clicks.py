"""Clicks on the bot's cards: a quick verdict for Feishu's 3-second answer, then the work itself.

Every action runs as the person who clicked, with their own token; someone who has not authorized is
asked privately, and their click runs once they have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from bot.feishu.errors import FeishuApiError
from bot.feishu.events import CardActionEvent, EventEnvelope, MalformedEvent, is_open_id, parse_card_action
from bot.feishu.models import (
    EphemeralSendRequest,
    Meeting,
    MessagePatchRequest,
    MessageReplyRequest,
    card_content,
)
from bot.oauth.authority import AuthorizationRequired
from handlers.account import ask_to_authorize
from handlers.cards import Card, card, ephemeral_notice, markdown
from handlers.context import CommandContext, IncomingMessage, Services, reply_uuid
from handlers.i18n import Text
from handlers.invite.buttons import (
    CancelInvite,
    CardAction,
    ConfirmInvite,
    GiveMeeting,
    InviteMore,
    RetryFailed,
)
from handlers.invite.cards import (
    MEETING_FIELD,
    PEOPLE_FIELD,
    Outcome,
    cancelled_card,
    result_card,
    too_many_card,
)
from handlers.invite.command import (
    InviteLimits,
    already_invited,
    confirm_first,
    invite_once,
    offer_followups,
    proceed,
)
from handlers.invite.grammar import InviteRequest, meeting_number
from handlers.invite.reasons import NEEDS_AUTHORIZATION

log = structlog.get_logger("handlers.invite.clicks")

MAX_PICKED = 200

EXPIRED = Text("这个按钮已失效或已用过。", "This button has expired or was already used.")
WORKING = Text("收到，正在重试未成功的邀请…", "Got it: retrying the failed invitations…")
# Confirm and Cancel answer alike: the card itself shows which of two quick clicks won.
ON_IT = Text("收到，处理中…", "Got it: working on it…")
NOT_YOURS = Text("只有发起邀请的人可以操作。", "Only the person who asked can do this.")
PICK_SOMEONE = Text("请先选择要邀请的人。", "Pick the people to invite first.")
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
# that every toast a clicker reads is worded here.
NOT_STORED = Text("没有成功，请再试一次。", "That did not go through; please try again.")
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
    if isinstance(action, InviteMore):
        ok = bool(_picked_people(event))
        return ClickVerdict(ok, toast("info", ON_IT) if ok else toast("error", PICK_SOMEONE))
    if action.sender_open_id != event.operator.open_id:
        return ClickVerdict(False, toast("warning", NOT_YOURS))
    if isinstance(action, GiveMeeting) and _given_meeting(event) is None:
        return ClickVerdict(False, toast("error", NO_NUMBER))
    return ClickVerdict(True, toast("info", ON_IT))


def _picked_people(event: CardActionEvent) -> list[str]:
    """The open_ids chosen in the result card's person picker (form field `people`)."""
    picked = (event.action.form_value or {}).get(PEOPLE_FIELD)
    if not isinstance(picked, list):
        return []
    people = [item for item in picked if is_open_id(item)]
    return list(dict.fromkeys(people))[:MAX_PICKED]


def _given_meeting(event: CardActionEvent) -> str | None:
    field = (event.action.form_value or {}).get(MEETING_FIELD)
    return meeting_number(field) if isinstance(field, str) else None


async def on_click(services: Services, envelope: EventEnvelope) -> None:
    """Carry out a click, once. The action is claimed for this click's event, so a retry of the event
    (after a transient failure) carries on where the last attempt stopped, and any other click on the
    same button does nothing. Invitations go through `invite_once`: a retry never rings anyone twice."""
    event = parse_card_action(envelope)
    action_id = _action_id(event)
    clicker = event.operator.open_id

    def may_press(action: CardAction) -> bool:
        if isinstance(action, ConfirmInvite | CancelInvite | GiveMeeting):
            return action.sender_open_id == clicker  # only the person who asked
        return True

    action = await services.actions.claim(action_id, envelope.event_id, may_press)
    if action is None:
        # The second of a double click, an expired button, or a sender-only button pressed by someone
        # else (looked at, never claimed: the sender's own click still finds it).
        log.info("click on a used, expired or someone else's button; ignored")
        return
    context = _context_of(services, envelope, event, action)
    try:
        if isinstance(action, CancelInvite):
            await _cancelled(context, event, action)
        else:
            if await services.authority.current(action.tenant_key, clicker) is None:
                raise AuthorizationRequired("not authorized")
            await _act(context, event, action)
    except AuthorizationRequired as required:
        # Nothing was sent for this click: let go of the button (first expiry kept) for after authorizing.
        await services.actions.release(action_id, envelope.event_id)
        await ask_to_authorize(context, missing_scopes=required.missing_scopes)
        return
    await services.actions.void(action_id)  # done: its card now carries new buttons


async def _act(context: CommandContext, event: CardActionEvent, action: CardAction) -> None:
    if isinstance(action, ConfirmInvite):
        await context.services.actions.void(action.sibling)
        await _confirmed(context, event, action)
    elif isinstance(action, GiveMeeting):
        await _meeting_given(context, event, action)
    elif isinstance(action, InviteMore):
        await _invite_more(context, event, action)
    elif isinstance(action, RetryFailed):
        await _retry_failed(context, event, action)


async def on_click_dead(services: Services, envelope: EventEnvelope, reason: str) -> None:
    """A click whose work kept failing until the inbox gave up: tell the clicker, and give the button
    back if nothing was sent (if invitations went out, pressing it again could ring people twice)."""
    try:
        event = parse_card_action(envelope)
    except MalformedEvent:
        return
    action_id = _action_id(event)
    # Still claimed by this click, so it reads back: what it was for, and in which kind of chat.
    action = await services.actions.claim(action_id, envelope.event_id)
    context = _context_of(services, envelope, event, action)
    sent = await already_invited(context)
    if sent:
        await services.actions.void(action_id)
    else:
        await services.actions.release(action_id, envelope.event_id)
    log.warning("a click could not be carried out", reason=reason[:200], invitations_sent=sent)
    note = CLICK_SENT_NOT_SHOWN if sent else CLICK_FAILED
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


async def _cancelled(context: CommandContext, event: CardActionEvent, action: CancelInvite) -> None:
    await context.services.actions.void(action.sibling)
    if action.meeting is None:
        await _update_card(context.services, event, cancelled_card(action.count))
        return
    # From "Invite more": the result card comes back as it was, with fresh buttons.
    rows = [stored.restore() for stored in action.prior]
    await _show_result(context, event, action.meeting, rows, _limits(action))


async def _meeting_given(context: CommandContext, event: CardActionEvent, action: GiveMeeting) -> None:
    request = InviteRequest(
        meeting_no=_given_meeting(event),
        open_ids=tuple(action.open_ids),
        emails=tuple(action.emails),
        everyone=action.everyone,
    )

    async def respond(card: Card) -> None:
        await _update_card(context.services, event, card)

    await proceed(context, request, _limits(action), respond)


async def _confirmed(context: CommandContext, event: CardActionEvent, action: ConfirmInvite) -> None:
    unknown = [stored.restore() for stored in action.unknown]
    added = await invite_once(context, action.meeting, action.people, unknown)
    rows = _merged([stored.restore() for stored in action.prior], added)
    await _show_result(context, event, action.meeting, rows, _limits(action))
    if any(outcome.reason is NEEDS_AUTHORIZATION for outcome in added):
        await ask_to_authorize(context)


def _limits(action: CardAction) -> InviteLimits:
    """The limits the command had when it offered this button: a click keeps to them."""
    return InviteLimits(action.ceiling, action.confirm_above)


def _merged(rows: list[Outcome], added: list[Outcome]) -> list[Outcome]:
    """The card's rows with the new outcomes: a person already listed gets their new row in place."""
    by_id = {outcome.open_id: outcome for outcome in added if outcome.open_id}
    known = {row.open_id for row in rows}
    merged = [by_id.get(row.open_id, row) if row.open_id else row for row in rows]
    return merged + [outcome for outcome in added if not outcome.open_id or outcome.open_id not in known]


async def _update_card(services: Services, event: CardActionEvent, card: Card) -> None:
    """Show the outcome in the clicked card; if Feishu refuses the update, as a reply to it instead."""
    message_id = event.context.open_message_id
    try:
        await services.client.patch_message(message_id, MessagePatchRequest(content=card_content(card)))
    except FeishuApiError as error:
        if error.transient:
            raise  # a blip: the inbox retries the click, which sends nothing twice
        log.warning("card update refused; replying instead", code=error.code, log_id=error.log_id)
        await services.client.reply_message(
            message_id,
            MessageReplyRequest(
                content=card_content(card),
                msg_type="interactive",
                uuid=reply_uuid(message_id, event.token[:20]),
            ),
            chat_id=event.context.open_chat_id,
        )


async def _retry_failed(context: CommandContext, event: CardActionEvent, action: RetryFailed) -> None:
    retried = await invite_once(context, action.meeting, action.failed_open_ids(), [])
    rows = _merged([stored.restore() for stored in action.outcomes], retried)
    invited = sum(1 for outcome in retried if outcome.invited)
    log.info(
        "retried failed invitations", retried=len(retried), invited=invited, clicker=event.operator.open_id
    )
    await _show_result(context, event, action.meeting, rows, _limits(action))


async def _invite_more(context: CommandContext, event: CardActionEvent, action: InviteMore) -> None:
    clicker = context.message.sender_open_id
    rows = [stored.restore() for stored in action.outcomes]
    already = {row.open_id for row in rows if row.invited}
    skip = {clicker, context.services.bot.open_id, *already}
    people = [open_id for open_id in _picked_people(event) if open_id not in skip]
    limits = _limits(action)
    if len(people) > limits.ceiling:
        await _update_card(context.services, event, too_many_card(len(people), limits.ceiling))
        return
    if len(people) > limits.confirm_above and not await already_invited(context):
        # As many as a typed /invite would have to confirm: the clicker confirms here too.
        confirm = await confirm_first(context, action.meeting, people, [], limits, prior=rows)
        await _update_card(context.services, event, confirm)
        return
    added = await invite_once(context, action.meeting, people, [])
    log.info("invited more from the card", added=len(added), clicker=clicker)
    await _show_result(context, event, action.meeting, _merged(rows, added), limits)


async def _show_result(
    context: CommandContext,
    event: CardActionEvent,
    meeting: Meeting,
    outcomes: list[Outcome],
    limits: InviteLimits,
) -> None:
    retry, more = await offer_followups(context, meeting, outcomes, limits)
    card = result_card(meeting, outcomes, retry_action=retry, more_action=more)
    await _update_card(context.services, event, card)


def _context_of(
    services: Services, envelope: EventEnvelope, event: CardActionEvent, action: CardAction | None
) -> CommandContext:
    """The click as a command by the clicker, in the card's chat (for prompts and invitations)."""
    message = IncomingMessage(
        message_id=event.context.open_message_id,
        chat_id=action.chat_id if action is not None else event.context.open_chat_id,
        chat_type=action.chat_type if action is not None else "group",
        thread_id=None,
        sender_open_id=event.operator.open_id,
        tenant_key=action.tenant_key if action is not None else envelope.tenant_key,
        text="",
        mentions=(),
        mentioned_bot=False,
    )
    return CommandContext(services=services, message=message, envelope=envelope, word="", args="")
