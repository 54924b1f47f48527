"""The messages of the emulated tenant: what users said (pushed) and what the bot sent (Open API).

Holds the rules Feishu applies to a send or reply once the request is well formed (feishu-protocol §4.1):
the uuid de-duplication window, the per-chat rate limit, and the response `data` shape.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.config import EmulatorConfig

UUID_WINDOW_SECONDS = 3600
# "per-group 5 QPS shared by all bots in the group" (feishu-protocol §4.1).
CHAT_RATE_PER_SECOND = 5
_AT_TAG = re.compile(r'<at user_id="([^"]*)">([^<]*)</at>')


def new_message_id() -> str:
    # Today's shape (captured traffic): `om_x100b` and 27 hex digits, 35 characters in all.
    return "om_x100b" + secrets.token_hex(14)[:27]


@dataclass(frozen=True)
class SentMessage:
    """One message the bot delivered, as a test wants to see it."""

    message_id: str
    chat_id: str
    msg_type: str
    content: dict[str, Any]
    reply_to: str | None
    uuid: str | None
    receive_id: str | None
    create_time: int  # ms since the epoch, on the emulator clock
    root_id: str | None = None
    reply_in_thread: bool = False
    # Earlier contents of a card later updated (PATCH), oldest first; `content` is the current one.
    history: tuple[dict[str, Any], ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "chat_id": self.chat_id,
            "msg_type": self.msg_type,
            "content": self.content,
            "reply_to": self.reply_to,
            "uuid": self.uuid,
            "receive_id": self.receive_id,
            "create_time": self.create_time,
            "root_id": self.root_id,
            "reply_in_thread": self.reply_in_thread,
            "history": list(self.history),
        }


@dataclass(frozen=True)
class KnownMessage:
    """Any message that exists in the tenant and can be replied to."""

    message_id: str
    chat_id: str
    root_id: str | None


class MessageStore:
    def __init__(self, config: EmulatorConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._known: dict[str, KnownMessage] = {}
        self._by_uuid: dict[str, tuple[float, SentMessage]] = {}
        self._recent: dict[str, deque[float]] = {}
        self.sent: list[SentMessage] = []
        self._changed = asyncio.Event()

    # --- what exists ---------------------------------------------------------------------------------

    def register(self, message_id: str, chat_id: str, root_id: str | None = None) -> None:
        self._known[message_id] = KnownMessage(message_id, chat_id, root_id)

    def lookup(self, message_id: str) -> KnownMessage | None:
        return self._known.get(message_id)

    def find_sent(self, message_id: str) -> SentMessage | None:
        return next((m for m in self.sent if m.message_id == message_id), None)

    def p2p_chat_id(self, open_id: str) -> str:
        """The bot's p2p chat with this user: the configured one, else a stable id made up on first use,
        as Feishu creates the chat lazily when a bot first messages a user."""
        if self._config.user(open_id) is None:
            raise KeyError(f"no user {open_id!r} in the directory")
        p2p = next(
            (c for c in self._config.chats if c.chat_type == "p2p" and open_id in c.members),
            None,
        )
        return p2p.chat_id if p2p else "oc_p2p_" + open_id.removeprefix("ou_")

    def replace_content(self, message_id: str, content: dict[str, Any]) -> SentMessage:
        """The sent message with new content, the old one kept in `history`."""
        index = next(i for i, m in enumerate(self.sent) if m.message_id == message_id)
        old = self.sent[index]
        updated = dataclasses.replace(old, content=content, history=(*old.history, old.content))
        self.sent[index] = updated
        self._wake()
        return updated

    def _wake(self) -> None:
        # Wake every waiter; each re-checks its own condition (see wait_for).
        self._changed.set()
        self._changed = asyncio.Event()

    # --- the rules of a delivery ---------------------------------------------------------------------

    def already_sent(self, uuid: str | None) -> SentMessage | None:
        """The message an earlier call with this uuid created within the hour, if any."""
        if not uuid:
            return None
        hit = self._by_uuid.get(uuid)
        if hit is None:
            return None
        sent_at, message = hit
        if self._clock() - sent_at >= UUID_WINDOW_SECONDS:
            del self._by_uuid[uuid]
            return None
        return message

    def over_rate(self, chat_id: str) -> bool:
        """True when this chat already had its 5 messages within the last second."""
        now = self._clock()
        window = self._recent.setdefault(chat_id, deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        return len(window) >= CHAT_RATE_PER_SECOND

    def deliver(
        self,
        *,
        chat_id: str,
        msg_type: str,
        content: dict[str, Any],
        reply_to: KnownMessage | None,
        uuid: str | None,
        receive_id: str | None,
        reply_in_thread: bool = False,
    ) -> SentMessage:
        now = self._clock()
        root_id = (reply_to.root_id or reply_to.message_id) if reply_to else None
        message = SentMessage(
            message_id=new_message_id(),
            chat_id=chat_id,
            msg_type=msg_type,
            content=content,
            reply_to=reply_to.message_id if reply_to else None,
            uuid=uuid or None,
            receive_id=receive_id,
            create_time=int(now * 1000),
            root_id=root_id,
            reply_in_thread=reply_in_thread,
        )
        self._recent.setdefault(chat_id, deque()).append(now)
        if uuid:
            self._by_uuid[uuid] = (now, message)
        self.register(message.message_id, chat_id, root_id)
        self.sent.append(message)
        self._wake()
        return message

    async def wait_for(
        self,
        count: int,
        chat_id: str | None,
        timeout: float,  # noqa: ASYNC109 - a deadline in the test-facing API, applied with wait_for
    ) -> list[SentMessage]:
        """The first `count` messages (in `chat_id`, if given) the bot has sent since the start."""

        async def enough() -> list[SentMessage]:
            while True:
                matching = [m for m in self.sent if chat_id is None or m.chat_id == chat_id]
                if len(matching) >= count:
                    return matching[:count]
                await self._changed.wait()

        try:
            return await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            have = len([m for m in self.sent if chat_id is None or m.chat_id == chat_id])
            raise TimeoutError(
                f"expected {count} message(s), the bot sent {have} within {timeout}s"
            ) from None

    # --- what Feishu answers -------------------------------------------------------------------------

    def response_data(self, message: SentMessage) -> dict[str, Any]:
        """`data` of a send or reply answer (feishu-protocol §4.1): the bot is the sender, as an app."""
        content, mentions = self._render(message)
        create_time = str(message.create_time)
        data: dict[str, Any] = {
            "message_id": message.message_id,
            "msg_type": message.msg_type,
            "create_time": create_time,
            "update_time": create_time,
            "deleted": False,
            "updated": False,
            "chat_id": message.chat_id,
            "sender": {
                "id": self._config.app_id,
                "id_type": "app_id",
                "sender_type": "app",
                "tenant_key": self._config.tenant_key,
            },
            "body": {"content": content},
        }
        if message.reply_to is not None:
            data["root_id"] = message.root_id
            data["parent_id"] = message.reply_to
            data["upper_message_id"] = message.reply_to
        if mentions:
            data["mentions"] = mentions
        return data

    def _render(self, message: SentMessage) -> tuple[str, list[dict[str, Any]]]:
        """Feishu stores text @-tags as `@_user_N` placeholders with a mentions list; we do the same."""
        if message.msg_type != "text" or not isinstance(message.content.get("text"), str):
            return json.dumps(message.content, ensure_ascii=False, separators=(",", ":")), []
        mentions: list[dict[str, Any]] = []

        def placeholder(match: re.Match[str]) -> str:
            user_id, name = match.group(1), match.group(2)
            if user_id == "all":
                return "@_all"
            key = f"@_user_{len(mentions) + 1}"
            user = self._config.user(user_id)
            mentions.append(
                {
                    "key": key,
                    "id": user_id,
                    "id_type": "open_id",
                    "name": user.name if user else name,
                    "tenant_key": self._config.tenant_of(user_id),
                }
            )
            return key

        text = _AT_TAG.sub(placeholder, message.content["text"])
        return json.dumps({"text": text}, ensure_ascii=False, separators=(",", ":")), mentions
