"""The meetings of the emulated tenant as they change: who is in, who is ringing, what was invited.

No HTTP here: `vc_routes` parses and authorizes, this module decides. The decision table (whole-call codes
versus per-invitee status 2) lives in `replies`, next to the codes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from emulator import replies
from emulator.config import DirectoryMeeting, EmulatorConfig
from emulator.replies import FeishuError

INVITED = 1
FAILED = 2
# Participant status in GET /meetings/:id (feishu-protocol §7.2).
IN_MEETING = 2
RINGING = 3
LEFT = 4


@dataclass
class Meeting:
    """One meeting's live state. `participants` are in it now; `ringing` were invited and not answered."""

    meeting_id: str
    meeting_no: str
    topic: str
    host: str
    status: int
    start_time: int
    end_time: int | None
    locked: bool
    capacity: int
    busy: set[str]
    password: str
    participants: dict[str, int] = field(default_factory=dict)  # open_id → first join time
    ringing: dict[str, int] = field(default_factory=dict)  # open_id → when the ringing began
    left: dict[str, int] = field(default_factory=dict)  # open_id → leave time
    # Rung and never joined: declined, or the ringing ran out (status 4 without a join time).
    unanswered: dict[str, int] = field(default_factory=dict)
    first_joined: dict[str, int] = field(default_factory=dict)  # kept after leaving
    # What invited people will do, and when (time, open_id, answer): see MeetingBook.answer_when_invited.
    planned: list[tuple[int, str, Answer]] = field(default_factory=list)
    peak: int = 0

    @property
    def url(self) -> str:
        return f"https://vc.feishu.cn/j/{self.meeting_no}"

    def join(self, open_id: str, at: int) -> None:
        self.ringing.pop(open_id, None)
        self.left.pop(open_id, None)
        self.unanswered.pop(open_id, None)
        self.participants.setdefault(open_id, at)
        self.first_joined.setdefault(open_id, at)
        self.peak = max(self.peak, len(self.participants))

    def decline(self, open_id: str, at: int) -> None:
        if self.ringing.pop(open_id, None) is not None:
            self.unanswered[open_id] = at

    def leave(self, open_id: str, at: int) -> None:
        if self.participants.pop(open_id, None) is not None:
            self.left[open_id] = at
        self.decline(open_id, at)

    def settle(self, now: int, ring_seconds: float) -> None:
        """Bring the meeting up to `now`: planned answers happen, unanswered ringing stops."""
        due = [plan for plan in self.planned if plan[0] <= now]
        self.planned = [plan for plan in self.planned if plan[0] > now]
        for at, open_id, answer in sorted(due):
            if answer == "join" and open_id in self.ringing and self.status == 2:
                self.join(open_id, at)
            elif answer == "decline":
                self.decline(open_id, at)
            elif answer == "leave":
                self.leave(open_id, at)
        for open_id, rang_at in list(self.ringing.items()):
            if now - rang_at >= ring_seconds:
                self.decline(open_id, int(rang_at + ring_seconds))

    def as_json(self) -> dict[str, Any]:
        return {
            "meeting_id": self.meeting_id,
            "meeting_no": self.meeting_no,
            "topic": self.topic,
            "url": self.url,
            "host": self.host,
            "status": self.status,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "locked": self.locked,
            "capacity": self.capacity,
            "busy": sorted(self.busy),
            "participants": list(self.participants),
            "ringing": sorted(self.ringing),
        }


@dataclass(frozen=True)
class InviteCall:
    """One call to the invite endpoint by an authenticated user. `code` is 0 when the call succeeded
    (some invitees may still have failed: see `results`)."""

    meeting_id: str
    invitee_ids: tuple[str, ...]
    operator: str
    at: float
    code: int = 0
    results: tuple[tuple[str, int], ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "meeting_id": self.meeting_id,
            "invitee_ids": list(self.invitee_ids),
            "operator": self.operator,
            "at": self.at,
            "code": self.code,
            "results": [{"id": who, "status": status} for who, status in self.results],
        }


@dataclass
class _Forced:
    code: int | None  # None: per-invitee status 2
    left: int | None  # None: until cleared


Answer = Literal["join", "decline", "leave"]


