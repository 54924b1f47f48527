"""Cards as a person would read them in a Feishu client, rendered to plain text for transcripts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

Lang = str
_AT = re.compile(r"<at id=([^>]+)></at>")


def _text(node: Any, lang: Lang) -> str:
    if not isinstance(node, dict):
        return ""
    i18n = node.get("i18n_content")
    if isinstance(i18n, dict) and isinstance(i18n.get(lang), str):
        return str(i18n[lang])
    content = node.get("content")
    if isinstance(content, str):
        return content
    return _text(node.get("text"), lang)


def _elements(elements: Any, lang: Lang, lines: list[str]) -> None:
    if not isinstance(elements, list):
        return
    for element in elements:
        if not isinstance(element, dict):
            continue
        tag = element.get("tag")
        if tag in ("markdown", "div", "plain_text"):
            lines.extend("│ " + line for line in _text(element, lang).splitlines())
        elif tag == "hr":
            lines.append("├" + "─" * 60)
        elif tag == "button":
            lines.append(f"│ [ {_text(element.get('text'), lang)} ]")
        elif tag == "action":  # JSON 1.0: a row of buttons
            _elements(element.get("actions"), lang, lines)
        elif tag == "note":
            lines.extend(
                "│ " + _text(item, lang) for item in element.get("elements", []) if isinstance(item, dict)
            )
        elif tag in ("column_set", "form", "collapsible_panel", "interactive_container"):
            for column in element.get("columns", []) or []:
                if isinstance(column, dict):
                    _elements(column.get("elements"), lang, lines)
            _elements(element.get("elements"), lang, lines)


def render_card(card: dict[str, Any], lang: Lang = "en_us") -> str:
    """A card JSON 2.0 as boxed text: header title, then its components in order."""
    header = card.get("header") if isinstance(card.get("header"), dict) else {}
    assert isinstance(header, dict)
    title = _text(header.get("title"), lang)
    colour = header.get("template", "default")
    lines = ["┌" + "─" * 60, f"│ {title}  ({colour})", "├" + "─" * 60]
    body = card.get("body")
    _elements(body.get("elements") if isinstance(body, dict) else card.get("elements"), lang, lines)
    lines.append("└" + "─" * 60)
    return "\n".join(lines)


def render_message(
    msg_type: str, content: dict[str, Any], lang: Lang = "en_us", names: Mapping[str, str] | None = None
) -> str:
    """As a reader sees it; `names` turns `<at id=...>` mentions into @Name, as the client does."""
    if msg_type == "interactive":
        text = render_card(content, lang)
        return _AT.sub(lambda match: "@" + (names or {}).get(match.group(1), match.group(1)), text)
    if msg_type == "text":
        return str(content.get("text", ""))
    return f"({msg_type} message)"
