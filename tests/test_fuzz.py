"""Property-based fuzzing of the parsers that read hostile input, each input with a time budget.

Hypothesis' `deadline` is the per-input budget: an input that takes longer fails the test (and is shrunk
to the smallest such input), so the next pattern that backtracks is caught here, not in production.
The budgets are far above what linear code needs on these sizes and far below what quadratic code takes.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.feishu.crypto import PayloadCipher, event_signature
from bot.feishu.events import EventEnvelope, Mention, UserId
from bot.feishu.webhook import Rejected, WebhookSecrets, open_card_request, open_event_request
from handlers.invite.grammar import read_invite
from handlers.messages import message_text

BUDGET = timedelta(milliseconds=750)
# 150 examples per test in CI (about 3 s for all four); FUZZ_EXAMPLES=3000 for a longer hunt by hand.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=BUDGET,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# The characters every pattern of the grammar gives a meaning to, so that generated text is dense with
# near-matches (the inputs on which a backtracking pattern is slowest), plus some of everything else.
MEANINGFUL = "[]()@_.-+%/:0123456789 \t\nabcxyzAZ所有人"
hostile_text = st.one_of(
    st.text(st.sampled_from(MEANINGFUL), max_size=30_000),
    st.lists(
        st.sampled_from(
            ["[", "](", "[a](", "@_user_1", "@_all", "a@b.", "123", "-", " ", "https://vc.feishu.cn/j/", "(("]
        ),
        max_size=6_000,
    ).map("".join),
    # Long runs of one short unit: what makes a backtracking pattern scan the rest of the text from
    # every position. Hypothesis favours small numbers, so the length is drawn from a range of long ones.
    st.builds(
        lambda unit, n: unit * n,
        st.text(st.sampled_from(MEANINGFUL), min_size=1, max_size=4),
        st.integers(10_000, 30_000),
    ),
    st.text(max_size=2_000),
)


@FUZZ
@given(text=hostile_text)
def test_the_invite_grammar_answers_every_text_within_budget(text: str) -> None:
    mentions = [Mention(key=f"@_user_{n}", id=UserId(open_id=f"ou_{n}")) for n in range(1, 30)]
    request = read_invite(text, mentions, sender_open_id="ou_sender", bot_open_id="ou_bot")
    assert request.meeting_no is None or (len(request.meeting_no) == 9 and request.meeting_no.isdigit())
    assert all(open_id.startswith("ou_") for open_id in request.open_ids)


json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=60,
)


def nested(depth: int, opener: str) -> str:
    closer = {"[": "]", "{": "}"}[opener]
    inner = '{"a":' * depth + "1" + "}" * depth if opener == "{" else opener * depth + closer * depth
    return inner


post_nodes = st.lists(
    st.lists(
        st.fixed_dictionaries(
            {"tag": st.sampled_from(["text", "a", "at", "code_block", "img", "x"])},
            optional={
                "text": hostile_text,
                "href": st.text(max_size=200),
                "user_id": st.sampled_from(["@_user_1", "all", "@_all", "x"]),
            },
        ),
        max_size=20,
    ),
    max_size=20,
)


@FUZZ
@given(
    content=post_nodes.map(lambda nodes: json.dumps({"title": "", "content": nodes}))
    | json_value.map(json.dumps)
)
def test_reading_a_message_body_is_total_and_within_budget(content: str) -> None:
    for message_type in ("text", "post"):
        text = message_text(message_type, content)
        assert text is None or isinstance(text, str)


SECRETS = WebhookSecrets(verification_token="vt", encrypt_key="ek", replay_window_seconds=300)
NOW = 1_800_000_000.0


def signed(body: bytes, timestamp: str = str(int(NOW))) -> dict[str, str]:
    return {
        "X-Lark-Request-Timestamp": timestamp,
        "X-Lark-Request-Nonce": "n",
        "X-Lark-Signature": event_signature(timestamp, "n", "ek", body),
    }


def envelope_of(payload: Any) -> dict[str, Any]:
    return {
        "schema": "2.0",
        "header": {"event_id": "e", "event_type": "im.message.receive_v1", "token": "vt"},
        "event": payload,
    }


bodies = st.one_of(
    st.binary(max_size=4_000),
    json_value.map(lambda value: json.dumps(value).encode()),
    json_value.map(lambda value: json.dumps(envelope_of(value)).encode()),
    st.integers(1, 2_000).map(
        lambda depth: json.dumps(envelope_of(None)).replace("null", nested(depth, "[")).encode()
    ),
    st.integers(1, 2_000).map(
        lambda depth: json.dumps(envelope_of(None)).replace("null", nested(depth, "{")).encode()
    ),
)


def opened_or_refused(opener: Any, headers: dict[str, str], body: bytes) -> None:
    """The webhook's contract: a parsed request, or a refusal with a 4xx; nothing else, ever."""
    try:
        opened = opener(headers, body, SECRETS, NOW)
    except Rejected as rejected:
        status = rejected.status
        assert 400 <= status < 500
        return
    if isinstance(opened, EventEnvelope):
        # Whatever is let in must be readable again by the inbox worker, which parses the stored copy.
        assert EventEnvelope.model_validate_json(opened.model_dump_json()) == opened


@FUZZ
@given(body=bodies, sign=st.booleans(), encrypt=st.booleans())
def test_the_event_webhook_opens_or_refuses_every_request_within_budget(
    body: bytes, sign: bool, encrypt: bool
) -> None:
    if encrypt:
        body = json.dumps({"encrypt": PayloadCipher("ek").encrypt(body)}).encode()
    opened_or_refused(open_event_request, signed(body) if sign else {}, body)


@FUZZ
@given(
    body=bodies,
    headers=st.dictionaries(
        st.sampled_from(["X-Lark-Request-Timestamp", "X-Lark-Request-Nonce", "X-Lark-Signature", "X-Other"]),
        st.text(max_size=80),
    ),
)
def test_both_webhooks_survive_arbitrary_headers(body: bytes, headers: dict[str, str]) -> None:
    opened_or_refused(open_event_request, headers, body)
    opened_or_refused(open_card_request, headers, body)
