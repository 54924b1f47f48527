"""The /invite reader: the forms it understands, and properties over arbitrary text and mentions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.feishu.events import Mention, MessageReceiveEvent, UserId
from bot.feishu.models import Meeting
from handlers.i18n import Text
from handlers.invite.cards import Outcome, result_card
from handlers.invite.grammar import read_invite
from handlers.messages import message_text, read_message

SENDER = "ou_sender"
BOT = "ou_bot"


def mentions(*open_ids: str) -> list[Mention]:
    return [Mention(key=f"@_user_{n}", id=UserId(open_id=open_id)) for n, open_id in enumerate(open_ids, 1)]


@pytest.mark.parametrize(
    ("text", "meeting_no"),
    [
        ("123456789 @_user_1", "123456789"),
        ("@_user_1 123 456 789", "123456789"),
        ("123-456-789 @_user_1", "123456789"),
        ("https://vc.feishu.cn/j/987654321 @_user_1", "987654321"),
        (
            "[https://vc.larksuite.com/j/987654321](https://vc.larksuite.com/j/987654321) @_user_1",
            "987654321",
        ),
        ("@_user_1", None),
        ("1234567890 @_user_1", None),  # ten digits: not a meeting number
        ("12345678 @_user_1", None),
    ],
)
def test_meeting_forms(text: str, meeting_no: str | None) -> None:
    assert (
        read_invite(text, mentions("ou_a"), sender_open_id=SENDER, bot_open_id=BOT).meeting_no == meeting_no
    )


def test_mentions_map_by_key_drop_sender_bot_and_duplicates() -> None:
    request = read_invite(
        "@_user_2 @_user_1 @_user_3 @_user_1 @_user_4 @_user_9",
        mentions("ou_a", "ou_b", SENDER, BOT),
        sender_open_id=SENDER,
        bot_open_id=BOT,
    )
    assert request.open_ids == ("ou_b", "ou_a")


def test_emails_and_all() -> None:
    request = read_invite(
        "123456789 Bob@Example.com carol@example.org bob@example.com @_all",
        [],
        sender_open_id=SENDER,
        bot_open_id=BOT,
    )
    assert request.emails == ("bob@example.com", "carol@example.org")
    assert request.everyone
    assert request.meeting_no == "123456789"


def test_digits_inside_an_email_are_not_a_meeting() -> None:
    request = read_invite("123456789@example.com", [], sender_open_id=SENDER, bot_open_id=BOT)
    assert request.meeting_no is None
    assert request.emails == ("123456789@example.com",)


open_ids = st.sampled_from(["ou_a", "ou_b", "ou_c", SENDER, BOT, ""])


@settings(max_examples=400, deadline=None)
@given(
    text=st.text(st.characters(codec=None), max_size=200)
    | st.lists(
        st.sampled_from(["@_user_1", "@_user_2", "@_user_3", "@_all", "123", "456 789", "x@y.cn", " ", "-"])
    ).map(" ".join),
    ids=st.lists(open_ids, max_size=5),
)
def test_reader_is_total_and_never_invites_the_sender_or_the_bot(text: str, ids: list[str]) -> None:
    request = read_invite(text, mentions(*ids), sender_open_id=SENDER, bot_open_id=BOT)
    assert SENDER not in request.open_ids
    assert BOT not in request.open_ids
    assert "" not in request.open_ids
    assert len(set(request.open_ids)) == len(request.open_ids)
    assert request.meeting_no is None or (len(request.meeting_no) == 9 and request.meeting_no.isdigit())


def card_size(card: dict[str, object]) -> int:
    return len(json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode())


def count_elements(node: object) -> int:
    if isinstance(node, dict):
        own = 1 if "tag" in node else 0
        return own + sum(count_elements(value) for value in node.values())
    if isinstance(node, list):
        return sum(count_elements(item) for item in node)
    return 0


MEETING = Meeting(
    id="6911188411932033028", topic="Weekly <at id=all></at> *sync*", meeting_no="123456789", status=2
)


@pytest.mark.parametrize("invited", [0, 1, 150, 300])
def test_result_card_stays_within_feishus_limits(invited: int) -> None:
    people = [f"ou_{n:032d}" for n in range(300)]
    reasons = [Text("对方正忙。", "That person is busy."), Text("会议已满。", "The meeting is full.")]
    outcomes = [
        Outcome(open_id=open_id, invited=True) if n < invited else Outcome(open_id, False, reasons[n % 2])
        for n, open_id in enumerate(people)
    ]
    card = result_card(MEETING, outcomes)
    assert card_size(card) < 30 * 1024
    assert count_elements(card) < 200
    text = json.dumps(card, ensure_ascii=False)
    assert "zh_cn" in text
    assert "en_us" in text
    assert "<at id=all>" not in text  # a meeting topic cannot ping the whole group
    failed = 300 - invited
    for open_id in people[invited:]:
        assert f"<at id={open_id}></at>" in text  # every failure named
    if failed:
        assert card["header"]["template"] == ("red" if invited == 0 else "orange")
    else:
        assert card["header"]["template"] == "green"


def test_removing_the_bots_mention_keeps_the_tenth_and_later_placeholders() -> None:
    people = [f"ou_p{n:02d}" for n in range(2, 13)]
    event = MessageReceiveEvent.model_validate(
        {
            "sender": {"sender_id": {"open_id": SENDER}, "sender_type": "user"},
            "message": {
                "message_id": "om_1",
                "chat_id": "oc_1",
                "chat_type": "group",
                "message_type": "text",
                "content": json.dumps(
                    {"text": "@_user_1 /invite 123456789 " + " ".join(f"@_user_{n}" for n in range(2, 13))}
                ),
                "mentions": [{"key": "@_user_1", "id": {"open_id": BOT}}]
                + [{"key": f"@_user_{n}", "id": {"open_id": people[n - 2]}} for n in range(2, 13)],
            },
        }
    )
    message = read_message(event, BOT, tenant_key="tenant")
    assert message is not None
    assert message.mentioned_bot
    command, _, args = message.text.partition(" ")
    assert command == "/invite"
    request = read_invite(args, message.mentions, sender_open_id=SENDER, bot_open_id=BOT)
    assert request.open_ids == tuple(people)


def test_a_post_link_counts_by_its_address_not_only_its_label() -> None:
    content = {
        "title": "",
        "content": [[{"tag": "a", "text": "join", "href": "https://vc.feishu.cn/j/123456789"}]],
    }
    text = message_text("post", json.dumps(content))
    assert text is not None
    assert read_invite(text, [], sender_open_id=SENDER, bot_open_id=BOT).meeting_no == "123456789"


@pytest.mark.parametrize(
    "wrap",
    [
        lambda post: post,
        lambda post: {"zh_cn": post},
        lambda post: {"en_us": post, "zh_cn": {"title": "", "content": []}},
        lambda post: {"post": {"zh_cn": post}},
    ],
    ids=["plain", "language", "first-language", "post-and-language"],
)
def test_a_post_reads_the_same_in_every_wrapper_it_arrives_in(wrap: Any) -> None:
    post = {
        "title": "",
        "content": [
            [
                {"tag": "text", "text": "/invite 123456789 "},
                {"tag": "at", "user_id": "@_user_1", "user_name": ""},
            ],
            [],
            [{"tag": "img", "image_key": "img_v3_x", "width": 384, "height": 192}],
        ],
    }
    assert message_text("post", json.dumps(wrap(post))) == "/invite 123456789  @_user_1 \n\n"


def test_a_post_nested_too_deep_is_not_read() -> None:
    post = {"title": "", "content": [[{"tag": "text", "text": "/help"}]]}
    assert message_text("post", json.dumps({"a": {"b": {"c": post}}})) is None


@pytest.mark.parametrize("text", ["ops@all.example.com", "me@all-hands.io", "x@All.com"])
def test_an_address_at_all_is_not_everyone(text: str) -> None:
    request = read_invite(text, [], sender_open_id=SENDER, bot_open_id=BOT)
    assert not request.everyone
    assert request.emails == (text.lower(),)


@pytest.mark.parametrize(
    "text", ["https://x.feishu.cn/docx/AbC123456789Def", "ou_123456789ab", "id_123456789"]
)
def test_nine_digits_glued_to_letters_are_not_a_meeting(text: str) -> None:
    assert read_invite(text, [], sender_open_id=SENDER, bot_open_id=BOT).meeting_no is None


def test_hostile_topics_and_addresses_stay_inert_and_small() -> None:
    topic = "Sync &lt;at id=all&gt;&lt;/at&gt; <at id=all></at>\n- [x](http://evil)\n---" + "x" * 5000
    meeting = Meeting(id="1", topic=topic, meeting_no="123456789", status=2)
    emails = [("a" * 60) + f"{n}@example.com" for n in range(200)]
    outcomes = [
        Outcome(open_id=None, invited=False, reason=Text("未知", "unknown"), email=email) for email in emails
    ]
    card = result_card(meeting, outcomes)
    text = json.dumps(card, ensure_ascii=False)
    assert "<at id=all>" not in text
    assert "&lt;" not in text  # an entity typed into a topic is no entity on the card either
    assert "＆lt;at id=all＆gt;" in text
    assert "[x](http" not in text
    assert "\\n-" not in text
    assert card_size(card) < 30 * 1024


def test_many_distinct_failure_reasons_stay_under_the_element_limit() -> None:
    outcomes = [
        Outcome(open_id=f"ou_{n:032d}", invited=False, reason=Text(f"错误 {n}", f"error {n} (log_id {n})"))
        for n in range(1100)
    ]
    card = result_card(MEETING, outcomes)
    assert count_elements(card) < 200
    assert card_size(card) < 30 * 1024
