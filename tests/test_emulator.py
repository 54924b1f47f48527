"""The emulator's own behaviour, over real loopback HTTP: what a bot talking to it would see."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from bot.feishu.crypto import PayloadCipher, event_signature
from bot.feishu.events import EventEnvelope, parse_message_receive
from bot.feishu.webhook import WebhookSecrets, open_event_request
from emulator import Emulator, EmulatorConfig, Fault, start_emulator
from emulator.config import DEFAULT_APP_SCOPES, USER_ID_SCOPE
from tests.harness import FixedClock

ALICE = "ou_alice0000000000000000000000001"
BOB = "ou_bob000000000000000000000000002"
TEAM = "oc_team00000000000000000000000001"
NO_BOT = "oc_nobot0000000000000000000000001"
TOKEN_URL = "/open-apis/auth/v3/tenant_access_token/internal"


@dataclass
class Capture:
    """A stand-in for the bot's webhook that keeps what it was sent."""

    url: str = ""
    pushes: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answer: dict[str, Any] = field(default_factory=lambda: {"msg": "success"})


@dataclass
class Harness:
    emulator: Emulator
    base: str
    http: aiohttp.ClientSession
    capture: Capture
    clock: FixedClock

    async def call(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as response:
            text = await response.text()
            try:
                body: Any = json.loads(text)
            except ValueError:
                body = text
            return response.status, body, response.headers

    async def token(self) -> str:
        config = self.emulator.config
        status, body, _ = await self.call(
            "POST", TOKEN_URL, json={"app_id": config.app_id, "app_secret": config.app_secret}
        )
        assert status == 200
        assert body["code"] == 0
        token: str = body["tenant_access_token"]
        return token

    async def pushed_message_id(self, text: str = "hello", chat_id: str = TEAM) -> str:
        payload = self.emulator.build_say_event(ALICE, chat_id, text)
        result = await self.emulator.push(payload)
        assert result.status == 200
        message_id: str = payload["event"]["message"]["message_id"]
        return message_id


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    capture = Capture()

    async def events(request: web.Request) -> web.Response:
        capture.pushes.append((dict(request.headers), await request.read()))
        return web.json_response(capture.answer)

    bot_app = web.Application()
    bot_app.router.add_post("/feishu/events", events)
    bot_runner = web.AppRunner(bot_app)
    await bot_runner.setup()
    await web.TCPSite(bot_runner, "127.0.0.1", 0).start()
    capture.url = f"http://127.0.0.1:{bot_runner.addresses[0][1]}/feishu/events"

    emulator, runner, base = await start_emulator(EmulatorConfig(webhook_url=capture.url))
    clock = FixedClock()
    emulator.clock = clock
    async with aiohttp.ClientSession() as http:
        yield Harness(emulator, base, http, capture, clock)
    await runner.cleanup()
    await bot_runner.cleanup()


def _reply_body(text: str = "ok", **extra: Any) -> dict[str, Any]:
    return {"msg_type": "text", "content": json.dumps({"text": text}), **extra}


# --- tenant_access_token ---------------------------------------------------------------------------------


async def test_token_is_reused_until_30_minutes_remain_then_renewed(harness: Harness) -> None:
    first = await harness.token()
    assert first.startswith("t-")
    harness.clock.now += 60 * 60  # 1 h left
    status, body, headers = await harness.call(
        "POST", TOKEN_URL, json={"app_id": "cli_emulator0000001", "app_secret": "emulator-app-secret"}
    )
    assert (status, body["tenant_access_token"], body["expire"]) == (200, first, 3600)
    assert body["msg"] == "ok"
    assert headers["X-Tt-Logid"]

    harness.clock.now += 31 * 60  # 29 min left: a new token, the old one still valid
    second = await harness.token()
    assert second != first
    for token in (first, second):
        status, body, _ = await harness.call("GET", "/open-apis/bot/v3/info", token=token)
        assert (status, body["code"]) == (200, 0)

    harness.clock.now += 30 * 60  # the first has expired, the second has not
    status, body, _ = await harness.call("GET", "/open-apis/bot/v3/info", token=first)
    assert (status, body["code"]) == (400, 99991663)
    status, body, _ = await harness.call("GET", "/open-apis/bot/v3/info", token=second)
    assert body["code"] == 0


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        ({"app_id": "cli_emulator0000001", "app_secret": "wrong"}, 10014),
        ({"app_id": "cli_someone_else", "app_secret": "emulator-app-secret"}, 10003),
        ({"app_id": "cli_emulator0000001"}, 10003),
        ([1, 2], 10003),
    ],
)
async def test_bad_credentials_get_feishu_codes_with_http_200(
    harness: Harness, credentials: Any, code: int
) -> None:
    status, body, _ = await harness.call("POST", TOKEN_URL, json=credentials)
    assert (status, body["code"]) == (200, code)
    assert "tenant_access_token" not in body


