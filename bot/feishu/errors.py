"""Feishu's error codes the client acts on, and the one exception every failed call becomes."""

from __future__ import annotations

# The tenant_access_token is no longer accepted: fetch a new one and try once more (feishu-protocol §5, §6.6).
TENANT_TOKEN_INVALID = frozenset({99991663, 99991664, 99991671})
# "Too many requests": the gateway's 99991400 (with HTTP 429 or 400), the per-chat message limit 230020,
# and 11232, the tenant's message-service limit (community-reported, UNCONFIRMED; feishu-protocol §4.1).
RATE_LIMITED = frozenset({99991400, 230020, 11232})
# The user_access_token is invalid or expired: refresh once and retry once (feishu-protocol §6.3, §6.6).
USER_TOKEN_EXPIRED = frozenset({99991668, 99991677})
# The user has not granted a scope this call needs; `error.permission_violations` names it.
SCOPE_NOT_GRANTED = 99991679
# A refresh answered that the authorization is over: invalid, expired (365 d), revoked, already used.
AUTHORIZATION_GONE = frozenset({20026, 20037, 20064, 20073})
# The token endpoint's "try again": server error, temporarily unavailable.
OAUTH_RETRYABLE = frozenset({20050, 20072})
# Our own codes for failures that never reached a Feishu answer.
UNAVAILABLE = -1
UNREADABLE_RESPONSE = -2
# A background call not made: the rate budget is kept for commands just now. Try again next round.
DEFERRED = -3


class FeishuApiError(Exception):
    """A call that did not succeed. `log_id` is what Feishu support needs to trace it."""

    def __init__(
        self,
        code: int,
        msg: str,
        *,
        log_id: str = "",
        http_status: int = 0,
        endpoint: str = "",
        missing_scopes: tuple[str, ...] = (),
        oauth_error: str = "",
    ) -> None:
        super().__init__(f"{endpoint or 'Feishu'} failed: code={code} msg={msg!r} log_id={log_id or '-'}")
        self.code = code
        self.msg = msg
        self.log_id = log_id
        self.http_status = http_status
        self.endpoint = endpoint
        self.missing_scopes = missing_scopes
        # The RFC 6749 `error` of an OAuth answer (`authorization_pending`, `slow_down`, ...), if any.
        self.oauth_error = oauth_error

    @property
    def transient(self) -> bool:
        """Worth trying again later: no answer, a server error, or a rate limit."""
        return self.code in (UNAVAILABLE, DEFERRED) or self.code in RATE_LIMITED or self.http_status >= 500
