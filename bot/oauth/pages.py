"""The small pages a browser sees after authorizing: what happened, in Chinese and English."""

from __future__ import annotations

from html import escape

from bot.oauth.flow import CallbackOutcome

_TEMPLATE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title_zh} · {title_en}</title>
<style>body{{font-family:system-ui,-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;max-width:36rem;
margin:3rem auto;padding:0 1rem;color:#1f2329}}h1{{font-size:1.3rem}}p{{line-height:1.6}}
.en{{color:#646a73}}</style></head>
<body><h1>{icon} {title_zh}</h1><p>{body_zh}</p><h1 class="en">{title_en}</h1><p class="en">{body_en}</p>
</body></html>
"""

_BACK_ZH = "现在可以关闭本页，回到飞书。"
_BACK_EN = "You can close this page and go back to Feishu."


def render(outcome: CallbackOutcome) -> str:
    who = escape(outcome.signed_in_as) or "?"
    pages = {
        "authorized": (
            "✅",
            "授权成功",
            f"{who}，你已授权邀请助手以你的身份邀请参会人。刚才的命令会自动继续。{_BACK_ZH}",
            "Authorized",
            f"{who}, the invite bot may now invite people on your behalf. The command you typed "
            f"continues by itself. {_BACK_EN}",
        ),
        "authorized_not_resumed": (
            "✅",
            "授权成功",
            f"{who}，你已授权邀请助手以你的身份邀请参会人。刚才的命令没能自动继续，"
            f"请回到飞书再发送一次。{_BACK_ZH}",
            "Authorized",
            f"{who}, the invite bot may now invite people on your behalf. The command you typed could "
            f"not be picked up again by itself: please send it once more in Feishu. {_BACK_EN}",
        ),
        "denied": (
            "✋",
            "你拒绝了授权",
            f"没有保存任何内容，命令不会执行。想继续时再发一次命令即可。{_BACK_ZH}",
            "You declined",
            f"Nothing was kept and the command will not run. Send it again whenever you want "
            f"to continue. {_BACK_EN}",
        ),
        "unknown_state": (
            "⌛",
            "链接已失效",
            f"这个授权链接已经用过或已过期（有效期 10 分钟）。请在飞书里重新发送命令以获取新链接。{_BACK_ZH}",
            "This link has expired",
            "This authorization link was already used or is older than 10 minutes. "
            f"Send the command again in Feishu to get a new one. {_BACK_EN}",
        ),
        "wrong_user": (
            "🚫",
            "这个链接属于别人",
            f"你以 {who} 的身份登录了飞书，但这个授权链接是发给另一个人的。"
            f"没有保存任何内容，链接仍然归原主人使用。请让链接的主人自己打开它。{_BACK_ZH}",
            "This link belongs to someone else",
            f"You signed in to Feishu as {who}, but this authorization "
            f"link was made for another person. Nothing was kept, and the link still works for its owner. "
            f"Ask them to open it themselves. {_BACK_EN}",
        ),
        "exchange_failed": (
            "⚠️",
            "授权没有完成",
            f"飞书没有接受这次授权（错误码 {outcome.code}，log_id {escape(outcome.log_id) or '-'}）。"
            f"请在飞书里重新发送命令再试一次。{_BACK_ZH}",
            "Authorization did not complete",
            f"Feishu did not accept this authorization (code {outcome.code}, "
            f"log_id {escape(outcome.log_id) or '-'}). Send the command again in Feishu to retry. {_BACK_EN}",
        ),
        "unavailable": (
            "⚠️",
            "暂时无法完成",
            f"服务暂时不可用，请稍后在飞书里重新发送命令。{_BACK_ZH}",
            "Not available right now",
            f"The bot could not finish this just now. Send the command again in "
            f"Feishu in a little while. {_BACK_EN}",
        ),
        "bad_request": (
            "⚠️",
            "链接不完整",
            f"这个地址缺少授权信息。请从飞书里的授权按钮打开。{_BACK_ZH}",
            "Incomplete link",
            f"This address lacks the authorization details. Open it from the Authorize "
            f"button in Feishu. {_BACK_EN}",
        ),
    }
    icon, title_zh, body_zh, title_en, body_en = pages[outcome.kind]
    return _TEMPLATE.format(icon=icon, title_zh=title_zh, body_zh=body_zh, title_en=title_en, body_en=body_en)
