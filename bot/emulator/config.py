"""What the emulated tenant looks like: the app's credentials, the bot, and a small directory.

Frozen so one configuration can be shared by a test, the emulator and the bot under test without anyone
changing it underneath the others. The defaults are what the demo and most tests use as they are.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DirectoryUser(BaseModel):
    """One person in the emulated tenant, with the IDs Feishu gives a person (reference §2)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    open_id: str = Field(pattern=r"^ou_[A-Za-z0-9_]+$")
    name: str = Field(min_length=1)
    en_name: str = ""
    email: str = ""
    union_id: str = ""
    user_id: str = ""


class DirectoryChat(BaseModel):
    """One chat. `bot_is_member=False` makes the Open API answer 230002 when the bot posts there."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chat_id: str = Field(pattern=r"^oc_[A-Za-z0-9_]+$")
    name: str = ""
    chat_type: Literal["group", "p2p"] = "group"
    members: tuple[str, ...] = ()
    bot_is_member: bool = True


_DEFAULT_USERS = (
    DirectoryUser(
        open_id="ou_alice0000000000000000000000001",
        name="Alice",
        en_name="Alice",
        email="alice@example.com",
        union_id="on_alice000000000000000000000001",
        user_id="alice",
    ),
    DirectoryUser(
        open_id="ou_bob000000000000000000000000002",
        name="Bob",
        en_name="Bob",
        email="bob@example.com",
        union_id="on_bob0000000000000000000000002",
        user_id="bob",
    ),
    DirectoryUser(
        open_id="ou_carol00000000000000000000000003",
        name="Carol",
        en_name="Carol",
        email="carol@example.com",
        union_id="on_carol000000000000000000000003",
        user_id="carol",
    ),
)

_DEFAULT_CHATS = (
    DirectoryChat(
        chat_id="oc_team00000000000000000000000001",
        name="Team",
        chat_type="group",
        members=tuple(user.open_id for user in _DEFAULT_USERS),
    ),
    DirectoryChat(
        chat_id="oc_p2palice000000000000000000001",
        name="",
        chat_type="p2p",
        members=(_DEFAULT_USERS[0].open_id,),
    ),
    DirectoryChat(
        chat_id="oc_nobot0000000000000000000000001",
        name="Bot not invited",
        chat_type="group",
        members=(_DEFAULT_USERS[0].open_id, _DEFAULT_USERS[1].open_id),
        bot_is_member=False,
    ),
)


# Scopes enabled for the emulated app (developer console → permissions). The authorize page refuses
# others with 20027; a business API needing one that is not here answers 99991672.
DEFAULT_APP_SCOPES = (
    "vc:meeting",
    "vc:meeting:readonly",
    "offline_access",
    "contact:user.id:readonly",
    "im:message",
)


class EmulatorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    app_id: str = "cli_emulator0000001"
    app_secret: str = Field(default="emulator-app-secret", repr=False)
    verification_token: str = Field(default="emulator-verification-token", repr=False)
    # Non-empty by default so the bot's signature and decryption paths run in every demo and test;
    # an empty key makes the emulator push plain, unsigned bodies, as Feishu does without one.
    encrypt_key: str = Field(default="emulator-encrypt-key", repr=False)
    tenant_key: str = "tenant_emulator0001"
    bot_open_id: str = "ou_bot00000000000000000000000000b"
    bot_name: str = "InviteBot"
    bot_avatar_url: str = "https://emulator.invalid/avatar/bot.png"
    tenant_token_ttl_seconds: int = Field(default=7200, ge=60)
    # The bot's `POST /feishu/events` URL; settable later through `Emulator.webhook_url`.
    webhook_url: str | None = None
    # --- user OAuth (reference §6) ---
    app_scopes: tuple[str, ...] = DEFAULT_APP_SCOPES
    # Registered redirect URLs (security settings → redirect URLs), matched exactly. Any http(s) URL on a
    # loopback host is accepted as well, so a bot under test on 127.0.0.1:<random port> needs no entry.
    redirect_uris: tuple[str, ...] = ()
    authorization_code_ttl_seconds: float = Field(default=300, gt=0)
    user_access_token_ttl_seconds: int = Field(default=7200, ge=1)
    refresh_token_ttl_seconds: int = Field(default=604800, ge=1)
    # The access token a refresh replaced keeps working this long ("about a minute", reference §6.3).
    rotated_token_grace_seconds: float = Field(default=60, ge=0)
    # After this long since the user authorized, refreshing fails with 20037 (365 days, reference §6.3).
    authorization_max_age_seconds: float = Field(default=365 * 86400, gt=0)
    users: tuple[DirectoryUser, ...] = _DEFAULT_USERS
    chats: tuple[DirectoryChat, ...] = _DEFAULT_CHATS

    @model_validator(mode="after")
    def _ids_are_unique(self) -> EmulatorConfig:
        open_ids = [user.open_id for user in self.users]
        if len(set(open_ids)) != len(open_ids) or self.bot_open_id in open_ids:
            raise ValueError("open_ids in the directory must be unique and differ from bot_open_id")
        chat_ids = [chat.chat_id for chat in self.chats]
        if len(set(chat_ids)) != len(chat_ids):
            raise ValueError("chat_ids must be unique")
        return self

    def user(self, open_id: str) -> DirectoryUser | None:
        return next((user for user in self.users if user.open_id == open_id), None)

    def chat(self, chat_id: str) -> DirectoryChat | None:
        return next((chat for chat in self.chats if chat.chat_id == chat_id), None)
