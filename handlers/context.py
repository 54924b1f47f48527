"""What a handler is given: the parsed message and the services it may use (never HTTP or crypto)."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.clock import Clock
from bot.feishu.client import FeishuClient
from bot.feishu.events import MESSAGE_RECEIVE, EventEnvelope, Mention
from bot.feishu.models import BotInfo, Message, MessageReplyRequest, card_content
from bot.metrics import Metrics
from bot.oauth.authority import UserAuthority
from bot.oauth.device import DeviceFlow
from bot.oauth.flow import AuthorizationFlow
from bot.store import Store
from handlers.buttons import CardActions
from handlers.cards import Card
from handlers.invite.meetings import MeetingFinder


@dataclass(frozen=True)
class Services:
    client: FeishuClient
    bot: BotInfo
    store: Store
    clock: Clock
    authority: UserAuthority
    flow: AuthorizationFlow
    meetings: MeetingFinder
    actions: CardActions
    metrics: Metrics
    # BOT_AUTH_FLOW=device: people authorize on a Feishu page; None for the redirect flow.
    device: DeviceFlow | None = None
    # Puts one of the bot's own events into the inbox (a device poll, a resumed command).
    enqueue: Callable[[EventEnvelope], Awaitable[bool]] | None = None
    # BOT_MEETING_WATCH_SECONDS: how long a result card follows the meeting (0: not at all), and how
    # often the meeting is read meanwhile (one read per meeting, whatever the number of cards).
    watch_seconds: float = 0.0
    watch_every: float = 5.0


@dataclass(frozen=True)
class IncomingMessage:
    message_id: str
    chat_id: str
    chat_type: str
    thread_id: str | None
    sender_open_id: str
    tenant_key: str
    # The message as text, the bot's own mention removed; other mentions stay as `@_user_N` keys.
    text: str
    mentions: tuple[Mention, ...]
    mentioned_bot: bool
    # The message was longer than any command may be; `text` holds only its beginning.
    too_long: bool = False


def reply_uuid(message_id: str, purpose: str) -> str:
    """The same answer to the same message always carries the same uuid, so Feishu shows it once.

    A handler that is retried after a crash or a lost response sends the same uuid again, and Feishu
    drops the second copy (it deduplicates uuids for an hour; the field allows 50 characters).
    """
    return hashlib.sha256(f"{message_id}:{purpose}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class CommandContext:
    services: Services
    message: IncomingMessage
    # The event as delivered: kept with a pending command so it can run again after authorization.
    envelope: EventEnvelope
    # The command word as typed ("/help"), and the rest of the text after it.
    word: str
    args: str

    @property
    def run_key(self) -> str:
        """What makes a retried run of this command or click the same run: the message (Feishu may
        deliver one message under two event ids) or, for a click, its event."""
        if self.envelope.event_type == MESSAGE_RECEIVE:
            return self.message.message_id
        return "event:" + self.envelope.event_id

    async def reply_card(self, card: Card, *, purpose: str = "reply") -> Message:
        request = MessageReplyRequest(
            content=card_content(card),
            msg_type="interactive",
            reply_in_thread=self.message.thread_id is not None,
            uuid=reply_uuid(self.message.message_id, purpose),
        )
        return await self.services.client.reply_message(
            self.message.message_id, request, chat_id=self.message.chat_id
        )
