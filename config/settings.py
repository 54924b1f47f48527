"""Settings from the environment and `.env`, named as in shared/interface.md.

Every problem is reported at once, one line per variable, so an operator fixes a deployment in one pass
instead of discovering the mistakes one restart at a time.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

FEISHU_DOMAIN = "https://open.feishu.cn"
LARK_DOMAIN = "https://open.larksuite.com"
_ACCOUNTS_BY_DOMAIN = {
    FEISHU_DOMAIN: "https://accounts.feishu.cn",
    LARK_DOMAIN: "https://accounts.larksuite.com",
}
MIN_SECRET_KEY_BYTES = 32


def _http_url(value: str, name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL such as https://example.com")
    return value.rstrip("/")


class Settings(BaseSettings):
    """The public settings. Field names are the environment variable names, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        frozen=True,
    )

    feishu_app_id: str = Field(min_length=1)
    feishu_app_secret: SecretStr
    feishu_verification_token: SecretStr
    feishu_encrypt_key: SecretStr = SecretStr("")
    feishu_domain: str = FEISHU_DOMAIN
    # Empty means "derive from FEISHU_DOMAIN"; see `accounts_url`.
    feishu_accounts_url: str = ""

    bot_public_url: str = "http://127.0.0.1:8080"
    bot_host: str = "0.0.0.0"  # noqa: S104 - a server's listen address; operators narrow it
    bot_port: int = Field(default=8080, ge=0, le=65535)
    # When set, /metrics is served only on this port, on its own listener: the public one need not
    # expose counters that tell an outsider how busy the bot is and how often Feishu fails.
    bot_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Without an Encrypt Key, events carry no signature and no timestamp: anyone who learns the
    # Verification Token can forge them and replay them forever. `serve` refuses that unless told.
    bot_allow_unsigned_events: bool = False
    # How events and card callbacks arrive: Feishu POSTs them to /feishu/events, or the bot dials Feishu's
    # WebSocket (no public URL needed; enterprise custom apps only).
    bot_event_transport: Literal["webhook", "long-connection"] = "webhook"
    # How people authorize: the OAuth redirect back to /oauth/callback, or device authorization (they
    # approve on a Feishu page; nothing comes back to the bot over HTTP).
    bot_auth_flow: Literal["redirect", "device"] = "redirect"
    bot_store_url: str = "sqlite:///invite-bot.db"
    bot_secret_key: SecretStr | None = None
    # Earlier values of BOT_SECRET_KEY, comma-separated: records sealed under them stay readable and are
    # re-sealed under the current key when next written (key rotation).
    bot_secret_key_previous: SecretStr | None = None
    # What the bot asks each user for: inviting (vc:meeting), finding meetings (readonly) and a refresh
    # token so the user authorizes once, not every two hours (offline_access).
    bot_oauth_scopes: str = "vc:meeting vc:meeting:readonly vc:meeting.meetingevent:read offline_access"
    # The most people one /invite may invite, even with a confirmation.
    bot_invite_ceiling: int = Field(default=200, ge=1, le=1000)
    # Above this many people (or for @all with more), the sender confirms on a card first.
    bot_confirm_threshold: int = Field(default=10, ge=1, le=1000)
    bot_log_format: Literal["json", "console"] = "json"
    bot_log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Inbox tuning. Feishu retries an unacknowledged push for about 7.1 h (15 s, 5 min, 1 h, 6 h), so a
    # deduplication key must outlive that window or a late retry would be handled a second time.
    bot_dedupe_ttl_hours: float = Field(default=8.0, ge=8.0)
    # A worker waiting on Feishu (a slow call, the rate limiter) holds only its chat; 64 lets a burst over
    # 60 chats run at Feishu's 50 calls/s instead of queueing behind eight slow calls (bench/day_load.py).
    bot_inbox_workers: int = Field(default=64, ge=1, le=256)
    # How long a result card follows who joins the meeting after an invite; 0 turns the live card off.
    bot_meeting_watch_seconds: float = Field(default=120.0, ge=0, le=3600)
    # With 2 s doubling backoff, 8 attempts span about 4 min: enough to ride out a short Feishu outage.
    bot_inbox_max_attempts: int = Field(default=8, ge=1, le=50)
    bot_shutdown_timeout: float = Field(default=20.0, gt=0)
    # How far a signed request's timestamp may stray from our clock before it counts as a replay.
    bot_replay_window_seconds: int = Field(default=300, ge=30)

    @field_validator("feishu_app_id")
    @classmethod
    def _app_id_shape(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith("cli_"):
            raise ValueError("must be the App ID from the developer console, starting with 'cli_'")
        return value

    @field_validator("feishu_app_secret", "feishu_verification_token")
    @classmethod
    def _not_blank(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("feishu_domain")
    @classmethod
    def _domain_url(cls, value: str) -> str:
        return _http_url(value, "FEISHU_DOMAIN")

    @field_validator("feishu_accounts_url")
    @classmethod
    def _accounts_url(cls, value: str) -> str:
        return _http_url(value, "FEISHU_ACCOUNTS_URL") if value else ""

    @field_validator("bot_public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return _http_url(value, "BOT_PUBLIC_URL")

    @field_validator("bot_store_url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if value.startswith(("postgresql://", "postgres://")):
            return _postgres_url(value)
        if not value.startswith("sqlite:///") or value == "sqlite:///":
            raise ValueError(
                "must be sqlite:///relative/path.db, sqlite:////absolute/path.db or"
                " postgresql://user[:password]@host[:port]/database"
            )
        return value

    @field_validator("bot_metrics_port", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("bot_secret_key")
    @classmethod
    def _secret_key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value().encode()) < MIN_SECRET_KEY_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_KEY_BYTES} bytes of secret")
        return value

    @field_validator("bot_secret_key_previous")
    @classmethod
    def _previous_keys_length(cls, value: SecretStr | None) -> SecretStr | None:
        # A short old key is as weak as a short current one: whoever guesses it can forge records that
        # are still read. Each comma-separated entry is held to the same length as BOT_SECRET_KEY.
        if value is None or not value.get_secret_value().strip(", "):
            return None
        for number, key in enumerate(value.get_secret_value().split(","), start=1):
            if key and len(key.encode()) < MIN_SECRET_KEY_BYTES:
                raise ValueError(f"entry {number} must be at least {MIN_SECRET_KEY_BYTES} bytes of secret")
        return value

    @model_validator(mode="after")
    def _metrics_port_differs(self) -> Settings:
        if self.bot_metrics_port is not None and self.bot_metrics_port == self.bot_port != 0:
            raise ValueError("BOT_METRICS_PORT must differ from BOT_PORT")
        return self

    @field_validator("bot_oauth_scopes")
    @classmethod
    def _scopes(cls, value: str) -> str:
        scopes = value.split()
        if not scopes or len(set(scopes)) != len(scopes):
            raise ValueError("must be space-separated scope names, each once")
        return " ".join(scopes)

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """The current BOT_SECRET_KEY first, then the previous ones still accepted for reading."""
        current = self.bot_secret_key.get_secret_value() if self.bot_secret_key else ""
        previous = self.bot_secret_key_previous.get_secret_value() if self.bot_secret_key_previous else ""
        return tuple(key for key in (current, *previous.split(",")) if key)

    @field_validator("bot_log_format", "bot_log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if not self.feishu_accounts_url:
            derived = _ACCOUNTS_BY_DOMAIN.get(self.feishu_domain, self.feishu_domain)
            object.__setattr__(self, "feishu_accounts_url", derived)
        return self

    @property
    def encrypt_key(self) -> str:
        return self.feishu_encrypt_key.get_secret_value()

    @property
    def verification_token(self) -> str:
        return self.feishu_verification_token.get_secret_value()

    @property
    def oauth_redirect_uri(self) -> str:
        return f"{self.bot_public_url}/oauth/callback"


def _postgres_url(value: str) -> str:
    # The messages name the part that is wrong, never the URL: it may carry a password.
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("a postgresql:// URL with an unreadable host or port") from None
    if not parts.hostname:
        raise ValueError(
            "a postgresql:// URL needs a host: postgresql://user[:password]@host[:port]/database"
        )
    if not parts.path.strip("/") or "/" in parts.path.strip("/"):
        raise ValueError("a postgresql:// URL needs one database name: postgresql://user@host/database")
    if port == 0:
        raise ValueError("a postgresql:// URL's port must be 1-65535")
    return value


class SettingsError(Exception):
    """Settings that cannot run the bot; `problems` holds one readable line per variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _describe(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        name = str(item["loc"][0]).upper() if item["loc"] else "settings"
        if item["type"] == "missing":
            lines.append(f"{name}: missing; set it in the environment or in .env")
        else:
            # Never echo the offending value: it may be a secret pasted into the wrong variable.
            message = str(item["msg"]).removeprefix("Value error, ")
            lines.append(f"{name}: {message}")
    return lines


def load_settings(
    *, require_secret_key: bool = False, require_signed_events: bool = False, env_file: str | None = ".env"
) -> Settings:
    """Read and check the settings; raise SettingsError with every problem found."""
    try:
        settings = Settings(_env_file=env_file)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
    problems = []
    if require_secret_key and settings.bot_secret_key is None:
        problems.append(
            f"BOT_SECRET_KEY: missing; set at least {MIN_SECRET_KEY_BYTES} bytes of random secret"
        )
    # Over the long connection events come in plaintext down a socket the bot itself opened with the app's
    # credentials: there is nothing to sign, and no Encrypt Key is used.
    webhook = settings.bot_event_transport == "webhook"
    if (
        require_signed_events
        and webhook
        and not settings.encrypt_key
        and not settings.bot_allow_unsigned_events
    ):
        problems.append(
            "FEISHU_ENCRYPT_KEY: empty, so events would carry no signature and could be forged or replayed;"
            " set the Encrypt Key from the app's event settings (or BOT_ALLOW_UNSIGNED_EVENTS=true to accept"
            " unsigned events knowingly)"
        )
    if problems:
        raise SettingsError(problems)
    return settings
