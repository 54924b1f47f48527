"""Settings: every problem reported at once, one readable line per variable, secrets never echoed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import SettingsError, load_settings

REQUIRED = {
    "FEISHU_APP_ID": "cli_a1b2c3",
    "FEISHU_APP_SECRET": "app-secret-value",
    "FEISHU_VERIFICATION_TOKEN": "verification-token-value",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("FEISHU_", "BOT_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_missing_required_settings_are_each_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert error.value.problems == [
        "FEISHU_APP_ID: missing; set it in the environment or in .env",
        "FEISHU_APP_SECRET: missing; set it in the environment or in .env",
        "FEISHU_VERIFICATION_TOKEN: missing; set it in the environment or in .env",
    ]


def test_bad_values_each_get_one_line_without_echoing_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FEISHU_DOMAIN", "ftp://open.feishu.cn")
    monkeypatch.setenv("BOT_PORT", "eighty")
    monkeypatch.setenv("BOT_SECRET_KEY", "too-short-secret")
    monkeypatch.setenv("BOT_STORE_URL", "mysql://db/bot")
    with pytest.raises(SettingsError) as error:
        load_settings()
    problems = error.value.problems
    assert [line.split(":")[0] for line in problems] == [
        "FEISHU_DOMAIN",
        "BOT_PORT",
        "BOT_STORE_URL",
        "BOT_SECRET_KEY",
    ]
    assert "too-short-secret" not in "\n".join(problems)


def test_a_postgresql_store_url_is_checked_without_echoing_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BOT_STORE_URL", "postgresql://bot:hunter2@db.internal:5432/invite_bot")
    assert load_settings().bot_store_url.endswith("@db.internal:5432/invite_bot")
    for broken in (
        "postgresql://bot:hunter2@/invite_bot",
        "postgresql://bot:hunter2@db",
        "postgres://bot:hunter2@db:99999/x",
    ):
        monkeypatch.setenv("BOT_STORE_URL", broken)
        with pytest.raises(SettingsError) as error:
            load_settings()
        [problem] = error.value.problems
        assert problem.startswith("BOT_STORE_URL: a postgresql:// URL")
        assert "hunter2" not in problem


def test_secret_key_is_required_only_to_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.bot_secret_key is None
    with pytest.raises(SettingsError) as error:
        load_settings(require_secret_key=True)
    assert error.value.problems[0].startswith("BOT_SECRET_KEY: missing")


@pytest.mark.parametrize(
    ("domain", "accounts"),
    [
        ("https://open.feishu.cn", "https://accounts.feishu.cn"),
        ("https://open.larksuite.com", "https://accounts.larksuite.com"),
        ("http://127.0.0.1:9900/", "http://127.0.0.1:9900"),
    ],
)
def test_accounts_url_is_derived_from_domain(
    monkeypatch: pytest.MonkeyPatch, domain: str, accounts: str
) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FEISHU_DOMAIN", domain)
    assert load_settings().feishu_accounts_url == accounts


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("".join(f"{name}={value}\n" for name, value in REQUIRED.items()))
    settings = load_settings()
    assert settings.feishu_app_id == "cli_a1b2c3"
    assert "app-secret-value" not in repr(settings)


def test_serve_with_bad_settings_exits_with_lines_not_a_traceback(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("FEISHU_", "BOT_"))}
    env["FEISHU_APP_ID"] = "not-an-app-id"
    done = subprocess.run(
        [sys.executable, "-c", "from bot.cli import main; main()", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "invite-bot: the settings cannot run the bot:"
    assert lines[1].strip().startswith("FEISHU_APP_ID: must be the App ID")
    assert any(line.strip().startswith("FEISHU_APP_SECRET: missing") for line in lines)


def serve_with(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("FEISHU_", "BOT_"))}
    env.update(REQUIRED, BOT_SECRET_KEY="k" * 40, **extra)
    return subprocess.run(
        [sys.executable, "-c", "from bot.cli import main; main()", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_serve_refuses_unsigned_events_naming_the_variable(tmp_path: Path) -> None:
    done = serve_with(tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [problem] = done.stderr.strip().splitlines()[1:]
    assert problem.strip().startswith("FEISHU_ENCRYPT_KEY: empty")
    assert "BOT_ALLOW_UNSIGNED_EVENTS=true" in problem


def test_unsigned_events_are_accepted_only_when_said_so(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError):
        load_settings(require_signed_events=True)
    monkeypatch.setenv("BOT_ALLOW_UNSIGNED_EVENTS", "true")
    assert load_settings(require_signed_events=True).bot_allow_unsigned_events
    monkeypatch.setenv("BOT_ALLOW_UNSIGNED_EVENTS", "false")
    monkeypatch.setenv("FEISHU_ENCRYPT_KEY", "an-encrypt-key")
    assert load_settings(require_signed_events=True).encrypt_key == "an-encrypt-key"


def test_previous_secret_keys_are_held_to_the_same_length(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BOT_SECRET_KEY_PREVIOUS", f"{'a' * 32},short-old-key")
    with pytest.raises(SettingsError) as error:
        load_settings()
    [problem] = error.value.problems
    assert problem == "BOT_SECRET_KEY_PREVIOUS: entry 2 must be at least 32 bytes of secret"
    assert "short-old-key" not in problem
    monkeypatch.setenv("BOT_SECRET_KEY_PREVIOUS", f"{'a' * 32},{'b' * 40}")
    assert len(load_settings().secret_keys) == 2


@pytest.mark.parametrize(("value", "expected"), [("", None), ("9191", 9191)])
def test_metrics_port_is_optional(monkeypatch: pytest.MonkeyPatch, value: str, expected: int | None) -> None:
    for name, setting in REQUIRED.items():
        monkeypatch.setenv(name, setting)
    monkeypatch.setenv("BOT_METRICS_PORT", value)
    assert load_settings().bot_metrics_port == expected
    monkeypatch.setenv("BOT_METRICS_PORT", "8080")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "BOT_METRICS_PORT must differ from BOT_PORT" in error.value.problems[0]
