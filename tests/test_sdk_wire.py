"""Our request bodies against the official SDK's, for the same calls (lark-oapi as the oracle)."""

from __future__ import annotations

import json
from typing import Any

import lark_oapi as lark
from lark_oapi.api.im.v1 import CreateMessageRequestBody, ReplyMessageRequestBody

from bot.feishu.models import MessageCreateRequest, card_content
from tests.harness import ALICE, TEAM, Harness


def sdk_json(body: Any) -> dict[str, Any]:
    marshalled = lark.JSON.marshal(body)
    assert marshalled is not None
    decoded = json.loads(marshalled)
    assert isinstance(decoded, dict)
    return decoded


async def test_reply_body_matches_the_sdk(world: Harness) -> None:
    await world.emulator.say(ALICE, TEAM, "/help")
    [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM)
    [sent] = [r.json for r in world.emulator.requests if r.path.endswith("/reply")]
    expected = sdk_json(
        ReplyMessageRequestBody.builder()
        .content(card_content(reply.content))
        .msg_type("interactive")
        .reply_in_thread(False)
        .uuid(reply.uuid or "")
        .build()
    )
    assert sent == expected


async def test_send_body_matches_the_sdk(world: Harness) -> None:
    request = MessageCreateRequest(
        receive_id=ALICE, msg_type="text", content=json.dumps({"text": "你好 hello"}), uuid="u-1"
    )
    message = await world.runtime.client.send_message("open_id", request)
    assert message.message_id.startswith("om_")
    [sent] = [r for r in world.emulator.requests if r.path == "/open-apis/im/v1/messages"]
    assert sent.query == {"receive_id_type": "open_id"}
    expected = sdk_json(
        CreateMessageRequestBody.builder()
        .receive_id(ALICE)
        .msg_type("text")
        .content(json.dumps({"text": "你好 hello"}))
        .uuid("u-1")
        .build()
    )
    assert sent.json == expected
