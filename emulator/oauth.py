"""User authorization state: codes, grants, user_access_tokens and refresh tokens (feishu-protocol §6).

Rules kept here, each as Feishu documents it: codes live 5 minutes and are single use, bound to the
redirect_uri and the PKCE challenge; scopes a user granted accumulate across authorizations; a
refresh token is single use and rotates, the access token it replaces keeps working for a short grace;
an authorization can be refreshed for 365 days at most. Every lifetime comes from `EmulatorConfig`, and
time from the emulator clock, so tests force expiry by moving the clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from emulator import replies
from emulator.config import EmulatorConfig
from emulator.replies import OAuthError

OFFLINE_ACCESS = "offline_access"


class OAuthFailure(Exception):
    """The token endpoint's refusal: one row of the OAuth error table."""

    def __init__(self, error: OAuthError, detail: str = "") -> None:
        super().__init__(f"{error.code} {error.error}: {detail or error.description}")
        self.error = error
        self.detail = detail


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str | None
    method: str
    open_id: str
    scopes: tuple[str, ...]
    expires_at: float
    used: bool = False


@dataclass
class _Grant:
    """One authorization by one user: the chain of refresh tokens that descends from one code."""

    open_id: str
    authorized_at: float
    revoked: bool = False


@dataclass
class AccessRecord:
    open_id: str
    scopes: tuple[str, ...]
    expires_at: float
    grant: _Grant
    # Set when a refresh rotated this token out: it stops working at this time, even if not expired.
    retired_at: float | None = None


@dataclass
class _Refresh:
    open_id: str
    scopes: tuple[str, ...]
    expires_at: float
    grant: _Grant
    access_token: str
    used: bool = False


@dataclass(frozen=True)
class IssuedTokens:
    """A successful token answer, minus the envelope."""

    open_id: str
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    refresh_token_expires_in: int | None = None


TokenState = Literal["valid", "expired", "invalid"]


