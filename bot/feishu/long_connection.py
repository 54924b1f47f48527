"""Feishu's long connection: the bot dials a WebSocket and events and card callbacks come down it.

No public URL is needed (BOT_EVENT_TRANSPORT=long-connection). What this client does that the official
SDKs do not: it runs inside the bot's own event loop on aiohttp, answers card frames, and reconnects when
pongs stop coming (a connection can die silently). The protocol is in docs/feishu-protocol.md ("Long
connection"); in short:

- `POST {domain}/callback/ws/endpoint` with the app's credentials returns a one-time `wss://` URL (it
  carries credentials: never logged) and a ClientConfig (ping and reconnect intervals).
- Every message is a binary `pbbp2.Frame` (bot.feishu.frames). The bot pings; the server pongs, maybe
  with a new ClientConfig. Data frames carry a plaintext JSON envelope, possibly in fragments.
- Each data frame is answered by sending it back with header `biz_rt` and payload `{"code": 200}` (a
  click's answer base64-encoded in `data`), within 3 s. `{"code": 500}` makes Feishu push it again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from bot.feishu import frames
from bot.feishu.frames import Frame, FrameError

log = structlog.get_logger("bot.feishu.long_connection")

ENDPOINT_PATH = "/callback/ws/endpoint"
# Endpoint answers that mean "try again later"; any other non-zero code means the credentials or the
# app are wrong, and retrying cannot help.
_RETRYABLE_CODES = frozenset({1, 1000040343, 1000040345})
# The handshake refused with these: more than 50 connections for the app, or the app banned.
_CONNECTION_LIMIT = "1000040350"
_FRAGMENTS_KEPT_SECONDS = 5.0
_ENDPOINT_TIMEOUT_SECONDS = 10.0


class ClientConfig(BaseModel):
    """What Feishu tells the client, in seconds; the defaults are the SDKs' before any arrives."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    reconnect_count: int = Field(default=-1, alias="ReconnectCount")
    reconnect_interval: float = Field(default=120, alias="ReconnectInterval", ge=0)
    reconnect_nonce: float = Field(default=30, alias="ReconnectNonce", ge=0)
    ping_interval: float = Field(default=120, alias="PingInterval", gt=0)


class _EndpointData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    url: str = Field(alias="URL", min_length=1)
    client_config: ClientConfig | None = Field(default=None, alias="ClientConfig")


class _EndpointAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: int
    msg: str = ""
    data: _EndpointData | None = None


class Refused(Exception):
    """Feishu said not to retry: wrong credentials, not allowed a long connection, too many of them."""


class Lost(Exception):
    """This connection is over, or could not be made; get a new endpoint and dial again."""


# What the bot does with one envelope (plaintext JSON bytes): the answer to send back, or None for an
# event that could not be stored (answered 500, so Feishu pushes it again).
Receive = Callable[[bytes], Awaitable["Answer"]]


@dataclass(frozen=True)
class Answer:
    code: int  # 200, or 500 to have Feishu push the event again
    data: dict[str, Any] | None = None  # a click's answer (its toast); sent base64-encoded


@dataclass
class _Fragments:
    parts: dict[int, bytes] = field(default_factory=dict)
    first_seen: float = 0.0


