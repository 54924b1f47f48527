"""The shared store: PostgreSQL through asyncpg, for several bot processes (replicas) at once.

The same contract as the SQLite store (tests/test_store_contract.py runs one suite over both), built
for concurrency between processes:

- Deduplication is one statement: remembering the delivery key and queueing the event happen together,
  and two replicas that receive the same delivery at once serialise on the key's unique index, so
  exactly one of them queues it.
- A claim takes rows `FOR UPDATE SKIP LOCKED`: two replicas claiming at once never take the same event,
  and neither waits for the other. A claim carries its holder and a lease; a holder that stops renewing
  (killed, frozen, cut off) loses its events to whichever replica claims next.
- Acknowledgements have a pool of their own, so an ack never waits for a connection behind the workers.
- The schema is versioned; migrations run at start under an advisory lock, so replicas that start
  together apply each one exactly once.

Every statement is a single round trip and its own transaction; none spans an await of ours.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import asyncpg

from bot.store.base import CLAIM_LEASE_SECONDS, InboxItem, InboxStats, StoredValue

# pg_advisory_lock's key for schema changes: any constant; this one spells "invitebt" in ASCII.
_MIGRATION_LOCK = 0x696E76697465_6274

# Each entry is one schema version, applied in order, once, inside one transaction.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE delivery (
        dedupe_key text PRIMARY KEY,
        dedupe_until double precision NOT NULL
    );
    CREATE INDEX delivery_expiry ON delivery (dedupe_until);

    CREATE TABLE queue (
        id bigserial PRIMARY KEY,
        dedupe_key text NOT NULL UNIQUE,
        dedupe_until double precision NOT NULL,
        ordering_key text NOT NULL,
        payload text NOT NULL,
        state text NOT NULL CHECK (state IN ('pending', 'running', 'dead')),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at double precision NOT NULL,
        received_at double precision NOT NULL,
        last_error text,
        owner text,
        lease_until double precision NOT NULL DEFAULT 0
    );
    CREATE INDEX queue_open ON queue (ordering_key, id) WHERE state IN ('pending', 'running');
    CREATE INDEX queue_due ON queue (next_attempt_at) WHERE state = 'pending';
    CREATE INDEX queue_leases ON queue (lease_until) WHERE state = 'running';
    CREATE INDEX queue_dead ON queue (dedupe_until) WHERE state = 'dead';

    CREATE TABLE kv (
        namespace text NOT NULL,
        key text NOT NULL,
        value bytea NOT NULL,
        version bigint NOT NULL,
        expires_at double precision,
        PRIMARY KEY (namespace, key)
    );
    CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
    """,
    # 2: the Open API calls of every replica, for limits that hold across processes. Time is the
    # server's, so replicas whose clocks differ still count in one timeline.
    """
    CREATE TABLE rate_call (
        key text NOT NULL,
        at double precision NOT NULL
    );
    CREATE INDEX rate_call_window ON rate_call (key, at);

    CREATE FUNCTION invite_bot_admit(p_key text, p_counts integer[], p_periods double precision[])
    RETURNS double precision LANGUAGE plpgsql AS $$
    DECLARE
        now_ double precision := extract(epoch FROM clock_timestamp());
        wait double precision := 0;
        in_window integer;
        ages_out double precision;
    BEGIN
        -- One admission per key at a time, across every replica; held until this statement commits.
        PERFORM pg_advisory_xact_lock(hashtextextended('invite_bot_rate:' || p_key, 0));
        FOR i IN 1 .. coalesce(array_length(p_counts, 1), 0) LOOP
            SELECT count(*) INTO in_window FROM rate_call WHERE key = p_key AND at > now_ - p_periods[i];
            IF in_window >= p_counts[i] THEN
                -- The call whose ageing out makes room: the window's (in_window - count + 1)-th oldest.
                SELECT at INTO ages_out FROM rate_call WHERE key = p_key AND at > now_ - p_periods[i]
                    ORDER BY at OFFSET in_window - p_counts[i] LIMIT 1;
                wait := greatest(wait, ages_out + p_periods[i] - now_);
            END IF;
        END LOOP;
        IF wait > 0 THEN
            RETURN wait;
        END IF;
        INSERT INTO rate_call (key, at) VALUES (p_key, now_);
        RETURN 0;
    END $$;
    """,
)

