"""The embedded store: one SQLite file in WAL mode through aiosqlite.

Every write is a single SQL statement, so each one is atomic on its own (autocommit) and costs one trip
to aiosqlite's thread: no transaction spans an `await`, so no coroutine can interleave with another's
half-done write and a cancelled caller cannot leave a transaction open. The embedded store is meant for
one bot process: opening it frees every claim left by an earlier process on the file (which has
necessarily ended), so a restart resumes at once. Replicas share the PostgreSQL store instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from bot.store.base import CLAIM_LEASE_SECONDS, InboxItem, InboxStats, StoredValue

_SCHEMA = """
-- What must be remembered: every delivery key for its dedupe window (8 h), one small row each. Nothing
-- that takes work reads this table except the ack's one-key lookup and the expiry's small batches.
CREATE TABLE IF NOT EXISTS delivery (
    dedupe_key TEXT PRIMARY KEY,
    dedupe_until REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS delivery_expiry ON delivery (dedupe_until);

-- The work: unfinished events (pending, running) and dead ones kept for an operator. A handled event
-- leaves this table, so taking the next event of a chat costs the same whatever the history.
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT NOT NULL,
    dedupe_until REAL NOT NULL,
    ordering_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    received_at REAL NOT NULL,
    last_error TEXT,
    -- A running event's claim: which store instance holds it, and until when unless renewed.
    owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS queue_key ON queue (dedupe_key);
-- A chat's unfinished events in order: the claim's "is anything older of this chat still open?".
CREATE INDEX IF NOT EXISTS queue_open ON queue (ordering_key, id) WHERE state IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS queue_due ON queue (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS queue_dead ON queue (dedupe_until) WHERE state = 'dead';

-- An event entering the queue (new, or a dead one taken again) remembers its key in the same statement.
-- An upsert, not INSERT OR REPLACE: inside a trigger the outer statement's conflict policy overrides an
-- OR clause, so reopening a dead event whose lapsed key was not purged yet would fail on the key.
DROP TRIGGER IF EXISTS queue_remembers_new;
DROP TRIGGER IF EXISTS queue_remembers_again;
CREATE TRIGGER queue_remembers_new AFTER INSERT ON queue BEGIN
    INSERT INTO delivery (dedupe_key, dedupe_until) VALUES (NEW.dedupe_key, NEW.dedupe_until)
    ON CONFLICT (dedupe_key) DO UPDATE SET dedupe_until = excluded.dedupe_until;
END;
CREATE TRIGGER queue_remembers_again AFTER UPDATE OF dedupe_until ON queue BEGIN
    INSERT INTO delivery (dedupe_key, dedupe_until) VALUES (NEW.dedupe_key, NEW.dedupe_until)
    ON CONFLICT (dedupe_key) DO UPDATE SET dedupe_until = excluded.dedupe_until;
END;

CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    version INTEGER NOT NULL,
    expires_at REAL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
"""

# Claims whose lease ran out: their holder stopped renewing (it died), so they may be taken over.
_LEASE_INDEX = "CREATE INDEX IF NOT EXISTS queue_leases ON queue (lease_until) WHERE state = 'running'"

# Before the queue and the memory were apart, one `inbox` table held both (done rows kept as keys).
_MIGRATE_ONE_TABLE_INBOX = """
BEGIN IMMEDIATE;
INSERT OR REPLACE INTO delivery (dedupe_key, dedupe_until) SELECT dedupe_key, dedupe_until FROM inbox;
INSERT INTO queue (dedupe_key, dedupe_until, ordering_key, payload, state, attempts, next_attempt_at,
                   received_at, last_error)
    SELECT dedupe_key, dedupe_until, ordering_key, payload, state, attempts, next_attempt_at, received_at,
           last_error
    FROM inbox WHERE state != 'done' ORDER BY id;
DROP TABLE inbox;
COMMIT;
"""

# A key is new unless it is remembered and live. A dead event's key whose memory has lapsed is taken
# again (the same queue row, reopened); an open event's key never is.
_ACCEPT = """
INSERT INTO queue (dedupe_key, dedupe_until, ordering_key, payload, state, attempts, next_attempt_at,
                   received_at, last_error)
SELECT :key, :until, :ordering_key, :payload, 'pending', 0, :now, :now, NULL
WHERE NOT EXISTS (SELECT 1 FROM delivery WHERE dedupe_key = :key AND dedupe_until > :now)
ON CONFLICT (dedupe_key) DO UPDATE SET
    dedupe_until = excluded.dedupe_until, ordering_key = excluded.ordering_key,
    payload = excluded.payload, state = 'pending', attempts = 0,
    next_attempt_at = excluded.next_attempt_at, received_at = excluded.received_at, last_error = NULL
WHERE queue.state = 'dead'
"""

# Claim the head of each chat: an event is claimable when it is due (pending) or its claim lapsed
# (running, lease over), and no older event of the same chat is still pending or running. Every lookup
# goes through a partial index over open events only.
_CLAIM = """
UPDATE queue SET state = 'running', attempts = attempts + 1, owner = :owner, lease_until = :lease_until
WHERE id IN (
    SELECT id FROM (
        SELECT id, ordering_key FROM queue INDEXED BY queue_due
        WHERE state = 'pending' AND next_attempt_at <= :now
        UNION ALL
        SELECT id, ordering_key FROM queue INDEXED BY queue_leases
        WHERE state = 'running' AND lease_until <= :now
    ) AS i
    WHERE NOT EXISTS (
        SELECT 1 FROM queue AS j INDEXED BY queue_open
        WHERE j.ordering_key = i.ordering_key AND j.id < i.id AND j.state IN ('pending', 'running')
    )
    ORDER BY i.id LIMIT :limit
)
RETURNING id, dedupe_key, ordering_key, payload, attempts, received_at
"""

# The next retry falling due, or the next claim of another holder lapsing.
_NEXT_DUE = """
SELECT MIN(at) FROM (
    SELECT MIN(next_attempt_at) AS at FROM queue WHERE state = 'pending' AND next_attempt_at > :after
    UNION ALL
    SELECT MIN(lease_until) FROM queue WHERE state = 'running' AND owner != :owner AND lease_until > :after
)
"""

# Expiry deletes this many rows per statement, so no write holds the file for long.
PURGE_BATCH = 500

# Dead events are kept this long past their dedupe window for an operator to read, then forgotten.
_DEAD_RETENTION_SECONDS = 7 * 24 * 3600.0


class SqliteStore:
    """Two connections to one file: `_intake` only ever runs the ack's insert, so an acknowledgement never
    queues behind a worker's claim, completion or purge in aiosqlite's thread (SQLite's write lock is
    held for one short statement at a time, and WAL lets the two proceed side by side otherwise)."""

    def __init__(
        self,
        connection: aiosqlite.Connection,
        intake: aiosqlite.Connection | None = None,
        *,
        lease_seconds: float = CLAIM_LEASE_SECONDS,
    ) -> None:
        self._db = connection
        self._intake = intake or connection
        self._owner = secrets.token_hex(8)
        self._lease = lease_seconds

    @classmethod
    async def open(cls, path: str, *, lease_seconds: float = CLAIM_LEASE_SECONDS) -> SqliteStore:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Owner-only from the first byte: the file holds (sealed) user tokens.
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        connection = await _connect(path)
        await connection.executescript(_SCHEMA)
        old = await connection.execute_fetchall(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inbox'"
        )
        if old:
            await connection.executescript(_MIGRATE_ONE_TABLE_INBOX)
        columns = {row[1] for row in await connection.execute_fetchall("PRAGMA table_info(queue)")}
        if "owner" not in columns:  # a queue from before claims had leases
            await connection.execute("ALTER TABLE queue ADD COLUMN owner TEXT")
            await connection.execute("ALTER TABLE queue ADD COLUMN lease_until REAL NOT NULL DEFAULT 0")
        await connection.execute(_LEASE_INDEX)
        # One process per file: whatever is still claimed was claimed by a process that has ended.
        await connection.execute("UPDATE queue SET state = 'pending', owner = NULL WHERE state = 'running'")
        # A second connection needs a file; ":memory:" would be a second, empty database.
        intake = await _connect(path) if path != ":memory:" else None
        return cls(connection, intake, lease_seconds=lease_seconds)

    async def _one(self, sql: str, parameters: tuple[object, ...] | dict[str, object] = ()) -> int:
        """Run one statement; return how many rows it changed."""
        cursor = await self._db.execute(sql, parameters)
        return cursor.rowcount

    async def _rows(
        self, sql: str, parameters: tuple[object, ...] | dict[str, object] = ()
    ) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self._db.execute_fetchall(sql, parameters)]

    # --- inbox ---------------------------------------------------------------------------------------

    async def accept_event(
        self, *, dedupe_key: str, ordering_key: str, payload: str, now: float, dedupe_until: float
    ) -> bool:
        values = {"key": dedupe_key, "until": dedupe_until, "ordering_key": ordering_key, "payload": payload}
        cursor = await self._intake.execute(_ACCEPT, {**values, "now": now})
        return cursor.rowcount == 1

    async def claim_events(self, *, now: float, limit: int) -> list[InboxItem]:
        parameters = {"now": now, "limit": limit, "owner": self._owner, "lease_until": now + self._lease}
        rows = await self._rows(_CLAIM, parameters)
        items = [_item(row) for row in rows]
        return sorted(items, key=lambda item: item.id)  # RETURNING promises no order

    async def renew_claims(self, item_ids: Sequence[int], *, now: float) -> list[int]:
        if not item_ids:
            return []
        marks = ", ".join("?" * len(item_ids))
        rows = await self._rows(
            f"UPDATE queue SET lease_until = ? WHERE owner = ? AND state = 'running' AND id IN ({marks})"  # noqa: S608 - only placeholders
            " RETURNING id",
            (now + self._lease, self._owner, *item_ids),
        )
        renewed = {int(row[0]) for row in rows}
        return [item_id for item_id in item_ids if item_id not in renewed]

    async def complete_event(self, item_id: int) -> None:
        # The work is done and leaves the queue; its key stays remembered in `delivery` until it lapses.
        # Only the claim's holder may: one that lost its claim to a takeover changes nothing.
        await self._one(
            "DELETE FROM queue WHERE id = ? AND owner = ? AND state = 'running'", (item_id, self._owner)
        )

    async def retry_event(self, item_id: int, *, error: str, next_attempt_at: float) -> None:
        await self._one(
            "UPDATE queue SET state = 'pending', next_attempt_at = ?, last_error = ?, owner = NULL"
            " WHERE id = ? AND owner = ? AND state = 'running'",
            (next_attempt_at, error, item_id, self._owner),
        )

    async def postpone_event(self, item_id: int, *, next_attempt_at: float) -> None:
        await self._one(
            "UPDATE queue SET state = 'pending', next_attempt_at = ?, attempts = 0, last_error = NULL,"
            " owner = NULL WHERE id = ? AND owner = ? AND state = 'running'",
            (next_attempt_at, item_id, self._owner),
        )

    async def bury_event(self, item_id: int, *, error: str, now: float) -> None:
        await self._one(
            "UPDATE queue SET state = 'dead', next_attempt_at = ?, last_error = ?, owner = NULL"
            " WHERE id = ? AND owner = ? AND state = 'running'",
            (now, error, item_id, self._owner),
        )

    async def release_claims(self) -> int:
        return await self._one(
            "UPDATE queue SET state = 'pending', owner = NULL WHERE state = 'running' AND owner = ?",
            (self._owner,),
        )

    async def next_due_at(self, *, after: float) -> float | None:
        rows = await self._rows(_NEXT_DUE, {"after": after, "owner": self._owner})
        value = rows[0][0] if rows else None
        return None if value is None else float(value)

    async def inbox_stats(self) -> InboxStats:
        rows = await self._rows("SELECT state, COUNT(*), MIN(received_at) FROM queue GROUP BY state")
        counts = {str(state): int(count) for state, count, _ in rows}
        unfinished = [float(oldest) for state, _, oldest in rows if state != "dead" and oldest is not None]
        return InboxStats(
            pending=counts.get("pending", 0),
            running=counts.get("running", 0),
            dead=counts.get("dead", 0),
            oldest_received_at=min(unfinished) if unfinished else None,
        )

    async def dead_events(self) -> list[tuple[InboxItem, str]]:
        rows = await self._rows(
            "SELECT id, dedupe_key, ordering_key, payload, attempts, received_at, last_error"
            " FROM queue WHERE state = 'dead' ORDER BY id"
        )
        return [(_item(row), str(row[6])) for row in rows]

    async def purge_expired(self, *, now: float) -> int:
        """Forget in batches of PURGE_BATCH rows, one short statement each, so that acks and claims get
        the file between them however much has lapsed at once."""
        batches = (
            "DELETE FROM delivery WHERE dedupe_key IN"
            " (SELECT dedupe_key FROM delivery WHERE dedupe_until <= :now LIMIT :batch)",
            "DELETE FROM queue WHERE id IN (SELECT id FROM queue WHERE state = 'dead'"
            " AND dedupe_until <= :dead_before LIMIT :batch)",
            "DELETE FROM kv WHERE (namespace, key) IN (SELECT namespace, key FROM kv"
            " WHERE expires_at IS NOT NULL AND expires_at <= :now LIMIT :batch)",
        )
        parameters: dict[str, object] = {
            "now": now,
            "dead_before": now - _DEAD_RETENTION_SECONDS,
            "batch": PURGE_BATCH,
        }
        forgotten = 0
        for statement in batches:
            while True:
                deleted = await self._one(statement, parameters)
                forgotten += deleted
                if deleted < PURGE_BATCH:
                    break
        return forgotten

    # --- key-value ------------------------------------------------------------------------------------

    async def get(self, namespace: str, key: str, *, now: float) -> StoredValue | None:
        rows = await self._rows(
            "SELECT value, version, expires_at FROM kv WHERE namespace = ? AND key = ?"
            " AND (expires_at IS NULL OR expires_at > ?)",
            (namespace, key, now),
        )
        return _stored(rows[0]) if rows else None

    async def put(self, namespace: str, key: str, value: bytes, *, expires_at: float | None) -> int:
        rows = await self._rows(
            "INSERT INTO kv (namespace, key, value, version, expires_at) VALUES (?, ?, ?, 1, ?)"
            " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,"
            " version = kv.version + 1, expires_at = excluded.expires_at RETURNING version",
            (namespace, key, value, expires_at),
        )
        return int(rows[0][0])

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
            # Only if absent or expired. Versions keep counting through expiry, so a version number
            # read before the entry expired can never match the entry that replaces it.
            changed = await self._one(
                "INSERT INTO kv (namespace, key, value, version, expires_at) VALUES (?, ?, ?, 1, ?)"
                " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,"
                " version = kv.version + 1, expires_at = excluded.expires_at"
                " WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ?",
                (namespace, key, value, expires_at, now),
            )
        else:
            changed = await self._one(
                "UPDATE kv SET value = ?, version = version + 1, expires_at = ?"
                " WHERE namespace = ? AND key = ? AND version = ? AND (expires_at IS NULL OR expires_at > ?)",
                (value, expires_at, namespace, key, expected_version, now),
            )
        return changed == 1

    async def take(self, namespace: str, key: str, *, now: float) -> StoredValue | None:
        rows = await self._rows(
            "DELETE FROM kv WHERE namespace = ? AND key = ? RETURNING value, version, expires_at",
            (namespace, key),
        )
        if not rows:
            return None
        stored = _stored(rows[0])
        return None if stored.expires_at is not None and stored.expires_at <= now else stored

    async def delete(self, namespace: str, key: str) -> bool:
        return await self._one("DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key)) > 0

    async def delete_if(self, namespace: str, key: str, value: bytes) -> bool:
        return (
            await self._one(
                "DELETE FROM kv WHERE namespace = ? AND key = ? AND value = ?", (namespace, key, value)
            )
            > 0
        )

    async def close(self) -> None:
        # aiosqlite runs its queue in order, so writes already handed over finish before the close.
        if self._intake is not self._db:
            await self._intake.close()
        await self._db.close()


async def _connect(path: str) -> aiosqlite.Connection:
    connection = await aiosqlite.connect(path, isolation_level=None)
    await connection.execute("PRAGMA journal_mode=WAL")
    # FULL: an event we acknowledged to Feishu must survive a power cut, not only a process crash.
    await connection.execute("PRAGMA synchronous=FULL")
    await connection.execute("PRAGMA busy_timeout=5000")
    return connection


def _stored(row: tuple[Any, ...]) -> StoredValue:
    value, version, expires_at = row
    assert isinstance(value, bytes)
    return StoredValue(
        value=value,
        version=int(version),
        expires_at=None if expires_at is None else float(expires_at),
    )


def _item(row: tuple[Any, ...]) -> InboxItem:
    return InboxItem(
        id=int(row[0]),
        dedupe_key=row[1],
        ordering_key=row[2],
        payload=row[3],
        attempts=int(row[4]),
        received_at=float(row[5]),
    )
