"""Buttons registered like commands: a kind declared once is offered, checked and pressed by the core
click path, which knows no button by name."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from bot.feishu.events import CardActionEvent
from bot.feishu.models import MessageReplyRequest, card_content
from bot.store import Store, open_store
from handlers.buttons import NAMESPACE, ButtonKind, ButtonTable, CardActions, SenderOnly
from handlers.cards import card, markdown
from handlers.clicks import update_card
from handlers.context import CommandContext
from handlers.i18n import Text
from handlers.router import default_buttons
from tests.harness import (
    ALICE,
    BOB,
    TEAM,
    FixedClock,
    Harness,
    invite,
    running_world,
    updated_card,
)

SET = Text("好的，会提醒你。", "Reminder set.")
pressed: list[str] = []


class RemindMe(SenderOnly):
    """A button the tests add, as a feature would: only the asker may press it; it needs a note."""

    kind: Literal["remind_me"] = "remind_me"
    label: ClassVar[Text] = Text("提醒我", "Remind me")
    accepted: ClassVar[Text] = Text("收到", "Noted")
    acts_as_clicker: ClassVar[bool] = False
    note: str

    def problem(self, event: CardActionEvent) -> Text | None:
        return None if self.note else Text("没有内容", "Nothing to remind")


async def remind_me(context: CommandContext, event: CardActionEvent, button: RemindMe) -> None:
    pressed.append(button.note)
    await update_card(context.services, event, card(SET, [markdown(SET)], template="green"))


REMIND_ME = ButtonKind(RemindMe, remind_me)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_world(tmp_path) as opened:
        yield opened


async def offer_remind_me(world: Harness, note: str) -> tuple[str, str]:
    """The running bot learns the new kind, offers it on a card of its own; (message id, action id)."""
    services = world.runtime.services
    services.actions.table.add(REMIND_ME)
    button = RemindMe(tenant_key="", chat_id=TEAM, chat_type="group", sender_open_id=ALICE, note=note)
    element = await services.actions.offer_element(button)
    await invite(world, "/invite 123456789 @Bob")
    result = world.emulator.messages[-1]
    shown = card(Text("提醒", "Remind"), [element])
    request = MessageReplyRequest(content=card_content(shown), msg_type="interactive", uuid="remind-test")
    sent = await services.client.reply_message(result.message_id, request, chat_id=TEAM)
    return sent.message_id, element["behaviors"][0]["value"]["action_id"]


async def test_a_new_button_kind_is_checked_and_pressed_by_the_core_click_path(world: Harness) -> None:
    pressed.clear()
    message_id, action_id = await offer_remind_me(world, "stand-up at ten")
    value = {"action_id": action_id}

    by_bob = await world.emulator.click(BOB, message_id, value)
    assert by_bob.ok
    assert by_bob.toast is not None
    assert "Only the person who asked" in json.dumps(by_bob.toast)

    first, second = await world.emulator.double_click(ALICE, message_id, value)
    toasts = json.dumps([first.toast, second.toast])
    assert "Noted" in toasts  # the kind's own accepted toast
    assert "Reminder set" in await updated_card(world, message_id)
    assert pressed == ["stand-up at ten"]  # a double click acts once; Bob's press never did


async def test_a_kind_reports_what_is_missing_before_the_ack(world: Harness) -> None:
    message_id, action_id = await offer_remind_me(world, "")
    result = await world.emulator.click(ALICE, message_id, {"action_id": action_id})
    assert result.toast is not None
    assert "Nothing to remind" in json.dumps(result.toast)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path}/buttons.db")
    try:
        yield opened
    finally:
        await opened.close()


def test_a_kind_is_declared_once() -> None:
    table = default_buttons()
    table.add(REMIND_ME)
    with pytest.raises(ValueError, match="remind_me"):
        table.add(REMIND_ME)


async def test_a_button_of_an_undeclared_kind_is_never_offered(store: Store) -> None:
    actions = CardActions(store, FixedClock(), ButtonTable())
    button = RemindMe(tenant_key="", chat_id=TEAM, chat_type="group", sender_open_id=ALICE, note="x")
    with pytest.raises(KeyError):
        await actions.offer(button)


async def test_a_stored_button_of_a_kind_no_longer_declared_reads_as_expired(store: Store) -> None:
    table = ButtonTable([REMIND_ME])
    actions = CardActions(store, FixedClock(), table)
    button = RemindMe(tenant_key="", chat_id=TEAM, chat_type="group", sender_open_id=ALICE, note="x")
    action_id = await actions.offer(button)
    assert await actions.peek(action_id) == button
    assert await CardActions(store, FixedClock(), ButtonTable()).peek(action_id) is None


async def test_a_button_kept_before_claims_existed_still_works(store: Store) -> None:
    actions = CardActions(store, FixedClock(), ButtonTable([REMIND_ME]))
    button = RemindMe(tenant_key="", chat_id=TEAM, chat_type="group", sender_open_id=ALICE, note="x")
    await store.put(NAMESPACE, "old", button.model_dump_json().encode(), expires_at=None)
    assert await actions.claim("old", "event-1", ALICE) == button
    assert await actions.claim("old", "event-2", ALICE) is None  # claimed: another click finds it taken
