"""Card JSON 2.0 building blocks: pure functions from our values to Feishu's card structure.

Every text carries `i18n_content`, so each reader sees their client's language (reference §4.4; JSON 2.0
has no whole-card i18n, only per-component). Cards are sent with `update_multi` so later issues can
update them in place for everyone.
"""

from __future__ import annotations

from typing import Any, Literal

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


def _i18n(text: Text) -> dict[str, Any]:
    # `content` is what clients without i18n support show; English reads for most of them.
    return {"content": text.en_us, "i18n_content": {"zh_cn": text.zh_cn, "en_us": text.en_us}}


def plain_text(text: Text) -> dict[str, Any]:
    return {"tag": "plain_text", **_i18n(text)}


def markdown(text: Text) -> dict[str, Any]:
    return {"tag": "markdown", **_i18n(text)}


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
