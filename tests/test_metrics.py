"""/metrics after a scripted conversation shows the counts of what happened."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from emulator.config import MEETING_IN_PROGRESS
from tests.harness import ALICE, CAROL, TEAM, ManualClock, free_port, invite, open_world


def value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{sample} not in /metrics"
    return float(match.group(1))


async def test_metrics_count_the_conversation(tmp_path: Path) -> None:
    world = await open_world(tmp_path)  # Alice's /login: one prompt, one authorization, one reply
    try:
        world.emulator.set_busy(MEETING_IN_PROGRESS, CAROL)
        await invite(world, "/invite 123456789 @Bob @Carol")
        assert isinstance(world.clock, ManualClock)
        world.clock.advance(7200 - 60)
        await invite(world, "/invite 123456789 @Bob")  # needs a refresh first
        await world.runtime.inbox.wait_idle(5)
        async with aiohttp.ClientSession() as session, session.get(f"{world.bot_url}/metrics") as response:
            text = await response.text()
    finally:
        await world.close()
    assert value(text, 'invite_bot_events_received_total{event_type="im.message.receive_v1"}') == 3
    assert value(text, 'invite_bot_events_handled_total{event_type="im.message.receive_v1"}') == 3
    assert value(text, 'invite_bot_invites_total{code="0",outcome="invited"}') == 2
    assert value(text, 'invite_bot_invites_total{code="0",outcome="failed"}') == 1
    assert value(text, 'invite_bot_authorization_prompts_total{via="ephemeral"}') == 1
    assert value(text, 'invite_bot_user_token_refreshes_total{result="ok"}') == 1
    assert value(text, "invite_bot_inbox_pending") == 0
    assert value(text, 'invite_bot_openapi_calls_total{endpoint="vc.meeting.invite",result="ok"}') == 2
    assert 'invite_bot_openapi_latency_seconds_count{endpoint="im.message.reply"}' in text
    assert ALICE not in text  # nobody's identity in label values
    assert TEAM not in text


async def test_with_a_metrics_port_the_public_listener_does_not_serve_metrics(tmp_path: Path) -> None:
    port = free_port()
    world = await open_world(tmp_path, bot_metrics_port=port)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{world.bot_url}/metrics") as response:
                assert response.status == 404
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                text = await response.text()
            async with session.get(f"http://127.0.0.1:{port}/feishu/events") as response:
                assert response.status == 404  # the metrics listener serves nothing else
            async with session.get(f"{world.bot_url}/healthz") as response:
                assert response.status == 200
    finally:
        await world.close()
    assert value(text, 'invite_bot_events_received_total{event_type="im.message.receive_v1"}') == 1
    # Closing the bot closed the metrics listener too.
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                raise AssertionError(f"still answering: {response.status}")
        except aiohttp.ClientConnectionError:
            pass
