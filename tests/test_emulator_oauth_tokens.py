"""The emulator's user tokens over loopback HTTP: refresh rotation, grace, expiry, revocation, faults,
lark-oapi's own refresh client, and user tokens on business APIs."""

from __future__ import annotations

from aiohttp import web
from lark_oapi.channel.auth import DeviceFlowClient

from emulator import EmulatorConfig, Fault
from emulator.replies import Refusal
from tests.test_emulator_oauth import ALICE, SCOPES, USER_INFO, World, open_world, world

__all__ = ["world"]  # the fixture, shared with test_emulator_oauth


# --- refresh ------------------------------------------------------------------------------------------------


async def test_refresh_rotates_and_detects_reuse(world: World) -> None:
    first = await world.tokens()
    status, second = await world.refresh(first["refresh_token"])
    assert (status, second["code"]) == (200, 0)
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["scope"] == SCOPES
    status, body = await world.refresh(first["refresh_token"])
    assert (status, body["code"], body["error"]) == (400, 20073, "invalid_grant")
    assert world.emulator.refresh_token_reuses == 1
    status, third = await world.refresh(second["refresh_token"], scope="vc:meeting offline_access")
    assert (third["code"], third["scope"]) == (0, "vc:meeting offline_access")
    assert world.emulator.refreshes == 2
    assert (await world.refresh("eyJunknown"))[1]["code"] == 20026
    assert (await world.refresh(third["refresh_token"], scope="vc:meeting:readonly"))[1]["code"] == 20068
    status, info = await world.call("GET", USER_INFO, token=third["access_token"])
    assert info["data"]["open_id"] == ALICE


async def test_replaced_access_token_has_a_grace_minute(world: World) -> None:
    first = await world.tokens()
    await world.refresh(first["refresh_token"])
    world.clock.now += 59
    assert (await world.call("GET", USER_INFO, token=first["access_token"]))[1]["code"] == 0
    world.clock.now += 1
    status, body = await world.call("GET", USER_INFO, token=first["access_token"])
    assert (status, body["code"]) == (400, 99991668)


async def test_expiry_follows_the_clock(world: World) -> None:
    tokens = await world.tokens()
    world.clock.now += 7199
    assert (await world.call("GET", USER_INFO, token=tokens["access_token"]))[1]["code"] == 0
    world.clock.now += 1
    status, body = await world.call("GET", USER_INFO, token=tokens["access_token"])
    assert (status, body["code"]) == (400, 99991677)
    assert body["error"]["log_id"]
    # The refresh token still works after the access token expired, until its own expiry.
    status, renewed = await world.refresh(tokens["refresh_token"])
    assert renewed["code"] == 0
    world.clock.now += 604800
    status, body = await world.refresh(renewed["refresh_token"])
    assert (status, body["code"]) == (400, 20037)


async def test_lifetimes_are_configurable_and_capped_at_the_authorization_age() -> None:
    config = EmulatorConfig(
        user_access_token_ttl_seconds=60, refresh_token_ttl_seconds=600, authorization_max_age_seconds=1000
    )
    opened, runner = await open_world(config)
    try:
        tokens = await opened.tokens()
        assert (tokens["expires_in"], tokens["refresh_token_expires_in"]) == (60, 600)
        opened.clock.now += 590
        _, renewed = await opened.refresh(tokens["refresh_token"])
        assert renewed["refresh_token_expires_in"] == 410  # what is left of the 1000 s authorization
        opened.clock.now += 410
        assert (await opened.refresh(renewed["refresh_token"]))[1]["code"] == 20037
    finally:
        await opened.http.close()
        await runner.cleanup()


async def test_revocation_ends_every_token_until_reauthorized(world: World) -> None:
    tokens = await world.tokens()
    unused_code = await world.code()
    world.emulator.revoke_user_authorization(ALICE)
    status, body = await world.call("GET", USER_INFO, token=tokens["access_token"])
    assert (status, body["code"]) == (400, 99991668)
    assert (await world.refresh(tokens["refresh_token"]))[1]["code"] == 20064
    assert (await world.exchange(unused_code))[1]["code"] == 20003
    assert world.emulator.granted_scopes(ALICE) == ()
    again = await world.tokens()
    assert (await world.call("GET", USER_INFO, token=again["access_token"]))[1]["code"] == 0


