"""PKCE (RFC 7636) with S256: the code is useless to anyone who intercepts it without the verifier."""

from __future__ import annotations

import base64
import hashlib
import secrets


def new_verifier() -> str:
    # 64 bytes of randomness → 86 characters of [A-Za-z0-9-_], inside the 43–128 that Feishu accepts.
    return secrets.token_urlsafe(64)


def challenge_s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
