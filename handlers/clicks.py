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
from bot.feishu.models import Meeting, MessagePatchRequest, MessageReplyRequest, card_content
from bot.oauth.authority import AuthorizationRequired
from handlers.account import ask_to_authorize
from handlers.card_actions import CancelInvite, ConfirmInvite, GiveMeeting, InviteMore, RetryFailed
from handlers.cards import Card
from handlers.context import CommandContext, IncomingMessage, Services, reply_uuid
from handlers.i18n import Text
from handlers.invite import InviteLimits, carry_out, offer_followups, proceed, send_invitations
from handlers.invite_cards import MEETING_FIELD, PEOPLE_FIELD, Outcome, cancelled_card, result_card
from handlers.invite_grammar import InviteRequest, meeting_number
from handlers.invite_reasons import NEEDS_AUTHORIZATION

log = structlog.get_logger("handlers.clicks")

MAX_PICKED = 200

EXPIRED = Text("这个按钮已失效或已用过。", "This button has expired or was already used.")
WORKING = Text("收到，正在重试未成功的邀请…", "Got it: retrying the failed invitations…")
# Confirm and Cancel answer alike: the card itself shows which of two quick clicks won.
ON_IT = Text("收到，处理中…", "Got it: working on it…")
NOT_YOURS = Text("只有发起邀请的人可以操作。", "Only the person who asked can do this.")
PICK_SOMEONE = Text("请先选择要邀请的人。", "Pick the people to invite first.")
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
    event = parse_card_action(envelope)
    action_id = _action_id(event)
    clicker = event.operator.open_id
    peeked = await services.actions.peek(action_id)
    if isinstance(peeked, ConfirmInvite | CancelInvite | GiveMeeting) and peeked.sender_open_id != clicker:
        log.info("a button only its sender may press was pressed by someone else; ignored")
        return  # looked at, never taken: the sender's own click still finds it
    taken = await services.actions.take(action_id)
    if taken is None:
        log.info("click on a used or expired button; ignored")  # the second of a double click
        return
    action, expires_at = taken
    if isinstance(action, CancelInvite):
        await services.actions.void(action.sibling)
        await _update_card(services, event, cancelled_card(action.count))
        return
    context = _context_of(services, envelope, event, action)
    try:
        if await services.authority.current(action.tenant_key, clicker) is None:
            raise AuthorizationRequired("not authorized")
        if isinstance(action, ConfirmInvite):
            await services.actions.void(action.sibling)
            await _confirmed(context, event, action)
        elif isinstance(action, GiveMeeting):
            await _meeting_given(context, event, action)
        elif isinstance(action, InviteMore):
            await _invite_more(context, event, action)
        else:
            await _retry_failed(context, event, action)
    except AuthorizationRequired as required:
        # Nothing was sent for this click: keep its button (with its first expiry) for after authorizing.
        await services.actions.put_back(action_id, action, expires_at)
        await ask_to_authorize(context, missing_scopes=required.missing_scopes)


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
    await _show_result(context, event, action.meeting, outcomes, action.ceiling)
    if any(outcome.reason is NEEDS_AUTHORIZATION for outcome in outcomes):
        await ask_to_authorize(context)


async def _update_card(services: Services, event: CardActionEvent, card: Card) -> None:
    """Show the outcome in the clicked card; if Feishu refuses the update, as a reply to it instead."""
    message_id = event.context.open_message_id
    try:
        await services.client.patch_message(message_id, MessagePatchRequest(content=card_content(card)))
    except FeishuApiError as error:
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
    await _show_result(context, event, action.meeting, outcomes, action.ceiling)


async def _invite_more(context: CommandContext, event: CardActionEvent, action: InviteMore) -> None:
    clicker = context.message.sender_open_id
    rows = [stored.restore() for stored in action.outcomes]
    already = {row.open_id for row in rows if row.invited}
    skip = {clicker, context.services.bot.open_id, *already}
    people = [open_id for open_id in _picked_people(event) if open_id not in skip][: max(0, action.ceiling)]
    added = {outcome.open_id: outcome for outcome in await send_invitations(context, action.meeting, people)}
    known = {row.open_id for row in rows}
    outcomes = [added.get(row.open_id, row) if row.open_id else row for row in rows]
    outcomes += [outcome for open_id, outcome in added.items() if open_id not in known]
    log.info("invited more from the card", added=len(added), clicker=clicker)
    await _show_result(context, event, action.meeting, outcomes, action.ceiling)


async def _show_result(
    context: CommandContext, event: CardActionEvent, meeting: Meeting, outcomes: list[Outcome], ceiling: int
) -> None:
    retry, more = await offer_followups(context, meeting, outcomes, ceiling)
    card = result_card(meeting, outcomes, retry_action=retry, more_action=more)
    await _update_card(context.services, event, card)


def _context_of(
    services: Services,
    envelope: EventEnvelope,
    event: CardActionEvent,
    action: RetryFailed | ConfirmInvite | GiveMeeting | InviteMore,
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
