"""Sealing secrets at rest: AES-256-GCM under keys derived from BOT_SECRET_KEY.

Each sealed blob names the key it was sealed with (`kid`), so the secret can be rotated: the current key
seals, every listed key opens. The record's own address is bound in as associated data, so a sealed
token cannot be copied onto another user's record and still open.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_SALT = b"feishu-invite-bot"
_INFO = b"store-sealing/v1"
# The key id comes from the secret by its own HKDF label, never from the AES key itself: a published
# id then says nothing about the key that encrypts.
_KID_INFO = b"store-sealing/kid/v1"
_FORMAT = 1


class SealError(ValueError):
    """A sealed blob that cannot be opened: unknown key, tampered, or not ours."""


def _hkdf(secret: str, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info).derive(secret.encode())


def _derive(secret: str) -> tuple[str, str, AESGCM]:
    key = _hkdf(secret, _INFO)
    kid = _hkdf(secret, _KID_INFO).hex()[:12]
    # Records sealed before the id had its own label name the key by a hash of it; they still open,
    # and are sealed anew under the current id when next written.
    legacy_kid = hashlib.sha256(b"kid:" + key).hexdigest()[:12]
    return kid, legacy_kid, AESGCM(key)


class Sealer:
    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("no secret key to seal with")
        derived = [_derive(secret) for secret in secrets]
        self.current_kid, _, self._current = derived[0]
        self._by_kid: dict[str, AESGCM] = {}
        for kid, legacy_kid, cipher in reversed(derived):  # the current key wins any clash
            self._by_kid[legacy_kid] = cipher
            self._by_kid[kid] = cipher

    def seal(self, plaintext: bytes, *, context: str) -> bytes:
        nonce = os.urandom(12)
        ciphertext = self._current.encrypt(nonce, plaintext, context.encode())
        envelope = {
            "v": _FORMAT,
            "kid": self.current_kid,
            "n": base64.b64encode(nonce).decode(),
            "c": base64.b64encode(ciphertext).decode(),
        }
        return json.dumps(envelope, separators=(",", ":")).encode()

    def open(self, sealed: bytes, *, context: str) -> bytes:
        try:
            envelope = json.loads(sealed)
            cipher = self._by_kid[envelope["kid"]]
            nonce = base64.b64decode(envelope["n"], validate=True)
            ciphertext = base64.b64decode(envelope["c"], validate=True)
            return cipher.decrypt(nonce, ciphertext, context.encode())
        except KeyError:
            raise SealError("sealed under a key that is not configured") from None
        except (ValueError, TypeError, InvalidTag):
            raise SealError("sealed data is damaged or belongs elsewhere") from None

    def kid_of(self, sealed: bytes) -> str | None:
        try:
            kid = json.loads(sealed).get("kid")
        except (ValueError, AttributeError):
            return None
        return kid if isinstance(kid, str) else None
