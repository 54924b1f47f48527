"""What the bot keeps about a user's authorization, and about an authorization in progress."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bot.feishu.events import EventEnvelope

# Feishu ends every authorization 365 days after the user granted it (feishu-protocol §6.3).
AUTHORIZATION_LIFETIME_SECONDS = 365 * 24 * 3600


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class UserToken(_Record):
    """One user's tokens. Stored sealed; never logged (repr hides the tokens)."""

    tenant_key: str
    open_id: str
    name: str = ""
    access_token: str = Field(repr=False)
    access_expires_at: float
    refresh_token: str | None = Field(default=None, repr=False)
    refresh_expires_at: float | None = None
    scopes: tuple[str, ...] = ()
    authorized_at: float

    def access_valid(self, now: float, margin: float = 0.0) -> bool:
        return now < self.access_expires_at - margin

    def refreshable(self, now: float) -> bool:
        return (
            self.refresh_token is not None
            and (self.refresh_expires_at is None or now < self.refresh_expires_at)
            and now < self.authorized_at + AUTHORIZATION_LIFETIME_SECONDS
        )

    def usable_until(self) -> float:
        """When the user would have to authorize again, if nothing revokes it earlier."""
        if self.refresh_token is None:
            return self.access_expires_at
        return min(
            self.refresh_expires_at or float("inf"), self.authorized_at + AUTHORIZATION_LIFETIME_SECONDS
        )


class Prompt(_Record):
    """Where the authorization prompt was shown, so it can be updated once the user has authorized."""

    chat_id: str
    message_id: str
    kind: str  # "ephemeral" | "direct" | "public"


class AuthorizationState(_Record):
    """An authorization in progress: what the OAuth `state` parameter stands for."""

    tenant_key: str
    open_id: str
    code_verifier: str = Field(repr=False)
    scopes: tuple[str, ...]
    created_at: float
    # The command that needed the authorization; resumed through the inbox once it is granted.
    pending: EventEnvelope | None = None
    locale: str = "zh_cn"


class AuthorizationGranted(_Record):
    """The body of our internal `invite_bot.authorization_granted` inbox event."""

    ordering_key: str
    tenant_key: str
    open_id: str
    name: str = ""
    locale: str = "zh_cn"
    # Where to find the prompt to update (see AuthorizationFlow.attach_prompt).
    prompt_key: str
    pending: EventEnvelope | None = None


class DeviceState(_Record):
    """A device authorization in progress (BOT_AUTH_FLOW=device), one per user; stored sealed."""

    flow_id: str
    tenant_key: str
    open_id: str
    device_code: str = Field(repr=False)
    scopes: tuple[str, ...]
    expires_at: float
    interval: float
    pending: EventEnvelope | None = None
    locale: str = "zh_cn"


class DevicePoll(_Record):
    """The body of our internal `invite_bot.device_authorization` inbox event: poll until decided."""

    ordering_key: str
    tenant_key: str
    open_id: str
    flow_id: str
