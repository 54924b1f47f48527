"""The `invite-bot` command: serve, emulator, demo, check."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

import structlog

from bot.logs import configure_logging
from config import Settings, SettingsError, load_settings

log = structlog.get_logger("bot.cli")


def _settings_or_exit(*, serving: bool) -> Settings:
    try:
        return load_settings(require_secret_key=serving, require_signed_events=serving)
    except SettingsError as error:
        print("invite-bot: the settings cannot run the bot:", file=sys.stderr)
        for line in error.problems:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(2) from None


async def _wait_for_stop_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def serve(settings: Settings) -> int:
    from bot.app import create_app
    from bot.listener import raise_file_limit, start_listener

    files = raise_file_limit()
    app = create_app(settings)
    try:
        # shutdown_timeout: how long in-flight webhook requests may take once we stop listening.
        runner, _ = await start_listener(app, settings.bot_host, settings.bot_port, shutdown_timeout=5.0)
    except Exception as error:
        log.error("start-up failed", error=str(error))
        return 1
    log.info("open-file limit", limit=files)
    log.info(
        "serving", address=f"http://{settings.bot_host}:{settings.bot_port}", events_path="/feishu/events"
    )
    await _wait_for_stop_signal()
    log.info("stopping: no new requests; letting running work finish", grace=settings.bot_shutdown_timeout)
    await runner.cleanup()
    log.info("stopped")
    return 0


async def emulator(host: str, port: int, webhook_url: str | None) -> int:
    from bot.emulator import EmulatorConfig
    from bot.emulator.server import serve_emulator

    config = EmulatorConfig() if webhook_url is None else EmulatorConfig(webhook_url=webhook_url)
    task = asyncio.create_task(serve_emulator(host, port, config))
    stop = asyncio.create_task(_wait_for_stop_signal())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    stop.cancel()
    await asyncio.gather(task, stop, return_exceptions=True)
    return 0


async def check(settings: Settings) -> int:
    from bot.checks import run_checks

    return await run_checks(settings)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="invite-bot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the bot's HTTP server (settings from the environment and .env)")
    emulator_parser = commands.add_parser("emulator", help="run the local Feishu emulator on loopback")
    emulator_parser.add_argument("--host", default="127.0.0.1")
    emulator_parser.add_argument("--port", type=int, default=9900)
    emulator_parser.add_argument("--webhook", default=None, help="the bot's /feishu/events URL")
    demo_parser = commands.add_parser("demo", help="emulator + bot + a scripted conversation, on loopback")
    demo_parser.add_argument("--console", action="store_true", help="talk to the bot yourself instead")
    commands.add_parser("check", help="validate the settings and the Feishu credentials")
    args = parser.parse_args(argv)

    if args.command == "serve":
        settings = _settings_or_exit(serving=True)
        configure_logging(settings.bot_log_format, settings.bot_log_level)
        code = asyncio.run(serve(settings))
    elif args.command == "emulator":
        configure_logging("console", "info")
        code = asyncio.run(emulator(args.host, args.port, args.webhook))
    elif args.command == "demo" and args.console:
        from bot.console import run_console

        code = asyncio.run(run_console())
    elif args.command == "demo":
        from bot.demo import run_demo

        code = asyncio.run(run_demo())
    else:
        settings = _settings_or_exit(serving=False)
        configure_logging("console", "warning")
        code = asyncio.run(check(settings))
    raise SystemExit(code)
