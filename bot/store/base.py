"""The store interface: deduplication keys, the inbox, and versioned key-value state.

Everything is expressed in plain strings, bytes and numbers so a networked backend (PostgreSQL, Redis)
can be added beside SQLite without touching the inbox or the handlers. Time is always passed in by the
caller, so the store holds no clock of its own and tests can move time freely.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# How long a claim holds without renewal. The inbox renews its claims every quarter of this, so a claim
# lapses only when its holder stopped (killed, frozen, cut off): another replica then takes the event over.
CLAIM_LEASE_SECONDS = 20.0


class Postpone(Exception):
    """Raised by a handler whose event should run again in `seconds`: not a failure, a next step."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"again in {seconds:.1f} s")
        self.seconds = seconds


@dataclass(frozen=True)
class InboxItem:
    id: int
    dedupe_key: str
    ordering_key: str
    payload: str
    attempts: int
    received_at: float


@dataclass(frozen=True)
class InboxStats:
    pending: int
    running: int
    dead: int
    oldest_received_at: float | None


@dataclass(frozen=True)
class StoredValue:
    value: bytes
    version: int
    expires_at: float | None


class Store(Protocol):
    # --- inbox -------------------------------------------------------------------------------------
    async def accept_event(
        self, *, dedupe_key: str, ordering_key: str, payload: str, now: float, dedupe_until: float
    ) -> bool:
        """Durably enqueue an event unless its dedupe key is live; False means a duplicate."""
        ...

    async def claim_events(self, *, now: float, limit: int) -> list[InboxItem]:
        """Claim up to `limit` events for this store instance, at most one per ordering key and only the
        oldest open one of each: due pending events, and running ones whose claim lapsed (taken over).
        A claim holds for CLAIM_LEASE_SECONDS unless renewed; no event is claimed by two at once."""
        ...

    async def renew_claims(self, item_ids: Sequence[int], *, now: float) -> list[int]:
        """Extend this instance's claims on `item_ids`; return those it no longer holds (taken over)."""
        ...

    # complete, retry and bury change an event only while this instance holds its claim, so a holder
    # that lost its claim to a takeover cannot undo the new holder's work.
    async def complete_event(self, item_id: int) -> None: ...

    async def retry_event(self, item_id: int, *, error: str, next_attempt_at: float) -> None: ...

    async def postpone_event(self, item_id: int, *, next_attempt_at: float) -> None:
        """Hand an event back to run again at `next_attempt_at`, as a fresh start (attempts reset): the
        handler is not failing, it has more to do later (a meeting watch's next look)."""
        ...

    async def bury_event(self, item_id: int, *, error: str, now: float) -> None:
        """Park an event as dead: kept for inspection, no longer retried, no longer blocking its chat."""
        ...

    async def release_claims(self) -> int:
        """Return this instance's unfinished claims to pending (at stop, after cancelling late work), so
        another process resumes them at once instead of after the lease."""
        ...

    async def next_due_at(self, *, after: float) -> float | None:
        """The earliest moment later than `after` when something becomes claimable: a retry falling due,
        or another holder's claim lapsing. None if neither.

        Events already due but not claimed are waiting behind a running event of their chat; its end
        wakes the dispatcher, so only future times need a timer.
        """
        ...

    async def inbox_stats(self) -> InboxStats: ...

    async def dead_events(self) -> list[tuple[InboxItem, str]]:
        """Dead events with the reason each was parked, oldest first."""
        ...

    async def purge_expired(self, *, now: float) -> int:
        """Forget expired dedupe keys and key-value entries."""
        ...

    # --- key-value state (tokens, OAuth state, pending commands) -----------------------------------
    async def get(self, namespace: str, key: str, *, now: float) -> StoredValue | None: ...

    async def put(self, namespace: str, key: str, value: bytes, *, expires_at: float | None) -> int:
        """Write unconditionally; return the new version."""
        ...

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
        """Write only if the entry is still at `expected_version` (None: only if absent or expired)."""
        ...

    async def take(self, namespace: str, key: str, *, now: float) -> StoredValue | None:
        """Read and delete in one step: of two concurrent takers exactly one gets the value."""
        ...

    async def delete(self, namespace: str, key: str) -> bool: ...

    async def delete_if(self, namespace: str, key: str, value: bytes) -> bool:
        """Delete only while the entry still holds `value` (releasing a lease one still owns)."""
        ...

    async def close(self) -> None: ...
