"""The /invite feature's buttons: what each stands for, who may press it, and what it answers at once.

What pressing each one does is in `clicks.py`, which declares them to the button table.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from bot.feishu.events import CardActionEvent, is_open_id
from bot.feishu.models import Meeting
from handlers.buttons import Button, SenderOnly
from handlers.cards import ButtonStyle, callback_button
from handlers.i18n import Text
from handlers.invite.cards import (
    CANCEL_BUTTON,
    CONFIRM_BUTTON,
    MEETING_FIELD,
    PEOPLE_FIELD,
    RETRY_BUTTON,
    StoredOutcome,
    invite_more_form,
    meeting_form,
    meeting_label,
)
from handlers.invite.grammar import meeting_number
from handlers.invite.reasons import ALREADY_IN, INTERRUPTED, UNCERTAIN

# Not rung again by Retry: who may already be ringing, and who is in the meeting already.
_NOT_TO_RING = {
    (UNCERTAIN.zh_cn, UNCERTAIN.en_us),
    (INTERRUPTED.zh_cn, INTERRUPTED.en_us),
    (ALREADY_IN.zh_cn, ALREADY_IN.en_us),
}
MAX_PICKED = 200

WORKING = Text("收到，正在重试未成功的邀请…", "Got it: retrying the failed invitations…")
PICK_SOMEONE = Text("请先选择要邀请的人。", "Pick the people to invite first.")
NO_NUMBER = Text("请填写 9 位会议号或会议链接。", "Fill in a 9-digit meeting number or a meeting link.")


class RetryFailed(Button):
    """ "Retry failed" on an /invite result card: who failed, in which meeting, and the card's rows."""

    kind: Literal["retry_failed"] = "retry_failed"
    label: ClassVar[Text] = RETRY_BUTTON
    style: ClassVar[ButtonStyle] = "primary"
    accepted: ClassVar[Text] = WORKING
    meeting: Meeting
    outcomes: list[StoredOutcome]
    ceiling: int = 200
    confirm_above: int = 10

    def failed_open_ids(self) -> list[str]:
        """Who to ring again: not those who may already be ringing (no answer, or an interrupted run),
        nor those who are in the meeting."""
        return [
            outcome.open_id
            for outcome in self.outcomes
            if not outcome.invited and outcome.open_id and outcome.reason not in _NOT_TO_RING
        ]


REMIND_BUTTON = Text("提醒未加入的人", "Remind the missing")
REMINDING = Text("收到，正在再次邀请还没加入的人…", "Got it: ringing those who have not joined again…")


class RemindMissing(Button):
    """ "Remind the missing" on a result card whose watch ended: rings again, as the clicker, only
    those who were invited and never joined."""

    kind: Literal["remind_missing"] = "remind_missing"
    label: ClassVar[Text] = REMIND_BUTTON
    style: ClassVar[ButtonStyle] = "primary"
    accepted: ClassVar[Text] = REMINDING
    meeting: Meeting
    outcomes: list[StoredOutcome]
    missing: list[str]
    ceiling: int = 200
    confirm_above: int = 10


class ConfirmInvite(SenderOnly):
    """ "Confirm" on a big /invite: only its sender may press it."""

    kind: Literal["confirm_invite"] = "confirm_invite"
    label: ClassVar[Text] = CONFIRM_BUTTON
    style: ClassVar[ButtonStyle] = "primary"
    meeting: Meeting
    people: list[str]
    # People the command named who cannot be invited at all (unknown e-mails), shown on the result.
    unknown: list[StoredOutcome] = Field(default_factory=list)
    # The other button on the same card, voided when this one is pressed (and the other way round).
    sibling: str = ""
    ceiling: int = 200
    confirm_above: int = 10
    # Rows the card already showed, when the confirmation came from "Invite more" on a result card.
    prior: list[StoredOutcome] = Field(default_factory=list)


class CancelInvite(SenderOnly):
    """ "Cancel" beside Confirm: sends nothing, so it needs no authorization."""

    kind: Literal["cancel_invite"] = "cancel_invite"
    label: ClassVar[Text] = CANCEL_BUTTON
    acts_as_clicker: ClassVar[bool] = False
    count: int
    sibling: str = ""
    # From "Invite more": Cancel puts the result card back as it was (meeting, rows, limits).
    meeting: Meeting | None = None
    prior: list[StoredOutcome] = Field(default_factory=list)
    ceiling: int = 200
    confirm_above: int = 10


class GiveMeeting(SenderOnly):
    """The meeting field on a "which meeting?" card: submitting it runs the waiting /invite."""

    kind: Literal["give_meeting"] = "give_meeting"
    open_ids: list[str]
    emails: list[str]
    everyone: bool
    ceiling: int
    confirm_above: int

    @staticmethod
    def given(event: CardActionEvent) -> str | None:
        """The meeting number typed into the form's field, if it reads as one."""
        field = (event.action.form_value or {}).get(MEETING_FIELD)
        return meeting_number(field) if isinstance(field, str) else None

    def problem(self, event: CardActionEvent) -> Text | None:
        return NO_NUMBER if self.given(event) is None else None

    def element(self, action_id: str) -> dict[str, Any]:
        return meeting_form(action_id)


class ChooseMeeting(SenderOnly):
    """One meeting on the "which of your meetings?" card: pressing it runs the waiting /invite there."""

    kind: Literal["choose_meeting"] = "choose_meeting"
    style: ClassVar[ButtonStyle] = "primary"
    meeting_id: str
    meeting_no: str = ""
    meeting_title: str = ""
    open_ids: list[str]
    emails: list[str]
    everyone: bool
    ceiling: int
    confirm_above: int
    # The card's other meetings, voided once one is chosen.
    siblings: list[str] = Field(default_factory=list)

    def element(self, action_id: str) -> dict[str, Any]:
        return callback_button(meeting_label(self.meeting_title, self.meeting_no), action_id, self.style)


class InviteMore(Button):
    """The person picker on a result card: anyone in the chat may add people, as themselves."""

    kind: Literal["invite_more"] = "invite_more"
    meeting: Meeting
    outcomes: list[StoredOutcome]
    ceiling: int
    # Picking more than this many asks the clicker to confirm first, as a typed /invite does.
    confirm_above: int = 10

    @staticmethod
    def picked(event: CardActionEvent) -> list[str]:
        """The open_ids chosen in the result card's person picker (form field `people`)."""
        picked = (event.action.form_value or {}).get(PEOPLE_FIELD)
        if not isinstance(picked, list):
            return []
        people = [item for item in picked if is_open_id(item)]
        return list(dict.fromkeys(people))[:MAX_PICKED]

    def problem(self, event: CardActionEvent) -> Text | None:
        return None if self.picked(event) else PICK_SOMEONE

    def element(self, action_id: str) -> dict[str, Any]:
        return invite_more_form(action_id)
