"""The Open API routes the bot calls, answering with Feishu's real shapes, codes and statuses.

Each handler goes: record the request, fire a scripted fault if one is armed, check the tenant token,
validate the body like Feishu, then act. Codes and statuses come from `replies`, never from literals here.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from emulator import replies
from emulator.config import EmulatorConfig
from emulator.gateway import Gateway, RecordedRequest, feishu_not_found
from emulator.messages import KnownMessage, MessageStore, SentMessage
from emulator.replies import Refusal as _Invalid

__all__ = ["OpenApi", "RecordedRequest", "feishu_not_found"]

REPLY_MSG_TYPES = frozenset(
    {"text", "post", "image", "file", "audio", "media", "sticker", "interactive", "share_chat", "share_user"}
)
# `system` messages can only be sent, and only into p2p chats (feishu-protocol §4.2).
SEND_MSG_TYPES = REPLY_MSG_TYPES | {"system"}
RECEIVE_ID_TYPES = frozenset({"open_id", "union_id", "user_id", "email", "chat_id"})
# Request-body limits (feishu-protocol §4.1): 150 KB for text, 30 KB for cards and rich text.
TEXT_LIMIT_BYTES = 150 * 1024
CARD_POST_LIMIT_BYTES = 30 * 1024
UUID_MAX_LENGTH = 50


class OpenApi:
    def __init__(self, config: EmulatorConfig, gateway: Gateway, store: MessageStore) -> None:
        self._config = config
        self._gateway = gateway
        self._tokens = gateway.tokens
        self._store = store

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/open-apis/auth/v3/tenant_access_token/internal", self.tenant_token),
            # Feishu also answers the documented trailing-slash spelling (captured).
            web.post("/open-apis/auth/v3/tenant_access_token/internal/", self.tenant_token),
            web.get("/open-apis/bot/v3/info", self.bot_info),
            web.post("/open-apis/im/v1/messages/{message_id}/reply", self.reply),
            web.post("/open-apis/im/v1/messages", self.send),
        ]

    # --- shared steps --------------------------------------------------------------------------------

    async def _begin(self, request: web.Request, route: str) -> tuple[bytes, Any]:
        return await self._gateway.begin(request, route)

    def _authorize(self, request: web.Request) -> None:
        self._gateway.authorize_tenant(request)

    # --- routes --------------------------------------------------------------------------------------

    async def tenant_token(self, request: web.Request) -> web.Response:
        try:
            # The secret never reaches the record.
            _, body = await self._gateway.begin(request, "tenant_token", redact=("app_secret",))
        except _Invalid as invalid:
            return invalid.response
        # This endpoint answers failures with HTTP 200 and no `error` object (captured).
        if not isinstance(body, dict):
            return _token_failure(replies.INVALID_PARAM)
        app_id, app_secret = body.get("app_id"), body.get("app_secret")
        if not isinstance(app_id, str) or not isinstance(app_secret, str) or app_id != self._config.app_id:
            return _token_failure(replies.INVALID_PARAM)
        if app_secret != self._config.app_secret:
            return _token_failure(replies.APP_SECRET_INVALID)
        token, expire = self._tokens.issue()
        return replies.ok({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": expire})

    async def bot_info(self, request: web.Request) -> web.Response:
        try:
            await self._begin(request, "bot_info")
            self._authorize(request)
        except _Invalid as invalid:
            return invalid.response
        # Top-level `bot`, not `data` (feishu-protocol §2).
        bot = {
            "activate_status": 2,
            "app_name": self._config.bot_name,
            "avatar_url": self._config.bot_avatar_url,
            "ip_white_list": [],
            "open_id": self._config.bot_open_id,
        }
        return replies.ok({"code": 0, "msg": "ok", "bot": bot})

    async def reply(self, request: web.Request) -> web.Response:
        try:
            raw, body = await self._begin(request, "reply")
            self._authorize(request)
            msg_type, content, uuid = _message_fields(raw, body, REPLY_MSG_TYPES)
            in_thread = body.get("reply_in_thread", False)
            if not isinstance(in_thread, bool):
                raise _Invalid(replies.field_violation("reply_in_thread", "must be a boolean"))
            parent = self._store.lookup(request.match_info["message_id"])
            if parent is None:
                # UNCONFIRMED which code Feishu uses for an unknown message_id; 230001 is its
                # "invalid request parameter".
                raise _Invalid(replies.error(replies.INVALID_REQUEST, detail="ext=invalid message_id"))
            self._check_chat(parent.chat_id)
        except _Invalid as invalid:
            return invalid.response
        return self._deliver(parent.chat_id, msg_type, content, uuid, reply_to=parent, in_thread=in_thread)

    async def send(self, request: web.Request) -> web.Response:
        try:
            raw, body = await self._begin(request, "send")
            self._authorize(request)
            id_type = request.query.get("receive_id_type", "")
            if id_type not in RECEIVE_ID_TYPES:
                raise _Invalid(
                    replies.field_violation(
                        "receive_id_type", "must be one of " + "|".join(sorted(RECEIVE_ID_TYPES))
                    )
                )
            msg_type, content, uuid = _message_fields(raw, body, SEND_MSG_TYPES)
            receive_id = body.get("receive_id")
            if not isinstance(receive_id, str) or not receive_id:
                raise _Invalid(replies.field_violation("receive_id", "is required"))
            chat_id = self._resolve_receiver(id_type, receive_id)
            self._check_chat(chat_id)
        except _Invalid as invalid:
            return invalid.response
        return self._deliver(chat_id, msg_type, content, uuid, reply_to=None, receive_id=receive_id)

    # --- the message rules ---------------------------------------------------------------------------

    def _resolve_receiver(self, id_type: str, receive_id: str) -> str:
        if id_type == "chat_id":
            if self._config.chat(receive_id) is None:
                raise _Invalid(replies.error(replies.INVALID_REQUEST, detail="ext=invalid receive_id"))
            return receive_id
        field = {"open_id": "open_id", "union_id": "union_id", "user_id": "user_id", "email": "email"}[
            id_type
        ]
        user = next((u for u in self._config.users if getattr(u, field) == receive_id), None)
        if user is None:
            # UNCONFIRMED: the code Feishu uses for an ID outside the app's visibility.
            raise _Invalid(replies.error(replies.INVALID_REQUEST, detail="ext=invalid receive_id"))
        return self._store.p2p_chat_id(user.open_id)

    def _check_chat(self, chat_id: str) -> None:
        chat = self._config.chat(chat_id)
        if chat is not None and not chat.bot_is_member:
            raise _Invalid(replies.error(replies.BOT_NOT_IN_CHAT))

    def _deliver(
        self,
        chat_id: str,
        msg_type: str,
        content: dict[str, Any],
        uuid: str | None,
        *,
        reply_to: KnownMessage | None,
        receive_id: str | None = None,
        in_thread: bool = False,
    ) -> web.Response:
        # A repeated uuid within the hour sends nothing and answers with the first message.
        earlier = self._store.already_sent(uuid)
        if earlier is not None:
            return self._sent(earlier)
        if self._store.over_rate(chat_id):
            return replies.error(replies.CHAT_RATE_LIMITED)
        message = self._store.deliver(
            chat_id=chat_id,
            msg_type=msg_type,
            content=content,
            reply_to=reply_to,
            uuid=uuid,
            receive_id=receive_id,
            reply_in_thread=in_thread,
        )
        return self._sent(message)

    def _sent(self, message: SentMessage) -> web.Response:
        return replies.ok({"code": 0, "msg": "success", "data": self._store.response_data(message)})


def _message_fields(raw: bytes, body: Any, allowed: frozenset[str]) -> tuple[str, dict[str, Any], str | None]:
    """msg_type, parsed content and uuid of a send or reply body, or the error Feishu answers."""
    if not isinstance(body, dict):
        raise _Invalid(replies.field_violation("body", "must be a JSON object"))
    msg_type = body.get("msg_type")
    if not isinstance(msg_type, str) or not msg_type:
        raise _Invalid(replies.field_violation("msg_type", "is required"))
    content_text = body.get("content")
    # `content` is a JSON document inside a string; an object here is the classic mistake.
    if not isinstance(content_text, str) or not content_text:
        raise _Invalid(replies.field_violation("content", "is required and must be a string"))
    uuid = body.get("uuid")
    if uuid is not None and (not isinstance(uuid, str) or len(uuid) > UUID_MAX_LENGTH):
        raise _Invalid(replies.field_violation("uuid", f"must be a string of at most {UUID_MAX_LENGTH}"))
    if msg_type not in allowed:
        raise _Invalid(replies.error(replies.INVALID_REQUEST, detail="ext=invalid msg_type"))
    try:
        content = json.loads(content_text)
    except (ValueError, RecursionError):
        content = None
    if not isinstance(content, dict):
        raise _Invalid(
            replies.error(replies.INVALID_REQUEST, detail="ext=content is not a valid JSON object")
        )
    limit = TEXT_LIMIT_BYTES if msg_type == "text" else CARD_POST_LIMIT_BYTES
    if msg_type in ("text", "post", "interactive") and len(raw) > limit:
        raise _Invalid(replies.error(replies.MESSAGE_TOO_LONG))
    return msg_type, content, uuid or None


def _token_failure(failure: replies.FeishuError) -> web.Response:
    return replies.ok({"code": failure.code, "data": {}, "msg": failure.msg})