async def test_revoked_tokens_are_refused_and_a_refetch_works(harness: Harness) -> None:
    old = await harness.token()
    harness.emulator.revoke_tenant_tokens()
    status, body, _ = await harness.call("GET", "/open-apis/bot/v3/info", token=old)
    assert (status, body["code"]) == (400, 99991663)
    new = await harness.token()
    assert new != old
    status, body, _ = await harness.call("GET", "/open-apis/bot/v3/info", token=new)
    assert body["code"] == 0


# --- auth on business APIs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, 99991661),
        ("t-whatever", 99991661),  # no "Bearer " prefix counts as no token
        ("Bearer ", 99991661),
        ("Bearer t-forged", 99991663),
        ("Bearer u-usertoken", 99991668),
    ],
)
async def test_auth_errors(harness: Harness, authorization: str | None, code: int) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with harness.http.get(harness.base + "/open-apis/bot/v3/info", headers=headers) as response:
        body = await response.json()
        assert (response.status, body["code"]) == (400, code)
        # Feishu echoes the response's log id in the error body.
        assert body["error"]["log_id"] == response.headers["X-Tt-Logid"]


async def test_bot_info_has_top_level_bot(harness: Harness) -> None:
    status, body, _ = await harness.call("GET", "/open-apis/bot/v3/info", token=await harness.token())
    assert status == 200
    assert "data" not in body
    assert body["bot"] == {
        "activate_status": 2,
        "app_name": "InviteBot",
        "avatar_url": harness.emulator.config.bot_avatar_url,
        "ip_white_list": [],
        "open_id": harness.emulator.config.bot_open_id,
    }


async def test_unknown_paths_get_plain_404(harness: Harness) -> None:
    status, body, _ = await harness.call("GET", "/open-apis/nonexistent/v1/foo")
    assert (status, body) == (404, "404 page not found")
    status, body, _ = await harness.call("GET", TOKEN_URL)
    assert (status, body) == (404, "404 page not found")


# --- reply and send --------------------------------------------------------------------------------------


async def test_reply_is_recorded_and_answered_in_feishu_shape(harness: Harness) -> None:
    token = await harness.token()
    parent = await harness.pushed_message_id()
    text = f'<at user_id="{BOB}">Bob</at> you are invited'
    status, body, _ = await harness.call(
        "POST", f"/open-apis/im/v1/messages/{parent}/reply", token=token, json=_reply_body(text, uuid="u-1")
    )
    assert (status, body["code"]) == (200, 0)
    data = body["data"]
    assert data["message_id"].startswith("om_")
    assert data["chat_id"] == TEAM
    assert (data["parent_id"], data["root_id"], data["msg_type"]) == (parent, parent, "text")
    assert data["sender"] == {
        "id": "cli_emulator0000001",
        "id_type": "app_id",
        "sender_type": "app",
        "tenant_key": "tenant_emulator0001",
    }
    assert json.loads(data["body"]["content"]) == {"text": "@_user_1 you are invited"}
    assert data["mentions"][0]["key"] == "@_user_1"
    assert data["mentions"][0]["id"] == BOB
    assert isinstance(data["create_time"], str)

    [sent] = await harness.emulator.wait_for_messages(1, chat_id=TEAM, timeout=1)
    assert sent.message_id == data["message_id"]
    assert (sent.reply_to, sent.uuid, sent.msg_type, sent.content) == (parent, "u-1", "text", {"text": text})


