"""Reading a received message: its text (text and post types), and whether it speaks to the bot."""

from __future__ import annotations

import json
import re
from typing import Any

from bot.feishu.events import MessageReceiveEvent
from handlers.context import IncomingMessage

READABLE_TYPES = ("text", "post")


def message_text(message_type: str, content: str) -> str | None:
    """The plain text of a text or post message, with `@_user_N` placeholders; None if unreadable."""
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    if message_type == "text":
        text = body.get("text")
        return text if isinstance(text, str) else None
    if message_type == "post":
        return _post_text(body)
    return None


def _post_text(body: dict[str, Any]) -> str | None:
    # Received posts carry {"title", "content"} directly; tolerate the send-side language wrapper too.
    if "content" not in body:
        wrapped = next((value for value in body.values() if isinstance(value, dict)), None)
        if wrapped is None:
            return None
        body = wrapped
    paragraphs = body.get("content")
    if not isinstance(paragraphs, list):
        return None
    lines = []
    for paragraph in paragraphs:
        if not isinstance(paragraph, list):
            continue
        parts = []
        for node in paragraph:
            if not isinstance(node, dict):
                continue
            tag = node.get("tag")
            if tag in ("text", "code_block") and isinstance(node.get("text"), str):
                parts.append(node["text"])
            elif tag == "a":
                # Both the label and the address: a meeting link may hide behind any label.
                label, href = node.get("text"), node.get("href")
                parts.append(
                    f" {label if isinstance(label, str) else ''} {href if isinstance(href, str) else ''} "
                )
            elif tag == "at" and isinstance(node.get("user_id"), str):
                parts.append(f" {node['user_id']} ")
        lines.append("".join(parts))
    return "\n".join(lines)


def read_message(event: MessageReceiveEvent, bot_open_id: str) -> IncomingMessage | None:
    """The message as handlers see it, or None when it is not for the bot to read."""
    message = event.message
    if message.message_type not in READABLE_TYPES:
        return None
    text = message_text(message.message_type, message.content)
    if text is None:
        return None
    bot_keys = {mention.key for mention in message.mentions if mention.id.open_id == bot_open_id}
    for key in bot_keys:
        # Whole placeholders only: removing `@_user_1` must leave `@_user_12` intact.
        text = re.sub(re.escape(key) + r"(?!\d)", " ", text)
    others = tuple(mention for mention in message.mentions if mention.key not in bot_keys)
    return IncomingMessage(
        message_id=message.message_id,
        chat_id=message.chat_id,
        chat_type=message.chat_type,
        thread_id=message.thread_id,
        sender_open_id=event.sender.sender_id.open_id,
        tenant_key=event.sender.tenant_key,
        text=" ".join(text.split()),
        mentions=others,
        mentioned_bot=bool(bot_keys),
    )
