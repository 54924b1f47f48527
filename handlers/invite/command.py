"""/invite: read the command, find the meeting, invite as the sender, and report who made it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import BaseModel

from bot.feishu.errors import FeishuApiError
from bot.feishu.models import ActiveMeeting, Meeting
from bot.oauth.authority import AuthorizationRequired
from handlers.account import ask_to_authorize
from handlers.cards import Card
from handlers.commands import Command
from handlers.context import CommandContext
from handlers.i18n import Text
from handlers.invite.buttons import (
    CancelInvite,
    ChooseMeeting,
    ConfirmInvite,
    GiveMeeting,
    InviteMore,
    RetryFailed,
)
from handlers.invite.cards import (
    Outcome,
    StoredOutcome,
    choose_meeting_card,
    confirm_card,
    lookup_failed_card,
    need_meeting_card,
    nobody_card,
    not_in_progress_card,
    result_card,
    too_many_card,
)
from handlers.invite.current import ACTIVE_MEETING_SCOPE, current_meetings, first_offer
from handlers.invite.grammar import InviteRequest, read_invite
from handlers.invite.inviting import collect_people, send_invitations
from handlers.invite.reasons import (
    INTERRUPTED,
    NEEDS_AUTHORIZATION,
    reason_for,
)
from handlers.invite.watch import watch_card

log = structlog.get_logger("handlers.invite.command")

DONE_NAMESPACE = "invite_done"
# Longer than the inbox's whole retry schedule, so a retried command always finds its record.
DONE_TTL_SECONDS = 24 * 3600.0

USAGE = "/invite [MEETING] @user ... [email ...]"
# The most meetings the "which meeting?" card offers (someone in more is rare; they can type a number).
MAX_CHOICES = 5
CURRENT_MEETING_NOTE = Text(
    "再授权一次，/invite 就能自动找到你正在参加的会议，不用再写会议号。只提示这一次。",
    "Authorize once more and /invite finds the meeting you are in by itself, no number needed. "
    "This is the only time you are asked.",
)
EXAMPLES = (
    "/invite 123456789 @Alice @Bob",
    "/invite 123 456 789 bob@example.com",
    "/invite https://vc.feishu.cn/j/123456789 @all",
    "/invite @Carol",
)


@dataclass(frozen=True)
class InviteLimits:
    # The most people one /invite may reach, even confirmed; and how many it takes to ask first.
    ceiling: int
    confirm_above: int


# Shows a card (a reply, or an update of the clicked card) and returns the message that shows it.
Respond = Callable[[Card], Awaitable[str]]


def invite_command(ceiling: int, confirm_above: int) -> Command:
    limits = InviteLimits(ceiling, confirm_above)

    async def handle(context: CommandContext) -> None:
        try:
            await _invite(context, limits)
        except AuthorizationRequired as required:
            await ask_to_authorize(context, missing_scopes=required.missing_scopes)

    return Command(
        name="/invite",
        aliases=("/邀请",),
        summary=Text(
            "以你的身份邀请他们加入会议；会议号可以不写：用你正在参加的会议（或你在本群上次用的）",
            "invite them into the meeting, as you; the number is optional: the meeting you are in now "
            "(or the one you last used here)",
        ),
        usage=USAGE,
        examples=EXAMPLES,
        handler=handle,
    )


async def _invite(context: CommandContext, limits: InviteLimits) -> None:
    services, message = context.services, context.message
    request = read_invite(
        context.args,
        message.mentions,
        sender_open_id=message.sender_open_id,
        bot_open_id=services.bot.open_id,
    )
    if not request.names_anyone:
        await context.reply_card(nobody_card(USAGE, EXAMPLES))
        return
    if await services.authority.current(message.tenant_key, message.sender_open_id) is None:
        await ask_to_authorize(context)
        return

    async def reply(card: Card) -> str:
        return (await context.reply_card(card)).message_id

    await proceed(context, request, limits, reply)


async def proceed(
    context: CommandContext, request: InviteRequest, limits: InviteLimits, respond: Respond
) -> None:
    """From a read request to the answer: the meeting, the people, the checks, the invitations.

    `respond` shows a card: a reply to the command, or an update of the card that was clicked.
    """
    if await _answer_from_record(context, respond):
        return
    try:
        found = await _find_meeting(context, request)
    except FeishuApiError as error:
        await respond(lookup_failed_card(reason_for(error.code, error.log_id)))
        return
    if found.choices:
        await respond(await _choose_meeting(context, request, limits, found.choices))
        return
    meeting = found.meeting
    if meeting is None:
        no = request.meeting_no
        await respond(not_in_progress_card(no) if no else await _meeting_form(context, request, limits))
        await _offer_current_meeting(context, found)
        return
    try:
        people, unknown = await collect_people(context, request)
    except FeishuApiError as error:
        await respond(lookup_failed_card(reason_for(error.code, error.log_id)))
        return
    if not people and not unknown:
        await respond(nobody_card(USAGE, EXAMPLES))
        return
    if len(people) > limits.ceiling:
        await respond(too_many_card(len(people), limits.ceiling))
        return
    if len(people) > limits.confirm_above:
        await respond(await confirm_first(context, meeting, people, unknown, limits))
        return
    outcomes = await invite_once(context, meeting, people, unknown)
    followups = await offer_followups(context, meeting, outcomes, limits)
    await _keep(context, meeting, outcomes, followups)
    await show_result(context, meeting, outcomes, followups, limits, respond)
    if any(outcome.reason is NEEDS_AUTHORIZATION for outcome in outcomes):
        await ask_to_authorize(context)
    else:
        await _offer_current_meeting(context, found)


async def show_result(
    context: CommandContext,
    meeting: Meeting,
    outcomes: Sequence[Outcome],
    followups: list[dict[str, Any]],
    limits: InviteLimits,
    respond: Respond,
) -> None:
    """Show the result card (a reply, or the clicked card updated) and have it follow the meeting."""
    shown = await respond(result_card(meeting, outcomes, followups))
    await watch_card(
        context,
        meeting,
        outcomes,
        followups,
        shown,
        ceiling=limits.ceiling,
        confirm_above=limits.confirm_above,
    )


async def _answer_from_record(context: CommandContext, respond: Respond) -> bool:
    """Run before (a retry after a failed reply, or a restart part-way): answer, never invite again."""
    kept = await _kept(context)
    if kept is None or kept.followups is None:
        return False
    log.info("command already carried out; answering from its record")
    outcomes = [outcome.restore() for outcome in kept.outcomes]
    await respond(result_card(kept.meeting, outcomes, kept.followups))
    return True


async def already_invited(context: CommandContext) -> bool:
    """Whether this run (`context.run_key`) has begun sending invitations."""
    return await _kept(context) is not None


async def invite_once(
    context: CommandContext, meeting: Meeting, people: Sequence[str], unknown: Sequence[Outcome]
) -> list[Outcome]:
    """Invite as the context's sender, at most once per run (`context.run_key`), and return every outcome.

    The record is written before the first call: if this process dies while inviting, or the run fails
    after the calls and is retried, nobody is rung again; those who may have been are reported so.
    """
    kept = await _kept(context)
    if kept is not None:
        log.info("invitations already sent in an earlier attempt; not sending them again")
        return [outcome.restore() for outcome in kept.outcomes]
    interrupted = [Outcome(open_id=open_id, invited=False, reason=INTERRUPTED) for open_id in people]
    await _keep(context, meeting, [*interrupted, *unknown])
    outcomes = await carry_out(context, meeting, people, unknown)
    await _keep(context, meeting, outcomes)
    return outcomes


async def _meeting_form(context: CommandContext, request: InviteRequest, limits: InviteLimits) -> Card:
    """No meeting given and none remembered: a card with a field for it, whose submit runs this invite."""
    message = context.message
    form = await context.services.actions.offer_element(
        GiveMeeting(
            tenant_key=message.tenant_key,
            chat_id=message.chat_id,
            chat_type=message.chat_type,
            sender_open_id=message.sender_open_id,
            open_ids=list(request.open_ids),
            emails=list(request.emails),
            everyone=request.everyone,
            ceiling=limits.ceiling,
            confirm_above=limits.confirm_above,
        )
    )
    return need_meeting_card(USAGE, EXAMPLES, form=form)


async def carry_out(
    context: CommandContext, meeting: Meeting, people: Sequence[str], unknown: Sequence[Outcome]
) -> list[Outcome]:
    """Invite as the context's sender, remember the meeting for them, and return every outcome."""
    services, message = context.services, context.message
    outcomes = [*await send_invitations(context, meeting, people), *unknown]
    invited = sum(outcome.invited for outcome in outcomes)
    log.info("invited", meeting_id=meeting.id, invited=invited, failed=len(outcomes) - invited)
    await services.meetings.remember(message.tenant_key, message.chat_id, message.sender_open_id, meeting)
    return outcomes


