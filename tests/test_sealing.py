"""Tokens at rest: sealed with AES-GCM, bound to their record, readable across a key rotation."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.oauth.records import UserToken
from bot.oauth.sealing import Sealer, SealError
from bot.oauth.token_store import UserTokenStore
from bot.store import Store, open_store

OLD = "old-secret-key-0123456789abcdefghijklmnop"
NEW = "new-secret-key-0123456789abcdefghijklmnop"


def token(open_id: str = "ou_a", access: str = "eyJ-access-secret") -> UserToken:
    now = time.time()
    return UserToken(
        tenant_key="tk",
        open_id=open_id,
        access_token=access,
        access_expires_at=now + 7200,
        refresh_token="eyJ-refresh-secret",
        refresh_expires_at=now + 86400,
        scopes=("vc:meeting",),
        authorized_at=now,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path}/seal.db")
    try:
        yield opened
    finally:
        await opened.close()


def test_sealed_blob_is_bound_to_its_record_and_to_the_key() -> None:
    sealer = Sealer([NEW])
    blob = sealer.seal(b"secret", context="user_token/tk/ou_a")
    assert b"secret" not in blob
    assert sealer.open(blob, context="user_token/tk/ou_a") == b"secret"
    with pytest.raises(SealError):
        sealer.open(blob, context="user_token/tk/ou_b")  # copied onto another user's record
    with pytest.raises(SealError):
        Sealer([OLD]).open(blob, context="user_token/tk/ou_a")  # a key that is not configured
    tampered = blob.replace(blob[-6:-2], b"AAAA")
    with pytest.raises(SealError):
        sealer.open(tampered, context="user_token/tk/ou_a")


async def test_rotation_keeps_old_records_readable_and_reseals_on_write(store: Store) -> None:
    before = UserTokenStore(store, Sealer([OLD]))
    assert await before.put(token(), expected_version=None, now=time.time())

    after = UserTokenStore(store, Sealer([NEW, OLD]))
    read = await after.get("tk", "ou_a", now=time.time())
    assert read is not None
    assert read.token.access_token == "eyJ-access-secret"
    stored = await store.get("user_token", "tk/ou_a", now=time.time())
    assert stored is not None
    assert Sealer([NEW, OLD]).kid_of(stored.value) == Sealer([OLD]).current_kid

    assert await after.put(token(access="eyJ-second"), expected_version=read.version, now=time.time())
    stored = await store.get("user_token", "tk/ou_a", now=time.time())
    assert stored is not None
    assert Sealer([NEW]).kid_of(stored.value) == Sealer([NEW]).current_kid
    # Once re-sealed, the old key can be dropped from the configuration.
    assert (await UserTokenStore(store, Sealer([NEW])).get("tk", "ou_a", now=time.time())) is not None


async def test_compare_and_set_refuses_a_stale_writer(store: Store) -> None:
    tokens = UserTokenStore(store, Sealer([NEW]))
    assert await tokens.put(token(), expected_version=None, now=time.time())
    first = await tokens.get("tk", "ou_a", now=time.time())
    assert first is not None
    assert await tokens.put(token(access="eyJ-winner"), expected_version=first.version, now=time.time())
    assert not await tokens.put(token(access="eyJ-loser"), expected_version=first.version, now=time.time())
    latest = await tokens.get("tk", "ou_a", now=time.time())
    assert latest is not None
    assert latest.token.access_token == "eyJ-winner"


def test_token_repr_never_shows_the_tokens() -> None:
    text = repr(token())
    assert "eyJ-access-secret" not in text
    assert "eyJ-refresh-secret" not in text


def test_the_key_id_reveals_nothing_about_the_key_and_old_ids_still_open() -> None:
    import base64
    import hashlib
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"feishu-invite-bot", info=b"store-sealing/v1"
    ).derive(NEW.encode())
    legacy_kid = hashlib.sha256(b"kid:" + key).hexdigest()[:12]
    sealer = Sealer([NEW])
    assert sealer.current_kid != legacy_kid
    assert json.loads(sealer.seal(b"x", context="c"))["kid"] == sealer.current_kid
    # A record written before the id had its own label.
    nonce = b"\0" * 12
    legacy = json.dumps(
        {
            "v": 1,
            "kid": legacy_kid,
            "n": base64.b64encode(nonce).decode(),
            "c": base64.b64encode(AESGCM(key).encrypt(nonce, b"old secret", b"c")).decode(),
        }
    ).encode()
    assert sealer.open(legacy, context="c") == b"old secret"
