"""Shapes Feishu really sends (../shared/feishu-samples, written here as fixtures of our own with the same
shapes), replayed at the bot over loopback: each test here failed on the code before issue 16."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.feishu.webhook import request_time
from emulator.clicker import legacy_date
from emulator.config import MEETING_IN_PROGRESS, PARTNERS_CHAT
from tests.harness import (
    ALICE,
    BOB,
    CAROL,
    TEAM,
    Harness,
    authorize,
    invite,
    running_world,
    updated_card,
)

# Of a partner company, in the shared "Partners" group (the emulator's default directory).
DAVE = "ou_dave00000000000000000000000004"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_world(tmp_path) as opened:
        yield opened


def test_legacy_callback_dates_read_as_china_time() -> None:
    # The date Lark's appframework-java tests sign a legacy callback with, and one from captured traffic.
    assert request_time("Tuesday, 22-Oct-19 10:52:31 CST") == 1571712751  # 02:52:31 UTC
    assert request_time("Monday, 14-Nov-22 15:53:37 CST") == 1668412417
    assert request_time("1668412417") == 1668412417
    assert request_time("Monday, 31-Feb-22 15:53:37 CST") is None
    assert request_time("Monday, 14-Nov-22 15:53:37 EST") is None  # a zone Feishu never sends
    assert request_time("yesterday") is None


async def retry_button(world: Harness) -> tuple[str, str]:
    world.emulator.set_busy(MEETING_IN_PROGRESS, CAROL)
    await invite(world, "/invite 123456789 @Bob @Carol")
    message = world.emulator.messages[-1]
    [button] = [b for b in world.emulator.card_buttons(message.message_id) if "Retry" in json.dumps(b)]
    world.emulator.set_busy(MEETING_IN_PROGRESS, CAROL, busy=False)
    return message.message_id, button["value"]["action_id"]


def captured_shape(message_id: str, chat_id: str, action_id: str) -> dict[str, object]:
    """A legacy card callback as a real one is shaped: flat, `open_chat_id`, an update token, and no
    `user_id` (the app lacks the user-id permission), the button's value as the card sent it."""
    return {
        "open_id": ALICE,
        "open_message_id": message_id,
        "open_chat_id": chat_id,
        "tenant_key": "tenant_emulator0001",
        "token": "c-" + uuid.uuid4().hex + uuid.uuid4().hex[:8],
        "action": {"value": {"action_id": action_id}, "tag": "button"},
    }


async def test_a_legacy_click_with_a_date_timestamp_is_accepted(world: Harness) -> None:
    message_id, action_id = await retry_button(world)
    body = captured_shape(message_id, world.emulator.messages[-1].chat_id, action_id)
    stamp = legacy_date(world.clock())
    answer = await world.emulator.post_legacy(body, timestamp=stamp, nonce=str(uuid.uuid4()))
    assert answer.status == 200, answer.body
    assert "retrying" in json.dumps(answer.body)
    assert "Invited 2" in await updated_card(world, message_id)
    assert list(world.emulator.invite_calls[-1].invitee_ids) == [CAROL]


async def test_a_stale_date_is_a_replay(world: Harness) -> None:
    message_id, action_id = await retry_button(world)
    body = captured_shape(message_id, world.emulator.messages[-1].chat_id, action_id)
    stale = legacy_date(world.clock() - 3600)
    answer = await world.emulator.post_legacy(body, timestamp=stale, nonce=str(uuid.uuid4()))
    assert answer.status == 401
    assert world.emulator.card_updates == []


def everyone_else(world: Harness) -> list[str]:
    members = world.emulator.config.chat(TEAM).members  # type: ignore[union-attr]
    return sorted(member for member in members if member != ALICE)


async def push_and_wait(world: Harness, event: dict[str, object]) -> None:
    before = len([m for m in world.emulator.messages if m.chat_id == TEAM])
    assert (await world.emulator.push(event)).status == 200
    await world.emulator.wait_for_messages(before + 1, chat_id=TEAM, timeout=20)


