"""Text the bot shows, in both languages Feishu clients most often run (zh_cn and en_us)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Text:
    zh_cn: str
    en_us: str

    def both(self) -> str:
        """Both languages in one string, for places without per-reader i18n (plain text messages)."""
        return f"{self.zh_cn}\n{self.en_us}"
