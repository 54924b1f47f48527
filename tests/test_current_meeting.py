"""/invite without a number, over loopback: the meeting the sender is in now (feishu-protocol §14)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config import Settings
from emulator.config import MEETING_FULL, MEETING_IN_PROGRESS, MEETING_LOCKED
from handlers.invite.current import REFUSAL_TTL_SECONDS
from tests.harness import (
    ALICE,
    BOB,
    CAROL,
    Harness,
    ManualClock,
    browse,
    ephemeral_prompt,
    invite,
    open_world,
    running_world,
    updated_card,
)

ACTIVE = "/open-apis/vc/v1/bots/user_active_meeting"
OLD_SCOPES = "vc:meeting vc:meeting:readonly offline_access"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_world(tmp_path) as opened:
        yield opened


def only_in_weekly_sync(world: Harness) -> None:
    """Alice stays in the one meeting (123 456 789) and leaves the two others she is in by default."""
    for meeting_id in (MEETING_LOCKED, MEETING_FULL):
        world.emulator.leave_meeting(meeting_id, ALICE)


def active_calls(world: Harness) -> int:
    return sum(1 for request in world.emulator.requests if request.path == ACTIVE)


async def test_the_meeting_the_sender_is_in_is_used_without_a_question(world: Harness) -> None:
    only_in_weekly_sync(world)
    card = json.dumps(await invite(world, "/invite @Bob"))
    [call] = world.emulator.invite_calls
    assert (call.meeting_id, call.operator, call.invitee_ids) == (MEETING_IN_PROGRESS, ALICE, (BOB,))
    assert "Invited 1" in card
    assert "Which meeting?" not in card
    assert active_calls(world) == 1


async def test_several_current_meetings_are_offered_and_only_the_pick_invites(world: Harness) -> None:
    world.emulator.leave_meeting(MEETING_FULL, ALICE)  # in two: Weekly sync and Locked review
    card = await invite(world, "/invite @Bob @Carol")
    text = json.dumps(card, ensure_ascii=False)
    assert "Which meeting?" in text
    assert "Weekly sync · 123 456 789" in text
    assert "Locked review · 555 666 777" in text
    await world.runtime.inbox.wait_idle(5)
    assert world.emulator.invite_calls == []
    message_id = world.emulator.messages[-1].message_id
    buttons = world.emulator.card_buttons(message_id)
    [weekly] = [b for b in buttons if "Weekly sync" in json.dumps(b)]
    [locked] = [b for b in buttons if "Locked review" in json.dumps(b)]
    value = weekly["value"]
    assert isinstance(value, dict)
    # Bob may not choose for Alice.
    by_bob = await world.emulator.click(BOB, message_id, value)
    assert by_bob.toast is not None
    assert by_bob.toast["type"] == "warning"
    await world.runtime.inbox.wait_idle(5)
    assert world.emulator.invite_calls == []
    picked = await world.emulator.click(ALICE, message_id, value)
    assert picked.ok, picked.error
    assert "Invited 2" in await updated_card(world, message_id)
    [call] = world.emulator.invite_calls
    assert (call.meeting_id, call.invitee_ids) == (MEETING_IN_PROGRESS, (BOB, CAROL))
    # The other meeting's button is void now: pressing it invites nobody.
    other = locked["value"]
    assert isinstance(other, dict)
    await world.emulator.click(ALICE, message_id, other)
    await world.runtime.inbox.wait_idle(5)
    assert len(world.emulator.invite_calls) == 1
    # The pick is remembered: in both meetings still, the next /invite goes there without asking.
    again = json.dumps(await invite(world, "/invite @Carol"))
    assert "Which meeting?" not in again
    assert world.emulator.invite_calls[-1].meeting_id == MEETING_IN_PROGRESS


async def test_a_typed_number_wins_over_the_current_meeting(world: Harness) -> None:
    world.emulator.leave_meeting(MEETING_IN_PROGRESS, ALICE)
    world.emulator.leave_meeting(MEETING_FULL, ALICE)  # Alice is in Locked review only
    world.emulator.join_meeting(MEETING_FULL, ALICE)
    await invite(world, "/invite 222333444 @Bob")
    assert [call.meeting_id for call in world.emulator.invite_calls] == [MEETING_FULL]
    assert active_calls(world) == 0


async def test_a_refusal_falls_back_quietly_and_is_not_asked_again_for_a_while(
    tmp_path: Path,
) -> None:
    world = await open_world(tmp_path)
    try:
        clock = world.clock
        assert isinstance(clock, ManualClock)
        world.emulator.refuse_active_meeting()
        first = json.dumps(await invite(world, "/invite @Bob"))
        assert "Which meeting?" in first  # the old behaviour, and no error card
        assert "error" not in first.lower()
        assert active_calls(world) == 1
        # The remembered meeting still answers, without asking Feishu again.
        await invite(world, "/invite 123456789 @Bob")
        remembered = json.dumps(await invite(world, "/invite @Carol"))
        assert "Invited 1" in remembered
        assert world.emulator.invite_calls[-1].meeting_id == MEETING_IN_PROGRESS
        assert active_calls(world) == 1
        # After the remembered period Feishu is asked again (and now answers).
        world.emulator.refuse_active_meeting(False)
        clock.advance(REFUSAL_TTL_SECONDS + 1)
        await invite(world, "/invite @Carol")
        assert active_calls(world) == 2
    finally:
        await world.close()


async def test_an_authorization_without_the_scope_falls_back_and_is_offered_once(tmp_path: Path) -> None:
    world = await open_world(tmp_path, bot_oauth_scopes=OLD_SCOPES)
    try:
        # Alice authorized under the old default; the bot is upgraded to the new one.
        await world.stop_bot()
        world.settings = world.settings.model_copy(
            update={"bot_oauth_scopes": Settings.model_fields["bot_oauth_scopes"].default}
        )
        await world.start_bot()
        only_in_weekly_sync(world)
        first = json.dumps(await invite(world, "/invite @Bob"))
        assert "Which meeting?" in first
        assert active_calls(world) == 0  # her token would be refused: not even asked
        url = await ephemeral_prompt(world, ALICE, count=3)  # /login prompt, "authorized", the offer
        offer = world.emulator.ephemeral_messages[-1]
        assert "vc:meeting.meetingevent:read" in json.dumps(offer.card, ensure_ascii=False)
        assert "no number needed" in json.dumps(offer.card, ensure_ascii=False)
        await invite(world, "/invite @Bob")
        await world.runtime.inbox.wait_idle(5)
        prompts = [m for m in world.emulator.ephemeral_messages if m.open_id == ALICE]
        assert len(prompts) == 3  # offered once, not on every command
        assert world.emulator.invite_calls == []
        # She takes the offer: nothing waiting runs again, and the next /invite needs no number.
        status, _ = await browse(world.emulator.authorize(url, as_user=ALICE))
        assert status == 200
        await world.runtime.inbox.wait_idle(5)
        assert world.emulator.invite_calls == []
        # The offer turns into the "authorized" note, as any prompt does.
        mine = [m for m in world.emulator.ephemeral_messages if m.open_id == ALICE]
        assert [m.deleted for m in mine[2:]] == [True, False]
        assert "Authorized" in json.dumps(mine[-1].card, ensure_ascii=False)
        done = json.dumps(await invite(world, "/invite @Bob"))
        assert "Invited 1" in done
        assert world.emulator.invite_calls[-1].meeting_id == MEETING_IN_PROGRESS
    finally:
        await world.close()
