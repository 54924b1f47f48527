"""Feishu's side of the long connection: the endpoint, the socket, and pushes down it.

`POST /callback/ws/endpoint` checks the app's credentials and hands out a one-time socket URL with a
ClientConfig; `GET /callback/ws/socket` upgrades to the WebSocket. Pushes go to one connection picked at
random (Feishu's cluster mode: no broadcast, no affinity), fragmented when asked, and wait 3 s for the
answer frame; an event not answered `{"code": 200}` in time is pushed again later, a click never is.
Controls: refuse the endpoint or the handshake with Feishu's codes, stop answering pings, drop every
connection (docs/feishu-protocol.md, "Long connection").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import WSMsgType, web

from bot.feishu import frames
from bot.feishu.frames import Frame, FrameError
from emulator.config import EmulatorConfig

ENDPOINT_PATH = "/callback/ws/endpoint"
SOCKET_PATH = "/callback/ws/socket"
CONNECTION_LIMIT = 50  # per app
DEADLINE_SECONDS = 3.0
CONNECTION_LIMIT_CODE = "1000040350"

Kind = Literal["event", "card"]


@dataclass
class SocketPush:
    """One delivery down the socket as Feishu saw it."""

    kind: Kind
    payload: dict[str, Any]
    seq_id: int
    fragments: int
    code: int | None = None  # None: no answer within the deadline
    data: dict[str, Any] | None = None  # the answer's decoded `data` (a click's toast)
    elapsed_ms: float = 0.0
    answer_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Connection:
    ws: web.WebSocketResponse
    service_id: int
    device_id: str
    pings: int = 0


class SocketHub:
    def __init__(self, config: EmulatorConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self.client_config: dict[str, int] = {
            "ReconnectCount": -1,
            "ReconnectInterval": 120,
            "ReconnectNonce": 30,
            "PingInterval": 120,
        }
        self.connections: list[_Connection] = []
        self.pushes: list[SocketPush] = []
        self.endpoint_calls = 0
        self.refuse_endpoint: tuple[int, str] | None = None  # (code, msg) the endpoint answers
        self.refuse_handshake: tuple[int, str] | None = None  # (status, Handshake-Autherrcode)
        self.answer_pings = True
        self.repush_after_seconds = 15.0
        self.repush_attempts = 4
        self._tickets: set[str] = set()
        self._waiting: dict[int, asyncio.Future[Frame]] = {}
        self._seq = itertools.count(1)
        self._background: set[asyncio.Task[Any]] = set()
        self._rng = random.Random()  # noqa: S311 - picks a connection, not a secret
        self.connected = asyncio.Event()

    def routes(self) -> list[web.RouteDef]:
        return [web.post(ENDPOINT_PATH, self._endpoint), web.get(SOCKET_PATH, self._socket)]

    # --- serving -----------------------------------------------------------------------------------

    async def _endpoint(self, request: web.Request) -> web.Response:
        self.endpoint_calls += 1
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"code": 1000040344, "msg": "invalid request body"})
        if self.refuse_endpoint is not None:
            code, msg = self.refuse_endpoint
            return web.json_response({"code": code, "msg": msg})
        if not isinstance(body, dict) or body.get("AppID") != self._config.app_id:
            return web.json_response({"code": 10003, "msg": "app_id is invalid"})
        if body.get("AppSecret") != self._config.app_secret:
            return web.json_response({"code": 10014, "msg": "app secret invalid"})
        ticket = secrets.token_urlsafe(16)
        self._tickets.add(ticket)
        device = secrets.token_hex(8)
        service = self._rng.randint(1, 2**31 - 1)
        url = f"ws://{request.host}{SOCKET_PATH}?device_id={device}&service_id={service}&access_key={ticket}"
        return web.json_response(
            {"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": self.client_config}}
        )

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("access_key", "")
        if ticket not in self._tickets:
            return _refused(403, "1000040343", "ticket invalid or used")
        self._tickets.discard(ticket)
        if self.refuse_handshake is not None:
            status, code = self.refuse_handshake
            return _refused(status, code, "refused by the emulator's control")
        if len(self.connections) >= CONNECTION_LIMIT:
            return _refused(514, CONNECTION_LIMIT_CODE, "exceed connection limit")
        ws = web.WebSocketResponse(autoping=False, max_msg_size=frames.MAX_FRAME_BYTES)
        await ws.prepare(request)
        connection = _Connection(
            ws, int(request.query.get("service_id", "0")), request.query.get("device_id", "")
        )
        self.connections.append(connection)
        self.connected.set()
        try:
            async for message in ws:
                if message.type != WSMsgType.BINARY:
                    continue
                try:
                    frame = frames.decode(message.data)
                except FrameError:
                    continue  # Feishu ignores what it cannot read
                if frame.method == frames.CONTROL and frame.header("type") == "ping":
                    connection.pings += 1
                    if self.answer_pings:
                        pong = Frame(
                            seq_id=0,
                            log_id=0,
                            service=frame.service,
                            method=frames.CONTROL,
                            headers=(("type", "pong"),),
                            payload=json.dumps(self.client_config).encode(),
                        )
                        await ws.send_bytes(frames.encode(pong))
                elif frame.method == frames.DATA:
                    waiting = self._waiting.get(frame.seq_id)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(frame)
        finally:
            self.connections.remove(connection)
            if not self.connections:
                self.connected.clear()
        return ws

    # --- pushing -----------------------------------------------------------------------------------

    async def deliver(
        self, payload: dict[str, Any], kind: Kind = "event", *, fragments: int = 1
    ) -> SocketPush:
        """Push one envelope down a connection picked at random and wait for its answer (3 s)."""
        seq_id = next(self._seq)
        push = SocketPush(kind=kind, payload=payload, seq_id=seq_id, fragments=max(1, fragments))
        self.pushes.append(push)
        if not self.connections:
            raise RuntimeError("no bot is connected over the long connection")
        connection = self._rng.choice(self.connections)
        header = payload.get("header")
        if isinstance(header, dict):
            # Down the socket, Feishu sends `header.token` empty: the connection itself is the credential.
            payload = {**payload, "header": {**header, "token": ""}}
        raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        size = -(-len(raw) // push.fragments)
        parts = [raw[i * size : (i + 1) * size] for i in range(push.fragments)]
        message_id = secrets.token_hex(8)
        answer = asyncio.get_running_loop().create_future()
        self._waiting[seq_id] = answer
        started = time.perf_counter()
        try:
            for index, part in enumerate(parts):
                frame = Frame(
                    seq_id=seq_id,
                    log_id=seq_id,
                    service=connection.service_id,
                    method=frames.DATA,
                    headers=(
                        ("type", kind),
                        ("message_id", message_id),
                        ("sum", str(len(parts))),
                        ("seq", str(index)),
                        ("trace_id", secrets.token_hex(8)),
                    ),
                    payload=part,
                )
                await connection.ws.send_bytes(frames.encode(frame))
            with contextlib.suppress(TimeoutError):
                reply = await asyncio.wait_for(asyncio.shield(answer), DEADLINE_SECONDS)
                push.answer_headers = dict(reply.headers)
                push.code, push.data = _read_answer(reply.payload)
        except ConnectionError:
            pass  # the socket went away mid-push: no answer
        finally:
            self._waiting.pop(seq_id, None)
            push.elapsed_ms = (time.perf_counter() - started) * 1000
        if kind == "event" and push.code != 200:
            self._schedule_repush(payload, 1)
        return push

    def _schedule_repush(self, payload: dict[str, Any], attempt: int) -> None:
        if attempt > self.repush_attempts:
            return

        async def again() -> None:
            await asyncio.sleep(self.repush_after_seconds)
            await self.connected.wait()  # held until a bot is connected again
            push = await self.deliver_once(payload)
            if push.code != 200:
                self._schedule_repush(payload, attempt + 1)

        task = asyncio.create_task(again())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def deliver_once(self, payload: dict[str, Any]) -> SocketPush:
        """A re-push: the same envelope again, scheduling nothing further itself."""
        saved, self.repush_attempts = self.repush_attempts, 0
        try:
            return await self.deliver(payload)
        finally:
            self.repush_attempts = saved

    async def drop(self) -> None:
        """Close every connection from Feishu's side, as a server restart would."""
        for connection in list(self.connections):
            await connection.ws.close()

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.drop()


def _read_answer(payload: bytes | None) -> tuple[int | None, dict[str, Any] | None]:
    try:
        body = json.loads(payload or b"")
    except ValueError:
        return None, None
    if not isinstance(body, dict) or not isinstance(body.get("code"), int):
        return None, None
    data = None
    raw = body.get("data")
    if isinstance(raw, str):  # base64 of the answer's JSON; an object here is a client error
        with contextlib.suppress(ValueError):
            decoded = json.loads(base64.b64decode(raw, validate=True))
            data = decoded if isinstance(decoded, dict) else None
    return int(body["code"]), data


def _refused(status: int, code: str, message: str) -> web.Response:
    headers = {"Handshake-Status": str(status), "Handshake-Autherrcode": code, "Handshake-Msg": message}
    return web.Response(status=status, headers=headers, text=message)
