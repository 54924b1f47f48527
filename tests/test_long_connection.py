"""BOT_EVENT_TRANSPORT=long-connection against the emulator, over a real loopback WebSocket: the bot dials
out, events and clicks come down the socket, and nothing reaches the bot over inbound HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from lark_oapi.ws.pb.pbbp2_pb2 import Frame as LarkFrame

from bot.feishu import frames
from bot.feishu.frames import Frame
from emulator.server import start_emulator
from tests.harness import ALICE, TEAM, Harness, authorize, invite, open_harness, updated_card

FAST = {"PingInterval": 1, "ReconnectInterval": 0, "ReconnectNonce": 0, "ReconnectCount": -1}


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await open_harness(tmp_path, bot_event_transport="long-connection")
    harness.emulator.transport = "long-connection"
    harness.emulator.long_connection.client_config = dict(FAST)
    try:
        await harness.start_bot()
        harness.emulator.webhook_url = None  # nothing may reach the bot over HTTP
        await asyncio.wait_for(harness.emulator.long_connection.connected.wait(), 10)
        yield harness
    finally:
        await harness.close()


async def readiness(world: Harness) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"{world.bot_url}/readyz") as response:
        return response.status, await response.text()


async def test_an_event_is_acknowledged_in_time_and_answered_once(world: Harness) -> None:
    hub = world.emulator.long_connection
    payload = world.emulator.build_say_event(ALICE, TEAM, "/help")
    first = await world.emulator.push(payload)
    assert first.status == 200
    assert first.elapsed_ms < 3000
    [push] = hub.pushes
    assert push.code == 200
    assert int(push.answer_headers["biz_rt"]) >= 0
    # Feishu pushes an event again when it doubts the answer: the same delivery is handled once.
    again = await hub.deliver_once(payload)
    assert again.code == 200
    replies = await world.emulator.wait_for_messages(1, chat_id=TEAM)
    await asyncio.sleep(0.3)
    assert [m.reply_to for m in world.emulator.messages] == [replies[0].reply_to]
    assert (await readiness(world))[0] == 200
    assert hub.connections[0].pings >= 1


async def test_a_fragmented_event_is_put_together(world: Harness) -> None:
    payload = world.emulator.build_say_event(ALICE, TEAM, "/help")
    result = await world.emulator.push(payload, fragments=3)
    assert result.status == 200
    [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM)
    assert reply.reply_to == payload["event"]["message"]["message_id"]


async def test_a_click_comes_down_the_socket_and_is_answered_with_a_toast(world: Harness) -> None:
    await authorize(world, ALICE)
    await world.emulator.wait_for_messages(1, chat_id=TEAM)
    await invite(world, "/invite 123456789 @Bob")
    message_id = world.emulator.messages[-1].message_id
    [more] = [b["value"] for b in world.emulator.card_buttons(message_id) if "Invite more" in json.dumps(b)]
    assert isinstance(more, dict)
    result = await world.emulator.click(
        ALICE, message_id, more, form_value={"people": ["ou_carol00000000000000000000000003"]}
    )
    assert result.ok, result.error
    assert result.toast is not None
    assert result.elapsed_ms < 3000
    assert "Invited 2" in await updated_card(world, message_id)
    [card_push] = [p for p in world.emulator.long_connection.pushes if p.kind == "card"]
    assert card_push.data is not None
    assert "toast" in card_push.data


async def test_after_feishu_drops_the_socket_the_bot_dials_again(world: Harness) -> None:
    hub = world.emulator.long_connection
    calls = hub.endpoint_calls
    await hub.drop()
    for _ in range(100):
        if hub.connections and hub.endpoint_calls > calls:
            break
        await asyncio.sleep(0.05)
    assert hub.endpoint_calls == calls + 1  # a fresh endpoint for every connection: URLs are one-time
    assert (await world.emulator.say(ALICE, TEAM, "/help")).status == 200
    await world.emulator.wait_for_messages(1, chat_id=TEAM)


async def test_a_connection_that_stops_ponging_is_replaced(world: Harness) -> None:
    hub = world.emulator.long_connection
    calls = hub.endpoint_calls
    hub.answer_pings = False  # the socket stays open but the server is gone: a silent dead connection
    for _ in range(100):
        if hub.endpoint_calls > calls:
            break
        await asyncio.sleep(0.1)
    assert hub.endpoint_calls > calls
    hub.answer_pings = True


@pytest.mark.parametrize(
    "refusal",
    [
        ("handshake", (514, "1000040350")),
        ("handshake", (403, "")),
        ("endpoint", (10014, "app secret invalid")),
    ],
)
async def test_feishu_saying_do_not_retry_stops_the_client_and_readiness_says_why(
    world: Harness, refusal: tuple[str, tuple[int, str]]
) -> None:
    hub = world.emulator.long_connection
    where, detail = refusal
    if where == "handshake":
        hub.refuse_handshake = detail
    else:
        hub.refuse_endpoint = detail
    await hub.drop()
    for _ in range(100):
        status, text = await readiness(world)
        if "refused" in text:
            break
        await asyncio.sleep(0.05)
    assert status == 503
    assert "long connection refused by Feishu" in text
    calls = hub.endpoint_calls
    await asyncio.sleep(0.5)
    assert hub.endpoint_calls == calls  # it stopped: no retry loop against a refusal
    assert hub.connections == []


def test_our_frames_and_lark_oapis_are_the_same_bytes() -> None:
    ours = Frame(
        seq_id=2**40,
        log_id=7,
        service=-3,
        method=frames.DATA,
        headers=(("type", "card"), ("message_id", "m"), ("sum", "2"), ("seq", "1"), ("trace_id", "t")),
        payload='{"事件": true}'.encode(),
        log_id_new="new",
    )
    theirs = LarkFrame()
    theirs.ParseFromString(frames.encode(ours))
    assert (theirs.SeqID, theirs.LogID, theirs.service, theirs.method) == (2**40, 7, -3, frames.DATA)
    assert [(h.key, h.value) for h in theirs.headers] == list(ours.headers)
    assert theirs.payload == ours.payload
    assert frames.decode(theirs.SerializeToString()) == ours
    assert frames.encode(ours) == theirs.SerializeToString()


LARK_CLIENT = """
import os, sys, threading
import lark_oapi as lark