@pytest.mark.parametrize("entry", [True, False])
async def test_at_all_in_a_text_message_as_feishu_sends_it(world: Harness, entry: bool) -> None:
    event = world.emulator.build_message_event(ALICE, TEAM, "/invite 123456789 @_all")
    message = event["event"]["message"]
    if entry:  # the SDK fixture's shape: a mentions entry with empty ids
        message["mentions"] = [
            {"key": "@_all", "id": {"open_id": "", "user_id": "", "union_id": ""}, "name": "所有人"}
        ]
    else:
        message.pop("mentions", None)
    await push_and_wait(world, event)
    invited = sorted(open_id for call in world.emulator.invite_calls for open_id in call.invitee_ids)
    assert invited == everyone_else(world)


async def test_at_all_in_a_post_as_feishu_sends_it(world: Harness) -> None:
    event = world.emulator.build_message_event(ALICE, TEAM, "x", message_type="post")
    post = {
        "title": "",
        "content": [
            [],
            [
                {"tag": "text", "text": "/invite 123456789 "},
                {"tag": "at", "user_id": "all", "user_name": "所有人"},
            ],
        ],
    }
    message = event["event"]["message"]
    message["content"] = json.dumps(post, ensure_ascii=False, separators=(",", ":"))
    message.pop("mentions", None)
    await push_and_wait(world, event)
    invited = sorted(open_id for call in world.emulator.invite_calls for open_id in call.invitee_ids)
    assert invited == everyone_else(world)


async def test_a_schema_1_message_at_the_bot_is_answered(world: Harness) -> None:
    # The shape of a real 1.0 group message (node-sdk issue 20): the bot as <at> markup, no mentions list.
    event = world.emulator.build_message_event_v1(ALICE, TEAM, "/help")
    assert "<at open_id=" in event["event"]["text"]
    await push_and_wait(world, event)
    assert "/invite" in json.dumps(world.emulator.messages[-1].content)


async def test_a_schema_1_invite_names_people_by_their_at_markup(world: Harness) -> None:
    text = f'/invite 123456789 <at open_id="{BOB}">Bob</at>'
    event = world.emulator.build_message_event_v1(ALICE, TEAM, text)
    await push_and_wait(world, event)
    assert [list(call.invitee_ids) for call in world.emulator.invite_calls] == [[BOB]]
    assert "Invited 1" in json.dumps(world.emulator.messages[-1].content)


async def test_an_external_contacts_events_carry_their_own_tenant(world: Harness) -> None:
    # As the receive doc's example: the sender's tenant_key is not the header's, nor is a mention's.
    event = world.emulator.build_say_event(DAVE, PARTNERS_CHAT, "/invite 123456789 @Bob")
    header, sender = event["header"], event["event"]["sender"]
    assert sender["tenant_key"] == "tenant_partner0002" != header["tenant_key"]
    assert sender["sender_id"]["user_id"] is None  # no employee id across tenants, nor without the scope
    bot, bob = event["event"]["message"]["mentions"]
    assert (bot["mentioned_type"], bot["id"]["user_id"]) == ("bot", None)
    assert bob["tenant_key"] == header["tenant_key"]


@pytest.mark.parametrize(("sender", "clicker"), [(ALICE, DAVE), (DAVE, ALICE)])
async def test_an_external_contact_and_a_colleague_press_each_others_buttons(
    world: Harness, sender: str, clicker: str
) -> None:
    # Dave authorized in the shared group; the card's buttons, his authorization and Alice's all belong to
    # the app's tenant, so either may press "Retry failed" on the other's card as themselves, unasked.
    await authorize(world, DAVE, chat=PARTNERS_CHAT)
    await world.emulator.wait_for_messages(1, chat_id=PARTNERS_CHAT)  # "authorized"
    world.emulator.join_meeting(MEETING_IN_PROGRESS, DAVE)
    world.emulator.set_busy(MEETING_IN_PROGRESS, CAROL)
    assert (await world.emulator.say(sender, PARTNERS_CHAT, "/invite 123456789 @Bob @Carol")).status == 200
    replies = await world.emulator.wait_for_messages(2, chat_id=PARTNERS_CHAT, timeout=20)
    card = replies[1]
    assert "Invited 1" in json.dumps(card.content, ensure_ascii=False)
    [retry] = [b for b in world.emulator.card_buttons(card.message_id) if "Retry" in json.dumps(b)]
    world.emulator.set_busy(MEETING_IN_PROGRESS, CAROL, busy=False)
    prompts = len(world.emulator.ephemeral_messages)

    result = await world.emulator.click(clicker, card.message_id, retry["value"])

    assert result.ok, result.error
    assert "Invited 2" in await updated_card(world, card.message_id)
    last = world.emulator.invite_calls[-1]
    assert (last.operator, list(last.invitee_ids)) == (clicker, [CAROL])
    assert len(world.emulator.ephemeral_messages) == prompts  # nobody was asked to authorize again


