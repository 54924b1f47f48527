"""Card JSON 2.0 building blocks: pure functions from our values to Feishu's card structure.

Every text carries `i18n_content`, so each reader sees their client's language (feishu-protocol §4.4; JSON 2.0
has no whole-card i18n, only per-component). Cards are sent with `update_multi` so later issues can
update them in place for everyone.
"""

from __future__ import annotations

from typing import Any, Literal

from bot.feishu.events import is_open_id
from handlers.i18n import Text

Card = dict[str, Any]
Template = Literal[
    "blue",
    "wathet",
    "turquoise",
    "green",
    "yellow",
    "orange",
    "red",
    "carmine",
    "violet",
    "purple",
    "indigo",
    "grey",
    "default",
]


# Everything Feishu's card markdown (and lark_md) gives a meaning to: links and images, tags such as
# `<at id=all>` and `<font>`, entities, code, emphasis, headings, tables, template variables. Feishu
# documents no escape syntax that works for all of them, so text from outside never keeps them: each
# becomes its full-width twin, which reads the same and means nothing.
_INERT = str.maketrans(
    {
        "[": "［",
        "]": "］",
        "(": "（",
        ")": "）",
        "<": "＜",
        ">": "＞",
        "&": "＆",
        "`": "｀",
        "*": "＊",
        "_": "＿",
        "~": "～",
        "#": "＃",
        "|": "｜",
        "\\": "＼",
        "$": "＄",
    }
)


def literal(text: str, limit: int = 120) -> str:
    """Text from outside (a name, a typed word, a meeting topic, an e-mail) shown as itself, in one line.

    The one way user-sourced text enters a card or a toast: no markup, no `<at>` ping, no live link
    (a bare `https://` loses its colon's meaning too, so clients do not auto-link it), no new lines that
    could start a list or a rule, and at most `limit` characters.
    """
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.translate(_INERT).replace("://", "：//")


def mention(open_id: str) -> str:
    """An `<at>` tag, only ever for a well-formed open_id; anything else is shown as inert text."""
    return f"<at id={open_id}></at>" if is_open_id(open_id) else literal(open_id, 40)


def _i18n(text: Text) -> dict[str, Any]:
    # `content` is what clients without i18n support show; English reads for most of them.
    return {"content": text.en_us, "i18n_content": {"zh_cn": text.zh_cn, "en_us": text.en_us}}


def plain_text(text: Text) -> dict[str, Any]:
    return {"tag": "plain_text", **_i18n(text)}


def markdown(text: Text) -> dict[str, Any]:
    return {"tag": "markdown", **_i18n(text)}


ButtonStyle = Literal["default", "primary", "danger"]


def callback_button(text: Text, action_id: str, style: ButtonStyle = "default") -> dict[str, Any]:
    """A button whose click sends back only `action_id` (what it does is kept server side)."""
    return {
        "tag": "button",
        "type": style,
        "text": plain_text(text),
        "behaviors": [{"type": "callback", "value": {"action_id": action_id}}],
    }


def divider() -> dict[str, Any]:
    return {"tag": "hr"}


def card(
    title: Text, elements: list[dict[str, Any]], *, template: Template = "blue", summary: Text | None = None
) -> Card:
    config: dict[str, Any] = {"update_multi": True, "width_mode": "fill"}
    if summary is not None:
        # What the chat list and notifications show for this card.
        config["summary"] = _i18n(summary)
    return {
        "schema": "2.0",
        "config": config,
        "header": {"title": plain_text(title), "template": template},
        "body": {"elements": elements},
    }


def ephemeral_notice(title: Text, body: Text, *, template: Template = "orange") -> Card:
    """A JSON 1.0 card for `ephemeral/v1/send`, which takes no per-component i18n: both languages."""
    return {
        "config": {"wide_screen_mode": True},
        "header": {
            "template": template,
            "title": {"tag": "plain_text", "content": f"{title.zh_cn} · {title.en_us}"},
        },
        "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": body.both()}}],
    }
