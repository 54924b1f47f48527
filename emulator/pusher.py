"""Events as Feishu builds them, sealed as Feishu seals them, pushed to the bot's webhook.

Shapes: feishu-protocol §1.6 and §2 (schema 2.0 `im.message.receive_v1`), §1.2 (url_verification); sealing:
§1.3 (AES envelope) and §1.4 (signature headers). The lark-oapi fidelity tests check both against the SDK.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from bot.feishu.crypto import PayloadCipher, event_signature
from bot.feishu.events import MESSAGE_RECEIVE
from emulator.config import EmulatorConfig
from emulator.long_connection import SocketHub
from emulator.messages import MessageStore, new_message_id
from emulator.sealing import seal_body

# "@Alice" or "@alice@example.com" in `say` text; names are single words in the directory.
_AT_WORD = re.compile(r"@([\w.\-]+(?:@[\w.\-]+)?)")
_PLACEHOLDER = re.compile(r"(@_user_\d+)")
# What Feishu does to typed text before it reaches a bot (feishu-protocol §2): an @all becomes the `@_all`
# placeholder (with no mentions entry) and a link arrives as `[text](url)`.
_ALL_WORD = re.compile(r"(?<![\w.+-])(?:@all|@所有人)(?![\w.@-])", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s\[\]()]+")
_RICH = re.compile(r"(@_user_\d+|@_all|\[[^\]]*\]\([^)\s]+\))")


@dataclass(frozen=True)
class PushResult:
    """What the bot answered to one push."""

    status: int
    body: dict[str, Any] | str
    elapsed_ms: float

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "body": self.body, "elapsed_ms": self.elapsed_ms}


@dataclass(frozen=True)
class _Person:
    open_id: str
    name: str
    union_id: str | None
    user_id: str | None
    tenant_key: str
    is_bot: bool = False


class Pusher:
    def __init__(
        self,
        config: EmulatorConfig,
        clock: Callable[[], float],
        store: MessageStore,
        webhook_url: Callable[[], str | None],
        socket: Callable[[], SocketHub | None] = lambda: None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._store = store
        self._webhook_url = webhook_url
        # When the bot is connected over the long connection, pushes go down its socket instead.
        self._socket = socket
        self._cipher = PayloadCipher(config.encrypt_key) if config.encrypt_key else None
        self._session: aiohttp.ClientSession | None = None
        self._posts = 0

    # --- building --------------------------------------------------------------------------------------

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
        """A schema 2.0 `im.message.receive_v1`. `text` carries `@_user_N` placeholders; the N-th entry
        of `mentions` (an open_id or a directory name, the bot included) is `@_user_N`."""
        people = [self._person(who) for who in mentions]
        now_ms = str(int(self._clock() * 1000))
        message: dict[str, Any] = {
            "message_id": message_id or new_message_id(),
            "create_time": now_ms,
            "update_time": now_ms,
            "chat_id": chat_id,
            "chat_type": chat_type,
            "message_type": message_type,
            "content": json.dumps(
                self._content(text, message_type, people), ensure_ascii=False, separators=(",", ":")
            ),
        }
        if people:
            message["mentions"] = [
                {
                    "key": f"@_user_{index}",
                    "id": self._ids(person),
                    "name": person.name,
                    # Each person's own tenant: an external contact's differs from the header's.
                    "tenant_key": person.tenant_key,
                    "mentioned_type": "bot" if person.is_bot else "user",
                }
                for index, person in enumerate(people, start=1)
            ]
        sender = self._person(sender_open_id)
        return {
            "schema": "2.0",
            "header": {
                "event_id": event_id or secrets.token_hex(16),
                "event_type": MESSAGE_RECEIVE,
                "create_time": now_ms,
                "token": self._config.verification_token,
                "app_id": self._config.app_id,
                "tenant_key": self._config.tenant_key,
            },
            "event": {
                "sender": {
                    "sender_id": self._ids(sender),
                    "sender_type": "user",
                    # The sender's own tenant; the header's is the app's (they differ for an external
                    # contact, as in the receive doc's example).
                    "tenant_key": sender.tenant_key,
                },
                "message": message,
            },
        }

    def build_message_event_v1(
        self,
        sender_open_id: str,
        chat_id: str,
        text: str,
        *,
        chat_type: Literal["group", "p2p"] = "group",
        mention_bot: bool = True,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        """The legacy schema 1.0 `message` event (feishu-protocol §1.6): flat, token at the top level."""
        now = self._clock()
        # As real ones: the bot as markup in `text`, gone from `text_without_at_bot` (its space stays).
        config = self._config
        at_bot = f'<at open_id="{config.bot_open_id}">{config.bot_name}</at>'
        mention = at_bot if mention_bot and chat_type == "group" else ""
        return {
            "uuid": secrets.token_hex(16),
            "ts": f"{now:.7f}",
            "token": self._config.verification_token,
            "type": "event_callback",
            "event": {
                "type": "message",
                "app_id": self._config.app_id,
                "tenant_key": self._config.tenant_key,
                "root_id": "",
                "parent_id": "",
                "open_chat_id": chat_id,
                "chat_type": "private" if chat_type == "p2p" else "group",
                "msg_type": "text",
                "open_id": sender_open_id,
                "open_message_id": message_id or new_message_id(),
                "is_mention": bool(mention),
                "text": f"{mention} {text}" if mention else text,
                "text_without_at_bot": f" {text}" if mention else text,
            },
        }

    def build_url_verification(self, challenge: str | None = None) -> dict[str, Any]:
        return {
            "challenge": challenge or secrets.token_urlsafe(16),
            "token": self._config.verification_token,
            "type": "url_verification",
        }

    # --- sealing ---------------------------------------------------------------------------------------

    def seal(
        self,
        payload: dict[str, Any],
        *,
        encrypt: bool = True,
        sign: bool = True,
        timestamp: str | None = None,
        nonce: str | None = None,
        signature: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """Headers and raw body of one push. With no Encrypt Key configured, Feishu sends plain JSON and
        (UNCONFIRMED, feishu-protocol §1.4) no signature; the keyword arguments tamper for tests."""
        key = self._config.encrypt_key
        return seal_body(
            payload,
            cipher=self._cipher if encrypt else None,
            sign=self._cipher is not None and sign,
            signer=lambda stamp, once, raw: event_signature(stamp, once, key, raw),
            clock=self._clock,
            timestamp=timestamp,
            nonce=nonce,
            signature=signature,
        )

    # --- pushing ---------------------------------------------------------------------------------------

    async def push(
        self,
        payload: dict[str, Any],
        *,
        encrypt: bool = True,
        sign: bool = True,
        timestamp: str | None = None,
        nonce: str | None = None,
        signature: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - handed to aiohttp's ClientTimeout
        fragments: int = 1,
    ) -> PushResult:
        hub = self._socket()
        if hub is not None:
            # Plaintext down the socket: no encryption, no signature (feishu-protocol, long connection).
            self._register(payload)
            pushed = await hub.deliver(payload, "event", fragments=fragments)
            status = 0 if pushed.code is None else 200 if pushed.code == 200 else 500
            return PushResult(
                status=status, body=pushed.data or {"code": pushed.code}, elapsed_ms=pushed.elapsed_ms
            )
        url = self._webhook_url()
        if not url:
            raise RuntimeError("webhook_url is not set: point the emulator at the bot's POST /feishu/events")
        self._register(payload)
        headers, body = self.seal(
            payload, encrypt=encrypt, sign=sign, timestamp=timestamp, nonce=nonce, signature=signature
        )
        session = self._ensure_session()
        started = time.perf_counter()
        async with session.post(
            url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            text = await response.text()
            status = response.status
        elapsed_ms = (time.perf_counter() - started) * 1000
        parsed: dict[str, Any] | str = text
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            parsed = decoded
        return PushResult(status=status, body=parsed, elapsed_ms=elapsed_ms)

    async def say(
        self,
        sender_open_id: str,
        chat_id: str,
        text: str,
        *,
        mention_bot: bool = True,
        message_type: Literal["text", "post"] = "text",
        message_id: str | None = None,
        **seal_options: Any,
    ) -> PushResult:
        """A user types `text` in a chat. `@Name` / `@email` words naming someone in the directory (or
        the bot) become mentions; in a group the bot is mentioned first unless `mention_bot=False`."""
        payload = self.build_say_event(
            sender_open_id,
            chat_id,
            text,
            mention_bot=mention_bot,
            message_type=message_type,
            message_id=message_id,
        )
        return await self.push(payload, **seal_options)

    def build_say_event(
        self,
        sender_open_id: str,
        chat_id: str,
        text: str,
        *,
        mention_bot: bool = True,
        message_type: Literal["text", "post"] = "text",
        message_id: str | None = None,
    ) -> dict[str, Any]:
        chat = self._config.chat(chat_id)
        chat_type: Literal["group", "p2p"] = chat.chat_type if chat else "group"
        mentions: list[str] = []

        def to_placeholder(match: re.Match[str]) -> str:
            who = self._lookup(match.group(1))
            if who is None:
                return match.group(0)
            mentions.append(who.open_id)
            return f"@_user_{len(mentions)}"

        # "@all" is a mention only where the group lets the sender make one; elsewhere it is just text.
        may_mention_all = chat is None or chat.may_mention_all(sender_open_id)
        body = _ALL_WORD.sub("@_all", text) if may_mention_all else text
        body = _AT_WORD.sub(to_placeholder, body)
        body = _URL.sub(lambda match: f"[{match.group(0)}]({match.group(0)})", body)
        if mention_bot and chat_type == "group" and self._config.bot_open_id not in mentions:
            # Typing "@Bot" first is how a group message reaches a bot; keep placeholder numbers in order.
            mentions.insert(0, self._config.bot_open_id)
            body = _PLACEHOLDER.sub(lambda m: f"@_user_{int(m.group(1)[7:]) + 1}", body)
            body = f"@_user_1 {body}"
        return self.build_message_event(
            sender_open_id,
            chat_id,
            body,
            chat_type=chat_type,
            mentions=mentions,
            message_type=message_type,
            message_id=message_id,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- helpers ---------------------------------------------------------------------------------------

    def _ensure_session(self) -> aiohttp.ClientSession:
        # One session for every push: created lazily inside the running loop, closed on app cleanup.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def _register(self, payload: dict[str, Any]) -> None:
        """Pushed messages exist in the tenant from now on, so the bot may reply to them."""
        event = payload.get("event")
        if not isinstance(event, dict):
            return
        message = event.get("message")
        if isinstance(message, dict):
            message_id, chat_id = message.get("message_id"), message.get("chat_id")
            root_id = message.get("root_id")
        else:  # schema 1.0
            message_id, chat_id, root_id = event.get("open_message_id"), event.get("open_chat_id"), None
        if isinstance(message_id, str) and isinstance(chat_id, str) and message_id and chat_id:
            self._store.register(
                message_id, chat_id, root_id if isinstance(root_id, str) and root_id else None
            )

    def _lookup(self, who: str) -> _Person | None:
        config = self._config
        if who in (config.bot_open_id, config.bot_name) or who.lower() == config.bot_name.lower():
            # The captured bot mention has a union_id and `user_id: null` (feishu-protocol §2).
            return _Person(
                config.bot_open_id, config.bot_name, _bot_union_id(config), None, config.tenant_key, True
            )
        for user in config.users:
            if who in (user.open_id, user.email) or who.lower() in (user.name.lower(), user.en_name.lower()):
                return _Person(
                    user.open_id,
                    user.name,
                    user.union_id or None,
                    user.user_id or None,
                    config.tenant_of(user.open_id),
                )
        return None

    def _person(self, who: str) -> _Person:
        found = self._lookup(who)
        if found is not None:
            return found
        # Someone outside the directory (a test's ad-hoc ID): only the open_id is known.
        return _Person(who, who, None, None, self._config.tenant_key)

    def _ids(self, person: _Person) -> dict[str, str | None]:
        # An id the app may not see is null, as Feishu sends it: user_id without the employee-id scope,
        # for a bot, or for an external contact (an employee id exists only inside its own tenant).
        user_id = person.user_id if self._config.shows_user_ids else None
        ids: dict[str, str | None] = {
            "union_id": person.union_id,
            "user_id": user_id,
            "open_id": person.open_id,
        }
        return {key: value for key, value in ids.items() if value or key == "user_id"}

    def _content(self, text: str, message_type: str, people: list[_Person]) -> dict[str, Any]:
        if message_type == "text":
            return {"text": text}
        self._posts += 1
        post = _post(text, people)
        # Most received posts are {"title", "content"}; some arrive inside a language wrapper, the shape
        # apps send (feishu-protocol §2). Every other post is wrapped, so tests over posts see both.
        return {"zh_cn": post} if self._posts % 2 == 0 else post


def _bot_union_id(config: EmulatorConfig) -> str:
    return "on_" + config.bot_open_id.removeprefix("ou_")


# The screenshot a user pastes under a command, as captured posts carry one (with its size).
_PASTED_IMAGE = {
    "tag": "img",
    "image_key": "img_v3_0210t_emulator-pasted-screenshot",
    "width": 384,
    "height": 192,
}


def _post(text: str, people: list[_Person]) -> dict[str, Any]:
    """Rich text as received (feishu-protocol §2, and the captured post): a first paragraph of text, at
    and a nodes; then an empty paragraph and a pasted image, as clients send them."""
    nodes: list[dict[str, Any]] = []
    for part in _RICH.split(text):
        if not part:
            continue
        if part == "@_all":
            # A post's @all: user_id "all" and no mentions[] entry (the SDKs' reading of real posts).
            nodes.append({"tag": "at", "user_id": "all", "user_name": "所有人", "style": []})
        elif _PLACEHOLDER.fullmatch(part):
            index = int(part[len("@_user_") :]) - 1
            person = people[index] if 0 <= index < len(people) else None
            # The captured bot mention carries its name; the doc's user mention has `user_name: ""`.
            name = person.name if person is not None and person.is_bot else ""
            nodes.append({"tag": "at", "user_id": part, "user_name": name, "style": []})
        elif part.startswith("[") and part.endswith(")"):
            label, _, href = part[1:-1].partition("](")
            nodes.append({"tag": "a", "text": label, "href": href, "style": []})
        else:
            nodes.append({"tag": "text", "text": part, "style": []})
    return {"title": "", "content": [nodes, [], [dict(_PASTED_IMAGE)]]}
