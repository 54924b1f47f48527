"""The authorization code flow: asking (state + PKCE + URL) and the callback (exchange, verify, keep).

A state is random, lives 10 minutes, is bound to the tenant, the user's open_id and the command that
needed it, and is taken from the store atomically, so of two callbacks racing on one state exactly one
proceeds and a replayed callback never reaches Feishu's token endpoint.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import urlencode

import structlog
from pydantic import ValidationError

from bot.clock import Clock
from bot.feishu.client import FeishuClient
from bot.feishu.errors import FeishuApiError
from bot.feishu.events import AUTHORIZATION_GRANTED, EventEnvelope, ordering_key
from bot.feishu.models import OAuthTokenRequest
from bot.oauth.authority import token_from_response
from bot.oauth.pkce import challenge_s256, new_verifier
from bot.oauth.records import AuthorizationGranted, AuthorizationState, Prompt
from bot.oauth.sealing import Sealer, SealError
from bot.oauth.token_store import UserTokenStore
from bot.store import Store

log = structlog.get_logger("bot.oauth")

STATE_NAMESPACE = "oauth_state"
STATE_TTL_SECONDS = 600.0
# Authorization codes already handed to Feishu (hashed): a code is exchanged once, by one process,
# however many times the browser (or anyone holding the URL) replays the callback.
CODE_NAMESPACE = "oauth_code"
PROMPT_NAMESPACE = "oauth_prompt"
PROMPT_TTL_SECONDS = 24 * 3600.0
AUTHORIZE_PATH = "/open-apis/authen/v1/authorize"

# "authorized_not_resumed": the authorization is stored but the waiting command could not be queued.
OutcomeKind = Literal[
    "authorized",
    "authorized_not_resumed",
    "denied",
    "unknown_state",
    "wrong_user",
    "exchange_failed",
    "bad_request",
    "unavailable",
]


@dataclass(frozen=True)
class CallbackOutcome:
    kind: OutcomeKind
    status: int
    # Who signed in at Feishu, when we got that far (for the page's wording).
    signed_in_as: str = ""
    # The event that resumes what the user was doing; the web layer hands it to the inbox.
    resume: EventEnvelope | None = None
    # For the page, on a failed exchange: what Feishu said, to quote to support.
    code: int = 0
    log_id: str = ""


class AuthorizationFlow:
    def __init__(
        self,
        client: FeishuClient,
        tokens: UserTokenStore,
        store: Store,
        sealer: Sealer,
        *,
        accounts_url: str,
        redirect_uri: str,
        scopes: tuple[str, ...],
        clock: Clock,
    ) -> None:
        self._client = client
        self._tokens = tokens
        self._store = store
        self._sealer = sealer
        self._accounts_url = accounts_url.rstrip("/")
        self._redirect_uri = redirect_uri
        self._scopes = scopes
        self._clock = clock

    async def begin(
        self,
        tenant_key: str,
        open_id: str,
        *,
        pending: EventEnvelope | None,
        extra_scopes: tuple[str, ...] = (),
        locale: str = "zh_cn",
    ) -> tuple[str, str]:
        """Start an authorization for one user; returns (state, the authorize page URL)."""
        state = secrets.token_urlsafe(32)
        verifier = new_verifier()
        scopes = tuple(dict.fromkeys((*self._scopes, *extra_scopes)))
        record = AuthorizationState(
            tenant_key=tenant_key,
            open_id=open_id,
            code_verifier=verifier,
            scopes=scopes,
            created_at=self._clock(),
            pending=pending,
            locale=locale,
        )
        await self._store.put(
            STATE_NAMESPACE,
            _state_key(state),
            self._seal(state, record),
            expires_at=self._clock() + STATE_TTL_SECONDS,
        )
        query = urlencode(
            {
                "client_id": self._client.app_id,
                "response_type": "code",
                "redirect_uri": self._redirect_uri,
                "scope": " ".join(scopes),
                "state": state,
                "code_challenge": challenge_s256(verifier),
                "code_challenge_method": "S256",
            }
        )
        return state, f"{self._accounts_url}{AUTHORIZE_PATH}?{query}"

    async def attach_prompt(self, state: str, prompt: Prompt) -> None:
        """Remember where the prompt was shown, to update it once the user has authorized.

        Kept apart from the state, and read by the resumed event's handler: that handler runs in the
        same chat's order, after the handler that sent the prompt, so it always finds this record even
        when the user authorizes faster than this write.
        """
        await self._store.put(
            PROMPT_NAMESPACE,
            _state_key(state),
            prompt.model_dump_json().encode(),
            expires_at=self._clock() + PROMPT_TTL_SECONDS,
        )

    async def take_prompt(self, state_key: str) -> Prompt | None:
        taken = await self._store.take(PROMPT_NAMESPACE, state_key, now=self._clock())
        if taken is None:
            return None
        try:
            return Prompt.model_validate_json(taken.value)
        except ValidationError:
            return None

    async def complete(self, *, state: str | None, code: str | None, error: str | None) -> CallbackOutcome:
        if not state or len(state) > 200:
            return CallbackOutcome("bad_request", 400)
        # Read, not taken: the link stays its owner's until a sign-in by the owner succeeds. Anyone who
        # merely sees the link (a screenshot, a proxy log) must not be able to spend it with an error
        # or a junk code.
        stored = await self._store.get(STATE_NAMESPACE, _state_key(state), now=self._clock())
        record = None if stored is None else self._open(state, stored.value)
        if record is None:
            return CallbackOutcome("unknown_state", 400)
        with structlog.contextvars.bound_contextvars(open_id=record.open_id):
            if error is not None or not code:
                log.info("user declined authorization", error=(error or "no code")[:60])
                return CallbackOutcome("denied", 403)
            code = code[:512]
            if not await self._spend_code(code):
                return CallbackOutcome("unknown_state", 400)
            outcome = await self._exchange(record, code)
            if outcome.kind != "authorized":
                return outcome
            # Spend the link now. Of two sign-ins racing on it, only the one that takes it resumes the
            # waiting command; the other is authorized all the same, with nothing left to resume.
            taken = await self._store.take(STATE_NAMESPACE, _state_key(state), now=self._clock())
            if taken is None:
                return outcome
            return replace(outcome, resume=self._resume_event(record, outcome.signed_in_as, state))

    async def _spend_code(self, code: str) -> bool:
        """True for the first callback to bring this code; a replay finds it spent."""
        now = self._clock()
        return await self._store.compare_and_set(
            CODE_NAMESPACE,
            hashlib.sha256(code.encode()).hexdigest(),
            b"spent",
            expected_version=None,
            expires_at=now + STATE_TTL_SECONDS,
            now=now,
        )

    async def _exchange(self, record: AuthorizationState, code: str) -> CallbackOutcome:
        request = OAuthTokenRequest(
            grant_type="authorization_code",
            client_id=self._client.app_id,
            client_secret=self._client.app_secret,
            code=code,
            redirect_uri=self._redirect_uri,
            code_verifier=record.code_verifier,
        )
        try:
            response = await self._client.oauth_token(request)
            user = await self._client.user_info(response.access_token)
        except FeishuApiError as failure:
            log.warning("authorization code exchange failed", code=failure.code, log_id=failure.log_id)
            return CallbackOutcome("exchange_failed", 400, code=failure.code, log_id=failure.log_id)
        if user.open_id != record.open_id:
            # Someone else finished this user's link: keep nothing, act for nobody.
            log.warning("authorization finished by a different account; discarded")
            return CallbackOutcome("wrong_user", 403, signed_in_as=user.name or user.en_name)
        now = self._clock()
        token = token_from_response(
            response,
            tenant_key=record.tenant_key,
            open_id=user.open_id,
            name=user.name,
            authorized_at=now,
            now=now,
        )
        await self._tokens.replace(token)
        log.info("user authorized", scopes=" ".join(token.scopes))
        return CallbackOutcome("authorized", 200, signed_in_as=user.name)

    def _resume_event(self, record: AuthorizationState, name: str, state: str) -> EventEnvelope:
        """An inbox event that updates the prompt and runs the waiting command, in the user's chat."""
        event_id = "authz-" + hashlib.sha256(record.code_verifier.encode()).hexdigest()[:32]
        return granted_event(
            event_id,
            tenant_key=record.tenant_key,
            open_id=record.open_id,
            name=name,
            locale=record.locale,
            prompt_key=_state_key(state),
            pending=record.pending,
            now=self._clock(),
        )

    def _seal(self, state: str, record: AuthorizationState) -> bytes:
        return self._sealer.seal(
            record.model_dump_json().encode(), context=f"{STATE_NAMESPACE}/{_state_key(state)}"
        )

    def _open(self, state: str, sealed: bytes) -> AuthorizationState | None:
        try:
            plain = self._sealer.open(sealed, context=f"{STATE_NAMESPACE}/{_state_key(state)}")
            return AuthorizationState.model_validate_json(plain)
        except (SealError, ValidationError):
            return None


def granted_event(
    event_id: str,
    *,
    tenant_key: str,
    open_id: str,
    name: str,
    locale: str,
    prompt_key: str,
    pending: EventEnvelope | None,
    now: float,
) -> EventEnvelope:
    """The internal `authorization_granted` event both flows queue once a person has authorized: it
    updates the prompt and runs what waited, in the chat of the command that waited (redirect or device)."""
    order = ordering_key(pending) if pending is not None else f"user:{open_id}"
    return EventEnvelope(
        schema_version="2.0",
        event_id=event_id,
        event_type=AUTHORIZATION_GRANTED,
        create_time=str(int(now * 1000)),
        tenant_key=tenant_key,
        event=AuthorizationGranted(
            ordering_key=order,
            tenant_key=tenant_key,
            open_id=open_id,
            name=name,
            locale=locale,
            prompt_key=prompt_key,
            pending=pending,
        ).model_dump(),
    )


def _state_key(state: str) -> str:
    # The store keeps a hash, not the state itself: a copy of the store file cannot finish a login.
    return hashlib.sha256(state.encode()).hexdigest()
