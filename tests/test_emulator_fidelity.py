"""The emulator checked against the official SDK (lark-oapi): if the SDK accepts what the emulator
pushes and parses what it answers, the bot is being tested against Feishu's real shapes.

The SDK is synchronous where it matters (token fetch, sync client), so its calls run in a worker thread
while the emulator keeps serving on the test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import lark_oapi as lark  # imported once: it takes seconds
import pytest
from aiohttp import web
from Crypto.Cipher import AES
from lark_oapi.api.im.v1 import ReplyMessageRequest, ReplyMessageRequestBody
from lark_oapi.channel.bot_identity import fetch_bot_identity
from lark_oapi.core.token.access_token_response import AccessTokenResponse
from lark_oapi.core.utils import AESCipher

from bot.feishu.crypto import PayloadCipher
from emulator import Emulator, EmulatorConfig, start_emulator

ALICE = "ou_alice0000000000000000000000001"
BOB = "ou_bob000000000000000000000000002"
TEAM = "oc_team00000000000000000000000001"


@dataclass
class Setup:
    emulator: Emulator
    base: str
    pushes: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def sdk_handler(self, received: list[Any]) -> Any:
        config = self.emulator.config
        return (
            lark.EventDispatcherHandler.builder(config.encrypt_key, config.verification_token)
            .register_p2_im_message_receive_v1(received.append)
            .build()
        )

    def sdk_client(self) -> Any:
        config = self.emulator.config
        return (
            lark.Client.builder()
            .app_id(config.app_id)
            .app_secret(config.app_secret)
            .domain(self.base)
            .log_level(lark.LogLevel.ERROR)
            .build()
        )


def _raw_request(headers: dict[str, str], body: bytes) -> Any:
    request = lark.RawRequest()
    request.uri = "/feishu/events"
    request.headers = headers
    request.body = body
    return request


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    pushes: list[tuple[dict[str, str], bytes]] = []

    async def capture(request: web.Request) -> web.Response:
        pushes.append((dict(request.headers), await request.read()))
        return web.json_response({"msg": "success"})

    app = web.Application()
    app.router.add_post("/feishu/events", capture)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/feishu/events"
    # A fresh app_id per test: the SDK caches tenant tokens process-wide, keyed by app_id.
    config = EmulatorConfig(app_id="cli_fidelity" + secrets.token_hex(6), webhook_url=url)
    emulator, emulator_runner, base = await start_emulator(config)
    yield Setup(emulator, base, pushes)
    await emulator_runner.cleanup()
    await runner.cleanup()


# --- events: the SDK verifies, decrypts and parses what the emulator pushes --------------------------


async def test_sdk_accepts_and_parses_a_pushed_message(setup: Setup) -> None:
    result = await setup.emulator.say(ALICE, TEAM, "/invite @Bob now")
    assert result.status == 200
    [(headers, body)] = setup.pushes
    assert "encrypt" in json.loads(body)

    received: list[Any] = []
    response = setup.sdk_handler(received).do(_raw_request(headers, body))
    assert response.status_code == 200, response.content
    [event] = received
    config = setup.emulator.config
    assert event.header.event_type == "im.message.receive_v1"
    assert event.header.token == config.verification_token
    assert (event.header.app_id, event.header.tenant_key) == (config.app_id, config.tenant_key)
    assert len(event.header.event_id) == 32
    message = event.event.message
    assert message.chat_id == TEAM
    assert message.chat_type == "group"
    assert message.message_type == "text"
    assert message.message_id.startswith("om_")
    assert json.loads(message.content) == {"text": "@_user_1 /invite @_user_2 now"}
    assert [(m.key, m.id.open_id, m.name) for m in message.mentions] == [
        ("@_user_1", config.bot_open_id, config.bot_name),
        ("@_user_2", BOB, "Bob"),
    ]
    assert event.event.sender.sender_id.open_id == ALICE
    assert event.event.sender.sender_type == "user"


async def test_sdk_parses_a_post_message(setup: Setup) -> None:
    payload = setup.emulator.build_message_event(
        ALICE, TEAM, "@_user_1 hello", mentions=["InviteBot"], message_type="post"
    )
    headers, body = setup.emulator.seal(payload)
    received: list[Any] = []
    response = setup.sdk_handler(received).do(_raw_request(headers, body))
    assert response.status_code == 200, response.content
    content = json.loads(received[0].event.message.content)
    assert content["content"][0][0]["user_id"] == "@_user_1"
    assert received[0].event.message.message_id == payload["event"]["message"]["message_id"]


@pytest.mark.parametrize(
    "tamper",
    [
        {"signature": "0" * 64},
        {"timestamp": "1"},  # signed over another timestamp than the one in the header
    ],
)
async def test_sdk_refuses_a_tampered_signature(setup: Setup, tamper: dict[str, str]) -> None:
    payload = setup.emulator.build_message_event(ALICE, TEAM, "hi")
    headers, body = setup.emulator.seal(payload, **{"signature": tamper.get("signature")})
    if "timestamp" in tamper:
        headers["X-Lark-Request-Timestamp"] = tamper["timestamp"]
    received: list[Any] = []
    response = setup.sdk_handler(received).do(_raw_request(headers, body))
    assert response.status_code == 500
    assert b"signature" in response.content
    assert received == []


async def test_sdk_answers_the_url_verification(setup: Setup) -> None:
    headers, body = setup.emulator.seal(setup.emulator.build_url_verification("challenge-42"), sign=False)
    response = setup.sdk_handler([]).do(_raw_request(headers, body))
    assert response.status_code == 200
    assert json.loads(response.content) == {"challenge": "challenge-42"}


# --- the cipher, both ways --------------------------------------------------------------------------


def test_sdk_decrypts_what_payload_cipher_encrypts() -> None:
    for plaintext in ("hello world", json.dumps({"schema": "2.0", "text": "你好"}), "x" * 1000, ""):
        sealed = PayloadCipher("k3y").encrypt(plaintext.encode())
        assert AESCipher("k3y").decrypt_str(sealed) == plaintext


def test_payload_cipher_decrypts_an_independent_encryption() -> None:
    # Encrypted with pycryptodome (the SDK's own AES backend), following Feishu's recipe step by step.
    key = hashlib.sha256(b"k3y").digest()
    iv = os.urandom(16)
    plaintext = json.dumps({"challenge": "c", "type": "url_verification"}).encode()
    pad = 16 - len(plaintext) % 16
    blob = iv + AES.new(key, AES.MODE_CBC, iv).encrypt(plaintext + bytes([pad]) * pad)
    assert PayloadCipher("k3y").decrypt(base64.b64encode(blob).decode()) == plaintext


# --- the Open API: the SDK's own client talks to the emulator ---------------------------------------


async def test_sdk_client_fetches_a_token_and_replies(setup: Setup) -> None:
    await setup.emulator.say(ALICE, TEAM, "/help")
    parent = json.loads(
        PayloadCipher(setup.emulator.config.encrypt_key).decrypt(json.loads(setup.pushes[0][1])["encrypt"])
    )["event"]["message"]["message_id"]
    request = (
        ReplyMessageRequest.builder()
        .message_id(parent)
        .request_body(
            ReplyMessageRequestBody.builder()
            .msg_type("text")
            .content(json.dumps({"text": "usage: /invite @someone"}))
            .uuid("fidelity-1")
            .build()
        )
        .build()
    )
    response = await asyncio.to_thread(setup.sdk_client().im.v1.message.reply, request)
    assert response.success(), (response.code, response.msg)
    assert response.get_log_id()
    [sent] = setup.emulator.messages
    data = response.data
    assert data.message_id == sent.message_id
    assert (data.parent_id, data.root_id, data.chat_id, data.msg_type) == (parent, parent, TEAM, "text")
    assert data.sender.id == setup.emulator.config.app_id
    assert data.sender.sender_type == "app"
    assert json.loads(data.body.content) == {"text": "usage: /invite @someone"}
    kinds = [(r.path, r.token_kind) for r in setup.emulator.requests]
    assert kinds == [
        ("/open-apis/auth/v3/tenant_access_token/internal", "none"),
        (f"/open-apis/im/v1/messages/{parent}/reply", "tenant"),
    ]


async def test_sdk_client_reads_an_error_answer(setup: Setup) -> None:
    request = (
        ReplyMessageRequest.builder()
        .message_id("om_missing")
        .request_body(ReplyMessageRequestBody.builder().msg_type("text").content('{"text":"x"}').build())
        .build()
    )
    response = await asyncio.to_thread(setup.sdk_client().im.v1.message.reply, request)
    assert not response.success()
    assert response.code == 230001
    # 1.7.5 leaves `error` as the raw dict; either way it carries the header's log id.
    error = response.error
    log_id = error["log_id"] if isinstance(error, dict) else error.log_id
    assert log_id == response.get_log_id()


async def test_sdk_parses_the_token_and_bot_info_answers(setup: Setup) -> None:
    config = setup.emulator.config
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            setup.base + "/open-apis/auth/v3/tenant_access_token/internal",
            json={"app_id": config.app_id, "app_secret": config.app_secret},
        ) as answer,
    ):
        token = lark.JSON.unmarshal(await answer.text(), AccessTokenResponse)
    assert token.success()
    assert token.tenant_access_token.startswith("t-")
    assert token.expire == config.tenant_token_ttl_seconds

    client = setup.sdk_client()
    identity = await asyncio.to_thread(asyncio.run, fetch_bot_identity(client._config))
    assert identity is not None
    assert (identity.open_id, identity.name) == (config.bot_open_id, config.bot_name)
