"""Users' tokens in the store, sealed, with versions for compare-and-set."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from bot.oauth.records import UserToken
from bot.oauth.sealing import Sealer, SealError
from bot.store import Store

NAMESPACE = "user_token"
# What a forgotten authorization leaves behind. A tombstone, not a deletion: the record's version keeps
# counting, so a refresh that read the token before /logout fails its compare-and-set afterwards and
# can never write the token back (a deleted row would restart at version 1 and might match again).
TOMBSTONE = b"forgotten"
# Far longer than any refresh can be in flight (its lease lasts 2 minutes).
TOMBSTONE_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class Versioned:
    token: UserToken
    version: int


def _key(tenant_key: str, open_id: str) -> str:
    return f"{tenant_key}/{open_id}"


class UserTokenStore:
    def __init__(self, store: Store, sealer: Sealer) -> None:
        self._store = store
        self._sealer = sealer

    async def get(self, tenant_key: str, open_id: str, *, now: float) -> Versioned | None:
        key = _key(tenant_key, open_id)
        stored = await self._store.get(NAMESPACE, key, now=now)
        if stored is None or stored.value == TOMBSTONE:
            return None
        try:
            token = UserToken.model_validate_json(
                self._sealer.open(stored.value, context=f"{NAMESPACE}/{key}")
            )
        except (SealError, ValidationError):
            # Sealed under a key no longer configured, or damaged: as good as no authorization.
            return None
        return Versioned(token, stored.version)

    async def put(self, token: UserToken, *, expected_version: int | None, now: float) -> bool:
        """Write only if nobody else wrote since `expected_version` (None: only if there is none)."""
        key = _key(token.tenant_key, token.open_id)
        sealed = self._sealer.seal(token.model_dump_json().encode(), context=f"{NAMESPACE}/{key}")
        return await self._store.compare_and_set(
            NAMESPACE,
            key,
            sealed,
            expected_version=expected_version,
            expires_at=token.usable_until(),
            now=now,
        )

    async def replace(self, token: UserToken) -> None:
        """Write unconditionally: a fresh authorization supersedes whatever was there."""
        key = _key(token.tenant_key, token.open_id)
        sealed = self._sealer.seal(token.model_dump_json().encode(), context=f"{NAMESPACE}/{key}")
        await self._store.put(NAMESPACE, key, sealed, expires_at=token.usable_until())

    async def forget(self, tenant_key: str, open_id: str, *, now: float) -> bool:
        """Withdraw the user's authorization for good; True if there was one to withdraw."""
        had = await self.get(tenant_key, open_id, now=now) is not None
        await self._store.put(
            NAMESPACE, _key(tenant_key, open_id), TOMBSTONE, expires_at=now + TOMBSTONE_SECONDS
        )
        return had
