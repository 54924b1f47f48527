"""Scripted failures of the Open API, to test the bot's retries, timeouts and shutdown."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FaultRoute = Literal[
    "reply",
    "send",
    "tenant_token",
    "bot_info",
    "user_token",  # POST /open-apis/authen/v2/oauth/token; a `code` answers in the OAuth error shape
    "user_info",
    "ephemeral",  # POST /open-apis/ephemeral/v1/send
    "ephemeral_delete",
    "update",  # PATCH /open-apis/im/v1/messages/{message_id}
    "list_by_no",  # GET /open-apis/vc/v1/meetings/list_by_no
    "get_meeting",  # GET /open-apis/vc/v1/meetings/{meeting_id}
    "invite",  # PATCH /open-apis/vc/v1/meetings/{meeting_id}/invite
    "chat_members",  # GET /open-apis/im/v1/chats/{chat_id}/members
    "batch_get_id",  # POST /open-apis/contact/v3/users/batch_get_id
]


class Fault(BaseModel):
    """The next `times` calls to `route` wait `delay_seconds`, then fail with `status`.

    `status=None` is a pure delay: the call then proceeds normally. `code=None` picks what Feishu
    would send: 99991400 for 429 (and 400 with that code), a plain-text gateway body for 5xx.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    route: FaultRoute
    status: int | None = Field(default=500, ge=200, le=599)
    code: int | None = None
    msg: str = Field(default="", max_length=1000)
    times: int = Field(default=1, ge=1, le=10_000)
    delay_seconds: float = Field(default=0.0, ge=0.0, le=600.0)
    headers: dict[str, str] = Field(default_factory=dict, max_length=32)


@dataclass
class _Armed:
    fault: Fault
    left: int


class FaultQueue:
    """Faults fire in the order they were added, per route, and are consumed as they fire."""

    def __init__(self) -> None:
        self._pending: dict[str, deque[_Armed]] = {}

    def add(self, fault: Fault) -> None:
        self._pending.setdefault(fault.route, deque()).append(_Armed(fault, fault.times))

    def take(self, route: str) -> Fault | None:
        queue = self._pending.get(route)
        if not queue:
            return None
        armed = queue[0]
        armed.left -= 1
        if armed.left <= 0:
            queue.popleft()
        return armed.fault

    def clear(self) -> None:
        self._pending.clear()

    def pending(self) -> list[tuple[Fault, int]]:
        return [(armed.fault, armed.left) for queue in self._pending.values() for armed in queue]
