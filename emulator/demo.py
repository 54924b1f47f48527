"""`invite-bot demo`: the emulator, the bot and a scripted conversation, all on loopback.

Needs no Feishu app, no credentials and no network. Prints the conversation as a transcript and exits 0
only when every step happened as scripted.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web

from bot.app import create_app, runtime_of
from bot.logs import configure_logging
from config import Settings
from emulator import Emulator, EmulatorConfig
from emulator.config import MEETING_IN_PROGRESS, DirectoryUser
from emulator.device import VERIFY_PATH as DEVICE_VERIFY_PATH
from emulator.render import render_message
from emulator.server import start_emulator

DEMO_WATCH_SECONDS = 8.0


@dataclass
class Step:
    title: str
    ok: bool
    detail: str = ""


def _say(who: str, chat: str, text: str) -> None:
    print(f"\n{who} in {chat}:  {text}")


def _show_new_replies(emulator: Emulator, seen: int) -> int:
    names = {user.open_id: user.name for user in emulator.config.users}
    for message in emulator.messages[seen:]:
        print("InviteBot replies:")
        print(render_message(message.msg_type, message.content, names=names))
    return len(emulator.messages)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def loopback_world(
    *, no_public_url: bool = False, watch_seconds: float = DEMO_WATCH_SECONDS
) -> AsyncIterator[tuple[Emulator, web.Application]]:
    """The emulator and the bot on free loopback ports, with a store in a temporary folder. With
    `no_public_url`, the bot dials the emulator's long connection and people authorize on its device
    page: nothing reaches the bot over HTTP (it listens for health only). `watch_seconds`: how long a
    result card follows the meeting (the console turns it off: it shows a card after each line typed)."""
    with tempfile.TemporaryDirectory(prefix="invite-bot-demo-") as workdir:
        emulator, emulator_runner, emulator_url = await start_emulator(EmulatorConfig())
        config = emulator.config
        port = _free_port()
        settings = Settings(
            _env_file=None,
            feishu_app_id=config.app_id,
            feishu_app_secret=config.app_secret,
            feishu_verification_token=config.verification_token,
            feishu_encrypt_key=config.encrypt_key,
            feishu_domain=emulator_url,
            bot_host="127.0.0.1",
            bot_port=port,
            # Where the OAuth redirect brings the browser back: this bot, on loopback.
            bot_public_url=f"http://127.0.0.1:{port}",
            bot_store_url=f"sqlite:///{Path(workdir) / 'demo.db'}",
            bot_secret_key=secrets.token_urlsafe(32),
            bot_log_format="console",
            bot_log_level="warning",
            bot_event_transport="long-connection" if no_public_url else "webhook",
            bot_auth_flow="device" if no_public_url else "redirect",
            # Long enough to see people answer, short enough for a demo (120 s in service).
            bot_meeting_watch_seconds=watch_seconds,
        )
        if no_public_url:
            emulator.transport = "long-connection"
            emulator.devices.interval = 1  # Feishu asks for 5 s between polls; a demo need not wait
        app = create_app(settings, watch_every_seconds=1.0)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        try:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", port)
            await site.start()
            if no_public_url:
                await asyncio.wait_for(emulator.long_connection.connected.wait(), 10)
                where = f"Feishu emulator on {emulator_url}; the bot dialled its long connection"
            else:
                emulator.webhook_url = f"{settings.bot_public_url}/feishu/events"
                where = f"Feishu emulator on {emulator_url}; bot on {settings.bot_public_url}"
            print(f"{where} (store in a temporary folder)")
            yield emulator, app
        finally:
            await runner.cleanup()
            await emulator.close()
            await emulator_runner.cleanup()


async def run_demo(*, no_public_url: bool = False) -> int:
    configure_logging("console", "warning")
    started = time.perf_counter()
    async with loopback_world(no_public_url=no_public_url) as (emulator, app):
        steps = await _conversation(emulator, app)
        if no_public_url:
            # The emulator, the only client here, never had a URL of the bot: every push and click went
            # down the socket (a push without one raises), and the authorization never came back by browser.
            steps.append(Step("no request reached the bot over HTTP", emulator.webhook_url is None))
    elapsed = time.perf_counter() - started
    print("\nScript:")
    for step in steps:
        print(f"  {'ok  ' if step.ok else 'FAIL'} {step.title}" + (f": {step.detail}" if step.detail else ""))
    passed = bool(steps) and all(step.ok for step in steps)
    print(
        f"\ndemo {'passed' if passed else 'FAILED'} in {elapsed:.2f} s",
        file=sys.stdout if passed else sys.stderr,
    )
    return 0 if passed else 1


async def _conversation(emulator: Emulator, app: web.Application) -> list[Step]:
    users = {user.name: user for user in emulator.config.users}
    alice = next(iter(users.values()))
    group = next(chat for chat in emulator.config.chats if chat.chat_type == "group" and chat.bot_is_member)
    steps: list[Step] = []
    seen = 0

    where = group.name or group.chat_id
    _say(alice.name, where, "@InviteBot /help")
    first = emulator.build_say_event(alice.open_id, group.chat_id, "/help")
    pushed = await emulator.push(first)
    steps.append(
        Step(
            "Feishu delivered the message and got 200 at once",
            pushed.status == 200,
            f"HTTP {pushed.status} in {pushed.elapsed_ms:.1f} ms",
        )
    )
    try:
        [reply] = await emulator.wait_for_messages(1, chat_id=group.chat_id, timeout=10)
    except TimeoutError:
        steps.append(Step("the bot answered /help with a card", False, "no reply within 10 s"))
        return steps
    seen = _show_new_replies(emulator, seen)
    steps.append(
        Step(
            "the bot answered /help with a card",
            reply.msg_type == "interactive" and "/help" in str(reply.content),
        )
    )

    print("\n(Feishu delivers that message twice more: a retry, and a second push under a new event_id)")
    message_id = first["event"]["message"]["message_id"]
    retry = await emulator.push(first)
    repush = await emulator.push(
        emulator.build_say_event(alice.open_id, group.chat_id, "/help", message_id=message_id)
    )
    _say(alice.name, where, "@InviteBot /hepl")
    typo = await emulator.say(alice.open_id, group.chat_id, "/hepl")
    try:
        await emulator.wait_for_messages(2, chat_id=group.chat_id, timeout=10)
    except TimeoutError:
        steps.append(Step("a typo gets 'did you mean'", False, "no reply within 10 s"))
        return steps
    await runtime_of(app).inbox.wait_idle(5)
    _show_new_replies(emulator, seen)
    statuses = (retry.status, repush.status, typo.status)
    steps.append(
        Step(
            "the repeated deliveries were acknowledged and not answered again",
            statuses == (200, 200, 200) and len(emulator.messages) == 2,
            f"{len(emulator.messages)} replies to 2 distinct messages",
        )
    )
    typo_answered = "Did you mean `/help`?" in str(emulator.messages[-1].content)
    steps.append(Step("a typo gets 'did you mean'", typo_answered))
    steps += await _first_invite(emulator, app, alice.name, alice.open_id, group.chat_id, where)
    return steps


def _authorize_link(card: dict[str, Any]) -> str | None:
    """The Authorize button's link in the private (JSON 1.0) prompt."""
    for element in card.get("elements", []):
        for action in element.get("actions", []):
            if isinstance(action.get("url"), str):
                return str(action["url"])
    return None


