"""`/_emulator/click` and `/_emulator/card-callback`: clicking cards over HTTP, for the demo and console.

Validated like the rest of `/_emulator/*` (a 400 with a reason, never a 500); the legacy callback URL may
only point at a loopback host.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulator.authorize import is_loopback_url
from emulator.clicker import ClickError

if TYPE_CHECKING:
    from emulator.emulator import Emulator


class _Click(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operator: str = Field(min_length=1, max_length=256)
    message_id: str = Field(min_length=1, max_length=256)
    value: dict[str, Any] | str
    legacy: bool = False
    tag: str = Field(default="button", min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=256)
    form_value: dict[str, Any] | None = None
    input_value: str | None = Field(default=None, max_length=100_000)
    option: str | None = Field(default=None, max_length=1024)
    options: list[str] | None = None
    checked: bool | None = None
    timezone: str | None = Field(default=None, max_length=64)


class _Url(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)


def _bad(reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=400)


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except (ValueError, RecursionError):
        return None


def _reason(error: ValidationError) -> str:
    first = error.errors()[0]
    return f"{'.'.join(str(part) for part in first['loc']) or 'body'}: {first['msg']}"


def click_control_routes(emulator: Emulator) -> list[web.RouteDef]:
    async def click(request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            return _bad("body is not a JSON object")
        try:
            asked = _Click.model_validate(body)
        except ValidationError as error:
            return _bad(_reason(error))
        action = asked.model_dump(exclude={"operator", "message_id", "value", "legacy"}, exclude_none=True)
        if not (emulator.card_callback_url if asked.legacy else emulator.webhook_url):
            return _bad("no callback URL: POST /_emulator/webhook (or /_emulator/card-callback) first")
        try:
            result = await emulator.click(
                asked.operator, asked.message_id, asked.value, legacy=asked.legacy, **action
            )
        except ClickError as refused:
            return _bad(str(refused))
        return web.json_response(result.as_json())

    async def card_callback(request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            return _bad("body is not a JSON object")
        try:
            target = _Url.model_validate(body)
        except ValidationError as error:
            return _bad(_reason(error))
        if not is_loopback_url(target.url):
            return _bad("url must be http(s) on a loopback host")
        emulator.card_callback_url = target.url
        return web.json_response({"card_callback_url": target.url})

    async def results(request: web.Request) -> web.Response:
        return web.json_response({"clicks": [r.as_json() for r in emulator.click_results]})

    return [
        web.post("/_emulator/click", click),
        web.get("/_emulator/clicks", results),
        web.post("/_emulator/card-callback", card_callback),
    ]