async def test_reply_to_unknown_message_is_refused(harness: Harness) -> None:
    status, body, _ = await harness.call(
        "POST", "/open-apis/im/v1/messages/om_nope/reply", token=await harness.token(), json=_reply_body()
    )
    assert (status, body["code"]) == (400, 230001)
    assert harness.emulator.messages == []


async def test_same_uuid_within_an_hour_sends_once(harness: Harness) -> None:
    token = await harness.token()
    parent = await harness.pushed_message_id()
    path = f"/open-apis/im/v1/messages/{parent}/reply"
    _, first, _ = await harness.call("POST", path, token=token, json=_reply_body(uuid="same"))
    _, again, _ = await harness.call("POST", path, token=token, json=_reply_body(uuid="same"))
    assert first["data"]["message_id"] == again["data"]["message_id"]
    assert len(harness.emulator.messages) == 1
    harness.clock.now += 3600
    _, later, _ = await harness.call("POST", path, token=await harness.token(), json=_reply_body(uuid="same"))
    assert later["data"]["message_id"] != first["data"]["message_id"]
    assert len(harness.emulator.messages) == 2


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"msg_type": "text", "content": {"text": "an object, not a string"}}, 99992402),
        ({"msg_type": "text"}, 99992402),
        ({"content": json.dumps({"text": "x"})}, 99992402),
        ({"msg_type": "text", "content": "{not json"}, 230001),
        ({"msg_type": "text", "content": "[1]"}, 230001),
        ({"msg_type": "telegram", "content": json.dumps({"text": "x"})}, 230001),
        ({"msg_type": "system", "content": json.dumps({"text": "x"})}, 230001),  # send-only
        (_reply_body(uuid="x" * 51), 99992402),
        (_reply_body("x" * (150 * 1024)), 230025),
        ({"msg_type": "interactive", "content": json.dumps({"elements": ["x" * 31 * 1024]})}, 230025),
        ({"msg_type": "post", "content": json.dumps({"zh_cn": {"title": "x" * 31 * 1024}})}, 230025),
    ],
)
async def test_reply_validation(harness: Harness, body: dict[str, Any], code: int) -> None:
    parent = await harness.pushed_message_id()
    status, answer, _ = await harness.call(
        "POST", f"/open-apis/im/v1/messages/{parent}/reply", token=await harness.token(), json=body
    )
    assert (status, answer["code"]) == (400, code)
    assert harness.emulator.messages == []


async def test_large_text_under_the_limit_is_accepted(harness: Harness) -> None:
    parent = await harness.pushed_message_id()
    status, answer, _ = await harness.call(
        "POST",
        f"/open-apis/im/v1/messages/{parent}/reply",
        token=await harness.token(),
        json=_reply_body("x" * (100 * 1024)),
    )
    assert (status, answer["code"]) == (200, 0)


