"""`invite-bot demo --console`: talk to the bot as any emulator user, Errbot-style, on loopback.

Lines are messages from the current user in the current chat (`@Name` mentions resolve against the
emulator's directory); lines starting with `:` steer the session.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any, TextIO

import aiohttp
from aiohttp import web

from bot.app import runtime_of
from bot.logs import configure_logging
from emulator import Emulator
from emulator.demo import loopback_world
from emulator.render import render_message

HELP = """Type a message as the current user, e.g.  /invite 123456789 @Bob
  :as NAME        speak as another person (Alice, Bob, Carol)
  :in CHAT        move to another chat (by name, e.g. Team)
  :click TEXT     press the newest button whose label contains TEXT (e.g. :click retry)
  :pick NAMES     with :click "Invite more": the people to pick, e.g. :pick Carol Bob
  :authorize      open the newest authorization link and approve it as the current user
  :who            show who you are and where
  :quit           leave"""


async def _lines(stream: TextIO) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, stream.readline)
        if not line:
            return
        yield line.rstrip("\n")


class Console:
    def __init__(self, emulator: Emulator, app: web.Application, out: TextIO) -> None:
        self._emulator = emulator
        self._app = app
        self._out = out
        users = emulator.config.users
        self._people = {user.name.casefold(): user for user in users}
        self._names = {user.open_id: user.name for user in users}
        self._user = users[0]
        self._chat = next(
            chat for chat in emulator.config.chats if chat.chat_type == "group" and chat.bot_is_member
        )
        self._seen = 0
        self._seen_private = 0
        self._seen_updates = 0
        self._picked: list[str] = []

    def say(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    async def handle(self, line: str) -> bool:
        """Act on one line; False when the session should end."""
        line = line.strip()
        if not line:
            return True
        if not line.startswith(":"):
            await self._emulator.say(self._user.open_id, self._chat.chat_id, line)
        else:
            word, _, rest = line[1:].partition(" ")
            word = word.casefold()
            if word in ("quit", "q", "exit"):
                return False
            steps = {"as": self._as, "in": self._in, "click": self._click, "pick": self._pick}
            if word in steps:
                await steps[word](rest.strip())
            elif word == "authorize":
                await self._authorize()
            elif word == "who":
                self.say(f"you are {self._user.name} in {self._chat.name or self._chat.chat_id}")
            else:
                self.say(HELP)
        await self._show()
        return True

    async def _as(self, name: str) -> None:
        person = self._people.get(name.casefold())
        if person is None:
            self.say(
                f"nobody called {name!r}; try one of: {', '.join(u.name for u in self._people.values())}"
            )
            return
        self._user = person
        self.say(f"you are now {person.name}")

    async def _in(self, name: str) -> None:
        chat = next(
            (c for c in self._emulator.config.chats if (c.name or c.chat_id).casefold() == name.casefold()),
            None,
        )
        if chat is None:
            self.say(f"no chat called {name!r}")
            return
        self._chat = chat
        self.say(f"you are now in {chat.name or chat.chat_id}")

    async def _pick(self, names: str) -> None:
        picked = [
            self._people[name.casefold()].open_id for name in names.split() if name.casefold() in self._people
        ]
        self._picked = picked
        self.say(f"picked: {', '.join(self._names[p] for p in picked) or 'nobody'}")

    async def _click(self, label: str) -> None:
        for message in reversed(self._emulator.messages):
            if message.chat_id != self._chat.chat_id:
                continue
            for button in self._emulator.card_buttons(message.message_id):
                if label.casefold() in str(button.get("text", "")).casefold() and isinstance(
                    button["value"], dict
                ):
                    form: dict[str, Any] = {"people": self._picked} if self._picked else {}
                    result = await self._emulator.click(
                        self._user.open_id, message.message_id, button["value"], form_value=form or None
                    )
                    toast = result.toast or {}
                    self.say(f"[toast] {toast.get('content', result.error or '')}")
                    return
        self.say(f"no button with {label!r} in this chat")

    async def _authorize(self) -> None:
        link = self._authorize_link()
        if link is None:
            self.say("no authorization link for you yet")
            return
        location = self._emulator.authorize(link, as_user=self._user.open_id)
        async with aiohttp.ClientSession() as session, session.get(location) as page:
            self.say(f"[browser] HTTP {page.status}")

    def _authorize_link(self) -> str | None:
        cards = [m.card for m in self._emulator.ephemeral_messages if m.open_id == self._user.open_id]
        cards += [m.content for m in self._emulator.messages]
        for card in reversed(cards):
            for element in [*card.get("elements", []), *card.get("body", {}).get("elements", [])]:
                for action in element.get("actions", []):
                    if "url" in action:
                        return str(action["url"])
                for behavior in element.get("behaviors", []):
                    if behavior.get("type") == "open_url":
                        return str(behavior["default_url"])
        return None

    async def _show(self) -> None:
        await runtime_of(self._app).inbox.wait_idle(15)
        await asyncio.sleep(0.05)  # a card update after a click lands just after the inbox goes idle
        for message in self._emulator.messages[self._seen :]:
            where = next((c.name for c in self._emulator.config.chats if c.chat_id == message.chat_id), "")
            self.say(f"InviteBot in {where or message.chat_id}:")
            self.say(render_message(message.msg_type, message.content, names=self._names))
        self._seen = len(self._emulator.messages)
        private = self._emulator.ephemeral_messages
        for card in private[self._seen_private :]:
            if not card.deleted:
                self.say(f"InviteBot, visible to {self._names.get(card.open_id, card.open_id)} only:")
                self.say(render_message("interactive", card.card, names=self._names))
        self._seen_private = len(private)
        for update in self._emulator.card_updates[self._seen_updates :]:
            self.say("InviteBot updated its card:")
            self.say(render_message("interactive", update.content, names=self._names))
        self._seen_updates = len(self._emulator.card_updates)


async def run_console(stream: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    configure_logging("console", "error")
    async with loopback_world(watch_seconds=0) as (emulator, app):
        console = Console(emulator, app, out)
        console.say(HELP)
        console.say("you are Alice in Team")
        async for line in _lines(stream):
            if not await console.handle(line):
                break
    return 0
