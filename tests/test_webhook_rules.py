"""The webhook's opening rules as a pure function: every refusal has its status, any body is survived."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.feishu.crypto import PayloadCipher, card_signature_v1, event_signature
from bot.feishu.events import EventEnvelope, UrlVerification
from bot.feishu.webhook import Rejected, WebhookSecrets, open_card_request, open_event_request

TOKEN = "vt-secret-token"
KEY = "encrypt-key-for-tests"
NOW = 1_800_000_000.0
SIGNED = WebhookSecrets(verification_token=TOKEN, encrypt_key=KEY, replay_window_seconds=300)
PLAIN = WebhookSecrets(verification_token=TOKEN, encrypt_key="", replay_window_seconds=300)


def event_v2(token: str = TOKEN, **header: Any) -> dict[str, Any]:
    return {
        "schema": "2.0",
        "header": {
            "event_id": "ev1",
            "event_type": "im.message.receive_v1",
            "token": token,
            "create_time": "1",
            "app_id": "cli_x",
            "tenant_key": "tk",
            **header,
        },
        "event": {"message": {"message_id": "om_1", "chat_id": "oc_1"}, "sender": {}},
    }


def seal(payload: dict[str, Any], *, timestamp: float = NOW, key: str = KEY) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"encrypt": PayloadCipher(key).encrypt(json.dumps(payload).encode())}).encode()
    ts = str(int(timestamp))
    return {
        "X-Lark-Request-Timestamp": ts,
        "X-Lark-Request-Nonce": "n0nce",
        "X-Lark-Signature": event_signature(ts, "n0nce", key, body),
    }, body


def test_signed_encrypted_event_opens() -> None:
    headers, body = seal(event_v2())
    opened = open_event_request(headers, body, SIGNED, NOW)
    assert isinstance(opened, EventEnvelope)
    assert (opened.event_id, opened.event_type, opened.tenant_key) == ("ev1", "im.message.receive_v1", "tk")
    # The token is checked at the door and not carried into what gets stored.
    assert TOKEN not in opened.model_dump_json()


def test_header_names_are_case_insensitive() -> None:
    headers, body = seal(event_v2())
    shouted = {name.upper(): value for name, value in headers.items()}
    assert isinstance(open_event_request(shouted, body, SIGNED, NOW), EventEnvelope)


@pytest.mark.parametrize("header", ["X-Lark-Signature", "X-Lark-Request-Nonce", "X-Lark-Request-Timestamp"])
def test_tampered_signature_headers_are_401(header: str) -> None:
    headers, body = seal(event_v2())
    headers[header] = headers[header][:-1] + ("0" if headers[header][-1] != "0" else "1")
    with pytest.raises(Rejected) as refused:
        open_event_request(headers, body, SIGNED, NOW)
    assert refused.value.status == 401


def test_tampered_body_is_401() -> None:
    headers, body = seal(event_v2())
    with pytest.raises(Rejected) as refused:
        open_event_request(headers, body.replace(b'"}', b'A"}'), SIGNED, NOW)
    assert refused.value.status == 401


def test_unsigned_event_is_401_when_key_set() -> None:
    _, body = seal(event_v2())
    with pytest.raises(Rejected) as refused:
        open_event_request({}, body, SIGNED, NOW)
    assert refused.value.status == 401


@pytest.mark.parametrize(("skew", "accepted"), [(-299, True), (299, True), (-301, False), (301, False)])
def test_replay_window(skew: int, accepted: bool) -> None:
    headers, body = seal(event_v2(), timestamp=NOW + skew)
    if accepted:
        assert isinstance(open_event_request(headers, body, SIGNED, NOW), EventEnvelope)
    else:
        with pytest.raises(Rejected) as refused:
            open_event_request(headers, body, SIGNED, NOW)
        assert refused.value.status == 401


def test_wrong_token_is_403_plain_and_encrypted() -> None:
    with pytest.raises(Rejected) as refused:
        open_event_request({}, json.dumps(event_v2(token="nope")).encode(), PLAIN, NOW)
    assert refused.value.status == 403
    headers, body = seal(event_v2(token="nope"))
    with pytest.raises(Rejected) as refused:
        open_event_request(headers, body, SIGNED, NOW)
    assert refused.value.status == 403


def test_challenge_plain_and_encrypted_unsigned() -> None:
    challenge = {"challenge": "c-123", "token": TOKEN, "type": "url_verification"}
    opened = open_event_request({}, json.dumps(challenge).encode(), PLAIN, NOW)
    assert opened == UrlVerification(challenge="c-123", token=TOKEN)
    _, body = seal(challenge)
    # Feishu does not sign the URL challenge, so an unsigned encrypted one is answered.
    opened = open_event_request({}, body, SIGNED, NOW)
    assert isinstance(opened, UrlVerification)
    assert opened.challenge == "c-123"


def test_challenge_with_wrong_token_is_403() -> None:
    challenge = {"challenge": "c", "token": "other", "type": "url_verification"}
    with pytest.raises(Rejected) as refused:
        open_event_request({}, json.dumps(challenge).encode(), PLAIN, NOW)
    assert refused.value.status == 403


def test_schema_1_envelope() -> None:
    payload = {
        "uuid": "u-1",
        "ts": "1",
        "token": TOKEN,
        "type": "event_callback",
        "event": {"type": "p2p_chat_create", "app_id": "cli_x", "tenant_key": "tk"},
    }
    opened = open_event_request({}, json.dumps(payload).encode(), PLAIN, NOW)
    assert isinstance(opened, EventEnvelope)
    assert (opened.schema_version, opened.event_id, opened.event_type) == ("1.0", "u-1", "p2p_chat_create")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1,2]",
        b'"str"',
        b"{}",
        b'{"schema":"2.0"}',
        b"[" * 100_000,
        b'{"schema":"2.0","header":{"event_id":"e"},"event":{}}',
        b'{"encrypt":"zzz"}',
    ],
)
def test_malformed_bodies_are_400(body: bytes) -> None:
    with pytest.raises(Rejected) as refused:
        open_event_request({}, body, PLAIN, NOW)
    assert refused.value.status == 400


def test_unsigned_undecryptable_body_is_401_not_400() -> None:
    # Answering 400 here but 401 for a good padding would make the endpoint a padding oracle.
    with pytest.raises(Rejected) as refused:
        open_event_request({}, b'{"encrypt":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}', SIGNED, NOW)
    assert refused.value.status == 401


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=512),
        st.recursive(
            # Any code point, lone surrogates included (JSON can carry them as \\udXXX escapes).
            st.none() | st.booleans() | st.integers() | st.text(st.characters(codec=None), max_size=20),
            lambda children: (
                st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
            ),
            max_leaves=20,
        ).map(lambda value: json.dumps(value).encode()),
    ),
    signed=st.booleans(),
    headers=st.dictionaries(
        st.sampled_from(["X-Lark-Signature", "X-Lark-Request-Nonce", "X-Lark-Request-Timestamp"]),
        # What aiohttp hands over for arbitrary header bytes: surrogate-escaped text.
        st.binary(max_size=40).map(lambda raw: raw.decode("utf-8", "surrogateescape")),
    ),
)
def test_any_body_gets_a_verdict_never_a_crash(body: bytes, signed: bool, headers: dict[str, str]) -> None:
    secrets = SIGNED if signed else PLAIN
    verdict: object
    try:
        verdict = open_event_request(headers, body, secrets, NOW)
    except Rejected as refused:
        verdict = refused.status
    assert verdict in (400, 401, 403) or isinstance(verdict, (EventEnvelope, UrlVerification))


def test_the_bots_own_event_types_are_refused_from_outside() -> None:
    payload = event_v2(event_type="invite_bot.authorization_granted")
    with pytest.raises(Rejected) as refused:
        open_event_request({}, json.dumps(payload).encode(), PLAIN, NOW)
    assert refused.value.status == 400


def legacy(
    body: dict[str, Any], *, token: str = TOKEN, timestamp: float = NOW
) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    ts = str(int(timestamp))
    return {
        "X-Lark-Request-Timestamp": ts,
        "X-Lark-Request-Nonce": "n",
        "X-Lark-Signature": card_signature_v1(ts, "n", token, raw),
    }, raw


LEGACY_CLICK = {
    "open_id": "ou_clicker",
    "tenant_key": "tk",
    "open_message_id": "om_card",
    "open_chat_id": "oc_1",
    "token": "c-update",
    "action": {"value": {"action_id": "abc"}, "tag": "button"},
}


def test_legacy_click_becomes_the_same_card_action_envelope() -> None:
    headers, body = legacy(LEGACY_CLICK)
    opened = open_card_request(headers, body, PLAIN, NOW)
    assert isinstance(opened, EventEnvelope)
    assert opened.event_type == "card.action.trigger"
    assert opened.event["operator"]["open_id"] == "ou_clicker"
    assert opened.event["context"] == {"open_message_id": "om_card", "open_chat_id": "oc_1"}
    assert opened.event["action"]["value"] == {"action_id": "abc"}


@pytest.mark.parametrize("tamper", ["signature", "token", "body", "missing", "replay"])
def test_legacy_click_refused_without_a_good_sha1_signature(tamper: str) -> None:
    headers, body = legacy(
        LEGACY_CLICK,
        token="other" if tamper == "token" else TOKEN,
        timestamp=NOW - 400 if tamper == "replay" else NOW,
    )
    if tamper == "signature":
        headers["X-Lark-Signature"] = "0" * 40
    if tamper == "body":
        body = body.replace(b"ou_clicker", b"ou_mallory")
    if tamper == "missing":
        headers = {}
    with pytest.raises(Rejected) as refused:
        open_card_request(headers, body, PLAIN, NOW)
    assert refused.value.status == 401


def test_legacy_challenge_is_answered_after_the_token_check() -> None:
    challenge = json.dumps({"challenge": "c-1", "token": TOKEN, "type": "url_verification"}).encode()
    assert open_card_request({}, challenge, PLAIN, NOW) == UrlVerification(challenge="c-1", token=TOKEN)
    wrong = json.dumps({"challenge": "c-1", "token": "x", "type": "url_verification"}).encode()
    with pytest.raises(Rejected) as refused:
        open_card_request({}, wrong, PLAIN, NOW)
    assert refused.value.status == 403
