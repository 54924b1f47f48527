"""Why an invitation failed, in one sentence that says what to do: the one table of invite errors.

Codes come from the vc/v1 invite API (feishu-protocol §7.1 and the issue's seed table) and the token codes
of feishu-protocol §6.6. Meanings marked UNCONFIRMED are our best reading; unknown codes still show the code
and Feishu's log_id, so a user can quote them to support.
"""

from __future__ import annotations

from handlers.cards import literal
from handlers.i18n import Text

REASONS: dict[int, Text] = {
    121001: Text("飞书内部错误，请稍后再试。", "Feishu had an internal error; try again in a moment."),
    121002: Text("飞书不支持对这个会议这样操作。", "Feishu does not support this for this meeting."),
    121003: Text(
        "飞书认为请求参数有误，请检查会议号。", "Feishu refused the request; check the meeting number."
    ),
    121004: Text("找不到这个会议。", "That meeting could not be found."),
    121005: Text(
        "你没有邀请权限：请确认你在会议中，且已授权机器人。",
        "You may not invite to this meeting: make sure you are in it and have authorized me.",
    ),
    # UNCONFIRMED: 122001 and 122002 read as "meeting not in progress" and "meeting does not exist".
    122001: Text("会议已结束或尚未开始。", "The meeting has ended or not started yet."),
    122002: Text("这个会议不存在或已失效。", "That meeting does not exist any more."),
    122003: Text("请先加入会议，再邀请他人。", "Join the meeting first, then invite."),
    122005: Text("不能邀请你自己。", "You cannot invite yourself."),
    122006: Text("会议人数已满。", "The meeting is full."),
    122007: Text("对方正在其他通话中，稍后再试。", "That person is busy in another call; try again later."),
    122008: Text("会议已锁定，请让主持人解锁。", "The meeting is locked; ask the host to unlock it."),
    99991400: Text("飞书限流了，请稍后再试。", "Feishu is rate limiting; try again in a moment."),
    99991668: Text("你的授权已失效，请重新授权。", "Your authorization has expired; please authorize again."),
    99991677: Text("你的授权已过期，请重新授权。", "Your authorization has expired; please authorize again."),
    99991679: Text(
        "你还没有授予邀请权限，请重新授权。", "You have not granted the invite permission; authorize again."
    ),
}

# Per-invitee status 2 with no code: Feishu says only that this one person could not be invited.
NOT_INVITED = Text("飞书未能邀请此人。", "Feishu could not invite this person.")
# ...and the meeting lists them as in it: nothing failed, there is nobody to ring (feishu-protocol §7.1).
ALREADY_IN = Text("已在会议中。", "Already in the meeting.")
UNKNOWN_EMAIL = Text(
    "没有找到这个邮箱对应的飞书用户（或机器人看不到此人）。",
    "No Feishu user with this e-mail that I can see (use the account e-mail, not an alias).",
)
UNAVAILABLE = Text("暂时连不上飞书，请稍后再试。", "Feishu could not be reached; try again in a moment.")
# No answer came back for an invitation, so it may have gone through: never resent blindly.
UNCERTAIN = Text(
    "飞书没有答复，可能已经邀请成功；请在会议里确认后再决定是否重邀。",
    "Feishu did not answer, so they may have been invited: check the meeting before inviting again.",
)
NEEDS_AUTHORIZATION = Text(
    "你的授权中途失效，这些人没有被邀请；请重新授权后再邀请他们。",
    "Your authorization ended part-way, so these people were not invited: authorize again, then invite them.",
)
INTERRUPTED = Text(
    "邀请过程中机器人被中断，可能已经邀请成功；请在会议里确认。",
    "I was interrupted while inviting, so they may have been invited: check the meeting.",
)


def reason_for(code: int, log_id: str = "") -> Text:
    known = REASONS.get(code)
    if known is not None:
        return known
    if code < 0:
        return UNAVAILABLE
    # The log_id is what Feishu support traces a failure by; say it, so the user can quote it.
    trace = f" (log_id {literal(log_id, 80)})" if log_id else ""
    return Text(f"飞书返回错误 {code}{trace}。", f"Feishu answered with error {code}{trace}.")