def on_message(data):
    print("EVENT", data.event.message.message_id, flush=True)
    threading.Timer(1.0, os._exit, [0]).start()  # after the SDK has answered the frame

handler = lark.EventDispatcherHandler.builder("", "").register_p2_im_message_receive_v1(on_message).build()
app_id, app_secret, domain = sys.argv[1:4]
quiet = lark.LogLevel.ERROR
client = lark.ws.Client(app_id, app_secret, event_handler=handler, domain=domain, log_level=quiet)
client.start()
"""


async def test_the_official_sdks_client_connects_to_the_emulator_and_gets_an_event(tmp_path: Path) -> None:
    """lark-oapi's own ws.Client (in a process of its own: it blocks its thread with its own loop)."""
    emulator, runner, url = await start_emulator()
    emulator.transport = "long-connection"
    config = emulator.config
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LARK_CLIENT,
        config.app_id,
        config.app_secret,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await asyncio.wait_for(emulator.long_connection.connected.wait(), 30)
        payload = emulator.build_say_event(ALICE, TEAM, "/help")
        result = await emulator.push(payload)
        assert result.status == 200  # the SDK answered our frame with {"code": 200}
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert line.decode().split() == ["EVENT", payload["event"]["message"]["message_id"]]
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await emulator.close()
        await runner.cleanup()


async def test_the_demo_runs_its_whole_invite_story_with_no_inbound_http() -> None:
    # In a process of its own, as a user runs it: the demo configures logging for its terminal.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from bot.cli import main; main()",
        "demo",
        "--no-public-url",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    printed = output.decode()
    assert process.returncode == 0, printed[-2000:]
    assert "the bot dialled its long connection" in printed
    assert "ok   Retry failed rang Carol" in printed
    assert "ok   no request reached the bot over HTTP" in printed