async def confirm_first(
    context: CommandContext,
    meeting: Meeting,
    people: Sequence[str],
    unknown: Sequence[Outcome],
    limits: InviteLimits,
    prior: Sequence[Outcome] = (),
) -> Card:
    """A card asking the sender to confirm a big invite; its buttons carry only action ids.

    `prior`: the rows of the result card the request came from ("Invite more"), kept for the result
    after Confirm and put back by Cancel.
    """
    actions, message = context.services.actions, context.message
    confirm_id, cancel_id = actions.new_id(), actions.new_id()
    common = {
        "tenant_key": message.tenant_key,
        "chat_id": message.chat_id,
        "chat_type": message.chat_type,
        "sender_open_id": message.sender_open_id,
        "ceiling": limits.ceiling,
        "confirm_above": limits.confirm_above,
        "prior": [StoredOutcome.of(outcome) for outcome in prior],
    }
    confirm = ConfirmInvite(
        **common,
        meeting=meeting,
        people=list(people),
        unknown=[StoredOutcome.of(outcome) for outcome in unknown],
        sibling=cancel_id,
    )
    cancel = CancelInvite(**common, count=len(people), sibling=confirm_id, meeting=meeting if prior else None)
    await actions.offer(confirm, confirm_id)
    await actions.offer(cancel, cancel_id)
    buttons = [confirm.element(confirm_id), cancel.element(cancel_id)]
    return confirm_card(meeting, len(people), message.sender_open_id, buttons)