async def test_send_resolves_receivers(harness: Harness) -> None:
    token = await harness.token()
    body = {"receive_id": "bob@example.com", **_reply_body("hi")}
    status, answer, _ = await harness.call(
        "POST", "/open-apis/im/v1/messages?receive_id_type=email", token=token, json=body
    )
    assert (status, answer["code"]) == (200, 0)
    [sent] = harness.emulator.messages
    assert sent.receive_id == "bob@example.com"
    assert sent.reply_to is None
    assert sent.chat_id.startswith("oc_")
    assert "parent_id" not in answer["data"]

    status, answer, _ = await harness.call(
        "POST",
        "/open-apis/im/v1/messages?receive_id_type=open_id",
        token=token,
        json={"receive_id": ALICE, **_reply_body()},
    )
    assert answer["data"]["chat_id"] == "oc_p2palice000000000000000000001"

    status, answer, _ = await harness.call(
        "POST", "/open-apis/im/v1/messages?receive_id_type=phone", token=token, json=body
    )
    assert (status, answer["code"]) == (400, 99992402)
    status, answer, _ = await harness.call(
        "POST",
        "/open-apis/im/v1/messages?receive_id_type=chat_id",
        token=token,
        json={"receive_id": "oc_unknown", **_reply_body()},
    )
    assert (status, answer["code"]) == (400, 230001)


async def test_bot_outside_the_chat_gets_230002(harness: Harness) -> None:
    token = await harness.token()
    status, answer, _ = await harness.call(
        "POST",
        "/open-apis/im/v1/messages?receive_id_type=chat_id",
        token=token,
        json={"receive_id": NO_BOT, **_reply_body()},
    )
    assert (status, answer["code"]) == (400, 230002)
    parent = await harness.pushed_message_id(chat_id=NO_BOT)
    status, answer, _ = await harness.call(
        "POST", f"/open-apis/im/v1/messages/{parent}/reply", token=token, json=_reply_body()
    )
    assert (status, answer["code"]) == (400, 230002)


async def test_five_messages_per_second_per_chat(harness: Harness) -> None:
    token = await harness.token()
    send = "/open-apis/im/v1/messages?receive_id_type=chat_id"
    for _ in range(5):
        _, answer, _ = await harness.call(
            "POST", send, token=token, json={"receive_id": TEAM, **_reply_body()}
        )
        assert answer["code"] == 0
    status, answer, _ = await harness.call(
        "POST", send, token=token, json={"receive_id": TEAM, **_reply_body()}
    )
    assert (status, answer["code"]) == (400, 230020)
    # Another chat has its own budget; a second later this one has too.
    _, answer, _ = await harness.call("POST", send, token=token, json={"receive_id": ALICE, **_reply_body()})
    harness.clock.now += 1.0
    _, answer, _ = await harness.call("POST", send, token=token, json={"receive_id": TEAM, **_reply_body()})
    assert answer["code"] == 0
    assert len(harness.emulator.messages) == 6


# --- faults ----------------------------------------------------------------------------------------------


async def test_faults_fire_in_order_then_are_consumed(harness: Harness) -> None:
    harness.emulator.add_fault(Fault(route="bot_info", status=500, times=2))
    harness.emulator.add_fault(Fault(route="bot_info", status=429, headers={"x-ogw-ratelimit-reset": "7"}))
    harness.emulator.add_fault(Fault(route="bot_info", status=400, code=99991400))
    token = await harness.token()
    seen = [await harness.call("GET", "/open-apis/bot/v3/info", token=token) for _ in range(5)]
    assert [status for status, _, _ in seen] == [500, 500, 429, 400, 200]
    assert isinstance(seen[0][1], str)  # a gateway failure is not Feishu JSON
    assert seen[2][1]["code"] == 99991400
    assert seen[2][2]["x-ogw-ratelimit-reset"] == "7"
    assert seen[3][1]["code"] == 99991400
    assert seen[3][2]["x-ogw-ratelimit-reset"]
    assert seen[4][1]["code"] == 0


async def test_delay_fault_delays_then_answers_normally(harness: Harness) -> None:
    harness.emulator.add_fault(Fault(route="tenant_token", status=None, delay_seconds=0.2))
    started = time.perf_counter()
    await harness.token()
    assert time.perf_counter() - started >= 0.2


