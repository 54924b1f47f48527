"""What the emulator adds to the `invite-bot` command: `emulator` and `demo` (registered as entry points
in the `invite_bot.commands` group, so that the bot never imports this package)."""

from __future__ import annotations

import argparse
import asyncio

from bot.listener import until_stop_signal
from bot.logs import configure_logging


async def _serve_emulator(host: str, port: int, webhook_url: str | None) -> int:
    from emulator import EmulatorConfig
    from emulator.server import serve_emulator

    config = EmulatorConfig() if webhook_url is None else EmulatorConfig(webhook_url=webhook_url)
    task = asyncio.create_task(serve_emulator(host, port, config))
    stop = asyncio.create_task(until_stop_signal())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    stop.cancel()
    await asyncio.gather(task, stop, return_exceptions=True)
    return 0


class EmulatorCommand:
    help = "run the local Feishu emulator on loopback"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9900)
        parser.add_argument("--webhook", default=None, help="the bot's /feishu/events URL")

    def run(self, args: argparse.Namespace) -> int:
        configure_logging("console", "info")
        return asyncio.run(_serve_emulator(args.host, args.port, args.webhook))


class DemoCommand:
    help = "emulator + bot + a scripted conversation, on loopback"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--console", action="store_true", help="talk to the bot yourself instead")
        parser.add_argument(
            "--no-public-url",
            action="store_true",
            help="the same story with no inbound HTTP: long connection for events, device authorization",
        )

    def run(self, args: argparse.Namespace) -> int:
        if args.console:
            from emulator.console import run_console

            return asyncio.run(run_console())
        from emulator.demo import run_demo

        return asyncio.run(run_demo(no_public_url=args.no_public_url))


EMULATOR = EmulatorCommand()
DEMO = DemoCommand()
