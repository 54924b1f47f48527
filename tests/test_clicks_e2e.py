"""Clicking "Retry failed" on an /invite result card, over loopback, both callback styles."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from emulator import EmulatorConfig
from emulator.config import MEETING_IN_PROGRESS
from tests.harness import (
    ALICE,
    BOB,
    CAROL,
    ROOM,
    Harness,
    ManualClock,
    authorize,
    browse,
    ephemeral_prompt,
    invite,
    open_world,
    running_world,
    updated_card,
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_world(tmp_path) as opened:
        yield opened


async def card_with_a_failure(world: Harness) -> tuple[str, dict[str, object]]:
    """Alice invites Bob and Carol while Carol is in another call; returns the card's message id and
    its Retry button's value."""
    world.emulator.set_busy(MEETING_IN_PROGRESS, CAROL)
    card = await invite(world, "/invite 123456789 @Bob @Carol")
    assert "Invited 1" in json.dumps(card)
    message = world.emulator.messages[-1]
    [button] = [b for b in world.emulator.card_buttons(message.message_id) if "Retry" in json.dumps(b)]
    world.emulator.set_busy(MEETING_IN_PROGRESS, CAROL, busy=False)
    value = button["value"]
    assert isinstance(value, dict)
    return message.message_id, value


@pytest.mark.parametrize("legacy", [False, True])
async def test_retry_failed_invites_again_and_updates_the_card(world: Harness, legacy: bool) -> None:
    message_id, value = await card_with_a_failure(world)
    result = await world.emulator.click(ALICE, message_id, value, legacy=legacy)
    assert result.ok, result.error
    assert result.toast is not None
    assert result.elapsed_ms < 2500
    card = await updated_card(world, message_id)
    assert "Invited 2" in card
    retry = world.emulator.invite_calls[-1]
    assert list(retry.invitee_ids) == [CAROL]
    assert retry.operator == ALICE
    assert "Retry failed" not in card  # nothing left to retry


async def test_the_clicker_acts_with_their_own_token(world: Harness) -> None:
    message_id, value = await card_with_a_failure(world)
    await authorize(world, BOB)
    world.emulator.join_meeting(MEETING_IN_PROGRESS, BOB)
    result = await world.emulator.click(BOB, message_id, value)
    assert result.ok, result.error
    await updated_card(world, message_id)
    assert world.emulator.invite_calls[-1].operator == BOB


async def test_a_double_click_acts_once(world: Harness) -> None:
    message_id, value = await card_with_a_failure(world)
    calls = len(world.emulator.invite_calls)
    first, second = await world.emulator.double_click(ALICE, message_id, value)
    assert first.ok
    assert second.ok
    await updated_card(world, message_id)
    await world.runtime.inbox.wait_idle(5)
    assert len(world.emulator.invite_calls) == calls + 1


async def test_a_tampered_or_expired_value_does_nothing(world: Harness) -> None:
    message_id, value = await card_with_a_failure(world)
    calls = len(world.emulator.invite_calls)
    forged = await world.emulator.click(ALICE, message_id, {"action_id": "forged-id"})
    assert forged.toast is not None
    assert forged.toast["type"] == "error"
    assert isinstance(world.clock, ManualClock)
    world.clock.advance(25 * 3600)  # the bot's and the emulator's clocks move together
    expired = await world.emulator.click(ALICE, message_id, value)
    assert expired.toast is not None
    assert expired.toast["type"] == "error"
    await world.runtime.inbox.wait_idle(5)
    assert len(world.emulator.invite_calls) == calls
    assert world.emulator.card_updates == []


async def test_an_unauthorized_clicker_is_asked_then_the_click_completes(world: Harness) -> None:
    message_id, value = await card_with_a_failure(world)
    world.emulator.join_meeting(MEETING_IN_PROGRESS, BOB)
    result = await world.emulator.click(BOB, message_id, value)
    assert result.ok
    url = await ephemeral_prompt(world, BOB)
    status, _ = await browse(world.emulator.authorize(url, as_user=BOB))
    assert status == 200
    card = await updated_card(world, message_id)
    assert "Invited 2" in card
    assert world.emulator.invite_calls[-1].operator == BOB


