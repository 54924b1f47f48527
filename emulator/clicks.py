"""Card callbacks as Feishu builds them, and how the Feishu client judges the answer (feishu-protocol §3).

New style `card.action.trigger` (schema 2.0, §3.1): body from the doc page "卡片回传交互回调"
(https://open.feishu.cn/document/feishu-cards/card-callback-communication, 2025-09) and lark-oapi's
`P2CardActionTrigger`. Legacy `card.action.trigger_v1` (§3.2): flat body from "消息卡片回传交互（旧）" plus
`open_chat_id` (in the SDKs' `Card` model, not in the doc table). Fields the component does not produce are
left out, as in the doc's examples. Neither body carries the clicker's language: a toast's `i18n` is
resolved by the client.

The answer must come within 3 s with HTTP 200; otherwise the user sees a client error code (table on the
same doc page): 200341 late, 200342 TCP, 200343 DNS, 200080 other request error, 200671 non-200 (3xx
included: redirects are not followed), 200672 bad body, 200673 bad card, 200830 a 2.0 card answered with 1.0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from emulator.updates import is_v2

TIMEOUT = 200341
TCP_FAILED = 200342
DNS_FAILED = 200343
REQUEST_FAILED = 200080
BAD_STATUS = 200671
BAD_BODY = 200672
BAD_CARD = 200673
DOWNGRADE = 200830
CLIENT_ERRORS = {
    TIMEOUT: "the callback was not answered within 3 s",
    TCP_FAILED: "could not connect to the callback URL",
    DNS_FAILED: "could not resolve the callback URL",
    REQUEST_FAILED: "the request to the callback URL failed",
    BAD_STATUS: "the callback answered with a status other than HTTP 200",
    BAD_BODY: "the callback answered with a body of the wrong format",
    BAD_CARD: "the callback answered with an invalid card",
    DOWNGRADE: "a JSON 2.0 card cannot be updated to a JSON 1.0 card",
}
TOAST_TYPES = frozenset({"info", "success", "error", "warning"})
# Top-level keys of a legacy answer that make up a 1.0 card (or a 2.0 one) next to the toast.
_LEGACY_CARD_KEYS = (
    "config",
    "header",
    "i18n_header",
    "elements",
    "i18n_elements",
    "card_link",
    "schema",
    "body",
)


@dataclass(frozen=True)
class ClickResult:
    """One click as the clicker lived it: what the bot answered and what the Feishu client made of it."""

    legacy: bool
    message_id: str
    operator: str
    event_id: str | None  # None for the legacy callback, which has no header
    token: str
    status: int | None  # None when no HTTP answer arrived (late, unreachable)
    body: dict[str, Any] | str | None
    elapsed_ms: float
    toast: dict[str, Any] | None  # the toast shown to the clicker
    card: dict[str, Any] | None  # {"type": "raw"|"template", "data": ...} if answered with a card
    error_code: int | None = None  # the client error the clicker saw, None when the click worked

    @property
    def ok(self) -> bool:
        return self.error_code is None

    @property
    def error(self) -> str | None:
        return CLIENT_ERRORS.get(self.error_code) if self.error_code is not None else None

    def as_json(self) -> dict[str, Any]:
        return {
            "legacy": self.legacy,
            "message_id": self.message_id,
            "operator": self.operator,
            "event_id": self.event_id,
            "token": self.token,
            "status": self.status,
            "body": self.body,
            "elapsed_ms": self.elapsed_ms,
            "toast": self.toast,
            "card": self.card,
            "ok": self.ok,
            "error_code": self.error_code,
            "error": self.error,
        }


def action_object(
    *,
    value: dict[str, Any] | str,
    tag: str,
    name: str | None = None,
    form_value: dict[str, Any] | None = None,
    input_value: str | None = None,
    option: str | None = None,
    options: list[str] | None = None,
    checked: bool | None = None,
    timezone: str | None = None,
) -> dict[str, Any]:
    """`action` of either callback style: the component's callback value and what the user entered."""
    if not isinstance(value, dict | str):
        raise TypeError("value must be a dict or a str (the component's callback value)")
    fields: dict[str, Any] = {
        "value": value,
        "tag": tag,
        "timezone": timezone,
        "name": name,
        "form_value": form_value,
        "input_value": input_value,
        "option": option,
        "options": options,
        "checked": checked,
    }
    return {key: item for key, item in fields.items() if item is not None}


