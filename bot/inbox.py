"""The durable inbox: events are persisted before Feishu gets its 200, then handled by workers.

Guarantees: an acknowledged event is handled (a crash or restart resumes it), a duplicate delivery is
dropped, one chat's events are handled in order, concurrency is bounded, and a handler that keeps
failing ends as a dead event with its reason instead of vanishing or retrying forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog
from pydantic import ValidationError

from bot.clock import Clock, backoff, system_clock
from bot.feishu.events import EventEnvelope, MalformedEvent, dedupe_key, ordering_key
from bot.metrics import Metrics
from bot.store import InboxItem, Store
from bot.store.base import CLAIM_LEASE_SECONDS, Postpone

log = structlog.get_logger("bot.inbox")

EventHandler = Callable[[EventEnvelope], Awaitable[None]]
# Told when an event is given up on (with the reason), so that the person waiting can be told.
DeadHandler = Callable[[EventEnvelope, str], Awaitable[None]]

_HOUSEKEEPING_SECONDS = 60.0
# The longest the dispatcher sleeps without looking: where replicas share a store, another process may
# have accepted events and died before claiming them, and nothing here would wake us for those.
_POLL_SECONDS = 5.0
_MAX_ERROR_TEXT = 500
_BOOKKEEPING_ATTEMPTS = 6


class PermanentFailure(Exception):
    """Raised by a handler when retrying cannot help (the event can never be handled)."""


class UnstorableEvent(ValueError):
    """A well-formed envelope whose content cannot be keyed or stored (say, a message without an id)."""


class Inbox:
    def __init__(
        self,
        store: Store,
        handler: EventHandler,
        metrics: Metrics,
        *,
        workers: int,
        max_attempts: int,
        dedupe_ttl_seconds: float,
        retry_base_seconds: float = 2.0,
        retry_cap_seconds: float = 300.0,
        clock: Clock = system_clock,
        on_dead: DeadHandler | None = None,
        renew_every_seconds: float = CLAIM_LEASE_SECONDS / 4,
    ) -> None:
        self._store = store
        self._handler = handler
        self._metrics = metrics
        self._workers = workers
        self._max_attempts = max_attempts
        self._dedupe_ttl = dedupe_ttl_seconds
        self._retry_base = retry_base_seconds
        self._retry_cap = retry_cap_seconds
        self._clock = clock
        self._on_dead = on_dead
        self._renew_every = renew_every_seconds
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        # Claims this process holds, by inbox id, while their handlers run: renewed until they finish.
        self._claims: dict[int, asyncio.Task[None]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._stopping = False
        self._last_housekeeping = 0.0

    async def accept(self, envelope: EventEnvelope) -> bool:
        """Persist one delivery; True if it is new, False if it was a duplicate (already seen)."""
        try:
            keys = dedupe_key(envelope), ordering_key(envelope)
            # ValueError covers pydantic's serialization error, e.g. a lone surrogate in a string.
            payload = envelope.model_dump_json()
        except (MalformedEvent, ValueError) as error:
            raise UnstorableEvent(str(error)[:200]) from None
        now = self._clock()
        fresh = await self._store.accept_event(
            dedupe_key=keys[0],
            ordering_key=keys[1],
            payload=payload,
            now=now,
            dedupe_until=now + self._dedupe_ttl,
        )
        if fresh:
            self._idle.clear()
            self._wake.set()
        return fresh

    async def start(self) -> None:
        self._stopping = False
        stats = await self._store.inbox_stats()
        if stats.pending or stats.running:
            log.info("inbox has unfinished events", pending=stats.pending, running=stats.running)
        self._dispatcher = asyncio.create_task(self._dispatch(), name="inbox-dispatcher")
        self._keeper = asyncio.create_task(self._keep_claims(), name="inbox-claims")

    async def stop(self, grace_seconds: float) -> None:
        """Stop taking events; give running handlers `grace_seconds`, then cancel them.

        A cancelled event stays claimed in the store and is resumed at the next start.
        """
        if self._dispatcher is not None:
            # A flag, not a cancellation: the dispatcher ends between claims, never half-way through one.
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(Exception):
                await self._dispatcher
            self._dispatcher = None
        if self._running:
            _, late = await asyncio.wait(set(self._running), timeout=grace_seconds)
            for task in late:
                task.cancel()
            if late:
                log.warning("shutdown deadline passed; unfinished events are resumed", count=len(late))
                await asyncio.gather(*late, return_exceptions=True)
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
            self._keeper = None
        # Handed back now, another process (or our next start) resumes them at once, not after the lease.
        try:
            await self._store.release_claims()
        except Exception as error:
            log.warning("could not hand back unfinished claims; they lapse", error=type(error).__name__)
        self._claims.clear()

    async def wait_idle(self, within: float) -> None:
        """Wait until nothing is pending, due or running (for the demo and tests)."""
        async with asyncio.timeout(within):
            await self._idle.wait()

    async def _dispatch(self) -> None:
        """Claim and start due events until stopped. A store failure is logged and retried: the
        dispatcher must never die quietly while the webhook keeps acknowledging events."""
        failures = 0
        while not self._stopping:
            try:
                await self._dispatch_once()
                failures = 0
            except Exception as error:
                failures += 1
                delay = min(30.0, 0.5 * 2.0**failures)
                log.error(
                    "inbox dispatcher failed; retrying",
                    error=f"{type(error).__name__}: {error}"[:200],
                    retry_in=delay,
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    async def _dispatch_once(self) -> None:
        """One round: start what is due, tidy up now and then, then sleep until woken or due."""
        self._wake.clear()
        now = self._clock()
        free = self._workers - len(self._running)
        if free > 0:
            for item in await self._store.claim_events(now=now, limit=free):
                task = asyncio.create_task(self._run(item), name=f"inbox-event-{item.id}")
                self._running.add(task)
                self._claims[item.id] = task
        if time.monotonic() - self._last_housekeeping > _HOUSEKEEPING_SECONDS:
            self._last_housekeeping = time.monotonic()
            await self._housekeeping(now)
        due = await self._store.next_due_at(after=now)
        if not self._running and due is None and (await self._store.inbox_stats()).pending == 0:
            self._idle.set()
        timeout = _POLL_SECONDS if due is None else min(_POLL_SECONDS, max(0.0, due - now))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _housekeeping(self, now: float) -> None:
        await self._store.purge_expired(now=now)
        stats = await self._store.inbox_stats()
        self._metrics.inbox_pending.set(stats.pending + stats.running)
        age = 0.0 if stats.oldest_received_at is None else max(0.0, now - stats.oldest_received_at)
        self._metrics.inbox_oldest_age.set(age)

    async def _keep_claims(self) -> None:
        """Renew this process's claims while their handlers run. A claim found taken over (this process
        was cut off past the lease and another resumed the event) stops its handler here, so that the
        event does not go on running in two places."""
        while True:
            await asyncio.sleep(self._renew_every)
            held = list(self._claims)
            if not held:
                continue
            try:
                lost = await self._store.renew_claims(held, now=self._clock())
            except Exception as error:
                log.warning("could not renew claims", error=type(error).__name__, held=len(held))
                continue
            for item_id in lost:
                task = self._claims.pop(item_id, None)
                if task is not None and not task.done():
                    log.warning("claim taken over by another process; stopping here", inbox_id=item_id)
                    task.cancel()

    async def _run(self, item: InboxItem) -> None:
        try:
            await self._handle(item)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._running.discard(task)
            self._claims.pop(item.id, None)
            self._wake.set()

    async def _handle(self, item: InboxItem) -> None:
        try:
            envelope = EventEnvelope.model_validate_json(item.payload)
        except ValidationError:
            await self._bookkeep(
                self._store.bury_event, item.id, error="stored payload unreadable", now=self._clock()
            )
            self._metrics.events_dead.labels("unknown").inc()
            log.error("event dead", inbox_id=item.id, reason="stored payload unreadable")
            return
        if item.attempts > self._max_attempts:
            # Claimed this often without ever finishing: each attempt took the process down with it.
            reason = "never finished: the process stopped during every attempt"
            await self._bookkeep(self._store.bury_event, item.id, error=reason, now=self._clock())
            self._metrics.events_dead.labels(envelope.event_type).inc()
            log.error("event dead", event_id=envelope.event_id, attempts=item.attempts, reason=reason)
            return
        event_type = envelope.event_type
        with structlog.contextvars.bound_contextvars(event_id=envelope.event_id, event_type=event_type):
            try:
                await self._handler(envelope)
            except asyncio.CancelledError:
                raise
            except Postpone as later:
                # Not a failure: the handler has more to do later (a meeting watch's next look).
                at = self._clock() + later.seconds
                await self._bookkeep(self._store.postpone_event, item.id, next_attempt_at=at)
            except Exception as error:
                self._metrics.events_failed.labels(event_type).inc()
                await self._after_failure(item, envelope, error)
            else:
                await self._bookkeep(self._store.complete_event, item.id)
                self._metrics.events_handled.labels(event_type).inc()

    async def _tell_dead(self, envelope: EventEnvelope, reason: str) -> None:
        if self._on_dead is None:
            return
        try:
            await self._on_dead(envelope, reason)
        except Exception as error:  # telling is best effort; the event is parked either way
            log.warning("could not tell anyone about a dead event", error=type(error).__name__)

    async def _bookkeep(self, write: Callable[..., Awaitable[None]], item_id: int, **fields: object) -> None:
        """Record an event's outcome, retrying a failing store for a while.

        If the store stays down the event remains claimed until its lease lapses; then this or another
        process resumes it (its reply's uuid keeps Feishu from showing that reply twice).
        """
        self._claims.pop(item_id, None)  # finishing: a renewal must not mistake the end for a takeover
        for attempt in range(1, _BOOKKEEPING_ATTEMPTS + 1):
            try:
                await write(item_id, **fields)
                return
            except Exception as error:
                if attempt == _BOOKKEEPING_ATTEMPTS:
                    log.error(
                        "could not record an event's outcome", inbox_id=item_id, error=type(error).__name__
                    )
                    return
                await asyncio.sleep(backoff(attempt, base=0.2))

    async def _after_failure(self, item: InboxItem, envelope: EventEnvelope, error: Exception) -> None:
        reason = f"{type(error).__name__}: {error}"[:_MAX_ERROR_TEXT]
        if isinstance(error, PermanentFailure) or item.attempts >= self._max_attempts:
            await self._bookkeep(self._store.bury_event, item.id, error=reason, now=self._clock())
            self._metrics.events_dead.labels(envelope.event_type).inc()
            log.error("event dead", attempts=item.attempts, reason=reason)
            await self._tell_dead(envelope, reason)
            return
        delay = backoff(item.attempts, base=self._retry_base, cap=self._retry_cap)
        await self._bookkeep(
            self._store.retry_event, item.id, error=reason, next_attempt_at=self._clock() + delay
        )
        log.warning(
            "event failed; will retry", attempts=item.attempts, retry_in=round(delay, 2), reason=reason
        )
