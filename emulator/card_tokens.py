"""Card update tokens and the delayed update that spends them (feishu-protocol §3.4).

Every card callback carries a fresh token `c-…` (event.token, or `token` in the legacy body). With it the bot
may replace the clicked card through `POST /open-apis/interactive/v1/card/update` (tenant token, body
`{"token", "card"}`), answered `{"code": 0, "msg": "ok"}`. Rules from the delay-update doc page: valid 30
minutes (emulator clock), at most 2 uses, only after the callback was answered ("parallel or earlier calls
fail or are undone"), only the clicked card of this bot; a non-shared 1.0 card needs `card.open_ids`.
Codes: `replies` (CARD_* rows). Only a successful update spends a use: UNCONFIRMED.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from emulator import replies
from emulator.config import EmulatorConfig
from emulator.gateway import Gateway, require_app_scope
from emulator.messages import MessageStore
from emulator.replies import Refusal
from emulator.updates import CARD_LIMIT_BYTES, CardUpdate, is_shared, is_v2

TOKEN_TTL_SECONDS = 30 * 60
TOKEN_MAX_USES = 2
# The doc's example token: "c-" and 40 hex digits.
_TOKEN_FORMAT = re.compile(r"^c-[0-9A-Za-z]+$")
SCOPES = ("im:message", "im:message:send_as_bot", "im:message:update")


def new_card_token() -> str:
    return "c-" + secrets.token_hex(20)


@dataclass
class CallbackToken:
    """One callback's update token and what became of it."""

    token: str
    message_id: str
    operator: str
    issued_at: float
    uses: int = 0
    # Callbacks carrying this token still waiting for the bot's answer.
    in_flight: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "message_id": self.message_id,
            "operator": self.operator,
            "issued_at": self.issued_at,
            "uses": self.uses,
            "in_flight": self.in_flight,
        }


class CardTokens:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._tokens: dict[str, CallbackToken] = {}

    def issue(self, message_id: str, operator: str) -> CallbackToken:
        token = CallbackToken(new_card_token(), message_id, operator, self._clock())
        self._tokens[token.token] = token
        return token

    def get(self, token: str) -> CallbackToken | None:
        return self._tokens.get(token)


class CardTokenApi:
    def __init__(
        self,
        config: EmulatorConfig,
        gateway: Gateway,
        store: MessageStore,
        tokens: CardTokens,
        updates: list[CardUpdate],
    ) -> None:
        self._config = config
        self._gateway = gateway
        self._store = store
        self._tokens = tokens
        self._updates = updates

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/open-apis/interactive/v1/card/update", self.update)]

    async def update(self, request: web.Request) -> web.Response:
        try:
            _, body = await self._gateway.begin(request, "card_update")
            self._gateway.authorize_tenant(request)
            require_app_scope(self._config.app_scopes, SCOPES)
            if not isinstance(body, dict):
                raise Refusal(replies.error(replies.CARD_NOT_JSON))
            token = self._spendable(body.get("token"))
            content = self._card(token, body.get("card"))
        except Refusal as refusal:
            return refusal.response
        token.uses += 1
        self._store.replace_content(token.message_id, content)
        self._updates.append(CardUpdate(token.message_id, content, self._gateway.now(), via="token"))
        return replies.ok({"code": 0, "msg": "ok"})

    def _spendable(self, value: Any) -> CallbackToken:
        if not isinstance(value, str) or not _TOKEN_FORMAT.fullmatch(value):
            raise Refusal(replies.error(replies.CARD_TOKEN_BAD_FORMAT))
        token = self._tokens.get(value)
        if token is None:
            raise Refusal(replies.error(replies.CARD_TOKEN_EXPIRED, detail="(unknown token)"))
        if self._gateway.now() - token.issued_at >= TOKEN_TTL_SECONDS:
            raise Refusal(replies.error(replies.CARD_TOKEN_EXPIRED, detail="(older than 30 minutes)"))
        if token.in_flight:
            raise Refusal(
                replies.error(
                    replies.CARD_TOKEN_EXPIRED,
                    detail="(the card callback has not been answered yet: answer it first, then update)",
                )
            )
        if token.uses >= TOKEN_MAX_USES:
            raise Refusal(replies.error(replies.CARD_TOKEN_USED_UP))
        return token

    def _card(self, token: CallbackToken, card: Any) -> dict[str, Any]:
        if not isinstance(card, dict) or not card:
            raise Refusal(replies.error(replies.CARD_PARAM_INVALID, detail="card must be a JSON object"))
        if len(json.dumps(card, ensure_ascii=False).encode()) > CARD_LIMIT_BYTES:
            raise Refusal(replies.error(replies.CARD_TOO_LARGE))
        sent = self._store.find_sent(token.message_id)
        if sent is None:  # tokens are only issued for the bot's own cards
            raise Refusal(replies.error(replies.CARD_TOKEN_EXPIRED, detail="(the card is gone)"))
        content = {key: value for key, value in card.items() if key != "open_ids"}
        if content.get("type") == "template":
            data = content.get("data")
            if not isinstance(data, dict) or not isinstance(data.get("template_id"), str):
                raise Refusal(
                    replies.error(replies.CARD_PARAM_INVALID, detail="data.template_id is required")
                )
            return content
        if is_v2(sent.content) and not is_v2(content):
            # A 2.0 card never becomes a 1.0 one (client code 200830); the API's code for it: GUESS.
            raise Refusal(replies.error(replies.CARD_FORMAT_INVALID, detail="ErrCode: 200830"))
        if not is_shared(content) and not card.get("open_ids"):
            raise Refusal(replies.error(replies.CARD_OPEN_IDS_REQUIRED))
        return content