async def _first_invite(
    emulator: Emulator, app: web.Application, name: str, open_id: str, chat_id: str, where: str
) -> list[Step]:
    """The product, first time: /invite asks privately to authorize, goes on by itself once approved,
    reports one person who could not be rung, and a click on Retry failed rings them."""
    others = [user for user in emulator.config.users if user.open_id != open_id][:2]
    if len(others) < 2:
        return [Step("/invite", False, "the emulator's directory has fewer than three people")]
    invitee, busy = others
    emulator.set_busy(MEETING_IN_PROGRESS, busy.open_id)  # in another call: Feishu cannot ring them
    emulator.answer_when_invited(invitee.open_id, "join", 2)  # picks up after two seconds of ringing
    for meeting_id in emulator.active_meetings_of(open_id):
        if meeting_id != MEETING_IN_PROGRESS:  # one meeting at a time, as people are
            emulator.leave_meeting(meeting_id, open_id)
    answered = len(emulator.messages)
    # No number: the bot asks Feishu which meeting the sender is in (feishu-protocol §14).
    print(f"({name} is in the meeting 123 456 789 and does not type its number)")
    text = f"/invite @{invitee.name} @{busy.name}"
    _say(name, where, f"@InviteBot {text}")
    await emulator.say(open_id, chat_id, text)
    try:
        [prompt] = await emulator.wait_for_ephemeral(1, open_id=open_id, timeout=10)
    except TimeoutError:
        return [Step("the bot asked privately for authorization", False, "no prompt within 10 s")]
    print(f"InviteBot, visible to {name} only:")
    print(render_message("interactive", prompt.card))
    link = _authorize_link(prompt.card)
    steps = [
        Step(
            "a first /invite asked privately for authorization",
            link is not None and not emulator.messages[answered:] and not emulator.invite_calls,
        )
    ]
    if link is None:
        return steps
    if urlsplit(link).path == DEVICE_VERIFY_PATH:
        print(f"\n{name} taps Authorize and approves on Feishu's page; nothing comes back to the bot:")
        emulator.devices.approve(parse_qs(urlsplit(link).query)["user_code"][0], open_id)
        status = 200
        print("  授权成功 · Authorized (the bot learns it by polling Feishu)")
    else:
        print(f"\n{name} taps Authorize, approves on Feishu's page, and the browser returns to the bot:")
        async with (
            aiohttp.ClientSession() as session,
            session.get(emulator.authorize(link, as_user=open_id)) as page,
        ):
            status = page.status
        print(f"  HTTP {status}: 授权成功 · Authorized" if status == 200 else f"  HTTP {status}")
    steps.append(Step("the authorization was accepted", status == 200))
    print(f"({busy.name} is in another call)")
    try:
        await emulator.wait_for_messages(answered + 1, chat_id=chat_id, timeout=10)
    except TimeoutError:
        steps.append(Step("the /invite went on without retyping", False, "no reply within 10 s"))
        return steps
    _show_new_replies(emulator, answered)
    card = emulator.messages[-1]
    content = str(card.content)
    calls = emulator.invite_calls
    steps.append(
        Step(
            f"the /invite went on by itself and rang {invitee.name} and {busy.name}, as {name}",
            bool(calls) and list(calls[-1].invitee_ids) == [invitee.open_id, busy.open_id],
        )
    )
    steps.append(
        Step(
            "the result card says who was invited and who was not",
            "Invited 1" in content and f"<at id={busy.open_id}>" in content and "could not invite" in content,
        )
    )
    steps += await _retry(emulator, name, open_id, card.message_id, invitee, busy)
    return steps


