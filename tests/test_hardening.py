"""Findings of the attacker's review (issue 9), each reproduced over loopback against the emulator."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest
from aiohttp import web

from bot.feishu.events import Mention, UserId
from bot.listener import GUARD, ConnectionGuard, start_listener
from emulator import EmulatorConfig, Fault
from emulator.config import MEETING_IN_PROGRESS, generated_open_id
from handlers.invite.grammar import read_invite
from tests.harness import (
    ALICE,
    ALICE_DM,
    BOB,
    CAROL,
    ROOM,
    TEAM,
    Harness,
    ManualClock,
    authorize,
    browse,
    ephemeral_prompt,
    free_port,
    invite,
    open_harness,
    open_world,
    prompt_url,
    updated_card,
)

# --- 1. one message must not freeze the process -------------------------------------------------------

# Inputs that made one pattern or another scan the rest of the text from every position.
PATHOLOGICAL = {
    "brackets": "[" * 100_000,
    "empty links": "[](" * 34_000,
    "link labels": "[a" * 50_000,
    "open parens": "[x](" + "(" * 100_000,
    "percent signs": "%" * 100_000,
    "local parts": ("a" * 63 + "@") * 1_600,
    "dotted domain": "a@" + "b." * 50_000,
    "labels": "a@" + ("c" * 62 + ".") * 1_600,
    "digits": "1" * 100_000,
    "grouped digits": "123-" * 25_000,
    "placeholders": "@_user_" * 15_000,
    "all": "@_all" * 20_000,
    "links": "https://vc.feishu.cn/j/" * 4_500,
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_the_grammar_is_linear_on_100_kb_of_hostile_text(name: str) -> None:
    text = PATHOLOGICAL[name]
    assert len(text) >= 100_000
    mentions = [Mention(key=f"@_user_{n}", id=UserId(open_id=f"ou_{n}")) for n in range(1, 50)]
    started = time.perf_counter()
    read_invite(text, mentions, sender_open_id="ou_sender", bot_open_id="ou_bot")
    # Linear patterns take a few milliseconds here; a quadratic one takes tens of seconds. The budget
    # sits far from both, so a loaded machine cannot make it flaky.
    assert time.perf_counter() - started < 2.0


async def healthz_seconds(world: Harness) -> float:
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session, session.get(f"{world.bot_url}/healthz") as response:
        assert response.status == 200
    return time.perf_counter() - started


async def test_a_huge_hostile_command_is_refused_unread_and_the_bot_stays_responsive(
    world: Harness,
) -> None:
    pushed = await world.emulator.say(ALICE, TEAM, "/invite " + "[" * 32_000)
    assert pushed.status == 200
    # While the bot handles it, everything else still answers at once.
    probes = [await healthz_seconds(world) for _ in range(5)]
    [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM, timeout=10)
    assert reply.content["header"]["title"]["content"] == "Command too long"
    assert max(probes) < 1.0
    # And the next command in that chat is answered as usual.
    await world.emulator.say(ALICE, TEAM, "/help")
    replies = await world.emulator.wait_for_messages(2, chat_id=TEAM)
    assert "how to use" in replies[1].content["header"]["title"]["content"]


async def test_a_long_unknown_word_costs_nothing_either(world: Harness) -> None:
    started = time.perf_counter()
    await world.emulator.say(ALICE, TEAM, "/" + "x" * 50_000)
    [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM, timeout=10)
    assert time.perf_counter() - started < 5.0
    assert len(str(reply.content)) < 10_000  # the echoed word is cut, not pasted back whole


async def test_chatter_of_any_length_is_ignored_quickly(world: Harness) -> None:
    await world.emulator.say(ALICE, TEAM, "[](" * 40_000, mention_bot=False)
    await world.emulator.say(ALICE, TEAM, "/help")
    [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM, timeout=10)
    assert "how to use" in reply.content["header"]["title"]["content"]


# --- 3. no markup from outside in the bot's own cards -------------------------------------------------

PHISHING_NAME = "Alice [Click to re-authorize](https://evil.example/phish) <at id=all></at>"


def live_markup(sent: object) -> list[str]:
    """What in a sent card would act rather than read: a link, an @all, a raw tag, a bare address."""
    text = json.dumps(sent, ensure_ascii=False)
    found = [pattern for pattern in ("](", "<at id=all", "<a ", "<link", "https://evil") if pattern in text]
    found += re.findall(r"<at id=(?!ou_[A-Za-z0-9]+>)[^>]*>", text)
    return found


async def test_an_unknown_command_cannot_post_a_link_in_the_bots_voice(world: Harness) -> None:
    typed = "/x`[Authorization expired, sign in again](https://evil.example/login)`y"
    await world.emulator.say(ALICE, TEAM, typed)
    [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM)
    assert "Unknown command" in json.dumps(reply.content)
    assert live_markup(reply.content) == []
    assert "/x｀［Authorization" in json.dumps(reply.content, ensure_ascii=False)  # shown, inert


def with_user_named(name: str, open_id: str = ALICE) -> EmulatorConfig:
    base = EmulatorConfig()
    data = base.model_dump()
    data["users"] = [{**user, "name": name} if user["open_id"] == open_id else user for user in data["users"]]
    return EmulatorConfig.model_validate(data)


async def test_a_display_name_cannot_phish_or_ping_everyone(tmp_path: Path) -> None:
    world = await open_harness(tmp_path, with_user_named(PHISHING_NAME), clock=ManualClock())
    try:
        await world.start_bot()
        await authorize(world, ALICE)  # the /login resumes and answers in the group
        [public] = await world.emulator.wait_for_messages(1, chat_id=TEAM)
        prompts = await world.emulator.wait_for_ephemeral(2, open_id=ALICE)
        await world.emulator.say(ALICE, TEAM, "/login")  # already authorized: says so, publicly
        replies = await world.emulator.wait_for_messages(2, chat_id=TEAM)
        for card in (public.content, replies[1].content, prompts[1].card):
            assert "Click to re" in json.dumps(card, ensure_ascii=False)
            assert live_markup(card) == []
    finally:
        await world.close()


async def test_a_malformed_open_id_is_never_rendered_nor_invited(tmp_path: Path) -> None:
    world = await open_world(tmp_path)
    try:
        await invite(world, "/invite 123456789 @Bob")
        message = world.emulator.messages[-1]
        [form] = [b for b in world.emulator.card_buttons(message.message_id) if "Invite more" in str(b)]
        hostile = "ou_x></at><at id=all></at>"
        result = await world.emulator.click(
            ALICE, message.message_id, form["value"], form_value={"people": [hostile, CAROL]}
        )
        assert result.ok, result.error
        card = await updated_card(world, message.message_id)
        assert live_markup(json.loads(card)) == []
        invited = [open_id for call in world.emulator.invite_calls for open_id in call.invitee_ids]
        assert hostile not in invited
        assert CAROL in invited
    finally:
        await world.close()


# --- 8. nothing is acknowledged that the inbox could not read back -----------------------------------


@pytest.mark.parametrize("depth", [70, 200, 255])
async def test_a_deeply_nested_event_is_refused_before_the_ack(world: Harness, depth: int) -> None:
    event = world.emulator.build_say_event(ALICE, TEAM, "/help")
    nesting: object = "x"
    for _ in range(depth):
        nesting = {"n": nesting}
    event["event"]["extra"] = nesting
    pushed = await world.emulator.push(event)
    assert pushed.status == 400
    stats = await world.runtime.store.inbox_stats()
    assert (stats.pending, stats.running, stats.dead) == (0, 0, 0)


# --- 2. a confirmed /logout stays a logout ---------------------------------------------------------


async def test_a_refresh_in_flight_cannot_undo_a_logout(tmp_path: Path) -> None:
    clock = ManualClock()
    world = await open_harness(tmp_path, clock=clock)
    try:
        await world.start_bot()
        await authorize(world, ALICE)
        await world.emulator.wait_for_messages(1, chat_id=TEAM)  # "authorized"
        clock.advance(7200 - 60)  # the access token is due for a refresh
        # A slow token endpoint: the /login's refresh is still in flight when the /logout is confirmed.
        world.emulator.add_fault(Fault(route="user_token", status=None, delay_seconds=1.5))
        await world.emulator.say(ALICE, TEAM, "/login")
        await asyncio.sleep(0.3)
        await world.emulator.say(ALICE, ALICE_DM, "/logout")
        [logged_out] = await world.emulator.wait_for_messages(1, chat_id=ALICE_DM)
        assert "Your authorization is deleted" in json.dumps(logged_out.content)
        await world.runtime.inbox.wait_idle(10)  # the refresh has finished by now
        assert world.emulator.refreshes == 1
        assert await world.runtime.authority.current(world.emulator.config.tenant_key, ALICE) is None
        # The next command is not carried out as Alice: she is asked to authorize again.
        calls = len(world.emulator.invite_calls)
        prompts = len(world.emulator.ephemeral_messages)
        await world.emulator.say(ALICE, TEAM, "/invite 123456789 @Bob")
        await world.emulator.wait_for_ephemeral(prompts + 1, open_id=ALICE)
        await world.runtime.inbox.wait_idle(10)
        assert len(world.emulator.invite_calls) == calls
    finally:
        await world.close()


async def test_a_logout_is_confirmed_only_after_calls_already_under_way_as_the_user(tmp_path: Path) -> None:
    world = await open_world(tmp_path)
    try:
        world.emulator.add_fault(Fault(route="invite", status=None, delay_seconds=1.0))
        await world.emulator.say(ALICE, TEAM, "/invite 123456789 @Bob")
        await asyncio.sleep(0.3)  # the invitation is on its way to Feishu
        await world.emulator.say(ALICE, ALICE_DM, "/logout")
        [logged_out] = await world.emulator.wait_for_messages(1, chat_id=ALICE_DM)
        [call] = world.emulator.invite_calls
        assert logged_out.create_time >= call.at * 1000  # "deleted" is said after the last act as Alice
        await world.emulator.say(ALICE, TEAM, "/invite 123456789 @Carol")
        await world.runtime.inbox.wait_idle(10)
        assert len(world.emulator.invite_calls) == 1
    finally:
        await world.close()


# --- 4. a slow or stalled client holds nothing for long -----------------------------------------------


async def stall(port: int, first_bytes: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first_bytes)
    await writer.drain()
    return reader, writer


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sent before closing the connection (TimeoutError if it never closes)."""
    async with asyncio.timeout(seconds):
        return await reader.read()


