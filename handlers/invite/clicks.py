"""What pressing each of the /invite feature's buttons does, and their declaration to the button table.

Each handler gets the press as a command by the clicker (their token, the card's chat) and the button's
own state; invitations go through `invite_once`, so a retried click never rings anyone twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from bot.feishu.events import CardActionEvent
from bot.feishu.models import Meeting
from handlers.account import ask_to_authorize
from handlers.buttons import ButtonKind
from handlers.cards import Card
from handlers.clicks import update_card
from handlers.context import CommandContext
from handlers.invite.buttons import (
    CancelInvite,
    ChooseMeeting,
    ConfirmInvite,
    GiveMeeting,
    InviteMore,
    RemindMissing,
    RetryFailed,
)
from handlers.invite.cards import Outcome, cancelled_card, too_many_card
from handlers.invite.command import (
    InviteLimits,
    already_invited,
    confirm_first,
    invite_once,
    offer_followups,
    proceed,
    show_result,
)
from handlers.invite.grammar import InviteRequest
from handlers.invite.reasons import NEEDS_AUTHORIZATION

log = structlog.get_logger("handlers.invite.clicks")

LimitedButton = (
    RetryFailed | ConfirmInvite | CancelInvite | GiveMeeting | ChooseMeeting | InviteMore | RemindMissing
)


def _limits(action: LimitedButton) -> InviteLimits:
    """The limits the command had when it offered this button: a click keeps to them."""
    return InviteLimits(action.ceiling, action.confirm_above)


async def retry_failed(context: CommandContext, event: CardActionEvent, action: RetryFailed) -> None:
    retried = await invite_once(context, action.meeting, action.failed_open_ids(), [])
    rows = _merged([stored.restore() for stored in action.outcomes], retried)
    invited = sum(1 for outcome in retried if outcome.invited)
    log.info(
        "retried failed invitations", retried=len(retried), invited=invited, clicker=event.operator.open_id
    )
    await _show_result(context, event, action.meeting, rows, _limits(action))


async def remind_missing(context: CommandContext, event: CardActionEvent, action: RemindMissing) -> None:
    """Ring again, as the clicker, only those who were invited and never joined; the card follows anew."""
    skip = {context.message.sender_open_id, context.services.bot.open_id}
    people = [open_id for open_id in action.missing if open_id not in skip]
    reminded = await invite_once(context, action.meeting, people, [])
    log.info("reminded the missing", reminded=len(reminded), clicker=event.operator.open_id)
    rows = _merged([stored.restore() for stored in action.outcomes], reminded)
    await _show_result(context, event, action.meeting, rows, _limits(action))


async def invite_more(context: CommandContext, event: CardActionEvent, action: InviteMore) -> None:
    clicker = context.message.sender_open_id
    rows = [stored.restore() for stored in action.outcomes]
    already = {row.open_id for row in rows if row.invited}
    skip = {clicker, context.services.bot.open_id, *already}
    people = [open_id for open_id in action.picked(event) if open_id not in skip]
    limits = _limits(action)
    if len(people) > limits.ceiling:
        await update_card(context.services, event, too_many_card(len(people), limits.ceiling))
        return
    if len(people) > limits.confirm_above and not await already_invited(context):
        # As many as a typed /invite would have to confirm: the clicker confirms here too.
        confirm = await confirm_first(context, action.meeting, people, [], limits, prior=rows)
        await update_card(context.services, event, confirm)
        return
    added = await invite_once(context, action.meeting, people, [])
    log.info("invited more from the card", added=len(added), clicker=clicker)
    await _show_result(context, event, action.meeting, _merged(rows, added), limits)


async def confirm_invite(context: CommandContext, event: CardActionEvent, action: ConfirmInvite) -> None:
    await context.services.actions.void(action.sibling)
    unknown = [stored.restore() for stored in action.unknown]
    added = await invite_once(context, action.meeting, action.people, unknown)
    rows = _merged([stored.restore() for stored in action.prior], added)
    await _show_result(context, event, action.meeting, rows, _limits(action))
    if any(outcome.reason is NEEDS_AUTHORIZATION for outcome in added):
        await ask_to_authorize(context)


async def cancel_invite(context: CommandContext, event: CardActionEvent, action: CancelInvite) -> None:
    await context.services.actions.void(action.sibling)
    if action.meeting is None:
        await update_card(context.services, event, cancelled_card(action.count))
        return
    # From "Invite more": the result card comes back as it was, with fresh buttons.
    rows = [stored.restore() for stored in action.prior]
    await _show_result(context, event, action.meeting, rows, _limits(action))


async def give_meeting(context: CommandContext, event: CardActionEvent, action: GiveMeeting) -> None:
    request = InviteRequest(
        meeting_no=action.given(event),
        open_ids=tuple(action.open_ids),
        emails=tuple(action.emails),
        everyone=action.everyone,
    )
    await _run_waiting(context, event, request, _limits(action))


async def choose_meeting(context: CommandContext, event: CardActionEvent, action: ChooseMeeting) -> None:
    """The sender picked one of the meetings they are in: the waiting /invite goes there."""
    for sibling in action.siblings:
        await context.services.actions.void(sibling)
    request = InviteRequest(
        meeting_no=action.meeting_no or None,
        meeting_id=action.meeting_id,
        open_ids=tuple(action.open_ids),
        emails=tuple(action.emails),
        everyone=action.everyone,
    )
    await _run_waiting(context, event, request, _limits(action))


async def _run_waiting(
    context: CommandContext, event: CardActionEvent, request: InviteRequest, limits: InviteLimits
) -> None:
    """The /invite a card was waiting on, now that it has its meeting; its answer replaces the card."""

    async def respond(card: Card) -> str:
        return await update_card(context.services, event, card)

    await proceed(context, request, limits, respond)


# The feature's buttons, for the button table (handlers/router.py). A press whose work kept failing is
# not given back once invitations went out: pressing it again could ring people twice.
INVITE_BUTTONS: tuple[ButtonKind[Any], ...] = (
    ButtonKind(RetryFailed, retry_failed, already_invited),
    ButtonKind(InviteMore, invite_more, already_invited),
    ButtonKind(ConfirmInvite, confirm_invite, already_invited),
    ButtonKind(CancelInvite, cancel_invite, already_invited),
    ButtonKind(GiveMeeting, give_meeting, already_invited),
    ButtonKind(ChooseMeeting, choose_meeting, already_invited),
    ButtonKind(RemindMissing, remind_missing, already_invited),
)


def _merged(rows: list[Outcome], added: list[Outcome]) -> list[Outcome]:
    """The card's rows with the new outcomes: a person already listed gets their new row in place."""
    by_id = {outcome.open_id: outcome for outcome in added if outcome.open_id}
    known = {row.open_id for row in rows}
    merged = [by_id.get(row.open_id, row) if row.open_id else row for row in rows]
    return merged + [outcome for outcome in added if not outcome.open_id or outcome.open_id not in known]


async def _show_result(
    context: CommandContext,
    event: CardActionEvent,
    meeting: Meeting,
    outcomes: Sequence[Outcome],
    limits: InviteLimits,
) -> None:
    followups = await offer_followups(context, meeting, outcomes, limits)

    async def respond(card: Card) -> str:
        return await update_card(context.services, event, card)

    await show_result(context, meeting, outcomes, followups, limits, respond)
