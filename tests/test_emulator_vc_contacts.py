"""The emulator's invite limits and control endpoints, chat members and e-mail lookup, over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from lark_oapi.api.contact.v3 import BatchGetIdUserResponseBody
from lark_oapi.api.im.v1 import GetChatMembersResponseBody

from emulator import EmulatorConfig, Fault
from emulator.config import MEETING_IN_PROGRESS, generated_open_id
from tests.test_emulator_vc import (
    ALICE,
    BOB,
    NOW,
    World,
    invite_path,
    invitees,
    open_world,
)

BIG_CHAT = "oc_big00000000000000000000000001"
TEAM = "oc_team00000000000000000000000001"
NOBOT = "oc_nobot0000000000000000000000001"
LOOKUP = "/open-apis/contact/v3/users/batch_get_id?user_id_type=open_id"


@pytest.fixture
async def world() -> AsyncIterator[World]:
    # 300 more people, all in one big chat with the default three.
    opened, runner = await open_world(EmulatorConfig().with_generated_users(300, chat_id=BIG_CHAT))
    try:
        yield opened
    finally:
        await opened.http.close()
        await runner.cleanup()


def members_path(chat_id: str, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in {"member_id_type": "open_id", **query}.items())
    return f"/open-apis/im/v1/chats/{chat_id}/members?{params}"


# --- invite limits, faults, control endpoints ---------------------------------------------------------------


async def test_invite_limits_50_a_second_and_1000_a_minute(world: World) -> None:
    world.emulator.add_meeting(
        meeting_id="6911188411932030500",
        meeting_no="500500500",
        host=ALICE,
        participants=(ALICE,),
        capacity=600,
    )
    token = await world.user_token()
    path = invite_path("6911188411932030500")
    people = [generated_open_id(i) for i in range(300)] + [BOB]
    for batch in range(30):
        status, body, _ = await world.call(
            "PATCH", path, token=token, json=invitees(*people[batch * 10 :][:10])
        )
        assert (status, body["code"]) == (200, 0)
    for _ in range(20):
        status, _, _ = await world.call("PATCH", path, token=token, json=invitees(BOB))
        assert status == 200
    status, body, headers = await world.call("PATCH", path, token=token, json=invitees(BOB))
    assert (status, body["code"], headers["x-ogw-ratelimit-limit"]) == (429, 99991400, "50")
    assert world.emulator.invite_calls[-1].code == 99991400
    assert len(world.emulator.meeting("6911188411932030500").ringing) == 301
    for second in range(1, 20):
        world.clock.now = NOW + second
        for _ in range(50):
            status, _, _ = await world.call("PATCH", path, token=token, json=invitees(BOB))
            assert status == 200
    world.clock.now = NOW + 20
    status, body, headers = await world.call("PATCH", path, token=token, json=invitees(BOB))
    assert (status, headers["x-ogw-ratelimit-limit"]) == (429, "1000")
    assert headers["x-ogw-ratelimit-reset"] == "40"


async def test_invite_fault_can_delay_then_fail(world: World) -> None:
    world.emulator.add_fault(Fault(route="invite", status=None, delay_seconds=0.05))
    world.emulator.add_fault(Fault(route="invite", status=503))
    token = await world.user_token()
    status, body, _ = await world.call(
        "PATCH", invite_path(MEETING_IN_PROGRESS), token=token, json=invitees(BOB)
    )
    assert (status, body["code"]) == (200, 0)
    status, body, _ = await world.call(
        "PATCH", invite_path(MEETING_IN_PROGRESS), token=token, json=invitees(BOB)
    )
    assert status == 503
    assert isinstance(body, str)


async def test_control_endpoints_drive_meetings(world: World) -> None:
    spec = {
        "meeting_id": "6911188411932037777",
        "meeting_no": "777888999",
        "host": ALICE,
        "participants": [ALICE],
    }
    status, body, _ = await world.call("POST", "/_emulator/meetings", json=spec)
    assert status == 200
    assert body["meeting"]["url"] == "https://vc.feishu.cn/j/777888999"
    status, _, _ = await world.call("POST", "/_emulator/meetings", json=spec)
    assert status == 400  # the id is taken
    status, body, _ = await world.call(
        "POST", "/_emulator/meetings/6911188411932037777/join", json={"open_id": BOB}
    )
    assert set(body["meeting"]["participants"]) == {ALICE, BOB}
    status, body, _ = await world.call(
        "POST", "/_emulator/fail-invitee", json={"open_id": BOB, "code": 122007}
    )
    assert status == 200
    token = await world.user_token()
    _, body, _ = await world.call("PATCH", invite_path(MEETING_IN_PROGRESS), token=token, json=invitees(BOB))
    assert body["code"] == 122007
    _, body, _ = await world.call("GET", f"/_emulator/invite-calls?meeting_id={MEETING_IN_PROGRESS}")
    assert [(c["operator"], c["invitee_ids"], c["code"]) for c in body["invite_calls"]] == [
        (ALICE, [BOB], 122007)
    ]
    status, body, _ = await world.call("POST", "/_emulator/meetings/6911188411932037777/end")
    assert (status, body["meeting"]["status"], body["meeting"]["participants"]) == (200, 3, [])
    _, listed, _ = await world.call("GET", "/_emulator/meetings")
    assert "6911188411932037777" in {m["meeting_id"] for m in listed["meetings"]}


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("POST", "/_emulator/meetings", {"meeting_id": "12", "meeting_no": "1", "host": ALICE}),
        ("POST", "/_emulator/meetings", "not an object"),
        ("POST", "/_emulator/fail-invitee", {"open_id": BOB, "code": 1}),
        ("POST", "/_emulator/meetings/6911188411932033028/join", {"who": BOB}),
        ("POST", "/_emulator/meetings/6911188411932033028/lock", {"locked": "yes"}),
    ],
)
async def test_control_endpoints_answer_bad_input_with_400(
    world: World, method: str, path: str, payload: Any
) -> None:
    status, body, _ = await world.call(method, path, json=payload)
    assert status == 400
    assert body["error"]
    status, _, _ = await world.call("POST", "/_emulator/meetings/6900000000000000000/end")
    assert status == 404


# --- chat members -------------------------------------------------------------------------------------------


async def test_members_page_through_a_300_person_chat_without_the_bot(world: World) -> None:
    token = await world.tenant_token()
    seen: list[str] = []
    page_token = ""
    pages = 0
    while True:
        query = {"page_size": "100", **({"page_token": page_token} if page_token else {})}
        status, body, _ = await world.call("GET", members_path(BIG_CHAT, **query), token=token)
        assert (status, body["code"]) == (200, 0)
        data = GetChatMembersResponseBody(body["data"])
        assert data.member_total == 303
        assert data.items is not None
        seen += [item.member_id or "" for item in data.items]
        pages += 1
        if not data.has_more:
            break
        assert data.page_token
        page_token = data.page_token
    assert pages == 4
    assert len(seen) == len(set(seen)) == 303
    assert world.emulator.config.bot_open_id not in seen
    _, body, _ = await world.call("GET", members_path(TEAM), token=token)
    first = body["data"]["items"][0]
    assert first == {
        "member_id_type": "open_id",
        "member_id": ALICE,
        "name": "Alice",
        "tenant_key": world.emulator.config.tenant_key,
    }


@pytest.mark.parametrize(
    ("chat_id", "query", "code"),
    [
        ("oc_unknown000000000000000000000001", {}, 232006),
        (NOBOT, {}, 232011),  # the bot is not in that chat
        (TEAM, {"page_size": "101"}, 99992402),
        (TEAM, {"page_token": "garbage"}, 232001),
        (TEAM, {"member_id_type": "email"}, 99992402),
    ],
)
async def test_members_refusals(world: World, chat_id: str, query: dict[str, str], code: int) -> None:
    token = await world.tenant_token()
    status, body, _ = await world.call("GET", members_path(chat_id, **query), token=token)
    assert (status, body["code"]) == (400, code)


# --- e-mail lookup ------------------------------------------------------------------------------------------


async def test_batch_get_id_finds_known_emails_only(world: World) -> None:
    token = await world.tenant_token()
    emails = ["BOB@example.com", "nobody@example.com", "user0042@example.com"]
    status, body, _ = await world.call("POST", LOOKUP, token=token, json={"emails": emails})
    assert (status, body["code"]) == (200, 0)
    found = BatchGetIdUserResponseBody(body["data"]).user_list
    assert found is not None
    assert [(u.email, u.user_id) for u in found] == [
        ("BOB@example.com", BOB),
        ("nobody@example.com", None),
        ("user0042@example.com", generated_open_id(41)),
    ]
    assert body["data"]["user_list"][1] == {"email": "nobody@example.com"}


async def test_batch_get_id_limits_and_token(world: World) -> None:
    token = await world.tenant_token()
    too_many = [f"user{i:04d}@example.com" for i in range(1, 52)]
    status, body, _ = await world.call("POST", LOOKUP, token=token, json={"emails": too_many})
    assert (status, body["code"]) == (400, 99992402)
    assert body["error"]["field_violations"][0]["field"] == "emails"
    status, body, _ = await world.call("POST", LOOKUP, token=token, json={"emails": too_many[:50]})
    assert len(body["data"]["user_list"]) == 50
    user = await world.user_token()
    status, body, _ = await world.call("POST", LOOKUP, token=user, json={"emails": ["bob@example.com"]})
    assert (status, body["code"]) == (400, 99991663)  # tenant_access_token only
