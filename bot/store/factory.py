"""Choosing a store backend from BOT_STORE_URL."""

from __future__ import annotations

from bot.store.base import Store
from bot.store.sqlite import SqliteStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


async def open_store(url: str) -> Store:
    if url.startswith("sqlite:///"):
        return await SqliteStore.open(url.removeprefix("sqlite:///"))
    if url.startswith(POSTGRES_SCHEMES):
        from bot.store.postgres import PostgresStore  # asyncpg is imported only by those who use it

        return await PostgresStore.open(url)
    raise ValueError(f"unsupported store URL scheme: {url.split(':', 1)[0]!r}")
