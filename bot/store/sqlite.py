"""The embedded store: one SQLite file in WAL mode through aiosqlite.

One connection serves the process. aiosqlite runs its statements one at a time on its own thread, but
the statements of two coroutines could still interleave inside one transaction, so every multi-statement
write holds `_write_lock`. The embedded store is meant for one bot process; a second process sharing the
file would be safe for the key-value state (SQLite locks) but would compete for inbox claims.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import aiosqlite

from bot.store.base import InboxItem, InboxStats, StoredValue

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dedupe (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_expiry ON dedupe (expires_at);

CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT NOT NULL,
    ordering_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    received_at REAL NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS inbox_due ON inbox (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS inbox_order ON inbox (ordering_key, id);

CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    version INTEGER NOT NULL,
    expires_at REAL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
"""

# The head of each ordering key: an event is claimable only when no older event of the same chat is
# still pending or running. Dead events do not block their chat.
_CLAIMABLE = """
SELECT id, dedupe_key, ordering_key, payload, attempts, received_at FROM inbox AS i
WHERE i.state = 'pending' AND i.next_attempt_at <= ?
  AND NOT EXISTS (
    SELECT 1 FROM inbox AS j
    WHERE j.ordering_key = i.ordering_key AND j.id < i.id AND j.state IN ('pending', 'running')
  )
ORDER BY i.id LIMIT ?
"""


P = ParamSpec("P")
T = TypeVar("T")


