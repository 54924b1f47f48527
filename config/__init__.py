"""The bot's settings: the one model every other package reads its configuration from."""

from config.settings import Settings, SettingsError, load_settings

__all__ = ["Settings", "SettingsError", "load_settings"]
