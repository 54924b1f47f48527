"""Never lose, never repeat: restart, crash and failure, over loopback against the emulator."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from emulator import Emulator, Fault
from emulator.server import start_emulator
from tests.harness import ALICE, BOB, TEAM, free_port, open_harness, serve_env, start_serve


async def test_restart_resumes_an_acknowledged_but_unhandled_event(tmp_path: Path) -> None:
    world = await open_harness(tmp_path)
    try:
        await world.start_bot(start_workers=False)  # acknowledges and stores, handles nothing
        assert (await world.emulator.say(ALICE, TEAM, "/help")).status == 200
        assert (await world.runtime.store.inbox_stats()).pending == 1
        assert world.emulator.messages == []
        await world.stop_bot()

        await world.start_bot()
        [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM)
        assert reply.msg_type == "interactive"
        await world.runtime.inbox.wait_idle(5)
        assert len(world.emulator.messages) == 1
    finally:
        await world.close()


async def test_failing_handler_ends_dead_not_lost_and_chat_goes_on(tmp_path: Path) -> None:
    world = await open_harness(tmp_path)
    try:
        await world.start_bot()
        # Each of the 3 inbox attempts is refused once (230099 is not transient: no API-level retry).
        world.emulator.add_fault(Fault(route="reply", status=400, code=230099, msg="card broken", times=3))
        alices = world.emulator.build_say_event(ALICE, TEAM, "/help")
        bobs = world.emulator.build_say_event(BOB, TEAM, "/help")
        assert (await world.emulator.push(alices)).status == 200
        assert (await world.emulator.push(bobs)).status == 200
        [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM, timeout=10)
        await world.runtime.inbox.wait_idle(10)
        dead = await world.runtime.store.dead_events()
        assert len(dead) == 1
        item, reason = dead[0]
        assert "code=230099" in reason
        assert "log_id=" in reason
        assert "log_id=-" not in reason
        assert item.dedupe_key == "message:" + alices["event"]["message"]["message_id"]
        assert ALICE in item.payload  # kept whole, for an operator to read
        # The chat went on: Bob's message, queued behind Alice's, got its answer.
        assert reply.reply_to == bobs["event"]["message"]["message_id"]
        assert len(world.emulator.messages) == 1
    finally:
        await world.close()


def pointed_at_a_serve_process(emulator: Emulator, url: str, folder: Path) -> dict[str, str]:
    """A free port for `invite-bot serve`, the emulator's webhook aimed at it, and its environment."""
    port = free_port()
    emulator.webhook_url = f"http://127.0.0.1:{port}/feishu/events"
    return serve_env(emulator, url, folder, port)


async def reply_requested(emulator: Emulator) -> None:
    """Wait until the bot has sent its reply request (the emulator may still be holding the answer)."""
    for _ in range(200):
        if any(r.path.endswith("/reply") for r in emulator.requests):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the bot never sent its reply")


async def test_killed_mid_reply_then_restarted_replies_exactly_once(tmp_path: Path) -> None:
    """SIGKILL while the reply is in flight: the event is resumed, and the reply's uuid stops a twin."""
    emulator, runner, url = await start_emulator()
    try:
        env = pointed_at_a_serve_process(emulator, url, tmp_path)
        # The emulator records the reply, then holds the answer: the bot dies before it learns the outcome.
        emulator.add_fault(Fault(route="reply", status=None, delay_seconds=3))
        first = await start_serve(env)
        assert (await emulator.say(ALICE, TEAM, "/help")).status == 200
        await reply_requested(emulator)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        emulator.clear_faults()

        second = await start_serve(env)
        try:
            await emulator.say(BOB, TEAM, "/help")
            await emulator.wait_for_messages(2, chat_id=TEAM, timeout=10)
            replies = [r for r in emulator.requests if r.path.endswith("/reply")]
            assert len(replies) >= 2  # the resumed attempt did call again...
            assert len(emulator.messages) == 2  # ...but Feishu shows one reply per message
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 15) == 0
        finally:
            if second.returncode is None:
                second.kill()
                await second.wait()
    finally:
        await emulator.close()
        await runner.cleanup()


async def test_sigterm_lets_running_work_finish(tmp_path: Path) -> None:
    emulator, runner, url = await start_emulator()
    try:
        env = pointed_at_a_serve_process(emulator, url, tmp_path)
        emulator.add_fault(Fault(route="reply", status=None, delay_seconds=1.0))
        process = await start_serve(env)
        assert (await emulator.say(ALICE, TEAM, "/help")).status == 200
        await reply_requested(emulator)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
        assert len(emulator.messages) == 1  # the slow reply finished before the process left
    finally:
        await emulator.close()
        await runner.cleanup()
