"""One contract, two stores: every test here runs on SQLite and on the real PostgreSQL server.

Two store instances opened on one database stand for two processes (replicas): each has its own claim
identity, as two `invite-bot serve` processes would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bot.store import Store, open_store
from bot.store.base import CLAIM_LEASE_SECONDS
from tests.harness import postgres_schema

NOW = 1_800_000_000.0
HOUR = 3600.0
LEASE = CLAIM_LEASE_SECONDS

Opener = Callable[[], Awaitable[Store]]


@contextlib.asynccontextmanager
async def database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "postgresql":
        async with postgres_schema() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path}/contract.db"


@pytest.fixture(params=["sqlite", "postgresql"])
async def open_replica(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens store instances on one fresh database; closes them all afterwards."""
    opened: list[Store] = []
    async with database(request.param, tmp_path) as url:

        async def opener() -> Store:
            store = await open_store(url)
            opened.append(store)
            return store

        try:
            yield opener
        finally:
            for store in opened:
                await store.close()


@pytest.fixture
async def store(open_replica: Opener) -> Store:
    return await open_replica()


async def accept(store: Store, key: str, chat: str = "chat:oc_1", *, now: float = NOW) -> bool:
    return await store.accept_event(
        dedupe_key=key, ordering_key=chat, payload=f'{{"key": "{key}"}}', now=now, dedupe_until=now + 8 * HOUR
    )


# --- deduplication ---------------------------------------------------------------------------------------


async def test_a_delivery_is_queued_once_while_its_key_is_remembered(store: Store) -> None:
    assert await accept(store, "message:om_1")
    assert not await accept(store, "message:om_1", now=NOW + 1)
    [item] = await store.claim_events(now=NOW + 2, limit=10)
    await store.complete_event(item.id)
    # Handled and gone from the queue, but still remembered: a late retry by Feishu is dropped.
    assert not await accept(store, "message:om_1", now=NOW + 7 * HOUR)
    assert (await store.inbox_stats()).pending == 0
    # Past the window the key is new again.
    assert await accept(store, "message:om_1", now=NOW + 9 * HOUR)


async def test_an_open_event_is_never_queued_twice_even_past_its_window(store: Store) -> None:
    assert await accept(store, "event:e1")
    assert not await accept(store, "event:e1", now=NOW + 9 * HOUR)
    assert (await store.inbox_stats()).pending == 1


async def test_a_dead_event_whose_window_passed_is_taken_again(store: Store) -> None:
    assert await accept(store, "event:e1")
    [item] = await store.claim_events(now=NOW, limit=1)
    await store.bury_event(item.id, error="boom", now=NOW)
    assert not await accept(store, "event:e1", now=NOW + HOUR)
    assert await accept(store, "event:e1", now=NOW + 9 * HOUR)
    [again] = await store.claim_events(now=NOW + 9 * HOUR, limit=1)
    assert again.attempts == 1
    assert await store.dead_events() == []


async def test_the_same_delivery_at_two_replicas_at_once_is_queued_once(open_replica: Opener) -> None:
    first, second = await open_replica(), await open_replica()
    for round_ in range(20):
        key = f"message:om_race{round_}"
        results = await asyncio.gather(accept(first, key), accept(second, key))
        assert sorted(results) == [False, True], key
    assert (await first.inbox_stats()).pending == 20


# --- claims ----------------------------------------------------------------------------------------------


async def test_claims_take_each_chats_oldest_event_only(store: Store) -> None:
    for n in range(3):
        await accept(store, f"message:a{n}", "chat:a")
        await accept(store, f"message:b{n}", "chat:b")
    claimed = await store.claim_events(now=NOW, limit=10)
    assert [item.dedupe_key for item in claimed] == ["message:a0", "message:b0"]
    assert await store.claim_events(now=NOW, limit=10) == []  # both chats busy
    await store.complete_event(claimed[0].id)
    [next_a] = await store.claim_events(now=NOW, limit=10)
    assert next_a.dedupe_key == "message:a1"
    assert next_a.attempts == 1


async def test_claims_respect_the_limit_oldest_chats_first(store: Store) -> None:
    for chat in range(5):
        await accept(store, f"message:{chat}", f"chat:{chat}")
    first = await store.claim_events(now=NOW, limit=2)
    assert [item.dedupe_key for item in first] == ["message:0", "message:1"]
    rest = await store.claim_events(now=NOW, limit=10)
    assert [item.dedupe_key for item in rest] == ["message:2", "message:3", "message:4"]


async def test_a_retry_waits_for_its_time_and_keeps_its_chat_behind_it(store: Store) -> None:
    await accept(store, "message:1")
    await accept(store, "message:2")
    [item] = await store.claim_events(now=NOW, limit=10)
    await store.retry_event(item.id, error="Timeout: slow", next_attempt_at=NOW + 30)
    assert await store.claim_events(now=NOW + 1, limit=10) == []  # message:2 waits behind it
    assert await store.next_due_at(after=NOW + 1) == NOW + 30
    [again] = await store.claim_events(now=NOW + 30, limit=10)
    assert (again.dedupe_key, again.attempts) == ("message:1", 2)


