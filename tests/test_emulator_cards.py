"""Card clicks in the emulator (feishu-protocol §3): the callbacks it sends are checked with lark-oapi's own
handlers (`EventDispatcherHandler` for `card.action.trigger`, `CardActionHandler` for the legacy SHA-1 one),
the client's judgement of the bot's answer (3 s, non-200, bad body) and the update token's rules.

A tiny aiohttp server stands in for the bot: `Bot.answer` decides what each callback gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import lark_oapi as lark  # imported once: it takes seconds
import pytest
from aiohttp import web
from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTriggerResponse

from bot.feishu.crypto import PayloadCipher
from emulator import ClickError, Emulator, EmulatorConfig, start_emulator
from emulator.card_tokens import TOKEN_TTL_SECONDS

ALICE = "ou_alice0000000000000000000000001"
BOB = "ou_bob000000000000000000000000002"
TEAM = "oc_team00000000000000000000000001"
RETRY = {"action": "retry", "id": "a1"}


def card_v2(title: str = "Invite result") -> dict[str, Any]:
    return {
        "schema": "2.0",
        "config": {"update_multi": True},
        "header": {"title": {"tag": "plain_text", "content": title}},
        "body": {
            "elements": [
                {
                    "tag": "button",
                    "name": "retry",
                    "text": {"tag": "plain_text", "content": "Retry failed"},
                    "behaviors": [{"type": "callback", "value": RETRY}],
                }
            ]
        },
    }


Answer = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]


@dataclass
class Bot:
    """Records every callback and answers with `answer` (default: `{}`)."""

    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    answer: Answer | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.received.append((request.path, dict(request.headers), raw))
        if self.answer is not None:
            return await self.answer(request, raw)
        return web.json_response({})


@dataclass
class World:
    emulator: Emulator
    base: str
    bot: Bot
    session: aiohttp.ClientSession

    async def tenant_token(self) -> str:
        config = self.emulator.config
        async with self.session.post(
            f"{self.base}/open-apis/auth/v3/tenant_access_token/internal",
            json={"app_id": config.app_id, "app_secret": config.app_secret},
        ) as response:
            return str((await response.json())["tenant_access_token"])

    async def send_card(self, card: dict[str, Any] | None = None, msg_type: str = "interactive") -> str:
        content = json.dumps(card or card_v2()) if msg_type == "interactive" else '{"text":"hi"}'
        async with self.session.post(
            f"{self.base}/open-apis/im/v1/messages?receive_id_type=chat_id",
            json={"receive_id": TEAM, "msg_type": msg_type, "content": content},
            headers={"Authorization": f"Bearer {await self.tenant_token()}"},
        ) as response:
            assert response.status == 200, await response.text()
            return str((await response.json())["data"]["message_id"])

    async def update_by_token(self, token: str, card: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with self.session.post(
            f"{self.base}/open-apis/interactive/v1/card/update",
            json={"token": token, "card": card},
            headers={"Authorization": f"Bearer {await self.tenant_token()}"},
        ) as response:
            return response.status, await response.json()

    def plaintext(self, raw: bytes) -> dict[str, Any]:
        cipher = PayloadCipher(self.emulator.config.encrypt_key)
        decoded: dict[str, Any] = json.loads(cipher.decrypt(json.loads(raw)["encrypt"]))
        return decoded


@contextlib.asynccontextmanager
async def _world(config_fields: dict[str, Any]) -> AsyncIterator[World]:
    bot = Bot()
    app = web.Application()
    app.router.add_post("/feishu/events", bot.handle)
    app.router.add_post("/feishu/card", bot.handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/feishu/events"
    config = EmulatorConfig(app_id="cli_cards" + secrets.token_hex(6), webhook_url=url, **config_fields)
    emulator, emulator_runner, base = await start_emulator(config)
    try:
        async with aiohttp.ClientSession() as session:
            yield World(emulator, base, bot, session)
    finally:
        await emulator_runner.cleanup()
        await runner.cleanup()


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with _world({}) as built:
        yield built


def _answered_by(sdk_handler: Any) -> Answer:
    """The bot answering with lark-oapi's own handler (verification, decryption and parsing included)."""

    async def answer(request: web.Request, raw: bytes) -> web.Response:
        sdk_request = lark.RawRequest()
        sdk_request.uri, sdk_request.headers, sdk_request.body = request.path, dict(request.headers), raw
        response = sdk_handler.do(sdk_request)
        return web.Response(
            status=response.status_code, body=response.content, content_type="application/json"
        )

    return answer