async def test_fault_on_reply_leaves_no_message(harness: Harness) -> None:
    harness.emulator.add_fault(Fault(route="reply", status=503))
    parent = await harness.pushed_message_id()
    path = f"/open-apis/im/v1/messages/{parent}/reply"
    token = await harness.token()
    status, _, _ = await harness.call("POST", path, token=token, json=_reply_body())
    assert status == 503
    assert harness.emulator.messages == []
    status, _, _ = await harness.call("POST", path, token=token, json=_reply_body())
    assert status == 200
    assert len(harness.emulator.messages) == 1


async def test_requests_are_recorded_without_secrets(harness: Harness) -> None:
    token = await harness.token()
    await harness.call("GET", "/open-apis/bot/v3/info", token=token)
    token_call, info_call = harness.emulator.requests
    assert token_call.json == {"app_id": "cli_emulator0000001", "app_secret": "***"}
    assert (token_call.token_kind, info_call.token_kind) == ("none", "tenant")
    assert token not in json.dumps([r.as_json() for r in harness.emulator.requests])


async def test_wait_for_messages_times_out(harness: Harness) -> None:
    with pytest.raises(TimeoutError):
        await harness.emulator.wait_for_messages(1, timeout=0.05)


# --- pushing ---------------------------------------------------------------------------------------------


async def test_say_pushes_a_signed_encrypted_event_the_bot_can_open(harness: Harness) -> None:
    result = await harness.emulator.say(ALICE, TEAM, "/invite @Bob @carol@example.com now")
    assert result.status == 200
    assert result.body == {"msg": "success"}
    [(headers, raw)] = harness.capture.pushes
    config = harness.emulator.config
    assert headers["X-Lark-Request-Timestamp"] == str(int(harness.clock.now))
    expected = event_signature(
        headers["X-Lark-Request-Timestamp"], headers["X-Lark-Request-Nonce"], config.encrypt_key, raw
    )
    assert headers["X-Lark-Signature"] == expected
    payload = json.loads(PayloadCipher(config.encrypt_key).decrypt(json.loads(raw)["encrypt"]))
    assert len(payload["header"]["event_id"]) == 32

    # The bot's own door accepts it and reads the same message.
    secrets = WebhookSecrets(config.verification_token, config.encrypt_key, replay_window_seconds=300)
    envelope = open_event_request(headers, raw, secrets, now=harness.clock.now)
    assert isinstance(envelope, EventEnvelope)
    message = parse_message_receive(envelope).message
    assert json.loads(message.content) == {"text": "@_user_1 /invite @_user_2 @_user_3 now"}
    assert [(m.key, m.id.open_id) for m in message.mentions] == [
        ("@_user_1", config.bot_open_id),
        ("@_user_2", BOB),
        ("@_user_3", "ou_carol00000000000000000000000003"),
    ]
    assert harness.emulator.build_say_event(ALICE, TEAM, "hi @InviteBot")["event"]["message"]["content"] == (
        '{"text":"hi @_user_1"}'
    )


async def test_seal_options_tamper(harness: Harness) -> None:
    emulator = harness.emulator
    payload = emulator.build_url_verification("c-1")
    headers, body = emulator.seal(payload, encrypt=False, sign=False)
    assert json.loads(body) == payload
    assert "X-Lark-Signature" not in headers
    headers, body = emulator.seal(payload, timestamp="1", signature="00")
    assert headers["X-Lark-Request-Timestamp"] == "1"
    assert headers["X-Lark-Signature"] == "00"
    assert "encrypt" in json.loads(body)


async def test_no_encrypt_key_means_plain_unsigned_pushes() -> None:
    emulator = Emulator(EmulatorConfig(encrypt_key=""))
    headers, body = emulator.seal(emulator.build_message_event(ALICE, TEAM, "hi"))
    assert "X-Lark-Signature" not in headers
    assert json.loads(body)["header"]["token"] == "emulator-verification-token"