async def _keep(
    context: CommandContext,
    meeting: Meeting,
    outcomes: Sequence[Outcome],
    followups: list[dict[str, Any]] | None = None,
) -> None:
    record = _Done(
        meeting=meeting, outcomes=[StoredOutcome.of(outcome) for outcome in outcomes], followups=followups
    )
    await context.services.store.put(
        DONE_NAMESPACE,
        context.run_key,
        record.model_dump_json().encode(),
        expires_at=context.services.clock() + DONE_TTL_SECONDS,
    )


async def _kept(context: CommandContext) -> _Done | None:
    stored = await context.services.store.get(DONE_NAMESPACE, context.run_key, now=context.services.clock())
    return None if stored is None else _Done.model_validate_json(stored.value)


class _Done(BaseModel):
    """Invitations already sent by one run (an /invite, or a click), and the buttons its card got
    (None until the run has offered them: then it is finished). A record kept before buttons were
    kept as elements reads as unfinished: its retry invites nobody again (`invite_once`) and offers
    fresh buttons."""

    meeting: Meeting
    outcomes: list[StoredOutcome]
    followups: list[dict[str, Any]] | None = None


async def offer_followups(
    context: CommandContext, meeting: Meeting, outcomes: Sequence[Outcome], limits: InviteLimits
) -> list[dict[str, Any]]:
    """A result card's buttons: "retry failed" (when someone failed who may safely be rung again) and
    "invite more" (always). A new button for result cards is offered here."""
    message = context.message
    stored = [StoredOutcome.of(outcome) for outcome in outcomes]
    common = {
        "tenant_key": message.tenant_key,
        "chat_id": message.chat_id,
        "chat_type": message.chat_type,
        "meeting": meeting,
        "outcomes": stored,
        "ceiling": limits.ceiling,
        "confirm_above": limits.confirm_above,
    }
    actions = context.services.actions
    retry = RetryFailed(**common)
    offered = [await actions.offer_element(retry)] if retry.failed_open_ids() else []
    return [*offered, await actions.offer_element(InviteMore(**common))]


