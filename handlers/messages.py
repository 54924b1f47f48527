"""Reading a received message: its text (text and post types), and whether it speaks to the bot."""

from __future__ import annotations

import json
import re
from typing import Any

from bot.feishu.events import MessageReceiveEvent, is_open_id
from handlers.context import IncomingMessage

READABLE_TYPES = ("text", "post")
# No real command is longer than this; a longer text is refused before any command grammar reads it,
# so the cost of reading a command never depends on how much a hostile sender pasted.
MAX_COMMAND_CHARS = 4000


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


_POST_AT_ALL = frozenset({"all", "all_members", "@_all"})


def _post_body(body: dict[str, Any], depth: int = 0) -> list[Any] | None:
    """The paragraphs of a post: {"title", "content"} as most arrive, or inside a language wrapper
    ({"zh_cn": {...}}), which users report receiving too, or a {"post": {"zh_cn": ...}} one (seen by
    other bots' authors); the first language found is read (feishu-protocol §2)."""
    paragraphs = body.get("content")
    if isinstance(paragraphs, list):
        return paragraphs
    if depth >= 2:
        return None
    for value in body.values():
        if isinstance(value, dict):
            found = _post_body(value, depth + 1)
            if found is not None:
                return found
    return None


def _post_text(body: dict[str, Any]) -> str | None:
    paragraphs = _post_body(body)
    if paragraphs is None:
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
                # A post's @all is an at-node whose user_id is "all" (the SDKs also see "all_members"
                # and "@_all"), usually without a mentions[] entry: read it as the text placeholder.
                user_id = node["user_id"]
                parts.append(" @_all " if user_id in _POST_AT_ALL else f" {user_id} ")
        lines.append("".join(parts))
    return "\n".join(lines)


def read_message(event: MessageReceiveEvent, bot_open_id: str, *, tenant_key: str) -> IncomingMessage | None:
    """The message as handlers see it, or None when it is not for the bot to read. `tenant_key` is the
    event header's: the tenant the app serves this chat in. The sender's own `tenant_key` differs when
    they are an external contact (feishu-protocol §2), and keying their authorization or a card's buttons
    by it would split one person of this app (open_ids are per app) across two tenants."""
    message = event.message
    if message.message_type not in READABLE_TYPES or not is_open_id(event.sender.sender_id.open_id):
        return None
    text = message_text(message.message_type, message.content)
    if text is None:
        return None
    # Cut first (with room for the bot's own placeholders, which are removed below): nothing after this
    # line looks at more than a few KB, however long the message.
    too_long = len(text) > 2 * MAX_COMMAND_CHARS
    text = text[: 2 * MAX_COMMAND_CHARS]
    bot_keys = {mention.key for mention in message.mentions if mention.id.open_id == bot_open_id}
    if bot_keys:
        # Whole placeholders only: removing `@_user_1` must leave `@_user_12` intact. One pass for all.
        keys = "|".join(re.escape(key) for key in sorted(bot_keys, key=len, reverse=True))
        text = re.sub(f"(?:{keys})(?!\\d)", " ", text)
    others = tuple(mention for mention in message.mentions if mention.key not in bot_keys)
    text = " ".join(text.split())
    too_long = too_long or len(text) > MAX_COMMAND_CHARS
    return IncomingMessage(
        message_id=message.message_id,
        chat_id=message.chat_id,
        chat_type=message.chat_type,
        thread_id=message.thread_id,
        sender_open_id=event.sender.sender_id.open_id,
        tenant_key=tenant_key or event.sender.tenant_key,
        text=text[:MAX_COMMAND_CHARS],
        mentions=others,
        mentioned_bot=bool(bot_keys),
        too_long=too_long,
    )
