"""The authorization prompt and its after-state, as cards.

Ephemeral cards (only one person sees them) do not take per-component i18n (Feishu's multilingual card
page says so), so the private prompt carries both languages in its text; the direct-message and public
variants are ordinary JSON 2.0 cards with i18n.
"""

from __future__ import annotations

from typing import Any

from handlers.cards import Card, card, literal, markdown
from handlers.i18n import Text

PROMPT_TITLE = Text("需要你的授权", "Your authorization is needed")
PROMPT_BODY = Text(
    "我需要以你的身份邀请参会人（飞书只允许会议中的人发出邀请）。点击下面的按钮授权一次即可，之后我会自动保持授权，"
    "最长一年。授权完成后，你刚才的命令会自动继续，不用重新输入。",
    "I need to invite people as you (Feishu only lets someone in the meeting invite). Authorize once with "
    "the button below; I keep the authorization fresh for up to a year. Your command continues by itself "
    "afterwards: no need to type it again.",
)
BUTTON = Text("授权", "Authorize")
LINK_NOTE = Text("链接 10 分钟内有效，只能由你本人使用。", "The link works for 10 minutes, and only for you.")


def device_note(minutes: int, scopes: tuple[str, ...]) -> Text:
    """Under a device authorization's button: how long it works, and what it asks for."""
    asked = ", ".join(literal(scope, 80) for scope in scopes)
    return Text(
        f"在飞书中打开链接并同意即可，{minutes} 分钟内有效，只能由你本人使用。请求的权限：{asked}",
        f"Open the link in Feishu and approve; it works for {minutes} minutes, only for you. Asks: {asked}",
    )


DEVICE_ENDED = {
    "denied": Text(
        "授权已被拒绝。需要时再发送命令即可重新授权。",
        "The authorization was declined. Send the command again to retry.",
    ),
    "expired": Text(
        "授权链接已过期。再发送一次命令即可获得新链接。",
        "The authorization link expired. Send the command again for a new one.",
    ),
    "wrong_user": Text(
        "链接被另一个账号打开并同意了，这次授权没有保存。请用你自己的账号打开。",
        "Another account approved the link, so nothing was kept. Open it with your own account.",
    ),
    "replaced": Text("这个授权请求已被更新的请求取代。", "A newer authorization request replaced this one."),
}


def device_ended_card(kind: str) -> Card:
    text = DEVICE_ENDED[kind]
    return card(Text("授权未完成", "Not authorized"), [markdown(text)], template="grey", summary=text)


def ephemeral_device_ended_card(kind: str) -> Card:
    text = DEVICE_ENDED[kind]
    return {
        "config": {"wide_screen_mode": True},
        "header": {
            "template": "grey",
            "title": {"tag": "plain_text", "content": "授权未完成 · Not authorized"},
        },
        "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": text.both()}}],
    }


AUTHORIZED_TITLE = Text("已授权", "Authorized")


def authorized_text(display_name: str, until: str) -> Text:
    # A display name is whatever the user typed into their profile: shown inert, never as markup.
    name = literal(display_name, 60)
    return Text(
        f"✅ {name} 已授权，有效期至 {until}。发送 /logout 可随时取消。",
        f"✅ {name} is authorized until {until}. Send /logout to revoke it at any time.",
    )


def prompt_card(url: str, *, missing_scopes: tuple[str, ...] = (), note: Text = LINK_NOTE) -> Card:
    """JSON 2.0 prompt with an open_url button, for a direct message or a public reply."""
    elements: list[dict[str, Any]] = [markdown(PROMPT_BODY)]
    if missing_scopes:
        scopes = ", ".join(f"`{literal(scope, 80)}`" for scope in missing_scopes)
        elements.append(markdown(Text(f"还需要这些权限：{scopes}", f"Also needed: {scopes}")))
    elements.append(
        {
            "tag": "button",
            "type": "primary",
            "text": {"tag": "plain_text", "content": BUTTON.en_us, "i18n_content": vars(BUTTON)},
            "behaviors": [{"type": "open_url", "default_url": url}],
        }
    )
    elements.append(markdown(note))
    return card(PROMPT_TITLE, elements, template="orange", summary=PROMPT_TITLE)


def ephemeral_prompt_card(url: str, *, missing_scopes: tuple[str, ...] = (), note: Text = LINK_NOTE) -> Card:
    """JSON 1.0 prompt, both languages in the text, for `ephemeral/v1/send`."""
    body = f"{PROMPT_BODY.zh_cn}\n{PROMPT_BODY.en_us}"
    if missing_scopes:
        body += "\n" + ", ".join(literal(scope, 80) for scope in missing_scopes)
    return {
        "config": {"wide_screen_mode": True},
        "header": {
            "template": "orange",
            "title": {"tag": "plain_text", "content": f"{PROMPT_TITLE.zh_cn} · {PROMPT_TITLE.en_us}"},
        },
        "elements": [
            {"tag": "div", "text": {"tag": "lark_md", "content": body}},
            {
                "tag": "action",
                "actions": [
                    {
                        "tag": "button",
                        "type": "primary",
                        "text": {"tag": "plain_text", "content": f"{BUTTON.zh_cn} · {BUTTON.en_us}"},
                        "url": url,
                    }
                ],
            },
            {
                "tag": "note",
                "elements": [{"tag": "plain_text", "content": f"{note.zh_cn} {note.en_us}"}],
            },
        ],
    }


def authorized_card(name: str, until: str) -> Card:
    return card(
        AUTHORIZED_TITLE, [markdown(authorized_text(name, until))], template="green", summary=AUTHORIZED_TITLE
    )


def ephemeral_authorized_card(name: str, until: str) -> Card:
    text = authorized_text(name, until)
    return {
        "config": {"wide_screen_mode": True},
        "header": {
            "template": "green",
            "title": {"tag": "plain_text", "content": f"{AUTHORIZED_TITLE.zh_cn} · {AUTHORIZED_TITLE.en_us}"},
        },
        "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": text.both()}}],
    }


def logged_out_card(was_authorized: bool) -> Card:
    text = (
        Text(
            "已删除你的授权。需要时我会再次请你授权。",
            "Your authorization is deleted. I will ask again when needed.",
        )
        if was_authorized
        else Text("你还没有授权过，无需注销。", "You had not authorized me, so there was nothing to forget.")
    )
    return card(Text("已注销", "Logged out"), [markdown(text)], template="grey")
