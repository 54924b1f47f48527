"""Typed request and response bodies of the Open API calls the bot makes.

Response models ignore fields they do not name: Feishu adds fields without notice, and a new field must
never break the bot. Requests are strict: we only send what we mean.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MsgType = Literal[
    "text",
    "post",
    "interactive",
    "image",
    "file",
    "audio",
    "media",
    "sticker",
    "share_chat",
    "share_user",
    "system",
]
ReceiveIdType = Literal["open_id", "union_id", "user_id", "email", "chat_id"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiResponse(BaseModel):
    """Every Open API answer carries `code` (0 is success) and `msg`."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    code: int
    msg: str = ""


# --- auth/v3 -------------------------------------------------------------------------------------------


class TenantAccessTokenRequest(_Request):
    app_id: str
    app_secret: str


class TenantAccessTokenResponse(ApiResponse):
    # Top level, not under `data` (feishu-protocol §5).
    tenant_access_token: str = Field(min_length=1)
    expire: int = Field(gt=0)


# --- bot/v3 --------------------------------------------------------------------------------------------


class BotInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    open_id: str = Field(min_length=1)
    app_name: str = ""
    activate_status: int = 0
    avatar_url: str = ""


class BotInfoResponse(ApiResponse):
    # Top level `bot`, not `data` (feishu-protocol §2).
    bot: BotInfo


# --- im/v1 messages ------------------------------------------------------------------------------------


class MessageReplyRequest(_Request):
    content: str
    msg_type: MsgType
    reply_in_thread: bool = False
    # Feishu delivers at most one message per uuid within an hour: what makes a retried reply safe.
    uuid: str | None = Field(default=None, max_length=50)


class MessageCreateRequest(_Request):
    receive_id: str
    content: str
    msg_type: MsgType
    uuid: str | None = Field(default=None, max_length=50)


