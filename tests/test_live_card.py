"""The live result card (BOT_MEETING_WATCH_SECONDS): after an /invite the card follows the meeting,
over loopback against the emulator, whose invitees answer (or not) on their own time."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from emulator import Fault
from emulator.config import MEETING_IN_PROGRESS
from handlers.invite.reasons import NOT_INVITED
from tests.harness import (
    ALICE,
    BOB,
    CAROL,
    TEAM,
    Harness,
    ManualClock,
    authorize,
    invite,
    open_harness,
    open_world,
    running_world,
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_world(tmp_path, bot_meeting_watch_seconds=3) as opened:
        yield opened


def shown(world: Harness, message_id: str) -> list[str]:
    """Every version of the card the bot put in `message_id` since it sent it, oldest first."""
    return [
        json.dumps(update.content, ensure_ascii=False)
        for update in world.emulator.card_updates
        if update.message_id == message_id
    ]


async def until_shown(
    world: Harness, message_id: str, wanted: Callable[[str], bool], within: float = 15.0, *, after: int = 0
) -> str:
    """The latest version of the card that is `wanted`, among those shown after the first `after`."""
    for _ in range(int(within / 0.05)):
        found = [card for card in shown(world, message_id)[after:] if wanted(card)]
        if found:
            return found[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"never shown; the card went through {shown(world, message_id)}")


def named_under(card: str, label: str) -> str:
    """The line of mentions that follows the heading `label` ("Joined (1)") on the card."""
    elements = json.loads(card)["body"]["elements"]
    for index, element in enumerate(elements):
        if label in json.dumps(element, ensure_ascii=False):
            return str(elements[index + 1].get("content", ""))
    raise AssertionError(f"no {label!r} on the card")


def the_card(world: Harness) -> str:
    return world.emulator.messages[-1].message_id


def final(card: str) -> bool:
    return "As of" in card


def remind_button(world: Harness, message_id: str) -> dict[str, object]:
    [button] = [b for b in world.emulator.card_buttons(message_id) if "Remind the missing" in json.dumps(b)]
    value = button["value"]
    assert isinstance(value, dict)
    return value


async def test_the_card_shows_who_joined_and_who_did_not_answer(world: Harness) -> None:
    world.emulator.answer_when_invited(BOB, "join", 1)
    answer = json.dumps(await invite(world, "/invite 123456789 @Bob @Carol"))
    assert "Invited 2" in answer
    message_id = the_card(world)
    ringing = await until_shown(world, message_id, lambda card: "Ringing (2)" in card)
    assert "0 of 2 joined" in ringing
    assert "Following who joins until" in ringing
    joined = await until_shown(world, message_id, lambda card: "Joined (1)" in card)
    assert BOB in named_under(joined, "Joined (1)")
    assert CAROL in named_under(joined, "Ringing (1)")
    assert "1 of 2 joined" in joined
    assert "Ringing (1)" in joined
    last = await until_shown(world, message_id, final)
    assert "1 of 2 joined" in last
    assert CAROL in named_under(last, "Did not answer (1)")
    assert "Remind the missing" in last
    updates = len(shown(world, message_id))
    await asyncio.sleep(0.6)  # three ticks' time: the watch is over, the card stays as it is
    assert len(shown(world, message_id)) == updates


async def test_remind_the_missing_rings_only_those_who_never_came(world: Harness) -> None:
    world.emulator.answer_when_invited(BOB, "join", 0)
    await invite(world, "/invite 123456789 @Bob @Carol")
    message_id = the_card(world)
    await until_shown(world, message_id, final)
    calls, versions = len(world.emulator.invite_calls), len(shown(world, message_id))
    result = await world.emulator.click(ALICE, message_id, remind_button(world, message_id))
    assert result.ok, result.error
    assert "ringing those who have not joined" in json.dumps(result.toast)
    again = await until_shown(world, message_id, lambda card: "Ringing (1)" in card, after=versions)
    assert BOB in named_under(again, "Joined (1)")
    assert CAROL in named_under(again, "Ringing (1)")
    [remind] = world.emulator.invite_calls[calls:]
    assert (list(remind.invitee_ids), remind.operator) == ([CAROL], ALICE)


async def test_a_person_who_declines_or_leaves_is_shown_so(world: Harness) -> None:
    world.emulator.answer_when_invited(CAROL, "decline", 0)
    world.emulator.answer_when_invited(BOB, "join", 0, then="leave", then_after=1)
    await invite(world, "/invite 123456789 @Bob @Carol")
    last = await until_shown(world, the_card(world), final)
    assert "Joined, then left (1)" in last
    assert "Did not answer (1)" in last
    assert "1 of 2 joined" in last


async def test_the_watch_ends_with_the_meeting(world: Harness) -> None:
    await invite(world, "/invite 123456789 @Bob")
    message_id = the_card(world)
    await until_shown(world, message_id, lambda card: "Ringing (1)" in card)
    world.emulator.end_meeting(MEETING_IN_PROGRESS)
    last = await until_shown(world, message_id, final, within=2.0)
    assert "The meeting has ended" in last


async def test_the_watch_survives_a_restart(tmp_path: Path) -> None:
    world = await open_world(tmp_path, bot_meeting_watch_seconds=30)
    try:
        await invite(world, "/invite 123456789 @Bob")
        message_id = the_card(world)
        await until_shown(world, message_id, lambda card: "Ringing (1)" in card)
        await world.stop_bot()
        world.emulator.join_meeting(MEETING_IN_PROGRESS, BOB)
        await world.start_bot()
        joined = await until_shown(world, message_id, lambda card: "1 of 1 joined" in card)
        assert final(joined)  # everyone came: nothing left to follow
    finally:
        await world.close()


async def test_fifty_cards_on_one_meeting_share_one_reader(tmp_path: Path) -> None:
    world = await open_world(tmp_path, bot_meeting_watch_seconds=30)
    try:
        start = world.clock()
        for _ in range(50):
            await invite(world, "/invite 123456789 @Bob")
        cards = [m.message_id for m in world.emulator.messages if m.chat_id == TEAM][-50:]
        world.emulator.join_meeting(MEETING_IN_PROGRESS, BOB)
        for message_id in cards:
            await until_shown(world, message_id, lambda card: "1 of 1 joined" in card and final(card))
        elapsed = world.clock() - start
        reads = [
            r
            for r in world.emulator.requests
            if r.path == f"/open-apis/vc/v1/meetings/{MEETING_IN_PROGRESS}"
            and r.query.get("with_participants") == "true"
        ]
        # One read a tick (0.2 s here, 5 s in service) for all fifty cards, never one per card.
        assert 0 < len(reads) <= elapsed / 0.2 + 3
        # A single reader: never two reads of the meeting within one tick, however many cards.
        gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(reads)]
        assert min(gaps) >= 0.15
        for message_id in cards:
            # Changes only: ringing, then joined (and a card seen only once it had joined: one update).
            assert 1 <= len(shown(world, message_id)) <= 3
    finally:
        await world.close()


async def test_someone_already_in_the_meeting_is_shown_as_there(world: Harness) -> None:
    world.emulator.join_meeting(MEETING_IN_PROGRESS, BOB)
    world.emulator.answer_when_invited(CAROL, "join", 0)
    answer = json.dumps(await invite(world, "/invite 123456789 @Bob @Carol"))
    assert "Invited 1" in answer  # Feishu refuses to ring someone who is in the meeting
    last = await until_shown(world, the_card(world), final)
    assert BOB in named_under(last, "Already in the meeting (1)")
    assert CAROL in named_under(last, "Joined (1)")
    assert "2 of 2 joined" in last
    assert "Remind the missing" not in last


async def test_a_card_whose_time_is_up_waits_for_a_fresh_read_before_its_final_state(tmp_path: Path) -> None:
    # The meeting cannot be read around the end of the watch (a blip, or reads deferred under a burst):
    # the card does not settle on what it saw last ("did not answer") but on the next read that works.
    world = await open_harness(tmp_path, clock=ManualClock(), bot_meeting_watch_seconds=3)
    world.watch_every_seconds = 0.5  # six ticks of grace: 3 s
    try:
        await world.start_bot()
        await authorize(world, ALICE)
        await world.emulator.wait_for_messages(1, chat_id=TEAM)
        await invite(world, "/invite 123456789 @Bob")
        invited_at = time.monotonic()
        message_id = the_card(world)
        await until_shown(world, message_id, lambda card: "Ringing (1)" in card)
        world.emulator.add_fault(Fault(route="get_meeting", status=500, times=10_000))
        world.emulator.join_meeting(MEETING_IN_PROGRESS, BOB)  # unseen while reads fail
        await asyncio.sleep(max(0.0, invited_at + 3.5 - time.monotonic()))  # past the watch's end
        assert not any(final(card) for card in shown(world, message_id))
        world.emulator.clear_faults()
        last = await until_shown(world, message_id, final, within=5.0)
        assert BOB in named_under(last, "Joined (1)")
        assert "1 of 1 joined" in last
    finally:
        await world.close()


async def test_a_slow_tick_does_not_put_a_card_back_as_it_was_before_a_click(tmp_path: Path) -> None:
    # A tick reads the meeting slowly (1 s); meanwhile Alice's Retry shows the card anew. The tick's
    # view, made from the card as it was, must not overwrite it: the next tick shows the new one.
    world = await open_world(tmp_path, bot_meeting_watch_seconds=30)
    try:
        world.emulator.set_busy(MEETING_IN_PROGRESS, CAROL)
        await invite(world, "/invite 123456789 @Bob @Carol")
        message_id = the_card(world)
        await until_shown(world, message_id, lambda card: "Ringing (1)" in card)
        [retry] = [b for b in world.emulator.card_buttons(message_id) if "Retry" in json.dumps(b)]
        world.emulator.set_busy(MEETING_IN_PROGRESS, CAROL, busy=False)
        world.emulator.add_fault(Fault(route="get_meeting", status=None, delay_seconds=1.0))
        world.emulator.join_meeting(MEETING_IN_PROGRESS, BOB)  # what the slow read will see
        await asyncio.sleep(0.3)  # the tick is inside its slow read now
        before = len(shown(world, message_id))
        result = await world.emulator.click(ALICE, message_id, retry["value"])
        assert result.ok, result.error
        await until_shown(
            world, message_id, lambda card: "Joined (1)" in card and "Ringing (1)" in card, after=before
        )
        await asyncio.sleep(1.2)  # past the slow read's answer
        after_click = shown(world, message_id)[before:]
        assert after_click
        assert not any(NOT_INVITED.en_us in card for card in after_click), after_click
    finally:
        await world.close()
