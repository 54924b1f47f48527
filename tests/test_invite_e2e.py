"""/invite end to end over loopback: reading, finding the meeting, inviting as the sender, reporting."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emulator import EmulatorConfig, Fault
from emulator.config import MEETING_IN_PROGRESS, generated_open_id
from handlers.invite.reasons import NEEDS_AUTHORIZATION, NOT_INVITED, REASONS, UNCERTAIN, UNKNOWN_EMAIL
from tests.harness import (
    ALICE,
    BOB,
    CAROL,
    ROOM,
    TEAM,
    Harness,
    ManualClock,
    authorize,
    browse,
    ephemeral_prompt,
    invite,
    open_harness,
    open_world,
    running_world,
    updated_card,
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_world(tmp_path) as opened:
        yield opened


def invited_ids(world: Harness, since: int = 0) -> list[str]:
    return [open_id for call in world.emulator.invite_calls[since:] for open_id in call.invitee_ids]


async def test_mentions_are_invited_as_the_sender(world: Harness) -> None:
    card = await invite(world, "/invite 123456789 @Bob @Carol")
    [call] = world.emulator.invite_calls
    assert call.operator == ALICE
    assert call.meeting_id == MEETING_IN_PROGRESS
    assert list(call.invitee_ids) == [BOB, CAROL]
    assert card["header"]["template"] == "green"
    text = json.dumps(card, ensure_ascii=False)
    assert f"<at id={BOB}></at>" in text
    assert f"<at id={CAROL}></at>" in text
    assert "Invited 2" in text
    assert "已邀请 2 人" in text


async def test_post_message_mentions_work_too(world: Harness) -> None:
    await invite(world, "/invite 123456789 @Bob", message_type="post")
    assert invited_ids(world) == [BOB]


async def test_bot_sender_and_duplicates_are_left_out(world: Harness) -> None:
    await invite(world, "/invite @Alice 123456789 @Bob @InviteBot @Bob")
    assert invited_ids(world) == [BOB]


@pytest.mark.parametrize("form", ["123 456 789", "123-456-789", "https://vc.feishu.cn/j/123456789"])
async def test_meeting_number_forms(world: Harness, form: str) -> None:
    await invite(world, f"/invite {form} @Bob")
    assert world.emulator.invite_calls[0].meeting_id == MEETING_IN_PROGRESS


async def test_emails_resolve_and_unknown_ones_are_reported(world: Harness) -> None:
    bob_email = world.emulator.config.user(BOB).email  # type: ignore[union-attr]
    card = await invite(world, f"/invite 123456789 {bob_email} nobody@example.net")
    assert invited_ids(world) == [BOB]
    text = json.dumps(card, ensure_ascii=False)
    assert "nobody@example.net" in text
    assert UNKNOWN_EMAIL.en_us in text
    assert card["header"]["template"] == "orange"


async def test_all_means_everyone_in_the_chat_but_the_sender_and_bots(world: Harness) -> None:
    await invite(world, "/invite 123456789 @all", mention_bot=True)
    members = world.emulator.config.chat(TEAM).members  # type: ignore[union-attr]
    assert sorted(invited_ids(world)) == sorted(member for member in members if member != ALICE)


async def test_without_a_number_the_last_meeting_is_used_and_otherwise_asked_for(world: Harness) -> None:
    card = await invite(world, "/invite @Bob")
    assert "Which meeting?" in json.dumps(card)
    assert world.emulator.invite_calls == []
    await invite(world, "/invite 123456789 @Bob")
    await invite(world, "/invite @Carol")
    assert [call.meeting_id for call in world.emulator.invite_calls] == [MEETING_IN_PROGRESS] * 2
    world.emulator.end_meeting(MEETING_IN_PROGRESS)
    card = await invite(world, "/invite @Carol")
    assert "Which meeting?" in json.dumps(card)
    assert len(world.emulator.invite_calls) == 2


async def test_partial_failure_is_shown_per_person(world: Harness) -> None:
    world.emulator.fail_invitee(CAROL, 2)
    card = await invite(world, "/invite 123456789 @Bob @Carol")
    text = json.dumps(card, ensure_ascii=False)
    assert card["header"]["template"] == "orange"
    assert NOT_INVITED.en_us in text
    assert NOT_INVITED.zh_cn in text
    assert f"<at id={CAROL}></at>" in text


def meeting_reads(world: Harness) -> int:
    path = f"/open-apis/vc/v1/meetings/{MEETING_IN_PROGRESS}"
    return len([r for r in world.emulator.requests if r.path == path and r.query.get("with_participants")])


async def test_someone_in_the_meeting_is_shown_there_and_never_retried(world: Harness) -> None:
    # Feishu refuses to ring a participant with the same bare status 2 as any refusal: one read of the
    # meeting tells Bob (in it) from Carol (refused), and Retry offers to ring Carol only.
    world.emulator.join_meeting(MEETING_IN_PROGRESS, BOB)
    world.emulator.fail_invitee(CAROL, 2)
    card = json.dumps(await invite(world, "/invite 123456789 @Bob @Carol"), ensure_ascii=False)
    assert "Nobody invited (1)" in card
    assert "☑️ Already in the meeting (1)" in card
    assert NOT_INVITED.en_us in card
    assert meeting_reads(world) == 1
    message_id = world.emulator.messages[-1].message_id
    [retry] = [b for b in world.emulator.card_buttons(message_id) if "Retry" in json.dumps(b)]
    world.emulator.clear_invitee_failures()
    result = await world.emulator.click(ALICE, message_id, retry["value"])
    assert result.ok, result.error
    shown = await updated_card(world, message_id)
    assert "Invited 1" in shown
    assert "Already in the meeting (1)" in shown
    assert [list(call.invitee_ids) for call in world.emulator.invite_calls] == [[BOB, CAROL], [CAROL]]


async def test_only_people_already_in_the_meeting_is_no_failure(world: Harness) -> None:
    world.emulator.join_meeting(MEETING_IN_PROGRESS, BOB)
    card = await invite(world, "/invite 123456789 @Bob")
    text = json.dumps(card, ensure_ascii=False)
    assert card["header"]["template"] == "green"
    assert "Everyone is in the meeting already" in text
    assert f"<at id={BOB}></at>" in text
    assert "Retry" not in text  # nobody to ring again
    # Without refusals the meeting is not read at all.
    before = meeting_reads(world)
    await invite(world, "/invite 123456789 @Carol")
    assert meeting_reads(world) == before


async def test_every_seed_error_code_gets_its_sentence(world: Harness) -> None:
    for code in (121001, 121002, 121003, 121005, 122001, 122002, 122003, 122005, 122006, 122007, 122008):
        world.emulator.clear_invitee_failures()
        world.emulator.fail_invitee(BOB, code)
        card = await invite(world, "/invite 123456789 @Bob")
        text = json.dumps(card, ensure_ascii=False)
        assert REASONS[code].en_us in text, code
        assert REASONS[code].zh_cn in text, code
        assert card["header"]["template"] == "red", code


async def test_not_being_in_the_meeting_says_join_first(world: Harness) -> None:
    card = await invite(world, "/invite 987654321 @Carol")
    assert REASONS[122003].en_us in json.dumps(card, ensure_ascii=False)


async def test_a_number_with_no_meeting_in_progress_says_so(world: Harness) -> None:
    card = await invite(world, "/invite 111 111 111 @Bob")
    assert "is not in progress" in json.dumps(card)


async def test_more_than_the_ceiling_is_refused(tmp_path: Path) -> None:
    config = EmulatorConfig().with_generated_users(60, chat_id=ROOM, chat_name="Crowd")
    world = await open_world(tmp_path, config, bot_invite_ceiling=50)
    try:
        card = await invite(world, "/invite 123456789 @all", chat=ROOM)
        assert "Too many people" in json.dumps(card)
        assert world.emulator.invite_calls == []
    finally:
        await world.close()


async def test_twenty_three_people_go_in_calls_of_at_most_ten_each_once(tmp_path: Path) -> None:
    config = EmulatorConfig().with_generated_users(23, chat_id=ROOM, chat_name="Crowd")
    world = await open_world(tmp_path, config, bot_confirm_threshold=100)  # straight to inviting
    try:
        meeting = world.emulator.add_meeting(
            meeting_id="7000000000000000001",
            meeting_no="444555666",
            host=ALICE,
            participants=(ALICE,),
            capacity=50,
        )
        card = await invite(world, "/invite 444555666 @all", chat=ROOM)
        calls = world.emulator.invite_calls
        assert all(len(call.invitee_ids) <= 10 for call in calls)
        assert len(calls) == 3
        everyone = [open_id for open_id in world.emulator.config.chat(ROOM).members if open_id != ALICE]  # type: ignore[union-attr]
        assert sorted(invited_ids(world)) == sorted(everyone)
        assert len(invited_ids(world)) == len(set(invited_ids(world)))
        assert card["header"]["template"] == "green"
        assert meeting.meeting_id == calls[0].meeting_id
    finally:
        await world.close()


async def test_five_hundred_people_stay_within_fifty_calls_a_second(tmp_path: Path) -> None:
    config = EmulatorConfig().with_generated_users(500, chat_id=ROOM, chat_name="Crowd")
    world = await open_world(tmp_path, config, bot_invite_ceiling=600, bot_confirm_threshold=1000)
    try:
        world.emulator.add_meeting(
            meeting_id="7000000000000000002",
            meeting_no="777888999",
            host=ALICE,
            participants=(ALICE,),
            capacity=1000,
        )
        started = time.perf_counter()
        card = await invite(world, "/invite 777888999 @all", chat=ROOM)
        elapsed = time.perf_counter() - started
        calls = world.emulator.invite_calls
        accepted = [call for call in calls if call.code == 0]
        # Paced at 50/s by the bot's clock. The emulator shares this process's event loop, so under a
        # loaded CI machine it may see two calls closer than they were sent and refuse one with 429;
        # such a refusal is retried, and nobody may be invited twice.
        assert all(call.code in (0, 99991400) for call in calls)
        assert len(calls) - len(accepted) <= 2
        people = [open_id for call in accepted for open_id in call.invitee_ids]
        assert len(people) == len(set(people)) >= 500
        assert generated_open_id(499) in people
        stamps = sorted(call.at for call in accepted)
        for i, stamp in enumerate(stamps):
            assert sum(1 for other in stamps[i:] if other < stamp + 1.0) <= 50
        assert elapsed < 10  # about a second of calls, not fifty
        size = len(json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode())
        assert size < 30 * 1024
        print(f"500+ invitees: {len(calls)} calls, {elapsed:.2f} s from message to card, card {size} bytes")
    finally:
        await world.close()


async def test_first_invite_asks_to_authorize_then_runs_by_itself(tmp_path: Path) -> None:
    world = await open_harness(tmp_path, clock=ManualClock())
    try:
        await world.start_bot()
        await world.emulator.say(ALICE, TEAM, "/invite 123456789 @Bob")
        url = await ephemeral_prompt(world, ALICE)
        assert world.emulator.invite_calls == []
        status, _ = await browse(world.emulator.authorize(url, as_user=ALICE))
        assert status == 200
        [card] = await world.emulator.wait_for_messages(1, chat_id=TEAM)
        assert invited_ids(world) == [BOB]
        assert "Invited 1" in json.dumps(card.content)
    finally:
        await world.close()


async def test_a_failed_reply_is_retried_without_inviting_anyone_twice(world: Harness) -> None:
    world.emulator.add_fault(Fault(route="reply", status=400, code=230099, msg="card refused"))
    card = await invite(world, "/invite 123456789 @Bob @Carol")
    assert "Invited 2" in json.dumps(card)
    assert len(world.emulator.invite_calls) == 1  # the retry answered from the record


async def test_an_invitation_without_an_answer_is_not_sent_again(world: Harness) -> None:
    world.emulator.add_fault(Fault(route="invite", status=503))
    card = await invite(world, "/invite 123456789 @Bob")
    assert len(world.emulator.invite_calls) <= 1  # never resent after a lost answer
    assert UNCERTAIN.en_us in json.dumps(card, ensure_ascii=False)


async def test_authorization_lost_while_inviting_reports_those_people_and_asks_again(world: Harness) -> None:
    # The lookup works, then Feishu refuses Alice's token for the invitation even after a refresh.
    world.emulator.fail_invitee(BOB, 99991668)
    card = await invite(world, "/invite 123456789 @Bob @Carol")
    text = json.dumps(card, ensure_ascii=False)
    assert NEEDS_AUTHORIZATION.en_us in text
    assert f"<at id={BOB}></at>" in text
    prompts = await world.emulator.wait_for_ephemeral(3, open_id=ALICE)  # prompt, "authorized", new prompt
    assert "Authorize" in json.dumps(prompts[-1].card)
    assert all(call.code != 0 for call in world.emulator.invite_calls)  # nobody was rung


async def test_unknown_codes_show_the_code_and_the_log_id(world: Harness) -> None:
    world.emulator.fail_invitee(BOB, 129999)
    card = await invite(world, "/invite 123456789 @Bob")
    text = json.dumps(card, ensure_ascii=False)
    assert "error 129999" in text
    assert "log_id 2" in text  # Feishu's log ids start with the date


async def test_a_remembered_meeting_belongs_to_its_sender(world: Harness) -> None:
    await invite(world, "/invite 123456789 @Carol")
    world.emulator.refuse_active_meeting()  # only the remembered meeting could answer Bob
    await authorize(world, BOB)
    before = len([m for m in world.emulator.messages if m.chat_id == TEAM])
    await world.emulator.say(BOB, TEAM, "/invite @Carol")
    replies = await world.emulator.wait_for_messages(
        before + 2, chat_id=TEAM
    )  # "authorized", then the answer
    assert "Which meeting?" in json.dumps(replies[-1].content)
    assert len(world.emulator.invite_calls) == 1


async def test_sixty_emails_are_looked_up_fifty_at_a_time(tmp_path: Path) -> None:
    config = EmulatorConfig().with_generated_users(60)
    world = await open_world(tmp_path, config, bot_invite_ceiling=100, bot_confirm_threshold=100)
    try:
        emails = " ".join(f"user{n:04d}@example.com" for n in range(1, 61))
        card = await invite(world, f"/invite 123456789 {emails}")
        assert len(set(invited_ids(world))) == 60
        assert "Invited 60" in json.dumps(card)
    finally:
        await world.close()


async def test_a_refusal_about_one_person_is_pinned_on_that_person(world: Harness) -> None:
    world.emulator.fail_invitee(CAROL, 122007)  # Carol is in another call: the whole call is refused
    card = await invite(world, "/invite 123456789 @Bob @Carol")
    text = json.dumps(card, ensure_ascii=False)
    assert card["header"]["template"] == "orange"
    assert "Invited 1" in text
    assert REASONS[122007].en_us in text
    assert BOB in [
        open_id for call in world.emulator.invite_calls if call.code == 0 for open_id in call.invitee_ids
    ]


@pytest.mark.parametrize("message_type", ["text", "post"])
async def test_feishus_own_forms_of_all_and_links(world: Harness, message_type: str) -> None:
    """As Feishu delivers them: `@_all` placeholders, and links as [text](url) or post a-nodes."""
    await invite(world, "/invite https://vc.feishu.cn/j/123456789 @all", message_type=message_type)
    members = world.emulator.config.chat(TEAM).members  # type: ignore[union-attr]
    assert sorted(invited_ids(world)) == sorted(member for member in members if member != ALICE)
