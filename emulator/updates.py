"""Updating a sent card: `PATCH /open-apis/im/v1/messages/{message_id}` (feishu-protocol §3.3).

Rules: tenant token; only interactive messages this bot sent; only shared cards (`config.update_multi:
true`, which JSON 2.0 cards always are); at most 14 days after sending (230031); the body at most 30 KB
(230025); 5 updates per second per message (230020). Which code answers "not a shared card" and "not this
bot's message" is UNCONFIRMED (230001 with a reason here). A 2.0 card may not become a 1.0 one.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from emulator import replies
from emulator.gateway import Gateway
from emulator.messages import MessageStore
from emulator.replies import Refusal

CARD_LIMIT_BYTES = 30 * 1024
MAX_AGE_SECONDS = 14 * 86400
UPDATES_PER_SECOND = 5


@dataclass(frozen=True)
class CardUpdate:
    message_id: str
    content: dict[str, Any]
    at: float
    # "patch" (PATCH im/v1/messages), "token" (interactive/v1/card/update with a callback's token) or
    # "callback" (a card in the bot's answer to a card callback).
    via: str = "patch"

    def as_json(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "content": self.content, "at": self.at, "via": self.via}


def is_v2(card: dict[str, Any]) -> bool:
    return card.get("schema") == "2.0"


def is_shared(card: dict[str, Any]) -> bool:
    config = card.get("config")
    return is_v2(card) or (isinstance(config, dict) and config.get("update_multi") is True)


class UpdateApi:
    def __init__(self, gateway: Gateway, store: MessageStore, updates: list[CardUpdate]) -> None:
        self._gateway = gateway
        self._store = store
        self._updates = updates
        self._recent: dict[str, deque[float]] = {}

    def routes(self) -> list[web.RouteDef]:
        return [web.patch("/open-apis/im/v1/messages/{message_id}", self.patch)]

    async def patch(self, request: web.Request) -> web.Response:
        message_id = request.match_info["message_id"]
        try:
            raw, body = await self._gateway.begin(request, "update")
            self._gateway.authorize_tenant(request)
            content = _content(raw, body)
            self._check(message_id, content)
        except Refusal as refusal:
            return refusal.response
        now = self._gateway.now()
        self._recent.setdefault(message_id, deque()).append(now)
        self._store.replace_content(message_id, content)
        self._updates.append(CardUpdate(message_id, content, now))
        return replies.ok({"code": 0, "msg": "success", "data": {}})

    def _check(self, message_id: str, content: dict[str, Any]) -> None:
        sent = self._store.find_sent(message_id)
        if sent is None:
            known = self._store.lookup(message_id) is not None
            reason = "the message was not sent by this bot" if known else "invalid message_id"
            raise Refusal(replies.error(replies.INVALID_REQUEST, detail=f"ext={reason}"))
        if sent.msg_type != "interactive":
            raise Refusal(replies.error(replies.INVALID_REQUEST, detail="ext=only interactive messages"))
        if not is_shared(sent.content):
            raise Refusal(
                replies.error(replies.INVALID_REQUEST, detail="ext=the card is not shared (update_multi)")
            )
        now = self._gateway.now()
        if now - sent.create_time / 1000 > MAX_AGE_SECONDS:
            raise Refusal(replies.error(replies.MESSAGE_TOO_OLD))
        if is_v2(sent.content) and not is_v2(content):
            raise Refusal(replies.error(replies.CARD_CONTENT_FAILED, detail="ErrCode: 200830"))
        window = self._recent.setdefault(message_id, deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= UPDATES_PER_SECOND:
            raise Refusal(replies.error(replies.CHAT_RATE_LIMITED))


def _content(raw: bytes, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Refusal(replies.field_violation("body", "must be a JSON object"))
    text = body.get("content")
    # Like send and reply: the card is a JSON document inside a string.
    if not isinstance(text, str) or not text:
        raise Refusal(replies.field_violation("content", "is required and must be a string"))
    if len(raw) > CARD_LIMIT_BYTES:
        raise Refusal(replies.error(replies.MESSAGE_TOO_LONG))
    try:
        content = json.loads(text)
    except (ValueError, RecursionError):
        content = None
    if not isinstance(content, dict):
        raise Refusal(replies.error(replies.INVALID_REQUEST, detail="ext=content is not a valid JSON object"))
    return content
