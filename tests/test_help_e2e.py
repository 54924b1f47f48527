"""The thin thread: a message in Feishu → webhook → inbox → handler → a reply card, over loopback."""

from __future__ import annotations

from tests.harness import ALICE, ALICE_DM, TEAM, Harness


def card_text(content: dict[str, object]) -> str:
    return str(content)


async def test_help_in_group_gets_a_help_card_reply(world: Harness) -> None:
    pushed = await world.emulator.say(ALICE, TEAM, "/help")
    assert pushed.status == 200
    [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM)
    assert reply.msg_type == "interactive"
    assert reply.reply_to is not None
    assert reply.uuid  # deterministic, so a retried reply is shown once
    card = reply.content
    assert card["schema"] == "2.0"
    assert card["config"]["update_multi"] is True
    title = card["header"]["title"]
    assert title["i18n_content"] == {"zh_cn": "邀请助手 · 使用说明", "en_us": "Invite bot · how to use"}
    assert "/help" in card_text(card)


async def test_unknown_command_suggests_the_closest(world: Harness) -> None:
    await world.emulator.say(ALICE, TEAM, "/hepl")
    [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM)
    assert "Did you mean `/help`?" in card_text(reply.content)
    assert reply.content["header"]["template"] == "orange"


async def test_direct_chat_without_command_gets_usage(world: Harness) -> None:
    await world.emulator.say(ALICE, ALICE_DM, "hello there", mention_bot=False)
    [reply] = await world.emulator.wait_for_messages(1, chat_id=ALICE_DM)
    assert "I only understand commands" in card_text(reply.content)


async def test_group_chatter_not_for_the_bot_is_left_alone(world: Harness) -> None:
    await world.emulator.say(ALICE, TEAM, "lunch at noon?", mention_bot=False)
    # A later message in the same chat is handled after it (one chat, in order), so once its answer
    # is there, the chatter was handled too, and silently.
    await world.emulator.say(ALICE, TEAM, "/help")
    replies = await world.emulator.wait_for_messages(1, chat_id=TEAM)
    assert len(world.emulator.messages) == 1
    assert "使用说明" in card_text(replies[0].content)


async def test_post_message_with_command_is_read(world: Harness) -> None:
    await world.emulator.say(ALICE, TEAM, "/help", message_type="post")
    [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM)
    assert "Invite bot" in card_text(reply.content)


async def test_mentioning_the_bot_without_a_command_in_a_group_gets_help(world: Harness) -> None:
    await world.emulator.say(ALICE, TEAM, "hello there")  # the bot is mentioned first
    [reply] = await world.emulator.wait_for_messages(1, chat_id=TEAM)
    text = card_text(reply.content)
    assert "I only understand commands" in text
    assert "/invite" in text
    assert "/invite 123456789 @Alice @Bob" in text  # usage and examples, from the command table
