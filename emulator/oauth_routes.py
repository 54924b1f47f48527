"""HTTP face of user OAuth: the authorize page, the v2 token endpoint and user_info (feishu-protocol §6)."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from emulator import replies
from emulator.authorize import (
    AuthorizeError,
    consent_page,
    decide,
    error_page,
    parse_authorize,
)
from emulator.config import EmulatorConfig
from emulator.device import DEVICE_GRANT, DeviceAuthorizations
from emulator.faults import Fault
from emulator.gateway import Gateway, fault_response
from emulator.oauth import IssuedTokens, OAuthFailure, UserAuth
from emulator.replies import Refusal

# Token endpoint fields that are secrets or bearer credentials: never recorded.
_SECRET_FIELDS = ("client_secret", "code", "code_verifier", "refresh_token", "device_code")
_STRING_FIELDS = (
    "grant_type",
    "client_id",
    "client_secret",
    "code",
    "redirect_uri",
    "code_verifier",
    "device_code",
)
_STRING_FIELDS_REFRESH = ("refresh_token", "scope")


class OAuthRoutes:
    def __init__(
        self, config: EmulatorConfig, gateway: Gateway, auth: UserAuth, devices: DeviceAuthorizations
    ) -> None:
        self._config = config
        self._gateway = gateway
        self._auth = auth
        self._devices = devices

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/open-apis/authen/v1/authorize", self.authorize),
            web.post("/open-apis/authen/v2/oauth/token", self.token),
            web.get("/open-apis/authen/v1/user_info", self.user_info),
        ]

    # --- authorize page ----------------------------------------------------------------------------------

    async def authorize(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        try:
            parsed = parse_authorize(params, self._config)
            as_user = params.get("emulator_user")
            if as_user is None:
                return _html(consent_page(self._config, parsed, params))
            decision = params.get("emulator_decision", "approve")
            if decision not in ("approve", "deny"):
                raise AuthorizeError(20001, "emulator_decision must be approve or deny")
            approve = decision == "approve"
            location = decide(self._auth, self._config, parsed, as_user=as_user, approve=approve)
        except AuthorizeError as refused:
            # Feishu shows its error on the page (HTTP status of that page UNCONFIRMED); 400 makes the
            # refusal visible to a test too.
            return _html(error_page(refused), status=400)
        raise web.HTTPFound(location)

    # --- token endpoint ------------------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        try:
            _, body = await self._gateway.begin(
                request, "user_token", redact=_SECRET_FIELDS, form=True, fault_answer=_oauth_fault
            )
        except Refusal as refusal:
            return refusal.response
        try:
            issued = self._grant(request, body)
        except OAuthFailure as failure:
            return replies.oauth_error(failure.error, detail=failure.detail)
        return _token_answer(issued)

    def _grant(self, request: web.Request, body: Any) -> IssuedTokens:
        if not isinstance(body, dict):
            raise OAuthFailure(replies.OAUTH_MALFORMED, "body must be a JSON object or a form")
        fields = body
        if fields.get("grant_type") == "authorization_code":
            self._auth.code_exchanges += 1
        for name in (*_STRING_FIELDS, *_STRING_FIELDS_REFRESH):
            if name in fields and not isinstance(fields[name], str):
                raise OAuthFailure(replies.OAUTH_MALFORMED, f"{name} must be a string")
        grant_type = fields.get("grant_type")
        if not grant_type:
            raise OAuthFailure(replies.OAUTH_MISSING_PARAM, "grant_type")
        self._authenticate_client(request, fields)
        if grant_type == "authorization_code":
            code = fields.get("code")
            if not code:
                raise OAuthFailure(replies.OAUTH_MISSING_PARAM, "code")
            return self._auth.exchange_code(
                code,
                redirect_uri=fields.get("redirect_uri") or None,
                verifier=fields.get("code_verifier") or None,
                scope=fields.get("scope"),
            )
        if grant_type == "refresh_token":
            refresh_token = fields.get("refresh_token")
            if not refresh_token:
                raise OAuthFailure(replies.OAUTH_MISSING_PARAM, "refresh_token")
            return self._auth.refresh(refresh_token, scope=fields.get("scope"))
        if grant_type == DEVICE_GRANT:
            return self._devices.poll(fields.get("device_code"))
        raise OAuthFailure(replies.OAUTH_BAD_GRANT_TYPE)

    def _authenticate_client(self, request: web.Request, fields: dict[str, Any]) -> None:
        """client_secret in the body or HTTP Basic, never both (20070), per RFC 6749 §2.3.1."""
        client_id, secret = fields.get("client_id") or None, fields.get("client_secret") or None
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            if secret is not None:
                raise OAuthFailure(replies.OAUTH_TWO_CLIENT_AUTHS)
            try:
                decoded = base64.b64decode(header[len("Basic ") :].strip(), validate=True).decode("utf-8")
                basic_id, _, basic_secret = decoded.partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthFailure(replies.OAUTH_BAD_SECRET, "malformed Basic credentials") from None
            basic_id, secret = unquote(basic_id), unquote(basic_secret)
            if client_id is not None and client_id != basic_id:
                raise OAuthFailure(replies.OAUTH_BAD_SECRET, "client_id differs from the Basic credentials")
            client_id = basic_id
        if not client_id:
            raise OAuthFailure(replies.OAUTH_MISSING_PARAM, "client_id")
        if not secret:
            raise OAuthFailure(replies.OAUTH_MISSING_PARAM, "client_secret")
        if client_id != self._config.app_id:
            raise OAuthFailure(replies.OAUTH_APP_NOT_FOUND)
        if secret != self._config.app_secret:
            raise OAuthFailure(replies.OAUTH_BAD_SECRET)

    # --- user_info -----------------------------------------------------------------------------------------

    async def user_info(self, request: web.Request) -> web.Response:
        try:
            await self._gateway.begin(request, "user_info")
            user, record = self._gateway.users.require(request)
        except Refusal as refusal:
            return refusal.response
        avatar = f"https://emulator.invalid/avatar/{user.open_id}"
        data: dict[str, Any] = {
            "name": user.name,
            "en_name": user.en_name or user.name,
            "avatar_url": f"{avatar}.png",
            "avatar_thumb": f"{avatar}_72.png",
            "avatar_middle": f"{avatar}_240.png",
            "avatar_big": f"{avatar}_640.png",
            "open_id": user.open_id,
            "union_id": user.union_id,
            "email": user.email,
            "tenant_key": self._config.tenant_key,
        }
        # user_id is one of the fields that needs an extra scope (feishu-protocol §6.5); we return it only
        # to a token holding contact:user.employee_id:readonly. Which scope gates which field: UNCONFIRMED.
        if "contact:user.employee_id:readonly" in record.scopes and user.user_id:
            data["user_id"] = user.user_id
        return replies.ok({"code": 0, "msg": "success", "data": data})


def _token_answer(issued: IssuedTokens) -> web.Response:
    # Top level, not under `data`; refresh_token only when offline_access was granted (feishu-protocol §6.2).
    body: dict[str, Any] = {
        "code": 0,
        "access_token": issued.access_token,
        "expires_in": issued.expires_in,
        "token_type": "Bearer",
        "scope": issued.scope,
    }
    if issued.refresh_token is not None:
        body["refresh_token"] = issued.refresh_token
        body["refresh_token_expires_in"] = issued.refresh_token_expires_in
    response = replies.ok(body)
    response.headers["Cache-Control"] = "no-store"
    return response


def _oauth_fault(fault: Fault) -> web.Response:
    """A scripted failure of the token endpoint, shaped like its own errors when a code is given."""
    if fault.code is None:
        return fault_response(fault)
    known = replies.OAUTH_ERRORS.get(fault.code)
    failure = replies.OAuthError(
        fault.code,
        known.error if known else "server_error",
        fault.msg or (known.description if known else "emulated fault"),
        fault.status or (known.http_status if known else 500),
    )
    return replies.oauth_error(failure)


def _html(text: str, *, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
