"""Cards only one person in a group sees ("仅特定人可见的消息卡片"): `POST /open-apis/ephemeral/v1/send`
and `/delete`.

From the doc page (https://open.larksuite.com/document/ukTMukTMukTM/uETOyYjLxkjM24SM5IjN): tenant token; the
bot must be in the chat; group chats only; body `chat_id`, the user as `open_id`, `user_id` or `email`,
`msg_type: "interactive"` and `card` as a JSON object (not a string, unlike im/v1); the answer's
`data.message_id` is what delete takes. The error codes for the user-side failures (not a group, user not
in the chat) are UNCONFIRMED: we answer with im/v1's 230001/230002 family, kept in `replies`. Whether only
card JSON 1.0 is accepted is UNCONFIRMED as well; this emulator accepts 1.0 and 2.0 alike, and a fault on
route "ephemeral" makes a send fail whenever a test wants the bot's fallback to a direct message.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from emulator import replies
from emulator.config import EmulatorConfig
from emulator.gateway import Gateway
from emulator.messages import new_message_id
from emulator.replies import Refusal

CARD_LIMIT_BYTES = 30 * 1024
_USER_FIELDS = ("open_id", "user_id", "email")


@dataclass
class EphemeralMessage:
    message_id: str
    chat_id: str
    open_id: str
    card: dict[str, Any]
    create_time: int  # ms, emulator clock
    deleted: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "chat_id": self.chat_id,
            "open_id": self.open_id,
            "card": self.card,
            "create_time": self.create_time,
            "deleted": self.deleted,
        }


class EphemeralStore:
    def __init__(self) -> None:
        self.messages: list[EphemeralMessage] = []
        self._changed = asyncio.Event()

    def add(self, message: EphemeralMessage) -> None:
        self.messages.append(message)
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(
        self,
        count: int,
        open_id: str | None,
        timeout: float,  # noqa: ASYNC109 - a deadline in the test-facing API, applied with wait_for
    ) -> list[EphemeralMessage]:
        def matching() -> list[EphemeralMessage]:
            return [m for m in self.messages if open_id is None or m.open_id == open_id]

        async def enough() -> list[EphemeralMessage]:
            while len(matching()) < count:
                await self._changed.wait()
            return matching()[:count]

        try:
            return await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"expected {count} ephemeral card(s), the bot sent {len(matching())} within {timeout}s"
            ) from None


class EphemeralApi:
    def __init__(self, config: EmulatorConfig, gateway: Gateway, store: EphemeralStore) -> None:
        self._config = config
        self._gateway = gateway
        self._store = store

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/open-apis/ephemeral/v1/send", self.send),
            web.post("/open-apis/ephemeral/v1/delete", self.delete),
        ]

    async def send(self, request: web.Request) -> web.Response:
        try:
            raw, body = await self._gateway.begin(request, "ephemeral")
            self._gateway.authorize_tenant(request)
            chat_id, open_id, card = self._validate(raw, body)
        except Refusal as refusal:
            return refusal.response
        message = EphemeralMessage(
            message_id=new_message_id(),
            chat_id=chat_id,
            open_id=open_id,
            card=card,
            create_time=int(self._gateway.now() * 1000),
        )
        self._store.add(message)
        return replies.ok({"code": 0, "msg": "ok", "data": {"message_id": message.message_id}})

    def _validate(self, raw: bytes, body: Any) -> tuple[str, str, dict[str, Any]]:
        if not isinstance(body, dict):
            raise Refusal(replies.field_violation("body", "must be a JSON object"))
        chat_id = body.get("chat_id")
        if not isinstance(chat_id, str) or not chat_id:
            raise Refusal(replies.field_violation("chat_id", "is required"))
        if body.get("msg_type") != "interactive":
            raise Refusal(replies.field_violation("msg_type", "must be interactive"))
        card = body.get("card")
        if not isinstance(card, dict):
            raise Refusal(replies.field_violation("card", "is required and must be a JSON object"))
        if len(raw) > CARD_LIMIT_BYTES:
            raise Refusal(replies.error(replies.MESSAGE_TOO_LONG))
        field = next((name for name in _USER_FIELDS if isinstance(body.get(name), str) and body[name]), None)
        if field is None:
            raise Refusal(replies.field_violation("open_id", "one of open_id, user_id, email is required"))
        user = next((u for u in self._config.users if getattr(u, field) == body[field]), None)
        if user is None:
            raise Refusal(replies.error(replies.INVALID_REQUEST, detail=f"ext=invalid {field}"))
        chat = self._config.chat(chat_id)
        if chat is None:
            raise Refusal(replies.error(replies.INVALID_REQUEST, detail="ext=invalid chat_id"))
        if not chat.bot_is_member:
            raise Refusal(replies.error(replies.BOT_NOT_IN_CHAT))
        if chat.chat_type != "group":
            raise Refusal(replies.error(replies.INVALID_REQUEST, detail="ext=ephemeral cards are group-only"))
        if user.open_id not in chat.members:
            raise Refusal(replies.error(replies.INVALID_REQUEST, detail="ext=user is not in the chat"))
        return chat_id, user.open_id, card

    async def delete(self, request: web.Request) -> web.Response:
        try:
            _, body = await self._gateway.begin(request, "ephemeral_delete")
            self._gateway.authorize_tenant(request)
            message_id = body.get("message_id") if isinstance(body, dict) else None
            if not isinstance(message_id, str) or not message_id:
                raise Refusal(replies.field_violation("message_id", "is required"))
            found = next((m for m in self._store.messages if m.message_id == message_id), None)
            if found is None or found.deleted:
                raise Refusal(replies.error(replies.INVALID_REQUEST, detail="ext=invalid message_id"))
        except Refusal as refusal:
            return refusal.response
        found.deleted = True
        return replies.ok({"code": 0, "msg": "ok"})
