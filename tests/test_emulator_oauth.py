"""The emulator's user OAuth over real loopback HTTP: authorize page, v2 token endpoint, user_info."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp import web
from lark_oapi.api.authen.v1.model import GetUserInfoResponseBody

from emulator import AuthorizeError, Emulator, EmulatorConfig, start_emulator
from tests.harness import FixedClock

ALICE = "ou_alice0000000000000000000000001"
BOB = "ou_bob000000000000000000000000002"
REDIRECT = "http://127.0.0.1:8080/oauth/callback"
AUTHORIZE = "/open-apis/authen/v1/authorize"
TOKEN = "/open-apis/authen/v2/oauth/token"
USER_INFO = "/open-apis/authen/v1/user_info"
SCOPES = "vc:meeting vc:meeting:readonly offline_access"


@dataclass
class World:
    emulator: Emulator
    base: str
    http: aiohttp.ClientSession
    clock: FixedClock

    async def call(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        async with self.http.request(
            method, self.base + path, headers=headers, allow_redirects=False, **kwargs
        ) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    def authorize_url(self, **overrides: str | None) -> str:
        params: dict[str, str | None] = {
            "client_id": self.emulator.config.app_id,
            "response_type": "code",
            "redirect_uri": REDIRECT,
            "scope": SCOPES,
            "state": "st-1",
            "code_challenge": challenge_of(VERIFIER),
            "code_challenge_method": "S256",
            **overrides,
        }
        query = {key: value for key, value in params.items() if value is not None}
        return f"{self.base}{AUTHORIZE}?{urlencode(query)}"

    async def code(self, as_user: str = ALICE, **overrides: str | None) -> str:
        """Approve over HTTP, as a browser would, and return the code from the redirect."""
        url = self.authorize_url(**overrides) + "&" + urlencode({"emulator_user": as_user})
        async with self.http.get(url, allow_redirects=False) as response:
            assert response.status == 302, await response.text()
            location = response.headers["Location"]
        query = parse_qs(urlsplit(location).query)
        assert query["state"] == [overrides.get("state", "st-1")]
        code: str = query["code"][0]
        return code

    async def exchange(self, auth_code: str, /, **overrides: Any) -> tuple[int, Any]:
        body = {
            "grant_type": "authorization_code",
            "client_id": self.emulator.config.app_id,
            "client_secret": self.emulator.config.app_secret,
            "code": auth_code,
            "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER,
            **overrides,
        }
        return await self.call("POST", TOKEN, json={k: v for k, v in body.items() if v is not None})

    async def tokens(self, as_user: str = ALICE, **overrides: str | None) -> dict[str, Any]:
        status, body = await self.exchange(await self.code(as_user, **overrides))
        assert (status, body["code"]) == (200, 0), body
        return dict(body)

    async def refresh(self, refresh_token: str, **overrides: Any) -> tuple[int, Any]:
        body = {
            "grant_type": "refresh_token",
            "client_id": self.emulator.config.app_id,
            "client_secret": self.emulator.config.app_secret,
            "refresh_token": refresh_token,
            **overrides,
        }
        return await self.call("POST", TOKEN, json=body)


VERIFIER = secrets.token_urlsafe(48)


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def open_world(config: EmulatorConfig | None = None) -> tuple[World, web.AppRunner]:
    emulator, runner, base = await start_emulator(config)
    clock = FixedClock()
    emulator.clock = clock
    return World(emulator, base, aiohttp.ClientSession(), clock), runner


@pytest.fixture
async def world() -> AsyncIterator[World]:
    opened, runner = await open_world()
    try:
        yield opened
    finally:
        await opened.http.close()
        await runner.cleanup()


# --- the whole flow ------------------------------------------------------------------------------------


async def test_code_flow_with_pkce_then_user_info(world: World) -> None:
    # The browser page lists who may sign in, each with approve and deny links.
    status, page = await world.call("GET", world.authorize_url().removeprefix(world.base))
    assert status == 200
    assert "Alice" in page
    assert "emulator_decision=approve" in page
    assert "emulator_decision=deny" in page

    code = await world.code()
    assert len(code) >= 43
    assert set(code) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    status, body = await world.exchange(code)
    assert status == 200
    assert set(body) == {
        "code",
        "access_token",
        "expires_in",
        "refresh_token",
        "refresh_token_expires_in",
        "token_type",
        "scope",
    }
    assert (body["code"], body["token_type"], body["expires_in"]) == (0, "Bearer", 7200)
    assert body["refresh_token_expires_in"] == 604800
    assert body["scope"] == SCOPES
    assert body["access_token"].startswith("eyJ")
    assert body["refresh_token"].startswith("eyJ")
    assert world.emulator.user_token_exchanges == 1

    status, info = await world.call("GET", USER_INFO, token=body["access_token"])
    assert (status, info["code"], info["msg"]) == (200, 0, "success")
    parsed = GetUserInfoResponseBody(info["data"])  # lark-oapi's own model reads it
    assert (parsed.open_id, parsed.name, parsed.email) == (ALICE, "Alice", "alice@example.com")
    assert parsed.tenant_key == world.emulator.config.tenant_key
    assert parsed.union_id == "on_alice000000000000000000000001"
    assert parsed.user_id is None  # needs contact:user.employee_id:readonly

    # Nothing secret reached the request record: no token, secret, code or verifier.
    recorded = json.dumps([r.as_json() for r in world.emulator.requests])
    for secret in (*world.emulator.issued_user_tokens, world.emulator.config.app_secret, code, VERIFIER):
        assert secret not in recorded
    assert world.emulator.requests[-1].token_kind == "user"


async def test_form_body_and_basic_client_auth(world: World) -> None:
    config = world.emulator.config
    basic = base64.b64encode(f"{config.app_id}:{config.app_secret}".encode()).decode()
    form = {
        "grant_type": "authorization_code",
        "code": await world.code(),
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
    }
    status, body = await world.call("POST", TOKEN, data=form, headers={"Authorization": f"Basic {basic}"})
    assert (status, body["code"]) == (200, 0)
    # Both ways at once is refused.
    form = {**form, "code": await world.code(), "client_secret": config.app_secret}
    status, body = await world.call("POST", TOKEN, data=form, headers={"Authorization": f"Basic {basic}"})
    assert (status, body["code"], body["error"]) == (400, 20070, "invalid_request")


async def test_deny_redirects_with_access_denied(world: World) -> None:
    location = world.emulator.authorize(world.authorize_url(state="s 2"), as_user=BOB, approve=False)
    assert location.startswith(REDIRECT + "?")
    assert parse_qs(urlsplit(location).query) == {"error": ["access_denied"], "state": ["s 2"]}
    path = world.authorize_url().removeprefix(world.base)
    status, _ = await world.call("GET", path + "&emulator_user=" + BOB + "&emulator_decision=deny")
    assert status == 302


async def test_fragment_stays_after_the_query(world: World) -> None:
    url = world.authorize_url(redirect_uri=REDIRECT + "?a=1#frag")
    location = world.emulator.authorize(url, as_user=ALICE)
    parts = urlsplit(location)
    assert parts.fragment == "frag"
    assert set(parse_qs(parts.query)) == {"a", "code", "state"}


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"client_id": "cli_someone_else"}, 20048),
        ({"client_id": None}, 20001),
        ({"response_type": "token"}, 20001),
        ({"redirect_uri": None}, 20001),
        ({"redirect_uri": "https://evil.example/cb"}, 20029),
        ({"scope": "vc:meeting contact:user.phone:readonly"}, 20027),
        ({"code_challenge_method": "S512"}, 20001),
        ({"code_challenge": "short"}, 20001),
    ],
)
async def test_authorize_refusals(world: World, overrides: dict[str, str | None], code: int) -> None:
    url = world.authorize_url(**overrides)
    with pytest.raises(AuthorizeError) as refused:
        world.emulator.authorize(url, as_user=ALICE)
    assert refused.value.code == code
    status, page = await world.call("GET", url.removeprefix(world.base) + "&emulator_user=" + ALICE)
    assert status == 400
    assert str(code) in page
    status, answer = await world.call("POST", "/_emulator/authorize", json={"url": url, "as_user": ALICE})
    assert (status, answer["code"]) == (400, code)


async def test_unknown_user_and_registered_redirects() -> None:
    registered = "https://bot.example.com/oauth/callback"
    opened, runner = await open_world(EmulatorConfig(redirect_uris=(registered,)))
    try:
        with pytest.raises(AuthorizeError) as refused:
            opened.emulator.authorize(opened.authorize_url(), as_user="ou_nobody")
        assert refused.value.code == 20008
        location = opened.emulator.authorize(opened.authorize_url(redirect_uri=registered), as_user=ALICE)
        assert location.startswith(registered + "?code=")
        # Loopback under any port or path is fine; a look-alike host is not.
        opened.emulator.authorize(opened.authorize_url(redirect_uri="http://localhost:1/x"), as_user=ALICE)
        look_alike = opened.authorize_url(redirect_uri="http://127.0.0.1.evil.io/")
        with pytest.raises(AuthorizeError):
            opened.emulator.authorize(look_alike, as_user=ALICE)
    finally:
        await opened.http.close()
        await runner.cleanup()


# --- token endpoint errors --------------------------------------------------------------------------------


async def test_codes_are_single_use_and_expire(world: World) -> None:
    code = await world.code()
    assert (await world.exchange(code))[1]["code"] == 0
    status, body = await world.exchange(code)
    assert (status, body["code"], body["error"]) == (400, 20065, "invalid_grant")
    assert body["error_description"]
    assert (await world.exchange("nope"))[1]["code"] == 20003
    code = await world.code()
    world.clock.now += 300
    assert (await world.exchange(code))[1]["code"] == 20004
    assert world.emulator.user_token_exchanges == 4


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"redirect_uri": REDIRECT + "/other"}, 400, 20071),
        ({"redirect_uri": None}, 400, 20001),
        ({"code_verifier": None}, 400, 20049),
        ({"code_verifier": secrets.token_urlsafe(48)}, 400, 20049),
        ({"code_verifier": "too-short"}, 400, 20049),
        ({"client_secret": "wrong"}, 401, 20002),
        ({"client_secret": None}, 400, 20001),
        ({"client_id": "cli_other"}, 401, 20048),
        ({"grant_type": None}, 400, 20001),
        ({"grant_type": "password"}, 400, 20036),
        ({"code": None}, 400, 20001),
        ({"code": 5}, 400, 20063),
        ({"scope": "vc:meeting vc:meeting"}, 400, 20067),
        ({"scope": "vc:meeting im:message"}, 400, 20068),
    ],
)
async def test_exchange_refusals(world: World, overrides: dict[str, Any], status: int, code: int) -> None:
    valid = await world.code()
    answer_status, body = await world.exchange(valid, **overrides)
    assert (answer_status, body["code"]) == (status, code), body
    assert isinstance(body["error"], str)
    exchanges = 1 if overrides.get("grant_type", "authorization_code") == "authorization_code" else 0
    assert world.emulator.user_token_exchanges == exchanges
    assert "access_token" not in body
    # A refused attempt does not burn the code.
    assert (await world.exchange(valid))[1]["code"] == 0


async def test_malformed_body_and_plain_pkce(world: World) -> None:
    status, body = await world.call("POST", TOKEN, data=b"[1]", headers={"Content-Type": "application/json"})
    assert (status, body["code"]) == (400, 20063)
    tokens = await world.tokens(code_challenge=VERIFIER, code_challenge_method=None)  # plain is the default
    assert tokens["access_token"]
    # Narrowing at exchange: a subset without offline_access means no refresh token.
    status, body = await world.exchange(await world.code(), scope="vc:meeting")
    assert (status, body["scope"]) == (200, "vc:meeting")
    assert "refresh_token" not in body


async def test_no_offline_access_no_refresh_token_and_scopes_accumulate(world: World) -> None:
    first = await world.tokens(scope="vc:meeting")
    assert "refresh_token" not in first
    assert first["scope"] == "vc:meeting"
    second = await world.tokens(scope="im:message offline_access")
    assert second["scope"] == "vc:meeting im:message offline_access"
    assert world.emulator.granted_scopes(ALICE) == ("vc:meeting", "im:message", "offline_access")
    assert world.emulator.granted_scopes(BOB) == ()
