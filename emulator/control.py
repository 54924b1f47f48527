"""`/_emulator/*`: the emulator driven over HTTP, for the demo subprocess and benchmarks.

Loopback-only like the rest of the emulator. Every body is validated; anything malformed is a 400 with a
reason, never a 500. The webhook may only point at a loopback host, so a web page that reaches this port
cannot turn the emulator into a request relay.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulator.authorize import AuthorizeError, is_loopback_url
from emulator.faults import Fault

if TYPE_CHECKING:
    from emulator.emulator import Emulator


class _Say(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender: str = Field(min_length=1, max_length=256)
    chat_id: str = Field(min_length=1, max_length=256)
    text: str = Field(max_length=200_000)
    mention_bot: bool = True
    message_type: Literal["text", "post"] = "text"


class _Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)


class _Authorize(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=8192)
    as_user: str = Field(min_length=1, max_length=256)
    approve: bool = True


class _User(BaseModel):
    model_config = ConfigDict(extra="forbid")

    open_id: str = Field(min_length=1, max_length=256)


def _bad(reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=400)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        value = json.loads(await request.read())
    except (ValueError, RecursionError):
        raise _Refused("body is not valid JSON") from None
    if not isinstance(value, dict):
        raise _Refused("body is not a JSON object")
    return value


class _Refused(Exception):
    pass


def control_routes(emulator: Emulator) -> list[web.RouteDef]:
    async def messages(request: web.Request) -> web.Response:
        chat_id = request.query.get("chat_id")
        found = [m.as_json() for m in emulator.messages if chat_id is None or m.chat_id == chat_id]
        return web.json_response({"messages": found})

    async def requests_(request: web.Request) -> web.Response:
        return web.json_response({"requests": [r.as_json() for r in emulator.requests]})

    async def say(request: web.Request) -> web.Response:
        try:
            said = _Say.model_validate(await _json_object(request))
        except _Refused as refused:
            return _bad(str(refused))
        except ValidationError as error:
            return _bad(_first(error))
        payload = emulator.build_say_event(
            said.sender, said.chat_id, said.text, mention_bot=said.mention_bot, message_type=said.message_type
        )
        return await _push(payload, {"message_id": payload["event"]["message"]["message_id"]})

    async def push(request: web.Request) -> web.Response:
        try:
            payload = await _json_object(request)
        except _Refused as refused:
            return _bad(str(refused))
        return await _push(payload, {})

    async def _push(payload: dict[str, Any], extra: dict[str, Any]) -> web.Response:
        if not emulator.webhook_url:
            return _bad("webhook_url is not set: POST /_emulator/webhook first")
        try:
            result = await emulator.push(payload)
        except (aiohttp.ClientError, TimeoutError) as error:
            return web.json_response({"error": f"push failed: {type(error).__name__}: {error}"}, status=502)
        return web.json_response({**result.as_json(), **extra})

    async def faults(request: web.Request) -> web.Response:
        try:
            fault = Fault.model_validate(await _json_object(request))
        except _Refused as refused:
            return _bad(str(refused))
        except ValidationError as error:
            return _bad(_first(error))
        emulator.add_fault(fault)
        return web.json_response(
            {"pending": [{**f.model_dump(), "left": n} for f, n in emulator.pending_faults()]}
        )

    async def clear_faults(request: web.Request) -> web.Response:
        emulator.clear_faults()
        return web.json_response({"pending": []})

    async def webhook(request: web.Request) -> web.Response:
        try:
            target = _Webhook.model_validate(await _json_object(request))
        except _Refused as refused:
            return _bad(str(refused))
        except ValidationError as error:
            return _bad(_first(error))
        if not is_loopback_url(target.url):
            return _bad("url must be http(s) on a loopback host")
        emulator.webhook_url = target.url
        return web.json_response({"webhook_url": target.url})

    async def revoke(request: web.Request) -> web.Response:
        emulator.revoke_tenant_tokens()
        return web.json_response({"revoked": True})

    async def authorize(request: web.Request) -> web.Response:
        try:
            asked = _Authorize.model_validate(await _json_object(request))
        except _Refused as refused:
            return _bad(str(refused))
        except ValidationError as error:
            return _bad(_first(error))
        try:
            location = emulator.authorize(asked.url, as_user=asked.as_user, approve=asked.approve)
        except AuthorizeError as refused:
            return web.json_response({"error": refused.message, "code": refused.code}, status=400)
        return web.json_response({"location": location})

    async def revoke_user(request: web.Request) -> web.Response:
        try:
            user = _User.model_validate(await _json_object(request))
        except _Refused as refused:
            return _bad(str(refused))
        except ValidationError as error:
            return _bad(_first(error))
        if emulator.config.user(user.open_id) is None:
            return _bad(f"no user {user.open_id!r} in the directory")
        emulator.revoke_user_authorization(user.open_id)
        return web.json_response({"revoked": user.open_id})

    async def ephemeral(request: web.Request) -> web.Response:
        open_id = request.query.get("open_id")
        found = [m.as_json() for m in emulator.ephemeral_messages if open_id is None or m.open_id == open_id]
        return web.json_response({"ephemeral": found})

    async def card_updates(request: web.Request) -> web.Response:
        return web.json_response({"card_updates": [u.as_json() for u in emulator.card_updates]})

    return [
        web.post("/_emulator/authorize", authorize),
        web.post("/_emulator/revoke-user-authorization", revoke_user),
        web.get("/_emulator/ephemeral", ephemeral),
        web.get("/_emulator/card-updates", card_updates),
        web.get("/_emulator/messages", messages),
        web.get("/_emulator/requests", requests_),
        web.post("/_emulator/say", say),
        web.post("/_emulator/push", push),
        web.post("/_emulator/faults", faults),
        web.delete("/_emulator/faults", clear_faults),
        web.post("/_emulator/webhook", webhook),
        web.post("/_emulator/revoke-tenant-tokens", revoke),
    ]


def _first(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"
