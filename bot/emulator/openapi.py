"""The Open API routes the bot calls, answering with Feishu's real shapes, codes and statuses.

Each handler goes: record the request, fire a scripted fault if one is armed, check the tenant token,
validate the body like Feishu, then act. Codes and statuses come from `replies`, never from literals here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.emulator import replies
from bot.emulator.config import EmulatorConfig
from bot.emulator.faults import Fault, FaultQueue
from bot.emulator.messages import KnownMessage, MessageStore, SentMessage
from bot.emulator.tokens import TenantTokens

REPLY_MSG_TYPES = frozenset(
    {"text", "post", "image", "file", "audio", "media", "sticker", "interactive", "share_chat", "share_user"}
)
# `system` messages can only be sent, and only into p2p chats (reference §4.2).
SEND_MSG_TYPES = REPLY_MSG_TYPES | {"system"}
RECEIVE_ID_TYPES = frozenset({"open_id", "union_id", "user_id", "email", "chat_id"})
# Request-body limits (reference §4.1): 150 KB for text, 30 KB for cards and rich text.
TEXT_LIMIT_BYTES = 150 * 1024
CARD_POST_LIMIT_BYTES = 30 * 1024
UUID_MAX_LENGTH = 50


@dataclass(frozen=True)
class RecordedRequest:
    """One call the bot made. Never the token itself: only what kind of token it was."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    token_kind: str  # "tenant" | "user" | "app" | "other" | "none"
    at: float

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "json": self.json,
            "token_kind": self.token_kind,
            "at": self.at,
        }


def _token_kind(authorization: str | None) -> str:
    if not authorization:
        return "none"
    token = authorization.removeprefix("Bearer ").strip()
    if token.startswith("t-"):
        return "tenant"
    if token.startswith(("u-", "eyJ")):
        return "user"
    if token.startswith("a-"):
        return "app"
    return "other"


class _Invalid(Exception):
    """A request Feishu would refuse; carries the ready answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class OpenApi:
    def __init__(
        self,
        config: EmulatorConfig,
        tokens: TenantTokens,
        store: MessageStore,
        faults: FaultQueue,
        requests: list[RecordedRequest],
        clock_now: Callable[[], float],
    ) -> None:
        self._config = config
        self._tokens = tokens
        self._store = store
        self._faults = faults
        self._requests = requests
        self._now = clock_now

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
        """Record the call and read its body; raise _Invalid with a fault's answer if one fires."""
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError):
                body = None
        recorded = body
        if route == "tenant_token" and isinstance(body, dict) and "app_secret" in body:
            recorded = {**body, "app_secret": "***"}  # the secret never reaches the record
        self._requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                json=recorded,
                token_kind=_token_kind(request.headers.get("Authorization")),
                at=self._now(),
            )
        )
        fault = self._faults.take(route)
        if fault is not None:
            if fault.delay_seconds:
                await asyncio.sleep(fault.delay_seconds)
            if fault.status is not None:
                raise _Invalid(_fault_response(fault))
        return raw, body

    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        # Without the "Bearer " prefix Feishu treats the token as absent (captured).
        if not header.startswith("Bearer ") or not header[len("Bearer ") :].strip():
            raise _Invalid(replies.error(replies.TOKEN_MISSING))
        token = header[len("Bearer ") :].strip()
        if token.startswith(("u-", "eyJ")):
            raise _Invalid(replies.error(replies.USER_TOKEN_INVALID))
        if not self._tokens.is_valid(token):
            raise _Invalid(replies.error(replies.TENANT_TOKEN_INVALID))

    # --- routes --------------------------------------------------------------------------------------

    async def tenant_token(self, request: web.Request) -> web.Response:
        try:
            _, body = await self._begin(request, "tenant_token")
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
        # Top-level `bot`, not `data` (reference §2).
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
        p2p = next(
            (c for c in self._config.chats if c.chat_type == "p2p" and user.open_id in c.members),
            None,
        )
        # A user without a configured p2p chat gets a stable synthetic one, as Feishu creates it lazily.
        return p2p.chat_id if p2p else "oc_p2p_" + user.open_id.removeprefix("ou_")

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


def _fault_response(fault: Fault) -> web.Response:
    status = fault.status or 500
    code = fault.code
    if code is None and status == 429:
        code = replies.RATE_LIMITED.code
    headers = dict(fault.headers)
    if code == replies.RATE_LIMITED.code:
        # Feishu's gateway says when to come back (frequency-control doc page).
        headers.setdefault("x-ogw-ratelimit-limit", "50")
        headers.setdefault("x-ogw-ratelimit-reset", "1")
    if code is None:
        # A failing gateway answers in plain text, not Feishu's JSON: the bot must cope with both.
        response = web.Response(status=status, text=fault.msg or "upstream unavailable", headers=headers)
        response.headers[replies.LOGID_HEADER] = replies.new_log_id()
        return response
    msg = fault.msg or (replies.RATE_LIMITED.msg if code == replies.RATE_LIMITED.code else "emulated fault")
    return replies.error(replies.FeishuError(code, msg, status), headers=headers)


@web.middleware
async def feishu_not_found(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown paths and wrong methods get Feishu's plain-text 404, not JSON (captured)."""
    try:
        response = await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        if request.path.startswith("/open-apis/"):
            return web.Response(status=404, text="404 page not found")
        raise
    return response
