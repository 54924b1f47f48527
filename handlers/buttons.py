"""Card buttons, registered like commands.

A button kind is one typed class (a `Button`): the state its press needs, who may press it and the
toast Feishu shows at once. A `ButtonKind` pairs it with what pressing it does, and a feature hands its
kinds to the `ButtonTable` as it hands its commands to the command table. The click path
(`handlers/clicks.py`) looks a press up by kind and knows no button by name.

A button sends back only a short random id; what it stands for is kept server side (`CardActions`):
unforgeable (the id is random and known only to the card's readers), expiring (24 h), and claimed
atomically when clicked, so a double click acts once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from bot.clock import Clock
from bot.feishu.events import CardActionEvent
from bot.store import Store
from handlers.cards import ButtonStyle, callback_button
from handlers.i18n import Text

if TYPE_CHECKING:
    from handlers.context import CommandContext

NAMESPACE = "card_action"
TTL_SECONDS = 24 * 3600.0
MAX_ID_LENGTH = 64

# The toast for a press that will be carried out, unless its kind words its own.
ON_IT = Text("收到，处理中…", "Got it: working on it…")
NOT_YOURS = Text("只有发起邀请的人可以操作。", "Only the person who asked can do this.")


class Button(BaseModel):
    """What pressing one button stands for. Subclasses set `kind` to a Literal of their own name."""

    kind: str
    tenant_key: str
    chat_id: str
    chat_type: str

    # The button's face, for `element` (a kind with a form instead overrides `element`).
    label: ClassVar[Text] = Text("确定", "OK")
    style: ClassVar[ButtonStyle] = "default"
    # The toast for a press that will be carried out.
    accepted: ClassVar[Text] = ON_IT
    # Pressing it acts as the clicker (their token), so someone not yet authorized is asked first.
    acts_as_clicker: ClassVar[bool] = True

    def pressable_by(self, open_id: str) -> bool:
        """Who may press it; anyone in the chat, unless a kind says otherwise."""
        return True

    def problem(self, event: CardActionEvent) -> Text | None:
        """Why this press cannot be carried out (shown as an error toast before the ack), or None.
        Only what the press itself carries: no store, no Open API."""
        return None

    def element(self, action_id: str) -> dict[str, Any]:
        """The card element that offers this button under `action_id`."""
        return callback_button(self.label, action_id, self.style)


class SenderOnly(Button):
    """A button only the person who asked may press (Confirm, Cancel, the meeting they were asked for)."""

    sender_open_id: str

    def pressable_by(self, open_id: str) -> bool:
        return open_id == self.sender_open_id


B = TypeVar("B", bound=Button)
PressHandler = Callable[["CommandContext", CardActionEvent, B], Awaitable[None]]
HasActed = Callable[["CommandContext"], Awaitable[bool]]


async def _never_acted(context: CommandContext) -> bool:
    return False


@dataclass(frozen=True)
class ButtonKind(Generic[B]):
    """A button class and what pressing it does, as `Command` is a command word and its handler.

    `has_acted` says whether a press that kept failing already did something nobody should do twice
    (invitations sent): then its button is not given back."""

    model: type[B]
    handler: PressHandler[B]
    has_acted: HasActed = _never_acted

    @property
    def name(self) -> str:
        default = self.model.model_fields["kind"].default
        if not isinstance(default, str):
            raise TypeError(f"{self.model.__name__}.kind needs a Literal default: its name")
        return default


class ButtonTable:
    def __init__(self, kinds: Iterable[ButtonKind[Any]] = ()) -> None:
        self._kinds: dict[str, ButtonKind[Any]] = {}
        for kind in kinds:
            self.add(kind)

    def add(self, kind: ButtonKind[Any]) -> None:
        if kind.name in self._kinds:
            raise ValueError(f"button kind {kind.name!r} declared twice")
        self._kinds[kind.name] = kind

    def all(self) -> list[ButtonKind[Any]]:
        return list(self._kinds.values())

    def kind_of(self, button: Button) -> ButtonKind[Any]:
        return self._kinds[button.kind]

    def parse(self, raw: object) -> Button | None:
        """A stored button as its own class; None for a kind no feature declares (any more)."""
        name = raw.get("kind") if isinstance(raw, dict) else None
        kind = self._kinds.get(name) if isinstance(name, str) else None
        if kind is None:
            return None
        try:
            button: Button = kind.model.model_validate(raw)
        except ValidationError:
            return None
        return button


class _Kept(BaseModel):
    """A button as stored: what it stands for, and which click (by event id) has claimed it."""

    action: dict[str, Any]
    claimed_by: str | None = None


@dataclass(frozen=True)
class _Read:
    button: Button
    claimed_by: str | None
    version: int
    expires_at: float | None


class CardActions:
    """Buttons' state in the store. A click claims its button for its own event: a retry of that event
    (the inbox retries a click whose work failed) finds it still its own and carries on, while any other
    click on the same button finds it taken. Only a click's end, good or bad, lets go of it."""

    def __init__(self, store: Store, clock: Clock, table: ButtonTable) -> None:
        self._store = store
        self._clock = clock
        self.table = table

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(12)

    async def offer(self, button: Button, action_id: str | None = None) -> str:
        self.table.kind_of(button)  # a kind nobody declared could never be pressed: fail now, not then
        action_id = action_id or self.new_id()
        kept = _Kept(action=button.model_dump(mode="json"))
        expires_at = self._clock() + TTL_SECONDS
        await self._store.put(NAMESPACE, action_id, kept.model_dump_json().encode(), expires_at=expires_at)
        return action_id

    async def offer_element(self, button: Button) -> dict[str, Any]:
        """Keep the button and return the card element that offers it."""
        return button.element(await self.offer(button))

    async def peek(self, action_id: str) -> Button | None:
        """What a button stands for, while no click has claimed it."""
        read = await self._read(action_id)
        return None if read is None or read.claimed_by is not None else read.button

    async def claim(self, action_id: str, claimant: str, clicker: str | None = None) -> Button | None:
        """The button, claimed for `claimant` (a click's event id); None if another click has it, it is
        gone, or `clicker` may not press it (then it is left as it was, for the one who may). Claiming
        again for the same claimant succeeds: that is a retry of the same click."""
        for _ in range(3):
            read = await self._read(action_id)
            if read is None or (clicker is not None and not read.button.pressable_by(clicker)):
                return None
            if read.claimed_by == claimant:
                return read.button
            if read.claimed_by is not None:
                return None
            if await self._write(action_id, read, claimant):
                return read.button
        return None

    async def release(self, action_id: str, claimant: str) -> None:
        """Let go of a claim, keeping the first expiry: the button works again (nothing was done)."""
        for _ in range(3):
            read = await self._read(action_id)
            if read is None or read.claimed_by != claimant:
                return
            if await self._write(action_id, read, None):
                return

    async def void(self, action_id: str) -> None:
        """Make a button do nothing any more (it was used, or its sibling was pressed)."""
        if action_id:
            await self._store.delete(NAMESPACE, action_id)

    async def _read(self, action_id: str) -> _Read | None:
        if not action_id or len(action_id) > MAX_ID_LENGTH:
            return None
        stored = await self._store.get(NAMESPACE, action_id, now=self._clock())
        if stored is None:
            return None
        try:
            raw = json.loads(stored.value)
        except ValueError:
            return None
        if not isinstance(raw, dict):
            return None
        # Kept before claims existed: the bare button, unclaimed.
        claimed_by = raw.get("claimed_by") if "action" in raw else None
        button = self.table.parse(raw.get("action", raw))
        if button is None or not (claimed_by is None or isinstance(claimed_by, str)):
            return None
        return _Read(button, claimed_by, stored.version, stored.expires_at)

    async def _write(self, action_id: str, read: _Read, claimed_by: str | None) -> bool:
        kept = _Kept(action=read.button.model_dump(mode="json"), claimed_by=claimed_by)
        return await self._store.compare_and_set(
            NAMESPACE,
            action_id,
            kept.model_dump_json().encode(),
            expected_version=read.version,
            expires_at=read.expires_at,
            now=self._clock(),
        )
