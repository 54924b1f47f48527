"""Replicas on one PostgreSQL database: three `invite-bot serve` processes behind a load balancer, and
pairs of bots in this process for what one replica starts and another finishes.

Events are spread over the three; some deliveries are sent again to a different replica (Feishu's
retries land wherever the balancer sends them); one replica is killed with SIGKILL in the middle of the
load while it holds claims. Every acknowledged event must be answered exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from emulator import Emulator, EmulatorConfig, Fault
from emulator.server import start_emulator
from tests.harness import (
    ALICE,
    BOB,
    CAROL,
    TEAM,
    Harness,
    ManualClock,
    authorize,
    browse,
    ephemeral_prompt,
    free_port,
    invite,
    open_harness,
    postgres_schema,
    serve_env,
    start_serve,
    updated_card,
)

CHATS = 6
EVENTS = 90
PER_SECOND = 15.0
KILL_AFTER = 30  # events sent before the first replica is killed
# A claim lapses after 20 s without renewal; the others look again when it does (or within 5 s).
TAKEOVER_WITHIN = 40.0


def room(n: int) -> str:
    return f"oc_replicaroom{n:018d}"


async def push_to(emulator: Emulator, hook: str, payload: dict[str, object]) -> int:
    # `push` reads the webhook URL before its first await, so concurrent pushes may aim differently.
    emulator.webhook_url = hook
    try:
        return (await emulator.push(payload, timeout=5)).status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def test_three_replicas_answer_every_acknowledged_event_once_when_one_is_killed(tmp_path: Path) -> None:
    config = EmulatorConfig()
    for n in range(CHATS):
        config = config.with_generated_users(2, chat_id=room(n), chat_name=f"Room {n}")
    senders = [user.open_id for user in config.users]
    async with postgres_schema() as store_url:
        emulator, runner, url = await start_emulator(config)
        replicas: list[asyncio.subprocess.Process] = []
        try:
            # Replies take a while, so the replica killed below holds claims when it dies.
            emulator.add_fault(Fault(route="reply", status=None, delay_seconds=0.3, times=10_000))
            ports = [free_port() for _ in range(3)]
            for index, port in enumerate(ports):
                env = {
                    **serve_env(emulator, url, tmp_path, port, store_url=store_url),
                    "BOT_LOG_LEVEL": "warning",
                }
                replicas.append(await start_serve(env, tmp_path / f"replica{index}.log"))
            hooks = [f"http://127.0.0.1:{port}/feishu/events" for port in ports]

            acknowledged: set[str] = set()
            sends: list[asyncio.Task[None]] = []
            alive = [0, 1, 2]
            killed_at = 0.0

            async def deliver(payload: dict[str, object], message_id: str, replica: int) -> None:
                if await push_to(emulator, hooks[replica], payload) == 200:
                    acknowledged.add(message_id)

            for index in range(EVENTS):
                if index == KILL_AFTER:
                    replicas[0].send_signal(signal.SIGKILL)
                    await replicas[0].wait()
                    killed_at = time.monotonic()
                    alive = [1, 2]  # the balancer notices and stops sending there
                payload = emulator.build_say_event(
                    senders[index % len(senders)], room(index % CHATS), "/help"
                )
                message_id = str(payload["event"]["message"]["message_id"])
                target = alive[index % len(alive)]
                sends.append(asyncio.create_task(deliver(payload, message_id, target)))
                if index % 3 == 0:  # the same delivery again, at another replica
                    again = alive[(index + 1) % len(alive)]
                    sends.append(asyncio.create_task(deliver(payload, message_id, again)))
                await asyncio.sleep(1 / PER_SECOND)
            await asyncio.gather(*sends)
            assert len(acknowledged) >= EVENTS - 3  # at most the pushes in flight at the kill went unanswered

            deadline = time.monotonic() + TAKEOVER_WITHIN + 10
            while time.monotonic() < deadline:
                answered = {m.reply_to for m in emulator.messages}
                if acknowledged <= answered:
                    break
                await asyncio.sleep(0.1)
            finished = time.monotonic() - killed_at
            print(f"every acknowledged event answered {finished:.1f} s after the kill")
            replies: dict[str | None, int] = {}
            for message in emulator.messages:
                replies[message.reply_to] = replies.get(message.reply_to, 0) + 1
            missing = sorted(acknowledged - set(replies))
            assert not missing, f"{len(missing)} acknowledged events never answered"
            twice = {key: count for key, count in replies.items() if count > 1}
            assert not twice, f"answered more than once: {twice}"
            assert finished < TAKEOVER_WITHIN
            for survivor in replicas[1:]:
                survivor.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(survivor.wait(), 20) == 0
        finally:
            for process in replicas:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
            await emulator.close()
            await runner.cleanup()


# --- whatever one replica started, another finishes ------------------------------------------------


@contextlib.asynccontextmanager
async def two_replicas(tmp_path: Path) -> AsyncIterator[tuple[Harness, Harness, ManualClock]]:
    """Two bots in this process on one PostgreSQL schema, both talking to the first one's emulator."""
    clock = ManualClock()
    async with postgres_schema() as store_url:
        first = await open_harness(tmp_path / "a", clock=clock, bot_store_url=store_url)
        second = await open_harness(
            tmp_path / "b",
            clock=clock,
            bot_store_url=store_url,
            # Replicas share their settings: the secret key, and the public URL of the balancer in front.
            bot_secret_key=first.settings.bot_secret_key,
            bot_public_url=first.settings.bot_public_url,
            feishu_domain=first.emulator_url,
        )
        try:
            await first.start_bot()
            await second.start_bot()
            first.emulator.webhook_url = f"{first.bot_url}/feishu/events"
            yield first, second, clock
        finally:
            await second.close()
            await first.close()