def _atomic(
    method: Callable[Concatenate[SqliteStore, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[SqliteStore, P], Coroutine[Any, Any, T]]:
    """Let a write finish even if its caller is cancelled (say, by a shutdown deadline).

    A cancellation landing between BEGIN and COMMIT would otherwise leave the shared connection inside
    an open transaction, and every later write would fail.
    """

    async def shielded(self: SqliteStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.shield(method(self, *args, **kwargs))

    return shielded


class SqliteStore:
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Owner-only from the first byte: the file will hold (encrypted) user tokens.
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        connection = await aiosqlite.connect(path, isolation_level=None)
        await connection.execute("PRAGMA journal_mode=WAL")
        # FULL: an event we acknowledged to Feishu must survive a power cut, not only a process crash.
        await connection.execute("PRAGMA synchronous=FULL")
        await connection.execute("PRAGMA busy_timeout=5000")
        await connection.executescript(_SCHEMA)
        return cls(connection)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    # --- inbox ---------------------------------------------------------------------------------------

    @_atomic
    async def accept_event(
        self, *, dedupe_key: str, ordering_key: str, payload: str, now: float, dedupe_until: float
    ) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT INTO dedupe (key, expires_at) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at"
                " WHERE dedupe.expires_at <= ?",
                (dedupe_key, dedupe_until, now),
            )
            if cursor.rowcount == 0:
                return False
            await db.execute(
                "INSERT INTO inbox (dedupe_key, ordering_key, payload, state, next_attempt_at, received_at)"
                " VALUES (?, ?, ?, 'pending', ?, ?)",
                (dedupe_key, ordering_key, payload, now, now),
            )
            return True

    @_atomic
    async def claim_events(self, *, now: float, limit: int) -> list[InboxItem]:
        async with self._transaction() as db:
            rows = list(await db.execute_fetchall(_CLAIMABLE, (now, limit)))
            if rows:
                marks = ",".join("?" * len(rows))
                await db.execute(
                    f"UPDATE inbox SET state = 'running', attempts = attempts + 1 WHERE id IN ({marks})",  # noqa: S608
                    [row[0] for row in rows],
                )
        return [
            InboxItem(
                id=row[0],
                dedupe_key=row[1],
                ordering_key=row[2],
                payload=row[3],
                attempts=row[4] + 1,
                received_at=row[5],
            )
            for row in rows
        ]

    @_atomic
    async def complete_event(self, item_id: int) -> None:
        # The dedupe key outlives the row, so a late redelivery is still recognised.
        async with self._transaction() as db:
            await db.execute("DELETE FROM inbox WHERE id = ?", (item_id,))

    @_atomic
    async def retry_event(self, item_id: int, *, error: str, next_attempt_at: float) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE inbox SET state = 'pending', next_attempt_at = ?, last_error = ? WHERE id = ?",
                (next_attempt_at, error, item_id),
            )

    @_atomic
    async def bury_event(self, item_id: int, *, error: str, now: float) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE inbox SET state = 'dead', next_attempt_at = ?, last_error = ? WHERE id = ?",
                (now, error, item_id),
            )

    @_atomic
    async def release_claims(self) -> int:
        async with self._transaction() as db:
            cursor = await db.execute("UPDATE inbox SET state = 'pending' WHERE state = 'running'")
            return cursor.rowcount

    async def next_due_at(self, *, after: float) -> float | None:
        rows = list(
            await self._db.execute_fetchall(
                "SELECT MIN(next_attempt_at) FROM inbox WHERE state = 'pending' AND next_attempt_at > ?",
                (after,),
            )
        )
        value = rows[0][0] if rows else None
        return float(value) if value is not None else None

    async def inbox_stats(self) -> InboxStats:
        rows = await self._db.execute_fetchall("SELECT state, COUNT(*) FROM inbox GROUP BY state")
        counts = {str(state): int(count) for state, count in rows}
        oldest = list(
            await self._db.execute_fetchall("SELECT MIN(received_at) FROM inbox WHERE state != 'dead'")
        )
        return InboxStats(
            pending=counts.get("pending", 0),
            running=counts.get("running", 0),
            dead=counts.get("dead", 0),
            oldest_received_at=oldest[0][0] if oldest and oldest[0][0] is not None else None,
        )

    async def dead_events(self) -> list[tuple[InboxItem, str]]:
        rows = await self._db.execute_fetchall(
            "SELECT id, dedupe_key, ordering_key, payload, attempts, received_at, last_error"
            " FROM inbox WHERE state = 'dead' ORDER BY id"
        )
        return [(InboxItem(*row[:6]), str(row[6])) for row in rows]

    @_atomic
    async def purge_expired(self, *, now: float) -> int:
        async with self._transaction() as db:
            dedupe = await db.execute("DELETE FROM dedupe WHERE expires_at <= ?", (now,))
            kv = await db.execute("DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
            return dedupe.rowcount + kv.rowcount

    # --- key-value ------------------------------------------------------------------------------------

    async def get(self, namespace: str, key: str, *, now: float) -> StoredValue | None:
        rows = list(
            await self._db.execute_fetchall(
                "SELECT value, version, expires_at FROM kv WHERE namespace = ? AND key = ?"
                " AND (expires_at IS NULL OR expires_at > ?)",
                (namespace, key, now),
            )
        )
        if not rows:
            return None
        value, version, expires_at = rows[0]
        return StoredValue(value=bytes(value), version=int(version), expires_at=expires_at)

    @_atomic
    async def put(self, namespace: str, key: str, value: bytes, *, expires_at: float | None) -> int:
        async with self._transaction() as db:
            rows = list(
                await db.execute_fetchall(
                    "INSERT INTO kv (namespace, key, value, version, expires_at) VALUES (?, ?, ?, 1, ?)"
                    " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,"
                    " version = kv.version + 1, expires_at = excluded.expires_at RETURNING version",
                    (namespace, key, value, expires_at),
                )
            )
            return int(rows[0][0])

    @_atomic
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
        async with self._transaction() as db:
            rows = list(
                await db.execute_fetchall(
                    "SELECT version, expires_at FROM kv WHERE namespace = ? AND key = ?", (namespace, key)
                )
            )
            live = bool(rows) and (rows[0][1] is None or rows[0][1] > now)
            current = int(rows[0][0]) if live else None
            if current != expected_version:
                return False
            # Versions keep counting through expiry so an old version number can never match again.
            next_version = int(rows[0][0]) + 1 if rows else 1
            await db.execute(
                "INSERT OR REPLACE INTO kv (namespace, key, value, version, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (namespace, key, value, next_version, expires_at),
            )
            return True

    @_atomic
    async def take(self, namespace: str, key: str, *, now: float) -> StoredValue | None:
        async with self._transaction() as db:
            rows = list(
                await db.execute_fetchall(
                    "DELETE FROM kv WHERE namespace = ? AND key = ? RETURNING value, version, expires_at",
                    (namespace, key),
                )
            )
        if not rows:
            return None
        value, version, expires_at = rows[0]
        if expires_at is not None and expires_at <= now:
            return None
        return StoredValue(value=bytes(value), version=int(version), expires_at=expires_at)

    @_atomic
    async def delete(self, namespace: str, key: str) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key))
            return cursor.rowcount > 0

    async def close(self) -> None:
        async with self._write_lock:  # after any write still finishing
            await self._db.close()
