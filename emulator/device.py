"""OAuth device authorization (RFC 8628) as Feishu's accounts service does it (feishu-protocol §10).

`POST /oauth/v1/device_authorization` (on the accounts host) starts a grant for the app; the user opens
`verification_uri_complete` and approves or denies (`approve_device` / `deny_device`, or the page with
`emulator_user`); the bot polls the v2 token endpoint with the device_code grant, and is told
`authorization_pending`, `slow_down` (polling faster than the interval: the interval grows by 5 s),
`access_denied` or `expired_token` until the user decided.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote

from aiohttp import web

from emulator import replies
from emulator.config import EmulatorConfig
from emulator.oauth import IssuedTokens, OAuthFailure, UserAuth, parse_scope

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
START_PATH = "/oauth/v1/device_authorization"
VERIFY_PATH = "/oauth/v1/device/verify"
EXPIRES_IN = 600
INTERVAL = 5
SLOW_DOWN_STEP = 5

# RFC 8628 §3.5 answers; Feishu's numeric codes for them are not documented (UNCONFIRMED), so the bot
# reads `error`, and these codes are only ours.
PENDING = replies.OAuthError(20080, "authorization_pending", "The user has not answered yet.", 400)
SLOW_DOWN = replies.OAuthError(20081, "slow_down", "Polling too fast; wait longer between requests.", 400)
DENIED = replies.OAuthError(20082, "access_denied", "The user declined the authorization.", 400)
EXPIRED = replies.OAuthError(20083, "expired_token", "The device code has expired.", 400)
UNKNOWN = replies.OAuthError(20084, "invalid_grant", "The device code is not valid.", 400)


@dataclass
class DeviceGrant:
    device_code: str
    user_code: str
    flow_id: str
    scopes: tuple[str, ...]
    expires_at: float
    interval: int
    decision: Literal["pending", "approved", "denied"] = "pending"
    open_id: str | None = None
    last_poll: float | None = None
    used: bool = False


class DeviceAuthorizations:
    def __init__(self, config: EmulatorConfig, clock: Callable[[], float], auth: UserAuth) -> None:
        self._config = config
        self._clock = clock
        self._auth = auth
        self.grants: list[DeviceGrant] = []
        self.polls = 0
        self.poll_times: list[float] = []
        self.expires_in = EXPIRES_IN
        self.interval = INTERVAL
        self.slow_down_next = 0  # answer this many polls with slow_down, as if they came too fast

    def routes(self) -> list[web.RouteDef]:
        return [web.post(START_PATH, self._start), web.get(VERIFY_PATH, self._verify)]

    async def _start(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        client_id, secret = fields.get("client_id", ""), fields.get("client_secret", "")
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                basic_id, _, basic_secret = (
                    base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
                )
            except (binascii.Error, UnicodeDecodeError):
                return replies.oauth_error(replies.OAUTH_BAD_SECRET, detail="malformed Basic credentials")
            client_id, secret = client_id or unquote(basic_id), secret or unquote(basic_secret)
        if client_id != self._config.app_id:
            return replies.oauth_error(replies.OAUTH_APP_NOT_FOUND)
        if secret != self._config.app_secret:
            return replies.oauth_error(replies.OAUTH_BAD_SECRET)
        scopes = parse_scope(fields.get("scope")) or ()
        unknown = [scope for scope in scopes if scope not in self._config.app_scopes]
        if unknown:
            return replies.oauth_error(replies.OAUTH_SCOPE_NOT_PERMITTED, detail=" ".join(unknown))
        grant = DeviceGrant(
            device_code=secrets.token_urlsafe(32),
            user_code=f"{secrets.randbelow(10**4):04d}-{secrets.randbelow(10**4):04d}",
            flow_id=secrets.token_hex(8),
            scopes=tuple(scopes),
            expires_at=self._clock() + self.expires_in,
            interval=self.interval,
        )
        self.grants.append(grant)
        base = f"{request.scheme}://{request.host}{VERIFY_PATH}"
        complete = f"{base}?flow_id={grant.flow_id}&user_code={quote(grant.user_code)}"
        return web.json_response(
            {
                "device_code": grant.device_code,
                "user_code": grant.user_code,
                "verification_uri": base,
                "verification_uri_complete": complete,
                "expires_in": self.expires_in,
                "interval": grant.interval,
            }
        )

    async def _verify(self, request: web.Request) -> web.Response:
        """The page the link opens. With `emulator_user` (and `emulator_decision`) it answers at once."""
        grant = self.find(request.query.get("user_code", ""))
        if grant is None:
            return web.Response(status=404, text="This authorization link is not valid.")
        as_user = request.query.get("emulator_user")
        if as_user is None:
            scopes = ", ".join(grant.scopes)
            return web.Response(text=f"Authorize {self._config.bot_name}? It asks for: {scopes}")
        if request.query.get("emulator_decision", "approve") == "deny":
            self.deny(grant.user_code)
        else:
            self.approve(grant.user_code, as_user)
        return web.Response(text="You can close this page and go back to Feishu.")

    def find(self, user_code: str) -> DeviceGrant | None:
        return next((grant for grant in self.grants if grant.user_code == user_code), None)

    def approve(self, user_code: str, as_user: str) -> None:
        grant = self.find(user_code)
        if grant is None or self._config.user(as_user) is None:
            raise KeyError(user_code if grant is None else as_user)
        grant.decision, grant.open_id = "approved", as_user

    def deny(self, user_code: str) -> None:
        grant = self.find(user_code)
        if grant is None:
            raise KeyError(user_code)
        grant.decision = "denied"

    def poll(self, device_code: str | None) -> IssuedTokens:
        """The token endpoint's device_code grant."""
        self.polls += 1
        now = self._clock()
        self.poll_times.append(now)
        grant = next((g for g in self.grants if g.device_code == device_code), None)
        if grant is None or grant.used:
            raise OAuthFailure(UNKNOWN)
        if now >= grant.expires_at:
            raise OAuthFailure(EXPIRED)
        too_soon = grant.last_poll is not None and now - grant.last_poll < grant.interval - 0.5
        grant.last_poll = now
        if self.slow_down_next > 0:
            self.slow_down_next -= 1
            too_soon = True
        if too_soon:
            grant.interval += SLOW_DOWN_STEP
            raise OAuthFailure(SLOW_DOWN)
        if grant.decision == "pending":
            raise OAuthFailure(PENDING)
        if grant.decision == "denied":
            raise OAuthFailure(DENIED)
        assert grant.open_id is not None
        grant.used = True
        return self._auth.issue_for(grant.open_id, grant.scopes)