async def test_a_postponed_event_runs_again_later_as_a_fresh_start(store: Store) -> None:
    await accept(store, "event:watch", chat="watch:1")
    for _ in range(5):  # more rounds than any max_attempts: a postponement is no failure
        [item] = await store.claim_events(now=NOW, limit=10)
        await store.postpone_event(item.id, next_attempt_at=NOW + 5)
        assert await store.claim_events(now=NOW + 1, limit=10) == []
        assert await store.next_due_at(after=NOW + 1) == NOW + 5
        [again] = await store.claim_events(now=NOW + 5, limit=10)
        assert again.attempts == 1
        await store.postpone_event(again.id, next_attempt_at=NOW)
    assert (await store.inbox_stats()).pending == 1


async def test_a_dead_event_is_kept_with_its_reason_and_frees_its_chat(store: Store) -> None:
    await accept(store, "message:1")
    await accept(store, "message:2")
    [item] = await store.claim_events(now=NOW, limit=10)
    await store.bury_event(item.id, error="ValueError: cannot", now=NOW)
    [(dead, reason)] = await store.dead_events()
    assert (dead.dedupe_key, reason) == ("message:1", "ValueError: cannot")
    [following] = await store.claim_events(now=NOW, limit=10)
    assert following.dedupe_key == "message:2"
    stats = await store.inbox_stats()
    assert (stats.pending, stats.running, stats.dead) == (0, 1, 1)
    assert stats.oldest_received_at == NOW


async def test_release_hands_back_only_this_instances_claims(open_replica: Opener) -> None:
    first, second = await open_replica(), await open_replica()
    await accept(first, "message:a", "chat:a")
    await accept(first, "message:b", "chat:b")
    [mine] = await first.claim_events(now=NOW, limit=1)
    [theirs] = await second.claim_events(now=NOW, limit=1)
    assert await first.release_claims() == 1
    [again] = await second.claim_events(now=NOW, limit=10)
    assert again.id == mine.id
    assert theirs.id != mine.id


# --- leases: a replica that stops is taken over, one that runs is not ------------------------------------


async def test_a_lapsed_claim_is_taken_over_and_the_old_holder_can_change_nothing(
    open_replica: Opener,
) -> None:
    first, second = await open_replica(), await open_replica()
    await accept(first, "message:1")
    await accept(first, "message:2")
    [item] = await first.claim_events(now=NOW, limit=10)
    assert await second.claim_events(now=NOW + LEASE - 1, limit=10) == []
    # The first stopped renewing (killed): the second learns when to look, then takes the event over.
    assert await second.next_due_at(after=NOW) == NOW + LEASE
    [taken] = await second.claim_events(now=NOW + LEASE, limit=10)
    assert (taken.id, taken.attempts) == (item.id, 2)
    # The first comes back to life: its claim is gone, and what it writes is ignored.
    assert await first.renew_claims([item.id], now=NOW + LEASE + 1) == [item.id]
    await first.complete_event(item.id)
    await first.retry_event(item.id, error="late", next_attempt_at=NOW)
    await first.bury_event(item.id, error="late", now=NOW)
    stats = await second.inbox_stats()
    assert (stats.pending, stats.running, stats.dead) == (1, 1, 0)
    await second.complete_event(taken.id)
    [following] = await second.claim_events(now=NOW + LEASE, limit=10)
    assert following.dedupe_key == "message:2"


async def test_a_renewed_claim_is_not_taken_over(open_replica: Opener) -> None:
    first, second = await open_replica(), await open_replica()
    await accept(first, "message:1")
    [item] = await first.claim_events(now=NOW, limit=10)
    for tick in range(1, 5):
        assert await first.renew_claims([item.id], now=NOW + tick * LEASE * 0.75) == []
        assert await second.claim_events(now=NOW + tick * LEASE * 0.75 + 1, limit=10) == []
    await first.complete_event(item.id)
    assert (await second.inbox_stats()).running == 0


