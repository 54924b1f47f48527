"""Sealing a body as Feishu sends it: JSON, optionally encrypted, optionally signed (with tampering
knobs for tests). Events and new-style callbacks sign with SHA-256 and the Encrypt Key; legacy card
callbacks with SHA-1 and the Verification Token; the caller passes the signer."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

from bot.feishu.crypto import PayloadCipher

# (timestamp, nonce, raw body) -> X-Lark-Signature
Signer = Callable[[str, str, bytes], str]


def seal_body(
    payload: dict[str, Any],
    *,
    cipher: PayloadCipher | None,
    sign: bool,
    signer: Signer,
    clock: Callable[[], float],
    timestamp: str | None = None,
    nonce: str | None = None,
    signature: str | None = None,
) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    if cipher is not None:
        raw = json.dumps({"encrypt": cipher.encrypt(raw)}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "feishu-emulator"}
    if sign or signature is not None:
        stamp = timestamp if timestamp is not None else str(int(clock()))
        once = nonce if nonce is not None else secrets.token_hex(8)
        headers["X-Lark-Request-Timestamp"] = stamp
        headers["X-Lark-Request-Nonce"] = once
        headers["X-Lark-Signature"] = signature if signature is not None else signer(stamp, once, raw)
    return headers, raw
