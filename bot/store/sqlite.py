"""The embedded store: one SQLite file in WAL mode through aiosqlite.

Every write is a single SQL statement, so each one is atomic on its own (autocommit) and costs one trip
to aiosqlite's thread: no transaction spans an `await`, so no coroutine can interleave with another's
half-done write and a cancelled caller cannot leave a transaction open. The embedded store is meant for
one bot process; a second process sharing the file is safe for the key-value state (SQLite's own locks
and the compare-and-set statements) but would compete for inbox claims.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiosqlite

from bot.store.base import InboxItem, InboxStats, StoredValue

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- One row per delivery key; the row outlives its handling ('done', payload dropped) until
    -- dedupe_until, so a late redelivery still finds it and is dropped.
    dedupe_key TEXT NOT NULL UNIQUE,
    dedupe_until REAL NOT NULL,
    ordering_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    received_at REAL NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS inbox_due ON inbox (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS inbox_order ON inbox (ordering_key, id);
CREATE INDEX IF NOT EXISTS inbox_expiry ON inbox (dedupe_until);

CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    version INTEGER NOT NULL,
    expires_at REAL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
"""

_ACCEPT = """
INSERT INTO inbox (dedupe_key, dedupe_until, ordering_key, payload, state, attempts, next_attempt_at,
                   received_at, last_error)
VALUES (:key, :until, :ordering_key, :payload, 'pending', 0, :now, :now, NULL)
ON CONFLICT (dedupe_key) DO UPDATE SET
    dedupe_until = excluded.dedupe_until, ordering_key = excluded.ordering_key,
    payload = excluded.payload, state = 'pending', attempts = 0,
    next_attempt_at = excluded.next_attempt_at, received_at = excluded.received_at, last_error = NULL
-- Only a key whose memory has lapsed is taken again; a live key means "duplicate".
WHERE inbox.dedupe_until <= :now AND inbox.state IN ('done', 'dead')
"""

# Claim the head of each ordering key: an event is claimable only when no older event of the same
# chat is still pending or running. Dead and done events do not block their chat.
_CLAIM = """
UPDATE inbox SET state = 'running', attempts = attempts + 1
WHERE id IN (
    SELECT id FROM inbox AS i
    WHERE i.state = 'pending' AND i.next_attempt_at <= :now
      AND NOT EXISTS (
        SELECT 1 FROM inbox AS j
        WHERE j.ordering_key = i.ordering_key AND j.id < i.id AND j.state IN ('pending', 'running')
      )
    ORDER BY i.id LIMIT :limit
)
RETURNING id, dedupe_key, ordering_key, payload, attempts, received_at
"""

# Dead events are kept this long past their dedupe window for an operator to read, then forgotten.
_DEAD_RETENTION_SECONDS = 7 * 24 * 3600.0


class SqliteStore:
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Owner-only from the first byte: the file holds (sealed) user tokens.
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        connection = await aiosqlite.connect(path, isolation_level=None)
        await connection.execute("PRAGMA journal_mode=WAL")
        # FULL: an event we acknowledged to Feishu must survive a power cut, not only a process crash.
        await connection.execute("PRAGMA synchronous=FULL")
        await connection.execute("PRAGMA busy_timeout=5000")
        await connection.executescript(_SCHEMA)
        return cls(connection)

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
        return await self._one(_ACCEPT, {**values, "now": now}) == 1

    async def claim_events(self, *, now: float, limit: int) -> list[InboxItem]:
        rows = await self._rows(_CLAIM, {"now": now, "limit": limit})
        items = [_item(row) for row in rows]
        return sorted(items, key=lambda item: item.id)  # RETURNING promises no order

    async def complete_event(self, item_id: int) -> None:
        # The payload goes; the row stays until dedupe_until so a late redelivery is recognised.
        await self._one(
            "UPDATE inbox SET state = 'done', payload = '', last_error = NULL WHERE id = ?", (item_id,)
        )

    async def retry_event(self, item_id: int, *, error: str, next_attempt_at: float) -> None:
        await self._one(
            "UPDATE inbox SET state = 'pending', next_attempt_at = ?, last_error = ? WHERE id = ?",
            (next_attempt_at, error, item_id),
        )

    async def bury_event(self, item_id: int, *, error: str, now: float) -> None:
        await self._one(
            "UPDATE inbox SET state = 'dead', next_attempt_at = ?, last_error = ? WHERE id = ?",
            (now, error, item_id),
        )

    async def release_claims(self) -> int:
        return await self._one("UPDATE inbox SET state = 'pending' WHERE state = 'running'")

    async def next_due_at(self, *, after: float) -> float | None:
        rows = await self._rows(
            "SELECT MIN(next_attempt_at) FROM inbox WHERE state = 'pending' AND next_attempt_at > ?", (after,)
        )
        value = rows[0][0] if rows else None
        return None if value is None else float(value)

    async def inbox_stats(self) -> InboxStats:
        rows = await self._rows(
            "SELECT state, COUNT(*), MIN(received_at) FROM inbox WHERE state != 'done' GROUP BY state"
        )
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
            " FROM inbox WHERE state = 'dead' ORDER BY id"
        )
        return [
            (
                _item(row),
                str(row[6]),
            )
            for row in rows
        ]

    async def purge_expired(self, *, now: float) -> int:
        done = await self._one("DELETE FROM inbox WHERE state = 'done' AND dedupe_until <= ?", (now,))
        dead = await self._one(
            "DELETE FROM inbox WHERE state = 'dead' AND dedupe_until <= ?", (now - _DEAD_RETENTION_SECONDS,)
        )
        kv = await self._one("DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        return done + dead + kv

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
        await self._db.close()


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
