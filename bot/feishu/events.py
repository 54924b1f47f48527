"""Typed event envelopes and the event bodies the bot reads (feishu-protocol §1.6, §2).

Both schema 2.0 and the legacy 1.0 envelope are normalised into one `EventEnvelope`, which is what the
inbox stores and the handlers receive. The Verification Token is split off during parsing so it is
checked once at the door and never persisted.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, TypeGuard

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MESSAGE_RECEIVE = "im.message.receive_v1"
CARD_ACTION_TRIGGER = "card.action.trigger"
# Our own events, fed into the inbox by the bot itself (never accepted from the webhook).
INTERNAL_PREFIX = "invite_bot."
AUTHORIZATION_GRANTED = "invite_bot.authorization_granted"
# Polls a device authorization until the user decides (BOT_AUTH_FLOW=device); in the inbox, so that the
# polling survives a restart and runs on one replica at a time.
DEVICE_AUTHORIZATION = "invite_bot.device_authorization"
# The bot's own: one look at a watched meeting (who joined), run again a few seconds later.
MEETING_WATCH = "invite_bot.meeting_watch"


# An open_id as Feishu issues them (`ou_` and 32 hex digits; our emulator uses other letters and digits).
# Only such ids reach an `<at id=...>` tag or an API call: anything else from outside is dropped.
OPEN_ID_PATTERN = r"^ou_[A-Za-z0-9]{1,64}$"
_OPEN_ID = re.compile(OPEN_ID_PATTERN)


def is_open_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _OPEN_ID.fullmatch(value) is not None


class _Lenient(BaseModel):
    """Feishu adds fields over time; unknown ones are kept out of our models, never an error."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class EventEnvelope(_Lenient):
    """One delivered event, however it arrived (webhook 2.0, webhook 1.0, later a long connection)."""

    schema_version: Literal["2.0", "1.0"]
    event_id: str = Field(min_length=1, max_length=256)
    event_type: str = Field(min_length=1, max_length=256)
    create_time: str = ""
    app_id: str = ""
    tenant_key: str = ""
    event: dict[str, Any]


class UrlVerification(_Lenient):
    challenge: str = Field(max_length=4096)
    token: str = ""


class _HeaderV2(_Lenient):
    event_id: str = Field(min_length=1, max_length=256)
    event_type: str = Field(min_length=1, max_length=256)
    create_time: str = ""
    token: str = ""
    app_id: str = ""
    tenant_key: str = ""


class _BodyV2(_Lenient):
    schema_: Literal["2.0"] = Field(alias="schema")
    header: _HeaderV2
    event: dict[str, Any]


class _EventV1(_Lenient):
    model_config = ConfigDict(extra="allow", frozen=True)
    type: str = Field(min_length=1, max_length=256)
    app_id: str = ""
    tenant_key: str = ""


class _BodyV1(_Lenient):
    uuid: str = Field(min_length=1, max_length=256)
    ts: str = ""
    token: str = ""
    type: Literal["event_callback"]
    event: _EventV1


class MalformedEvent(ValueError):
    """The body is JSON but not a Feishu envelope we can read."""


def parse_body(payload: dict[str, Any]) -> tuple[UrlVerification | EventEnvelope, str]:
    """Parse a decrypted body into a challenge or an event, returning it with the token it carried."""
    try:
        if payload.get("type") == "url_verification":
            challenge = UrlVerification.model_validate(payload)
            return challenge, challenge.token
        if payload.get("schema") == "2.0":
            v2 = _BodyV2.model_validate(payload)
            envelope = EventEnvelope(
                schema_version="2.0",
                event_id=v2.header.event_id,
                event_type=v2.header.event_type,
                create_time=v2.header.create_time,
                app_id=v2.header.app_id,
                tenant_key=v2.header.tenant_key,
                event=v2.event,
            )
            return envelope, v2.header.token
        v1 = _BodyV1.model_validate(payload)
    except ValidationError as error:
        raise MalformedEvent(_first_problem(error)) from None
    event_type, event = v1.event.type, dict(payload["event"])
    if event_type == MESSAGE_V1:
        try:
            event = _message_from_v1(_MessageV1.model_validate(event), v1.ts)
        except ValidationError as error:
            raise MalformedEvent(_first_problem(error)) from None
        event_type = MESSAGE_RECEIVE
    envelope = EventEnvelope(
        schema_version="1.0",
        event_id=v1.uuid,
        event_type=event_type,
        create_time=v1.ts,
        app_id=v1.event.app_id,
        tenant_key=v1.event.tenant_key,
        event=event,
    )
    return envelope, v1.token


# Apps still subscribed to the schema 1.0 message event get `event.type: "message"` (feishu-protocol §2).
MESSAGE_V1 = "message"
_AT_MARKUP = re.compile(r'<at (?:open_id|user_id)="([^"]*)">([^<]*)</at>')


class _MessageV1(_Lenient):
    open_message_id: str = Field(min_length=1, max_length=256)
    open_chat_id: str = Field(min_length=1, max_length=256)
    chat_type: str = ""
    msg_type: str = "text"
    open_id: str = ""
    union_id: str = ""
    employee_id: str = ""
    tenant_key: str = ""
    root_id: str = ""
    parent_id: str = ""
    text: str = ""
    text_without_at_bot: str | None = None


