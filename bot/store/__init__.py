"""Persistence behind one small async interface; SQLite is the embedded default."""

from bot.store.base import InboxItem, InboxStats, Store, StoredValue
from bot.store.factory import open_store

__all__ = ["InboxItem", "InboxStats", "Store", "StoredValue", "open_store"]
