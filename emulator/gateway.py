"""The steps every emulated Open API call shares: record it, fire a scripted fault, check its token.

Route modules (openapi, oauth_routes, ephemeral, updates) each take one `Gateway`, so a request is recorded
and judged the same way whichever concern answers it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from emulator import replies
from emulator.faults import Fault, FaultQueue
from emulator.replies import Refusal
from emulator.tokens import TenantTokens
from emulator.users import UserGate, bearer_token, looks_like_user_token

REDACTED = "***"


@dataclass(frozen=True)
class RecordedRequest:
    """One call the bot made. Never the token itself: only what kind of token it was."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    token_kind: str  # "tenant" | "user" | "app" | "other" | "none"
    at: float

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "json": self.json,
            "token_kind": self.token_kind,
            "at": self.at,
        }


def token_kind(authorization: str | None) -> str:
    if not authorization:
        return "none"
    token = authorization.removeprefix("Bearer ").strip()
    if token.startswith("t-"):
        return "tenant"
    if looks_like_user_token(token):
        return "user"
    if token.startswith("a-"):
        return "app"
    return "other"


class Gateway:
    def __init__(
        self,
        tokens: TenantTokens,
        users: UserGate,
        faults: FaultQueue,
        requests: list[RecordedRequest],
        clock_now: Callable[[], float],
    ) -> None:
        self.tokens = tokens
        self.users = users
        self._faults = faults
        self._requests = requests
        self.now = clock_now

    async def begin(
        self,
        request: web.Request,
        route: str,
        *,
        redact: Collection[str] = (),
        form: bool = False,
        fault_answer: Callable[[Fault], web.Response] | None = None,
    ) -> tuple[bytes, Any]:
        """Record the call and read its body (JSON, or a urlencoded form when `form`); raise Refusal
        with a fault's answer if one fires. Values of `redact` keys never reach the record."""
        raw = await request.read()
        body = _parse_body(raw, request.content_type if form else "application/json")
        recorded = body
        if isinstance(body, dict) and redact:
            recorded = {key: REDACTED if key in redact else value for key, value in body.items()}
        self._requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                json=recorded,
                token_kind=token_kind(request.headers.get("Authorization")),
                at=self.now(),
            )
        )
        fault = self._faults.take(route)
        if fault is not None:
            if fault.delay_seconds:
                await asyncio.sleep(fault.delay_seconds)
            if fault.status is not None:
                raise Refusal((fault_answer or fault_response)(fault))
        return raw, body

    def authorize_tenant(self, request: web.Request) -> None:
        """The route takes a tenant_access_token only."""
        token = bearer_token(request)
        if looks_like_user_token(token):
            # Judged as a user token first: an invalid or expired one says so (captured for 99991668).
            self.users.check_token(token)
            raise Refusal(replies.error(replies.USER_TOKEN_NOT_ACCEPTED))
        if not self.tokens.is_valid(token):
            raise Refusal(replies.error(replies.TENANT_TOKEN_INVALID))

    def authorize_any(
        self, request: web.Request, app_scopes: Collection[str], scopes: Collection[str]
    ) -> str | None:
        """The route takes a tenant or a user token; returns the acting user's open_id for the latter.
        A tenant token needs one of `scopes` enabled for the app, a user token one of them granted."""
        token = bearer_token(request)
        if looks_like_user_token(token):
            return self.users.require_user_token(request, scopes=tuple(scopes)).open_id
        if not self.tokens.is_valid(token):
            raise Refusal(replies.error(replies.TENANT_TOKEN_INVALID))
        require_app_scope(app_scopes, scopes)
        return None


def require_app_scope(app_scopes: Collection[str], scopes: Collection[str]) -> None:
    """A tenant-token call to an API none of whose `scopes` the app has: 99991672 (feishu-protocol §6.6)."""
    if scopes and not any(scope in app_scopes for scope in scopes):
        named = "[" + ", ".join(scopes) + "]"
        raise Refusal(replies.error(replies.APP_SCOPE_NOT_ENABLED, detail=named))


def _parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if content_type == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def fault_response(fault: Fault) -> web.Response:
    status = fault.status or 500
    code = fault.code
    if code is None and status == 429:
        code = replies.RATE_LIMITED.code
    headers = dict(fault.headers)
    if code == replies.RATE_LIMITED.code:
        # Feishu's gateway says when to come back (frequency-control doc page).
        headers.setdefault("x-ogw-ratelimit-limit", "50")
        headers.setdefault("x-ogw-ratelimit-reset", "1")
    if code is None:
        # A failing gateway answers in plain text, not Feishu's JSON: the bot must cope with both.
        response = web.Response(status=status, text=fault.msg or "upstream unavailable", headers=headers)
        response.headers[replies.LOGID_HEADER] = replies.new_log_id()
        return response
    msg = fault.msg or (replies.RATE_LIMITED.msg if code == replies.RATE_LIMITED.code else "emulated fault")
    return replies.error(replies.FeishuError(code, msg, status), headers=headers)


@web.middleware
async def feishu_not_found(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown paths and wrong methods get Feishu's plain-text 404, not JSON (captured)."""
    try:
        response = await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        if request.path.startswith("/open-apis/"):
            return web.Response(status=404, text="404 page not found")
        raise
    return response