# A key is new unless it is remembered and live. Remembering it and queueing the event are one
# statement; a dead event whose key lapsed is reopened in place, an open one never is.
_ACCEPT = """
WITH remembered AS (
    INSERT INTO delivery (dedupe_key, dedupe_until) VALUES ($1, $2)
    ON CONFLICT (dedupe_key) DO UPDATE SET dedupe_until = EXCLUDED.dedupe_until
    WHERE delivery.dedupe_until <= $5
    RETURNING 1
)
INSERT INTO queue (dedupe_key, dedupe_until, ordering_key, payload, state, attempts, next_attempt_at,
                   received_at)
SELECT $1, $2, $3, $4, 'pending', 0, $5, $5 WHERE EXISTS (SELECT 1 FROM remembered)
ON CONFLICT (dedupe_key) DO UPDATE SET
    dedupe_until = EXCLUDED.dedupe_until, ordering_key = EXCLUDED.ordering_key, payload = EXCLUDED.payload,
    state = 'pending', attempts = 0, next_attempt_at = EXCLUDED.next_attempt_at,
    received_at = EXCLUDED.received_at, last_error = NULL, owner = NULL, lease_until = 0
WHERE queue.state = 'dead'
RETURNING id
"""

# The head of each chat that is due, or whose claim lapsed; rows another replica is claiming right now
# are skipped, not waited for. An event behind an open one of its chat is never a candidate, so order
# per chat holds across replicas.
_CLAIM = """
WITH candidates AS (
    SELECT i.id FROM queue AS i
    WHERE ((i.state = 'pending' AND i.next_attempt_at <= $1) OR (i.state = 'running' AND i.lease_until <= $1))
      AND NOT EXISTS (
          SELECT 1 FROM queue AS j
          WHERE j.ordering_key = i.ordering_key AND j.id < i.id AND j.state IN ('pending', 'running')
      )
    ORDER BY i.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE queue AS q SET state = 'running', attempts = q.attempts + 1, owner = $3, lease_until = $4
FROM candidates WHERE q.id = candidates.id
RETURNING q.id, q.dedupe_key, q.ordering_key, q.payload, q.attempts, q.received_at
"""

_NEXT_DUE = """
SELECT LEAST(
    (SELECT MIN(next_attempt_at) FROM queue WHERE state = 'pending' AND next_attempt_at > $1),
    (SELECT MIN(lease_until) FROM queue WHERE state = 'running' AND owner IS DISTINCT FROM $2
        AND lease_until > $1)
)
"""

# Expiry deletes this many rows per statement; replicas purging at once skip each other's rows.
PURGE_BATCH = 500
_DEAD_RETENTION_SECONDS = 7 * 24 * 3600.0
# (statement, how long past its time a row is kept): $1 the cut-off, $2 the batch.
_PURGES = (
    (
        "DELETE FROM delivery WHERE dedupe_key IN (SELECT dedupe_key FROM delivery WHERE dedupe_until <= $1"
        " LIMIT $2 FOR UPDATE SKIP LOCKED)",
        0.0,
    ),
    (
        "DELETE FROM queue WHERE id IN (SELECT id FROM queue WHERE state = 'dead' AND dedupe_until <= $1"
        " LIMIT $2 FOR UPDATE SKIP LOCKED)",
        _DEAD_RETENTION_SECONDS,
    ),
    (
        "DELETE FROM kv WHERE (namespace, key) IN (SELECT namespace, key FROM kv WHERE expires_at IS NOT NULL"
        " AND expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        0.0,
    ),
)
# Calls older than every window (a minute, with slack) no longer count for anything. Server time.
_FORGET_CALLS = (
    "DELETE FROM rate_call WHERE ctid IN (SELECT ctid FROM rate_call"
    " WHERE at < extract(epoch FROM clock_timestamp()) - 120 LIMIT $1)"
)

# Connecting gives up well inside Feishu's 3-second deadline, so an unreachable server turns into a 503
# (Feishu retries) rather than a request Feishu abandons.
_CONNECT_TIMEOUT_SECONDS = 2.0
_COMMAND_TIMEOUT_SECONDS = 10.0


