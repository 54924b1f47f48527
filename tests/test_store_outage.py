"""PostgreSQL goes away and comes back: nothing crashes, nothing acknowledged is lost, all resumes.

The bot reaches the server through a loopback proxy that the test cuts (every connection dropped, new
ones refused) and restores.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from tests.harness import ALICE, TEAM, CuttableProxy, invite, open_harness, open_world, postgres_schema


async def readiness(base: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/readyz") as response:
        return response.status


async def until_ready_is(base: str, status: int, within: float) -> None:
    for _ in range(int(within / 0.1)):
        if await readiness(base) == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never answered {status} within {within} s")


async def test_with_postgresql_away_events_get_503_clicks_a_toast_and_everything_resumes(
    tmp_path: Path,
) -> None:
    async with postgres_schema() as direct:
        server = urlsplit(direct)
        proxy = CuttableProxy(server.hostname or "127.0.0.1", server.port or 5432)
        await proxy.restore()
        proxied = server._replace(netloc=f"{server.username}@127.0.0.1:{proxy.port}").geturl()
        world = await open_world(tmp_path, bot_store_url=proxied)
        try:
            await invite(world, "/invite 123456789 @Bob")
            card = world.emulator.messages[-1]
            [button] = [
                b for b in world.emulator.card_buttons(card.message_id) if "Invite more" in json.dumps(b)
            ]
            assert await readiness(world.bot_url) == 200

            await proxy.cut()
            await until_ready_is(world.bot_url, 503, within=10)
            retried = world.emulator.build_say_event(ALICE, TEAM, "/help")
            refused = await world.emulator.push(retried)
            assert refused.status == 503  # not stored, so not acknowledged: Feishu delivers it again
            click = await world.emulator.click(ALICE, card.message_id, button["value"])
            assert click.status == 200
            assert click.toast is not None
            assert click.toast["type"] == "error"
            async with aiohttp.ClientSession() as session, session.get(f"{world.bot_url}/healthz") as alive:
                assert alive.status == 200  # still running: no crash, no restart loop

            await proxy.restore()
            await until_ready_is(world.bot_url, 200, within=20)
            before = len(world.emulator.messages)
            assert (await world.emulator.push(retried)).status == 200  # Feishu's retry
            replies = await world.emulator.wait_for_messages(before + 1, chat_id=TEAM, timeout=20)
            assert replies[-1].reply_to == retried["event"]["message"]["message_id"]
        finally:
            await world.close()
            await proxy.cut()


async def test_a_bot_started_while_postgresql_is_away_waits_for_it_instead_of_exiting(tmp_path: Path) -> None:
    async with postgres_schema() as direct:
        server = urlsplit(direct)
        proxy = CuttableProxy(server.hostname or "127.0.0.1", server.port or 5432)
        proxied = server._replace(netloc=f"{server.username}@127.0.0.1:{proxy.port}").geturl()
        world = await open_harness(tmp_path, bot_store_url=proxied)
        try:
            await world.start_bot()  # the store does not answer: start-up goes on in the background
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{world.bot_url}/healthz") as alive:
                    assert alive.status == 200
                async with session.get(f"{world.bot_url}/readyz") as ready:
                    assert ready.status == 503
                    assert "store unreachable" in json.dumps(await ready.json())
            early = world.emulator.build_say_event(ALICE, TEAM, "/help")
            assert (await world.emulator.push(early)).status == 503

            await proxy.restore()
            await until_ready_is(world.bot_url, 200, within=20)
            assert (await world.emulator.push(early)).status == 200
            [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM, timeout=20)
            assert reply.reply_to == early["event"]["message"]["message_id"]
        finally:
            await world.close()
            await proxy.cut()
