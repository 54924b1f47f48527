"""What an /invite answers: the result card, and the short cards that say what is missing.

The result card stays under Feishu's 30 KB and 200 elements for any number of invitees: mentions
are language-neutral and go in plain markdown (once, not once per language), successes beyond a few
dozen are summarised by count, and failures are grouped by reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from bot.feishu.models import Meeting
from handlers.cards import Card, Template, callback_button, card, literal, markdown, mention
from handlers.i18n import Text
from handlers.invite.reasons import ALREADY_IN

# Name people one by one up to this many successes; past it, a count reads better and stays small.
LISTED_SUCCESSES = 30
# Failures are always worth naming, but a card has 30 KB: at ~45 bytes a mention, 300 fit easily.
LISTED_FAILURES = 300


@dataclass(frozen=True)
class Outcome:
    """One person's result: an open_id (or, if it never resolved, the e-mail typed)."""

    open_id: str | None
    invited: bool
    reason: Text | None = None
    email: str | None = None
    # Feishu's code when a whole call was refused (for metrics; the reason is what people read).
    code: int = 0


class StoredOutcome(BaseModel):
    """An Outcome as kept in the store (a command's record, a retry button's state)."""

    open_id: str | None
    invited: bool
    reason: tuple[str, str] | None = None
    email: str | None = None

    @classmethod
    def of(cls, outcome: Outcome) -> StoredOutcome:
        reason = None if outcome.reason is None else (outcome.reason.zh_cn, outcome.reason.en_us)
        return cls(open_id=outcome.open_id, invited=outcome.invited, reason=reason, email=outcome.email)

    def restore(self) -> Outcome:
        reason = None if self.reason is None else Text(*self.reason)
        return Outcome(open_id=self.open_id, invited=self.invited, reason=reason, email=self.email)


# What a watch of the meeting saw of one person named on the card (handlers/invite/watch.py).
Presence = Literal["ringing", "joined", "left", "unanswered", "already"]


@dataclass(frozen=True)
class LiveView:
    """The meeting as last seen: each person's presence, whether the watch is over, and a note saying
    until when the card follows the meeting or as of when it stopped."""

    presence: Mapping[str, Presence]
    final: bool
    note: Text


_PRESENCE_LINES: tuple[tuple[Presence, Text], ...] = (
    ("joined", Text("✅ 已加入", "✅ Joined")),
    ("already", Text("☑️ 已在会议中", "☑️ Already in the meeting")),
    ("left", Text("↩️ 加入后已离开", "↩️ Joined, then left")),
    ("ringing", Text("🔔 正在呼叫", "🔔 Ringing")),
    ("unanswered", Text("⏳ 未接听", "⏳ Did not answer")),
)


def _plain(content: str) -> dict[str, object]:
    return {"tag": "markdown", "content": content}


def _who(outcome: Outcome) -> str:
    if outcome.open_id:
        return mention(outcome.open_id)
    return literal(outcome.email or "?")


def format_meeting_no(meeting_no: str) -> str:
    return f"{meeting_no[:3]} {meeting_no[3:6]} {meeting_no[6:]}" if len(meeting_no) == 9 else meeting_no


# Feishu's limits for a card (feishu-protocol §4.4), with room to spare for what Feishu adds when it renders.
MAX_CARD_BYTES = 28 * 1024
MAX_ELEMENTS = 190
# Distinct failure reasons shown as their own group; the rest are counted together.
MAX_REASON_GROUPS = 20


RETRY_BUTTON = Text("重试未成功的", "Retry failed")
MORE_BUTTON = Text("再邀请", "Invite more")
PEOPLE_FIELD = "people"