async def test_the_answer_comes_in_time_even_when_inviting_is_slow(world: Harness) -> None:
    from emulator import Fault

    message_id, value = await card_with_a_failure(world)
    world.emulator.add_fault(Fault(route="invite", status=None, delay_seconds=5))
    result = await world.emulator.click(ALICE, message_id, value)
    assert result.ok, result.error
    assert result.elapsed_ms < 2500
    card = await updated_card(world, message_id, within=10)
    assert "Invited 2" in card


async def big_invite(tmp_path: Path, **settings: object) -> tuple[Harness, str, list[dict[str, Any]]]:
    """Alice asks to invite everyone in a 15-person chat; returns the world, the confirmation card's
    message id and its buttons."""
    config = EmulatorConfig().with_generated_users(15, chat_id=ROOM, chat_name="Crowd")
    world = await open_world(tmp_path, config, **settings)
    world.emulator.add_meeting(
        meeting_id="7000000000000000003",
        meeting_no="444555666",
        host=ALICE,
        participants=(ALICE,),
        capacity=50,
    )
    card = await invite(world, "/invite 444555666 @all", chat=ROOM)
    assert "Invite 17 people?" in json.dumps(card)
    assert world.emulator.invite_calls == []
    message = world.emulator.messages[-1]
    buttons = world.emulator.card_buttons(message.message_id)
    return (
        world,
        message.message_id,
        [button["value"] for button in buttons if isinstance(button["value"], dict)],
    )


async def test_a_big_invite_waits_for_its_senders_confirmation(tmp_path: Path) -> None:
    world, message_id, [confirm, _] = await big_invite(tmp_path)
    try:
        await authorize(world, BOB)
        by_bob = await world.emulator.click(BOB, message_id, confirm)
        assert by_bob.toast is not None
        assert by_bob.toast["type"] == "warning"  # only the sender may confirm
        await world.runtime.inbox.wait_idle(5)
        assert world.emulator.invite_calls == []
        by_alice = await world.emulator.click(ALICE, message_id, confirm)
        assert by_alice.ok, by_alice.error
        card = await updated_card(world, message_id)
        assert "Invited 17" in card
        assert all(call.operator == ALICE for call in world.emulator.invite_calls)
        assert len({p for call in world.emulator.invite_calls for p in call.invitee_ids}) == 17
    finally:
        await world.close()


async def test_cancel_invites_nobody_and_voids_confirm(tmp_path: Path) -> None:
    world, message_id, [confirm, cancel] = await big_invite(tmp_path)
    try:
        result = await world.emulator.click(ALICE, message_id, cancel)
        assert result.ok
        assert "Cancelled" in await updated_card(world, message_id)
        late = await world.emulator.click(ALICE, message_id, confirm)
        assert late.toast is not None
        assert late.toast["type"] == "error"
        await world.runtime.inbox.wait_idle(5)
        assert world.emulator.invite_calls == []
    finally:
        await world.close()


async def test_above_the_hard_cap_even_a_confirmation_is_refused(tmp_path: Path) -> None:
    config = EmulatorConfig().with_generated_users(15, chat_id=ROOM, chat_name="Crowd")
    world = await open_world(tmp_path, config, bot_invite_ceiling=12)
    try:
        card = await invite(world, "/invite 123456789 @all", chat=ROOM)
        assert "Too many people" in json.dumps(card)
        assert world.emulator.card_buttons(world.emulator.messages[-1].message_id) == []
    finally:
        await world.close()


