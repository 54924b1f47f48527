"""A local Feishu Open Platform on loopback, for tests and the demo. The bot never imports this."""

from bot.emulator.authorize import AuthorizeError
from bot.emulator.card_tokens import CallbackToken
from bot.emulator.clicker import ClickError
from bot.emulator.clicks import ClickResult
from bot.emulator.config import DirectoryChat, DirectoryUser, EmulatorConfig
from bot.emulator.emulator import Emulator
from bot.emulator.ephemeral import EphemeralMessage
from bot.emulator.faults import Fault
from bot.emulator.gateway import RecordedRequest
from bot.emulator.messages import SentMessage
from bot.emulator.pusher import PushResult
from bot.emulator.server import serve_emulator, start_emulator
from bot.emulator.updates import CardUpdate

__all__ = [
    "AuthorizeError",
    "CallbackToken",
    "CardUpdate",
    "ClickError",
    "ClickResult",
    "DirectoryChat",
    "DirectoryUser",
    "Emulator",
    "EmulatorConfig",
    "EphemeralMessage",
    "Fault",
    "PushResult",
    "RecordedRequest",
    "SentMessage",
    "serve_emulator",
    "start_emulator",
]
