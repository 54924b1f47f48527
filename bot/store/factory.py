"""Choosing a store backend from BOT_STORE_URL."""

from __future__ import annotations

from bot.store.base import Store
from bot.store.sqlite import SqliteStore


async def open_store(url: str) -> Store:
    if url.startswith("sqlite:///"):
        return await SqliteStore.open(url.removeprefix("sqlite:///"))
    raise ValueError(f"unsupported store URL scheme: {url.split(':', 1)[0]!r}")
