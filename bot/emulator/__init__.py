"""A local Feishu Open Platform on loopback, for tests and the demo. The bot never imports this."""

from bot.emulator.config import DirectoryChat, DirectoryUser, EmulatorConfig
from bot.emulator.emulator import Emulator
from bot.emulator.faults import Fault
from bot.emulator.messages import SentMessage
from bot.emulator.openapi import RecordedRequest
from bot.emulator.pusher import PushResult
from bot.emulator.server import serve_emulator, start_emulator

__all__ = [
    "DirectoryChat",
    "DirectoryUser",
    "Emulator",
    "EmulatorConfig",
    "Fault",
    "PushResult",
    "RecordedRequest",
    "SentMessage",
    "serve_emulator",
    "start_emulator",
]
