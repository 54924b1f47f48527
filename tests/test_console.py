"""`invite-bot demo --console`, driven through its standard input like a person at a terminal."""

from __future__ import annotations

import subprocess
import sys


def test_console_session_through_stdin() -> None:
    typed = "\n".join(
        [
            "/help",
            "/invite 123456789 @Bob @Carol",
            ":authorize",
            ":as Bob",
            ":who",
            "/logout",
            ":click nothing-like-this",
            ":quit",
            "/help",  # after :quit: never read
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", "from bot.cli import main; main()", "demo", "--console"],
        input=typed + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert "Invite bot · how to use" in out
    assert "visible to Alice only" in out  # the private authorization prompt
    assert "[browser] HTTP 200" in out
    assert "Invited 2" in out  # the /invite went on by itself after authorizing
    assert "@Bob @Carol" in out
    assert "you are Bob in Team" in out
    assert "You had not authorized me" in out  # Bob's /logout
    assert "no button with 'nothing-like-this'" in out
    assert out.count("Invite bot · how to use") == 1
