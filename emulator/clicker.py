"""A user clicking a card: the callback built and sealed as Feishu does, POSTed to the bot, judged.

New style goes to the event URL (`webhook_url`, the bot serves events and callbacks on one URL) sealed
exactly like events (AES envelope, SHA-256 signature: feishu-protocol §1.3, §1.4). Legacy goes to
`card_callback_url`, plain JSON signed with hex(SHA-1(timestamp + nonce + Verification Token + raw body))
(§3.2). Whether Feishu encrypts the legacy body when an Encrypt Key is set is UNCONFIRMED: the SDKs decrypt
it if it is, so `seal_legacy(encrypt=True)` exists; clicks send it plain.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp

from bot.feishu.crypto import PayloadCipher, card_signature_v1
from bot.feishu.events import CARD_ACTION_TRIGGER
from emulator import clicks
from emulator.card_tokens import CardTokens
from emulator.clicks import ClickResult, action_object, judge
from emulator.config import EmulatorConfig
from emulator.long_connection import SocketHub
from emulator.messages import MessageStore, SentMessage
from emulator.pusher import Pusher, PushResult
from emulator.sealing import seal_body
from emulator.updates import CardUpdate

DOUBLE_CLICK_GAP_SECONDS = 0.05


class ClickError(ValueError):
    """A click Feishu could never send: the message is not a card this bot sent."""


class Clicker:
    def __init__(
        self,
        config: EmulatorConfig,
        clock: Callable[[], float],
        store: MessageStore,
        tokens: CardTokens,
        pusher: Pusher,
        updates: list[CardUpdate],
        webhook_url: Callable[[], str | None],
        card_callback_url: Callable[[], str | None],
        socket: Callable[[], SocketHub | None] = lambda: None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._store = store
        self._tokens = tokens
        self._pusher = pusher
        self._updates = updates
        self._webhook_url = webhook_url
        self._card_callback_url = card_callback_url
        self._socket = socket
        self._cipher = PayloadCipher(config.encrypt_key) if config.encrypt_key else None
        self._session: aiohttp.ClientSession | None = None
        self.results: list[ClickResult] = []
        self.deadline_seconds = config.card_callback_deadline_seconds

    # --- building --------------------------------------------------------------------------------------

    def build_card_action(
        self,
        operator_open_id: str,
        message_id: str,
        *,
        event_id: str | None = None,
        delivery_type: str | None = None,
        context_url: str | None = None,
        **action: Any,
    ) -> dict[str, Any]:
        """A schema 2.0 `card.action.trigger` for a click by `operator_open_id` on the bot's card
        `message_id`; `action` holds `value` and the optional `tag`, `name`, `form_value`, `input_value`,
        `option`, `options`, `checked`, `timezone`. `delivery_type` and `context_url` make it a click on
        a link preview of the card (the doc's example). ClickError for a message that is not the bot's
        card. As a captured button click: no `timezone`, and the operator's `user_id` only when the app
        may see it."""
        sent = self._clicked(message_id)
        token = self._tokens.issue(message_id, operator_open_id)
        config = self._config
        context: dict[str, Any] = {"open_message_id": message_id, "open_chat_id": sent.chat_id}
        if context_url is not None:
            context = {"url": context_url, "preview_token": secrets.token_hex(8), **context}
        event: dict[str, Any] = {
            # The clicker's own tenant (an external contact's differs from the header's).
            "operator": {"tenant_key": config.tenant_of(operator_open_id), **self._ids(operator_open_id)},
            "token": token.token,
            "action": action_object(**{"tag": "button", **action}),
            "host": "im_message",
        }
        if delivery_type is not None:
            event["delivery_type"] = delivery_type
        event["context"] = context
        return {
            "schema": "2.0",
            "header": {
                "event_id": event_id or secrets.token_hex(16),
                "token": config.verification_token,
                "create_time": str(int(self._clock() * 1_000_000)),  # µs for callbacks (feishu-protocol §1.6)
                "event_type": CARD_ACTION_TRIGGER,
                "tenant_key": config.tenant_key,
                "app_id": config.app_id,
            },
            "event": event,
        }

    def build_legacy_card_action(
        self, operator_open_id: str, message_id: str, **action: Any
    ) -> dict[str, Any]:
        """The legacy flat callback body for the same click (no union_id, no header: feishu-protocol §3.2)."""
        sent = self._clicked(message_id)
        token = self._tokens.issue(message_id, operator_open_id)
        ids = self._ids(operator_open_id)
        body: dict[str, Any] = {"open_id": operator_open_id}
        if "user_id" in ids:
            body["user_id"] = ids["user_id"]
        body.update(
            {
                "open_message_id": message_id,
                "open_chat_id": sent.chat_id,
                "tenant_key": self._config.tenant_key,
                "token": token.token,
                "action": action_object(**{"tag": "button", **action}),
            }
        )
        return body

    def build_legacy_url_verification(self, challenge: str | None = None) -> dict[str, Any]:
        """The legacy callback URL's challenge: {"challenge", "token" (Verification Token), "type"}."""
        return self._pusher.build_url_verification(challenge)

    def seal_legacy(
        self,
        body: dict[str, Any],
        *,
        encrypt: bool = False,
        sign: bool = True,
        timestamp: str | None = None,
        nonce: str | None = None,
        signature: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        token = self._config.verification_token
        return seal_body(
            body,
            cipher=self._cipher if encrypt else None,
            sign=sign,
            signer=lambda stamp, once, raw: card_signature_v1(stamp, once, token, raw),
            clock=self._clock,
            # What real legacy callbacks carry: a date in China time and a UUID nonce (feishu-protocol §3.2).
            timestamp=timestamp if timestamp is not None else legacy_date(self._clock()),
            nonce=nonce if nonce is not None else str(uuid.uuid4()),
            signature=signature,
        )

    # --- clicking --------------------------------------------------------------------------------------

    async def click(
        self,
        operator_open_id: str,
        message_id: str,
        value: dict[str, Any] | str,
        *,
        legacy: bool = False,
        event_id: str | None = None,
        seal: dict[str, Any] | None = None,
        **action: Any,
    ) -> ClickResult:
        """Click, wait for the bot's answer (at most the 3 s deadline), judge it as the client does, apply
        a returned card to the message, and record the result. `seal` tampers with the sealing."""
        hub = None if legacy else self._socket()
        url = self._card_callback_url() if legacy else self._webhook_url()
        if not url and hub is None:
            raise RuntimeError(
                "card_callback_url is not set" if legacy else "webhook_url is not set: point it at the bot"
            )
        sent = self._clicked(message_id)
        if legacy:
            body = self.build_legacy_card_action(operator_open_id, message_id, value=value, **action)
            headers, raw = self.seal_legacy(body, **(seal or {}))
            token_text, event = body["token"], None
        else:
            body = self.build_card_action(
                operator_open_id, message_id, event_id=event_id, value=value, **action
            )
            headers, raw = self._pusher.seal(body, **(seal or {}))
            token_text, event = body["event"]["token"], body["header"]["event_id"]
        token = self._tokens.get(token_text)
        assert token is not None
        token.in_flight += 1
        try:
            if hub is not None:
                status, text, elapsed_ms, failure = await self._over_socket(hub, body)
            else:
                assert url is not None
                status, text, elapsed_ms, failure = await self._post(url, headers, raw)
        finally:
            token.in_flight -= 1
        toast = card = None
        if failure is None and status is not None and text is not None:
            failure, toast, card = judge(status, text, legacy=legacy, clicked_card=sent.content)
        if failure is None and card is not None:
            content = card["data"] if card["type"] == "raw" else card
            self._store.replace_content(message_id, content)
            self._updates.append(CardUpdate(message_id, content, self._clock(), via="callback"))
        result = ClickResult(
            legacy=legacy,
            message_id=message_id,
            operator=operator_open_id,
            event_id=event,
            token=token_text,
            status=status,
            body=_parsed(text),
            elapsed_ms=elapsed_ms,
            toast=toast,
            card=card,
            error_code=failure,
        )
        self.results.append(result)
        return result

    async def double_click(
        self, operator_open_id: str, message_id: str, value: dict[str, Any] | str, **options: Any
    ) -> tuple[ClickResult, ClickResult]:
        """Two clicks on the same button 50 ms apart: two callbacks, two event_ids, two tokens."""
        first = asyncio.ensure_future(self.click(operator_open_id, message_id, value, **options))
        await asyncio.sleep(DOUBLE_CLICK_GAP_SECONDS)
        second = await self.click(operator_open_id, message_id, value, **options)
        return await first, second

    async def post_legacy(self, body: dict[str, Any], **seal_options: Any) -> PushResult:
        """Seal any legacy body (a challenge, a hand-made click) and POST it to `card_callback_url`."""
        url = self._card_callback_url()
        if not url:
            raise RuntimeError("card_callback_url is not set")
        headers, raw = self.seal_legacy(body, **seal_options)
        started = time.perf_counter()
        async with self._ensure_session().post(url, data=raw, headers=headers) as response:
            text = (await response.read()).decode("utf-8", "replace")
            status = response.status
        parsed = _parsed(text)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return PushResult(status, parsed if parsed is not None else "", elapsed_ms)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- helpers ---------------------------------------------------------------------------------------

    async def _over_socket(
        self, hub: SocketHub, body: dict[str, Any]
    ) -> tuple[int | None, str | None, float, int | None]:
        """A click down the long connection: the answer frame's `data` is the callback's answer."""
        pushed = await hub.deliver(body, "card")
        if pushed.code is None:
            return None, None, pushed.elapsed_ms, clicks.TIMEOUT
        if pushed.code != 200:
            return 500, json.dumps({"code": pushed.code}), pushed.elapsed_ms, None
        return 200, json.dumps(pushed.data or {}), pushed.elapsed_ms, None

    async def _post(
        self, url: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int | None, str | None, float, int | None]:
        deadline = self.deadline_seconds
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        try:
            async with self._ensure_session().post(
                url,
                data=raw,
                headers=headers,
                allow_redirects=False,  # a 3xx is a failed callback (200671), never followed
                timeout=aiohttp.ClientTimeout(total=deadline),
            ) as response:
                text = (await response.read()).decode("utf-8", "replace")
                status = response.status
        except TimeoutError:
            return None, None, elapsed(), clicks.TIMEOUT
        except aiohttp.ClientConnectorDNSError:
            return None, None, elapsed(), clicks.DNS_FAILED
        except aiohttp.ClientConnectorError:
            return None, None, elapsed(), clicks.TCP_FAILED
        except aiohttp.ClientError:
            return None, None, elapsed(), clicks.REQUEST_FAILED
        took = elapsed()
        return status, text, took, clicks.TIMEOUT if took > deadline * 1000 else None

    def _clicked(self, message_id: str) -> SentMessage:
        sent = self._store.find_sent(message_id)
        if sent is None:
            known = self._store.lookup(message_id) is not None
            why = "was not sent by the bot" if known else "does not exist"
            raise ClickError(f"message {message_id!r} {why}: only the bot's own cards can be clicked")
        if sent.msg_type != "interactive":
            raise ClickError(f"message {message_id!r} is a {sent.msg_type!r} message, not a card")
        return sent

    def _ids(self, open_id: str) -> dict[str, str]:
        # IDs the app may not see are left out, as in captured callbacks: user_id without the employee-id
        # scope (feishu-protocol §3.1), any id of someone the tenant does not know.
        user = self._config.user(open_id)
        if user is None:
            return {"open_id": open_id}
        user_id = user.user_id if self._config.shows_user_ids else ""
        ids = {"user_id": user_id, "open_id": open_id, "union_id": user.union_id}
        return {key: value for key, value in ids.items() if value}

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session


def _parsed(text: str | None) -> dict[str, Any] | str | None:
    if text is None:
        return None
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):
        return text
    return decoded if isinstance(decoded, dict) else text


_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def legacy_date(at: float) -> str:
    """`X-Lark-Request-Timestamp` as real legacy card callbacks send it: `Monday, 14-Nov-22 15:53:37 CST`
    (RFC 850, China time; seen in lark's own SDK tests and in captured traffic)."""
    t = time.gmtime(at + 8 * 3600)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year % 100:02d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} CST"
    )