# --- judging the answer --------------------------------------------------------------------------------


def judge(
    status: int, text: str, *, legacy: bool, clicked_card: dict[str, Any]
) -> tuple[int | None, dict[str, Any] | None, dict[str, Any] | None]:
    """(client error code or None, toast, card) for an HTTP answer that arrived in time."""
    if status != 200:
        return BAD_STATUS, None, None
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return BAD_BODY, None, None
    if not isinstance(body, dict):
        return BAD_BODY, None, None
    if not legacy and set(body) - {"toast", "card"}:
        # New style: the doc lists `toast` and `card` only; whether Feishu ignores other keys (an SDK-style
        # {"msg": "success"}) is UNCONFIRMED: strict here, so a bot answering like an event handler is caught.
        return BAD_BODY, None, None
    toast = body.get("toast")
    if toast is not None and not _is_toast(toast):
        return BAD_BODY, None, None
    card = body.get("card") if not legacy else _legacy_card(body)
    if card is None:
        return None, toast, None
    if not _is_card(card):
        return BAD_CARD, None, None
    if card["type"] == "raw" and is_v2(clicked_card) and not is_v2(card["data"]):
        return DOWNGRADE, None, None
    return None, toast, card


def _is_toast(toast: Any) -> bool:
    if not isinstance(toast, dict):
        return False
    kind, content, i18n = toast.get("type"), toast.get("content"), toast.get("i18n")
    if kind is not None and kind not in TOAST_TYPES:
        return False
    if content is not None and not isinstance(content, str):
        return False
    if i18n is not None and not (isinstance(i18n, dict) and all(isinstance(v, str) for v in i18n.values())):
        return False
    return content is not None or bool(i18n)


def _legacy_card(body: dict[str, Any]) -> dict[str, Any] | None:
    # Legacy answers put the card itself next to the toast, or {"type": "template", "data": {...}}.
    if body.get("type") == "template" or "data" in body:
        return {"type": body.get("type"), "data": body.get("data")}
    fields = {key: body[key] for key in _LEGACY_CARD_KEYS if key in body}
    return {"type": "raw", "data": fields} if fields else None


def _is_card(card: Any) -> bool:
    if not isinstance(card, dict) or card.get("type") not in ("raw", "template"):
        return False
    data = card.get("data")
    if not isinstance(data, dict) or not data:
        return False
    if card["type"] == "template":
        return isinstance(data.get("template_id"), str) and bool(data["template_id"])
    return True


# --- what a card offers to click -------------------------------------------------------------------------


def find_buttons(card: dict[str, Any]) -> list[dict[str, Any]]:
    """Components of a card that call back: JSON 1.0 `value`, JSON 2.0 `behaviors[type=callback].value`,
    and form submit buttons. Each as {"tag", "name", "text", "value"} in document order."""
    found: list[dict[str, Any]] = []

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        value = _callback_value(node)
        if value is not None or node.get("form_action_type") == "submit":
            text = node.get("text")
            label = text.get("content") if isinstance(text, dict) else None
            found.append({"tag": node.get("tag"), "name": node.get("name"), "text": label, "value": value})
        for key, child in node.items():
            if key not in ("value", "behaviors", "text"):
                visit(child)

    visit(card)
    return found


def _callback_value(node: dict[str, Any]) -> dict[str, Any] | str | None:
    behaviors = node.get("behaviors")
    if isinstance(behaviors, list):
        for behavior in behaviors:
            if isinstance(behavior, dict) and behavior.get("type") == "callback":
                value = behavior.get("value")
                if isinstance(value, dict | str):
                    return value
    value = node.get("value")
    if isinstance(node.get("tag"), str) and isinstance(value, dict | str):
        return value
    return None
