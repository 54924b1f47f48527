"""The live result card: after an invite, the bot follows the meeting for a while (BOT_MEETING_WATCH_SECONDS)
and the card shows who is ringing, who joined and who did not answer.

Feishu's meeting events fire only for meetings reserved through the Open API (feishu-protocol §7.2), so
the bot reads `GET /meetings/:id?with_participants=true` instead. One watch per meeting, shared by every
card that shows it: one read a tick whatever the number of cards, and at most one update per card a tick
(only when what it shows changed). The watch is a record in the store and a tick is an inbox event that
postpones itself, so a restart or another replica carries on, and no worker waits between looks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from typing import Any

import structlog
from pydantic import BaseModel, Field, ValidationError

from bot.feishu.errors import FeishuApiError
from bot.feishu.events import MEETING_WATCH, EventEnvelope
from bot.feishu.models import (
    PARTICIPANT_IN_MEETING,
    PARTICIPANT_RINGING,
    Meeting,
    MessagePatchRequest,
    card_content,
)
from bot.oauth.authority import AuthorizationRequired, TokenUnavailable
from bot.store.base import Postpone
from handlers.context import CommandContext, Services
from handlers.i18n import Text
from handlers.invite.buttons import RemindMissing
from handlers.invite.cards import LiveView, Outcome, Presence, StoredOutcome, result_card

log = structlog.get_logger("handlers.invite.watch")

WATCH_NAMESPACE = "meeting_watch"
# Longer than any watch: a record outlives its last tick only by this.
_RECORD_TTL_SECONDS = 6 * 3600.0
_CAS_ATTEMPTS = 8
_STALE_TICKS = 6
# A card whose time is up waits this many ticks for a fresh read (one that failed or was deferred under
# load) before it shows its final state from what was last seen.
_FINAL_READ_TICKS = 6
_MEETING_ENDED = 3
# Feishu is a China-based service; its clients show times in the viewer's zone, which a card cannot know.
_SHOWN_ZONE_SECONDS = 8 * 3600
_SHOWN_ZONE = "UTC+8"


class WatchedCard(BaseModel):
    """One result card that follows the meeting: where it is, what it shows, until when."""

    message_id: str
    chat_id: str
    chat_type: str
    owner: str  # who invited: their token reads the meeting (only a participant may read it)
    outcomes: list[StoredOutcome]
    followups: list[dict[str, Any]]
    ceiling: int
    confirm_above: int
    invited_at: float
    until: float
    revision: int = 0  # bumped when the card is shown anew (a click): a tick's late write must not undo it
    shown: str = ""  # digest of the content last sent, so an unchanged card is not updated
    ended: bool = False


class Seen(BaseModel):
    status: int
    joined_at: int = 0
    left_at: int = 0


class MeetingWatch(BaseModel):
    tenant_key: str
    meeting: Meeting
    # The tick chain that owns the watch: a tick of another chain (a stale duplicate) ends at once.
    chain: str
    cards: list[WatchedCard] = Field(default_factory=list)
    seen: dict[str, Seen] = Field(default_factory=dict)
    ticked_at: float = 0.0
    closed: bool = False


class WatchTick(BaseModel):
    tenant_key: str
    meeting_id: str
    chain: str
    ordering_key: str


def _key(tenant_key: str, meeting_id: str) -> str:
    return f"{tenant_key}/{meeting_id}"


async def watch_card(
    context: CommandContext,
    meeting: Meeting,
    outcomes: Sequence[Outcome],
    followups: list[dict[str, Any]],
    message_id: str,
    *,
    ceiling: int,
    confirm_above: int,
) -> None:
    """Have the card `message_id` follow the meeting (nothing when the live card is off or nobody rang)."""
    services, message = context.services, context.message
    if services.watch_seconds <= 0 or not message_id or not any(outcome.invited for outcome in outcomes):
        return
    now = services.clock()
    card = WatchedCard(
        message_id=message_id,
        chat_id=message.chat_id,
        chat_type=message.chat_type,
        owner=message.sender_open_id,
        outcomes=[StoredOutcome.of(outcome) for outcome in outcomes],
        followups=followups,
        ceiling=ceiling,
        confirm_above=confirm_above,
        invited_at=now,
        until=now + services.watch_seconds,
    )
    key = _key(message.tenant_key, meeting.id)
    for _ in range(_CAS_ATTEMPTS):
        stored = await services.store.get(WATCH_NAMESPACE, key, now=now)
        record = _read(stored.value if stored else None)
        if record is None or record.closed:
            record, start = MeetingWatch(tenant_key=message.tenant_key, meeting=meeting, chain=""), True
        else:
            # No tick for a long while: the one that should run was lost (a crash between writing the
            # record and queueing it). A new chain replaces it; a late tick of the old one ends at once.
            start = now - record.ticked_at > _STALE_TICKS * services.watch_every
        known = next((kept for kept in record.cards if kept.message_id == message_id), None)
        if known is not None and known.outcomes == card.outcomes and not known.ended:
            return  # a retried run: this card already follows the meeting
        revision = known.revision + 1 if known is not None else 0
        cards = [kept for kept in record.cards if kept.message_id != message_id]
        chain = secrets.token_hex(8) if start else record.chain
        updated = record.model_copy(
            update={
                "cards": [*cards, card.model_copy(update={"revision": revision})],
                "chain": chain,
                "ticked_at": now if start else record.ticked_at,
            }
        )
        if await services.store.compare_and_set(
            WATCH_NAMESPACE,
            key,
            updated.model_dump_json().encode(),
            expected_version=stored.version if stored is not None else None,
            expires_at=now + _RECORD_TTL_SECONDS,
            now=now,
        ):
            if start:
                await _start_ticking(services, message.tenant_key, meeting.id, chain)
            return
    log.warning("could not add the card to the meeting's watch", meeting_id=meeting.id)


async def _start_ticking(services: Services, tenant_key: str, meeting_id: str, chain: str) -> None:
    assert services.enqueue is not None
    tick = WatchTick(
        tenant_key=tenant_key,
        meeting_id=meeting_id,
        chain=chain,
        ordering_key=f"watch:{tenant_key}/{meeting_id}",
    )
    await services.enqueue(
        EventEnvelope(
            schema_version="2.0",
            event_id=f"watch-{meeting_id}-{chain}",
            event_type=MEETING_WATCH,
            create_time=str(int(services.clock() * 1000)),
            tenant_key=tenant_key,
            event=tick.model_dump(),
        )
    )


def _read(value: bytes | None) -> MeetingWatch | None:
    if value is None:
        return None
    try:
        return MeetingWatch.model_validate_json(value)
    except ValidationError:
        log.error("meeting watch record unreadable; starting afresh")
        return None


async def look_at_meeting(services: Services, tick: WatchTick) -> None:
    """One tick: read the meeting once, update every card whose view changed, and come back later
    (Postpone) while any card still follows it."""
    key = _key(tick.tenant_key, tick.meeting_id)
    now = services.clock()
    stored = await services.store.get(WATCH_NAMESPACE, key, now=now)
    record = _read(stored.value if stored else None)
    if stored is None or record is None or record.closed or record.chain != tick.chain:
        return
    live = [card for card in record.cards if not card.ended]
    meeting, readable = await _read_meeting(services, record, live)
    seen = _seen(meeting) if meeting is not None else record.seen
    ended = meeting is not None and meeting.status == _MEETING_ENDED
    stale = meeting is None and readable  # the read failed for now (a blip, or deferred under load)
    results = await asyncio.gather(
        *(
            _show(services, record, card, seen, now, ended=ended, unreadable=not readable, stale=stale)
            for card in live
        )
    )
    shown = {card.message_id: (card.revision, result) for card, result in zip(live, results, strict=True)}
    for _ in range(_CAS_ATTEMPTS):
        if stored is None or record is None:
            return
        cards = []
        for card in record.cards:
            done = shown.get(card.message_id)
            if done is not None and done[0] == card.revision:
                card = card.model_copy(update={"shown": done[1][0], "ended": done[1][1]})
            if not card.ended:
                cards.append(card)  # a card whose watch ended is done with: the record stays small
        still = bool(cards)
        updated = record.model_copy(
            update={"cards": cards, "seen": seen, "ticked_at": now, "closed": not still}
        )
        if await services.store.compare_and_set(
            WATCH_NAMESPACE,
            key,
            updated.model_dump_json().encode(),
            expected_version=stored.version,
            expires_at=now + _RECORD_TTL_SECONDS,
            now=now,
        ):
            if still:
                raise Postpone(services.watch_every)
            log.info("meeting watch ended", meeting_id=tick.meeting_id, cards=len(cards))
            return
        stored = await services.store.get(WATCH_NAMESPACE, key, now=now)  # a card was added meanwhile
        record = _read(stored.value if stored else None)
    raise Postpone(services.watch_every)


async def _read_meeting(
    services: Services, record: MeetingWatch, live: Sequence[WatchedCard]
) -> tuple[Meeting | None, bool]:
    """The meeting with its participants, read as one of the inviters (newest first). (None, True): a
    blip, try next tick; (None, False): nobody whose token may read it is left, so the watch ends."""
    owners = list(dict.fromkeys(card.owner for card in reversed(live)))
    meeting_id = record.meeting.id
    for owner in owners:
        try:
            meeting = await services.authority.call_as(
                record.tenant_key,
                owner,
                # A background read: under a burst of commands it is skipped (DEFERRED) rather than
                # take their share of Feishu's budget, and the card catches up on a later tick.
                lambda token: services.client.get_meeting(
                    meeting_id, user_access_token=token, with_participants=True, background=True
                ),
            )
            return meeting, True
        except (AuthorizationRequired, TokenUnavailable):
            continue
        except FeishuApiError as error:
            if error.transient:
                log.info("meeting read failed; next tick", code=error.code, log_id=error.log_id)
                return None, True
            log.info("meeting not readable as this inviter", code=error.code, log_id=error.log_id)
    return None, False


def _seen(meeting: Meeting) -> dict[str, Seen]:
    seen: dict[str, Seen] = {}
    for person in meeting.participants:
        if person.id:
            seen[person.id] = Seen(
                status=person.status,
                joined_at=_seconds(person.first_join_time),
                left_at=_seconds(person.final_leave_time),
            )
    return seen


def _seconds(value: str) -> int:
    return int(value) if value.isdigit() else 0


def presence_of(card: WatchedCard, seen: dict[str, Seen], final: bool) -> dict[str, Presence]:
    """What each person on the card did since the invitation, as far as the meeting shows."""
    presence: dict[str, Presence] = {}
    for outcome in card.outcomes:
        if not outcome.open_id:
            continue
        person = seen.get(outcome.open_id)
        if not outcome.invited:
            if person is not None and person.status == PARTICIPANT_IN_MEETING:
                presence[outcome.open_id] = "already"
            continue
        if person is not None and person.status == PARTICIPANT_IN_MEETING:
            presence[outcome.open_id] = "joined"
        elif (
            person is not None
            and person.status not in PARTICIPANT_RINGING
            and person.joined_at
            and person.left_at >= card.invited_at - 1
        ):
            presence[outcome.open_id] = "left"
        elif person is not None and person.status not in PARTICIPANT_RINGING:
            presence[outcome.open_id] = "unanswered"  # declined, or the ringing ran out
        else:
            presence[outcome.open_id] = "unanswered" if final else "ringing"
    return presence


async def _show(
    services: Services,
    record: MeetingWatch,
    card: WatchedCard,
    seen: dict[str, Seen],
    now: float,
    *,
    ended: bool,
    unreadable: bool,
    stale: bool = False,
) -> tuple[str, bool]:
    """Update one card if what it shows changed; return (digest shown, whether its watch ended).
    `stale`: this tick's read failed, so a card whose time is up waits a few ticks for a fresh one."""
    presence = presence_of(card, seen, final=False)
    everyone_came = all(state in ("joined", "left") for state in presence.values() if state != "already")
    time_up = now >= card.until and (
        not stale or now >= card.until + _FINAL_READ_TICKS * services.watch_every
    )
    final = ended or unreadable or time_up or everyone_came
    if final:
        presence = presence_of(card, seen, final=True)
    outcomes = [stored.restore() for stored in card.outcomes]
    followups = list(card.followups)
    at = f"{_clock_time(now)} ({_SHOWN_ZONE})"
    if ended:
        note = Text(f"会议已结束。截至 {at}", f"The meeting has ended. As of {at}")
    elif unreadable:
        note = Text(f"截至 {at}，无法再查看这个会议", f"As of {at}; the meeting can no longer be read")
    elif final:
        note = Text(f"截至 {at}，不再更新", f"As of {at}; no longer updating")
    else:
        note = Text(
            f"正在跟踪谁加入会议，到 {_clock_time(card.until)}（{_SHOWN_ZONE}）为止",
            f"Following who joins until {_clock_time(card.until)} ({_SHOWN_ZONE})",
        )
    view = LiveView(presence=presence, final=final, note=Text("", ""))
    digest = _digest(result_card(record.meeting, outcomes, followups, view))  # without the time note
    if final:
        missing = [open_id for open_id, state in presence.items() if state == "unanswered"]
        if missing:
            remind = RemindMissing(
                tenant_key=record.tenant_key,
                chat_id=card.chat_id,
                chat_type=card.chat_type,
                meeting=record.meeting,
                outcomes=card.outcomes,
                missing=missing,
                ceiling=card.ceiling,
                confirm_above=card.confirm_above,
            )
            followups.append(await services.actions.offer_element(remind))
    elif digest == card.shown:
        return card.shown, False  # nothing new to show: no update
    built = result_card(
        record.meeting, outcomes, followups, LiveView(presence=presence, final=final, note=note)
    )
    if await _shown_anew(services, record, card):
        return card.shown, False  # a click showed the card anew meanwhile: this view is out of date
    try:
        await services.client.patch_message(card.message_id, MessagePatchRequest(content=card_content(built)))
    except FeishuApiError as error:
        if error.transient and not final:
            return card.shown, False  # shown next tick
        log.warning("could not update a live card; it stops following", code=error.code, log_id=error.log_id)
        return card.shown, True
    return digest, final


async def _shown_anew(services: Services, record: MeetingWatch, card: WatchedCard) -> bool:
    """Whether the card was shown anew (a click: its revision moved) since this tick read the record.
    Checked just before updating, so a tick that read the meeting slowly does not put a card back as
    it was before the click; the next tick shows the new one."""
    stored = await services.store.get(
        WATCH_NAMESPACE, _key(record.tenant_key, record.meeting.id), now=services.clock()
    )
    latest = _read(stored.value if stored else None)
    kept = next((c for c in latest.cards if c.message_id == card.message_id), None) if latest else None
    return kept is not None and kept.revision != card.revision


def _digest(built: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(built, sort_keys=True).encode()).hexdigest()[:32]


def _clock_time(at: float) -> str:
    return time.strftime("%H:%M", time.gmtime(at + _SHOWN_ZONE_SECONDS))