def result_card(
    meeting: Meeting,
    outcomes: Sequence[Outcome],
    followups: Sequence[dict[str, Any]] = (),
    live: LiveView | None = None,
) -> Card:
    """The result card, naming fewer people until it fits Feishu's size and element limits.

    `followups` are the elements of the buttons it offers (`Button.element`), shown below the rows.
    With `live`, the invited are shown by what they did (joined, ringing, did not answer).
    """
    listed = LISTED_FAILURES
    while True:
        built = (
            _result_card(meeting, outcomes, listed)
            if live is None
            else _live_card(meeting, outcomes, listed, live)
        )
        built["body"]["elements"].extend(followups)
        if listed == 0 or (_size(built) <= MAX_CARD_BYTES and _elements_in(built) <= MAX_ELEMENTS):
            return built
        listed //= 2


def _size(card_json: Card) -> int:
    return len(json.dumps(card_json, ensure_ascii=False, separators=(",", ":")).encode())


def _elements_in(node: object) -> int:
    if isinstance(node, dict):
        return (1 if "tag" in node else 0) + sum(_elements_in(value) for value in node.values())
    if isinstance(node, list):
        return sum(_elements_in(item) for item in node)
    return 0


def _is_there(outcome: Outcome) -> bool:
    """Not rung because the meeting already has them: not a failure."""
    return not outcome.invited and outcome.reason == ALREADY_IN


def _result_card(meeting: Meeting, outcomes: Sequence[Outcome], listed_failures: int) -> Card:
    invited = [outcome for outcome in outcomes if outcome.invited]
    there = [outcome for outcome in outcomes if _is_there(outcome)]
    failed = [outcome for outcome in outcomes if not outcome.invited and not _is_there(outcome)]
    template: Template
    if not failed and not invited:
        title, template = Text("都已在会议中", "Everyone is in the meeting already"), "green"
    elif not failed:
        title, template = Text(f"已邀请 {len(invited)} 人", f"Invited {len(invited)}"), "green"
    elif invited:
        title = Text(
            f"已邀请 {len(invited)} 人，{len(failed)} 人未成功", f"Invited {len(invited)}, {len(failed)} not"
        )
        template = "orange"
    else:
        title, template = Text(f"未能邀请（{len(failed)} 人）", f"Nobody invited ({len(failed)})"), "red"
    topic = literal(meeting.topic) or "—"
    number = format_meeting_no(meeting.meeting_no)
    elements: list[dict[str, object]] = [
        markdown(Text(f"会议：**{topic}** · {number}", f"Meeting: **{topic}** · {number}"))
    ]
    if invited:
        elements.append(markdown(Text(f"✅ 已邀请 {len(invited)} 人", f"✅ Invited {len(invited)}")))
        if len(invited) <= LISTED_SUCCESSES:
            elements.append(_plain(" ".join(_who(outcome) for outcome in invited)))
    if there:
        label = dict(_PRESENCE_LINES)["already"]
        elements.append(markdown(Text(f"{label.zh_cn}（{len(there)}）", f"{label.en_us} ({len(there)})")))
        if len(there) <= LISTED_SUCCESSES:
            elements.append(_plain(" ".join(_who(outcome) for outcome in there)))
    elements.extend(_failures(failed, listed_failures))
    return card(title, elements, template=template, summary=title)


def _meeting_line(meeting: Meeting) -> dict[str, object]:
    topic = literal(meeting.topic) or "—"
    number = format_meeting_no(meeting.meeting_no)
    return markdown(Text(f"会议：**{topic}** · {number}", f"Meeting: **{topic}** · {number}"))