async def test_giving_the_meeting_on_the_card_runs_the_waiting_invite(world: Harness) -> None:
    world.emulator.refuse_active_meeting()  # Feishu cannot say which meeting Alice is in: she is asked
    card = await invite(world, "/invite @Bob")
    assert "Which meeting?" in json.dumps(card)
    message_id = world.emulator.messages[-1].message_id
    [submit] = [b for b in world.emulator.card_buttons(message_id) if isinstance(b["value"], dict)]
    value = submit["value"]
    assert isinstance(value, dict)
    wrong = await world.emulator.click(ALICE, message_id, value, form_value={"meeting": "tomorrow"})
    assert wrong.toast is not None
    assert wrong.toast["type"] == "error"
    await authorize(world, BOB)
    by_bob = await world.emulator.click(BOB, message_id, value, form_value={"meeting": "123 456 789"})
    assert by_bob.toast is not None
    assert by_bob.toast["type"] == "warning"
    await world.runtime.inbox.wait_idle(5)
    assert world.emulator.invite_calls == []
    done = await world.emulator.click(ALICE, message_id, value, form_value={"meeting": "123 456 789"})
    assert done.ok, done.error
    updated = await updated_card(world, message_id)
    assert "Invited 1" in updated
    assert [call.invitee_ids for call in world.emulator.invite_calls] == [(BOB,)]


async def test_retry_leaves_out_people_who_may_already_be_ringing(world: Harness) -> None:
    from emulator import Fault

    world.emulator.set_busy(MEETING_IN_PROGRESS, CAROL)
    world.emulator.add_fault(Fault(route="invite", status=503))  # no answer: Bob and Carol may be ringing
    await invite(world, "/invite 123456789 @Bob @Carol")
    message_id = world.emulator.messages[-1].message_id
    buttons = json.dumps(world.emulator.card_buttons(message_id))
    assert "Retry failed" not in buttons  # nobody can safely be rung again
    assert "Invite more" in buttons


async def test_invite_more_from_the_result_card(world: Harness) -> None:
    await invite(world, "/invite 123456789 @Bob")
    message_id = world.emulator.messages[-1].message_id
    [more] = [b["value"] for b in world.emulator.card_buttons(message_id) if "Invite more" in json.dumps(b)]
    assert isinstance(more, dict)
    empty = await world.emulator.click(ALICE, message_id, more, form_value={"people": []})
    assert empty.toast is not None
    assert empty.toast["type"] == "error"
    picked = {"people": [CAROL, BOB, ALICE]}  # Bob is already invited, Alice is the clicker
    result = await world.emulator.click(ALICE, message_id, more, form_value=picked)
    assert result.ok, result.error
    card = await updated_card(world, message_id)
    assert "Invited 2" in card
    assert f"<at id={CAROL}></at>" in card
    last = world.emulator.invite_calls[-1]
    assert (list(last.invitee_ids), last.operator) == ([CAROL], ALICE)


@pytest.mark.parametrize("legacy", [False, True])
async def test_a_click_with_a_wrong_signature_does_nothing(world: Harness, legacy: bool) -> None:
    message_id, value = await card_with_a_failure(world)
    calls = len(world.emulator.invite_calls)
    forged = await world.emulator.click(ALICE, message_id, value, legacy=legacy, seal={"signature": "0" * 64})
    assert forged.status == 401
    await world.runtime.inbox.wait_idle(5)
    assert len(world.emulator.invite_calls) == calls
    assert world.emulator.card_updates == []
    genuine = await world.emulator.click(ALICE, message_id, value, legacy=legacy)  # the button still works
    assert genuine.ok, genuine.error


async def test_the_legacy_callback_url_answers_its_challenge(world: Harness) -> None:
    answer = await world.emulator.post_legacy(
        world.emulator.build_legacy_url_verification("legacy-1"), sign=False
    )
    assert (answer.status, answer.body) == (200, {"challenge": "legacy-1"})
    wrong = world.emulator.build_legacy_url_verification("legacy-2")
    wrong["token"] = "not-the-token"
    assert (await world.emulator.post_legacy(wrong, sign=False)).status == 403