def test_user_ids_are_shown_only_to_an_app_with_the_employee_id_scope() -> None:
    plain = Emulator(EmulatorConfig())
    scoped = Emulator(EmulatorConfig(app_scopes=(*DEFAULT_APP_SCOPES, USER_ID_SCOPE)))
    for emulator, user_id in ((plain, None), (scoped, "alice")):
        event = emulator.build_say_event(ALICE, TEAM, "/help")
        assert event["event"]["sender"]["sender_id"]["user_id"] == user_id
        [bot] = event["event"]["message"]["mentions"]
        assert bot["id"]["user_id"] is None  # a bot has no employee id at all


async def test_post_and_schema_1_builders(harness: Harness) -> None:
    emulator = harness.emulator
    post = emulator.build_message_event(ALICE, TEAM, "@_user_1 hi", mentions=["Bob"], message_type="post")
    content = json.loads(post["event"]["message"]["content"])
    # As the doc's example: a person's at-node has an empty user_name; mentions[] says who it is.
    assert content["content"][0][0] == {"tag": "at", "user_id": "@_user_1", "user_name": "", "style": []}
    legacy = emulator.build_message_event_v1(ALICE, TEAM, "/help")
    assert legacy["type"] == "event_callback"
    assert legacy["event"]["type"] == "message"
    assert legacy["token"] == emulator.config.verification_token


# --- control endpoints -----------------------------------------------------------------------------------


async def test_control_say_and_messages(harness: Harness) -> None:
    status, answer, _ = await harness.call(
        "POST", "/_emulator/say", json={"sender": ALICE, "chat_id": TEAM, "text": "/help"}
    )
    assert status == 200
    assert answer["status"] == 200
    assert answer["message_id"].startswith("om_")
    status, answer, _ = await harness.call("GET", "/_emulator/messages")
    assert (status, answer) == (200, {"messages": []})
    status, answer, _ = await harness.call("GET", "/_emulator/requests")
    assert (status, answer) == (200, {"requests": []})


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_emulator/say", b"{not json"),
        ("/_emulator/say", b"[]"),
        ("/_emulator/say", b'{"sender": 1, "chat_id": "oc_x", "text": "x"}'),
        ("/_emulator/say", b'{"sender": "ou_x"}'),
        ("/_emulator/push", b"null"),
        ("/_emulator/push", b"[" * 100_000),
        ("/_emulator/faults", b'{"route": "everything"}'),
        ("/_emulator/faults", b'{"route": "reply", "times": -1}'),
        ("/_emulator/faults", b'{"route": "reply", "status": 99}'),
        ("/_emulator/webhook", b'{"url": "http://example.com/feishu/events"}'),
        ("/_emulator/webhook", b'{"url": "file:///etc/passwd"}'),
        ("/_emulator/webhook", b'{"url": 5}'),
        ("/_emulator/webhook", "\udcff".encode("utf-8", "surrogatepass")),
    ],
)
async def test_control_refuses_garbage_with_400(harness: Harness, path: str, body: bytes) -> None:
    status, answer, _ = await harness.call("POST", path, data=body)
    assert status == 400, answer
    assert "error" in answer


async def test_control_faults_and_webhook(harness: Harness) -> None:
    status, answer, _ = await harness.call(
        "POST", "/_emulator/faults", json={"route": "send", "status": 429, "times": 3}
    )
    assert status == 200
    assert answer["pending"][0]["left"] == 3
    status, answer, _ = await harness.call("DELETE", "/_emulator/faults")
    assert (status, harness.emulator.pending_faults()) == (200, [])
    status, answer, _ = await harness.call(
        "POST", "/_emulator/webhook", json={"url": "http://localhost:9/feishu/events"}
    )
    assert status == 200
    assert harness.emulator.webhook_url == "http://localhost:9/feishu/events"
    # Nothing listens there: the push fails as a 502 with a reason, not a 500.
    status, answer, _ = await harness.call("POST", "/_emulator/push", json={"schema": "2.0"})
    assert status == 502
    assert "push failed" in answer["error"]
