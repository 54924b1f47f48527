"""The Open API calls the bot makes, typed end to end (feishu-protocol §2–§8)."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import aiohttp
from pydantic import ValidationError

from bot.feishu.endpoints import (
    BOT_INFO,
    CHAT_MEMBERS,
    CONTACT_BATCH_GET_ID,
    EPHEMERAL_DELETE,
    EPHEMERAL_SEND,
    MEETING_GET,
    MEETING_INVITE,
    MEETING_LIST_BY_NO,
    MESSAGE_CREATE,
    MESSAGE_PATCH,
    MESSAGE_REPLY,
    OAUTH_TOKEN,
    PER_CHAT_MESSAGES,
    PER_MESSAGE_UPDATES,
    USER_ACTIVE_MEETING,
    USER_INFO,
)
from bot.feishu.errors import UNAVAILABLE, FeishuApiError
from bot.feishu.models import (
    ActiveMeeting,
    ActiveMeetingsResponse,
    ApiResponse,
    BatchGetIdRequest,
    BatchGetIdResponse,
    BotInfo,
    BotInfoResponse,
    ChatMembers,
    ChatMembersResponse,
    DeviceAuthorization,
    EphemeralDeleteRequest,
    EphemeralSendRequest,
    EphemeralSendResponse,
    InviteMeetingRequest,
    InviteMeetingResponse,
    InviteResult,
    Meeting,
    MeetingListByNo,
    MeetingListByNoResponse,
    MeetingResponse,
    Message,
    MessageCreateRequest,
    MessagePatchRequest,
    MessageReplyRequest,
    MessageResponse,
    OAuthTokenRequest,
    OAuthTokenResponse,
    ReceiveIdType,
    UserInfo,
    UserInfoResponse,
)
from bot.feishu.transport import FeishuTransport, Retry

__all__ = ["FeishuClient", "Retry"]


class FeishuClient(FeishuTransport):
    async def bot_info(self) -> BotInfo:
        response = await self.call(BOT_INFO, BotInfoResponse)
        return response.bot

    async def reply_message(self, message_id: str, body: MessageReplyRequest, *, chat_id: str) -> Message:
        response = await self.call(
            MESSAGE_REPLY,
            MessageResponse,
            path_params={"message_id": message_id},
            body=body,
            extra_limits=[(f"chat:{chat_id}", PER_CHAT_MESSAGES)],
        )
        return response.data

    async def send_message(
        self, receive_id_type: ReceiveIdType, body: MessageCreateRequest, *, chat_id: str | None = None
    ) -> Message:
        extra = [(f"chat:{chat_id}", PER_CHAT_MESSAGES)] if chat_id else []
        response = await self.call(
            MESSAGE_CREATE,
            MessageResponse,
            params={"receive_id_type": receive_id_type},
            body=body,
            extra_limits=extra,
        )
        return response.data

    async def patch_message(self, message_id: str, body: MessagePatchRequest) -> None:
        """Replace a shared card's content for everyone who sees it."""
        await self.call(
            MESSAGE_PATCH,
            ApiResponse,
            path_params={"message_id": message_id},
            body=body,
            extra_limits=[(f"message:{message_id}", PER_MESSAGE_UPDATES)],
        )

    async def send_ephemeral(self, body: EphemeralSendRequest) -> str:
        response = await self.call(
            EPHEMERAL_SEND,
            EphemeralSendResponse,
            body=body,
            extra_limits=[(f"chat:{body.chat_id}", PER_CHAT_MESSAGES)],
        )
        return response.data.message_id

    async def delete_ephemeral(self, message_id: str) -> None:
        await self.call(EPHEMERAL_DELETE, ApiResponse, body=EphemeralDeleteRequest(message_id=message_id))

    # --- meetings, members, contacts ------------------------------------------------------------------

    async def list_meetings_by_no(
        self,
        meeting_no: str,
        *,
        start_time: int,
        end_time: int,
        user_access_token: str,
        page_token: str | None = None,
    ) -> MeetingListByNo:
        params = {
            "meeting_no": meeting_no,
            "start_time": str(start_time),
            "end_time": str(end_time),
            "page_size": "50",
        }
        if page_token:
            params["page_token"] = page_token
        response = await self.call(
            MEETING_LIST_BY_NO,
            MeetingListByNoResponse,
            params=params,
            auth="user",
            user_access_token=user_access_token,
        )
        return response.data

    async def user_active_meetings(
        self, *, user_access_token: str | None = None, open_id: str | None = None
    ) -> list[ActiveMeeting]:
        """The meetings this token's user is attending right now (feishu-protocol §14). Without a user
        token, as the app: the meetings `open_id` shares with this app's bot (only `invite-bot check`)."""
        if user_access_token is not None:
            response = await self.call(
                USER_ACTIVE_MEETING, ActiveMeetingsResponse, auth="user", user_access_token=user_access_token
            )
        else:
            params = {"user_id": open_id or "", "user_id_type": "open_id"}
            response = await self.call(USER_ACTIVE_MEETING, ActiveMeetingsResponse, params=params)
        return response.data.meetings

    async def get_meeting(
        self,
        meeting_id: str,
        *,
        user_access_token: str,
        with_participants: bool = False,
        background: bool = False,
    ) -> Meeting:
        response = await self.call(
            MEETING_GET,
            MeetingResponse,
            path_params={"meeting_id": meeting_id},
            params={"with_participants": "true", "user_id_type": "open_id"} if with_participants else None,
            auth="user",
            user_access_token=user_access_token,
            background=background,
        )
        return response.data.meeting

    async def invite_to_meeting(
        self, meeting_id: str, body: InviteMeetingRequest, *, user_access_token: str
    ) -> list[InviteResult]:
        """Invite up to 10 people; only a user token works, and that user must be in the meeting."""
        response = await self.call(
            MEETING_INVITE,
            InviteMeetingResponse,
            path_params={"meeting_id": meeting_id},
            params={"user_id_type": "open_id"},
            body=body,
            auth="user",
            user_access_token=user_access_token,
            # Repeating an invitation whose answer was lost would ring people twice.
            retry="rate_limited",
        )
        return response.data.invite_results

    async def chat_members(self, chat_id: str, *, page_token: str | None = None) -> ChatMembers:
        params = {"member_id_type": "open_id", "page_size": "100"}
        if page_token:
            params["page_token"] = page_token
        response = await self.call(
            CHAT_MEMBERS, ChatMembersResponse, path_params={"chat_id": chat_id}, params=params
        )
        return response.data

    async def open_ids_by_email(self, emails: list[str]) -> dict[str, str]:
        """E-mail → open_id for the addresses Feishu could match (at most 50 per call)."""
        response = await self.call(
            CONTACT_BATCH_GET_ID,
            BatchGetIdResponse,
            params={"user_id_type": "open_id"},
            body=BatchGetIdRequest(emails=emails),
        )
        return {
            user.email.lower(): user.user_id
            for user in response.data.user_list
            if user.email and user.user_id
        }

    async def device_authorization(self, accounts_url: str, scopes: tuple[str, ...]) -> DeviceAuthorization:
        """Start an OAuth device authorization (feishu-protocol §10): form-encoded, the app's credentials
        both as HTTP Basic and in the form (proxies have been seen to strip the header)."""
        secret = self.app_secret
        form = {"client_id": self.app_id, "client_secret": secret, "scope": " ".join(scopes)}
        basic = base64.b64encode(f"{quote(self.app_id)}:{quote(secret)}".encode()).decode()
        try:
            async with self._session.post(
                accounts_url.rstrip("/") + DEVICE_AUTHORIZATION_PATH,
                data=form,
                headers={"Authorization": f"Basic {basic}"},
            ) as response:
                status, raw = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise FeishuApiError(UNAVAILABLE, type(error).__name__, endpoint=_DEVICE) from None
        try:
            return DeviceAuthorization.model_validate_json(raw)
        except ValidationError:
            body = _json_or_none(raw) or {}
            found = body.get("code")
            code = found if isinstance(found, int) else UNAVAILABLE
            said = str(body.get("error_description") or body.get("error") or f"HTTP {status}")
            raise FeishuApiError(code, said[:200], http_status=status, endpoint=_DEVICE) from None

    async def oauth_token(self, body: OAuthTokenRequest) -> OAuthTokenResponse:
        """Exchange an authorization code or a refresh token (no bearer token: client credentials)."""
        return await self.call(OAUTH_TOKEN, OAuthTokenResponse, body=body, auth=None, retry="never")

    async def user_info(self, user_access_token: str) -> UserInfo:
        response = await self.call(
            USER_INFO, UserInfoResponse, auth="user", user_access_token=user_access_token
        )
        return response.data


DEVICE_AUTHORIZATION_PATH = "/oauth/v1/device_authorization"
_DEVICE = "oauth.device_authorization"


def _json_or_none(raw: bytes) -> dict[str, object] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