async def test_stalled_connections_neither_starve_others_nor_stay_open(world: Harness) -> None:
    port = world.settings.bot_port
    half_headers = b"POST /feishu/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    held = [await stall(port, half_headers) for _ in range(300)]
    trickled = await stall(
        port, b"POST /feishu/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n{"
    )

    async def trickle() -> None:
        while True:
            await asyncio.sleep(2)
            trickled[1].write(b" ")

    trickling = asyncio.create_task(trickle())
    started = time.perf_counter()
    try:
        assert await healthz_seconds(world) < 1.0
        answer = await closed_within(trickled[0], 30)
        assert answer.startswith(b"HTTP/1.1 408")
        for reader, _ in held:
            await closed_within(reader, 30 - (time.perf_counter() - started))
        assert time.perf_counter() - started < 30
    finally:
        trickling.cancel()
        for _, writer in [*held, trickled]:
            writer.close()


async def test_past_the_connection_limit_idle_connections_make_room(tmp_path: Path) -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    guard = ConnectionGuard(max_connections=20)
    app = web.Application(middlewares=[guard.middleware])
    app[GUARD] = guard
    app.router.add_get("/healthz", ok)
    port = free_port()
    runner, _ = await start_listener(app, "127.0.0.1", port)
    try:
        held = [await stall(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") for _ in range(40)]
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as got:
            assert got.status == 200
        await asyncio.sleep(0.3)
        closed = sum(reader.at_eof() for reader, _ in held)
        assert closed >= 20  # the oldest idle ones, so that at most 20 are ever open
        for _, writer in held:
            writer.close()
    finally:
        await runner.cleanup()


# --- 5. a click ends in its effect, or in a message saying it failed ----------------------------------


async def card_with_a_failure(world: Harness) -> tuple[str, dict[str, object]]:
    """Alice invites Bob and Carol while Carol is in another call; the card and its Retry button."""
    world.emulator.set_busy(MEETING_IN_PROGRESS, CAROL)
    await invite(world, "/invite 123456789 @Bob @Carol")
    world.emulator.set_busy(MEETING_IN_PROGRESS, CAROL, busy=False)
    message = world.emulator.messages[-1]
    [button] = [b for b in world.emulator.card_buttons(message.message_id) if "Retry" in json.dumps(b)]
    assert isinstance(button["value"], dict)
    return message.message_id, button["value"]


def rung(world: Harness, open_id: str) -> int:
    return sum(call.invitee_ids.count(open_id) for call in world.emulator.invite_calls)


async def test_a_click_survives_a_flaky_token_endpoint(tmp_path: Path) -> None:
    world = await open_world(tmp_path)
    try:
        message_id, retry = await card_with_a_failure(world)
        assert isinstance(world.clock, ManualClock)
        world.clock.advance(7200 - 60)  # the click has to refresh Alice's token first
        world.emulator.add_fault(Fault(route="user_token", status=500, code=20050, times=3))
        result = await world.emulator.click(ALICE, message_id, retry)
        assert result.ok, result.error
        card = await updated_card(world, message_id, within=15)
        assert "Invited 2" in card
        assert rung(world, CAROL) == 2  # once in the command (busy), once by the click
    finally:
        await world.close()


async def test_a_click_that_cannot_be_done_says_so_and_gives_the_button_back(tmp_path: Path) -> None:
    world = await open_world(tmp_path)
    try:
        message_id, retry = await card_with_a_failure(world)
        assert isinstance(world.clock, ManualClock)
        world.clock.advance(7200 - 60)
        world.emulator.add_fault(Fault(route="user_token", status=500, code=20050, times=1000))
        prompts = len(world.emulator.ephemeral_messages)
        assert (await world.emulator.click(ALICE, message_id, retry)).ok
        notes = await world.emulator.wait_for_ephemeral(prompts + 1, open_id=ALICE, timeout=30)
        assert "did not go through" in json.dumps(notes[-1].card)
        assert rung(world, CAROL) == 1
        world.emulator.clear_faults()
        again = await world.emulator.click(ALICE, message_id, retry)
        assert again.ok, again.error
        assert again.toast is not None
        assert again.toast["type"] == "info"  # the button works again, not "expired"
        assert "Invited 2" in await updated_card(world, message_id, within=10)
    finally:
        await world.close()


async def test_in_a_direct_chat_a_click_that_cannot_be_done_is_answered_there(tmp_path: Path) -> None:
    world = await open_world(tmp_path)
    try:
        world.emulator.set_busy(MEETING_IN_PROGRESS, CAROL)
        await invite(world, "/invite 123456789 @Bob @Carol", chat=ALICE_DM)
        world.emulator.set_busy(MEETING_IN_PROGRESS, CAROL, busy=False)
        card = world.emulator.messages[-1]
        [button] = [b for b in world.emulator.card_buttons(card.message_id) if "Retry" in json.dumps(b)]
        assert isinstance(world.clock, ManualClock)
        world.clock.advance(7200 - 60)
        world.emulator.add_fault(Fault(route="user_token", status=500, code=20050, times=1000))
        before = len([m for m in world.emulator.messages if m.chat_id == ALICE_DM])
        assert (await world.emulator.click(ALICE, card.message_id, button["value"])).ok
        replies = await world.emulator.wait_for_messages(before + 1, chat_id=ALICE_DM, timeout=30)
        assert "did not go through" in json.dumps(replies[-1].content)
        # No ephemeral card outside a group: the notice is a reply in the direct chat.
        assert [m for m in world.emulator.ephemeral_messages if m.chat_id == ALICE_DM] == []
    finally:
        await world.close()


async def test_a_retried_click_never_rings_anyone_twice(tmp_path: Path) -> None:
    world = await open_world(tmp_path)
    try:
        message_id, retry = await card_with_a_failure(world)
        # The card update fails after the invitations went out; the inbox retries the click.
        world.emulator.add_fault(Fault(route="update", status=500, times=2))
        assert (await world.emulator.click(ALICE, message_id, retry)).ok
        assert "Invited 2" in await updated_card(world, message_id, within=15)
        assert rung(world, CAROL) == 2
    finally:
        await world.close()


# --- 9. the group's own rules stand -------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["@all", "@所有人", "@ALL"])
async def test_typed_all_is_not_the_real_mention(tmp_path: Path, typed: str) -> None:
    # Only the group's owner may @all here: what Alice types is text, and must not invite the chat.
    config = EmulatorConfig()
    chats = tuple(
        chat.model_copy(update={"at_all_permission": "only_owner", "owner_id": BOB}) for chat in config.chats
    )
    world = await open_world(tmp_path, config.model_copy(update={"chats": chats}))
    try:
        card = await invite(world, f"/invite 123456789 {typed}")
        assert "Whom should I invite?" in json.dumps(card, ensure_ascii=False)
        assert world.emulator.invite_calls == []
    finally:
        await world.close()


async def test_the_real_all_mention_in_a_post_invites_the_chat(tmp_path: Path) -> None:
    world = await open_world(tmp_path)
    try:
        card = await invite(world, "/invite 123456789 @all", message_type="post")
        assert "Invited" in json.dumps(card, ensure_ascii=False)
        assert world.emulator.invite_calls
    finally:
        await world.close()


async def test_invite_more_above_the_threshold_asks_the_clicker_to_confirm(tmp_path: Path) -> None:
    config = EmulatorConfig().with_generated_users(12, chat_id=ROOM, chat_name="Crowd")
    world = await open_world(tmp_path, config)
    try:
        await invite(world, "/invite 123456789 @Bob", chat=ROOM)
        message_id = world.emulator.messages[-1].message_id
        [form] = [b for b in world.emulator.card_buttons(message_id) if "Invite more" in str(b)]
        picked = [generated_open_id(n) for n in range(12)]
        result = await world.emulator.click(ALICE, message_id, form["value"], form_value={"people": picked})
        assert result.ok, result.error
        asked = await updated_card(world, message_id)
        assert "Invite 12 people?" in asked
        await world.runtime.inbox.wait_idle(5)
        assert len(world.emulator.invite_calls) == 1  # only the command's own call, for Bob
        buttons = world.emulator.card_buttons(message_id)
        [confirm] = [b["value"] for b in buttons if "Confirm" in json.dumps(b)]
        by_alice = await world.emulator.click(ALICE, message_id, confirm)
        assert by_alice.ok, by_alice.error
        done = await updated_card(world, message_id, count=2)
        assert "Invited 13" in done  # Bob from the command, and the twelve
        assert all(rung(world, open_id) == 1 for open_id in picked)
    finally:
        await world.close()


# --- 6. a link is spent only by its owner's successful sign-in ----------------------------------------


@pytest.mark.parametrize("spoiler", ["error=access_denied", "code=junk-code-from-a-stranger", "code="])
async def test_a_stranger_with_the_link_cannot_spend_it(tmp_path: Path, spoiler: str) -> None:
    world = await open_harness(tmp_path, clock=ManualClock())
    try:
        await world.start_bot()
        await world.emulator.say(ALICE, TEAM, "/login")
        link = await ephemeral_prompt(world, ALICE)
        [state] = parse_qs(urlsplit(link).query)["state"]
        status, _ = await browse(f"{world.bot_url}/oauth/callback?state={quote(state)}&{spoiler}")
        assert 400 <= status < 500
        # Alice's own sign-in still goes through, and what waited for it runs.
        status, page = await browse(world.emulator.authorize(link, as_user=ALICE))
        assert status == 200, page
        await world.emulator.wait_for_messages(1, chat_id=TEAM)
        assert await world.runtime.authority.current(world.emulator.config.tenant_key, ALICE) is not None
    finally:
        await world.close()


# --- 7. every prompt reaches the person it is for -----------------------------------------------------


async def test_two_people_prompted_about_the_same_card_both_get_their_prompt(tmp_path: Path) -> None:
    world = await open_world(tmp_path)
    try:
        message_id, retry = await card_with_a_failure(world)
        # No ephemeral cards and no direct messages here: prompts are replies to the card's message.
        world.emulator.add_fault(Fault(route="ephemeral", status=400, code=230002, times=2))
        world.emulator.add_fault(Fault(route="send", status=400, code=230013, times=2))
        before = len(world.emulator.messages)
        for clicker in (BOB, CAROL):
            assert (await world.emulator.click(clicker, message_id, retry)).ok
        replies = await world.emulator.wait_for_messages(before + 2, chat_id=TEAM, timeout=10)
        prompts = [json.dumps(reply.content) for reply in replies[before:]]
        assert all("Authorize" in prompt for prompt in prompts)
        assert len({prompt_url(reply.content) for reply in replies[before:]}) == 2
    finally:
        await world.close()


# --- 10. configuration: the page says what really happens ---------------------------------------------


async def test_the_page_does_not_promise_a_resume_that_could_not_be_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await open_harness(tmp_path, clock=ManualClock())
    try:
        await world.start_bot()
        await world.emulator.say(ALICE, TEAM, "/invite 123456789 @Bob")
        link = await ephemeral_prompt(world, ALICE)

        async def refuse(envelope: object) -> bool:
            raise OSError("disk full")

        monkeypatch.setattr(world.runtime.inbox, "accept", refuse)  # the resumed command finds no room
        status, page = await browse(world.emulator.authorize(link, as_user=ALICE))
        assert status == 200
        assert "continues by itself" not in page
        assert "send it once more" in page
    finally:
        await world.close()


@pytest.mark.parametrize("constant", [float("inf"), float("-inf"), float("nan")])
async def test_non_json_numbers_are_refused_before_the_ack(world: Harness, constant: float) -> None:
    # Found by the fuzzing: Python's reader takes Infinity and NaN, but the stored copy would read them
    # back as null, so the handler would see another event than the one acknowledged.
    event = world.emulator.build_say_event(ALICE, TEAM, "/help")
    event["event"]["extra"] = constant
    pushed = await world.emulator.push(event)
    assert pushed.status == 400
    stats = await world.runtime.store.inbox_stats()
    assert (stats.pending, stats.running, stats.dead) == (0, 0, 0)
