"""vc/v1 meeting routes: list_by_no, get and invite (feishu-protocol §7), with Feishu's shapes, codes, limits.

Each handler: record and fire faults (gateway), judge the token, apply the API's frequency limit, validate
like Feishu, then let `MeetingBook` decide. Codes come from `replies`, never from literals here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from emulator import replies
from emulator.config import EmulatorConfig
from emulator.gateway import Gateway
from emulator.meetings import IN_MEETING, LEFT, RINGING, InviteCall, Meeting, MeetingBook
from emulator.ratelimit import PER_MINUTE, PER_SECOND, RateLimit
from emulator.replies import FeishuError, Refusal

# get: any one of these (doc); list_by_no: only the first.
READ_SCOPES = ("vc:meeting:readonly", "vc:meeting.meetingevent:read")
LIST_SCOPES = ("vc:meeting:readonly",)
INVITE_SCOPES = ("vc:meeting",)
# user_active_meeting: either one (feishu-protocol §14).
ACTIVE_SCOPES = ("vc:meeting.meetingevent:read", "vc:meeting.bot.join:write")
USER_ID_TYPES = ("open_id", "union_id", "user_id")
MAX_RANGE_SECONDS = 90 * 86400
MAX_INVITEES = 10
LIST_PAGE_SIZE_DEFAULT, LIST_PAGE_SIZE_MAX = 20, 50
# user_type values (feishu-protocol §7.1): 1 Feishu user … 7 SIP.
USER_TYPES = range(1, 8)


class VcRoutes:
    def __init__(self, config: EmulatorConfig, gateway: Gateway, book: MeetingBook) -> None:
        self._config = config
        self._gateway = gateway
        self._book = book
        clock = gateway.now
        # Per-app limits from the doc pages: list_by_no 100/min; get and invite 1000/min and 50/s.
        self.list_limit = RateLimit([(100, PER_MINUTE)], clock)
        self.get_limit = RateLimit([(50, PER_SECOND), (1000, PER_MINUTE)], clock)
        self.invite_limit = RateLimit([(50, PER_SECOND), (1000, PER_MINUTE)], clock)
        # user_active_meeting's limit is not published: the common one (UNCONFIRMED).
        self.active_limit = RateLimit([(50, PER_SECOND), (1000, PER_MINUTE)], clock)
        # The API is released to tenants gradually: when True this tenant is refused it, scope or not.
        self.active_meeting_refused = False

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/open-apis/vc/v1/bots/user_active_meeting", self.user_active_meeting),
            web.get("/open-apis/vc/v1/meetings/list_by_no", self.list_by_no),
            web.get("/open-apis/vc/v1/meetings/{meeting_id}", self.get),
            web.patch("/open-apis/vc/v1/meetings/{meeting_id}/invite", self.invite),
        ]

    # --- shared steps --------------------------------------------------------------------------------------

    # --- user_active_meeting -----------------------------------------------------------------------------

    async def user_active_meeting(self, request: web.Request) -> web.Response:
        """The meetings the user is in now (user token), or those the user shares with the app's bot
        (tenant token and `user_id`): our bot never joins meetings, so that list is empty."""
        try:
            await self._gateway.begin(request, "user_active_meeting")
            acting = self._gateway.authorize_any(request, self._config.app_scopes, ACTIVE_SCOPES)
            self.active_limit.check()
            if acting is None and not request.query.get("user_id"):
                raise Refusal(replies.field_violation("user_id", "is required with a tenant token"))
            if self.active_meeting_refused:
                # The CLI's troubleshooting: "user identity not supported" for tenants not yet given it.
                raise Refusal(
                    replies.error(replies.VC_NOT_SUPPORTED, detail="ext=user identity not supported")
                )
        except Refusal as refusal:
            return refusal.response
        found = self._book.active_for(acting) if acting is not None else []
        meetings = [
            {"meeting_id": m.meeting_id, "meeting_no": m.meeting_no, "meeting_title": m.topic} for m in found
        ]
        return replies.ok({"code": 0, "msg": "success", "data": {"meetings": meetings}})

    # --- list_by_no ----------------------------------------------------------------------------------------

    async def list_by_no(self, request: web.Request) -> web.Response:
        try:
            await self._gateway.begin(request, "list_by_no")
            self._gateway.authorize_any(request, self._config.app_scopes, LIST_SCOPES)
            self.list_limit.check()
            query = request.query
            for name in ("meeting_no", "start_time", "end_time"):
                if not query.get(name):
                    raise Refusal(replies.field_violation(name, "is required"))
            meeting_no, start, end = query["meeting_no"], query["start_time"], query["end_time"]
            page_size = _page_size(query.get("page_size"), LIST_PAGE_SIZE_DEFAULT, LIST_PAGE_SIZE_MAX)
            if len(meeting_no) != 9 or not meeting_no.isdigit():
                raise Refusal(replies.error(replies.VC_PARAM_ERROR, detail="ext=meeting_no must be 9 digits"))
            if not (start.isdigit() and end.isdigit()) or int(start) > int(end):
                raise Refusal(replies.error(replies.VC_PARAM_ERROR, detail="ext=invalid time range"))
            if int(end) - int(start) > MAX_RANGE_SECONDS:
                raise Refusal(replies.error(replies.VC_PARAM_ERROR, detail="ext=time range over 90 days"))
            offset = _offset(query.get("page_token"), replies.VC_PARAM_ERROR)
        except Refusal as refusal:
            return refusal.response
        found = self._book.by_number(meeting_no, int(start), int(end))
        page = found[offset : offset + page_size]
        data: dict[str, Any] = {
            "has_more": offset + page_size < len(found),
            "meeting_briefs": [
                {"id": m.meeting_id, "topic": m.topic, "url": m.url, "meeting_no": m.meeting_no} for m in page
            ],
        }
        if data["has_more"]:
            data["page_token"] = str(offset + page_size)
        return replies.ok({"code": 0, "msg": "success", "data": data})

    # --- get -----------------------------------------------------------------------------------------------

    async def get(self, request: web.Request) -> web.Response:
        try:
            await self._gateway.begin(request, "get_meeting")
            self._gateway.authorize_any(request, self._config.app_scopes, READ_SCOPES)
            self.get_limit.check()
            id_type = _id_type(request.query.get("user_id_type"))
            meeting_id = request.match_info["meeting_id"]
            if not meeting_id.isdigit():
                raise _invalid(replies.VC_PARAM_ERROR, "ext=invalid meeting_id")
            meeting = self._book.meetings.get(meeting_id)
            if meeting is None:
                raise Refusal(replies.error(replies.VC_DATA_NOT_EXIST))
        except Refusal as refusal:
            return refusal.response
        # Doc: "can only obtain your own meetings"; we let a user token read any meeting of the tenant
        # (what "own" means is UNCONFIRMED, and the invite checks who is in the meeting anyway).
        with_participants = request.query.get("with_participants") == "true"
        body = self._meeting_json(meeting, id_type, with_participants)
        return replies.ok({"code": 0, "msg": "success", "data": {"meeting": body}})

    def _meeting_json(self, meeting: Meeting, id_type: str, with_participants: bool) -> dict[str, Any]:
        # Times and counts are strings on the wire (doc example), though lark-oapi types some as int.
        body: dict[str, Any] = {
            "id": meeting.meeting_id,
            "topic": meeting.topic,
            "url": meeting.url,
            "meeting_no": meeting.meeting_no,
            "password": meeting.password,
            "create_time": str(meeting.start_time),
            "start_time": str(meeting.start_time),
            "host_user": {"id": self._id_of(meeting.host, id_type), "user_type": 1},
            "meeting_connect": False,
            "status": meeting.status,
            "participant_count": str(meeting.peak),
            "participant_count_accumulated": str(len(meeting.participants) + len(meeting.left)),
        }
        if meeting.end_time is not None:
            body["end_time"] = str(meeting.end_time)
        if with_participants:
            now = int(self._gateway.now())
            people: list[dict[str, Any]] = []
            for open_id, joined in meeting.participants.items():
                people.append(self._participant(meeting, open_id, id_type, IN_MEETING, joined, None, now))
            for open_id in sorted(meeting.ringing):
                people.append(self._participant(meeting, open_id, id_type, RINGING, None, None, now))
            for open_id, left_at in meeting.left.items():
                joined_at = meeting.first_joined.get(open_id)
                people.append(self._participant(meeting, open_id, id_type, LEFT, joined_at, left_at, now))
            # Rung and never came (declined, or the ringing ran out): "not in the meeting", no join time.
            for open_id, at in meeting.unanswered.items():
                people.append(self._participant(meeting, open_id, id_type, LEFT, None, at, now))
            body["participants"] = people
        return body

    def _participant(
        self,
        meeting: Meeting,
        open_id: str,
        id_type: str,
        status: int,
        joined: int | None,
        left_at: int | None,
        now: int,
    ) -> dict[str, Any]:
        person: dict[str, Any] = {
            "id": self._id_of(open_id, id_type),
            "user_type": 1,
            "is_host": open_id == meeting.host,
            "is_cohost": False,
            "is_external": self._config.user(open_id) is None,
            "status": status,
        }
        if joined is not None:
            person["first_join_time"] = str(joined)
            person["in_meeting_duration"] = str(max(0, (left_at or now) - joined))
        if left_at is not None:
            person["final_leave_time"] = str(left_at)
        return person

    def _id_of(self, open_id: str, id_type: str) -> str:
        user = self._config.user(open_id)
        if user is None or id_type == "open_id":
            return open_id
        return str(getattr(user, id_type)) or open_id

    def _open_id_of(self, sent: str, id_type: str) -> str | None:
        if id_type == "open_id":
            return sent if self._config.user(sent) is not None else None
        user = next((u for u in self._config.users if getattr(u, id_type) == sent), None)
        return user.open_id if user is not None else None

    # --- invite --------------------------------------------------------------------------------------------

    async def invite(self, request: web.Request) -> web.Response:
        try:
            _, body = await self._gateway.begin(request, "invite")
            operator = self._gateway.users.require_user_token(request, scopes=INVITE_SCOPES).open_id
        except Refusal as refusal:
            return refusal.response
        meeting_id = request.match_info["meeting_id"]
        sent = _invitee_ids(body)
        at = self._gateway.now()
        try:
            self.invite_limit.check()
        except Refusal as refusal:
            self._book.invite_calls.append(
                InviteCall(meeting_id, sent, operator, at, code=replies.RATE_LIMITED.code)
            )
            return refusal.response
        try:
            id_type = _id_type(request.query.get("user_id_type"))
            invitees = _parse_invitees(body)
            if not meeting_id.isdigit():
                raise _invalid(replies.VC_PARAM_ERROR, "ext=invalid meeting_id")
        except _Invalid as invalid:
            self._book.invite_calls.append(InviteCall(meeting_id, sent, operator, at, code=invalid.code))
            return invalid.response
        resolved = [(who, self._open_id_of(who, id_type)) for who, _ in invitees]
        outcome = self._book.invite(meeting_id, operator, resolved)
        if isinstance(outcome, FeishuError):
            self._book.invite_calls.append(InviteCall(meeting_id, sent, operator, at, code=outcome.code))
            return replies.error(outcome)
        self._book.invite_calls.append(InviteCall(meeting_id, sent, operator, at, results=tuple(outcome)))
        user_types = dict(invitees)
        results = [{"id": who, "user_type": user_types[who], "status": status} for who, status in outcome]
        return replies.ok({"code": 0, "msg": "success", "data": {"invite_results": results}})


class _Invalid(Refusal):
    """A refusal that remembers its code, for the invite record."""

    def __init__(self, failure: FeishuError, response: web.Response) -> None:
        super().__init__(response)
        self.code = failure.code


def _invalid(failure: FeishuError, detail: str) -> _Invalid:
    return _Invalid(failure, replies.error(failure, detail=detail))


def _violation(field: str, description: str) -> _Invalid:
    return _Invalid(replies.FIELD_VALIDATION_FAILED, replies.field_violation(field, description))


def _invitee_ids(body: Any) -> tuple[str, ...]:
    """The ids a call named, whatever its shape, for the invite record."""
    items = body.get("invitees") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return ()
    return tuple(str(item.get("id")) for item in items if isinstance(item, dict) and "id" in item)


def _parse_invitees(body: Any) -> list[tuple[str, int]]:
    if not isinstance(body, dict) or not isinstance(body.get("invitees"), list):
        raise _violation("invitees", "is required and must be a list")
    items = body["invitees"]
    if not 1 <= len(items) <= MAX_INVITEES:
        raise _invalid(replies.VC_PARAM_ERROR, f"ext=invitees must hold 1 to {MAX_INVITEES} people")
    parsed: list[tuple[str, int]] = []
    for item in items:
        who = item.get("id") if isinstance(item, dict) else None
        user_type = item.get("user_type", 1) if isinstance(item, dict) else None
        if not isinstance(who, str) or not who or type(user_type) is not int or user_type not in USER_TYPES:
            raise _invalid(replies.VC_PARAM_ERROR, "ext=each invitee needs an id and a user_type from 1 to 7")
        parsed.append((who, user_type))
    return parsed


def _id_type(value: str | None) -> str:
    if value is None or value == "":
        return "open_id"
    if value not in USER_ID_TYPES:
        raise _violation("user_id_type", "must be one of " + "|".join(USER_ID_TYPES))
    return value


def _page_size(value: str | None, default: int, maximum: int) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise Refusal(replies.field_violation("page_size", f"must be an integer from 1 to {maximum}"))
    return int(value)


def _offset(token: str | None, failure: FeishuError) -> int:
    if token is None or token == "":
        return 0
    if not token.isdigit():
        raise Refusal(replies.error(failure, detail="ext=invalid page_token"))
    return int(token)
