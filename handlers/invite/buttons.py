"""What a card button stands for, kept server side: a button sends back only a short random id.

Unforgeable (the id is random and known only to the card's readers), expiring (24 h), and taken
atomically when clicked, so a double click acts once.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from bot.clock import Clock
from bot.feishu.models import Meeting
from bot.store import Store
from handlers.invite.cards import StoredOutcome
from handlers.invite.reasons import INTERRUPTED, UNCERTAIN

NAMESPACE = "card_action"
_MAYBE_INVITED = {(UNCERTAIN.zh_cn, UNCERTAIN.en_us), (INTERRUPTED.zh_cn, INTERRUPTED.en_us)}
TTL_SECONDS = 24 * 3600.0
MAX_ID_LENGTH = 64


class RetryFailed(BaseModel):
    """ "Retry failed" on an /invite result card: who failed, in which meeting, and the card's rows."""

    kind: Literal["retry_failed"] = "retry_failed"
    tenant_key: str
    chat_id: str
    chat_type: str
    meeting: Meeting
    outcomes: list[StoredOutcome]
    ceiling: int = 200
    confirm_above: int = 10

    def failed_open_ids(self) -> list[str]:
        """Who to ring again: not those who may already be ringing (no answer, or an interrupted run)."""
        return [
            outcome.open_id
            for outcome in self.outcomes
            if not outcome.invited and outcome.open_id and outcome.reason not in _MAYBE_INVITED
        ]


class ConfirmInvite(BaseModel):
    """ "Confirm" on a big /invite: only its sender may press it."""

    kind: Literal["confirm_invite"] = "confirm_invite"
    tenant_key: str
    chat_id: str
    chat_type: str
    sender_open_id: str
    meeting: Meeting
    people: list[str]
    # People the command named who cannot be invited at all (unknown e-mails), shown on the result.
    unknown: list[StoredOutcome] = []
    # The other button on the same card, voided when this one is pressed (and the other way round).
    sibling: str = ""
    ceiling: int = 200
    confirm_above: int = 10
    # Rows the card already showed, when the confirmation came from "Invite more" on a result card.
    prior: list[StoredOutcome] = []


class CancelInvite(BaseModel):
    kind: Literal["cancel_invite"] = "cancel_invite"
    tenant_key: str
    chat_id: str
    chat_type: str
    sender_open_id: str
    count: int
    sibling: str = ""
    # From "Invite more": Cancel puts the result card back as it was (meeting, rows, limits).
    meeting: Meeting | None = None
    prior: list[StoredOutcome] = []
    ceiling: int = 200
    confirm_above: int = 10


class GiveMeeting(BaseModel):
    """The meeting field on a "which meeting?" card: submitting it runs the waiting /invite."""

    kind: Literal["give_meeting"] = "give_meeting"
    tenant_key: str
    chat_id: str
    chat_type: str
    sender_open_id: str
    open_ids: list[str]
    emails: list[str]
    everyone: bool
    ceiling: int
    confirm_above: int


class InviteMore(BaseModel):
    """The person picker on a result card: anyone in the chat may add people, as themselves."""

    kind: Literal["invite_more"] = "invite_more"
    tenant_key: str
    chat_id: str
    chat_type: str
    meeting: Meeting
    outcomes: list[StoredOutcome]
    ceiling: int
    # Picking more than this many asks the clicker to confirm first, as a typed /invite does.
    confirm_above: int = 10


CardAction = Annotated[
    RetryFailed | ConfirmInvite | CancelInvite | GiveMeeting | InviteMore, Field(discriminator="kind")
]
_ACTION = TypeAdapter(CardAction)


class _Kept(BaseModel):
    """An action as stored: what it stands for, and which click (by event id) has claimed it."""

    action: CardAction
    claimed_by: str | None = None


class CardActions:
    """Buttons' actions in the store. A click claims its action for its own event: a retry of that event
    (the inbox retries a click whose work failed) finds it still its own and carries on, while any other
    click on the same button finds it taken. Only a click's end, good or bad, lets go of it."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(12)

    async def offer(self, action: CardAction, action_id: str | None = None) -> str:
        action_id = action_id or self.new_id()
        expires_at = self._clock() + TTL_SECONDS
        await self._store.put(
            NAMESPACE, action_id, _Kept(action=action).model_dump_json().encode(), expires_at=expires_at
        )
        return action_id

    async def peek(self, action_id: str) -> CardAction | None:
        """The action behind a button, while no click has claimed it."""
        kept = await self._read(action_id)
        return None if kept is None or kept[0].claimed_by is not None else kept[0].action

    async def claim(
        self, action_id: str, claimant: str, allowed: Callable[[CardAction], bool] = lambda _: True
    ) -> CardAction | None:
        """The action, claimed for `claimant` (a click's event id); None if another click has it, it is
        gone, or `allowed` says this clicker may not press it (then it is left as it was). Claiming again
        for the same claimant succeeds: that is a retry of the same click."""
        for _ in range(3):
            kept = await self._read(action_id)
            if kept is None or not allowed(kept[0].action):
                return None
            record, version, expires_at = kept
            if record.claimed_by == claimant:
                return record.action
            if record.claimed_by is not None:
                return None
            claimed = _Kept(action=record.action, claimed_by=claimant)
            if await self._write(action_id, claimed, version, expires_at):
                return record.action
        return None

    async def release(self, action_id: str, claimant: str) -> None:
        """Let go of a claim, keeping the first expiry: the button works again (nothing was done)."""
        for _ in range(3):
            kept = await self._read(action_id)
            if kept is None or kept[0].claimed_by != claimant:
                return
            record, version, expires_at = kept
            if await self._write(action_id, _Kept(action=record.action), version, expires_at):
                return

    async def void(self, action_id: str) -> None:
        """Make a button do nothing any more (it was used, or its sibling was pressed)."""
        if action_id:
            await self._store.delete(NAMESPACE, action_id)

    async def _read(self, action_id: str) -> tuple[_Kept, int, float | None] | None:
        if not action_id or len(action_id) > MAX_ID_LENGTH:
            return None
        stored = await self._store.get(NAMESPACE, action_id, now=self._clock())
        if stored is None:
            return None
        kept = _parse(stored.value)
        return None if kept is None else (kept, stored.version, stored.expires_at)

    async def _write(self, action_id: str, kept: _Kept, version: int, expires_at: float | None) -> bool:
        return await self._store.compare_and_set(
            NAMESPACE,
            action_id,
            kept.model_dump_json().encode(),
            expected_version=version,
            expires_at=expires_at,
            now=self._clock(),
        )


def _parse(raw: bytes) -> _Kept | None:
    try:
        return _Kept.model_validate_json(raw)
    except ValidationError:
        pass
    try:  # kept before claims existed: a bare action, unclaimed
        return _Kept(action=_ACTION.validate_json(raw))
    except ValidationError:
        return None
