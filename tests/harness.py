"""The loopback world every end-to-end test runs in: the emulator and the bot, over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from bot.app import Runtime, create_app, runtime_of
from bot.clock import Clock
from bot.feishu.client import Retry
from bot.listener import start_listener
from config import Settings
from emulator import Emulator, EmulatorConfig
from emulator.server import start_emulator

ALICE = "ou_alice0000000000000000000000001"
BOB = "ou_bob000000000000000000000000002"
TEAM = "oc_team00000000000000000000000001"
ALICE_DM = "oc_p2palice000000000000000000001"
CAROL = "ou_carol00000000000000000000000003"
ROOM = "oc_crowd0000000000000000000000001"


# The server this project's machines run before each session (shared/interface.md). Set it empty to skip
# the PostgreSQL tests on a machine without one; CI never does.
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A schema of its own on the test server, dropped afterwards; yields a BOT_STORE_URL that works in
    it (asyncpg passes `search_path` in the URL's query to the server as a setting)."""
    import asyncpg

    if not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is empty: no PostgreSQL for this run")
    schema = f"t_{secrets.token_hex(6)}"
    where = urlsplit(POSTGRES_URL)._replace(netloc=urlsplit(POSTGRES_URL).hostname or "").geturl()
    try:
        admin = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        pytest.fail(f"PostgreSQL at {where} (TEST_POSTGRES_URL) does not answer: {type(error).__name__}")
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if "?" in POSTGRES_URL else "?"
        yield f"{POSTGRES_URL}{separator}search_path={schema}"
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FixedClock:
    """A clock that stands still until a test moves it (`clock.now += seconds`)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ManualClock:
    """Wall-clock time that a test can move forward, shared by the bot and the emulator."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def bot_settings(config: EmulatorConfig, emulator_url: str, store: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "feishu_app_id": config.app_id,
        "feishu_app_secret": config.app_secret,
        "feishu_verification_token": config.verification_token,
        "feishu_encrypt_key": config.encrypt_key,
        "feishu_domain": emulator_url,
        "bot_host": "127.0.0.1",
        "bot_port": 0,
        "bot_store_url": f"sqlite:///{store}",
        "bot_secret_key": secrets.token_urlsafe(32),
        "bot_inbox_max_attempts": 3,
        "bot_shutdown_timeout": 5.0,
        # The live card updates cards on its own; tests that are not about it keep their cards still.
        "bot_meeting_watch_seconds": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass
class Harness:
    emulator: Emulator
    emulator_url: str
    settings: Settings
    emulator_runner: web.AppRunner
    clock: Clock = time.time
    bot_url: str = ""
    bot_runner: web.AppRunner | None = None
    app: web.Application | None = None
    _started: list[web.AppRunner] = field(default_factory=list)
    # How often a live card's meeting is read: fast for tests (the service pace is 5 s).
    watch_every_seconds: float = 0.2

    @property
    def runtime(self) -> Runtime:
        assert self.app is not None
        return runtime_of(self.app)

    async def start_bot(self, *, start_workers: bool = True) -> None:
        self.app = create_app(
            self.settings,
            clock=self.clock,
            start_workers=start_workers,
            retry_base_seconds=0.02,
            api_retry=Retry(attempts=3, base_seconds=0.01, cap_seconds=0.05),
            watch_every_seconds=self.watch_every_seconds,
        )
        # The listener `invite-bot serve` uses, with its timeouts and connection limit. A fixed port
        # across restarts, so BOT_PUBLIC_URL (the OAuth redirect) keeps pointing at us.
        runner, _ = await start_listener(self.app, "127.0.0.1", self.settings.bot_port, shutdown_timeout=1.0)
        self.bot_runner = runner
        self.bot_url = f"http://127.0.0.1:{self.settings.bot_port}"  # where this bot listens
        self.emulator.webhook_url = f"{self.bot_url}/feishu/events"

    async def stop_bot(self) -> None:
        if self.bot_runner is not None:
            await self.bot_runner.cleanup()
            self.bot_runner = None

    async def close(self) -> None:
        await self.stop_bot()
        await self.emulator.close()
        await self.emulator_runner.cleanup()


async def open_harness(
    tmp_path: Path, config: EmulatorConfig | None = None, *, clock: Clock | None = None, **overrides: Any
) -> Harness:
    emulator, runner, url = await start_emulator(config or EmulatorConfig())
    if clock is not None:
        emulator.clock = clock
    port = free_port()
    overrides = {"bot_port": port, "bot_public_url": f"http://127.0.0.1:{port}", **overrides}
    settings = bot_settings(emulator.config, url, tmp_path / "bot.db", **overrides)
    return Harness(
        emulator=emulator,
        emulator_url=url,
        settings=settings,
        emulator_runner=runner,
        clock=clock or time.time,
    )


# --- conversations every end-to-end test needs ----------------------------------------------------