def _message_from_v1(old: _MessageV1, ts: str) -> dict[str, Any]:
    """A 1.0 message as the 2.0 `im.message.receive_v1` it stands for, so one reader serves both. The bot's
    own mention is already gone from `text_without_at_bot`; other `<at open_id="…">` become placeholders."""
    text = old.text_without_at_bot if old.text_without_at_bot is not None else old.text
    mentions: list[dict[str, Any]] = []

    def placeholder(match: re.Match[str]) -> str:
        who, name = match[1], match[2]
        if who in ("all", "@_all"):
            return "@_all"
        key = f"@_user_{len(mentions) + 1}"
        mentions.append({"key": key, "id": {"open_id": who}, "name": name, "tenant_key": old.tenant_key})
        return key

    text = _AT_MARKUP.sub(placeholder, text)
    try:
        created = str(int(float(ts) * 1000))
    except ValueError:
        created = ""
    message: dict[str, Any] = {
        "message_id": old.open_message_id,
        "root_id": old.root_id,
        "parent_id": old.parent_id,
        "create_time": created,
        "chat_id": old.open_chat_id,
        "chat_type": "p2p" if old.chat_type == "private" else old.chat_type,
        "message_type": "text",  # a 1.0 post's `text` is its plain text: read it as such
        "content": json.dumps({"text": text.strip()}, ensure_ascii=False),
    }
    if mentions:
        message["mentions"] = mentions
    sender_id = {"open_id": old.open_id, "union_id": old.union_id, "user_id": old.employee_id}
    return {
        "sender": {"sender_id": sender_id, "sender_type": "user", "tenant_key": old.tenant_key},
        "message": message,
    }


def _first_problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


# --- event bodies -----------------------------------------------------------------------------------


class UserId(_Lenient):
    open_id: str = ""
    union_id: str | None = None
    user_id: str | None = None


class EventSender(_Lenient):
    sender_id: UserId = UserId()
    sender_type: str = ""
    tenant_key: str = ""


class Mention(_Lenient):
    key: str
    id: UserId = UserId()
    name: str = ""
    tenant_key: str = ""


class EventMessage(_Lenient):
    message_id: str = Field(min_length=1, max_length=256)
    root_id: str | None = None
    parent_id: str | None = None
    create_time: str = ""
    update_time: str = ""
    chat_id: str = Field(min_length=1, max_length=256)
    thread_id: str | None = None
    chat_type: str = ""
    message_type: str = ""
    # A JSON document inside a string, as Feishu sends it; handlers decode it by message_type.
    content: str = ""
    mentions: list[Mention] = []


class MessageReceiveEvent(_Lenient):
    """`im.message.receive_v1`: someone sent a message the bot may read."""

    sender: EventSender
    message: EventMessage


def parse_message_receive(envelope: EventEnvelope) -> MessageReceiveEvent:
    try:
        return MessageReceiveEvent.model_validate(envelope.event)
    except ValidationError as error:
        raise MalformedEvent(_first_problem(error)) from None


def dedupe_key(envelope: EventEnvelope) -> str:
    """The key under which a delivery counts as already seen.

    Feishu may push one message twice under different event_ids, so messages are keyed by message_id
    (feishu-protocol §1.7); every other event by its event_id (1.0: uuid).
    """
    if envelope.event_type == MESSAGE_RECEIVE:
        return "message:" + parse_message_receive(envelope).message.message_id
    return "event:" + envelope.event_id


def ordering_key(envelope: EventEnvelope) -> str:
    """Events sharing this key are handled one at a time, in arrival order: one chat's conversation."""
    if envelope.event_type == MESSAGE_RECEIVE:
        return "chat:" + parse_message_receive(envelope).message.chat_id
    if envelope.event_type.startswith(INTERNAL_PREFIX):
        declared = envelope.event.get("ordering_key")
        if isinstance(declared, str) and declared:
            return declared
    context = envelope.event.get("context")
    if envelope.event_type == CARD_ACTION_TRIGGER and isinstance(context, dict):
        chat_id = context.get("open_chat_id")
        if isinstance(chat_id, str) and chat_id:
            return "chat:" + chat_id
    return "event:" + envelope.event_id


class CardOperator(_Lenient):
    # The clicker acts as themselves: an id that is not an open_id is no clicker at all.
    open_id: str = Field(pattern=OPEN_ID_PATTERN)
    tenant_key: str = ""
    union_id: str | None = None
    user_id: str | None = None


class CardActionDetail(_Lenient):
    value: dict[str, Any] | str | None = None
    tag: str = ""
    name: str | None = None
    form_value: dict[str, Any] | None = None
    input_value: str | None = None
    option: str | None = None
    timezone: str | None = None


class CardActionContext(_Lenient):
    open_message_id: str = ""
    open_chat_id: str = ""


class CardActionEvent(_Lenient):
    """`card.action.trigger`: someone clicked a button on a card the bot sent (feishu-protocol §3.1)."""

    operator: CardOperator
    # The card-update token (`c-...`): 30 minutes, two uses. Not the Verification Token.
    token: str = Field(default="", repr=False)
    action: CardActionDetail = CardActionDetail()
    host: str = ""
    context: CardActionContext = CardActionContext()


def parse_card_action(envelope: EventEnvelope) -> CardActionEvent:
    try:
        return CardActionEvent.model_validate(envelope.event)
    except ValidationError as error:
        raise MalformedEvent(_first_problem(error)) from None