async def _retry(
    emulator: Emulator, name: str, open_id: str, message_id: str, invitee: DirectoryUser, busy: DirectoryUser
) -> list[Step]:
    emulator.set_busy(MEETING_IN_PROGRESS, busy.open_id, busy=False)
    print(f"\n({busy.name}'s call ended.) {name} clicks [ Retry failed ] on the card:")
    buttons = [b for b in emulator.card_buttons(message_id) if "Retry" in str(b.get("text"))]
    value = buttons[0]["value"] if buttons else None
    if not isinstance(value, dict):
        return [Step("the card offers Retry failed", False)]
    before = len([update for update in emulator.card_updates if update.message_id == message_id])
    result = await emulator.click(open_id, message_id, value)
    toast = (result.toast or {}).get("content", "")
    print(f"  toast within {result.elapsed_ms:.0f} ms: {toast}")
    names = {user.open_id: user.name for user in emulator.config.users}
    retried = await _card_shows(emulator, message_id, before, "Invited 2", within=10)
    if retried is not None:
        print("InviteBot updates its card:")
        print(render_message("interactive", retried, names=names))
    steps = [
        Step("the click was answered in time with a toast", result.ok and result.elapsed_ms < 2500),
        Step(
            f"Retry failed rang {busy.name} and the card now says everyone was invited", retried is not None
        ),
    ]
    print(f"\n(The card follows the meeting for {DEMO_WATCH_SECONDS:.0f} s: {busy.name} lets it ring.)")
    last = await _card_shows(emulator, message_id, before, "As of", within=DEMO_WATCH_SECONDS + 10)
    if last is not None:
        print("InviteBot's card, when it stops following the meeting:")
        print(render_message("interactive", last, names=names))
    text = str(last)
    steps.append(
        Step(
            f"the card followed the meeting: {invitee.name} joined, {busy.name} did not answer",
            last is not None and "1 of 2 joined" in text and "Did not answer (1)" in text,
        )
    )
    steps.append(Step("the finished card offers Remind the missing", "Remind the missing" in text))
    return steps


async def _card_shows(
    emulator: Emulator, message_id: str, after: int, wanted: str, *, within: float
) -> dict[str, Any] | None:
    """The first version of the card, among those after the first `after`, that says `wanted`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        updates = [update for update in emulator.card_updates if update.message_id == message_id][after:]
        for update in updates:
            if wanted in str(update.content):
                return update.content
        await asyncio.sleep(0.1)
    return None
