"""HTTP routes: the webhook, health and metrics. Thin: the rules live in bot.feishu.webhook."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import structlog
from aiohttp import web

from bot.clock import Clock
from bot.feishu.events import CARD_ACTION_TRIGGER, MESSAGE_RECEIVE, EventEnvelope, UrlVerification
from bot.feishu.webhook import Rejected, WebhookSecrets, open_event_request
from bot.inbox import UnstorableEvent
from bot.metrics import Metrics
from bot.oauth.flow import AuthorizationFlow, CallbackOutcome
from bot.oauth.pages import render

log = structlog.get_logger("bot.web")

MAX_BODY_BYTES = 1024 * 1024
_CHUNK = 64 * 1024
# Feishu's bodies are a few KB sent at once; a megabyte over a slow link still fits. A body trickled
# in a byte at a time holds a connection no longer than this.
BODY_SECONDS = 10.0

Accept = Callable[[EventEnvelope], Awaitable[bool]]
# Whether to act on a click, and the toast to answer with (see handlers.clicks).
ClickPreflight = Callable[[EventEnvelope], Awaitable[tuple[bool, dict[str, Any]]]]
Opener = Callable[[Mapping[str, str], bytes, WebhookSecrets, float], UrlVerification | EventEnvelope]
# Feishu waits 3 s for a callback's answer; leave room for the network.
PREFLIGHT_SECONDS = 1.5
# The whole answer to a click, check and write together, well inside Feishu's 3 s.
CLICK_BUDGET_SECONDS = 2.3


@dataclass(frozen=True)
class ClickToasts:
    """What the intake itself answers a click with; worded by the handlers (handlers.clicks)."""

    # The check before the ack was too slow: the click is taken, the inbox decides for good.
    received: dict[str, Any]
    # The click could not be stored: it is not done, and Feishu never sends it again.
    not_stored: dict[str, Any]


# Metric labels stay a small fixed set whatever event types a sender makes up.
_LABELLED_TYPES = frozenset({MESSAGE_RECEIVE, CARD_ACTION_TRIGGER})


def _type_label(event_type: str) -> str:
    return event_type if event_type in _LABELLED_TYPES else "other"


async def read_capped_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refusing with 413 past `limit` without buffering more than that, and with 408 when
    it does not arrive within BODY_SECONDS."""
    if request.content_length is not None and request.content_length > limit:
        raise Rejected(413, f"body larger than {limit} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_SECONDS):
            while chunk := await request.content.read(_CHUNK):
                body += chunk
                if len(body) > limit:
                    raise Rejected(413, f"body larger than {limit} bytes")
    except TimeoutError:
        raise Rejected(408, f"body not received within {BODY_SECONDS:.0f} s") from None
    return bytes(body)


class EventIntake:
    """`POST /feishu/events` (and the legacy `POST /feishu/card`): open, persist, acknowledge.

    Events are answered `{"msg": "success"}`. A card click is answered with a toast, within Feishu's
    3 seconds: `preflight` only checks that the button is still good; the work runs from the inbox.
    """

    def __init__(
        self,
        secrets: WebhookSecrets,
        accept: Accept,
        metrics: Metrics,
        clock: Clock,
        preflight: ClickPreflight,
        toasts: ClickToasts,
        opener: Opener = open_event_request,
    ) -> None:
        self._toasts = toasts
        self._secrets = secrets
        self._accept = accept
        self._metrics = metrics
        self._clock = clock
        self._preflight = preflight
        self._open = opener
        # Click writes still running after their answer went out (kept so they are not collected).
        self._late: set[asyncio.Future[bool]] = set()

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            body = await read_capped_body(request)
            opened = self._open(request.headers, body, self._secrets, self._clock())
        except Rejected as rejected:
            self._metrics.events_rejected.labels(str(rejected.status)).inc()
            log.info("webhook request refused", status=rejected.status, reason=rejected.reason)
            return web.json_response({"msg": rejected.reason}, status=rejected.status)
        if isinstance(opened, UrlVerification):
            log.info("url verification answered")
            return web.json_response({"challenge": opened.challenge})
        status, answer = await self.receive(opened, started)
        return web.json_response(answer, status=status)

    async def receive(
        self, opened: EventEnvelope, started: float | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Store one event, whichever way it came (webhook or long connection), and say what to answer:
        200 with `{"msg": "success"}` or a click's `{"toast": ...}`; 400 for an event that cannot be
        stored; 503 when the store failed (not acknowledged, so Feishu delivers it again)."""
        started = time.perf_counter() if started is None else started
        with structlog.contextvars.bound_contextvars(event_id=opened.event_id, event_type=opened.event_type):
            answer: dict[str, Any] = {"msg": "success"}
            if opened.event_type == CARD_ACTION_TRIGGER:
                act, toast = await self._check_click(opened)
                answer = {"toast": toast}
                if not act:
                    log.info("click not acted on", toast=toast.get("type"))
                    return 200, answer
            is_click = opened.event_type == CARD_ACTION_TRIGGER
            try:
                if is_click:
                    fresh = await self._accept_within(
                        opened, CLICK_BUDGET_SECONDS - (time.perf_counter() - started)
                    )
                else:
                    fresh = await self._accept(opened)
            except UnstorableEvent as error:
                self._metrics.events_rejected.labels("400").inc()
                log.info("webhook request refused", status=400, reason=f"malformed event: {error}")
                if is_click:  # a click is never redelivered: tell the clicker, in the only way Feishu shows
                    return 200, {"toast": self._toasts.not_stored}
                return 400, {"msg": f"malformed event: {error}"}
            except Exception as error:
                log.error("event could not be stored", error=type(error).__name__)
                if is_click:
                    return 200, {"toast": self._toasts.not_stored}
                # Not persisted, so not acknowledged: a 503 makes Feishu deliver it again later.
                return 503, {"msg": "temporarily unavailable"}
            if fresh:
                self._metrics.events_received.labels(_type_label(opened.event_type)).inc()
            else:
                self._metrics.events_deduplicated.labels(_type_label(opened.event_type)).inc()
                log.info("duplicate delivery dropped")
        self._metrics.ack_latency.observe(time.perf_counter() - started)
        return 200, answer

    async def _accept_within(self, envelope: EventEnvelope, seconds: float) -> bool:
        """Store a click, but answer Feishu in time: past the budget the write goes on unwatched."""
        saving = asyncio.ensure_future(self._accept(envelope))
        try:
            return await asyncio.wait_for(asyncio.shield(saving), max(0.05, seconds))
        except TimeoutError:
            self._late.add(saving)
            saving.add_done_callback(self._late_write_done)
            log.warning("click still being stored when its answer was due; answered anyway")
            return True

    def _late_write_done(self, task: asyncio.Future[bool]) -> None:
        self._late.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a click answered in time could not be stored", error=type(task.exception()).__name__)

    async def _check_click(self, envelope: EventEnvelope) -> tuple[bool, dict[str, Any]]:
        try:
            async with asyncio.timeout(PREFLIGHT_SECONDS):
                return await self._preflight(envelope)
        except TimeoutError:
            # Slow store: act anyway (the inbox decides for good) rather than miss Feishu's deadline.
            return True, self._toasts.received
        except Exception as error:
            # The store is away: the click could not be stored either, and Feishu never sends it again,
            # so say so to the person who clicked.
            log.error("click could not be checked", error=type(error).__name__)
            return False, self._toasts.not_stored


class OAuthCallback:
    """`GET /oauth/callback`: where Feishu sends the browser after the user approves or declines."""

    def __init__(self, flow: Callable[[], AuthorizationFlow], accept: Accept) -> None:
        self._flow = flow
        self._accept = accept

    async def handle(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            outcome = await self._flow().complete(
                state=query.get("state"), code=query.get("code"), error=query.get("error")
            )
        except Exception as error:
            log.error("authorization callback failed", error=type(error).__name__)
            outcome = CallbackOutcome("unavailable", 503)
        if outcome.resume is not None:
            try:
                await self._accept(outcome.resume)
            except Exception as error:
                # The authorization is stored; only the automatic resume is lost. The page must then
                # ask for the command again instead of promising that it continues by itself.
                log.error("could not queue the resumed command", error=type(error).__name__)
                outcome = replace(outcome, kind="authorized_not_resumed", resume=None)
        return web.Response(
            text=render(outcome),
            status=outcome.status,
            content_type="text/html",
            charset="utf-8",
            # The URL carried a one-time code: keep it out of caches and other sites' Referer headers.
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )


@web.middleware
async def no_tracebacks(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Whatever goes wrong, the caller gets a short JSON answer and the log gets the reason."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("request failed", path=request.path)
        return web.json_response({"msg": "internal error"}, status=500)


Readiness = Callable[[], Awaitable[list[str]]]


def metrics_page(
    metrics: Metrics, refresh_gauges: Callable[[], Awaitable[None]]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def page(_: web.Request) -> web.Response:
        try:
            await refresh_gauges()
        except Exception as error:  # the counters are still worth serving
            log.warning("inbox gauges not refreshed", error=type(error).__name__)
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    return page


def add_routes(
    app: web.Application,
    intake: EventIntake,
    cards: EventIntake,
    callback: OAuthCallback,
    metrics: Metrics,
    readiness: Readiness,
    refresh_gauges: Callable[[], Awaitable[None]],
    *,
    metrics_app: web.Application | None = None,
) -> None:
    """The public routes on `app`; /metrics there too, or only on `metrics_app` when there is one."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        """Ready to take traffic: the store answers and the bot knows who it is. 503 lists what is not."""
        try:
            async with asyncio.timeout(2.0):
                problems = await readiness()
        except Exception as error:
            problems = [f"readiness check failed: {type(error).__name__}"]
        if problems:
            return web.json_response({"status": "not ready", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})

    app.router.add_post("/feishu/events", intake.handle)
    app.router.add_post("/feishu/card", cards.handle)
    # No HEAD: a link previewer's HEAD must not spend the user's one-time code.
    app.router.add_get("/oauth/callback", callback.handle, allow_head=False)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if metrics_app is None:
        app.router.add_get("/metrics", metrics_page(metrics, refresh_gauges))
    else:
        metrics_app.router.add_get("/metrics", metrics_page(metrics, refresh_gauges))
