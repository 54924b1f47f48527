"""What the emulated tenant looks like: the app's credentials, the bot, and a small directory.

Frozen so one configuration can be shared by a test, the emulator and the bot under test without anyone
changing it underneath the others. The defaults are what the demo and most tests use as they are.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator


class DirectoryUser(BaseModel):
    """One person in the emulated tenant, with the IDs Feishu gives a person (feishu-protocol §2)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    open_id: str = Field(pattern=r"^ou_[A-Za-z0-9_]+$")
    name: str = Field(min_length=1)
    en_name: str = ""
    email: str = ""
    union_id: str = ""
    user_id: str = ""
    # Contact lookup (feishu-protocol §8): mobiles match exactly as stored; a resigned user is found only with
    # include_resigned=true.
    mobile: str = ""
    resigned: bool = False
    # An external contact (someone of another tenant in a shared group): their own tenant's key, which
    # their events carry as the sender's `tenant_key` while the header keeps the app's tenant (as in the
    # receive doc's example). Empty: a person of the emulated tenant.
    tenant_key: str = ""


class DirectoryChat(BaseModel):
    """One chat. `bot_is_member=False` makes the Open API answer 230002 when the bot posts there."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chat_id: str = Field(pattern=r"^oc_[A-Za-z0-9_]+$")
    name: str = ""
    chat_type: Literal["group", "p2p"] = "group"
    members: tuple[str, ...] = ()
    bot_is_member: bool = True
    # The group's rule on who may @all (the chat API's `at_all_permission`); with "only_owner" anyone
    # else finds no @所有人 in the client's picker, so what they type stays plain text.
    owner_id: str = ""
    at_all_permission: Literal["all_members", "only_owner"] = "all_members"

    def may_mention_all(self, open_id: str) -> bool:
        return self.at_all_permission == "all_members" or open_id == self.owner_id


class DirectoryMeeting(BaseModel):
    """One video meeting (feishu-protocol §7). Times are unix seconds; when `start_time`/`end_time` are left
    out they are `start_offset`/`end_offset` seconds from the emulator clock at the moment the meeting
    book is first used (so a test may still replace `emulator.clock` right after construction)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The long numeric id that exists once a meeting started, never the 9-digit number.
    meeting_id: str = Field(pattern=r"^[0-9]{10,20}$")
    meeting_no: str = Field(pattern=r"^[0-9]{9}$")
    topic: str = ""
    host: str = Field(pattern=r"^ou_[A-Za-z0-9_]+$")
    # 1 calling, 2 in progress, 3 ended (feishu-protocol §7.2).
    status: Literal[1, 2, 3] = 2
    participants: tuple[str, ...] = ()
    locked: bool = False
    capacity: int = Field(default=100, ge=1, le=10_000)
    # People in another call: an invitation to this meeting fails for them (status 2).
    busy: tuple[str, ...] = ()
    password: str = ""
    start_time: int | None = None
    end_time: int | None = None
    start_offset: int = -600
    end_offset: int | None = None

    @property
    def url(self) -> str:
        return f"https://vc.feishu.cn/j/{self.meeting_no}"


_DEFAULT_USERS = (
    DirectoryUser(
        open_id="ou_alice0000000000000000000000001",
        name="Alice",
        en_name="Alice",
        email="alice@example.com",
        union_id="on_alice000000000000000000000001",
        user_id="alice",
    ),
    DirectoryUser(
        open_id="ou_bob000000000000000000000000002",
        name="Bob",
        en_name="Bob",
        email="bob@example.com",
        union_id="on_bob0000000000000000000000002",
        user_id="bob",
    ),
    DirectoryUser(
        open_id="ou_carol00000000000000000000000003",
        name="Carol",
        en_name="Carol",
        email="carol@example.com",
        union_id="on_carol000000000000000000000003",
        user_id="carol",
    ),
)

# Someone of a partner company, in the shared "Partners" group: another tenant's key, no user_id (an
# employee id exists only inside one's own tenant) and no e-mail the contact API would find.
_DAVE = DirectoryUser(
    open_id="ou_dave00000000000000000000000004",
    name="Dave",
    en_name="Dave",
    union_id="on_dave000000000000000000000004",
    tenant_key="tenant_partner0002",
)
PARTNERS_CHAT = "oc_partners000000000000000000001"

