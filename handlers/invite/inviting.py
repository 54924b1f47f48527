"""Who an /invite names, and ringing them: mentions, e-mails and the chat's members become open_ids;
invitations go out as the sender in calls of ten, and every call ends in one outcome per person."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from bot.feishu.errors import UNAVAILABLE as UNAVAILABLE_CODE
from bot.feishu.errors import FeishuApiError
from bot.feishu.events import is_open_id
from bot.feishu.models import PARTICIPANT_IN_MEETING, InviteMeetingRequest, Meeting, MeetingUser
from bot.oauth.authority import AuthorizationRequired, TokenUnavailable
from handlers.context import CommandContext
from handlers.i18n import Text
from handlers.invite.cards import Outcome
from handlers.invite.grammar import InviteRequest
from handlers.invite.reasons import (
    ALREADY_IN,
    NEEDS_AUTHORIZATION,
    NOT_INVITED,
    UNCERTAIN,
    UNKNOWN_EMAIL,
    reason_for,
)

log = structlog.get_logger("handlers.invite.inviting")

# Feishu takes at most 10 invitees per call (feishu-protocol §7.1).
CHUNK = 10
# @all in a chat of more members than this is refused rather than paged for minutes.
MAX_MEMBER_PAGES = 50
EMAILS_PER_LOOKUP = 50  # batch_get_id's limit
INVITED = 1
# Whole-call refusals caused by one invitee: busy (122007), the operator themself (122005), bad id (121003).
ABOUT_ONE_PERSON = frozenset({121003, 122005, 122007})


async def collect_people(context: CommandContext, request: InviteRequest) -> tuple[list[str], list[Outcome]]:
    """Everyone the command names, as open_ids, once each; e-mails nobody matched come back apart."""
    services, message = context.services, context.message
    excluded = {message.sender_open_id, services.bot.open_id}
    people = list(request.open_ids)
    unknown: list[Outcome] = []
    if request.emails:
        found: dict[str, str] = {}
        for start in range(0, len(request.emails), EMAILS_PER_LOOKUP):
            batch = list(request.emails[start : start + EMAILS_PER_LOOKUP])
            found.update(await services.client.open_ids_by_email(batch))
        for email in request.emails:
            open_id = found.get(email)
            if open_id is None or not is_open_id(open_id):
                unknown.append(Outcome(open_id=None, invited=False, reason=UNKNOWN_EMAIL, email=email))
            else:
                people.append(open_id)
    if request.everyone:
        people.extend(await _chat_members(context))
    return [open_id for open_id in dict.fromkeys(people) if open_id not in excluded], unknown


async def _chat_members(context: CommandContext) -> list[str]:
    client, chat_id = context.services.client, context.message.chat_id
    members: list[str] = []
    page_token: str | None = None
    for _ in range(MAX_MEMBER_PAGES):
        page = await client.chat_members(chat_id, page_token=page_token)
        # The members API lists people only; bots in the chat are not among them.
        members.extend(
            item.member_id
            for item in page.items
            if item.member_id_type == "open_id" and is_open_id(item.member_id)
        )
        if not page.has_more or not page.page_token:
            break
        page_token = page.page_token
    return members


async def send_invitations(context: CommandContext, meeting: Meeting, people: Sequence[str]) -> list[Outcome]:
    """All chunks at once: the client's rate limiter paces them to Feishu's 50/s and 1000/min.

    Every chunk ends in outcomes, never an exception, so the record of what was sent is always
    written and a rerun never rings anyone twice.
    """
    chunks = [list(people[start : start + CHUNK]) for start in range(0, len(people), CHUNK)]
    results = await asyncio.gather(*(_invite_chunk(context, meeting, chunk) for chunk in chunks))
    outcomes = await _explain_refusals([outcome for chunk in results for outcome in chunk], context, meeting)
    for outcome in outcomes:
        context.services.metrics.invites.labels(
            "invited" if outcome.invited else "failed", str(outcome.code)
        ).inc()
    return outcomes


async def _explain_refusals(
    outcomes: list[Outcome], context: CommandContext, meeting: Meeting
) -> list[Outcome]:
    """Feishu refuses to ring someone who is in the meeting already, with the same bare status 2 as any
    other refusal. When some were refused so, one read of the meeting's participants (as the sender)
    tells those apart: they are shown as there, and Retry does not ring them. If the read fails, the
    refusals stay as they were."""
    if not any(outcome.reason is NOT_INVITED for outcome in outcomes):
        return outcomes
    services, message = context.services, context.message
    try:
        read = await services.authority.call_as(
            message.tenant_key,
            message.sender_open_id,
            lambda token: services.client.get_meeting(
                meeting.id, user_access_token=token, with_participants=True
            ),
        )
    except (AuthorizationRequired, TokenUnavailable, FeishuApiError) as error:
        log.info("could not read who is in the meeting", problem=type(error).__name__)
        return outcomes
    inside = {person.id for person in read.participants if person.status == PARTICIPANT_IN_MEETING}
    return [
        Outcome(open_id=outcome.open_id, invited=False, reason=ALREADY_IN)
        if outcome.reason is NOT_INVITED and outcome.open_id in inside
        else outcome
        for outcome in outcomes
    ]


async def _invite_chunk(context: CommandContext, meeting: Meeting, chunk: list[str]) -> list[Outcome]:
    services, message = context.services, context.message
    body = InviteMeetingRequest(invitees=[MeetingUser(id=open_id) for open_id in chunk])

    def everyone(reason: Text, code: int = 0) -> list[Outcome]:
        return [Outcome(open_id=open_id, invited=False, reason=reason, code=code) for open_id in chunk]

    try:
        results = await services.authority.call_as(
            message.tenant_key,
            message.sender_open_id,
            lambda token: services.client.invite_to_meeting(meeting.id, body, user_access_token=token),
        )
    except AuthorizationRequired:
        return everyone(NEEDS_AUTHORIZATION)  # refused before anything was sent
    except TokenUnavailable as error:
        return everyone(reason_for(error.code, error.log_id), error.code)  # not sent: safe to retry
    except FeishuApiError as error:
        if error.code == UNAVAILABLE_CODE:
            return everyone(UNCERTAIN)  # no answer at all: the invitation may have gone through
        if error.code in ABOUT_ONE_PERSON and len(chunk) > 1:
            # Refused because of someone in the call (busy, the sender, a bad id): nobody was rung, so
            # ask person by person to learn who, instead of blaming all ten.
            singles = await asyncio.gather(*(_invite_chunk(context, meeting, [open_id]) for open_id in chunk))
            return [outcome for single in singles for outcome in single]
        # A whole-call refusal (not in the meeting, locked, full...) applies to everyone in the call.
        return everyone(reason_for(error.code, error.log_id), error.code)
    except Exception:
        log.exception("invitation call failed unexpectedly", meeting_id=meeting.id)
        return everyone(UNCERTAIN)
    status = {result.id: result.status for result in results}
    return [
        Outcome(open_id=open_id, invited=True)
        if status.get(open_id) == INVITED
        else Outcome(open_id=open_id, invited=False, reason=NOT_INVITED)
        for open_id in chunk
    ]