def _keep(into: list[Any], item: Any, answer: Any) -> Any:
    into.append(item)
    return answer


# --- new style: lark-oapi's EventDispatcherHandler verifies, decrypts and parses the click ----------------


async def test_new_style_click_is_what_lark_oapi_expects(world: World) -> None:
    config = world.emulator.config
    received: list[Any] = []

    def on_click(data: Any) -> Any:
        received.append(data)
        return P2CardActionTriggerResponse(
            {"toast": {"type": "success", "content": "重试中", "i18n": {"en_us": "Retrying"}}}
        )

    handler = (
        lark.EventDispatcherHandler.builder(config.encrypt_key, config.verification_token)
        .register_p2_card_action_trigger(on_click)
        .build()
    )

    world.bot.answer = _answered_by(handler)
    message_id = await world.send_card()
    assert world.emulator.card_buttons(message_id) == [
        {"tag": "button", "name": "retry", "text": "Retry failed", "value": RETRY}
    ]
    result = await world.emulator.click(BOB, message_id, RETRY, name="retry")

    assert result.ok, result
    assert result.status == 200
    assert result.toast == {"type": "success", "content": "重试中", "i18n": {"en_us": "Retrying"}}
    assert result.card is None
    [(path, headers, raw)] = world.bot.received
    assert path == "/feishu/events"
    assert set(json.loads(raw)) == {"encrypt"}
    assert "X-Lark-Signature" in headers
    [click] = received
    assert click.header.event_type == "card.action.trigger"
    assert click.header.token == config.verification_token
    assert (click.header.app_id, click.header.tenant_key) == (config.app_id, config.tenant_key)
    assert click.header.event_id == result.event_id
    assert len(click.header.create_time) == 16
    event = click.event
    # No user_id: the default app lacks contact:user.employee_id:readonly (as the captured select click).
    assert (event.operator.open_id, event.operator.union_id, event.operator.user_id) == (
        BOB,
        "on_bob0000000000000000000000002",
        None,
    )
    assert event.operator.tenant_key == config.tenant_key
    assert event.token == result.token
    assert event.token.startswith("c-")
    assert (event.action.value, event.action.tag, event.action.name) == (RETRY, "button", "retry")
    assert (event.host, event.context.open_message_id, event.context.open_chat_id) == (
        "im_message",
        message_id,
        TEAM,
    )
    # Same body as the builder makes, and nothing the component did not produce.
    plain = world.plaintext(raw)
    assert set(plain["event"]["action"]) == {"value", "tag", "name"}
    assert world.emulator.click_results == [result]


async def test_form_and_picker_values_reach_the_sdk(world: World) -> None:
    config = world.emulator.config
    received: list[Any] = []
    handler = (
        lark.EventDispatcherHandler.builder(config.encrypt_key, config.verification_token)
        .register_p2_card_action_trigger(lambda data: _keep(received, data, P2CardActionTriggerResponse()))
        .build()
    )

    world.bot.answer = _answered_by(handler)
    message_id = await world.send_card()
    form = {"meeting": "123 456 789", "people": [ALICE, BOB]}
    submit = {"do": "give-meeting"}
    submitted = await world.emulator.click(ALICE, message_id, submit, name="submit", form_value=form)
    picked = await world.emulator.click(ALICE, message_id, {"a": 1}, tag="select_person", options=[BOB])
    assert submitted.ok
    assert picked.ok
    assert submitted.toast is None
    first, second = (r.event.action for r in received)
    assert (first.value, first.form_value, first.name) == (submit, form, "submit")
    assert (second.tag, second.options) == ("select_person", [BOB])

    # The doc allows a string value; lark-oapi 1.7.5's model types it as a dict and refuses it (500, so
    # 200671), so a string value is checked on the wire instead.
    world.bot.answer = None
    plain = await world.emulator.click(
        ALICE, message_id, "give-meeting", input_value="123456789", tag="input"
    )
    assert plain.ok
    action = world.plaintext(world.bot.received[-1][2])["event"]["action"]
    assert action == {"value": "give-meeting", "tag": "input", "input_value": "123456789"}


