"""The `invite-bot` command: serve and check, plus the subcommands other packages add (emulator, demo)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Protocol

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


async def serve(settings: Settings) -> int:
    from bot.app import create_app
    from bot.listener import raise_file_limit, start_listener, until_stop_signal

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
    await until_stop_signal()
    log.info("stopping: no new requests; letting running work finish", grace=settings.bot_shutdown_timeout)
    await runner.cleanup()
    log.info("stopped")
    return 0


async def check(settings: Settings) -> int:
    from bot.checks import run_checks

    return await run_checks(settings)


# Subcommands other packages add to `invite-bot` (the emulator adds `emulator` and `demo`): found by
# entry point, so the bot itself never imports them. Each entry point names a `Subcommand`.
SUBCOMMANDS_GROUP = "invite_bot.commands"


class Subcommand(Protocol):
    help: str

    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _added_subcommands() -> dict[str, Subcommand]:
    found: dict[str, Subcommand] = {}
    for entry in entry_points(group=SUBCOMMANDS_GROUP):
        if entry.name in ("serve", "check"):
            continue
        try:
            found[entry.name] = entry.load()
        except ImportError:
            # Registered but not shipped (the production image leaves the emulator out): no such command.
            continue
    return found


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="invite-bot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the bot's HTTP server (settings from the environment and .env)")
    added = _added_subcommands()
    for name, subcommand in sorted(added.items()):
        subcommand.configure(commands.add_parser(name, help=subcommand.help))
    commands.add_parser("check", help="validate the settings and the Feishu credentials")
    args = parser.parse_args(argv)

    if args.command == "serve":
        settings = _settings_or_exit(serving=True)
        configure_logging(settings.bot_log_format, settings.bot_log_level)
        code = asyncio.run(serve(settings))
    elif args.command in added:
        code = added[args.command].run(args)
    else:
        settings = _settings_or_exit(serving=False)
        configure_logging("console", "warning")
        code = asyncio.run(check(settings))
    raise SystemExit(code)
