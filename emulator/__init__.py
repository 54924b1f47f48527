"""A local Feishu Open Platform on loopback, for tests and the demo. The bot never imports this."""

from emulator.authorize import AuthorizeError
from emulator.card_tokens import CallbackToken
from emulator.clicker import ClickError
from emulator.clicks import ClickResult
from emulator.config import DirectoryChat, DirectoryUser, EmulatorConfig
from emulator.emulator import Emulator
from emulator.ephemeral import EphemeralMessage
from emulator.faults import Fault
from emulator.gateway import RecordedRequest
from emulator.messages import SentMessage
from emulator.pusher import PushResult
from emulator.server import serve_emulator, start_emulator
from emulator.updates import CardUpdate

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