class PostgresStore:
    def __init__(
        self, pool: asyncpg.Pool, intake: asyncpg.Pool, *, lease_seconds: float = CLAIM_LEASE_SECONDS
    ) -> None:
        self._pool = pool
        self._intake = intake
        self._owner = secrets.token_hex(8)
        self._lease = lease_seconds

    @classmethod
    async def open(cls, url: str, *, lease_seconds: float = CLAIM_LEASE_SECONDS) -> PostgresStore:
        """Connect (two pools: acks, and everything else) and bring the schema up to date."""
        options: dict[str, Any] = {
            "timeout": _CONNECT_TIMEOUT_SECONDS,
            "command_timeout": _COMMAND_TIMEOUT_SECONDS,
        }
        pool = await asyncpg.create_pool(url, min_size=1, max_size=10, **options)
        try:
            await migrate(pool)
            intake = await asyncpg.create_pool(url, min_size=1, max_size=4, **options)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, intake, lease_seconds=lease_seconds)

    async def _status(self, sql: str, *arguments: object) -> int:
        """Run one statement; return how many rows it changed (from the command tag, "UPDATE 3")."""
        tag = await self._pool.execute(sql, *arguments)
        return int(str(tag).rsplit(" ", 1)[-1])

    # --- inbox ---------------------------------------------------------------------------------------

    async def accept_event(
        self, *, dedupe_key: str, ordering_key: str, payload: str, now: float, dedupe_until: float
    ) -> bool:
        row = await self._intake.fetchrow(_ACCEPT, dedupe_key, dedupe_until, ordering_key, payload, now)
        return row is not None

    async def claim_events(self, *, now: float, limit: int) -> list[InboxItem]:
        rows = await self._pool.fetch(_CLAIM, now, limit, self._owner, now + self._lease)
        return sorted((_item(row) for row in rows), key=lambda item: item.id)

    async def renew_claims(self, item_ids: Sequence[int], *, now: float) -> list[int]:
        if not item_ids:
            return []
        rows = await self._pool.fetch(
            "UPDATE queue SET lease_until = $1 WHERE owner = $2 AND state = 'running'"
            " AND id = ANY($3::bigint[]) RETURNING id",
            now + self._lease,
            self._owner,
            list(item_ids),
        )
        renewed = {int(row["id"]) for row in rows}
        return [item_id for item_id in item_ids if item_id not in renewed]

    async def complete_event(self, item_id: int) -> None:
        await self._status(
            "DELETE FROM queue WHERE id = $1 AND owner = $2 AND state = 'running'", item_id, self._owner
        )

    async def retry_event(self, item_id: int, *, error: str, next_attempt_at: float) -> None:
        await self._status(
            "UPDATE queue SET state = 'pending', next_attempt_at = $1, last_error = $2, owner = NULL"
            " WHERE id = $3 AND owner = $4 AND state = 'running'",
            next_attempt_at,
            error,
            item_id,
            self._owner,
        )

    async def postpone_event(self, item_id: int, *, next_attempt_at: float) -> None:
        await self._status(
            "UPDATE queue SET state = 'pending', next_attempt_at = $1, attempts = 0, last_error = NULL,"
            " owner = NULL WHERE id = $2 AND owner = $3 AND state = 'running'",
            next_attempt_at,
            item_id,
            self._owner,
        )

    async def bury_event(self, item_id: int, *, error: str, now: float) -> None:
        await self._status(
            "UPDATE queue SET state = 'dead', next_attempt_at = $1, last_error = $2, owner = NULL"
            " WHERE id = $3 AND owner = $4 AND state = 'running'",
            now,
            error,
            item_id,
            self._owner,
        )

    async def release_claims(self) -> int:
        return await self._status(
            "UPDATE queue SET state = 'pending', owner = NULL WHERE state = 'running' AND owner = $1",
            self._owner,
        )

    async def next_due_at(self, *, after: float) -> float | None:
        value = await self._pool.fetchval(_NEXT_DUE, after, self._owner)
        return None if value is None else float(value)

    async def inbox_stats(self) -> InboxStats:
        rows = await self._pool.fetch("SELECT state, COUNT(*), MIN(received_at) FROM queue GROUP BY state")
        counts = {str(row[0]): int(row[1]) for row in rows}
        unfinished = [float(row[2]) for row in rows if row[0] != "dead" and row[2] is not None]
        return InboxStats(
            pending=counts.get("pending", 0),
            running=counts.get("running", 0),
            dead=counts.get("dead", 0),
            oldest_received_at=min(unfinished) if unfinished else None,
        )

    async def dead_events(self) -> list[tuple[InboxItem, str]]:
        rows = await self._pool.fetch(
            "SELECT id, dedupe_key, ordering_key, payload, attempts, received_at, last_error"
            " FROM queue WHERE state = 'dead' ORDER BY id"
        )
        return [(_item(row), str(row["last_error"])) for row in rows]

    async def purge_expired(self, *, now: float) -> int:
        forgotten = 0
        for statement, kept_for in _PURGES:
            while True:
                deleted = await self._status(statement, now - kept_for, PURGE_BATCH)
                forgotten += deleted
                if deleted < PURGE_BATCH:
                    break
        while (deleted := await self._status(_FORGET_CALLS, PURGE_BATCH)) == PURGE_BATCH:
            pass
        return forgotten

    # --- shared rate limits -------------------------------------------------------------------------

    async def admit_call(self, key: str, windows: Sequence[tuple[int, float]]) -> float:
        wait = await self._pool.fetchval(
            "SELECT invite_bot_admit($1, $2::integer[], $3::double precision[])",
            key,
            [count for count, _ in windows],
            [seconds for _, seconds in windows],
        )
        return float(wait)

    # --- key-value ------------------------------------------------------------------------------------

    async def get(self, namespace: str, key: str, *, now: float) -> StoredValue | None:
        row = await self._pool.fetchrow(
            "SELECT value, version, expires_at FROM kv WHERE namespace = $1 AND key = $2"
            " AND (expires_at IS NULL OR expires_at > $3)",
            namespace,
            key,
            now,
        )
        return None if row is None else _stored(row)

    async def put(self, namespace: str, key: str, value: bytes, *, expires_at: float | None) -> int:
        version = await self._pool.fetchval(
            "INSERT INTO kv (namespace, key, value, version, expires_at) VALUES ($1, $2, $3, 1, $4)"
            " ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value,"
            " version = kv.version + 1, expires_at = EXCLUDED.expires_at RETURNING version",
            namespace,
            key,
            value,
            expires_at,
        )
        return int(version)

    async def compare_and_set(
        self,
        namespace: str,
        key: str,
        value: bytes,
        *,
        expected_version: int | None,
        expires_at: float | None,
        now: float,
    ) -> bool:
        if expected_version is None:
            # Only if absent or expired; versions keep counting through expiry (see the SQLite store).
            changed = await self._status(
                "INSERT INTO kv (namespace, key, value, version, expires_at) VALUES ($1, $2, $3, 1, $4)"
                " ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value,"
                " version = kv.version + 1, expires_at = EXCLUDED.expires_at"
                " WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= $5",
                namespace,
                key,
                value,
                expires_at,
                now,
            )
        else:
            changed = await self._status(
                "UPDATE kv SET value = $1, version = version + 1, expires_at = $2 WHERE namespace = $3"
                " AND key = $4 AND version = $5 AND (expires_at IS NULL OR expires_at > $6)",
                value,
                expires_at,
                namespace,
                key,
                expected_version,
                now,
            )
        return changed == 1

    async def take(self, namespace: str, key: str, *, now: float) -> StoredValue | None:
        row = await self._pool.fetchrow(
            "DELETE FROM kv WHERE namespace = $1 AND key = $2 RETURNING value, version, expires_at",
            namespace,
            key,
        )
        if row is None:
            return None
        stored = _stored(row)
        return None if stored.expires_at is not None and stored.expires_at <= now else stored

    async def delete(self, namespace: str, key: str) -> bool:
        return await self._status("DELETE FROM kv WHERE namespace = $1 AND key = $2", namespace, key) > 0

    async def delete_if(self, namespace: str, key: str, value: bytes) -> bool:
        deleted = await self._status(
            "DELETE FROM kv WHERE namespace = $1 AND key = $2 AND value = $3", namespace, key, value
        )
        return deleted > 0

    async def close(self) -> None:
        await self._intake.close()
        await self._pool.close()


async def migrate(pool: asyncpg.Pool) -> int:
    """Apply the migrations this database has not seen; return how many. Replicas starting together
    queue on the advisory lock, and each finds the work done by the first."""
    applied = 0
    async with pool.acquire() as connection:
        await connection.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS invite_bot_schema ("
                " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            current = int(
                await connection.fetchval("SELECT COALESCE(MAX(version), 0) FROM invite_bot_schema")
            )
            for version, script in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                async with connection.transaction():
                    await connection.execute(script)
                    await connection.execute("INSERT INTO invite_bot_schema (version) VALUES ($1)", version)
                applied += 1
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied


def _item(row: asyncpg.Record) -> InboxItem:
    return InboxItem(
        id=int(row["id"]),
        dedupe_key=str(row["dedupe_key"]),
        ordering_key=str(row["ordering_key"]),
        payload=str(row["payload"]),
        attempts=int(row["attempts"]),
        received_at=float(row["received_at"]),
    )


def _stored(row: asyncpg.Record) -> StoredValue:
    value = row["value"]
    assert isinstance(value, bytes)
    expires_at = row["expires_at"]
    return StoredValue(
        value=value,
        version=int(row["version"]),
        expires_at=None if expires_at is None else float(expires_at),
    )