def at_replica(url: str, replica: Harness) -> str:
    """The same URL at another replica: what a load balancer in front of both does to a browser."""
    return urlsplit(url)._replace(netloc=urlsplit(replica.bot_url).netloc).geturl()


async def test_an_authorization_begun_at_one_replica_completes_at_another(tmp_path: Path) -> None:
    async with two_replicas(tmp_path) as (first, second, _):
        emulator = first.emulator
        await emulator.say(ALICE, TEAM, "/invite 123456789 @Bob")  # not authorized yet: a prompt
        url = await ephemeral_prompt(first, ALICE)
        callback = emulator.authorize(url, as_user=ALICE)
        status, _ = await browse(at_replica(callback, second))
        assert status == 200
        # The command that waited resumes (on whichever replica claims it) and invites Bob.
        for _ in range(200):
            if any(call.invitee_ids == (BOB,) for call in emulator.invite_calls):
                break
            await asyncio.sleep(0.05)
        assert [list(call.invitee_ids) for call in emulator.invite_calls] == [[BOB]]
        tenant = emulator.config.tenant_key
        assert await first.runtime.authority.current(tenant, ALICE) is not None


async def test_a_click_on_a_card_one_replica_sent_is_carried_out_by_another(tmp_path: Path) -> None:
    async with two_replicas(tmp_path) as (first, second, _):
        emulator = first.emulator
        await authorize(first, ALICE)
        await emulator.wait_for_messages(1, chat_id=TEAM)
        await invite(first, "/invite 123456789 @Bob")
        message_id = emulator.messages[-1].message_id
        [more] = [b["value"] for b in emulator.card_buttons(message_id) if "Invite more" in json.dumps(b)]
        assert isinstance(more, dict)
        emulator.webhook_url = f"{second.bot_url}/feishu/events"  # the balancer sends the click there
        result = await emulator.click(ALICE, message_id, more, form_value={"people": [CAROL]})
        assert result.ok, result.error
        clicks = {"event_type": "card.action.trigger"}
        assert (
            second.runtime.metrics.registry.get_sample_value("invite_bot_events_received_total", clicks) == 1
        )
        card = await updated_card(first, message_id)
        assert "Invited 2" in card
        assert [list(call.invitee_ids) for call in emulator.invite_calls] == [[BOB], [CAROL]]


async def test_two_replicas_refresh_one_users_token_once(tmp_path: Path) -> None:
    async with two_replicas(tmp_path) as (first, second, clock):
        await authorize(first, ALICE)
        await first.emulator.wait_for_messages(1, chat_id=TEAM)
        clock.advance(7200 - 60)
        tenant = first.emulator.config.tenant_key
        tokens = await asyncio.gather(
            first.runtime.authority.current(tenant, ALICE), second.runtime.authority.current(tenant, ALICE)
        )
        assert tokens[0] is not None
        assert tokens[1] is not None
        assert tokens[0].access_token == tokens[1].access_token
        assert first.emulator.refreshes == 1
        assert first.emulator.refresh_token_reuses == 0