def prompt_url(card: dict[str, Any]) -> str:
    """The Authorize button's link, from an ephemeral (1.0) or a JSON 2.0 prompt card."""
    for element in card.get("elements", []):
        for action in element.get("actions", []):
            if "url" in action:
                return str(action["url"])
    for element in card.get("body", {}).get("elements", []):
        for behavior in element.get("behaviors", []):
            if behavior.get("type") == "open_url":
                return str(behavior["default_url"])
    raise AssertionError(f"no authorize link in {card}")


async def browse(url: str) -> tuple[int, str]:
    """What the user's browser does with the redirect: a plain GET."""
    async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False) as response:
        return response.status, await response.text()


async def ephemeral_prompt(world: Harness, open_id: str, count: int = 1) -> str:
    prompts = await world.emulator.wait_for_ephemeral(count, open_id=open_id)
    return prompt_url(prompts[count - 1].card)


async def authorize(world: Harness, who: str, chat: str = TEAM) -> None:
    await world.emulator.say(who, chat, "/login")
    url = await ephemeral_prompt(world, who)
    status, _ = await browse(world.emulator.authorize(url, as_user=who))
    assert status == 200


async def open_world(tmp_path: Path, config: EmulatorConfig | None = None, **settings: Any) -> Harness:
    world = await open_harness(tmp_path, config, clock=ManualClock(), **settings)
    await world.start_bot()
    await authorize(world, ALICE)
    await world.emulator.wait_for_messages(1, chat_id=TEAM)  # the "authorized" reply
    return world


@contextlib.asynccontextmanager
async def running_world(
    tmp_path: Path, config: EmulatorConfig | None = None, **settings: Any
) -> AsyncIterator[Harness]:
    """`open_world` for the length of a `with`: the fixture most end-to-end test files start from."""
    opened = await open_world(tmp_path, config, **settings)
    try:
        yield opened
    finally:
        await opened.close()


async def invite(world: Harness, text: str, *, chat: str = TEAM, **options: Any) -> dict[str, Any]:
    """Alice types `text`; returns the card the bot answered with."""
    before = len([m for m in world.emulator.messages if m.chat_id == chat])
    assert (await world.emulator.say(ALICE, chat, text, **options)).status == 200
    replies = await world.emulator.wait_for_messages(before + 1, chat_id=chat, timeout=20)
    return replies[before].content


async def updated_card(world: Harness, message_id: str, count: int = 1, within: float = 4.0) -> str:
    for _ in range(int(within / 0.02)):
        updates = [update for update in world.emulator.card_updates if update.message_id == message_id]
        if len(updates) >= count:
            return json.dumps(updates[count - 1].content, ensure_ascii=False)
        await asyncio.sleep(0.02)
    raise AssertionError("the card was not updated")


# --- `invite-bot serve` as a process of its own -------------------------------------------------


def serve_env(
    emulator: Emulator, url: str, folder: Path, port: int, *, store_url: str | None = None
) -> dict[str, str]:
    """The environment `invite-bot serve` reads, pointed at the emulator (SQLite in `folder` unless
    `store_url` names another store)."""
    settings = bot_settings(emulator.config, url, folder / "bot.db")
    return {
        **os.environ,
        "FEISHU_APP_ID": settings.feishu_app_id,
        "FEISHU_APP_SECRET": settings.feishu_app_secret.get_secret_value(),
        "FEISHU_VERIFICATION_TOKEN": settings.verification_token,
        "FEISHU_ENCRYPT_KEY": settings.encrypt_key,
        "FEISHU_DOMAIN": url,
        "BOT_HOST": "127.0.0.1",
        "BOT_PORT": str(port),
        "BOT_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "BOT_STORE_URL": store_url or settings.bot_store_url,
        "BOT_SECRET_KEY": "k" * 40,
    }


async def start_serve(env: dict[str, str], log: Path | None = None) -> asyncio.subprocess.Process:
    """Start `invite-bot serve` and wait for its /healthz. With `log`, its log goes to that file (a busy
    process would fill an unread pipe and stall)."""
    with contextlib.ExitStack() as files:
        stderr = files.enter_context(log.open("ab")) if log is not None else asyncio.subprocess.PIPE
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from bot.cli import main; main()",
            "serve",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{env['BOT_PORT']}/healthz"
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
    process.kill()
    raise AssertionError("invite-bot serve did not come up")


# --- a network that a test can cut ---------------------------------------------------------------


class CuttableProxy:
    """A loopback TCP proxy in front of a server. `cut()` drops every connection and refuses new ones,
    as a failed database host or a broken network would; `restore()` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    async def restore(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._connect, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _connect(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.transport.abort()
            return
        self._open |= {client_writer, server_writer}
        for source, sink in ((client_reader, server_writer), (server_reader, client_writer)):
            pump = asyncio.create_task(self._pump(source, sink))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._open.discard(sink)
            sink.transport.abort()