async def test_only_the_bots_cards_can_be_clicked(world: World) -> None:
    text_id = await world.send_card(msg_type="text")
    with pytest.raises(ClickError, match="not a card"):
        world.emulator.build_card_action(ALICE, text_id, value=RETRY)
    with pytest.raises(ClickError, match="does not exist"):
        await world.emulator.click(ALICE, "om_nope", RETRY)
    said = world.emulator.build_say_event(ALICE, TEAM, "hello")
    await world.emulator.push(said)
    with pytest.raises(ClickError, match="was not sent by the bot"):
        await world.emulator.click(ALICE, said["event"]["message"]["message_id"], RETRY)
    assert world.emulator.click_results == []
    assert [path for path, _, _ in world.bot.received] == ["/feishu/events"]  # the message, no click


# --- legacy: lark-oapi's CardActionHandler checks the SHA-1 signature --------------------------------------


async def test_legacy_click_is_what_lark_oapi_expects(world: World) -> None:
    config = world.emulator.config
    cards: list[Any] = []
    handler = (
        lark.CardActionHandler.builder(config.encrypt_key, config.verification_token)
        .register(lambda card: _keep(cards, card, {"toast": {"type": "info", "content": "ok"}}))
        .build()
    )

    world.bot.answer = _answered_by(handler)
    assert world.emulator.card_callback_url == world.emulator.webhook_url.replace("events", "card")  # type: ignore[union-attr]
    message_id = await world.send_card()
    result = await world.emulator.click(ALICE, message_id, RETRY, legacy=True)

    assert result.ok, result
    assert result.toast == {"type": "info", "content": "ok"}
    assert result.event_id is None
    [card] = cards
    # No user_id without the employee-id scope: the captured legacy callback has none either.
    assert (card.open_id, card.user_id, card.tenant_key) == (ALICE, None, config.tenant_key)
    assert (card.open_message_id, card.open_chat_id) == (message_id, TEAM)
    assert card.token == result.token
    assert card.token.startswith("c-")
    assert (card.action.value, card.action.tag) == (RETRY, "button")
    assert world.bot.received[0][0] == "/feishu/card"

    # A wrong signature: the SDK refuses (500), which the clicker sees as 200671.
    refused = await world.emulator.click(ALICE, message_id, RETRY, legacy=True, seal={"signature": "0" * 40})
    assert (refused.status, refused.error_code) == (500, 200671)
    assert len(cards) == 1

    # The legacy URL's own challenge.
    challenge = world.emulator.build_legacy_url_verification("ch-1")
    echoed = await world.emulator.post_legacy(challenge, sign=False)
    assert (echoed.status, echoed.body) == (200, {"challenge": "ch-1"})


# --- how the client judges the answer ------------------------------------------------------------------


async def test_an_answer_after_the_deadline_is_200341() -> None:
    assert EmulatorConfig().card_callback_deadline_seconds == 3.0
    release = asyncio.Event()

    async def slow(request: web.Request, raw: bytes) -> web.Response:
        await release.wait()
        return web.json_response({})

    async with _world({"card_callback_deadline_seconds": 0.3}) as world:
        world.bot.answer = slow
        message_id = await world.send_card()
        result = await world.emulator.click(ALICE, message_id, RETRY)
        release.set()
        assert (result.status, result.error_code, result.toast) == (None, 200341, None)
        assert result.error == "the callback was not answered within 3 s"
        assert result.elapsed_ms >= 300
        assert world.emulator.click_results[-1].error_code == 200341
        token = world.emulator.card_token(result.token)
        assert token is not None
        assert token.in_flight == 0


@pytest.mark.parametrize(
    ("status", "body", "legacy", "code"),
    [
        (500, '{"msg":"boom"}', False, 200671),
        (302, "", False, 200671),
        (200, "ok", False, 200672),
        (200, '{"msg":"success"}', False, 200672),
        (200, '{"toast":"done"}', False, 200672),
        (200, '{"toast":{"type":"shout","content":"x"}}', False, 200672),
        (200, '{"card":{"type":"raw"}}', False, 200673),
        (200, '{"card":{"type":"raw","data":{"elements":[]}}}', False, 200830),
        (200, "{}", False, None),
        (200, '{"msg":"success"}', True, None),
        (200, "[]", True, 200672),
    ],
)
async def test_answers_are_judged_like_the_client(
    world: World, status: int, body: str, legacy: bool, code: int | None
) -> None:
    async def answer(request: web.Request, raw: bytes) -> web.Response:
        headers = {"Location": "/elsewhere"} if status == 302 else None
        return web.Response(status=status, text=body, headers=headers, content_type="application/json")

    world.bot.answer = answer
    message_id = await world.send_card()
    result = await world.emulator.click(ALICE, message_id, RETRY, legacy=legacy)
    assert (result.status, result.error_code) == (status, code)
    assert world.emulator.click_results[-1] == result
    assert [m.content for m in world.emulator.messages] == [card_v2()]  # a failed answer changes nothing


