"""From an event out of the inbox to the handler that answers it."""

from __future__ import annotations

import structlog
from pydantic import ValidationError

from bot.feishu.events import (
    AUTHORIZATION_GRANTED,
    CARD_ACTION_TRIGGER,
    DEVICE_AUTHORIZATION,
    MEETING_WATCH,
    MESSAGE_RECEIVE,
    EventEnvelope,
    MalformedEvent,
    parse_message_receive,
)
from bot.oauth.records import AuthorizationGranted, DevicePoll
from handlers.account import login_command, logout_command, poll_device_authorization, show_authorized
from handlers.buttons import ButtonTable
from handlers.clicks import on_click, on_click_dead
from handlers.commands import CommandTable
from handlers.context import CommandContext, IncomingMessage, Services
from handlers.help import help_command, not_a_command_card, too_long_card, unknown_command_card
from handlers.invite.clicks import INVITE_BUTTONS
from handlers.invite.command import invite_command
from handlers.invite.watch import WatchTick, look_at_meeting
from handlers.messages import MAX_COMMAND_CHARS, read_message

log = structlog.get_logger("handlers")


def default_commands(invite_ceiling: int = 200, confirm_above: int = 10) -> CommandTable:
    table = CommandTable()
    table.add(invite_command(invite_ceiling, confirm_above))
    table.add(login_command())
    table.add(logout_command())
    table.add(help_command(table))
    return table


def default_buttons() -> ButtonTable:
    """Every button kind the features offer on cards; a click of any other kind is an expired button."""
    return ButtonTable(INVITE_BUTTONS)


def needs_handling(envelope: EventEnvelope, bot_open_id: str) -> bool:
    """Whether an event can lead to any answer. Group chatter that neither mentions the bot nor starts
    with a command word (the bot receives it when the app may read all group messages) is acknowledged
    without entering the inbox: ignoring it is idempotent, so it needs neither storing nor dedupe."""
    if envelope.event_type != MESSAGE_RECEIVE:
        return True
    try:
        event = parse_message_receive(envelope)
    except MalformedEvent:
        return True  # the intake refuses it, with its own clear answer
    if event.sender.sender_type not in ("", "user") or event.sender.sender_id.open_id == bot_open_id:
        return False
    message = read_message(event, bot_open_id, tenant_key=envelope.tenant_key)
    return message is not None and _may_answer(message)


def _may_answer(message: IncomingMessage) -> bool:
    return message.chat_type == "p2p" or message.mentioned_bot or message.text.startswith("/")


class Router:
    def __init__(self, services: Services, commands: CommandTable | None = None) -> None:
        self._services = services
        self._commands = commands or default_commands()

    async def __call__(self, envelope: EventEnvelope) -> None:
        if envelope.event_type == MESSAGE_RECEIVE:
            await self._on_message(envelope)
        elif envelope.event_type == AUTHORIZATION_GRANTED:
            await self._on_authorization_granted(envelope)
        elif envelope.event_type == DEVICE_AUTHORIZATION:
            try:
                poll = DevicePoll.model_validate(envelope.event)
            except ValidationError:
                log.error("device authorization event unreadable; dropped")
                return
            await poll_device_authorization(self._services, poll)
        elif envelope.event_type == MEETING_WATCH:
            try:
                tick = WatchTick.model_validate(envelope.event)
            except ValidationError:
                log.error("meeting watch event unreadable; dropped")
                return
            await look_at_meeting(self._services, tick)
        elif envelope.event_type == CARD_ACTION_TRIGGER:
            try:
                await on_click(self._services, envelope)
            except MalformedEvent as error:
                log.error("card action unreadable; dropped", problem=str(error))
        else:
            log.info("event type not handled; ignored")

    async def on_dead(self, envelope: EventEnvelope, reason: str) -> None:
        """The inbox gave up on an event. A click is the one thing nobody will send again: say so."""
        if envelope.event_type == CARD_ACTION_TRIGGER:
            await on_click_dead(self._services, envelope, reason)
        elif envelope.event_type == AUTHORIZATION_GRANTED:
            pending = AuthorizationGranted.model_validate(envelope.event).pending
            if pending is not None and pending.event_type == CARD_ACTION_TRIGGER:
                await on_click_dead(self._services, pending, reason)

    async def _on_authorization_granted(self, envelope: EventEnvelope) -> None:
        try:
            granted = AuthorizationGranted.model_validate(envelope.event)
        except ValidationError:
            log.error("authorization event unreadable; dropped")
            return
        await show_authorized(self._services, granted)
        if granted.pending is not None:
            # The command (or click) that was waiting for this authorization runs now.
            log.info("resuming what waited for authorization", event_type=granted.pending.event_type)
            await self(granted.pending)

    async def _on_message(self, envelope: EventEnvelope) -> None:
        try:
            event = parse_message_receive(envelope)
        except MalformedEvent as error:
            # Intake already parsed it to find its dedupe key, so this means a stored payload went bad.
            log.error("message event unreadable; dropped", problem=str(error))
            return
        bot_open_id = self._services.bot.open_id
        if event.sender.sender_type not in ("", "user") or event.sender.sender_id.open_id == bot_open_id:
            return  # never answer a bot, least of all ourselves
        message = read_message(event, bot_open_id, tenant_key=envelope.tenant_key)
        with structlog.contextvars.bound_contextvars(
            message_id=event.message.message_id, chat_id=event.message.chat_id
        ):
            if message is None:
                log.info(
                    "message not readable as a command; ignored", message_type=event.message.message_type
                )
                return
            await self._dispatch(message, envelope)

    async def _dispatch(self, message: IncomingMessage, envelope: EventEnvelope) -> None:
        addressed = message.chat_type == "p2p" or message.mentioned_bot
        word, _, args = message.text.partition(" ")
        if not word.startswith("/"):
            if addressed:
                # Spoken to without a command: answer with what the bot can do rather than silence.
                await self._context(message, envelope, word, args).reply_card(
                    not_a_command_card(self._commands)
                )
            return
        command = self._commands.find(word)
        context = self._context(message, envelope, word, args.strip())
        if command is not None and message.too_long:
            log.info("command too long; refused unread", command=command.name)
            await context.reply_card(too_long_card(command.name, MAX_COMMAND_CHARS))
            return
        if command is None:
            if addressed or self._commands.suggest(word) is not None:
                log.info("unknown command", word=word[:40])
                await context.reply_card(unknown_command_card(self._commands, word))
            return
        log.info("command", command=command.name)
        await command.handler(context)

    def _context(
        self, message: IncomingMessage, envelope: EventEnvelope, word: str, args: str
    ) -> CommandContext:
        return CommandContext(
            services=self._services, message=message, envelope=envelope, word=word, args=args
        )
