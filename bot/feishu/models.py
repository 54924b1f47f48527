"""Typed request and response bodies of the Open API calls the bot makes.

Response models ignore fields they do not name: Feishu adds fields without notice, and a new field must
never break the bot. Requests are strict: we only send what we mean.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MsgType = Literal[
    "text",
    "post",
    "interactive",
    "image",
    "file",
    "audio",
    "media",
    "sticker",
    "share_chat",
    "share_user",
    "system",
]
ReceiveIdType = Literal["open_id", "union_id", "user_id", "email", "chat_id"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiResponse(BaseModel):
    """Every Open API answer carries `code` (0 is success) and `msg`."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    code: int
    msg: str = ""


# --- auth/v3 -------------------------------------------------------------------------------------------


class TenantAccessTokenRequest(_Request):
    app_id: str
    app_secret: str


class TenantAccessTokenResponse(ApiResponse):
    # Top level, not under `data` (reference §5).
    tenant_access_token: str = Field(min_length=1)
    expire: int = Field(gt=0)


# --- bot/v3 --------------------------------------------------------------------------------------------


class BotInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    open_id: str = Field(min_length=1)
    app_name: str = ""
    activate_status: int = 0
    avatar_url: str = ""


class BotInfoResponse(ApiResponse):
    # Top level `bot`, not `data` (reference §2).
    bot: BotInfo


# --- im/v1 messages ------------------------------------------------------------------------------------


class MessageReplyRequest(_Request):
    content: str
    msg_type: MsgType
    reply_in_thread: bool = False
    # Feishu delivers at most one message per uuid within an hour: what makes a retried reply safe.
    uuid: str | None = Field(default=None, max_length=50)


class MessageCreateRequest(_Request):
    receive_id: str
    content: str
    msg_type: MsgType
    uuid: str | None = Field(default=None, max_length=50)


class MessageSender(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    id: str = ""
    id_type: str = ""
    sender_type: str = ""
    tenant_key: str = ""


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    message_id: str
    root_id: str | None = None
    parent_id: str | None = None
    thread_id: str | None = None
    msg_type: str = ""
    create_time: str = ""
    update_time: str = ""
    chat_id: str = ""
    sender: MessageSender | None = None


class MessageResponse(ApiResponse):
    data: Message


def card_content(card: dict[str, Any]) -> str:
    """The `content` string of an interactive message: the card JSON, encoded once more as a string."""
    return json.dumps(card, ensure_ascii=False, separators=(",", ":"))


def text_content(text: str) -> str:
    return json.dumps({"text": text}, ensure_ascii=False, separators=(",", ":"))