class MessageSender(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    id: str = ""
    id_type: str = ""
    sender_type: str = ""
    tenant_key: str = ""


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    message_id: str
    root_id: str | None = None
    parent_id: str | None = None
    thread_id: str | None = None
    msg_type: str = ""
    create_time: str = ""
    update_time: str = ""
    chat_id: str = ""
    sender: MessageSender | None = None


class MessageResponse(ApiResponse):
    data: Message


def card_content(card: dict[str, Any]) -> str:
    """The `content` string of an interactive message: the card JSON, encoded once more as a string."""
    return json.dumps(card, ensure_ascii=False, separators=(",", ":"))


# --- authen (user OAuth, feishu-protocol §6) ----------------------------------------------------------------


class OAuthTokenRequest(_Request):
    """Body of `POST /open-apis/authen/v2/oauth/token`, for both grants."""

    grant_type: Literal["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"]
    client_id: str
    client_secret: str
    code: str | None = None
    device_code: str | None = None
    redirect_uri: str | None = None
    code_verifier: str | None = None
    refresh_token: str | None = None
    scope: str | None = None


class OAuthTokenResponse(ApiResponse):
    # Top level, RFC 6749 style, not under `data`.
    access_token: str = Field(min_length=1)
    expires_in: int = Field(gt=0)
    # Only when `offline_access` was granted.
    refresh_token: str | None = None
    refresh_token_expires_in: int | None = None
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret
    scope: str = ""


class DeviceAuthorization(BaseModel):
    """Answer of `POST {accounts}/oauth/v1/device_authorization` (feishu-protocol §10), RFC 8628 fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    device_code: str = Field(min_length=1, repr=False)
    user_code: str = ""
    verification_uri: str = ""
    verification_uri_complete: str = Field(min_length=1)
    # Fallbacks from the official CLI when Feishu leaves them out.
    expires_in: int = Field(default=240, gt=0, le=3600)
    interval: int = Field(default=5, ge=1, le=60)


class UserInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    open_id: str = Field(min_length=1)
    name: str = ""
    en_name: str = ""
    union_id: str = ""
    tenant_key: str = ""
    email: str | None = None


class UserInfoResponse(ApiResponse):
    data: UserInfo


# --- ephemeral cards and card updates -------------------------------------------------------------------


class EphemeralSendRequest(_Request):
    """A card in a group that only `open_id` sees (仅特定人可见). The card is an object, not a string."""

    chat_id: str
    open_id: str
    msg_type: Literal["interactive"] = "interactive"
    card: dict[str, Any]


class EphemeralMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    message_id: str


class EphemeralSendResponse(ApiResponse):
    data: EphemeralMessage


class EphemeralDeleteRequest(_Request):
    message_id: str


class MessagePatchRequest(_Request):
    content: str


# --- vc/v1 meetings (feishu-protocol §7) --------------------------------------------------------------------


class MeetingBrief(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    id: str
    topic: str = ""
    url: str = ""
    meeting_no: str = ""


class MeetingListByNo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    has_more: bool = False
    page_token: str | None = None
    meeting_briefs: list[MeetingBrief] = []


class MeetingListByNoResponse(ApiResponse):
    data: MeetingListByNo


class ActiveMeeting(BaseModel):
    """One meeting the user is in now, as user_active_meeting lists it (feishu-protocol §14)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    meeting_id: str
    meeting_no: str = ""
    meeting_title: str = ""


class ActiveMeetings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    meetings: list[ActiveMeeting] = []


class ActiveMeetingsResponse(ApiResponse):
    data: ActiveMeetings = ActiveMeetings()


# A participant's status (feishu-protocol §7.3): 1 calling, 2 in the meeting, 3 ringing, 4 not in it.
PARTICIPANT_IN_MEETING = 2
PARTICIPANT_RINGING = frozenset({1, 3})


class MeetingParticipant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    id: str = ""
    user_type: int = 0
    # 1 calling, 2 in the meeting, 3 ringing, 4 not in the meeting (left, declined, never answered).
    status: int = 0
    # Unix seconds as strings on the wire; empty for someone who never joined.
    first_join_time: str = ""
    final_leave_time: str = ""


class Meeting(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    id: str
    topic: str = ""
    url: str = ""
    meeting_no: str = ""
    start_time: str = ""
    end_time: str = ""
    # 1 calling, 2 in progress, 3 ended.
    status: int = 0
    participants: list[MeetingParticipant] = []

    @property
    def in_progress(self) -> bool:
        return self.status == 2


class MeetingHolder(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    meeting: Meeting


class MeetingResponse(ApiResponse):
    data: MeetingHolder


class MeetingUser(_Request):
    id: str
    # 1: a Feishu user.
    user_type: int = 1


class InviteMeetingRequest(_Request):
    invitees: list[MeetingUser] = Field(min_length=1, max_length=10)


class InviteResult(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    id: str
    user_type: int = 1
    # 1 invited, 2 failed.
    status: int = 0


class InviteResults(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    invite_results: list[InviteResult] = []


class InviteMeetingResponse(ApiResponse):
    data: InviteResults = InviteResults()


# --- im/v1 chat members, contact/v3 batch_get_id (feishu-protocol §8) ---------------------------------------


class ChatMember(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    # Tolerated when missing: one odd item must not make a whole page unreadable.
    member_id: str | None = None
    member_id_type: str = "open_id"
    name: str = ""
    tenant_key: str = ""


class ChatMembers(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    items: list[ChatMember] = []
    page_token: str | None = None
    has_more: bool = False


class ChatMembersResponse(ApiResponse):
    data: ChatMembers


class BatchGetIdRequest(_Request):
    emails: list[str] = Field(default=[], max_length=50)
    include_resigned: bool = False


class ContactUser(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    # Absent when the e-mail matches nobody the app may see.
    user_id: str | None = None
    email: str | None = None


class ContactUsers(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    user_list: list[ContactUser] = []


class BatchGetIdResponse(ApiResponse):
    data: ContactUsers