_DEFAULT_CHATS = (
    DirectoryChat(
        chat_id="oc_team00000000000000000000000001",
        name="Team",
        chat_type="group",
        members=tuple(user.open_id for user in _DEFAULT_USERS),
    ),
    DirectoryChat(
        chat_id="oc_p2palice000000000000000000001",
        name="",
        chat_type="p2p",
        members=(_DEFAULT_USERS[0].open_id,),
    ),
    DirectoryChat(
        chat_id="oc_nobot0000000000000000000000001",
        name="Bot not invited",
        chat_type="group",
        members=(_DEFAULT_USERS[0].open_id, _DEFAULT_USERS[1].open_id),
        bot_is_member=False,
    ),
    DirectoryChat(
        chat_id=PARTNERS_CHAT,
        name="Partners",
        chat_type="group",
        members=(_DEFAULT_USERS[0].open_id, _DEFAULT_USERS[1].open_id, _DAVE.open_id),
    ),
)


_ALICE, _BOB, _CAROL = (user.open_id for user in _DEFAULT_USERS)

# The meetings of the default tenant: one Alice hosts and is in, an ended one under the same number (so
# list_by_no must be narrowed by status), one Alice is not in (122003), a locked one (122008), a full one.
MEETING_IN_PROGRESS = "6911188411932033028"
MEETING_ENDED = "6911188411932033001"
MEETING_WITHOUT_ALICE = "6911188411932033102"
MEETING_LOCKED = "6911188411932033203"
MEETING_FULL = "6911188411932033304"
_DEFAULT_MEETINGS = (
    DirectoryMeeting(
        meeting_id=MEETING_IN_PROGRESS,
        meeting_no="123456789",
        topic="Weekly sync",
        host=_ALICE,
        participants=(_ALICE,),
    ),
    DirectoryMeeting(
        meeting_id=MEETING_ENDED,
        meeting_no="123456789",
        topic="Weekly sync",
        host=_ALICE,
        status=3,
        start_offset=-7 * 86400,
        end_offset=-7 * 86400 + 3600,
    ),
    DirectoryMeeting(
        meeting_id=MEETING_WITHOUT_ALICE,
        meeting_no="987654321",
        topic="Bob's stand-up",
        host=_BOB,
        participants=(_BOB,),
    ),
    DirectoryMeeting(
        meeting_id=MEETING_LOCKED,
        meeting_no="555666777",
        topic="Locked review",
        host=_ALICE,
        participants=(_ALICE,),
        locked=True,
    ),
    DirectoryMeeting(
        meeting_id=MEETING_FULL,
        meeting_no="222333444",
        topic="Small room",
        host=_ALICE,
        participants=(_ALICE, _CAROL),
        capacity=2,
    ),
)


def generated_open_id(index: int) -> str:
    """The open_id `with_generated_users` gives its `index`-th person (0-based)."""
    return f"ou_gen{index:026d}"


USER_ID_SCOPE = "contact:user.employee_id:readonly"

# Scopes enabled for the emulated app (developer console → permissions). The authorize page refuses
# others with 20027; a business API needing one that is not here answers 99991672.
DEFAULT_APP_SCOPES = (
    "vc:meeting",
    "vc:meeting:readonly",
    "vc:meeting.meetingevent:read",
    "offline_access",
    "contact:user.id:readonly",
    "im:message",
    "im:chat:readonly",
)


class EmulatorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    app_id: str = "cli_emulator0000001"
    app_secret: str = Field(default="emulator-app-secret", repr=False)
    verification_token: str = Field(default="emulator-verification-token", repr=False)
    # Non-empty by default so the bot's signature and decryption paths run in every demo and test;
    # an empty key makes the emulator push plain, unsigned bodies, as Feishu does without one.
    encrypt_key: str = Field(default="emulator-encrypt-key", repr=False)
    tenant_key: str = "tenant_emulator0001"
    bot_open_id: str = "ou_bot00000000000000000000000000b"
    bot_name: str = "InviteBot"
    bot_avatar_url: str = "https://emulator.invalid/avatar/bot.png"
    # How long an invitation rings before it counts as not answered (status 4, never joined). Feishu's
    # own ring time is UNCONFIRMED; half a minute is what its clients show in practice.
    ring_seconds: float = Field(default=30.0, gt=0, le=3600)
    tenant_token_ttl_seconds: int = Field(default=7200, ge=60)
    # The bot's `POST /feishu/events` URL; settable later through `Emulator.webhook_url`.
    webhook_url: str | None = None
    # --- card callbacks (feishu-protocol §3) ---
    # Where legacy card callbacks go; unset: webhook_url with /feishu/events replaced by /feishu/card.
    card_callback_url: str | None = None
    # How long the Feishu client waits for the answer to a card callback (3 s, feishu-protocol §3.1).
    card_callback_deadline_seconds: float = Field(default=3.0, gt=0)
    # --- user OAuth (feishu-protocol §6) ---
    app_scopes: tuple[str, ...] = DEFAULT_APP_SCOPES
    # Registered redirect URLs (security settings → redirect URLs), matched exactly. Any http(s) URL on a
    # loopback host is accepted as well, so a bot under test on 127.0.0.1:<random port> needs no entry.
    redirect_uris: tuple[str, ...] = ()
    authorization_code_ttl_seconds: float = Field(default=300, gt=0)
    user_access_token_ttl_seconds: int = Field(default=7200, ge=1)
    refresh_token_ttl_seconds: int = Field(default=604800, ge=1)
    # The access token a refresh replaced keeps working this long ("about a minute", feishu-protocol §6.3).
    rotated_token_grace_seconds: float = Field(default=60, ge=0)
    # After this long since the user authorized, refreshing fails with 20037 (365 days, feishu-protocol §6.3).
    authorization_max_age_seconds: float = Field(default=365 * 86400, gt=0)
    users: tuple[DirectoryUser, ...] = (*_DEFAULT_USERS, _DAVE)
    chats: tuple[DirectoryChat, ...] = _DEFAULT_CHATS
    meetings: tuple[DirectoryMeeting, ...] = _DEFAULT_MEETINGS
    _by_open_id: dict[str, DirectoryUser] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _ids_are_unique(self) -> EmulatorConfig:
        open_ids = [user.open_id for user in self.users]
        if len(set(open_ids)) != len(open_ids) or self.bot_open_id in open_ids:
            raise ValueError("open_ids in the directory must be unique and differ from bot_open_id")
        chat_ids = [chat.chat_id for chat in self.chats]
        if len(set(chat_ids)) != len(chat_ids):
            raise ValueError("chat_ids must be unique")
        meeting_ids = [meeting.meeting_id for meeting in self.meetings]
        if len(set(meeting_ids)) != len(meeting_ids):
            raise ValueError("meeting_ids must be unique")
        # An index, so that directories of hundreds of people stay cheap to look up.
        self._by_open_id = {user.open_id: user for user in self.users}
        return self

    def user(self, open_id: str) -> DirectoryUser | None:
        return self._by_open_id.get(open_id)

    def tenant_of(self, open_id: str) -> str:
        """The tenant a person belongs to: their own for an external contact, else the emulated one."""
        user = self.user(open_id)
        return user.tenant_key if user is not None and user.tenant_key else self.tenant_key

    @property
    def shows_user_ids(self) -> bool:
        """Whether events and callbacks carry people's `user_id`: only for an app granted
        contact:user.employee_id:readonly (feishu-protocol §2); otherwise it is null or left out, as in
        captured traffic."""
        return USER_ID_SCOPE in self.app_scopes

    def with_generated_users(
        self, count: int, *, chat_id: str | None = None, chat_name: str = "Everyone"
    ) -> EmulatorConfig:
        """A copy with `count` more people (`generated_open_id(i)`, "User 0001", user0001@example.com).
        With `chat_id`, they also join that group chat, which is created (with the tenant's own people of
        the existing directory as its first members) when it does not exist yet."""
        start = sum(1 for user in self.users if user.open_id.startswith("ou_gen"))
        added = tuple(
            DirectoryUser(
                open_id=generated_open_id(i),
                name=f"User {i + 1:04d}",
                en_name=f"User {i + 1:04d}",
                email=f"user{i + 1:04d}@example.com",
                union_id=f"on_gen{i:026d}",
                user_id=f"user{i + 1:04d}",
            )
            for i in range(start, start + count)
        )
        chats = self.chats
        if chat_id is not None:
            new_ids = tuple(user.open_id for user in added)
            existing = self.chat(chat_id)
            if existing is None:
                # The tenant's own people: an external contact is only in the groups shared with them.
                base = tuple(user.open_id for user in self.users if not user.tenant_key)
                chats = (*chats, DirectoryChat(chat_id=chat_id, name=chat_name, members=base + new_ids))
            else:
                grown = existing.model_copy(update={"members": existing.members + new_ids})
                chats = tuple(grown if chat.chat_id == chat_id else chat for chat in chats)
        return self.model_validate({**self.model_dump(), "users": (*self.users, *added), "chats": chats})

    def meeting(self, meeting_id: str) -> DirectoryMeeting | None:
        return next((meeting for meeting in self.meetings if meeting.meeting_id == meeting_id), None)

    def chat(self, chat_id: str) -> DirectoryChat | None:
        return next((chat for chat in self.chats if chat.chat_id == chat_id), None)
