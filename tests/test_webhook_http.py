"""`POST /feishu/events` over loopback: each status code, both challenge forms, the replay window,
and duplicates (concurrent and late) producing exactly one reply."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from emulator import Fault
from tests.harness import ALICE, BOB, TEAM, Harness


async def raw_post(world: Harness, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{world.bot_url}/feishu/events", data=body, headers=headers or {}) as response,
    ):
        return response.status, await response.text()


async def test_well_formed_event_is_200(world: Harness) -> None:
    result = await world.emulator.say(ALICE, TEAM, "/help")
    assert result.status == 200
    assert result.body == {"msg": "success"}


async def test_bad_signature_is_401_and_does_nothing(world: Harness) -> None:
    event = world.emulator.build_say_event(ALICE, TEAM, "/help")
    result = await world.emulator.push(event, signature="0" * 64)
    assert result.status == 401
    unsigned = await world.emulator.push(world.emulator.build_say_event(ALICE, TEAM, "/help"), sign=False)
    assert unsigned.status == 401
    await world.emulator.say(BOB, TEAM, "/help")  # handled after anything accepted before it
    await world.emulator.wait_for_messages(1, chat_id=TEAM)
    assert len(world.emulator.messages) == 1


async def test_replay_window(world: Harness) -> None:
    old = str(int(time.time()) - 301)
    stale = await world.emulator.push(world.emulator.build_say_event(ALICE, TEAM, "/help"), timestamp=old)
    assert stale.status == 401
    recent = str(int(time.time()) - 200)
    fresh = await world.emulator.push(world.emulator.build_say_event(ALICE, TEAM, "/help"), timestamp=recent)
    assert fresh.status == 200


async def test_wrong_verification_token_is_403(world: Harness) -> None:
    event = world.emulator.build_say_event(ALICE, TEAM, "/help")
    event["header"]["token"] = "not-the-token"
    assert (await world.emulator.push(event)).status == 403


async def test_malformed_bodies_are_400(world: Harness) -> None:
    assert (await raw_post(world, b"this is not json"))[0] == 400
    # Unsigned and not a challenge: with an Encrypt Key set, the missing signature is the first problem.
    assert (await raw_post(world, b'{"schema":"2.0","header":{}}'))[0] == 401
    # Signed, so the signature passes, but the envelope inside is not an event.
    result = await world.emulator.push({"schema": "2.0", "header": {"event_id": "x"}})
    assert result.status == 400


async def test_body_over_one_mebibyte_is_413(world: Harness) -> None:
    status, _ = await raw_post(world, b'{"pad":"' + b"x" * (1024 * 1024 + 16) + b'"}')
    assert status == 413


async def test_unhandled_event_type_is_200_and_ignored(world: Harness) -> None:
    event = world.emulator.build_say_event(ALICE, TEAM, "/help")
    event["header"]["event_type"] = "contact.user.created_v3"
    event["event"] = {"object": {"open_id": "ou_new"}}
    assert (await world.emulator.push(event)).status == 200


async def test_challenge_encrypted_and_plain(world: Harness) -> None:
    challenge = world.emulator.build_url_verification("chal-enc")
    encrypted = await world.emulator.push(challenge, sign=False)
    assert (encrypted.status, encrypted.body) == (200, {"challenge": "chal-enc"})
    plain = await world.emulator.push(
        world.emulator.build_url_verification("chal-plain"), encrypt=False, sign=False
    )
    assert (plain.status, plain.body) == (200, {"challenge": "chal-plain"})
    wrong = world.emulator.build_url_verification("chal-bad")
    wrong["token"] = "nope"
    assert (await world.emulator.push(wrong, sign=False)).status == 403


async def test_concurrent_duplicates_give_one_reply(world: Harness) -> None:
    event = world.emulator.build_say_event(ALICE, TEAM, "/help")
    results = await asyncio.gather(*(world.emulator.push(event) for _ in range(8)))
    assert [result.status for result in results] == [200] * 8
    await world.emulator.say(BOB, TEAM, "/help")  # a sentinel, answered after the first
    await world.emulator.wait_for_messages(2, chat_id=TEAM)
    assert len(world.emulator.messages) == 2


async def test_same_message_under_a_new_event_id_later_gives_no_second_reply(world: Harness) -> None:
    event = world.emulator.build_say_event(ALICE, TEAM, "/help")
    assert (await world.emulator.push(event)).status == 200
    await world.emulator.wait_for_messages(1, chat_id=TEAM)
    again = world.emulator.build_say_event(
        ALICE, TEAM, "/help", message_id=event["event"]["message"]["message_id"]
    )
    assert again["header"]["event_id"] != event["header"]["event_id"]
    assert (await world.emulator.push(again)).status == 200
    assert (await world.emulator.push(event)).status == 200  # Feishu's own retry, same event_id
    await world.emulator.say(BOB, TEAM, "/help")
    await world.emulator.wait_for_messages(2, chat_id=TEAM)
    assert len(world.emulator.messages) == 2


async def test_revoked_tenant_token_is_refetched_once(world: Harness) -> None:
    await world.emulator.say(ALICE, TEAM, "/help")
    await world.emulator.wait_for_messages(1, chat_id=TEAM)
    issued = world.emulator.tenant_tokens_issued
    world.emulator.revoke_tenant_tokens()
    await world.emulator.say(BOB, TEAM, "/help")
    await world.emulator.wait_for_messages(2, chat_id=TEAM)
    assert world.emulator.tenant_tokens_issued == issued + 1


async def test_rate_limited_and_failing_replies_are_retried(world: Harness) -> None:
    world.emulator.add_fault(Fault(route="reply", status=429, headers={"x-ogw-ratelimit-reset": "0"}))
    world.emulator.add_fault(Fault(route="reply", status=503))
    await world.emulator.say(ALICE, TEAM, "/help")
    [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM)
    assert reply.msg_type == "interactive"
    replies = [r for r in world.emulator.requests if r.path.endswith("/reply")]
    assert len(replies) == 3


async def test_healthz_and_metrics(world: Harness) -> None:
    await world.emulator.say(ALICE, TEAM, "/help")
    await world.emulator.wait_for_messages(1, chat_id=TEAM)
    await world.runtime.inbox.wait_idle(5)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{world.bot_url}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{world.bot_url}/metrics") as response:
            text = await response.text()
    assert 'invite_bot_events_received_total{event_type="im.message.receive_v1"} 1.0' in text
    assert 'invite_bot_events_handled_total{event_type="im.message.receive_v1"} 1.0' in text


async def test_readyz_when_store_and_identity_are_there(world: Harness) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{world.bot_url}/readyz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ready"}
    await world.runtime.store.close()  # the store goes away under the running bot
    async with aiohttp.ClientSession() as session, session.get(f"{world.bot_url}/readyz") as response:
        assert response.status == 503
        body = await response.json()
        assert body["problems"][0].startswith("store unreachable")
