"""The inbox on the real SQLite store: order per chat, bounded concurrency, retries, dead letters, restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.feishu.events import EventEnvelope
from bot.inbox import EventHandler, Inbox, PermanentFailure
from bot.metrics import Metrics
from bot.store import Store, open_store


def message(event_id: str, message_id: str, chat_id: str) -> EventEnvelope:
    return EventEnvelope(
        schema_version="2.0",
        event_id=event_id,
        event_type="im.message.receive_v1",
        event={"message": {"message_id": message_id, "chat_id": chat_id}, "sender": {}},
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path}/inbox.db")
    try:
        yield opened
    finally:
        await opened.close()


def make_inbox(store: Store, handler: EventHandler, workers: int = 4, max_attempts: int = 3) -> Inbox:
    return Inbox(
        store,
        handler,
        Metrics(),
        workers=workers,
        max_attempts=max_attempts,
        dedupe_ttl_seconds=8 * 3600,
        retry_base_seconds=0.01,
    )


async def test_duplicates_by_message_id_are_dropped(store: Store) -> None:
    seen: list[str] = []

    async def handler(envelope: EventEnvelope) -> None:
        seen.append(envelope.event_id)

    inbox = make_inbox(store, handler)
    assert await inbox.accept(message("e1", "om_1", "oc_1"))
    assert not await inbox.accept(message("e1", "om_1", "oc_1"))  # Feishu's retry
    assert not await inbox.accept(message("e2", "om_1", "oc_1"))  # same message, new event_id
    results = await asyncio.gather(*(inbox.accept(message(f"c{i}", "om_2", "oc_1")) for i in range(10)))
    assert results.count(True) == 1
    await inbox.start()
    await inbox.wait_idle(5)
    await inbox.stop(1)
    # One handling per message: the first delivery of om_1, and whichever concurrent om_2 won.
    assert len(seen) == 2
    assert seen[0] == "e1"
    assert seen[1] in {f"c{i}" for i in range(10)}


async def test_one_chat_in_order_many_chats_at_once_within_bound(store: Store) -> None:
    handled: dict[str, list[str]] = {}
    active = 0
    peak = 0

    async def handler(envelope: EventEnvelope) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        chat = envelope.event["message"]["chat_id"]
        await asyncio.sleep(0.02 if envelope.event_id.endswith("-0") else 0.001)
        handled.setdefault(chat, []).append(envelope.event_id)
        active -= 1

    inbox = make_inbox(store, handler, workers=3)
    for chat in range(6):
        for n in range(5):
            await inbox.accept(message(f"{chat}-{n}", f"om_{chat}_{n}", f"oc_{chat}"))
    await inbox.start()
    await inbox.wait_idle(10)
    await inbox.stop(1)
    assert {chat: ids for chat, ids in handled.items()} == {
        f"oc_{chat}": [f"{chat}-{n}" for n in range(5)] for chat in range(6)
    }
    assert 1 < peak <= 3


async def test_failing_handler_is_retried_then_dead_with_reason(store: Store) -> None:
    attempts: list[str] = []

    async def handler(envelope: EventEnvelope) -> None:
        attempts.append(envelope.event_id)
        raise RuntimeError("reply endpoint said no")

    inbox = make_inbox(store, handler, max_attempts=3)
    await inbox.accept(message("bad", "om_bad", "oc_1"))
    await inbox.start()
    await inbox.wait_idle(5)
    await inbox.stop(1)
    assert attempts == ["bad", "bad", "bad"]
    dead = await store.dead_events()
    assert len(dead) == 1
    assert dead[0][1] == "RuntimeError: reply endpoint said no"
    # A dead event no longer blocks its chat, and its key still drops redeliveries.
    assert not await inbox.accept(message("bad", "om_bad", "oc_1"))


async def test_permanent_failure_is_dead_at_once(store: Store) -> None:
    calls = 0

    async def handler(envelope: EventEnvelope) -> None:
        nonlocal calls
        calls += 1
        raise PermanentFailure("cannot ever work")

    inbox = make_inbox(store, handler, max_attempts=5)
    await inbox.accept(message("p", "om_p", "oc_1"))
    await inbox.start()
    await inbox.wait_idle(5)
    await inbox.stop(1)
    assert calls == 1
    assert [reason for _, reason in await store.dead_events()] == ["PermanentFailure: cannot ever work"]


async def test_flaky_handler_succeeds_on_retry_and_keeps_chat_order(store: Store) -> None:
    order: list[str] = []
    failed_once = False

    async def handler(envelope: EventEnvelope) -> None:
        nonlocal failed_once
        if envelope.event_id == "first" and not failed_once:
            failed_once = True
            raise ConnectionError("blip")
        order.append(envelope.event_id)

    inbox = make_inbox(store, handler)
    await inbox.accept(message("first", "om_a", "oc_1"))
    await inbox.accept(message("second", "om_b", "oc_1"))
    await inbox.start()
    await inbox.wait_idle(5)
    await inbox.stop(1)
    assert order == ["first", "second"]


async def test_restart_resumes_claimed_and_unclaimed_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/restart.db"
    first = await open_store(url)
    started = asyncio.Event()

    async def stuck(envelope: EventEnvelope) -> None:
        started.set()
        await asyncio.sleep(3600)

    inbox = make_inbox(first, stuck)
    await inbox.accept(message("a", "om_a", "oc_1"))
    await inbox.accept(message("b", "om_b", "oc_1"))
    await inbox.start()
    await started.wait()
    await inbox.stop(0.05)  # the deadline passes: "a" is cancelled mid-way, "b" never started
    await first.close()

    second = await open_store(url)
    handled: list[str] = []

    async def handler(envelope: EventEnvelope) -> None:
        handled.append(envelope.event_id)

    inbox = make_inbox(second, handler)
    await inbox.start()
    await inbox.wait_idle(5)
    await inbox.stop(1)
    await second.close()
    assert handled == ["a", "b"]


async def test_stop_lets_running_work_finish_within_deadline(store: Store) -> None:
    finished: list[str] = []
    started = asyncio.Event()

    async def handler(envelope: EventEnvelope) -> None:
        started.set()
        await asyncio.sleep(0.1)
        finished.append(envelope.event_id)

    inbox = make_inbox(store, handler)
    await inbox.accept(message("x", "om_x", "oc_1"))
    await inbox.start()
    await started.wait()
    await inbox.stop(5)
    assert finished == ["x"]
    assert (await store.inbox_stats()).pending == 0