async def test_replicas_claiming_at_once_never_share_an_event_and_keep_each_chats_order(
    open_replica: Opener,
) -> None:
    replicas = [await open_replica() for _ in range(3)]
    chats, per_chat = 8, 10
    for n in range(per_chat):
        for chat in range(chats):
            await accept(replicas[0], f"message:{chat}-{n}", f"chat:{chat}")
    handled: dict[str, list[int]] = {}
    running: set[int] = set()

    async def work(store: Store) -> None:
        idle = 0
        while idle < 5:
            claimed = await store.claim_events(now=NOW, limit=3)
            if not claimed:
                idle += 1
                await asyncio.sleep(0.01)
                continue
            idle = 0
            for item in claimed:
                assert item.id not in running, "one event claimed by two replicas"
                running.add(item.id)
            await asyncio.sleep(0)
            for item in claimed:
                chat, n = item.dedupe_key.removeprefix("message:").split("-")
                handled.setdefault(chat, []).append(int(n))
                running.discard(item.id)
                await store.complete_event(item.id)

    await asyncio.wait_for(asyncio.gather(*(work(store) for store in replicas)), timeout=60)
    assert handled == {str(chat): list(range(per_chat)) for chat in range(chats)}


# --- expiry ----------------------------------------------------------------------------------------------


async def test_expiry_forgets_lapsed_keys_values_and_old_dead_events(store: Store) -> None:
    for n in range(1203):  # more than two batches
        await accept(store, f"event:{n}", f"chat:{n}")
    for item in await store.claim_events(now=NOW, limit=2000):
        await store.complete_event(item.id)
    await accept(store, "event:dead", "chat:dead")
    [dead] = await store.claim_events(now=NOW, limit=1)
    await store.bury_event(dead.id, error="gone", now=NOW)
    await store.put("oauth_state", "s1", b"x", expires_at=NOW + 60)
    await store.put("user_token", "u1", b"y", expires_at=None)
    forgotten = await store.purge_expired(now=NOW + 9 * HOUR)
    assert forgotten == 1204 + 1  # every key (the dead one's too) and the OAuth state
    assert await store.get("user_token", "u1", now=NOW + 9 * HOUR) is not None
    assert len(await store.dead_events()) == 1  # kept a week past its window for an operator
    assert await store.purge_expired(now=NOW + 8 * HOUR + 8 * 24 * HOUR) == 1
    assert await store.dead_events() == []


# --- key-value state -------------------------------------------------------------------------------------


async def test_values_are_versioned_and_expire(store: Store) -> None:
    assert await store.get("ns", "k", now=NOW) is None
    assert await store.put("ns", "k", b"\x00one", expires_at=NOW + 10) == 1
    assert await store.put("ns", "k", b"two", expires_at=NOW + 10) == 2
    stored = await store.get("ns", "k", now=NOW)
    assert stored is not None
    assert (stored.value, stored.version, stored.expires_at) == (b"two", 2, NOW + 10)
    assert await store.get("ns", "k", now=NOW + 10) is None
    assert await store.get("other", "k", now=NOW) is None


async def test_compare_and_set_writes_only_over_what_was_read(store: Store) -> None:
    assert await store.compare_and_set("ns", "k", b"a", expected_version=None, expires_at=NOW + 5, now=NOW)
    assert not await store.compare_and_set("ns", "k", b"b", expected_version=None, expires_at=None, now=NOW)
    assert not await store.compare_and_set("ns", "k", b"b", expected_version=7, expires_at=None, now=NOW)
    assert await store.compare_and_set("ns", "k", b"b", expected_version=1, expires_at=NOW + 5, now=NOW)
    # Expired: "absent" again, and a version read before the expiry never matches what replaces it.
    assert not await store.compare_and_set("ns", "k", b"c", expected_version=2, expires_at=None, now=NOW + 5)
    assert await store.compare_and_set("ns", "k", b"c", expected_version=None, expires_at=None, now=NOW + 5)
    stored = await store.get("ns", "k", now=NOW + 6)
    assert stored is not None
    assert (stored.value, stored.version) == (b"c", 3)


async def test_of_two_replicas_racing_for_one_value_exactly_one_wins(open_replica: Opener) -> None:
    first, second = await open_replica(), await open_replica()
    for n in range(10):
        key = f"lease:{n}"
        won = await asyncio.gather(
            first.compare_and_set("lease", key, b"1", expected_version=None, expires_at=NOW + 30, now=NOW),
            second.compare_and_set("lease", key, b"2", expected_version=None, expires_at=NOW + 30, now=NOW),
        )
        assert sorted(won) == [False, True]
        await first.put("once", key, b"state", expires_at=NOW + 30)
        taken = await asyncio.gather(first.take("once", key, now=NOW), second.take("once", key, now=NOW))
        assert sorted(value is not None for value in taken) == [False, True]


async def test_take_delete_and_delete_if(store: Store) -> None:
    await store.put("ns", "k", b"v", expires_at=NOW + 5)
    assert await store.take("ns", "k", now=NOW + 5) is None  # expired: gone, and not handed out
    assert await store.get("ns", "k", now=NOW) is None
    await store.put("ns", "k", b"v", expires_at=None)
    assert not await store.delete_if("ns", "k", b"other")
    assert await store.delete_if("ns", "k", b"v")
    await store.put("ns", "k", b"v", expires_at=None)
    assert await store.delete("ns", "k")
    assert not await store.delete("ns", "k")
