"""Opening a webhook request: signature, replay window, decryption, token, envelope (feishu-protocol §1).

A pure function of (headers, raw body, clock), so the rules are tested without a server and the web
layer stays a thin adapter. Every refusal carries the HTTP status that tells Feishu the truth.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.feishu.crypto import (
    DecryptError,
    PayloadCipher,
    card_signature_v1,
    constant_time_equal,
    event_signature,
)
from bot.feishu.events import (
    CARD_ACTION_TRIGGER,
    INTERNAL_PREFIX,
    EventEnvelope,
    MalformedEvent,
    UrlVerification,
    parse_body,
)

TIMESTAMP_HEADER = "x-lark-request-timestamp"
NONCE_HEADER = "x-lark-request-nonce"
SIGNATURE_HEADER = "x-lark-signature"


class Rejected(Exception):
    """A request we refuse; `status` is the HTTP answer, `reason` is safe to log and to send back."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class WebhookSecrets:
    verification_token: str = field(repr=False)
    encrypt_key: str = field(repr=False)
    replay_window_seconds: int
    # Derived once from encrypt_key: the webhook is the hot path.
    cipher: PayloadCipher | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cipher = PayloadCipher(self.encrypt_key) if self.encrypt_key else None
        object.__setattr__(self, "cipher", cipher)


# No Feishu envelope nests a tenth as deep. The cap sits far below the limit of the JSON reader that
# reads a stored event back (pydantic's, about 200 levels), so whatever is acknowledged can be read again.
MAX_JSON_DEPTH = 64


def _not_json(constant: str) -> None:
    # Python's reader takes NaN and Infinity, which are not JSON: the stored copy would come back as
    # null, so what the handler read would differ from what was acknowledged. Feishu never sends them.
    raise ValueError(f"{constant} is not JSON")


