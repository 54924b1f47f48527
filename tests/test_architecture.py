"""The rooms of the house and what each may import (docs/architecture.md), checked on every module.

Every import counts, including those inside functions: a lazy import is still a dependency. A rule
broken here fails CI; `test_a_forbidden_import_is_caught` shows the checker catching one.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers", "config", "emulator")

# Leaf modules anyone may use: time, counters, log set-up.
LEAVES = ("bot.clock", "bot.metrics", "bot.logs")


@dataclass(frozen=True)
class Room:
    """Modules under `prefix` may import only modules under `may_import` (and the standard library and
    third-party packages, which are not our rooms)."""

    prefix: str
    may_import: tuple[str, ...]


# Longest prefix first: a module belongs to the most specific room that names it.
ROOMS = (
    Room("config", ("config",)),
    Room("bot.clock", ("bot.clock",)),
    Room("bot.metrics", ("bot.metrics",)),
    Room("bot.logs", ("bot.logs",)),
    Room("bot.feishu", ("bot.feishu", "config", "bot.clock", "bot.metrics")),
    Room("bot.store", ("bot.store", "config")),
    Room("bot.inbox", ("bot.inbox", "bot.feishu", "bot.store", "config", *LEAVES)),
    Room("bot.oauth", ("bot.oauth", "bot.feishu", "bot.store", "config", *LEAVES)),
    Room("handlers", ("handlers", "bot.feishu", "bot.store", "bot.oauth", "config", *LEAVES)),
    # The wiring (web, app, cli, listener, checks): all of the bot, never the emulator.
    Room("bot", ("bot", "handlers", "config")),
    # The emulator shares the platform's crypto and models and runs the bot for the demo; it never
    # reaches into the bot's handlers, and nothing of the bot's reaches into it.
    Room("emulator", ("emulator", "bot.feishu", "bot.app", "bot.listener", "config", *LEAVES)),
)


def room_of(module: str) -> Room:
    for room in sorted(ROOMS, key=lambda room: len(room.prefix), reverse=True):
        if module == room.prefix or module.startswith(room.prefix + "."):
            return room
    raise AssertionError(f"{module} is in no room: add it to ROOMS and docs/architecture.md")


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def imports_of(source: str, module: str, *, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import of our own packages in `source`."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            names = [base]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                yield node.lineno, name


def violations(root: Path) -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).with_suffix("")
            is_package = relative.name == "__init__"
            module = ".".join(relative.parts[:-1] if is_package else relative.parts)
            room = room_of(module)
            for line, imported in imports_of(path.read_text(), module, is_package=is_package):
                if not any(within(imported, allowed) for allowed in room.may_import):
                    found.append(
                        f"{path.relative_to(root)}:{line}: {module} ({room.prefix}) imports {imported}"
                    )
    return found


def test_every_module_keeps_to_its_room() -> None:
    assert violations(ROOT) == []


def test_a_forbidden_import_is_caught(tmp_path: Path) -> None:
    (tmp_path / "bot" / "feishu").mkdir(parents=True)
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
    (tmp_path / "bot" / "feishu" / "client.py").write_text(
        "def later() -> None:\n    from handlers.invite.command import proceed\n"
    )
    (tmp_path / "bot" / "web.py").write_text("from emulator import Emulator\n")
    (tmp_path / "handlers" / "router.py").write_text("from bot import web\nfrom . import cards\n")
    assert violations(tmp_path) == [
        "bot/feishu/client.py:2: bot.feishu.client (bot.feishu) imports handlers.invite.command",
        "bot/web.py:1: bot.web (bot) imports emulator",
        "handlers/router.py:1: handlers.router (handlers) imports bot",
    ]


def test_every_protocol_citation_resolves_in_the_repository() -> None:
    protocol = (ROOT / "docs" / "feishu-protocol.md").read_text()
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", protocol, re.MULTILINE))
    cited: dict[str, list[str]] = {}
    for package in (*PACKAGES, "tests", "bench"):
        for path in (ROOT / package).rglob("*.py"):
            for number in re.findall(r"feishu-protocol §(\d+(?:\.\d+)?)", path.read_text()):
                cited.setdefault(number, []).append(str(path.relative_to(ROOT)))
    assert cited, "no citations found: has the citation form changed?"
    assert {number: paths for number, paths in cited.items() if number not in sections} == {}
