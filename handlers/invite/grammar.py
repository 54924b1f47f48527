"""Reading `/invite [MEETING] @user ... [email ...]`: one place that knows the grammar.

The reader is total: any text and any mentions give an `InviteRequest`, never an exception. It never
lists the bot or the sender among the people to invite (Feishu refuses a self-invite with 122005).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.feishu.events import Mention, is_open_id

# Feishu's placeholders for mentions in message text: `@_user_1`, `@_user_2`, ... and `@_all`.
_PLACEHOLDER = re.compile(r"@_user_\d+")
# Feishu turns a real @all (one the group's own rule let the sender make) into the `@_all` placeholder.
# Text typed as "@all" or "@所有人" is not that mention and must not bypass the rule; neither is a
# placeholder-looking run inside an address such as ops@_all.example.com.
_ALL = re.compile(r"(?<![\w.+-])@_all(?![\w.@-])")
_LINK = re.compile(r"https?://vc\.(?:feishu\.cn|larksuite\.com)/j/(\d{9})(?!\d)", re.IGNORECASE)
# Nine digits, optionally grouped 3-3-3 by spaces or dashes; not part of a longer number.
# Not glued to letters either: a doc link's `AbC123456789Def` is not a meeting.
_NUMBER = re.compile(r"(?<![\w-])(\d{3})[ \t-]?(\d{3})[ \t-]?(\d{3})(?![\w-])")
# RFC 5321 caps an address at 254 characters; longer "addresses" are not looked up.
_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}(?![\w-]|\.\w)"
)
# A markdown link as Feishu renders links in received text: [label](url). Neither part may contain the
# bracket that opens it: a label scan then stops at the next `[` and an address scan at the next `(`,
# so each character is looked at a bounded number of times (`[` * 32,000 took 6 s with `[^\]]*`).
_MARKDOWN_LINK = re.compile(r"\[([^\[\]]*)\]\(([^()\s]+)\)")

# More addresses than anyone types; the lookup goes 50 at a time (batch_get_id's limit).
MAX_EMAILS = 200


@dataclass(frozen=True)
class InviteRequest:
    """What an /invite asks for, before anything is looked up."""

    meeting_no: str | None
    open_ids: tuple[str, ...]
    emails: tuple[str, ...]
    everyone: bool
    # A meeting already chosen by its id (a button on the "which of your meetings?" card): wins over all.
    meeting_id: str | None = None

    @property
    def names_anyone(self) -> bool:
        return bool(self.open_ids or self.emails or self.everyone)


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value for value in values if value))


def meeting_number(text: str) -> str | None:
    """The 9-digit meeting number from a vc link or a number anywhere in `text`."""
    link = _LINK.search(text)
    if link is not None:
        return link.group(1)
    number = _NUMBER.search(text)
    return "".join(number.groups()) if number is not None else None


def read_invite(
    text: str, mentions: Iterable[Mention], *, sender_open_id: str, bot_open_id: str
) -> InviteRequest:
    """Parse the arguments of /invite (the text after the command word, placeholders intact)."""
    by_key = {mention.key: mention for mention in mentions}
    everyone = bool(_ALL.search(text)) or "@_all" in by_key
    open_ids = []
    for key in _PLACEHOLDER.findall(text):
        mention = by_key.get(key)
        if mention is not None and is_open_id(mention.id.open_id):
            open_ids.append(mention.id.open_id)
    excluded = {sender_open_id, bot_open_id}
    # Links first (their digits are the meeting), then the rest with placeholders and e-mails removed,
    # so neither a placeholder's digits nor an address's can pass for a meeting number.
    unlinked = _MARKDOWN_LINK.sub(lambda match: f" {match.group(1)} {match.group(2)} ", text)
    emails = _unique(address.lower() for address in _EMAIL.findall(_PLACEHOLDER.sub(" ", unlinked)))
    bare = _EMAIL.sub(" ", _PLACEHOLDER.sub(" ", unlinked))
    return InviteRequest(
        meeting_no=meeting_number(bare),
        open_ids=_unique(open_id for open_id in open_ids if open_id not in excluded),
        emails=emails[:MAX_EMAILS],
        everyone=everyone,
    )