class LongConnection:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        domain: str,
        app_id: str,
        app_secret: SecretStr,
        receive: Receive,
        rng: random.Random | None = None,
    ) -> None:
        self._session = session
        self._domain = domain.rstrip("/")
        self._app_id = app_id
        self._app_secret = app_secret
        self._receive = receive
        self._rng = rng or random.Random()  # noqa: S311 - reconnect jitter, not a secret
        self._config = ClientConfig()
        self._fragments: dict[str, _Fragments] = {}
        self._handling: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()
        self.refused: str | None = None  # why Feishu told us to stop, for /readyz
        self.connections = 0  # connections made so far (for tests and logs)

    async def run(self) -> None:
        """Stay connected until cancelled, or until Feishu refuses for good (then `refused` says why)."""
        failures = 0
        while True:
            try:
                url = await self._endpoint()
                await self._serve(url)
                failures = 0
            except Refused as refused:
                self.refused = str(refused)
                self.connected.clear()
                log.error("long connection refused by Feishu; not retrying", reason=self.refused)
                return
            except (Lost, aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
                failures += 1
                self.connected.clear()
                log.warning("long connection lost", error=_describe(error), failures=failures)
            config = self._config
            if 0 <= config.reconnect_count < failures:
                self.refused = f"gave up after {config.reconnect_count} reconnects"
                log.error("long connection could not be restored", attempts=failures)
                return
            # Feishu's policy: a random first delay (a fleet does not reconnect in step), then the interval.
            delay = (
                self._rng.uniform(0, config.reconnect_nonce) if failures <= 1 else config.reconnect_interval
            )
            await asyncio.sleep(delay)

    async def close(self) -> None:
        for task in list(self._handling):
            task.cancel()
        await asyncio.gather(*self._handling, return_exceptions=True)

    # --- one connection -----------------------------------------------------------------------------

    async def _endpoint(self) -> str:
        url, config = await fetch_endpoint(self._session, self._domain, self._app_id, self._app_secret)
        if config is not None:
            self._config = config
        return url

    async def _serve(self, url: str) -> None:
        query = parse_qs(urlsplit(url).query)
        try:
            service = int(query.get("service_id", ["0"])[0])
        except ValueError:
            service = 0
        ws = await dial(self._session, url)
        self.connections += 1
        log.info("long connection open", connection=self.connections)
        sending = asyncio.Lock()
        last_pong = time.monotonic()
        self.connected.set()

        async def send(frame: Frame) -> None:
            async with sending:
                await ws.send_bytes(frames.encode(frame))

        async def ping() -> None:
            nonlocal last_pong
            while True:
                await send(
                    Frame(
                        seq_id=0,
                        log_id=0,
                        service=service,
                        method=frames.CONTROL,
                        headers=(("type", "ping"),),
                    )
                )
                await asyncio.sleep(self._config.ping_interval)
                # A watchdog the SDKs lack: no pong for two intervals means the connection is dead.
                if time.monotonic() - last_pong > 2 * self._config.ping_interval:
                    log.warning("no pong for two ping intervals; reconnecting")
                    await ws.close()
                    return

        pinger = asyncio.create_task(ping(), name="long-connection-ping")
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.BINARY:
                    if message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                        break
                    continue
                try:
                    frame = frames.decode(message.data)
                except FrameError as error:
                    log.warning("unreadable frame dropped", error=str(error))
                    continue
                if frame.method == frames.CONTROL:
                    if frame.header("type") == "pong":
                        last_pong = time.monotonic()
                        self._apply(frame.payload)
                    continue
                task = asyncio.create_task(self._answer(frame, send))
                self._handling.add(task)
                task.add_done_callback(self._handling.discard)
        finally:
            pinger.cancel()
            await asyncio.gather(pinger, return_exceptions=True)
            self.connected.clear()
            with contextlib.suppress(Exception):
                await ws.close()
        raise Lost(f"socket closed (code {ws.close_code})")

    def _apply(self, payload: bytes | None) -> None:
        if not payload:
            return
        try:
            self._config = ClientConfig.model_validate_json(payload)
        except ValidationError:
            log.warning("pong carried an unreadable ClientConfig; keeping the last one")

    async def _answer(self, frame: Frame, send: Callable[[Frame], Awaitable[None]]) -> None:
        started = time.perf_counter()
        payload = self._reassemble(frame)
        if payload is None:
            return  # a fragment; the frame that completes the set is the one answered
        try:
            answer = await self._receive(payload)
        except Exception as error:  # never lose the connection over one event; Feishu pushes it again
            log.error("event from the long connection failed", error=type(error).__name__)
            answer = Answer(500)
        body: dict[str, Any] = {"code": answer.code}
        if answer.data is not None:
            # A string, not an object: an object here makes the click time out in the client.
            body["data"] = base64.b64encode(json.dumps(answer.data, ensure_ascii=False).encode()).decode()
        elapsed = str(round((time.perf_counter() - started) * 1000))
        try:
            await send(frame.with_headers(("biz_rt", elapsed), payload=json.dumps(body).encode()))
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as error:
            # The socket went away: Feishu pushes an unanswered event again; a click is lost, as a
            # webhook request cut mid-answer would be.
            log.warning("could not answer a frame; the connection is gone", error=type(error).__name__)

    def _reassemble(self, frame: Frame) -> bytes | None:
        payload = frame.payload or b""
        try:
            total = int(frame.header("sum") or "1")
            index = int(frame.header("seq") or "0")
        except ValueError:
            total, index = 1, 0
        if total <= 1:
            return payload
        if not 0 <= index < total or total > 1000:
            log.warning("fragment with an impossible position dropped", sum=total, seq=index)
            return None
        now = time.monotonic()
        for key in [
            k for k, kept in self._fragments.items() if now - kept.first_seen > _FRAGMENTS_KEPT_SECONDS
        ]:
            del self._fragments[key]  # a set that never completed; Feishu pushes the event again
        key = frame.header("message_id") or ""
        kept = self._fragments.setdefault(key, _Fragments(first_seen=now))
        kept.parts[index] = payload
        if len(kept.parts) < total:
            return None
        del self._fragments[key]
        return b"".join(kept.parts[i] for i in range(total))


async def fetch_endpoint(
    session: aiohttp.ClientSession, domain: str, app_id: str, app_secret: SecretStr
) -> tuple[str, ClientConfig | None]:
    """A one-time socket URL (never to be logged) and the ClientConfig Feishu sent with it. Raises
    Refused when Feishu says retrying cannot help, Lost (retry later) otherwise."""
    body = {"AppID": app_id, "AppSecret": app_secret.get_secret_value()}
    async with session.post(
        domain.rstrip("/") + ENDPOINT_PATH,
        json=body,
        headers={"locale": "zh"},
        timeout=aiohttp.ClientTimeout(total=_ENDPOINT_TIMEOUT_SECONDS),
    ) as response:
        text = await response.text()
        status = response.status
    if status != 200:
        raise Lost(f"endpoint answered HTTP {status}")
    try:
        answer = _EndpointAnswer.model_validate_json(text)
    except ValidationError:
        raise Lost("endpoint answer is not the expected JSON") from None
    if answer.code in _RETRYABLE_CODES:
        raise Lost(f"endpoint busy (code {answer.code})")
    if answer.code != 0 or answer.data is None:
        raise Refused(f"endpoint code {answer.code}: {answer.msg[:200]}")
    return answer.data.url, answer.data.client_config


async def dial(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    """Open the socket; a handshake Feishu refuses for good raises Refused."""
    try:
        return await session.ws_connect(url, autoping=False, max_msg_size=frames.MAX_FRAME_BYTES)
    except aiohttp.WSServerHandshakeError as error:
        headers: Mapping[str, str] = error.headers or {}
        status = headers.get("Handshake-Status", str(error.status))
        code = headers.get("Handshake-Autherrcode", "")
        said = headers.get("Handshake-Msg", "")[:200]
        if code == _CONNECTION_LIMIT or status == "403":
            reason = "connection limit of the app reached" if code == _CONNECTION_LIMIT else "app banned"
            raise Refused(f"{reason} (handshake {status} {code} {said})".strip()) from None
        raise Lost(f"handshake refused: {status} {code}") from None


def _describe(error: BaseException) -> str:
    # Never the error's text for client errors: aiohttp puts the URL, with its credentials, in it.
    if isinstance(error, Lost | Refused):
        return str(error)
    return type(error).__name__
