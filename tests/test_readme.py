"""The README cannot drift: its settings table is the settings model, its commands exist, and CI runs
the test command it shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_settings_table_is_the_settings_model() -> None:
    listed: set[str] = set()
    for first, second in re.findall(r"^\| `([A-Z_]+)`(?: / `([A-Z_]+)`)? \|", README, re.MULTILINE):
        listed.update(name for name in (first, second) if name)
    assert listed == {name.upper() for name in Settings.model_fields}


def test_every_invite_bot_command_in_the_readme_and_docs_exists() -> None:
    docs = "".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))
    # "exec invite-bot python" names the compose service, not our command.
    used = set(re.findall(r"(?<!exec )(?<![\w-])invite-bot (\w+)", README + docs))
    assert {"demo", "serve", "emulator", "check"} <= used
    for command in used:
        done = subprocess.run(  # noqa: S603 - our own CLI, names read from our README
            [sys.executable, "-c", "from bot.cli import main; main()", command, "--help"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, command


def test_ci_runs_the_readme_commands_verbatim() -> None:
    blocks = re.findall(r"```sh\n(?:#[^\n]*\n)?([^\n]+)\n```", README)
    demo, tests = blocks[0], blocks[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci
    assert demo.endswith("invite-bot demo")
    assert ".venv/bin/invite-bot demo" in ci