class MeetingBook:
    def __init__(self, config: EmulatorConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._meetings: dict[str, Meeting] | None = None
        self._forced: dict[str, _Forced] = {}
        self._answers: dict[str, tuple[Answer, float, Answer | None, float]] = {}
        self.invite_calls: list[InviteCall] = []

    # --- the directory, materialized on first use ------------------------------------------------------

    @property
    def meetings(self) -> dict[str, Meeting]:
        if self._meetings is None:
            # Late, so a test can replace the emulator clock after construction and still find the
            # default meetings around "now".
            self._meetings = {}
            for meeting in self._config.meetings:
                self.add(meeting)
        now = int(self._clock())
        for live in self._meetings.values():
            live.settle(now, self._config.ring_seconds)
        return self._meetings

    def answer_when_invited(
        self,
        open_id: str,
        answer: Answer,
        after_seconds: float,
        then: Answer | None = None,
        then_after: float = 0,
    ) -> None:
        """From now on, `open_id` answers every invitation with `answer` `after_seconds` after it rings
        (and, with `then`, does that `then_after` seconds later: join, then leave)."""
        self._answers[open_id] = (answer, after_seconds, then, then_after)

    def clear_answers(self) -> None:
        self._answers.clear()

    def add(self, spec: DirectoryMeeting) -> Meeting:
        book = self._meetings if self._meetings is not None else self.meetings
        if spec.meeting_id in book:
            raise ValueError(f"meeting {spec.meeting_id} already exists")
        now = int(self._clock())
        start = spec.start_time if spec.start_time is not None else now + spec.start_offset
        end = spec.end_time
        if end is None and spec.end_offset is not None:
            end = now + spec.end_offset
        if spec.status == 3 and end is None:
            end = max(start, now)
        meeting = Meeting(
            meeting_id=spec.meeting_id,
            meeting_no=spec.meeting_no,
            topic=spec.topic,
            host=spec.host,
            status=spec.status,
            start_time=start,
            end_time=end if spec.status == 3 else None,
            locked=spec.locked,
            capacity=spec.capacity,
            busy=set(spec.busy),
            password=spec.password,
        )
        for open_id in spec.participants:
            meeting.join(open_id, start)
        book[spec.meeting_id] = meeting
        return meeting

    def get(self, meeting_id: str) -> Meeting:
        meeting = self.meetings.get(meeting_id)
        if meeting is None:
            raise KeyError(f"no meeting {meeting_id}")
        return meeting

    def end(self, meeting_id: str) -> None:
        meeting = self.get(meeting_id)
        now = int(self._clock())
        meeting.status = 3
        meeting.end_time = now
        for open_id in meeting.participants:
            meeting.left[open_id] = now
        meeting.participants.clear()
        meeting.ringing.clear()

    def leave(self, meeting_id: str, open_id: str) -> None:
        self.get(meeting_id).leave(open_id, int(self._clock()))

    def decline(self, meeting_id: str, open_id: str) -> None:
        self.get(meeting_id).decline(open_id, int(self._clock()))

    def active_for(self, open_id: str) -> list[Meeting]:
        """The meetings in progress that `open_id` is in right now, newest first (user_active_meeting)."""
        live = [m for m in self.meetings.values() if m.status == 2 and open_id in m.participants]
        return sorted(live, key=lambda m: (m.start_time, m.meeting_id), reverse=True)

    def by_number(self, meeting_no: str, start_time: int, end_time: int) -> list[Meeting]:
        found = [
            m
            for m in self.meetings.values()
            if m.meeting_no == meeting_no and start_time <= m.start_time <= end_time
        ]
        return sorted(found, key=lambda m: (m.start_time, m.meeting_id))

    # --- forced failures ---------------------------------------------------------------------------------

    def fail_invitee(self, open_id: str, code: int | None, times: int | None) -> None:
        self._forced[open_id] = _Forced(code, times)

    def clear_invitee_failures(self) -> None:
        self._forced.clear()

    def _forced_for(self, open_id: str) -> _Forced | None:
        forced = self._forced.get(open_id)
        if forced is not None and forced.left is not None:
            forced.left -= 1
            if forced.left <= 0:
                del self._forced[open_id]
        return forced

    # --- invite ------------------------------------------------------------------------------------------

    def invite(
        self, meeting_id: str, operator: str, invitees: Sequence[tuple[str, str | None]]
    ) -> FeishuError | list[tuple[str, int]]:
        """`invitees`: (id as sent, open_id or None when it names nobody in the tenant). Returns the
        whole-call error, or each invitee's status (decision table in `replies`)."""
        meeting = self.meetings.get(meeting_id)
        if meeting is None:
            return replies.VC_MEETING_NOT_EXIST
        forced = [self._forced_for(open_id) for _, open_id in invitees if open_id is not None]
        forced_code = next((f.code for f in forced if f is not None and f.code is not None), None)
        if forced_code is not None:
            return replies.VC_ERRORS.get(forced_code) or FeishuError(forced_code, "emulated failure", 400)
        if meeting.status != 2:
            return replies.VC_MEETING_STATUS
        if operator not in meeting.participants:
            return replies.VC_OPERATOR_NOT_IN_MEETING
        if any(open_id == operator for _, open_id in invitees):
            return replies.VC_CANNOT_OPERATE_SELF
        if meeting.locked:
            return replies.VC_MEETING_LOCKED
        if len(meeting.participants) + len(meeting.ringing) >= meeting.capacity:
            return replies.VC_MEETING_FULL
        failing = {who for (_, who), f in zip(_known(invitees), forced, strict=True) if f is not None}
        results: list[tuple[str, int]] = []
        for sent_id, open_id in invitees:
            room = len(meeting.participants) + len(meeting.ringing) < meeting.capacity
            if (
                open_id is None
                or open_id in failing
                or open_id in meeting.busy
                or open_id in meeting.participants
                or (open_id not in meeting.ringing and not room)
            ):
                results.append((sent_id, FAILED))
                continue
            now = int(self._clock())
            meeting.ringing.setdefault(open_id, now)
            meeting.unanswered.pop(open_id, None)
            plan = self._answers.get(open_id)
            if plan is not None:
                answer, after, then, then_after = plan
                meeting.planned.append((now + int(after), open_id, answer))
                if then is not None:
                    meeting.planned.append((now + int(after + then_after), open_id, then))
            results.append((sent_id, INVITED))
        return results


def _known(invitees: Sequence[tuple[str, str | None]]) -> list[tuple[str, str]]:
    return [(sent, open_id) for sent, open_id in invitees if open_id is not None]
