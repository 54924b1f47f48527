"""Wiring: settings → store, client, inbox, handlers, web app; and their start and stop in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import ClientSession, web

from bot.clock import Clock, system_clock
from bot.feishu.client import FeishuClient, Retry
from bot.feishu.events import EventEnvelope
from bot.feishu.long_connection import Answer, LongConnection, Receive
from bot.feishu.models import BotInfo
from bot.feishu.ratelimit import RateLimiter, SharedCallLog, SharedRateLimiter
from bot.feishu.webhook import Rejected, WebhookSecrets, open_card_request, open_pushed_event
from bot.inbox import Inbox
from bot.listener import GUARD, ConnectionGuard, start_listener
from bot.metrics import Metrics
from bot.oauth.authority import UserAuthority
from bot.oauth.device import DeviceFlow
from bot.oauth.flow import AuthorizationFlow
from bot.oauth.sealing import Sealer
from bot.oauth.token_store import UserTokenStore
from bot.store import Store, open_store
from bot.store.factory import POSTGRES_SCHEMES
from bot.web import ClickToasts, EventIntake, OAuthCallback, add_routes, no_tracebacks
from config import Settings
from handlers.buttons import CardActions
from handlers.clicks import NOT_STORED, ON_IT, toast
from handlers.clicks import preflight as check_click
from handlers.context import Services
from handlers.invite.meetings import MeetingFinder
from handlers.router import Router, default_buttons, default_commands, needs_handling

log = structlog.get_logger("bot.app")


@dataclass
class Runtime:
    """Everything a running bot holds, reachable from the app for the CLI, the demo and tests."""

    settings: Settings
    metrics: Metrics
    store: Store
    client: FeishuClient
    bot: BotInfo
    inbox: Inbox
    authority: UserAuthority
    flow: AuthorizationFlow
    services: Services


class Started:
    """What start-up has made so far. The routes exist from the first request; the runtime may come
    later: a shared store that does not answer at start is retried in the background meanwhile, so the
    process serves /healthz (and 503s) instead of exiting into a restart loop."""

    def __init__(self) -> None:
        self.runtime: Runtime | None = None
        self.waiting_for = "starting"
        self.connection: LongConnection | None = None  # BOT_EVENT_TRANSPORT=long-connection


class NotStarted(Exception):
    """A request arrived before the runtime exists; the web layer answers it 503 or with a toast."""


STARTED = web.AppKey("started", Started)


def runtime_of(app: web.Application) -> Runtime:
    runtime = app[STARTED].runtime
    if runtime is None:
        raise NotStarted(app[STARTED].waiting_for)
    return runtime


INTAKE_TOASTS = ClickToasts(received=toast("info", ON_IT), not_stored=toast("error", NOT_STORED))


def _metrics_listener(
    metrics_app: web.Application, host: str, port: int
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def listening(_: web.Application) -> AsyncIterator[None]:
        runner, site = await start_listener(metrics_app, host, port, shutdown_timeout=1.0)
        log.info("metrics served on their own listener", address=f"{site.name}/metrics")
        try:
            yield
        finally:
            await runner.cleanup()

    return listening


async def _readiness(app: web.Application) -> list[str]:
    runtime = app[STARTED].runtime
    if runtime is None:
        return [app[STARTED].waiting_for]
    problems = [] if runtime.bot.open_id else ["bot identity unknown"]
    connection = app[STARTED].connection
    if connection is not None and connection.refused is not None:
        problems.append(f"long connection refused by Feishu: {connection.refused}")
    elif connection is not None and not connection.connected.is_set():
        problems.append("long connection not connected")
    try:
        await runtime.store.inbox_stats()
    except Exception as error:
        problems.append(f"store unreachable: {type(error).__name__}")
    return problems


async def _refresh_gauges(app: web.Application, clock: Clock) -> None:
    # Read at scrape time, so a scrape always sees the inbox as it is now.
    runtime = app[STARTED].runtime
    if runtime is not None:
        stats = await runtime.store.inbox_stats()
        runtime.metrics.inbox_pending.set(stats.pending + stats.running)
        oldest = stats.oldest_received_at
        runtime.metrics.inbox_oldest_age.set(0.0 if oldest is None else max(0.0, clock() - oldest))


async def _start_runtime(
    settings: Settings,
    store: Store,
    session: ClientSession,
    sealer: Sealer,
    metrics: Metrics,
    clock: Clock,
    api_retry: Retry,
    retry_base_seconds: float,
    watch_every_seconds: float,
) -> Runtime:
    """From an open store and HTTP session to a bot that knows who it is and has its inbox."""
    client = FeishuClient(
        session,
        domain=settings.feishu_domain,
        app_id=settings.feishu_app_id,
        app_secret=settings.feishu_app_secret,
        metrics=metrics,
        # Replicas on a shared store share their windows too: three private 50/s limiters would let
        # three processes together overrun Feishu's limit threefold.
        limiter=SharedRateLimiter(store) if isinstance(store, SharedCallLog) else RateLimiter(),
        retry=api_retry,
        clock=clock,
    )
    bot = await client.bot_info()
    log.info("bot identity known", bot_open_id=bot.open_id, app_name=bot.app_name)
    tokens = UserTokenStore(store, sealer)
    authority = UserAuthority(client, tokens, store, clock, metrics=metrics)
    flow = AuthorizationFlow(
        client,
        tokens,
        store,
        sealer,
        accounts_url=settings.feishu_accounts_url,
        redirect_uri=settings.oauth_redirect_uri,
        scopes=tuple(settings.bot_oauth_scopes.split()),
        clock=clock,
    )
    device = (
        DeviceFlow(
            client,
            tokens,
            store,
            sealer,
            accounts_url=settings.feishu_accounts_url,
            scopes=tuple(settings.bot_oauth_scopes.split()),
            clock=clock,
        )
        if settings.bot_auth_flow == "device"
        else None
    )

    async def enqueue(envelope: EventEnvelope) -> bool:
        return await inbox.accept(envelope)  # `inbox` exists by the time any handler runs

    services = Services(
        client=client,
        bot=bot,
        store=store,
        clock=clock,
        authority=authority,
        flow=flow,
        meetings=MeetingFinder(client, store, clock),
        actions=CardActions(store, clock, default_buttons()),
        metrics=metrics,
        device=device,
        enqueue=enqueue,
        watch_seconds=settings.bot_meeting_watch_seconds,
        watch_every=watch_every_seconds,
    )
    router = Router(services, default_commands(settings.bot_invite_ceiling, settings.bot_confirm_threshold))
    inbox = Inbox(
        store,
        router,
        metrics,
        workers=settings.bot_inbox_workers,
        max_attempts=settings.bot_inbox_max_attempts,
        dedupe_ttl_seconds=settings.bot_dedupe_ttl_hours * 3600,
        retry_base_seconds=retry_base_seconds,
        clock=clock,
        on_dead=router.on_dead,
    )
    return Runtime(settings, metrics, store, client, bot, inbox, authority, flow, services)


def _frame_receiver(intake: EventIntake) -> Receive:
    """What the long connection does with one envelope: exactly what the webhook does after opening a
    request, so nothing after the inbox can tell how an event arrived."""

    async def receive(payload: bytes) -> Answer:
        try:
            envelope = open_pushed_event(payload)
        except Rejected as rejected:
            log.info("long connection event refused", reason=rejected.reason)
            return Answer(200)  # it will never parse: having Feishu push it again cannot help
        status, body = await intake.receive(envelope)
        if status == 503:
            return Answer(500)  # not stored: Feishu pushes it again
        return Answer(200, {"toast": body["toast"]} if "toast" in body else None)

    return receive


async def _keep_starting(start: Callable[[], Awaitable[None]], started: Started) -> None:
    """Try start-up again with growing pauses (1 s doubling, at most 30 s) until it succeeds."""
    attempt = 0
    while True:
        attempt += 1
        await asyncio.sleep(min(30.0, 2.0 ** (attempt - 1)))
        try:
            await start()
        except Exception as error:
            started.waiting_for = f"store unreachable: {type(error).__name__}"
            log.warning("store still unreachable", error=type(error).__name__, attempts=attempt)
            continue
        log.info("store reachable; started", attempts=attempt)
        return


def create_app(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    start_workers: bool = True,
    retry_base_seconds: float = 2.0,
    api_retry: Retry | None = None,
    watch_every_seconds: float = 5.0,
) -> web.Application:
    """The bot as an aiohttp app. `start_workers=False` accepts events without handling them.
    `watch_every_seconds`: how often a live card's meeting is read (5 s: at most 12 reads a minute per
    meeting and one card update per 5 s, far inside Feishu's 1000/min and 5 updates/s per message)."""
    guard = ConnectionGuard()
    app = web.Application(middlewares=[guard.middleware, no_tracebacks], client_max_size=2 * 1024 * 1024)
    app[GUARD] = guard
    started = app[STARTED] = Started()
    metrics = Metrics()

    async def accept(envelope: EventEnvelope) -> bool:
        runtime = runtime_of(app)
        if not needs_handling(envelope, runtime.bot.open_id):
            metrics.events_ignored.inc()
            return True  # acknowledged; nothing will ever be done with it
        return await runtime.inbox.accept(envelope)

    secrets = WebhookSecrets(
        verification_token=settings.verification_token,
        encrypt_key=settings.encrypt_key,
        replay_window_seconds=settings.bot_replay_window_seconds,
    )
    sealer = Sealer(settings.secret_keys)
    # Routes reach the runtime through the app: it exists once start-up has run, which aiohttp finishes
    # before it serves a request.
    callback = OAuthCallback(lambda: runtime_of(app).flow, accept)

    async def preflight(envelope: EventEnvelope) -> tuple[bool, dict[str, Any]]:
        verdict = await check_click(runtime_of(app).services, envelope)
        return verdict.act, verdict.toast

    events = EventIntake(secrets, accept, metrics, clock, preflight, INTAKE_TOASTS)
    cards = EventIntake(secrets, accept, metrics, clock, preflight, INTAKE_TOASTS, opener=open_card_request)

    # With BOT_METRICS_PORT, /metrics lives on a listener of its own that starts and stops with the app.
    metrics_app = None
    if settings.bot_metrics_port is not None:
        metrics_app = web.Application(middlewares=[no_tracebacks])
        app.cleanup_ctx.append(_metrics_listener(metrics_app, settings.bot_host, settings.bot_metrics_port))
    add_routes(
        app,
        events,
        cards,
        callback,
        metrics,
        lambda: _readiness(app),
        lambda: _refresh_gauges(app, clock),
        metrics_app=metrics_app,
    )

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        session = FeishuClient.open_session()
        stores: list[Store] = []

        async def start() -> None:
            store = await open_store(settings.bot_store_url)
            try:
                runtime = await _start_runtime(
                    settings,
                    store,
                    session,
                    sealer,
                    metrics,
                    clock,
                    api_retry or Retry(),
                    retry_base_seconds,
                    watch_every_seconds,
                )
                if start_workers:
                    await runtime.inbox.start()
            except BaseException:
                await store.close()
                raise
            stores.append(store)
            started.runtime = runtime
            if settings.bot_event_transport == "long-connection":
                connection = LongConnection(
                    session,
                    domain=settings.feishu_domain,
                    app_id=settings.feishu_app_id,
                    app_secret=settings.feishu_app_secret,
                    receive=_frame_receiver(events),
                )
                started.connection = connection
                dialing.append(asyncio.create_task(connection.run(), name="long-connection"))

        retrying: asyncio.Task[None] | None = None
        dialing: list[asyncio.Task[None]] = []
        try:
            try:
                await start()
            except Exception as error:
                if not settings.bot_store_url.startswith(POSTGRES_SCHEMES):
                    raise  # an embedded store that cannot open will not open by waiting
                started.waiting_for = f"store unreachable: {type(error).__name__}"
                log.error(
                    "store unreachable at start; retrying while serving health", error=type(error).__name__
                )
                retrying = asyncio.create_task(
                    _keep_starting(start, started), name="start-when-store-answers"
                )
            yield
            if retrying is not None:
                retrying.cancel()
                await asyncio.gather(retrying, return_exceptions=True)
            for task in dialing:  # no new events from Feishu; those already stored finish below
                task.cancel()
            await asyncio.gather(*dialing, return_exceptions=True)
            if started.connection is not None:
                await started.connection.close()
            if started.runtime is not None:
                # The server has stopped taking requests by now; let running handlers finish.
                await started.runtime.inbox.stop(settings.bot_shutdown_timeout)
        finally:
            await session.close()
            for store in stores:
                await store.close()

    app.cleanup_ctx.append(lifecycle)
    return app
