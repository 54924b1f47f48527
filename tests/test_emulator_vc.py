"""The emulator's video meetings over real loopback HTTP: list_by_no, get and invite (feishu-protocol §7)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp import web
from lark_oapi.api.vc.v1 import GetMeetingResponseBody, InviteMeetingResponseBody, ListByNoMeetingResponseBody

from emulator import EmulatorConfig, start_emulator
from emulator.config import (
    MEETING_ENDED,
    MEETING_FULL,
    MEETING_IN_PROGRESS,
    MEETING_LOCKED,
    MEETING_WITHOUT_ALICE,
    generated_open_id,
)
from emulator.emulator import Emulator
from tests.harness import FixedClock

ALICE = "ou_alice0000000000000000000000001"
BOB = "ou_bob000000000000000000000000002"
CAROL = "ou_carol00000000000000000000000003"
REDIRECT = "http://127.0.0.1:8080/oauth/callback"
LIST = "/open-apis/vc/v1/meetings/list_by_no"
SCOPES = "vc:meeting vc:meeting:readonly offline_access"
NOW = 1_800_000_000


def invite_path(meeting_id: str) -> str:
    return f"/open-apis/vc/v1/meetings/{meeting_id}/invite?user_id_type=open_id"


def invitees(*ids: str) -> dict[str, Any]:
    return {"invitees": [{"id": who, "user_type": 1} for who in ids]}


@dataclass
class World:
    emulator: Emulator
    base: str
    http: aiohttp.ClientSession
    clock: FixedClock

    async def call(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any, dict[str, str]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as response:
            text = await response.text()
            try:
                body = json.loads(text)
            except ValueError:
                body = text
            return response.status, body, dict(response.headers)

    async def tenant_token(self) -> str:
        config = self.emulator.config
        _, body, _ = await self.call(
            "POST",
            "/open-apis/auth/v3/tenant_access_token/internal",
            json={"app_id": config.app_id, "app_secret": config.app_secret},
        )
        token: str = body["tenant_access_token"]
        return token

    async def user_token(self, as_user: str = ALICE, scope: str = SCOPES) -> str:
        config = self.emulator.config
        query = {
            "client_id": config.app_id,
            "response_type": "code",
            "redirect_uri": REDIRECT,
            "scope": scope,
        }
        url = f"{self.base}/open-apis/authen/v1/authorize?{urlencode(query)}"
        location = self.emulator.authorize(url, as_user=as_user)
        code = parse_qs(urlsplit(location).query)["code"][0]
        body = {
            "grant_type": "authorization_code",
            "client_id": config.app_id,
            "client_secret": config.app_secret,
            "code": code,
            "redirect_uri": REDIRECT,
        }
        _, answer, _ = await self.call("POST", "/open-apis/authen/v2/oauth/token", json=body)
        token: str = answer["access_token"]
        return token


async def open_world(config: EmulatorConfig | None = None) -> tuple[World, web.AppRunner]:
    emulator, runner, base = await start_emulator(config)
    clock = FixedClock(float(NOW))
    emulator.clock = clock  # before the meeting book is first used: meetings sit around NOW
    return World(emulator, base, aiohttp.ClientSession(), clock), runner


@pytest.fixture
async def world() -> AsyncIterator[World]:
    opened, runner = await open_world()
    try:
        yield opened
    finally:
        await opened.http.close()
        await runner.cleanup()


def list_query(meeting_no: str = "123456789", **extra: Any) -> str:
    params = {"meeting_no": meeting_no, "start_time": str(NOW - 30 * 86400), "end_time": str(NOW), **extra}
    return f"{LIST}?{urlencode(params)}"


# --- list_by_no -------------------------------------------------------------------------------------------


async def test_list_by_no_pages_through_every_meeting_under_a_number(world: World) -> None:
    token = await world.tenant_token()
    status, body, _ = await world.call("GET", list_query(page_size="1"), token=token)
    assert (status, body["code"]) == (200, 0)
    first = ListByNoMeetingResponseBody(body["data"])
    assert first.has_more is True
    assert first.page_token
    assert first.meeting_briefs is not None
    assert len(first.meeting_briefs) == 1
    status, body, _ = await world.call(
        "GET", list_query(page_size="1", page_token=first.page_token), token=token
    )
    second = ListByNoMeetingResponseBody(body["data"])
    assert second.has_more is False
    assert "page_token" not in body["data"]
    assert second.meeting_briefs is not None
    ids = {brief.id for brief in first.meeting_briefs + second.meeting_briefs}
    # The ended one and the live one share the number: list_by_no does not say which is live.
    assert ids == {MEETING_ENDED, MEETING_IN_PROGRESS}
    brief = first.meeting_briefs[0]
    assert brief.meeting_no == "123456789"
    assert brief.url == "https://vc.feishu.cn/j/123456789"


async def test_list_by_no_takes_a_user_token_with_the_read_scope(world: World) -> None:
    token = await world.user_token()
    status, body, _ = await world.call("GET", list_query("987654321"), token=token)
    assert (status, body["code"]) == (200, 0)
    assert [b["id"] for b in body["data"]["meeting_briefs"]] == [MEETING_WITHOUT_ALICE]
    narrow = await world.user_token(BOB, scope="vc:meeting offline_access")  # grants add up
    status, body, _ = await world.call("GET", list_query(), token=narrow)
    assert (status, body["code"]) == (400, 99991679)
    assert [v["subject"] for v in body["error"]["permission_violations"]] == ["vc:meeting:readonly"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"meeting_no": "123456789", "start_time": str(NOW - 10)}, 99992402),  # end_time missing
        ({"meeting_no": "12345", "start_time": str(NOW - 10), "end_time": str(NOW)}, 121003),
        ({"meeting_no": "123456789", "start_time": str(NOW), "end_time": str(NOW - 10)}, 121003),
        ({"meeting_no": "123456789", "start_time": str(NOW - 91 * 86400), "end_time": str(NOW)}, 121003),
        ({"meeting_no": "123456789", "start_time": "0", "end_time": "1", "page_size": "51"}, 99992402),
    ],
)
async def test_list_by_no_refuses_bad_parameters(world: World, query: dict[str, str], code: int) -> None:
    token = await world.tenant_token()
    status, body, _ = await world.call("GET", f"{LIST}?{urlencode(query)}", token=token)
    assert (status, body["code"]) == (400, code)


async def test_list_by_no_allows_100_calls_a_minute(world: World) -> None:
    token = await world.tenant_token()
    for _ in range(100):
        status, _, _ = await world.call("GET", list_query(), token=token)
        assert status == 200
    world.clock.now += 30
    status, body, headers = await world.call("GET", list_query(), token=token)
    assert (status, body["code"]) == (429, 99991400)
    assert headers["x-ogw-ratelimit-limit"] == "100"
    assert headers["x-ogw-ratelimit-reset"] == "30"
    world.clock.now += 30
    status, _, _ = await world.call("GET", list_query(), token=token)
    assert status == 200


# --- get --------------------------------------------------------------------------------------------------


async def test_get_shows_status_and_participants(world: World) -> None:
    token = await world.user_token()
    path = f"/open-apis/vc/v1/meetings/{MEETING_IN_PROGRESS}?with_participants=true&user_id_type=open_id"
    status, body, _ = await world.call("GET", path, token=token)
    assert (status, body["code"]) == (200, 0)
    meeting = GetMeetingResponseBody(body["data"]).meeting
    assert meeting is not None
    assert meeting.status == 2
    assert meeting.meeting_no == "123456789"
    assert meeting.host_user is not None
    assert meeting.host_user.id == ALICE
    assert meeting.participants is not None
    assert [(p.id, p.status, p.is_host) for p in meeting.participants] == [(ALICE, 2, True)]
    assert body["data"]["meeting"]["start_time"] == str(NOW - 600)

    status, body, _ = await world.call("GET", f"/open-apis/vc/v1/meetings/{MEETING_ENDED}", token=token)
    ended = body["data"]["meeting"]
    assert ended["status"] == 3
    assert "end_time" in ended
    assert "participants" not in ended


async def test_get_unknown_meeting_is_121004(world: World) -> None:
    token = await world.tenant_token()
    status, body, _ = await world.call("GET", "/open-apis/vc/v1/meetings/6900000000000000000", token=token)
    assert (status, body["code"]) == (404, 121004)
    status, body, _ = await world.call("GET", "/open-apis/vc/v1/meetings/not-a-number", token=token)
    assert (status, body["code"]) == (400, 121003)


# --- invite -----------------------------------------------------------------------------------------------


async def test_invite_rings_the_invitee_and_is_recorded(world: World) -> None:
    token = await world.user_token()
    status, body, _ = await world.call(
        "PATCH", invite_path(MEETING_IN_PROGRESS), token=token, json=invitees(BOB)
    )
    assert (status, body["code"]) == (200, 0)
    results = InviteMeetingResponseBody(body["data"]).invite_results
    assert results is not None
    assert [(r.id, r.user_type, r.status) for r in results] == [(BOB, 1, 1)]
    assert set(world.emulator.meeting(MEETING_IN_PROGRESS).ringing) == {BOB}
    call = world.emulator.invite_calls[-1]
    assert (call.meeting_id, call.invitee_ids, call.operator, call.at, call.code) == (
        MEETING_IN_PROGRESS,
        (BOB,),
        ALICE,
        NOW,
        0,
    )
    path = f"/open-apis/vc/v1/meetings/{MEETING_IN_PROGRESS}?with_participants=true"
    _, body, _ = await world.call("GET", path, token=token)
    assert {(p["id"], p["status"]) for p in body["data"]["meeting"]["participants"]} == {(ALICE, 2), (BOB, 3)}
    world.emulator.join_meeting(MEETING_IN_PROGRESS, BOB)
    assert set(world.emulator.meeting(MEETING_IN_PROGRESS).participants) == {ALICE, BOB}


async def test_invite_takes_only_a_user_token_with_vc_meeting(world: World) -> None:
    tenant = await world.tenant_token()
    status, body, _ = await world.call(
        "PATCH", invite_path(MEETING_IN_PROGRESS), token=tenant, json=invitees(BOB)
    )
    assert (status, body["code"]) == (400, 99991668)
    reader = await world.user_token(scope="vc:meeting:readonly")
    status, body, _ = await world.call(
        "PATCH", invite_path(MEETING_IN_PROGRESS), token=reader, json=invitees(BOB)
    )
    assert (status, body["code"]) == (400, 99991679)
    assert [v["subject"] for v in body["error"]["permission_violations"]] == ["vc:meeting"]
    assert world.emulator.invite_calls == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, 99992402),
        ({"invitees": []}, 121003),
        (invitees(*(generated_open_id(i) for i in range(11))), 121003),
        ({"invitees": [{"user_type": 1}]}, 121003),
        ({"invitees": [{"id": BOB, "user_type": 9}]}, 121003),
    ],
)
async def test_invite_refuses_malformed_bodies(world: World, body: dict[str, Any], code: int) -> None:
    token = await world.user_token()
    status, answer, _ = await world.call("PATCH", invite_path(MEETING_IN_PROGRESS), token=token, json=body)
    assert (status, answer["code"]) == (400, code)
    assert world.emulator.invite_calls[-1].code == code


@pytest.mark.parametrize(
    ("meeting_id", "who", "status", "code"),
    [
        (MEETING_WITHOUT_ALICE, BOB, 400, 122003),  # Alice is not in Bob's meeting
        (MEETING_LOCKED, BOB, 400, 122008),
        (MEETING_FULL, BOB, 400, 122006),
        (MEETING_IN_PROGRESS, ALICE, 400, 122005),  # inviting yourself
        (MEETING_ENDED, BOB, 400, 122001),
        ("6900000000000000000", BOB, 404, 122002),
    ],
)
async def test_invite_whole_call_errors(
    world: World, meeting_id: str, who: str, status: int, code: int
) -> None:
    token = await world.user_token()
    got, body, _ = await world.call("PATCH", invite_path(meeting_id), token=token, json=invitees(who))
    assert (got, body["code"]) == (status, code)
    assert "data" not in body or not body["data"]
    assert world.emulator.invite_calls[-1].code == code


async def test_invite_reports_per_invitee_failures_with_code_0(world: World) -> None:
    world.emulator.set_busy(MEETING_IN_PROGRESS, CAROL)
    world.emulator.fail_invitee(BOB, times=1)
    token = await world.user_token()
    stranger = "ou_stranger000000000000000000001"
    body_in = invitees(BOB, CAROL, stranger)
    status, body, _ = await world.call("PATCH", invite_path(MEETING_IN_PROGRESS), token=token, json=body_in)
    assert (status, body["code"]) == (200, 0)
    assert [(r["id"], r["status"]) for r in body["data"]["invite_results"]] == [
        (BOB, 2),
        (CAROL, 2),
        (stranger, 2),
    ]
    # The forced failure was for one call only.
    status, body, _ = await world.call(
        "PATCH", invite_path(MEETING_IN_PROGRESS), token=token, json=invitees(BOB)
    )
    assert [r["status"] for r in body["data"]["invite_results"]] == [1]


SEED_CODES = [121001, 121002, 121003, 121005, 122001, 122002, 122003, 122005, 122006, 122007, 122008]


@pytest.mark.parametrize("code", SEED_CODES)
async def test_every_seed_code_can_be_forced(world: World, code: int) -> None:
    world.emulator.fail_invitee(BOB, code)
    token = await world.user_token()
    status, body, headers = await world.call(
        "PATCH", invite_path(MEETING_IN_PROGRESS), token=token, json=invitees(BOB)
    )
    assert body["code"] == code
    assert status == {121001: 500, 121005: 403, 122002: 404}.get(code, 400)
    # The log_id a bot shows for an unknown code: in the body and in the X-Tt-Logid header.
    assert body["error"]["log_id"] == headers["X-Tt-Logid"]


async def test_invite_fills_the_room_then_fails_the_rest(world: World) -> None:
    world.emulator.add_meeting(
        meeting_id="6911188411932039999",
        meeting_no="111222333",
        host=ALICE,
        participants=(ALICE,),
        capacity=3,
    )
    token = await world.user_token()
    path = invite_path("6911188411932039999")
    body_in = invitees(BOB, CAROL)
    world.emulator.fail_invitee(CAROL, 2)
    _, body, _ = await world.call("PATCH", invite_path("6911188411932039999"), token=token, json=body_in)
    assert [r["status"] for r in body["data"]["invite_results"]] == [1, 2]
    world.emulator.clear_invitee_failures()
    _, body, _ = await world.call("PATCH", path, token=token, json=body_in)
    # Bob is still ringing (re-rung), Carol takes the last seat.
    assert [r["status"] for r in body["data"]["invite_results"]] == [1, 1]
    _, body, _ = await world.call(
        "PATCH", invite_path("6911188411932039999"), token=token, json=invitees(BOB)
    )
    assert body["code"] == 122006
