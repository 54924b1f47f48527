"""What a card button stands for, kept server side: a button sends back only a short random id.

Unforgeable (the id is random and known only to the card's readers), expiring (24 h), and taken
atomically when clicked, so a double click acts once.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from bot.clock import Clock
from bot.feishu.models import Meeting
from bot.store import Store
from handlers.invite_cards import StoredOutcome
from handlers.invite_reasons import INTERRUPTED, UNCERTAIN

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


class CancelInvite(BaseModel):
    kind: Literal["cancel_invite"] = "cancel_invite"
    tenant_key: str
    chat_id: str
    chat_type: str
    sender_open_id: str
    count: int
    sibling: str = ""


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


CardAction = Annotated[
    RetryFailed | ConfirmInvite | CancelInvite | GiveMeeting | InviteMore, Field(discriminator="kind")
]
_ACTION = TypeAdapter(CardAction)


class CardActions:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(12)

    async def offer(self, action: CardAction, action_id: str | None = None) -> str:
        action_id = action_id or self.new_id()
        await self.put_back(action_id, action)
        return action_id

    async def peek(self, action_id: str) -> CardAction | None:
        if not action_id or len(action_id) > MAX_ID_LENGTH:
            return None
        stored = await self._store.get(NAMESPACE, action_id, now=self._clock())
        return None if stored is None else _parse(stored.value)

    async def take(self, action_id: str) -> tuple[CardAction, float] | None:
        """The action and when it expires, removed so that nobody else can run it."""
        if not action_id or len(action_id) > MAX_ID_LENGTH:
            return None
        stored = await self._store.take(NAMESPACE, action_id, now=self._clock())
        action = None if stored is None else _parse(stored.value)
        if action is None or stored is None:
            return None
        return action, stored.expires_at or self._clock() + TTL_SECONDS

    async def void(self, action_id: str) -> None:
        """Make a button do nothing any more (its sibling was pressed)."""
        if action_id:
            await self._store.delete(NAMESPACE, action_id)

    async def put_back(self, action_id: str, action: CardAction, expires_at: float | None = None) -> None:
        """Keep an action (again): a taken one keeps its first expiry, so clicks cannot prolong it."""
        expiry = expires_at if expires_at is not None else self._clock() + TTL_SECONDS
        await self._store.put(NAMESPACE, action_id, action.model_dump_json().encode(), expires_at=expiry)


def _parse(raw: bytes) -> CardAction | None:
    try:
        return _ACTION.validate_json(raw)
    except ValidationError:
        return None
