"""The HTTP listener: how long a client may take, and how many connections it may hold.

aiohttp on its own closes nothing that stalls: a connection that sends half its headers, or a body a
byte every few seconds, is kept for an hour, and enough of them starve everyone else. Here:

- a connection with no complete request (idle, or stuck in its headers) is closed after
  `KEEPALIVE_SECONDS` (aiohttp's keep-alive timer, which also runs from the moment a client connects);
- a request body must arrive within `bot.web.BODY_SECONDS`;
- past `MAX_CONNECTIONS` a new client is let in by closing the oldest connection that has no request
  being handled; only when every one is busy is the newcomer turned away.

A reverse proxy in front (docs/operations.md) is the second line of defence, not the only one.
"""

from __future__ import annotations

import asyncio
import resource
import signal
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

log = structlog.get_logger("bot.listener")

# Feishu and browsers send a request at once; nobody legitimate idles this long on our port.
KEEPALIVE_SECONDS = 15.0
MAX_CONNECTIONS = 1024
_FILE_LIMIT_WANTED = 65536


class _Refused(asyncio.Protocol):
    """What a client gets when every connection slot is taken by a request in progress: a closed socket."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class ConnectionGuard:
    """Counts connections per listener and makes room for a new one by closing an idle one."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS) -> None:
        self._max = max_connections
        # Transports whose request a handler is working on right now (kept by `middleware`).
        self._busy: set[object] = set()

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        transport = request.transport
        self._busy.add(transport)
        try:
            return await handler(request)
        finally:
            self._busy.discard(transport)

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.BaseProtocol]:
        def make() -> asyncio.BaseProtocol:
            if not self._make_room(server):
                log.warning("connection refused: every connection is busy", limit=self._max)
                return _Refused()
            return server()

        return make

    def _make_room(self, server: web.Server) -> bool:
        handlers = server.connections  # oldest first
        excess = len(handlers) + 1 - self._max
        for handler in handlers:
            if excess <= 0:
                break
            if handler.transport is not None and handler.transport not in self._busy:
                handler.force_close()
                excess -= 1
        return excess <= 0


GUARD = web.AppKey("connection_guard", ConnectionGuard)


class GuardedSite(web.TCPSite):
    """A TCP site whose connections pass through a `ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard) -> None:
        super().__init__(runner, host, port, backlog=512)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner (TCPSite's own start is replaced)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.protocol_factory(server), self._host, self._port, backlog=self._backlog
        )


async def start_listener(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float = 5.0,
) -> tuple[web.AppRunner, GuardedSite]:
    """Set the app up and listen on host:port with the limits above; `runner.cleanup()` stops it.

    The app carries its guard under `GUARD` (its middleware must see every request, so the app is built
    with it); an app without one gets a guard that sees no request as busy.
    """
    guard = app.get(GUARD) or ConnectionGuard()
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        access_log=None,
        keepalive_timeout=KEEPALIVE_SECONDS,
    )
    try:
        await runner.setup()
        site = GuardedSite(runner, host, port, guard)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site


def raise_file_limit() -> int:
    """Lift this process's open-file limit towards its hard limit (each connection is a file)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _FILE_LIMIT_WANTED if hard == resource.RLIM_INFINITY else min(hard, _FILE_LIMIT_WANTED)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as error:
            log.warning("could not raise the open-file limit", error=str(error), limit=soft)
    return int(soft)


async def until_stop_signal() -> None:
    """Return at the first SIGTERM or SIGINT: how a served process learns it is time to stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