def _live_card(meeting: Meeting, outcomes: Sequence[Outcome], listed: int, live: LiveView) -> Card:
    """The card while (and after) the bot follows the meeting: its title counts who came."""
    groups: dict[Presence, list[Outcome]] = {state: [] for state, _ in _PRESENCE_LINES}
    failed: list[Outcome] = []
    for outcome in outcomes:
        state = live.presence.get(outcome.open_id or "")
        if outcome.invited:
            groups[state if state is not None and state != "already" else "ringing"].append(outcome)
        elif state == "already" or _is_there(outcome):
            groups["already"].append(outcome)  # their invitation failed because they were in already
        else:
            failed.append(outcome)
    came = len(groups["joined"]) + len(groups["left"]) + len(groups["already"])
    total = came + len(groups["ringing"]) + len(groups["unanswered"])
    title = Text(f"已加入 {came}/{total} 人", f"{came} of {total} joined")
    template: Template = "blue"
    if live.final:
        template = "green" if came == total and not failed else "orange"
    elements: list[dict[str, object]] = [_meeting_line(meeting)]
    for state, label in _PRESENCE_LINES:
        members = groups[state]
        if members:
            elements.append(
                markdown(Text(f"{label.zh_cn}（{len(members)}）", f"{label.en_us} ({len(members)})"))
            )
            shown = members[:listed] if listed else []
            line = " ".join(_who(outcome) for outcome in shown)
            if len(shown) < len(members):
                line += f" … +{len(members) - len(shown)}"
            elements.append(_plain(line))
    elements.extend(_failures(failed, listed))
    elements.append(markdown(live.note))
    return card(title, elements, template=template, summary=title)


OTHER_REASONS = Text("其他原因", "Other reasons")


def _failures(failed: Sequence[Outcome], listed_failures: int) -> list[dict[str, object]]:
    groups: dict[Text, list[Outcome]] = {}
    for outcome in failed:
        reason = outcome.reason or Text("未知原因", "Unknown reason")
        if reason not in groups and len(groups) >= MAX_REASON_GROUPS:
            reason = OTHER_REASONS
        groups.setdefault(reason, []).append(outcome)
    elements: list[dict[str, object]] = []
    listed = 0
    for reason, members in groups.items():
        elements.append(
            markdown(Text(f"❌ {reason.zh_cn}（{len(members)}）", f"❌ {reason.en_us} ({len(members)})"))
        )
        shown = members[: max(0, listed_failures - listed)]
        listed += len(shown)
        line = " ".join(_who(outcome) for outcome in shown)
        if len(shown) < len(members):
            line += f" … +{len(members) - len(shown)}"
        elements.append(_plain(line))
    return elements


def _with_usage(title: Text, lead: Text, usage: str, examples: Sequence[str]) -> Card:
    """A short card: what is missing, then the command's usage and examples (from its declaration)."""
    body = Text(
        "\n".join([lead.zh_cn, *(f"例如 `{example}`" for example in examples)]),
        "\n".join([lead.en_us, *(f"e.g. `{example}`" for example in examples)]),
    )
    return card(title, [markdown(body), markdown(Text(f"`{usage}`", f"`{usage}`"))], template="orange")


MEETING_FIELD = "meeting"
SUBMIT_BUTTON = Text("邀请", "Invite")


def invite_more_form(action_id: str) -> dict[str, Any]:
    # Without `options`, Feishu offers everyone in the chat (multi_select_person, card JSON 2.0).
    picker = {
        "tag": "multi_select_person",
        "name": PEOPLE_FIELD,
        "width": "fill",
        "placeholder": {"tag": "plain_text", "content": MORE_BUTTON.en_us, "i18n_content": vars(MORE_BUTTON)},
    }
    submit = callback_button(MORE_BUTTON, action_id)
    submit.update({"name": "invite_more_submit", "form_action_type": "submit"})
    return {"tag": "form", "name": "invite_more", "elements": [picker, submit]}


def meeting_form(action_id: str) -> dict[str, Any]:
    """A field for the meeting number or link, whose submit runs the /invite that was waiting for it."""
    submit = callback_button(SUBMIT_BUTTON, action_id, "primary")
    submit.update({"name": "submit", "form_action_type": "submit"})
    field = {
        "tag": "input",
        "name": MEETING_FIELD,
        "width": "fill",
        "placeholder": {"tag": "plain_text", "content": "123 456 789 / https://vc.feishu.cn/j/123456789"},
    }
    return {"tag": "form", "name": "give_meeting", "elements": [field, submit]}


