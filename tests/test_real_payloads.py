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
from emulator.config import MEETING_IN_PROGRESS
from tests.harness import ALICE, BOB, CAROL, TEAM, Harness, invite, open_world, updated_card


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Harness]:
    opened = await open_world(tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


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
