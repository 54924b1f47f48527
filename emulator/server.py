"""Running the emulator: in-process for tests and the demo, or as a foreground server."""

from __future__ import annotations

import asyncio

from aiohttp import web

from emulator.config import EmulatorConfig
from emulator.emulator import Emulator


async def start_emulator(
    config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> tuple[Emulator, web.AppRunner, str]:
    """Start serving; returns the emulator, its runner (call `cleanup()` to stop) and its base URL.
    `port=0` picks a free port, which is what tests want."""
    emulator = Emulator(config)
    runner = web.AppRunner(emulator.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = int(runner.addresses[0][1])  # the real port when 0 was asked for
    return emulator, runner, f"http://{host}:{bound_port}"


async def serve_emulator(host: str, port: int, config: EmulatorConfig) -> None:
    """Serve until cancelled, announcing the URL on one line."""
    emulator, runner, base_url = await start_emulator(config, host, port)
    print(f"Feishu emulator listening on {base_url} (app_id {emulator.config.app_id})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
