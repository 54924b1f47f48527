"""`Emulator`: one emulated Feishu tenant, its Open API app and the pusher that talks to the bot."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from aiohttp import web

from emulator.authorize import decide, parse_authorize, query_of
from emulator.card_tokens import CallbackToken, CardTokenApi, CardTokens
from emulator.click_control import click_control_routes
from emulator.clicker import Clicker
from emulator.clicks import ClickResult, find_buttons
from emulator.config import DirectoryMeeting, EmulatorConfig
from emulator.contacts import ContactRoutes
from emulator.control import control_routes
from emulator.device import DeviceAuthorizations
from emulator.ephemeral import EphemeralApi, EphemeralMessage, EphemeralStore
from emulator.faults import Fault, FaultQueue
from emulator.gateway import Gateway, RecordedRequest, feishu_not_found
from emulator.long_connection import SocketHub
from emulator.meetings import FAILED, Answer, InviteCall, Meeting, MeetingBook
from emulator.messages import MessageStore, SentMessage
from emulator.oauth import UserAuth
from emulator.oauth_routes import OAuthRoutes
from emulator.openapi import OpenApi
from emulator.pusher import Pusher, PushResult
from emulator.tokens import TenantTokens
from emulator.updates import CardUpdate, UpdateApi
from emulator.users import UserGate
from emulator.vc_control import vc_control_routes
from emulator.vc_routes import VcRoutes


class Emulator:
    """The local Feishu. Serve `emulator.app` (see `server.start_emulator`), point the bot's
    FEISHU_DOMAIN at it and `webhook_url` at the bot, then talk as users with `say`."""

    def __init__(
        self, config: EmulatorConfig | None = None, *, clock: Callable[[], float] | None = None
    ) -> None:
        self.config = config or EmulatorConfig()
        # Tests replace this to move time (token expiry, uuid window, rate limit) without sleeping.
        self.clock: Callable[[], float] = clock or time.time
        self.webhook_url: str | None = self.config.webhook_url
        self.requests: list[RecordedRequest] = []
        now = self._now
        self._tokens = TenantTokens(self.config.tenant_token_ttl_seconds, now)
        self._store = MessageStore(self.config, now)
        self._faults = FaultQueue()
        # "long-connection": events and clicks go down the bot's WebSocket instead of to webhook_url.
        self.transport: Literal["webhook", "long-connection"] = "webhook"
        self.long_connection = SocketHub(self.config, now)
        self._pusher = Pusher(self.config, now, self._store, lambda: self.webhook_url, self._socket)
        self._auth = UserAuth(self.config, now)
        self.devices = DeviceAuthorizations(self.config, now, self._auth)
        self._ephemeral = EphemeralStore()
        self.card_updates: list[CardUpdate] = []
        self._card_callback_url: str | None = self.config.card_callback_url
        self._card_tokens = CardTokens(now)
        self._clicker = Clicker(
            self.config,
            now,
            self._store,
            self._card_tokens,
            self._pusher,
            self.card_updates,
            lambda: self.webhook_url,
            lambda: self.card_callback_url,
            self._socket,
        )
        users = UserGate(self.config, self._auth)
        self._gateway = Gateway(self._tokens, users, self._faults, self.requests, now)
        self._meetings = MeetingBook(self.config, now)
        self._vc = VcRoutes(self.config, self._gateway, self._meetings)
        self._contacts = ContactRoutes(self.config, self._gateway)
        self.app = self._build_app()

    def _socket(self) -> SocketHub | None:
        return self.long_connection if self.transport == "long-connection" else None

    def _now(self) -> float:
        # Indirection so that assigning `emulator.clock` later reaches every component.
        return self.clock()

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[feishu_not_found], client_max_size=4 * 1024 * 1024)
        gateway = self._gateway
        app.add_routes(OpenApi(self.config, gateway, self._store).routes())
        app.add_routes(OAuthRoutes(self.config, gateway, self._auth, self.devices).routes())
        app.add_routes(self.devices.routes())
        app.add_routes(EphemeralApi(self.config, gateway, self._ephemeral).routes())
        app.add_routes(UpdateApi(gateway, self._store, self.card_updates).routes())
        app.add_routes(
            CardTokenApi(self.config, gateway, self._store, self._card_tokens, self.card_updates).routes()
        )
        app.add_routes(self._vc.routes())
        app.add_routes(self._contacts.routes())
        app.add_routes(control_routes(self))
        app.add_routes(vc_control_routes(self))
        app.add_routes(click_control_routes(self))
        app.add_routes(self.long_connection.routes())
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_cleanup(self, _app: web.Application) -> None:
        await self.long_connection.close()
        await self._pusher.close()
        await self._clicker.close()

    # --- observing -------------------------------------------------------------------------------------

    @property
    def messages(self) -> list[SentMessage]:
        """Everything the bot has sent or replied, oldest first."""
        return list(self._store.sent)

    @property
    def tenant_tokens_issued(self) -> int:
        return self._tokens.issued_count

    async def wait_for_messages(
        self,
        count: int,
        *,
        chat_id: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - the test-facing API; applied inside with wait_for
    ) -> list[SentMessage]:
        """The first `count` messages the bot sent (into `chat_id`, if given); TimeoutError if it
        has not sent that many within `timeout` seconds of real time."""
        return await self._store.wait_for(count, chat_id, timeout)

    def p2p_chat_id(self, open_id: str) -> str:
        """The chat a direct message from the bot to this user lands in (KeyError for a stranger)."""
        return self._store.p2p_chat_id(open_id)

    @property
    def ephemeral_messages(self) -> list[EphemeralMessage]:
        """Cards only one person sees, oldest first; `deleted` once the bot deleted them."""
        return list(self._ephemeral.messages)

    async def wait_for_ephemeral(
        self,
        count: int,
        *,
        open_id: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - the test-facing API; applied inside with wait_for
    ) -> list[EphemeralMessage]:
        return await self._ephemeral.wait_for(count, open_id, timeout)

    # --- user OAuth ------------------------------------------------------------------------------------

    def authorize(self, url: str, *, as_user: str, approve: bool = True) -> str:
        """Open the authorize `url` as `as_user` and approve (or deny); returns the redirect Location.
        Raises `AuthorizeError` (a ValueError, with Feishu's `code`) where Feishu would show an error."""
        request = parse_authorize(query_of(url), self.config)
        return decide(self._auth, self.config, request, as_user=as_user, approve=approve)

    @property
    def user_gate(self) -> UserGate:
        """`require_user_token(request, scopes=...)`: the user-token check for routes that act as a user."""
        return self._gateway.users

    def revoke_user_authorization(self, open_id: str) -> None:
        """The user withdraws the app's authorization: their access tokens answer 99991668 from now on,
        their refresh tokens 20064, and the scopes they granted are forgotten."""
        self._auth.revoke_user(open_id)

    def granted_scopes(self, open_id: str) -> tuple[str, ...]:
        return self._auth.granted_scopes(open_id)

    @property
    def user_token_exchanges(self) -> int:
        """authorization_code requests that reached the token endpoint, successful or not."""
        return self._auth.code_exchanges

    @property
    def refreshes(self) -> int:
        """Successful refresh_token grants."""
        return self._auth.refreshes

    @property
    def refresh_token_reuses(self) -> int:
        """Attempts to use a refresh token a second time (20073). A correct bot keeps this at 0."""
        return self._auth.refresh_token_reuses

    @property
    def issued_user_tokens(self) -> list[str]:
        """Every user access and refresh token handed out, to grep logs and files for."""
        return list(self._auth.history)

    # --- steering --------------------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def pending_faults(self) -> list[tuple[Fault, int]]:
        return self._faults.pending()

    @property
    def issued_tokens(self) -> list[str]:
        return list(self._tokens.history)

    def revoke_tenant_tokens(self) -> None:
        """Every tenant_access_token issued so far is refused from now on (99991663)."""
        self._tokens.revoke_all()

    # --- meetings (feishu-protocol §7) ----------------------------------------------------------------------

    def meeting(self, meeting_id: str) -> Meeting:
        """The live state of a meeting (KeyError if there is none): participants, ringing, status…"""
        return self._meetings.get(meeting_id)

    @property
    def meetings(self) -> list[Meeting]:
        return list(self._meetings.meetings.values())

    def add_meeting(self, meeting: DirectoryMeeting | None = None, **fields: Any) -> Meeting:
        """Start a meeting: a `DirectoryMeeting`, or its fields as keywords. ValueError on a taken id."""
        return self._meetings.add(meeting if meeting is not None else DirectoryMeeting(**fields))

    def end_meeting(self, meeting_id: str) -> None:
        """Status 3 from now on; everyone in it has left and nobody is ringing any more."""
        self._meetings.end(meeting_id)

    def join_meeting(self, meeting_id: str, open_id: str) -> None:
        """`open_id` joins (answering a ring, or on their own)."""
        self._meetings.get(meeting_id).join(open_id, int(self._now()))

    def leave_meeting(self, meeting_id: str, open_id: str) -> None:
        self._meetings.leave(meeting_id, open_id)

    def active_meetings_of(self, open_id: str) -> list[str]:
        """The ids of the meetings in progress `open_id` is in now, newest first."""
        return [meeting.meeting_id for meeting in self._meetings.active_for(open_id)]

    def refuse_active_meeting(self, refused: bool = True) -> None:
        """Whether user_active_meeting is refused to this tenant (a gradual release not yet here)."""
        self._vc.active_meeting_refused = refused

    def decline_meeting(self, meeting_id: str, open_id: str) -> None:
        """`open_id` declines the invitation ringing for them (status 4, never joined)."""
        self._meetings.decline(meeting_id, open_id)

    def answer_when_invited(
        self,
        open_id: str,
        answer: Answer,
        after_seconds: float = 0,
        *,
        then: Answer | None = None,
        then_after: float = 0,
    ) -> None:
        """From now on `open_id` answers each invitation: joins or declines `after_seconds` after it
        rings (unplanned, it rings for `ring_seconds` and ends unanswered)."""
        self._meetings.answer_when_invited(open_id, answer, after_seconds, then, then_after)

    def clear_answers(self) -> None:
        self._meetings.clear_answers()

    def lock_meeting(self, meeting_id: str, locked: bool = True) -> None:
        self._meetings.get(meeting_id).locked = locked

    def set_busy(self, meeting_id: str, open_id: str, busy: bool = True) -> None:
        """Whether `open_id` is in another call as far as invitations to `meeting_id` go."""
        people = self._meetings.get(meeting_id).busy
        if busy:
            people.add(open_id)
        else:
            people.discard(open_id)

    def fail_invitee(self, open_id: str, code: int = FAILED, *, times: int | None = None) -> None:
        """Make inviting `open_id` fail: `code=2` (the default) as that person's status 2 with the call
        succeeding; any Feishu code (e.g. 122007) as the whole call's error whenever they are in it.
        `times`: for that many calls naming them, else until `clear_invitee_failures`."""
        if code != FAILED and code < 100:
            raise ValueError("code must be 2 (per-invitee failure) or a Feishu error code")
        self._meetings.fail_invitee(open_id, None if code == FAILED else code, times)

    def clear_invitee_failures(self) -> None:
        self._meetings.clear_invitee_failures()

    @property
    def invite_calls(self) -> list[InviteCall]:
        """Every invite call by an authenticated user, oldest first, refused ones with their `code`."""
        return list(self._meetings.invite_calls)

    def reset_rate_limits(self) -> None:
        for limit in (self._vc.list_limit, self._vc.get_limit, self._vc.invite_limit):
            limit.reset()
        self._contacts.members_limit.reset()
        self._contacts.lookup_limit.reset()

    # --- talking to the bot ----------------------------------------------------------------------------

    def build_message_event(
        self,
        sender_open_id: str,
        chat_id: str,
        text: str,
        *,
        chat_type: Literal["group", "p2p"] = "group",
        mentions: Sequence[str] = (),
        message_type: Literal["text", "post"] = "text",
        message_id: str | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        return self._pusher.build_message_event(
            sender_open_id,
            chat_id,
            text,
            chat_type=chat_type,
            mentions=mentions,
            message_type=message_type,
            message_id=message_id,
            event_id=event_id,
        )

    def build_message_event_v1(
        self, sender_open_id: str, chat_id: str, text: str, **options: Any
    ) -> dict[str, Any]:
        return self._pusher.build_message_event_v1(sender_open_id, chat_id, text, **options)

    def build_url_verification(self, challenge: str | None = None) -> dict[str, Any]:
        return self._pusher.build_url_verification(challenge)

    def build_say_event(self, sender_open_id: str, chat_id: str, text: str, **options: Any) -> dict[str, Any]:
        return self._pusher.build_say_event(sender_open_id, chat_id, text, **options)

    def seal(self, payload: dict[str, Any], **options: Any) -> tuple[dict[str, str], bytes]:
        return self._pusher.seal(payload, **options)

    async def push(self, payload: dict[str, Any], **options: Any) -> PushResult:
        return await self._pusher.push(payload, **options)

    async def say(self, sender_open_id: str, chat_id: str, text: str, **options: Any) -> PushResult:
        return await self._pusher.say(sender_open_id, chat_id, text, **options)

    # --- clicking cards (feishu-protocol §3) ----------------------------------------------------------------

    @property
    def card_callback_url(self) -> str | None:
        """Where legacy card callbacks go: as set, else webhook_url with /feishu/events -> /feishu/card."""
        if self._card_callback_url:
            return self._card_callback_url
        return self.webhook_url.replace("/feishu/events", "/feishu/card") if self.webhook_url else None

    @card_callback_url.setter
    def card_callback_url(self, url: str | None) -> None:
        self._card_callback_url = url

    @property
    def click_results(self) -> list[ClickResult]:
        """Every click so far, oldest first, with the client error code each one showed (if any)."""
        return list(self._clicker.results)

    def card_buttons(self, message_id: str) -> list[dict[str, Any]]:
        """What the bot's card `message_id` offers to click now: [{"tag", "name", "text", "value"}]."""
        sent = next((m for m in self.messages if m.message_id == message_id), None)
        if sent is None:
            raise KeyError(f"the bot sent no message {message_id!r}")
        return find_buttons(sent.content)

    def card_token(self, token: str) -> CallbackToken | None:
        """A callback's update token: its card, age, uses."""
        return self._card_tokens.get(token)

    def build_card_action(
        self,
        operator_open_id: str,
        message_id: str,
        *,
        value: dict[str, Any] | str,
        tag: str = "button",
        name: str | None = None,
        form_value: dict[str, Any] | None = None,
        input_value: str | None = None,
        option: str | None = None,
        options: list[str] | None = None,
        checked: bool | None = None,
        timezone: str | None = None,
        event_id: str | None = None,
        delivery_type: str | None = None,
        context_url: str | None = None,
    ) -> dict[str, Any]:
        """A schema 2.0 `card.action.trigger` for a click on the bot's card (ClickError otherwise), with a
        fresh update token. Seal it with `seal`, send it with `push`, or let `click` do all of it.
        `delivery_type` and `context_url` shape it as a click on a link preview of the card."""
        return self._clicker.build_card_action(
            operator_open_id, message_id, event_id=event_id, value=value, tag=tag, name=name,
            form_value=form_value, input_value=input_value, option=option, options=options,
            checked=checked, timezone=timezone, delivery_type=delivery_type, context_url=context_url,
        )  # fmt: skip

    def build_legacy_card_action(
        self, operator_open_id: str, message_id: str, **action: Any
    ) -> dict[str, Any]:
        """The legacy flat callback body; same keywords as `build_card_action` (no event_id)."""
        return self._clicker.build_legacy_card_action(operator_open_id, message_id, **action)

    def build_legacy_url_verification(self, challenge: str | None = None) -> dict[str, Any]:
        return self._clicker.build_legacy_url_verification(challenge)

    def seal_legacy(self, body: dict[str, Any], **options: Any) -> tuple[dict[str, str], bytes]:
        """Headers (SHA-1 signature with the Verification Token) and raw body of a legacy callback."""
        return self._clicker.seal_legacy(body, **options)

    async def post_legacy(self, body: dict[str, Any], **seal_options: Any) -> PushResult:
        """POST any legacy body (a challenge, a hand-made click) to `card_callback_url`, no judging."""
        return await self._clicker.post_legacy(body, **seal_options)

    async def click(
        self,
        operator_open_id: str,
        message_id: str,
        value: dict[str, Any] | str,
        *,
        legacy: bool = False,
        seal: dict[str, Any] | None = None,
        **action: Any,
    ) -> ClickResult:
        """`operator_open_id` clicks a component of the bot's card whose callback value is `value`
        (`action`: tag, name, form_value, input_value, option, options, checked, timezone, event_id).
        New style to webhook_url, legacy to card_callback_url; answered within the deadline or 200341.
        `seal` passes tampering options (signature, timestamp, nonce, encrypt, sign) to the sealing."""
        return await self._clicker.click(
            operator_open_id, message_id, value, legacy=legacy, seal=seal, **action
        )

    async def double_click(
        self, operator_open_id: str, message_id: str, value: dict[str, Any] | str, **options: Any
    ) -> tuple[ClickResult, ClickResult]:
        """The same button clicked twice 50 ms apart: two callbacks with different event_ids."""
        return await self._clicker.double_click(operator_open_id, message_id, value, **options)

    async def close(self) -> None:
        """Close the push sessions; `AppRunner.cleanup()` does this too."""
        await self._pusher.close()
        await self._clicker.close()
