"""BOT_AUTH_FLOW=device: a person authorizes on a Feishu page, the bot polls, nothing comes back over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.harness import ALICE, BOB, TEAM, Harness, ManualClock, ephemeral_prompt, open_harness


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await open_harness(tmp_path, clock=ManualClock(), bot_auth_flow="device")
    harness.emulator.devices.interval = 1  # Feishu says 5 s; a test need not wait that long
    try:
        await harness.start_bot()
        yield harness
    finally:
        await harness.close()


async def asked(world: Harness, count: int = 1) -> str:
    """Alice types an /invite; returns the user code of the device authorization she is shown."""
    await world.emulator.say(ALICE, TEAM, "/invite 123456789 @Bob")
    url = await ephemeral_prompt(world, ALICE, count)
    assert urlsplit(url).path == "/oauth/v1/device/verify"
    return parse_qs(urlsplit(url).query)["user_code"][0]


async def until(condition: object, within: float = 10.0) -> None:
    for _ in range(int(within / 0.05)):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never happened")


def last_ephemeral_text(world: Harness) -> str:
    return json.dumps(world.emulator.ephemeral_messages[-1].card, ensure_ascii=False)


async def test_approved_on_the_feishu_page_the_waiting_invite_goes_on(world: Harness) -> None:
    code = await asked(world)
    prompt = last_ephemeral_text(world)
    assert "vc:meeting" in prompt  # the scopes asked
    assert "10 minutes" in prompt  # and how long the link works
    world.emulator.devices.approve(code, ALICE)
    await until(lambda: [list(c.invitee_ids) for c in world.emulator.invite_calls] == [[BOB]])
    [card] = await world.emulator.wait_for_messages(1, chat_id=TEAM, timeout=10)
    assert "Invited 1" in json.dumps(card.content)
    tenant = world.emulator.config.tenant_key
    assert await world.runtime.authority.current(tenant, ALICE) is not None
    await until(lambda: "authorized until" in last_ephemeral_text(world))


async def test_denied_nothing_is_kept_and_the_card_says_so(world: Harness) -> None:
    code = await asked(world)
    world.emulator.devices.deny(code)
    await until(lambda: "declined" in last_ephemeral_text(world))
    assert world.emulator.invite_calls == []
    assert await world.runtime.authority.current(world.emulator.config.tenant_key, ALICE) is None


async def test_an_expired_link_is_said_to_have_expired(world: Harness) -> None:
    world.emulator.devices.expires_in = 2
    await asked(world)
    await until(lambda: "expired" in last_ephemeral_text(world), within=15)
    assert world.emulator.invite_calls == []


async def test_approved_by_someone_else_is_refused(world: Harness) -> None:
    code = await asked(world)
    world.emulator.devices.approve(code, BOB)  # in a group anyone can open the link
    await until(lambda: "Another account" in last_ephemeral_text(world))
    tenant = world.emulator.config.tenant_key
    assert await world.runtime.authority.current(tenant, ALICE) is None
    assert await world.runtime.authority.current(tenant, BOB) is None
    assert world.emulator.invite_calls == []


async def test_slow_down_makes_the_bot_wait_five_seconds_longer(world: Harness) -> None:
    devices = world.emulator.devices
    code = await asked(world)
    await until(lambda: devices.polls >= 1)
    devices.slow_down_next = 1
    await until(lambda: devices.polls >= 3, within=15)
    gaps = [
        later - earlier for earlier, later in zip(devices.poll_times, devices.poll_times[1:], strict=False)
    ]
    assert gaps[0] < 3  # the interval Feishu gave: 1 s
    assert gaps[1] >= 5.5  # after slow_down: 1 + 5 s
    devices.approve(code, ALICE)
    await until(lambda: len(world.emulator.invite_calls) == 1, within=15)


async def test_polling_resumes_after_a_restart(world: Harness) -> None:
    devices = world.emulator.devices
    code = await asked(world)
    await until(lambda: devices.polls >= 1)
    await world.stop_bot()  # mid-poll: the poll is handed back to the inbox
    devices.approve(code, ALICE)
    await world.start_bot()
    await until(lambda: [list(c.invitee_ids) for c in world.emulator.invite_calls] == [[BOB]], within=20)