async def test_faults_on_the_token_endpoint_and_user_info(world: World) -> None:
    world.emulator.add_fault(Fault(route="user_token", status=500, code=20050))
    world.emulator.add_fault(Fault(route="user_token", status=503, code=20072))
    world.emulator.add_fault(Fault(route="user_token", status=502))
    code = await world.code()
    status, body = await world.exchange(code)
    assert (status, body["code"], body["error"]) == (500, 20050, "server_error")
    status, body = await world.exchange(code)
    assert (status, body["code"], body["error"]) == (503, 20072, "temporarily_unavailable")
    status, body = await world.exchange(code)
    assert status == 502
    assert isinstance(body, str)
    tokens = dict((await world.exchange(code))[1])
    assert tokens["code"] == 0
    world.emulator.add_fault(Fault(route="user_info", status=400, code=99991400))
    assert (await world.call("GET", USER_INFO, token=tokens["access_token"]))[1]["code"] == 99991400
    assert (await world.call("GET", USER_INFO, token=tokens["access_token"]))[1]["code"] == 0


async def test_lark_oapi_refreshes_against_the_emulator(world: World) -> None:
    tokens = await world.tokens()
    client = DeviceFlowClient(
        world.emulator.config.app_id, world.emulator.config.app_secret, domain=world.base
    )
    try:
        uat = await client.refresh(tokens["refresh_token"])
    finally:
        await client.close()
    assert uat.access_token.startswith("eyJ")
    assert uat.refresh_token not in (None, tokens["refresh_token"])
    assert uat.scopes == SCOPES.split()
    assert world.emulator.refreshes == 1


# --- user tokens on business APIs ---------------------------------------------------------------------


async def test_token_kinds_on_the_wrong_routes(world: World) -> None:
    tokens = await world.tokens()
    status, body = await world.call("GET", "/open-apis/bot/v3/info", token=tokens["access_token"])
    assert (status, body["code"]) == (400, 99991663)
    world.clock.now += 7200
    status, body = await world.call("GET", "/open-apis/bot/v3/info", token=tokens["access_token"])
    assert (status, body["code"]) == (400, 99991677)
    status, body = await world.call("GET", USER_INFO, token="t-tenant")
    assert (status, body["code"]) == (400, 99991668)
    status, body = await world.call("GET", USER_INFO)
    assert (status, body["code"]) == (400, 99991661)


async def test_require_user_token_checks_scopes(world: World) -> None:
    gate = world.emulator.user_gate

    async def handler(request: web.Request) -> web.Response:
        wanted = tuple(request.query["scopes"].split())
        try:
            user = gate.require_user_token(request, scopes=wanted)
        except Refusal as refusal:
            return refusal.response
        return web.json_response({"open_id": user.open_id})

    app = web.Application()
    app.router.add_get("/act", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    here = f"http://127.0.0.1:{runner.addresses[0][1]}/act"
    tokens = await world.tokens(scope="vc:meeting:readonly")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    try:
        async with world.http.get(here, params={"scopes": "vc:meeting"}, headers=headers) as response:
            body = await response.json()
            assert (response.status, body["code"]) == (400, 99991679)
            assert [v["subject"] for v in body["error"]["permission_violations"]] == ["vc:meeting"]
        either = {"scopes": "vc:meeting vc:meeting:readonly"}
        async with world.http.get(here, params=either, headers=headers) as response:
            assert (response.status, await response.json()) == (200, {"open_id": ALICE})
        async with world.http.get(here, params={"scopes": "drive:drive"}, headers=headers) as response:
            assert (await response.json())["code"] == 99991672
    finally:
        await runner.cleanup()
