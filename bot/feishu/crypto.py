"""Feishu's payload encryption and request signatures (feishu-protocol §1.3, §1.4, §3.2).

Encrypted bodies: AES-256-CBC, key = SHA-256(Encrypt Key), base64(IV || ciphertext), PKCS#7 padding.
Event signature: hex(SHA-256(timestamp + nonce + Encrypt Key + raw body)), plain SHA-256, not HMAC.
Legacy card callback signature: hex(SHA-1(timestamp + nonce + Verification Token + raw body)).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_BLOCK = 16


class DecryptError(ValueError):
    """The `encrypt` field could not be decrypted: wrong key, truncated or tampered data."""


class PayloadCipher:
    """Encrypts and decrypts `{"encrypt": ...}` payloads under one Encrypt Key.

    The AES key is derived once here rather than per request: hashing is cheap, but the webhook is hot.
    """

    def __init__(self, encrypt_key: str) -> None:
        self._key = hashlib.sha256(encrypt_key.encode()).digest()

    def decrypt(self, encrypted: str) -> bytes:
        try:
            blob = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise DecryptError("not base64") from None
        if len(blob) < 2 * _BLOCK or len(blob) % _BLOCK:
            raise DecryptError("wrong length")
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(blob[:_BLOCK])).decryptor()
        padded = decryptor.update(blob[_BLOCK:]) + decryptor.finalize()
        unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise DecryptError("bad padding") from None

    def encrypt(self, plaintext: bytes, iv: bytes | None = None) -> str:
        iv = os.urandom(_BLOCK) if iv is None else iv
        padder = padding.PKCS7(algorithms.AES.block_size).padder()
        padded = padder.update(plaintext) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).encryptor()
        return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode()


def _utf8(text: str) -> bytes:
    # surrogatepass: header values and JSON strings from outside may hold lone surrogates (aiohttp
    # decodes bad header bytes that way); they must compare unequal, never raise.
    return text.encode("utf-8", "surrogatepass")


def event_signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """`X-Lark-Signature` of an event or a `card.action.trigger` callback."""
    digest = hashlib.sha256(_utf8(timestamp + nonce + encrypt_key))
    digest.update(body)
    return digest.hexdigest()


def card_signature_v1(timestamp: str, nonce: str, verification_token: str, body: bytes) -> str:
    """`X-Lark-Signature` of a legacy card callback (`POST /feishu/card`)."""
    digest = hashlib.sha1(_utf8(timestamp + nonce + verification_token))  # noqa: S324 - Feishu's choice
    digest.update(body)
    return digest.hexdigest()


def constant_time_equal(given: str, expected: str) -> bool:
    """Compare secrets without leaking, through timing, how many leading characters matched."""
    return hmac.compare_digest(_utf8(given), _utf8(expected))