def need_meeting_card(usage: str, examples: Sequence[str], *, form: dict[str, Any] | None = None) -> Card:
    lead = Text(
        "请告诉我邀请到哪个会议：在下面填上 9 位会议号或会议链接，或在命令里写上。",
        "Tell me which meeting: fill in its 9-digit number or its link below, or put it in the command.",
    )
    built = _with_usage(Text("要邀请到哪个会议？", "Which meeting?"), lead, usage, examples)
    if form is not None:
        built["body"]["elements"].append(form)
    return built


def meeting_label(title: str, meeting_no: str) -> Text:
    """A meeting on a button: its title (as Feishu has it, shown inert) and its number."""
    name = literal(title, 40) if title else ""
    number = format_meeting_no(meeting_no) if meeting_no else ""
    both = f"{name} · {number}" if name and number else name or number
    return Text(both or "会议", both or "Meeting")


def choose_meeting_card(sender_open_id: str, count: int, buttons: list[dict[str, Any]]) -> Card:
    """The sender is in several meetings now: one button each; nobody is invited until they pick."""
    lead = Text(
        f"{mention(sender_open_id)} 你现在在 {count} 个会议中。要邀请到哪一个？（只有你能选）",
        f"{mention(sender_open_id)} you are in {count} meetings right now. Which one should they join? "
        "(only you can choose)",
    )
    return card(Text("要邀请到哪个会议？", "Which meeting?"), [markdown(lead), *buttons])


def not_in_progress_card(meeting_no: str) -> Card:
    number = format_meeting_no(meeting_no)
    body = Text(
        f"会议 {number} 现在没有在进行中（或你看不到它）。请确认会议号，并且你已在会议中。",
        f"Meeting {number} is not in progress (or not visible to you). Check the number and join it first.",
    )
    return card(Text("找不到进行中的会议", "No meeting in progress"), [markdown(body)], template="orange")


def nobody_card(usage: str, examples: Sequence[str]) -> Card:
    lead = Text(
        "请 @ 要邀请的人，或写上他们的邮箱，或用 @所有人 邀请本群成员（不能邀请你自己）。",
        "Mention the people to invite, type their e-mails, or use @all for everyone in this chat "
        "(you cannot invite yourself).",
    )
    return _with_usage(Text("要邀请谁？", "Whom should I invite?"), lead, usage, examples)


def too_many_card(count: int, ceiling: int) -> Card:
    body = Text(
        f"这会邀请 {count} 人，超过了一次最多 {ceiling} 人的上限。请分几次邀请，或联系管理员调高上限。",
        f"That would invite {count} people, more than the limit of {ceiling} at once. Invite in smaller "
        "groups, or ask an administrator to raise the limit.",
    )
    return card(Text("人数太多", "Too many people"), [markdown(body)], template="red")


def lookup_failed_card(reason: Text) -> Card:
    return card(Text("无法查询会议", "Could not look up the meeting"), [markdown(reason)], template="red")


CONFIRM_BUTTON = Text("确认邀请", "Confirm")
CANCEL_BUTTON = Text("取消", "Cancel")


def confirm_card(
    meeting: Meeting, count: int, sender_open_id: str, buttons: Sequence[dict[str, Any]]
) -> Card:
    topic = literal(meeting.topic) or "—"
    number = format_meeting_no(meeting.meeting_no)
    body = Text(
        f"{mention(sender_open_id)} 要邀请 **{count}** 人加入会议 **{topic}** · {number}。"
        "只有发起人可以确认。",
        f"{mention(sender_open_id)} is about to invite **{count}** people to **{topic}** · {number}. "
        "Only they can confirm.",
    )
    title = Text(f"确认邀请 {count} 人？", f"Invite {count} people?")
    elements: list[dict[str, object]] = [
        markdown(body),
        *buttons,
    ]
    return card(title, elements, template="yellow", summary=title)


def cancelled_card(count: int) -> Card:
    text = Text(f"已取消，没有邀请这 {count} 人。", f"Cancelled: none of the {count} people were invited.")
    return card(Text("已取消", "Cancelled"), [markdown(text)], template="grey")