def load_json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw, parse_constant=_not_json)
    except (ValueError, RecursionError):
        # RecursionError: a hostile body of deeply nested brackets.
        raise Rejected(400, "body is not valid JSON") from None
    if not isinstance(value, dict):
        raise Rejected(400, "body is not a JSON object")
    if not _nested_within(value, MAX_JSON_DEPTH):
        raise Rejected(400, f"body nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _nested_within(value: object, limit: int) -> bool:
    """Whether no container in `value` sits deeper than `limit` (iterative: no recursion to exhaust)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return False
                stack.append((child, depth + 1))
    return True


def open_event_request(
    headers: Mapping[str, str], body: bytes, secrets: WebhookSecrets, now: float
) -> UrlVerification | EventEnvelope:
    """Check and parse one POST to the event URL. Raises Rejected with the status to answer."""
    lowered = {name.lower(): value for name, value in headers.items()}
    cipher = secrets.cipher
    signed = SIGNATURE_HEADER in lowered
    if cipher is not None and signed:
        _verify_signature(lowered, body, secrets, now)

    payload = load_json_object(body)
    if "encrypt" in payload:
        if cipher is None:
            raise Rejected(400, "encrypted body but FEISHU_ENCRYPT_KEY is not set")
        payload = _decrypt(cipher, payload["encrypt"], signed)

    try:
        parsed, token = parse_body(payload)
    except MalformedEvent as error:
        if cipher is not None and not signed:
            raise Rejected(401, "missing signature") from None
        raise Rejected(400, f"malformed event: {error}") from None

    if cipher is not None and not signed and not isinstance(parsed, UrlVerification):
        # Only the URL challenge comes unsigned (both official SDKs skip its signature check).
        raise Rejected(401, "missing signature")
    if not constant_time_equal(token, secrets.verification_token):
        raise Rejected(403, "verification token does not match")
    if isinstance(parsed, EventEnvelope) and parsed.event_type.startswith(INTERNAL_PREFIX):
        # The bot's own events enter the inbox from inside only; from outside they are forgeries.
        raise Rejected(400, "malformed event: reserved event type")
    return parsed


def _verify_signature(headers: Mapping[str, str], body: bytes, secrets: WebhookSecrets, now: float) -> None:
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    nonce = headers.get(NONCE_HEADER, "")
    given = headers.get(SIGNATURE_HEADER, "")
    expected = event_signature(timestamp, nonce, secrets.encrypt_key, body)
    if not constant_time_equal(given.lower(), expected):
        raise Rejected(401, "signature does not match")
    # Checked after the signature so a forged timestamp cannot be used to probe our clock.
    _check_replay_window(timestamp, secrets, now)


def _check_replay_window(timestamp: str, secrets: WebhookSecrets, now: float) -> None:
    sent_at = request_time(timestamp)
    if sent_at is None:
        raise Rejected(401, "timestamp is neither Unix seconds nor a date")
    if abs(now - sent_at) > secrets.replay_window_seconds:
        raise Rejected(401, "timestamp outside the replay window")


_RFC850 = re.compile(r"^[A-Za-z]{3,9}, (\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) ([A-Z]{3})$")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Zones seen in Feishu's date headers: CST is China Standard Time there (UTC+8), never US Central.
_ZONES = {"CST": 8 * 3600, "GMT": 0, "UTC": 0}


def request_time(timestamp: str) -> float | None:
    """When a signed request says it was sent: Unix seconds (events, new-style callbacks), or, on real
    legacy card callbacks, an RFC 850 date in China time such as `Monday, 14-Nov-22 15:53:37 CST`
    (feishu-protocol §3.2). None if it is neither."""
    if timestamp.isdigit() and len(timestamp) <= 12:
        return float(timestamp)
    match = _RFC850.match(timestamp)
    if match is None or match[2].title() not in _MONTHS or match[7] not in _ZONES:
        return None
    day, year, hour, minute, second = (int(match[i]) for i in (1, 3, 4, 5, 6))
    try:
        local = datetime(
            2000 + year, _MONTHS.index(match[2].title()) + 1, day, hour, minute, second, tzinfo=UTC
        )
    except ValueError:
        return None
    return local.timestamp() - _ZONES[match[7]]


# An unsigned encrypted body can only be the URL challenge, which is small.
_MAX_UNSIGNED_ENCRYPTED = 2048


def _decrypt(cipher: PayloadCipher, encrypted: object, signed: bool) -> dict[str, Any]:
    # An unsigned body that fails to decrypt gets the same 401 as one that decrypts to a non-challenge:
    # distinct answers would make this endpoint a padding oracle for captured ciphertexts. Capping what
    # we decrypt unsigned also leaves next to nothing to learn from timing.
    failure = Rejected(400, "cannot decrypt body") if signed else Rejected(401, "missing signature")
    if not isinstance(encrypted, str) or (not signed and len(encrypted) > _MAX_UNSIGNED_ENCRYPTED):
        raise failure
    try:
        plaintext = cipher.decrypt(encrypted)
    except DecryptError:
        raise failure from None
    try:
        return load_json_object(plaintext)
    except Rejected:
        raise failure from None


def open_card_request(
    headers: Mapping[str, str], body: bytes, secrets: WebhookSecrets, now: float
) -> UrlVerification | EventEnvelope:
    """Check and parse one POST to the legacy card callback URL (feishu-protocol §3.2).

    Legacy callbacks are signed with SHA-1 over timestamp + nonce + Verification Token + body, and
    carry a flat body; they become the same `card.action.trigger` envelope as new-style callbacks, so
    nothing after this point knows which style a click came in.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    signed = SIGNATURE_HEADER in lowered
    if signed:
        # Verified before anything is decrypted or parsed: an unsigned body gets nothing but a 401.
        timestamp = lowered.get(TIMESTAMP_HEADER, "")
        expected = card_signature_v1(
            timestamp, lowered.get(NONCE_HEADER, ""), secrets.verification_token, body
        )
        if not constant_time_equal(lowered[SIGNATURE_HEADER].lower(), expected):
            raise Rejected(401, "signature does not match")
        _check_replay_window(timestamp, secrets, now)
    payload = load_json_object(body)
    if "encrypt" in payload:
        cipher = secrets.cipher
        if cipher is None:
            raise Rejected(400, "encrypted body but FEISHU_ENCRYPT_KEY is not set")
        payload = _decrypt(cipher, payload["encrypt"], signed)
    if payload.get("type") == "url_verification":
        try:
            parsed, token = parse_body(payload)
        except MalformedEvent as error:
            raise Rejected(400, f"malformed challenge: {error}") from None
        if not constant_time_equal(token, secrets.verification_token):
            raise Rejected(403, "verification token does not match")
        return parsed
    if not signed:
        raise Rejected(401, "missing signature")
    try:
        flat = _LegacyCardAction.model_validate(payload)
    except ValidationError:
        raise Rejected(400, "malformed card callback") from None
    return EventEnvelope(
        schema_version="1.0",
        # Legacy callbacks carry no event id; the body (with its one-time update token) identifies one.
        event_id="legacy-" + hashlib.sha256(body).hexdigest()[:32],
        event_type=CARD_ACTION_TRIGGER,
        tenant_key=flat.tenant_key,
        event={
            "operator": {"open_id": flat.open_id, "tenant_key": flat.tenant_key, "user_id": flat.user_id},
            "token": flat.token,
            "action": flat.action,
            "host": "im_message",
            "context": {"open_message_id": flat.open_message_id, "open_chat_id": flat.open_chat_id},
        },
    )


class _LegacyCardAction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    open_id: str = Field(min_length=1, max_length=256)
    user_id: str | None = None
    tenant_key: str = ""
    open_message_id: str = Field(default="", max_length=256)
    open_chat_id: str = Field(default="", max_length=256)
    token: str = ""
    action: dict[str, Any] = {}


def open_pushed_event(payload: bytes) -> EventEnvelope:
    """Parse an envelope that came down the long connection: plaintext JSON, no signature, no token
    check (the socket was opened with the app's own credentials). Raises Rejected as the webhook does."""
    try:
        parsed, _ = parse_body(load_json_object(payload))
    except MalformedEvent as error:
        raise Rejected(400, f"malformed event: {error}") from None
    if isinstance(parsed, UrlVerification):
        raise Rejected(400, "a URL challenge has no place on the long connection")
    if parsed.event_type.startswith(INTERNAL_PREFIX):
        raise Rejected(400, "malformed event: reserved event type")
    return parsed
