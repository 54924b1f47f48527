"""What the inbox costs does not grow with what it remembers.

Measured by work, not time: SQLite's progress handler counts the virtual-machine instructions each
statement runs, which is the same on a busy CI machine as on an idle laptop. A claim or an ack that
read remembered keys would run thousands of instructions more with 100,000 of them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiosqlite
import pytest

from bot.store.sqlite import SqliteStore
from tests.harness import ALICE, ALICE_DM, TEAM, Harness, open_harness

HISTORY = 100_000
NOW = 1_800_000_000.0
DAY = 24 * 3600.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(str(tmp_path / "history.db"))
    try:
        yield opened
    finally:
        await opened.close()


async def instructions(connection: aiosqlite.Connection, work: Callable[[], Awaitable[object]]) -> int:
    counted = 0

    def count() -> int:
        nonlocal counted
        counted += 1
        return 0  # 0: carry on

    await connection.set_progress_handler(count, 1)
    try:
        await work()
    finally:
        await connection.set_progress_handler(None, 1)  # type: ignore[arg-type]  # None: off
    return counted


async def file_of(store: SqliteStore) -> str:
    [row, *_] = await store._db.execute_fetchall("PRAGMA database_list")
    return str(row[2])


COUNTS = {"delivery": "SELECT COUNT(*) FROM delivery", "queue": "SELECT COUNT(*) FROM queue"}


async def count_rows(store: SqliteStore, table: str) -> int:
    [row] = await store._db.execute_fetchall(COUNTS[table])
    return int(row[0])


async def accept(store: SqliteStore, n: int, chat: str = "oc_chat") -> bool:
    return await store.accept_event(
        dedupe_key=f"message:om_{n}", ordering_key=chat, payload="{}", now=NOW, dedupe_until=NOW + DAY
    )


async def remember(store: SqliteStore, count: int) -> None:
    """A day of handled events: accepted and completed through the store, the bulk written straight
    into the file in one transaction (100,000 fsyncs would take minutes)."""
    for n in range(100):
        await accept(store, 10_000_000 + n)
        [item] = await store.claim_events(now=NOW, limit=1)
        await store.complete_event(item.id)
    path = await file_of(store)
    with sqlite3.connect(path) as bulk:
        known = bulk.execute("SELECT dedupe_key, dedupe_until FROM delivery").fetchall()
        bulk.executemany(
            "INSERT INTO delivery (dedupe_key, dedupe_until) VALUES (?, ?)",
            ((f"message:om_old_{n}", NOW + DAY) for n in range(count - len(known))),
        )
    assert await count_rows(store, "delivery") == count


async def costs(store: SqliteStore) -> tuple[int, int, int]:
    """Instructions for: an ack, a duplicate's ack, and claiming the next event of a chat with a backlog
    of three chats × two events."""
    for n in range(6):
        await accept(store, n, chat=f"oc_{n % 3}")
    ack = await instructions(store._intake, lambda: accept(store, 100))
    duplicate = await instructions(store._intake, lambda: accept(store, 100))
    claim = await instructions(store._db, lambda: store.claim_events(now=NOW, limit=8))
    return ack, duplicate, claim


async def test_an_ack_and_a_claim_cost_the_same_with_100_000_remembered_keys(tmp_path: Path) -> None:
    empty = await SqliteStore.open(str(tmp_path / "empty.db"))
    full = await SqliteStore.open(str(tmp_path / "full.db"))
    try:
        await remember(full, HISTORY)
        fresh, remembering = await costs(empty), await costs(full)
        print("instructions (ack, duplicate, claim):", fresh, "→", remembering)
    finally:
        await empty.close()
        await full.close()
    for name, without, with_history in zip(("ack", "duplicate", "claim"), fresh, remembering, strict=True):
        # A B-tree lookup is one instruction whatever the tree's size; scanning keys would be ≥ 100,000.
        assert with_history <= without + 20, (name, without, with_history)
        assert without > 0, name


async def test_the_claim_reads_only_open_events(store: SqliteStore) -> None:
    """The plan names the partial indexes over open events; a plan that scanned the table would not."""
    from bot.store.sqlite import _CLAIM

    parameters = {"now": NOW, "limit": 8, "owner": "me", "lease_until": NOW + 20}
    plan = await store._db.execute_fetchall("EXPLAIN QUERY PLAN " + _CLAIM, parameters)
    details = " | ".join(str(row[3]) for row in plan)
    assert "queue_due" in details
    assert "queue_leases" in details  # lapsed claims, taken over
    assert "queue_open" in details
    assert "SCAN" not in details.replace("SCAN CONSTANT ROW", "")


async def test_a_handled_event_leaves_the_queue_but_its_key_is_remembered(store: SqliteStore) -> None:
    assert await accept(store, 1)
    [item] = await store.claim_events(now=NOW, limit=1)
    await store.complete_event(item.id)
    assert await count_rows(store, "queue") == 0
    assert not await accept(store, 1)  # a redelivery within the window is a duplicate
    assert await store.accept_event(
        dedupe_key="message:om_1",
        ordering_key="oc_chat",
        payload="{}",
        now=NOW + DAY,
        dedupe_until=NOW + 2 * DAY,
    )  # once the memory lapses, the key is new again


async def test_expiry_forgets_in_small_batches(store: SqliteStore) -> None:
    path = await file_of(store)
    with sqlite3.connect(path) as bulk:
        bulk.executemany(
            "INSERT INTO delivery (dedupe_key, dedupe_until) VALUES (?, ?)",
            ((f"message:om_{n}", NOW - 1) for n in range(2_600)),
        )
    statements: list[str] = []
    await store._db.set_trace_callback(statements.append)
    try:
        assert await store.purge_expired(now=NOW) == 2_600
    finally:
        await store._db.set_trace_callback(None)  # type: ignore[arg-type]  # None switches it off
    deletes = [sql for sql in statements if sql.startswith("DELETE FROM delivery")]
    assert len(deletes) == 6  # 5 full batches of 500 and one of 100: no single long write


async def test_a_store_from_before_the_split_keeps_its_memory_and_its_work(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript(
            """
            CREATE TABLE inbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT, dedupe_key TEXT NOT NULL UNIQUE,
                dedupe_until REAL NOT NULL, ordering_key TEXT NOT NULL, payload TEXT NOT NULL,
                state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
                received_at REAL NOT NULL, last_error TEXT);
            """
        )
        rows = [
            ("message:om_done", NOW + DAY, "oc_a", "", "done", 1, NOW, NOW, None),
            ("message:om_open", NOW + DAY, "oc_a", '{"x":1}', "pending", 0, NOW, NOW, None),
            ("message:om_dead", NOW + DAY, "oc_b", '{"x":2}', "dead", 3, NOW, NOW, "boom"),
        ]
        old.executemany(
            "INSERT INTO inbox (dedupe_key, dedupe_until, ordering_key, payload, state, attempts,"
            " next_attempt_at, received_at, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    store = await SqliteStore.open(str(path))
    try:
        for key in ("om_done", "om_open", "om_dead"):
            fresh = await store.accept_event(
                dedupe_key=f"message:{key}",
                ordering_key="oc_a",
                payload="{}",
                now=NOW,
                dedupe_until=NOW + DAY,
            )
            assert not fresh, key  # every key is still remembered
        [item] = await store.claim_events(now=NOW, limit=8)
        assert item.dedupe_key == "message:om_open"
        [(dead, reason)] = await store.dead_events()
        assert (dead.dedupe_key, reason) == ("message:om_dead", "boom")
    finally:
        await store.close()


# --- no work where none is needed -------------------------------------------------------------------


def ignored(world: Harness) -> float | None:
    return world.runtime.metrics.registry.get_sample_value("invite_bot_events_ignored_total")


async def test_group_chatter_is_acknowledged_without_entering_the_inbox(tmp_path: Path) -> None:
    world = await open_harness(tmp_path)
    try:
        await world.start_bot(start_workers=False)  # nothing is handled: what is queued stays visible
        chatter = [
            await world.emulator.say(ALICE, TEAM, f"lunch at {n}?", mention_bot=False) for n in range(5)
        ]
        assert [pushed.status for pushed in chatter] == [200] * 5
        assert (await world.runtime.store.inbox_stats()).pending == 0
        assert ignored(world) == 5

        await world.emulator.say(ALICE, TEAM, "/help", mention_bot=False)  # a command word
        await world.emulator.say(ALICE, TEAM, "what can you do?")  # the bot mentioned
        await world.emulator.say(ALICE, ALICE_DM, "hello", mention_bot=False)  # a direct chat
        assert (await world.runtime.store.inbox_stats()).pending == 3
        assert ignored(world) == 5
    finally:
        await world.close()


async def test_ignored_chatter_is_never_answered(tmp_path: Path) -> None:
    world = await open_harness(tmp_path)
    try:
        await world.start_bot()
        await world.emulator.say(ALICE, TEAM, "see you at 3", mention_bot=False)
        await world.emulator.say(ALICE, TEAM, "/help", mention_bot=False)
        [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM, timeout=10)
        assert "how to use" in reply.content["header"]["title"]["content"]
        await asyncio.sleep(0.3)
        assert len([m for m in world.emulator.messages if m.chat_id == TEAM]) == 1
    finally:
        await world.close()