async def test_posts_as_clients_send_them_with_or_without_a_language_wrapper(world: Harness) -> None:
    # The emulator's posts have an empty paragraph and a pasted image with its size (the captured post),
    # user at-nodes with `user_name: ""` (the doc's example), and every other one a language wrapper.
    shapes = []
    for expected in ([BOB], [CAROL]):
        who = "@Bob" if expected == [BOB] else "@Carol"
        event = world.emulator.build_say_event(ALICE, TEAM, f"/invite 123456789 {who}", message_type="post")
        await push_and_wait(world, event)
        assert list(world.emulator.invite_calls[-1].invitee_ids) == expected
        shapes.append(json.loads(event["event"]["message"]["content"]))
    plain, wrapped = shapes
    assert set(wrapped) == {"zh_cn"}
    assert wrapped["zh_cn"]["content"][1:] == plain["content"][1:]
    first, empty, [image] = plain["content"]
    assert empty == []
    assert (image["tag"], image["width"], image["height"]) == ("img", 384, 192)
    ats = [node for node in first if node["tag"] == "at"]
    assert [node["user_name"] for node in ats] == ["InviteBot", ""]


async def test_a_click_carrying_every_field_real_callbacks_carry(world: Harness) -> None:
    # The doc's form example (timezone, name, a link preview's delivery_type and context.url) and the
    # captured select's option, with the other components' fields; the operator has no user_id.
    message_id, action_id = await retry_button(world)
    event = world.emulator.build_card_action(
        ALICE,
        message_id,
        value={"action_id": action_id},
        name="Button_lvkepfu3",
        timezone="Asia/Shanghai",
        option="2",
        options=["a", "b"],
        input_value="1234",
        checked=True,
        delivery_type="url_preview",
        context_url="https://applink.feishu.cn/client/message/link/open",
    )
    assert "user_id" not in event["event"]["operator"]
    assert event["event"]["context"]["open_message_id"] == message_id
    answer = await world.emulator.push(event)
    assert answer.status == 200, answer.body
    assert "Invited 2" in await updated_card(world, message_id)
    assert list(world.emulator.invite_calls[-1].invitee_ids) == [CAROL]


async def test_a_click_as_captured_has_no_timezone_and_no_user_id(world: Harness) -> None:
    message_id, action_id = await retry_button(world)
    event = world.emulator.build_card_action(ALICE, message_id, value={"action_id": action_id})
    operator, action = event["event"]["operator"], event["event"]["action"]
    assert set(operator) == {"tenant_key", "open_id", "union_id"}
    assert set(action) == {"value", "tag"}
    result = await world.emulator.click(ALICE, message_id, {"action_id": action_id})
    assert result.ok, result.error
    assert "Invited 2" in await updated_card(world, message_id)


async def test_a_legacy_click_without_token_or_chat_as_lark_s_own_fixture(world: Harness) -> None:
    # Lark appframework-java's button fixture: no update token, no open_chat_id, only the message.
    message_id, action_id = await retry_button(world)
    body = captured_shape(message_id, TEAM, action_id)
    del body["token"], body["open_chat_id"]
    answer = await world.emulator.post_legacy(body, nonce=str(uuid.uuid4()))
    assert answer.status == 200, answer.body
    assert "Invited 2" in await updated_card(world, message_id)
    assert list(world.emulator.invite_calls[-1].invitee_ids) == [CAROL]