def mint_token() -> str:
    """Looks like a v2 user token (JWT-like `eyJ…`); opaque random inside, no real signature."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    header = json.dumps({"alg": "ES256", "kid": "emulator", "typ": "JWT"}, separators=(",", ":"))
    payload = json.dumps({"jti": secrets.token_urlsafe(24)}, separators=(",", ":"))
    return ".".join((part(header.encode()), part(payload.encode()), part(secrets.token_bytes(64))))


def pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    else:
        expected = verifier
    return hmac.compare_digest(expected.encode(), challenge.encode())


def parse_scope(scope: str | None) -> tuple[str, ...] | None:
    """A requested `scope` narrowing (None when absent); duplicates are refused as Feishu does."""
    if scope is None or not scope.strip():
        return None
    scopes = tuple(scope.split())
    if len(set(scopes)) != len(scopes):
        raise OAuthFailure(replies.OAUTH_DUPLICATE_SCOPE)
    return scopes


def _narrow(held: tuple[str, ...], wanted: tuple[str, ...] | None) -> tuple[str, ...]:
    if wanted is None:
        return held
    extra = [scope for scope in wanted if scope not in held]
    if extra:
        raise OAuthFailure(replies.OAUTH_SCOPE_NOT_PERMITTED, "not granted: " + " ".join(extra))
    return wanted


class UserAuth:
    def __init__(self, config: EmulatorConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._granted: dict[str, dict[str, None]] = {}  # open_id -> scopes, in grant order
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, AccessRecord] = {}
        self._refresh: dict[str, _Refresh] = {}
        self.code_exchanges = 0  # counted by the route: every authorization_code request
        self.refreshes = 0
        self.refresh_token_reuses = 0
        # Every token ever handed out, so tests can prove none of them leaked into a log or a file.
        self.history: list[str] = []

    # --- the authorize page ----------------------------------------------------------------------------

    def issue_code(
        self,
        *,
        open_id: str,
        client_id: str,
        redirect_uri: str,
        scopes: Sequence[str],
        challenge: str | None,
        method: str,
    ) -> str:
        granted = self._granted.setdefault(open_id, {})
        granted.update(dict.fromkeys(scopes))
        # 64 characters of [A-Za-z0-9-_], what the doc tells clients to reserve room for.
        code = secrets.token_urlsafe(48)
        self._codes[code] = _Code(
            client_id=client_id,
            redirect_uri=redirect_uri,
            challenge=challenge,
            method=method,
            open_id=open_id,
            # The token carries everything the user has granted so far, not only this request.
            scopes=tuple(granted),
            expires_at=self._clock() + self._config.authorization_code_ttl_seconds,
        )
        return code

    def granted_scopes(self, open_id: str) -> tuple[str, ...]:
        return tuple(self._granted.get(open_id, {}))

    # --- the token endpoint ----------------------------------------------------------------------------

    def exchange_code(
        self, code: str, *, redirect_uri: str | None, verifier: str | None, scope: str | None
    ) -> IssuedTokens:
        entry = self._codes.get(code)
        if entry is None:
            raise OAuthFailure(replies.OAUTH_CODE_NOT_FOUND)
        if entry.used:
            raise OAuthFailure(replies.OAUTH_CODE_USED)
        if self._clock() >= entry.expires_at:
            raise OAuthFailure(replies.OAUTH_CODE_EXPIRED)
        if redirect_uri is None:
            raise OAuthFailure(replies.OAUTH_MISSING_PARAM, "redirect_uri")
        if redirect_uri != entry.redirect_uri:
            raise OAuthFailure(replies.OAUTH_REDIRECT_MISMATCH)
        if entry.challenge is not None and (
            verifier is None
            or not verifier_is_valid(verifier)
            or not pkce_matches(verifier, entry.challenge, entry.method)
        ):
            raise OAuthFailure(replies.OAUTH_PKCE_FAILED)
        scopes = _narrow(entry.scopes, parse_scope(scope))
        if self._config.user(entry.open_id) is None:
            raise OAuthFailure(replies.OAUTH_USER_NOT_FOUND)
        entry.used = True
        return self._issue(_Grant(entry.open_id, self._clock()), scopes)

    def refresh(self, refresh_token: str, *, scope: str | None) -> IssuedTokens:
        entry = self._refresh.get(refresh_token)
        if entry is None:
            raise OAuthFailure(replies.OAUTH_REFRESH_INVALID)
        if entry.grant.revoked:
            raise OAuthFailure(replies.OAUTH_REFRESH_REVOKED)
        if entry.used:
            self.refresh_token_reuses += 1
            raise OAuthFailure(replies.OAUTH_REFRESH_USED)
        now = self._clock()
        if now >= entry.expires_at or now >= self._authorization_ends(entry.grant):
            raise OAuthFailure(replies.OAUTH_REFRESH_EXPIRED)
        scopes = _narrow(entry.scopes, parse_scope(scope))
        entry.used = True
        old = self._access.get(entry.access_token)
        if old is not None:
            old.retired_at = min(old.expires_at, now + self._config.rotated_token_grace_seconds)
        self.refreshes += 1
        return self._issue(entry.grant, scopes)

    def issue_for(self, open_id: str, scopes: tuple[str, ...]) -> IssuedTokens:
        """Tokens for a user who approved a device authorization (emulator/device.py)."""
        granted = self._granted.setdefault(open_id, {})
        granted.update(dict.fromkeys(scopes))
        return self._issue(_Grant(open_id, self._clock()), tuple(granted))

    def _issue(self, grant: _Grant, scopes: tuple[str, ...]) -> IssuedTokens:
        now = self._clock()
        access_ttl = self._config.user_access_token_ttl_seconds
        access_token = mint_token()
        self._access[access_token] = AccessRecord(grant.open_id, scopes, now + access_ttl, grant)
        self.history.append(access_token)
        refresh_token = refresh_ttl = None
        if OFFLINE_ACCESS in scopes:
            left = self._authorization_ends(grant) - now
            refresh_ttl = int(min(self._config.refresh_token_ttl_seconds, left))
            if refresh_ttl > 0:
                refresh_token = mint_token()
                self._refresh[refresh_token] = _Refresh(
                    grant.open_id, scopes, now + refresh_ttl, grant, access_token
                )
                self.history.append(refresh_token)
            else:
                refresh_ttl = None
        return IssuedTokens(
            open_id=grant.open_id,
            access_token=access_token,
            expires_in=access_ttl,
            scope=" ".join(scopes),
            refresh_token=refresh_token,
            refresh_token_expires_in=refresh_ttl,
        )

    def _authorization_ends(self, grant: _Grant) -> float:
        return grant.authorized_at + self._config.authorization_max_age_seconds

    # --- business APIs ---------------------------------------------------------------------------------

    def check_access(self, token: str) -> tuple[TokenState, AccessRecord | None]:
        record = self._access.get(token)
        if record is None or record.grant.revoked:
            return "invalid", None
        now = self._clock()
        if record.retired_at is not None and now >= record.retired_at and now < record.expires_at:
            return "invalid", None
        if now >= record.expires_at:
            return "expired", None
        return "valid", record

    # --- steering --------------------------------------------------------------------------------------

    def revoke_user(self, open_id: str) -> None:
        """The user withdrew the authorization: every token stops working, granted scopes are forgotten."""
        for record in self._access.values():
            if record.open_id == open_id:
                record.grant.revoked = True
        for refresh in self._refresh.values():
            if refresh.open_id == open_id:
                refresh.grant.revoked = True
        self._codes = {code: entry for code, entry in self._codes.items() if entry.open_id != open_id}
        self._granted.pop(open_id, None)


def verifier_is_valid(verifier: str) -> bool:
    """RFC 7636 §4.1, as the doc repeats it: 43 to 128 characters of [A-Za-z0-9-._~]."""
    return 43 <= len(verifier) <= 128 and all(c.isascii() and (c.isalnum() or c in "-._~") for c in verifier)
