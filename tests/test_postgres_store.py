"""What only the PostgreSQL store has: migrations shared by replicas, and costs read from the server's plans.

The cost of an ack and of a claim is measured in buffers (8 KiB pages) the server touched, from
`EXPLAIN (ANALYZE, BUFFERS)`: the same on a busy CI machine as on an idle one. Reading remembered keys
would touch hundreds of pages with 100,000 of them; a B-tree lookup touches a handful.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from bot.feishu.ratelimit import Limit, SharedRateLimiter
from bot.store.postgres import _ACCEPT, _CLAIM, MIGRATIONS, PostgresStore
from tests.harness import postgres_schema

NOW = 1_800_000_000.0
HISTORY = 100_000


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with postgres_schema() as schema_url:
        yield schema_url


async def test_replicas_starting_together_apply_each_migration_once(url: str) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(url) for _ in range(3)))
    try:
        connection = await asyncpg.connect(url)
        try:
            versions = [row[0] for row in await connection.fetch("SELECT version FROM invite_bot_schema")]
        finally:
            await connection.close()
        assert versions == list(range(1, len(MIGRATIONS) + 1))
    finally:
        for store in stores:
            await store.close()


def _buffers(plan: dict[str, Any]) -> int:
    """Pages the statement touched: its top node counts its children's as well."""
    top = plan["Plan"]
    return int(top.get("Shared Hit Blocks", 0)) + int(top.get("Shared Read Blocks", 0))


def _relations(node: dict[str, Any]) -> set[str]:
    found = {str(node["Relation Name"])} if "Relation Name" in node else set()
    for child in node.get("Plans", []):
        found |= _relations(child)
    return found


async def _explain(connection: asyncpg.Connection, sql: str, *arguments: object) -> dict[str, Any]:
    """Run the statement under EXPLAIN ANALYZE inside a transaction that is rolled back."""
    transaction = connection.transaction()
    await transaction.start()
    try:
        raw = await connection.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *arguments)
    finally:
        await transaction.rollback()
    [plan] = json.loads(raw) if isinstance(raw, str) else raw
    return dict(plan)


async def _costs(connection: asyncpg.Connection) -> tuple[int, int, dict[str, Any]]:
    # A rolled-back claim leaves dead row versions behind; vacuum them so each measurement starts alike.
    await connection.execute("VACUUM ANALYZE queue, delivery")
    await _explain(connection, _ACCEPT, "message:om_warm", NOW + 8 * 3600, "chat:oc_1", "{}", NOW)
    accept = await _explain(connection, _ACCEPT, "message:om_new", NOW + 8 * 3600, "chat:oc_1", "{}", NOW)
    claim = await _explain(connection, _CLAIM, NOW, 8, "me", NOW + 20)
    return _buffers(accept), _buffers(claim), claim


async def test_an_ack_and_a_claim_cost_the_same_with_100_000_remembered_keys(url: str) -> None:
    store = await PostgresStore.open(url)
    connection = await asyncpg.connect(url)
    try:
        for n in range(20):  # some open work, as a live bot has
            await store.accept_event(
                dedupe_key=f"message:open{n}",
                ordering_key=f"chat:{n % 5}",
                payload="{}",
                now=NOW,
                dedupe_until=NOW + 8 * 3600,
            )
        ack_empty, claim_empty, _ = await _costs(connection)
        await connection.execute(
            "INSERT INTO delivery (dedupe_key, dedupe_until)"
            " SELECT 'message:om_history' || n, $1 + n FROM generate_series(1, $2) AS n",
            NOW,
            HISTORY,
        )
        ack_full, claim_full, claim_plan = await _costs(connection)
    finally:
        await connection.close()
        await store.close()
    print("buffers (ack, claim):", (ack_empty, claim_empty), "→", (ack_full, claim_full))
    assert "delivery" not in _relations(claim_plan["Plan"])  # the claim never reads the memory
    assert claim_full <= claim_empty + 2
    # One more level in the key's B-tree and its heap page (13 -> 17 here); 100,000 keys span > 500 pages.
    assert ack_full <= ack_empty + 6
    assert ack_full < 30


async def test_replicas_sharing_a_limit_stay_under_it_together(url: str) -> None:
    """Three replicas, each with its own limiter on the shared log, 10 calls each at once: together they
    never exceed the limit (private limiters would let 15 through in the first window)."""
    stores = [await PostgresStore.open(url) for _ in range(3)]
    limits = (Limit(5, 0.5),)
    admitted: list[float] = []

    async def calls(limiter: SharedRateLimiter) -> None:
        for _ in range(10):
            await limiter.acquire("vc.meeting.invite", limits)
            admitted.append(time.monotonic())

    try:
        await asyncio.wait_for(
            asyncio.gather(*(calls(SharedRateLimiter(store)) for store in stores)), timeout=30
        )
    finally:
        for store in stores:
            await store.close()
    admitted.sort()
    busiest = max(sum(1 for other in admitted[i:] if other < stamp + 0.5) for i, stamp in enumerate(admitted))
    assert busiest <= 5
    # As fast as the limit allows, not slower: 30 calls at 5 per 0.5 s (with 5 % slack) take ~2.6 s.
    assert admitted[-1] - admitted[0] < 6.0


async def test_background_calls_of_replicas_take_at_most_half_the_shared_window(url: str) -> None:
    stores = [await PostgresStore.open(url) for _ in range(2)]
    limits = (Limit(10, 30.0),)
    try:
        first, second = (SharedRateLimiter(store) for store in stores)
        taken = [await first.try_acquire("vc.meeting.get", limits) for _ in range(4)]
        taken += [await second.try_acquire("vc.meeting.get", limits) for _ in range(4)]
        assert taken.count(True) == 5  # half of 10, counted over both replicas
        for _ in range(5):  # commands have the other half at once
            assert await second.acquire("vc.meeting.get", limits) == 0.0
    finally:
        for store in stores:
            await store.close()
