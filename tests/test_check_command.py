"""`invite-bot check` against the emulator: passes with the right credentials, fails clearly otherwise."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulator import Emulator
from emulator.server import start_emulator
from tests.harness import free_port


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[Emulator, str]]:
    emulator, runner, url = await start_emulator()
    try:
        yield emulator, url
    finally:
        await emulator.close()
        await runner.cleanup()


async def run_check(env_overrides: dict[str, str], cwd: Path) -> tuple[int, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("FEISHU_", "BOT_"))}
    env.update(env_overrides)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from bot.cli import main; main()",
        "check",
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, output.decode()


def env_for(emulator: Emulator, url: str) -> dict[str, str]:
    config = emulator.config
    return {
        "FEISHU_APP_ID": config.app_id,
        "FEISHU_APP_SECRET": config.app_secret,
        "FEISHU_VERIFICATION_TOKEN": config.verification_token,
        "FEISHU_DOMAIN": url,
        "BOT_PUBLIC_URL": "https://bot.example.com",
    }


async def test_check_passes_and_prints_what_to_register(
    emulator: tuple[Emulator, str], tmp_path: Path
) -> None:
    code, output = await run_check(env_for(*emulator), tmp_path)
    assert code == 0, output
    assert "credentials: ok" in output
    assert "https://bot.example.com/feishu/events" in output
    assert "https://bot.example.com/oauth/callback" in output
    assert "im:message.group_at_msg:readonly" in output
    assert "vc:meeting vc:meeting:readonly vc:meeting.meetingevent:read offline_access" in output
    assert emulator[0].config.app_secret not in output


async def test_check_fails_clearly_on_a_wrong_secret(emulator: tuple[Emulator, str], tmp_path: Path) -> None:
    env = env_for(*emulator) | {"FEISHU_APP_SECRET": "wrong-secret"}
    code, output = await run_check(env, tmp_path)
    assert code == 1
    assert "credentials: FAILED" in output
    assert "Traceback" not in output
    assert "wrong-secret" not in output


async def test_check_fails_clearly_on_a_wrong_domain(emulator: tuple[Emulator, str], tmp_path: Path) -> None:
    env = env_for(*emulator) | {"FEISHU_DOMAIN": f"http://127.0.0.1:{free_port()}"}
    code, output = await run_check(env, tmp_path)
    assert code == 1
    assert "credentials: FAILED" in output
    assert "Traceback" not in output


async def test_check_in_long_connection_mode_opens_the_socket_once(
    emulator: tuple[Emulator, str], tmp_path: Path
) -> None:
    hub = emulator[0].long_connection
    code, output = await run_check(env_for(*emulator) | {"BOT_EVENT_TRANSPORT": "long-connection"}, tmp_path)
    assert code == 0, output
    assert "long connection: ok" in output
    assert "/feishu/events" not in output  # no URL to register: that is the point
    assert "access_key" not in output  # the socket URL carries credentials
    assert hub.endpoint_calls == 1
    assert hub.connections == []  # opened and closed again


@pytest.mark.parametrize(
    ("refusal", "explained"),
    [
        ({"endpoint": (1000040351, "app type not supported")}, "enterprise custom apps"),
        ({"handshake": (514, "1000040350")}, "50 connections per app"),
    ],
)
async def test_check_explains_why_the_long_connection_is_refused(
    emulator: tuple[Emulator, str], tmp_path: Path, refusal: dict[str, tuple[int, str]], explained: str
) -> None:
    hub = emulator[0].long_connection
    hub.refuse_endpoint = refusal.get("endpoint")
    hub.refuse_handshake = refusal.get("handshake")
    code, output = await run_check(env_for(*emulator) | {"BOT_EVENT_TRANSPORT": "long-connection"}, tmp_path)
    assert code == 1
    assert "long connection: FAILED" in output
    assert explained in output
    assert "Traceback" not in output
