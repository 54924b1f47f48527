"""The command table: each command declared once, with what /help and error messages say about it."""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from handlers.context import CommandContext
from handlers.i18n import Text

# Longer than any command word plus a few typos.
MAX_SUGGESTED_LENGTH = 32

CommandHandler = Callable[[CommandContext], Awaitable[None]]


@dataclass(frozen=True)
class Command:
    name: str
    summary: Text
    usage: str
    examples: tuple[str, ...]
    handler: CommandHandler
    aliases: tuple[str, ...] = field(default=())

    @property
    def words(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


class CommandTable:
    def __init__(self) -> None:
        self._commands: list[Command] = []
        self._by_word: dict[str, Command] = {}

    def add(self, command: Command) -> None:
        for word in command.words:
            if word.casefold() in self._by_word:
                raise ValueError(f"command word {word!r} declared twice")
            self._by_word[word.casefold()] = command
        self._commands.append(command)

    def all(self) -> list[Command]:
        return list(self._commands)

    def find(self, word: str) -> Command | None:
        return self._by_word.get(word.casefold())

    def suggest(self, word: str) -> Command | None:
        """The command a mistyped word most likely meant, if any is close enough."""
        if len(word) > MAX_SUGGESTED_LENGTH:
            return None  # nothing that long is a typo of a short command word, and matching costs
        close = difflib.get_close_matches(word.casefold(), list(self._by_word), n=1, cutoff=0.6)
        return self._by_word[close[0]] if close else None
