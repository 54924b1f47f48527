"""Acting as a user: judging a user_access_token on a business API (feishu-protocol §6.6).

`UserGate.require_user_token` is the one check every user-token route runs, so that a missing, invalid,
revoked, rotated-out, expired or under-scoped token is refused the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from emulator import replies
from emulator.config import DirectoryUser, EmulatorConfig
from emulator.oauth import AccessRecord, UserAuth
from emulator.replies import Refusal


def looks_like_user_token(token: str) -> bool:
    # v1 user tokens start with "u-", v2 ones are JWT-like "eyJ…" (feishu-protocol §5); Feishu judges a
    # token by that look before anything else (captured for 99991668).
    return token.startswith(("u-", "eyJ"))


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    # Without the "Bearer " prefix Feishu treats the token as absent (captured).
    if not header.startswith("Bearer ") or not header[len("Bearer ") :].strip():
        raise Refusal(replies.error(replies.TOKEN_MISSING))
    return header[len("Bearer ") :].strip()


class UserGate:
    def __init__(self, config: EmulatorConfig, auth: UserAuth) -> None:
        self._config = config
        self._auth = auth

    def check_token(self, token: str) -> AccessRecord:
        """The token's record, or Refusal: 99991677 when it expired (refresh and retry), 99991668 when
        it is unknown, revoked or rotated out (feishu-protocol §6.6)."""
        state, record = self._auth.check_access(token)
        if state == "expired":
            raise Refusal(replies.error(replies.USER_TOKEN_EXPIRED))
        if record is None:
            raise Refusal(replies.error(replies.USER_TOKEN_INVALID))
        return record

    def require_user_token(self, request: web.Request, *, scopes: Sequence[str] = ()) -> DirectoryUser:
        """The user acting through this request's user_access_token; see `require`."""
        user, _ = self.require(request, scopes=scopes)
        return user

    def require(
        self, request: web.Request, *, scopes: Sequence[str] = ()
    ) -> tuple[DirectoryUser, AccessRecord]:
        """The user acting through this request's user_access_token, and the token's record.

        `scopes`: the API's scope requirement, any one of which suffices (Feishu's "开启其中任意一项权限").
        One the app has not enabled → 99991672; one the user has not granted → 99991679, naming the
        scopes in `error.permission_violations` so the bot can ask for exactly those.
        """
        token = bearer_token(request)
        if not looks_like_user_token(token):
            # A tenant (or other) token where only a user token will do. UNCONFIRMED which code.
            raise Refusal(replies.error(replies.USER_TOKEN_INVALID, detail="ext=user_access_token required"))
        record = self.check_token(token)
        if scopes and not any(scope in record.scopes for scope in scopes):
            if not any(scope in self._config.app_scopes for scope in scopes):
                named = "[" + ", ".join(scopes) + "]"
                raise Refusal(replies.error(replies.APP_SCOPE_NOT_ENABLED, detail=named))
            # Only scopes the app enabled are worth asking the user for: naming one it has not would send
            # the bot to an authorize page that refuses it (20027). Our reading; UNCONFIRMED.
            askable = [scope for scope in scopes if scope in self._config.app_scopes]
            violations = [
                {"type": "action_scope_required", "subject": scope, "description": f"scope {scope} required"}
                for scope in askable
            ]
            raise Refusal(
                replies.error(
                    replies.USER_SCOPE_NOT_GRANTED,
                    detail="required one of these privileges under the user identity: ["
                    + ", ".join(askable)
                    + "]",
                    extra={"permission_violations": violations},
                )
            )
        user = self._config.user(record.open_id)
        if user is None:  # a directory without this user any more: as if the token were void
            raise Refusal(replies.error(replies.USER_TOKEN_INVALID))
        return user, record