async def test_a_card_in_the_answer_replaces_the_card(world: World) -> None:
    async def answer(request: web.Request, raw: bytes) -> web.Response:
        return web.json_response(
            {"toast": {"type": "success", "content": "ok"}, "card": {"type": "raw", "data": card_v2("Done")}}
        )

    world.bot.answer = answer
    message_id = await world.send_card()
    result = await world.emulator.click(ALICE, message_id, RETRY)
    assert result.ok
    assert result.card == {"type": "raw", "data": card_v2("Done")}
    [update] = world.emulator.card_updates
    assert (update.message_id, update.via, update.content) == (message_id, "callback", card_v2("Done"))
    assert world.emulator.messages[0].content == card_v2("Done")


async def test_double_click_sends_two_callbacks(world: World) -> None:
    message_id = await world.send_card()
    first, second = await world.emulator.double_click(BOB, message_id, RETRY)
    assert first.ok
    assert second.ok
    assert first.event_id != second.event_id
    assert first.token != second.token
    bodies = [world.plaintext(raw) for _, _, raw in world.bot.received]
    assert [b["header"]["event_id"] for b in bodies] == [first.event_id, second.event_id]
    assert {json.dumps(b["event"]["action"]) for b in bodies} == {
        json.dumps({"value": RETRY, "tag": "button"})
    }


# --- the update token: 30 minutes, two uses, only after the answer ----------------------------------------


async def test_update_token_rules(world: World) -> None:
    emulator = world.emulator
    early: list[tuple[int, dict[str, Any]]] = []

    async def answer_after_trying(request: web.Request, raw: bytes) -> web.Response:
        early.append(await world.update_by_token(world.plaintext(raw)["event"]["token"], card_v2("Early")))
        return web.json_response({})

    world.bot.answer = answer_after_trying
    message_id = await world.send_card()
    result = await emulator.click(ALICE, message_id, RETRY)
    assert result.ok
    [(status, body)] = early
    assert (status, body["code"]) == (400, 300030)
    assert "not been answered" in body["msg"]

    for title in ("One", "Two"):
        status, body = await world.update_by_token(result.token, card_v2(title))
        assert (status, body) == (200, {"code": 0, "msg": "ok"})
    assert [(u.via, u.content) for u in emulator.card_updates] == [
        ("token", card_v2("One")),
        ("token", card_v2("Two")),
    ]
    assert emulator.messages[0].content == card_v2("Two")
    status, body = await world.update_by_token(result.token, card_v2("Three"))
    assert (status, body["code"]) == (400, 300040)

    world.bot.answer = None
    fresh = await emulator.click(ALICE, message_id, RETRY)
    status, body = await world.update_by_token(fresh.token, {"elements": []})
    assert body["code"] == 11311  # a 2.0 card stays 2.0
    now = emulator.clock()
    emulator.clock = lambda: now + TOKEN_TTL_SECONDS
    status, body = await world.update_by_token(fresh.token, card_v2("Late"))
    assert body["code"] == 300030
    for bad in ("abc", "", "c-!!"):
        assert (await world.update_by_token(bad, card_v2()))[1]["code"] == 300020
    assert len(emulator.card_updates) == 2


# --- over HTTP -------------------------------------------------------------------------------------------


async def test_control_endpoint_clicks(world: World) -> None:
    message_id = await world.send_card()
    async with world.session.post(
        f"{world.base}/_emulator/click", json={"operator": ALICE, "message_id": message_id, "value": RETRY}
    ) as response:
        assert response.status == 200
        clicked = await response.json()
    assert (clicked["ok"], clicked["status"], clicked["error_code"]) == (True, 200, None)
    assert clicked["token"].startswith("c-")
    assert clicked["message_id"] == message_id
    async with world.session.post(
        f"{world.base}/_emulator/click", json={"operator": ALICE, "message_id": "om_x", "value": "v"}
    ) as response:
        assert response.status == 400
        assert "does not exist" in (await response.json())["error"]
    async with world.session.post(f"{world.base}/_emulator/click", json={"operator": ALICE}) as response:
        assert response.status == 400
