"""The Open API calls the bot makes, with Feishu's published rate limits for each (feishu-protocol §4–§7)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.feishu.ratelimit import Limit


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    # Feishu's published per-app limits for this call (feishu-protocol §4, §7).
    limits: tuple[Limit, ...] = ()


# Most Open API calls allow 50 per second and 1000 per minute per app.
PER_APP = (Limit(50, 1.0), Limit(1000, 60.0))

TENANT_TOKEN = Endpoint("auth.tenant_access_token", "POST", "/open-apis/auth/v3/tenant_access_token/internal")
BOT_INFO = Endpoint("bot.info", "GET", "/open-apis/bot/v3/info", PER_APP)
MESSAGE_REPLY = Endpoint(
    "im.message.reply",
    "POST",
    "/open-apis/im/v1/messages/{message_id}/reply",
    PER_APP,
)
MESSAGE_CREATE = Endpoint("im.message.create", "POST", "/open-apis/im/v1/messages", PER_APP)
MESSAGE_PATCH = Endpoint("im.message.patch", "PATCH", "/open-apis/im/v1/messages/{message_id}", PER_APP)
EPHEMERAL_SEND = Endpoint("ephemeral.send", "POST", "/open-apis/ephemeral/v1/send", PER_APP)
EPHEMERAL_DELETE = Endpoint("ephemeral.delete", "POST", "/open-apis/ephemeral/v1/delete", PER_APP)
# Feishu takes at most 5 updates per second to one message (feishu-protocol §3.3).
PER_MESSAGE_UPDATES = (Limit(5, 1.0),)
OAUTH_TOKEN = Endpoint("authen.oauth.token", "POST", "/open-apis/authen/v2/oauth/token", PER_APP)
USER_INFO = Endpoint("authen.user_info", "GET", "/open-apis/authen/v1/user_info", PER_APP)
# Feishu allows 5 messages per second in one chat, shared by every bot in it (feishu-protocol §4.1).
PER_CHAT_MESSAGES = (Limit(5, 1.0),)
MEETING_LIST_BY_NO = Endpoint(
    # Only 100 calls a minute per app: results are cached by the caller.
    "vc.meeting.list_by_no",
    "GET",
    "/open-apis/vc/v1/meetings/list_by_no",
    (Limit(100, 60.0),),
)
# The meetings the token's user is in now (feishu-protocol §14); its limit is not published. Either
# scope lets a user token call it; the first is the one the bot asks for.
ACTIVE_MEETING_SCOPE = "vc:meeting.meetingevent:read"
ACTIVE_MEETING_SCOPES = frozenset({ACTIVE_MEETING_SCOPE, "vc:meeting.bot.join:write"})
USER_ACTIVE_MEETING = Endpoint(
    "vc.bot.user_active_meeting", "GET", "/open-apis/vc/v1/bots/user_active_meeting", PER_APP
)
MEETING_GET = Endpoint("vc.meeting.get", "GET", "/open-apis/vc/v1/meetings/{meeting_id}", PER_APP)
MEETING_INVITE = Endpoint(
    "vc.meeting.invite", "PATCH", "/open-apis/vc/v1/meetings/{meeting_id}/invite", PER_APP
)
CHAT_MEMBERS = Endpoint("im.chat.members", "GET", "/open-apis/im/v1/chats/{chat_id}/members", PER_APP)
CONTACT_BATCH_GET_ID = Endpoint(
    "contact.user.batch_get_id", "POST", "/open-apis/contact/v3/users/batch_get_id", PER_APP
)
