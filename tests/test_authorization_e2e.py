"""User authorization over loopback: prompt, authorize, resume; deny; replay; the wrong user;
refresh under concurrency; revocation; /login and /logout; no token in plaintext anywhere."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.feishu.errors import SCOPE_NOT_GRANTED, FeishuApiError
from bot.logs import configure_logging
from bot.oauth.authority import AuthorizationRequired
from emulator import EmulatorConfig, Fault
from emulator.config import DirectoryChat
from tests.harness import (
    ALICE,
    ALICE_DM,
    BOB,
    TEAM,
    Harness,
    ManualClock,
    authorize,
    browse,
    ephemeral_prompt,
    open_harness,
    prompt_url,
)

# Five group chats with Alice and Bob in each, for commands that really run at the same time.
ROOMS = tuple(f"oc_room{n}000000000000000000000000{n}" for n in range(5))


def config_with_rooms() -> EmulatorConfig:
    base = EmulatorConfig()
    rooms = tuple(
        DirectoryChat(chat_id=room, name=f"Room {n}", members=(ALICE, BOB)) for n, room in enumerate(ROOMS)
    )
    return base.model_copy(update={"chats": (*base.chats, *rooms)})


@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[tuple[Harness, ManualClock]]:
    clock = ManualClock()
    world = await open_harness(tmp_path, config_with_rooms(), clock=clock)
    try:
        await world.start_bot()
        yield world, clock
    finally:
        await world.close()


async def test_first_command_prompts_privately_then_completes_after_authorizing(
    clocked: tuple[Harness, ManualClock],
) -> None:
    world, _ = clocked
    assert (await world.emulator.say(ALICE, TEAM, "/login")).status == 200
    [prompt] = await world.emulator.wait_for_ephemeral(1, open_id=ALICE)
    assert prompt.chat_id == TEAM  # in the group, seen by Alice alone
    assert world.emulator.messages == []  # nothing public
    url = prompt_url(prompt.card)
    query = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path == "/open-apis/authen/v1/authorize"
    assert query["client_id"] == [world.settings.feishu_app_id]
    assert query["redirect_uri"] == [f"{world.settings.bot_public_url}/oauth/callback"]
    assert query["scope"] == ["vc:meeting vc:meeting:readonly vc:meeting.meetingevent:read offline_access"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["response_type"] == ["code"]

    status, page = await browse(world.emulator.authorize(url, as_user=ALICE))
    assert status == 200
    assert "授权成功" in page
    assert "Authorized" in page
    # The /login that was waiting runs by itself: no retyping.
    [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM)
    assert "Alice" in str(reply.content)
    assert "authorized until" in str(reply.content)
    # The prompt now says so: replaced by an "authorized" ephemeral card.
    prompts = await world.emulator.wait_for_ephemeral(2, open_id=ALICE)
    assert prompts[0].deleted
    assert "Authorized" in str(prompts[1].card)
    assert world.emulator.user_token_exchanges == 1


async def test_deny_keeps_nothing_and_runs_nothing(clocked: tuple[Harness, ManualClock]) -> None:
    world, _ = clocked
    await world.emulator.say(ALICE, TEAM, "/login")
    url = await ephemeral_prompt(world, ALICE)
    location = world.emulator.authorize(url, as_user=ALICE, approve=False)
    status, page = await browse(location)
    assert status == 403
    assert "你拒绝了授权" in page
    assert "You declined" in page
    assert world.emulator.user_token_exchanges == 0
    assert await world.runtime.authority.current(world.emulator.config.tenant_key, ALICE) is None
    await world.runtime.inbox.wait_idle(5)
    assert world.emulator.messages == []


async def test_replayed_callback_is_refused_without_a_second_exchange(
    clocked: tuple[Harness, ManualClock],
) -> None:
    world, _ = clocked
    await world.emulator.say(ALICE, TEAM, "/login")
    location = world.emulator.authorize(await ephemeral_prompt(world, ALICE), as_user=ALICE)
    first, second = await asyncio.gather(browse(location), browse(location))
    assert sorted([first[0], second[0]]) == [200, 400]
    assert world.emulator.user_token_exchanges == 1
    status, page = await browse(location)
    assert status == 400
    assert "This link has expired" in page
    assert world.emulator.user_token_exchanges == 1
    await world.emulator.wait_for_messages(1, chat_id=TEAM)
    await world.runtime.inbox.wait_idle(5)
    assert len(world.emulator.messages) == 1  # the command resumed once


async def test_someone_else_finishing_the_link_stores_nothing_and_acts_for_nobody(
    clocked: tuple[Harness, ManualClock],
) -> None:
    world, _ = clocked
    await world.emulator.say(ALICE, TEAM, "/login")
    alices_link = await ephemeral_prompt(world, ALICE)
    status, page = await browse(world.emulator.authorize(alices_link, as_user=BOB))
    assert status == 403
    assert "Bob" in page
    assert "belongs to someone else" in page
    tenant = world.emulator.config.tenant_key
    assert await world.runtime.authority.current(tenant, ALICE) is None
    assert await world.runtime.authority.current(tenant, BOB) is None
    await world.runtime.inbox.wait_idle(5)
    assert world.emulator.messages == []
    # Bob's attempt did not spend Alice's link: she can still finish it, and her command runs.
    status, _ = await browse(world.emulator.authorize(alices_link, as_user=ALICE))
    assert status == 200
    [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM)
    assert "Alice" in str(reply.content)


async def test_five_commands_at_once_after_expiry_refresh_exactly_once(
    clocked: tuple[Harness, ManualClock],
) -> None:
    world, clock = clocked
    await authorize(world, ALICE)
    await world.emulator.wait_for_messages(1, chat_id=TEAM)
    clock.advance(7200 - 60)  # the access token has a minute left: inside the refresh margin
    results = await asyncio.gather(*(world.emulator.say(ALICE, room, "/login") for room in ROOMS))
    assert [result.status for result in results] == [200] * 5
    for room in ROOMS:
        [reply] = await world.emulator.wait_for_messages(1, chat_id=room)
        assert "authorized until" in str(reply.content)
    assert world.emulator.refreshes == 1
    assert world.emulator.refresh_token_reuses == 0
    clock.advance(7200)  # and again, after the first refreshed token has expired outright
    await world.emulator.say(ALICE, ROOMS[0], "/login")
    await world.emulator.wait_for_messages(2, chat_id=ROOMS[0])
    assert world.emulator.refreshes == 2
    assert world.emulator.refresh_token_reuses == 0


async def test_two_processes_sharing_a_store_refresh_once(
    clocked: tuple[Harness, ManualClock], tmp_path: Path
) -> None:
    """A second bot on the same store file races the first to refresh one user: one refresh happens."""
    world, clock = clocked
    await authorize(world, ALICE)
    await world.emulator.wait_for_messages(1, chat_id=TEAM)
    second = await open_harness(
        tmp_path,
        clock=clock,
        bot_store_url=world.settings.bot_store_url,
        bot_secret_key=world.settings.bot_secret_key,
        feishu_domain=world.emulator_url,  # both talk to the same Feishu
    )
    try:
        await second.start_bot(start_workers=False)
        clock.advance(7200 - 60)
        tenant = world.emulator.config.tenant_key
        first_token, second_token = await asyncio.gather(
            world.runtime.authority.current(tenant, ALICE), second.runtime.authority.current(tenant, ALICE)
        )
        assert first_token is not None
        assert second_token is not None
        assert first_token.access_token == second_token.access_token
        assert world.emulator.refreshes == 1
        assert world.emulator.refresh_token_reuses == 0
    finally:
        await second.close()


async def test_revoked_authorization_leads_to_a_new_prompt_and_works_again(
    clocked: tuple[Harness, ManualClock],
) -> None:
    world, _ = clocked
    await authorize(world, ALICE)
    await world.emulator.wait_for_messages(1, chat_id=TEAM)
    world.emulator.revoke_user_authorization(ALICE)
    await world.emulator.say(ALICE, TEAM, "/login")
    url = await ephemeral_prompt(world, ALICE, count=3)  # prompt, "authorized", and a new prompt
    assert await world.runtime.authority.current(world.emulator.config.tenant_key, ALICE) is None
    status, _ = await browse(world.emulator.authorize(url, as_user=ALICE))
    assert status == 200
    replies = await world.emulator.wait_for_messages(2, chat_id=TEAM)
    assert "authorized until" in str(replies[1].content)


async def test_logout_forgets_and_login_asks_again(clocked: tuple[Harness, ManualClock]) -> None:
    world, _ = clocked
    await authorize(world, ALICE)
    await world.emulator.wait_for_messages(1, chat_id=TEAM)
    await world.emulator.say(ALICE, TEAM, "/logout")
    replies = await world.emulator.wait_for_messages(2, chat_id=TEAM)
    assert "Your authorization is deleted" in str(replies[1].content)
    assert await world.runtime.authority.current(world.emulator.config.tenant_key, ALICE) is None
    await world.emulator.say(ALICE, TEAM, "/logout")
    replies = await world.emulator.wait_for_messages(3, chat_id=TEAM)
    assert "nothing to forget" in str(replies[2].content)
    await world.emulator.say(ALICE, TEAM, "/login")
    await ephemeral_prompt(world, ALICE, count=3)


async def test_without_ephemeral_the_prompt_goes_to_a_direct_message(
    clocked: tuple[Harness, ManualClock],
) -> None:
    world, _ = clocked
    world.emulator.add_fault(Fault(route="ephemeral", status=400, code=230002))
    await world.emulator.say(ALICE, TEAM, "/login")
    dm = world.emulator.p2p_chat_id(ALICE)
    [prompt] = await world.emulator.wait_for_messages(1, chat_id=dm)
    status, _ = await browse(world.emulator.authorize(prompt_url(prompt.content), as_user=ALICE))
    assert status == 200
    await world.emulator.wait_for_messages(1, chat_id=TEAM)
    for _ in range(100):
        if world.emulator.card_updates:
            break
        await asyncio.sleep(0.02)
    [update] = world.emulator.card_updates
    assert update.message_id == prompt.message_id
    assert "authorized until" in str(update.content)


async def test_in_a_direct_chat_the_prompt_is_the_reply(clocked: tuple[Harness, ManualClock]) -> None:
    world, _ = clocked
    await world.emulator.say(ALICE, ALICE_DM, "/login", mention_bot=False)
    [prompt] = await world.emulator.wait_for_messages(1, chat_id=ALICE_DM)
    assert world.emulator.ephemeral_messages == []
    await browse(world.emulator.authorize(prompt_url(prompt.content), as_user=ALICE))
    replies = await world.emulator.wait_for_messages(2, chat_id=ALICE_DM)
    assert "authorized until" in str(replies[1].content)


async def test_callback_without_state_or_with_garbage_is_a_clear_4xx(
    clocked: tuple[Harness, ManualClock],
) -> None:
    world, _ = clocked
    for query in ("", "?state=", "?state=nope&code=abc", "?error=access_denied", "?state=" + "x" * 5000):
        status, page = await browse(f"{world.bot_url}/oauth/callback{query}")
        assert status in (400, 403), query
        assert "Traceback" not in page


def store_files(folder: Path) -> bytes:
    """The store as a thief would copy it: the database, its WAL and shared-memory files."""
    return b"".join(path.read_bytes() for path in sorted(folder.glob("bot.db*")))


async def test_no_token_in_plaintext_in_store_files_or_logs(tmp_path: Path) -> None:
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    clock = ManualClock()
    world = await open_harness(tmp_path, clock=clock)
    try:
        await world.start_bot()
        await authorize(world, ALICE)
        await world.emulator.wait_for_messages(1, chat_id=TEAM)
        clock.advance(7200 - 60)
        await world.emulator.say(ALICE, TEAM, "/login")
        await world.emulator.wait_for_messages(2, chat_id=TEAM)
        assert world.emulator.refreshes == 1
    finally:
        await world.close()
        configure_logging("console", "info")
    tokens = world.emulator.issued_user_tokens
    assert len(tokens) >= 4  # two access and two refresh tokens at least
    files = store_files(tmp_path)
    logs = stream.getvalue()
    for token in tokens:
        assert token.encode() not in files
        assert token[:24] not in logs


async def test_without_ephemeral_or_direct_message_the_prompt_is_public(
    clocked: tuple[Harness, ManualClock],
) -> None:
    world, _ = clocked
    world.emulator.add_fault(Fault(route="ephemeral", status=400, code=230002))
    world.emulator.add_fault(
        Fault(route="send", status=400, code=230013, msg="user has not chatted with the bot")
    )
    await world.emulator.say(ALICE, TEAM, "/login")
    [prompt] = await world.emulator.wait_for_messages(1, chat_id=TEAM)
    assert prompt.reply_to is not None
    # Anyone in the group sees this link, but it only works for Alice.
    status, _ = await browse(world.emulator.authorize(prompt_url(prompt.content), as_user=BOB))
    assert status == 403
    assert await world.runtime.authority.current(world.emulator.config.tenant_key, BOB) is None


async def test_token_expired_at_feishu_before_our_clock_says_so_is_refreshed_and_retried(
    clocked: tuple[Harness, ManualClock],
) -> None:
    world, clock = clocked
    await authorize(world, ALICE)
    await world.emulator.wait_for_messages(1, chat_id=TEAM)
    # Feishu's clock runs ahead: it has expired the access token (99991677), ours has not.
    world.emulator.clock = lambda: clock() + 7300
    await world.emulator.say(ALICE, TEAM, "/login", timestamp=str(int(clock())))
    replies = await world.emulator.wait_for_messages(2, chat_id=TEAM)
    assert "authorized until" in str(replies[1].content)
    assert world.emulator.refreshes == 1
    assert world.emulator.refresh_token_reuses == 0


async def test_a_refresh_that_feishu_asks_to_retry_is_retried(clocked: tuple[Harness, ManualClock]) -> None:
    world, clock = clocked
    await authorize(world, ALICE)
    await world.emulator.wait_for_messages(1, chat_id=TEAM)
    world.emulator.add_fault(Fault(route="user_token", status=500, code=20050, msg="server_error"))
    clock.advance(7200 - 60)
    await world.emulator.say(ALICE, TEAM, "/login")
    replies = await world.emulator.wait_for_messages(2, chat_id=TEAM)
    assert "authorized until" in str(replies[1].content)
    assert world.emulator.refreshes == 1
    token_calls = [r for r in world.emulator.requests if r.path == "/open-apis/authen/v2/oauth/token"]
    assert len(token_calls) == 3  # the code exchange, the refused refresh, the retried refresh


async def test_a_scope_the_user_has_not_granted_asks_for_exactly_that_scope(
    clocked: tuple[Harness, ManualClock],
) -> None:
    world, _ = clocked
    await authorize(world, ALICE)
    await world.emulator.wait_for_messages(1, chat_id=TEAM)

    async def needs_more(access_token: str) -> None:
        raise FeishuApiError(
            SCOPE_NOT_GRANTED, "scope not granted", missing_scopes=("contact:user.id:readonly",)
        )

    with pytest.raises(AuthorizationRequired) as required:
        await world.runtime.authority.call_as(world.emulator.config.tenant_key, ALICE, needs_more)
    assert required.value.missing_scopes == ("contact:user.id:readonly",)
    _, url = await world.runtime.flow.begin(
        world.emulator.config.tenant_key, ALICE, pending=None, extra_scopes=required.value.missing_scopes
    )
    scope = parse_qs(urlsplit(url).query)["scope"][0].split()
    assert scope == [
        "vc:meeting",
        "vc:meeting:readonly",
        "vc:meeting.meetingevent:read",
        "offline_access",
        "contact:user.id:readonly",
    ]
