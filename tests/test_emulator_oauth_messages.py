"""The emulator's private channels and card updates over loopback HTTP: ephemeral cards, direct messages,
PATCH of a sent card, and the control endpoints that drive OAuth and show what was sent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from emulator import DirectoryChat, EmulatorConfig, Fault
from emulator.config import _DEFAULT_CHATS
from tests.test_emulator_oauth import ALICE, BOB, World, open_world

CAROL = "ou_carol00000000000000000000000003"
TEAM = "oc_team00000000000000000000000001"
SMALL = "oc_small0000000000000000000000001"
NO_BOT = "oc_nobot0000000000000000000000001"
ALICE_P2P = "oc_p2palice000000000000000000001"
SEND = "/open-apis/ephemeral/v1/send"
DELETE = "/open-apis/ephemeral/v1/delete"
MESSAGES = "/open-apis/im/v1/messages"


def card(text: str = "hi", *, shared: bool = True, v2: bool = False) -> dict[str, Any]:
    if v2:
        return {"schema": "2.0", "body": {"elements": [{"tag": "markdown", "content": text}]}}
    return {"config": {"update_multi": shared}, "elements": [{"tag": "markdown", "content": text}]}


@pytest.fixture
async def world() -> AsyncIterator[World]:
    small = DirectoryChat(chat_id=SMALL, name="Small", members=(ALICE,))
    opened, runner = await open_world(EmulatorConfig(chats=(*_DEFAULT_CHATS, small)))
    try:
        yield opened
    finally:
        await opened.http.close()
        await runner.cleanup()


async def tenant_token(world: World) -> str:
    config = world.emulator.config
    _, body = await world.call(
        "POST",
        "/open-apis/auth/v3/tenant_access_token/internal",
        json={"app_id": config.app_id, "app_secret": config.app_secret},
    )
    token: str = body["tenant_access_token"]
    return token


async def send_card(world: World, token: str, content: dict[str, Any], receive_id: str = TEAM) -> str:
    status, body = await world.call(
        "POST",
        MESSAGES + "?receive_id_type=" + ("chat_id" if receive_id.startswith("oc_") else "open_id"),
        token=token,
        json={"receive_id": receive_id, "msg_type": "interactive", "content": json.dumps(content)},
    )
    assert (status, body["code"]) == (200, 0), body
    message_id: str = body["data"]["message_id"]
    return message_id


# --- ephemeral cards ------------------------------------------------------------------------------------


async def test_ephemeral_send_and_delete(world: World) -> None:
    token = await tenant_token(world)
    body = {"chat_id": TEAM, "open_id": BOB, "msg_type": "interactive", "card": card("only Bob")}
    status, answer = await world.call("POST", SEND, token=token, json=body)
    assert (status, answer["code"], answer["msg"]) == (200, 0, "ok")
    message_id = answer["data"]["message_id"]
    assert message_id.startswith("om_")
    [sent] = await world.emulator.wait_for_ephemeral(1, open_id=BOB, timeout=1)
    assert (sent.message_id, sent.chat_id, sent.open_id, sent.card, sent.deleted) == (
        message_id, TEAM, BOB, card("only Bob"), False
    )  # fmt: skip
    assert world.emulator.messages == []  # nothing the whole group sees

    # By email too, and a 2.0 card is accepted.
    body = {"chat_id": TEAM, "email": "carol@example.com", "msg_type": "interactive", "card": card(v2=True)}
    status, answer = await world.call("POST", SEND, token=token, json=body)
    assert answer["code"] == 0
    assert world.emulator.ephemeral_messages[1].open_id == CAROL

    status, answer = await world.call("POST", DELETE, token=token, json={"message_id": message_id})
    assert (status, answer["code"]) == (200, 0)
    assert world.emulator.ephemeral_messages[0].deleted
    status, answer = await world.call("POST", DELETE, token=token, json={"message_id": message_id})
    assert (status, answer["code"]) == (400, 230001)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"chat_id": ALICE_P2P, "open_id": ALICE}, 230001),  # group chats only
        ({"chat_id": NO_BOT, "open_id": ALICE}, 230002),
        ({"chat_id": SMALL, "open_id": BOB}, 230001),  # Bob is not in that chat
        ({"chat_id": "oc_unknown", "open_id": ALICE}, 230001),
        ({"chat_id": TEAM, "open_id": "ou_stranger"}, 230001),
        ({"chat_id": TEAM}, 99992402),
        ({"open_id": ALICE}, 99992402),
        ({"chat_id": TEAM, "open_id": ALICE, "card": json.dumps(card())}, 99992402),
        ({"chat_id": TEAM, "open_id": ALICE, "msg_type": "text"}, 99992402),
        ({"chat_id": TEAM, "open_id": ALICE, "card": card("x" * 31 * 1024)}, 230025),
    ],
)
async def test_ephemeral_refusals(world: World, body: dict[str, Any], code: int) -> None:
    full = {"msg_type": "interactive", "card": card(), **body}
    status, answer = await world.call("POST", SEND, token=await tenant_token(world), json=full)
    assert (status, answer["code"]) == (400, code), answer
    assert world.emulator.ephemeral_messages == []


async def test_ephemeral_fault_and_user_token(world: World) -> None:
    world.emulator.add_fault(Fault(route="ephemeral", status=400, code=230002))
    body = {"chat_id": TEAM, "open_id": BOB, "msg_type": "interactive", "card": card()}
    token = await tenant_token(world)
    status, answer = await world.call("POST", SEND, token=token, json=body)
    assert (status, answer["code"]) == (400, 230002)
    assert world.emulator.ephemeral_messages == []
    user = await world.tokens()
    status, answer = await world.call("POST", SEND, token=user["access_token"], json=body)
    assert (status, answer["code"]) == (400, 99991663)
    assert (await world.call("POST", SEND, token=token, json=body))[1]["code"] == 0
    with pytest.raises(TimeoutError):
        await world.emulator.wait_for_ephemeral(1, open_id=ALICE, timeout=0.05)


# --- direct messages -------------------------------------------------------------------------------------


async def test_direct_messages_land_in_a_stable_p2p_chat(world: World) -> None:
    token = await tenant_token(world)
    bob_chat = world.emulator.p2p_chat_id(BOB)
    assert bob_chat.startswith("oc_")
    assert world.emulator.p2p_chat_id(ALICE) == ALICE_P2P  # a configured p2p chat wins
    first = await send_card(world, token, card("one"), receive_id=BOB)
    second = await send_card(world, token, card("two"), receive_id=BOB)
    sent = await world.emulator.wait_for_messages(2, chat_id=bob_chat, timeout=1)
    assert [m.message_id for m in sent] == [first, second]
    assert all(m.receive_id == BOB for m in sent)
    assert world.emulator.p2p_chat_id(BOB) == bob_chat
    await send_card(world, token, card(), receive_id=ALICE)
    assert [m.chat_id for m in world.emulator.messages][-1] == ALICE_P2P
    with pytest.raises(KeyError):
        world.emulator.p2p_chat_id("ou_stranger")


# --- updating a card ---------------------------------------------------------------------------------------


async def test_patch_replaces_the_card_and_keeps_history(world: World) -> None:
    token = await tenant_token(world)
    message_id = await send_card(world, token, card("asking"))
    path = f"{MESSAGES}/{message_id}"
    status, answer = await world.call("PATCH", path, token=token, json={"content": json.dumps(card("done"))})
    assert (status, answer["code"]) == (200, 0)
    [message] = world.emulator.messages
    assert message.content == card("done")
    assert message.history == (card("asking"),)
    [update] = world.emulator.card_updates
    assert (update.message_id, update.content) == (message_id, card("done"))
    assert world.emulator.requests[-1].method == "PATCH"


async def test_patch_rules(world: World) -> None:
    token = await tenant_token(world)
    not_shared = await send_card(world, token, card(shared=False))
    v2 = await send_card(world, token, card(v2=True))
    _, text = await world.call(
        "POST",
        MESSAGES + "?receive_id_type=chat_id",
        token=token,
        json={"receive_id": TEAM, "msg_type": "text", "content": json.dumps({"text": "hi"})},
    )
    # A message Alice sent: it exists in the tenant (as after a push), but the bot did not send it.
    user_message = world.emulator.build_say_event(ALICE, TEAM, "hello")["event"]["message"]["message_id"]
    world.emulator._store.register(user_message, TEAM)
    cases = [
        (not_shared, {"content": json.dumps(card())}, 230001),
        (text["data"]["message_id"], {"content": json.dumps(card())}, 230001),
        (user_message, {"content": json.dumps(card())}, 230001),
        ("om_unknown", {"content": json.dumps(card())}, 230001),
        (v2, {"content": json.dumps(card())}, 230099),  # 2.0 cannot become 1.0
        (v2, {"content": card(v2=True)}, 99992402),  # an object, not a string
        (v2, {"content": "{not json"}, 230001),
        (v2, {"content": json.dumps(card("x" * 31 * 1024, v2=True))}, 230025),
    ]
    for message_id, body, code in cases:
        status, answer = await world.call("PATCH", f"{MESSAGES}/{message_id}", token=token, json=body)
        assert (status, answer["code"]) == (400, code), (message_id, answer)
    assert world.emulator.card_updates == []
    world.emulator.add_fault(Fault(route="update", status=500))
    body = {"content": json.dumps(card(v2=True))}
    status, _ = await world.call("PATCH", f"{MESSAGES}/{v2}", token=token, json=body)
    assert status == 500
    assert world.emulator.card_updates == []


async def test_patch_rate_and_age_limits(world: World) -> None:
    token = await tenant_token(world)
    message_id = await send_card(world, token, card())
    path = f"{MESSAGES}/{message_id}"
    body = {"content": json.dumps(card("again"))}
    for _ in range(5):
        assert (await world.call("PATCH", path, token=token, json=body))[1]["code"] == 0
    status, answer = await world.call("PATCH", path, token=token, json=body)
    assert (status, answer["code"]) == (400, 230020)
    world.clock.now += 1
    assert (await world.call("PATCH", path, token=token, json=body))[1]["code"] == 0
    assert len(world.emulator.messages[0].history) == 6
    world.clock.now += 14 * 86400
    status, answer = await world.call("PATCH", path, token=await tenant_token(world), json=body)
    assert (status, answer["code"]) == (400, 230031)


# --- control endpoints -------------------------------------------------------------------------------------


async def test_control_authorize_ephemeral_updates_and_revoke(world: World) -> None:
    status, answer = await world.call(
        "POST", "/_emulator/authorize", json={"url": world.authorize_url(), "as_user": BOB}
    )
    assert status == 200
    assert answer["location"].startswith("http://127.0.0.1:8080/oauth/callback?code=")
    status, answer = await world.call(
        "POST", "/_emulator/authorize", json={"url": world.authorize_url(), "as_user": BOB, "approve": False}
    )
    assert "error=access_denied" in answer["location"]

    token = await tenant_token(world)
    body = {"chat_id": TEAM, "open_id": BOB, "msg_type": "interactive", "card": card()}
    await world.call("POST", SEND, token=token, json=body)
    status, answer = await world.call("GET", "/_emulator/ephemeral?open_id=" + BOB)
    assert status == 200
    assert [m["open_id"] for m in answer["ephemeral"]] == [BOB]
    assert (await world.call("GET", "/_emulator/ephemeral?open_id=" + ALICE))[1] == {"ephemeral": []}

    message_id = await send_card(world, token, card())
    update = {"content": json.dumps(card("b"))}
    await world.call("PATCH", f"{MESSAGES}/{message_id}", token=token, json=update)
    status, answer = await world.call("GET", "/_emulator/card-updates")
    assert [u["message_id"] for u in answer["card_updates"]] == [message_id]
    _, answer = await world.call("GET", "/_emulator/messages")
    assert answer["messages"][0]["history"] == [card()]

    user = await world.tokens(as_user=BOB)
    status, answer = await world.call("POST", "/_emulator/revoke-user-authorization", json={"open_id": BOB})
    assert (status, answer) == (200, {"revoked": BOB})
    assert (await world.refresh(user["refresh_token"]))[1]["code"] == 20064


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_emulator/authorize", b"{not json"),
        ("/_emulator/authorize", b'{"url": "x"}'),
        ("/_emulator/authorize", b'{"url": 5, "as_user": "ou_x"}'),
        ("/_emulator/authorize", b'{"url": "http://x/?client_id=nope", "as_user": "ou_x"}'),
        ("/_emulator/authorize", b'{"url": "u", "as_user": "a", "approve": "maybe", "extra": 1}'),
        ("/_emulator/revoke-user-authorization", b'{"open_id": "ou_stranger"}'),
        ("/_emulator/revoke-user-authorization", b"[]"),
    ],
)
async def test_control_refuses_garbage_with_400(world: World, path: str, body: bytes) -> None:
    status, answer = await world.call("POST", path, data=body)
    assert status == 400, answer
    assert "error" in answer