@dataclass(frozen=True)
class _Found:
    """Where an /invite goes: a meeting, several the sender must choose from, or none known."""

    meeting: Meeting | None = None
    choices: tuple[ActiveMeeting, ...] = ()
    # The sender's authorization lacks the current-meeting scope (see current.py).
    lacks_scope: bool = False


async def _find_meeting(context: CommandContext, request: InviteRequest) -> _Found:
    """A meeting chosen on a card, else the typed number, else the one the sender is in now, else the
    one they last used in this chat."""
    services, message = context.services, context.message
    tenant, sender, meetings = message.tenant_key, message.sender_open_id, services.meetings
    if request.meeting_id is not None:
        chosen = request.meeting_id
        return _Found(
            await services.authority.call_as(tenant, sender, lambda t: meetings.live_by_id(chosen, t))
        )
    if request.meeting_no is not None:
        number = request.meeting_no
        return _Found(
            await services.authority.call_as(
                tenant, sender, lambda t: meetings.in_progress(tenant, number, t)
            )
        )
    current = await current_meetings(services, tenant, sender)
    remembered = await meetings.remembered_id(tenant, message.chat_id, sender)
    ids = [active.meeting_id for active in current.meetings]
    # In several meetings, the one the sender last used here is the one they mean.
    pick = ids[0] if len(ids) == 1 else remembered if remembered in ids else None
    if pick is None and len(ids) > 1:
        return _Found(choices=current.meetings[:MAX_CHOICES])
    for candidate in dict.fromkeys(id_ for id_ in (pick, remembered) if id_ is not None):
        meeting = await _live(context, candidate)
        if meeting is not None:
            return _Found(meeting, lacks_scope=current.lacks_scope)
    return _Found(lacks_scope=current.lacks_scope)


async def _live(context: CommandContext, meeting_id: str) -> Meeting | None:
    services, message = context.services, context.message
    return await services.authority.call_as(
        message.tenant_key, message.sender_open_id, lambda t: services.meetings.live_by_id(meeting_id, t)
    )


async def _choose_meeting(
    context: CommandContext, request: InviteRequest, limits: InviteLimits, choices: Sequence[ActiveMeeting]
) -> Card:
    """The sender is in several meetings: a card with one button per meeting, only they may press."""
    actions, message = context.services.actions, context.message
    ids = [actions.new_id() for _ in choices]
    buttons = []
    for action_id, choice in zip(ids, choices, strict=True):
        button = ChooseMeeting(
            tenant_key=message.tenant_key,
            chat_id=message.chat_id,
            chat_type=message.chat_type,
            sender_open_id=message.sender_open_id,
            meeting_id=choice.meeting_id,
            meeting_no=choice.meeting_no,
            meeting_title=choice.meeting_title,
            open_ids=list(request.open_ids),
            emails=list(request.emails),
            everyone=request.everyone,
            ceiling=limits.ceiling,
            confirm_above=limits.confirm_above,
            siblings=[other for other in ids if other != action_id],
        )
        await actions.offer(button, action_id)
        buttons.append(button.element(action_id))
    return choose_meeting_card(message.sender_open_id, len(choices), buttons)


async def _offer_current_meeting(context: CommandContext, found: _Found) -> None:
    """Once per user: authorizing again with the scope lets /invite find their meeting without a number.
    The offer resumes nothing: the command was answered already."""
    services, message = context.services, context.message
    if not found.lacks_scope or not await first_offer(services, message.tenant_key, message.sender_open_id):
        return
    log.info("offering to authorize again for the current meeting")
    await ask_to_authorize(
        context, missing_scopes=(ACTIVE_MEETING_SCOPE,), resume=False, why=CURRENT_MEETING_NOTE
    )
