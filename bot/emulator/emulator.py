"""`Emulator`: one emulated Feishu tenant, its Open API app and the pusher that talks to the bot."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from aiohttp import web

from bot.emulator.config import EmulatorConfig
from bot.emulator.control import control_routes
from bot.emulator.faults import Fault, FaultQueue
from bot.emulator.messages import MessageStore, SentMessage
from bot.emulator.openapi import OpenApi, RecordedRequest, feishu_not_found
from bot.emulator.pusher import Pusher, PushResult
from bot.emulator.tokens import TenantTokens


class Emulator:
    """The local Feishu. Serve `emulator.app` (see `server.start_emulator`), point the bot's
    FEISHU_DOMAIN at it and `webhook_url` at the bot, then talk as users with `say`."""

    def __init__(
        self, config: EmulatorConfig | None = None, *, clock: Callable[[], float] | None = None
    ) -> None:
        self.config = config or EmulatorConfig()
        # Tests replace this to move time (token expiry, uuid window, rate limit) without sleeping.
        self.clock: Callable[[], float] = clock or time.time
        self.webhook_url: str | None = self.config.webhook_url
        self.requests: list[RecordedRequest] = []
        now = self._now
        self._tokens = TenantTokens(self.config.tenant_token_ttl_seconds, now)
        self._store = MessageStore(self.config, now)
        self._faults = FaultQueue()
        self._pusher = Pusher(self.config, now, self._store, lambda: self.webhook_url)
        self.app = self._build_app()

    def _now(self) -> float:
        # Indirection so that assigning `emulator.clock` later reaches every component.
        return self.clock()

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[feishu_not_found], client_max_size=4 * 1024 * 1024)
        openapi = OpenApi(self.config, self._tokens, self._store, self._faults, self.requests, self._now)
        app.add_routes(openapi.routes())
        app.add_routes(control_routes(self))
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_cleanup(self, _app: web.Application) -> None:
        await self._pusher.close()

    # --- observing -------------------------------------------------------------------------------------

    @property
    def messages(self) -> list[SentMessage]:
        """Everything the bot has sent or replied, oldest first."""
        return list(self._store.sent)

    @property
    def tenant_tokens_issued(self) -> int:
        return self._tokens.issued_count

    async def wait_for_messages(
        self,
        count: int,
        *,
        chat_id: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - the test-facing API; applied inside with wait_for
    ) -> list[SentMessage]:
        """The first `count` messages the bot sent (into `chat_id`, if given); TimeoutError if it
        has not sent that many within `timeout` seconds of real time."""
        return await self._store.wait_for(count, chat_id, timeout)

    # --- steering --------------------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def pending_faults(self) -> list[tuple[Fault, int]]:
        return self._faults.pending()

    @property
    def issued_tokens(self) -> list[str]:
        return list(self._tokens.history)

    def revoke_tenant_tokens(self) -> None:
        """Every tenant_access_token issued so far is refused from now on (99991663)."""
        self._tokens.revoke_all()

    # --- talking to the bot ----------------------------------------------------------------------------

    def build_message_event(
        self,
        sender_open_id: str,
        chat_id: str,
        text: str,
        *,
        chat_type: Literal["group", "p2p"] = "group",
        mentions: Sequence[str] = (),
        message_type: Literal["text", "post"] = "text",
        message_id: str | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        return self._pusher.build_message_event(
            sender_open_id,
            chat_id,
            text,
            chat_type=chat_type,
            mentions=mentions,
            message_type=message_type,
            message_id=message_id,
            event_id=event_id,
        )

    def build_message_event_v1(
        self, sender_open_id: str, chat_id: str, text: str, **options: Any
    ) -> dict[str, Any]:
        return self._pusher.build_message_event_v1(sender_open_id, chat_id, text, **options)

    def build_url_verification(self, challenge: str | None = None) -> dict[str, Any]:
        return self._pusher.build_url_verification(challenge)

    def build_say_event(self, sender_open_id: str, chat_id: str, text: str, **options: Any) -> dict[str, Any]:
        return self._pusher.build_say_event(sender_open_id, chat_id, text, **options)

    def seal(self, payload: dict[str, Any], **options: Any) -> tuple[dict[str, str], bytes]:
        return self._pusher.seal(payload, **options)

    async def push(self, payload: dict[str, Any], **options: Any) -> PushResult:
        return await self._pusher.push(payload, **options)

    async def say(self, sender_open_id: str, chat_id: str, text: str, **options: Any) -> PushResult:
        return await self._pusher.say(sender_open_id, chat_id, text, **options)

    async def close(self) -> None:
        """Close the push session; `AppRunner.cleanup()` does this too."""
        await self._pusher.close()
