"""Hostile or odd input found in review: never a 5xx, never a traceback, never a stuck inbox."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from bot.feishu.crypto import PayloadCipher, event_signature
from bot.feishu.events import EventEnvelope
from bot.inbox import Inbox
from bot.metrics import Metrics
from bot.store.sqlite import SqliteStore
from tests.harness import ALICE, TEAM, Harness


async def post(world: Harness, body: bytes, headers: dict[str, str] | None = None) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{world.bot_url}/feishu/events", data=body, headers=headers or {}) as response,
    ):
        return response.status


async def test_message_event_without_a_message_is_400_not_503(world: Harness) -> None:
    event = world.emulator.build_say_event(ALICE, TEAM, "/help")
    event["event"] = {}
    assert (await world.emulator.push(event)).status == 400


def sealed(world: Harness, plaintext: bytes) -> tuple[dict[str, str], bytes]:
    """Encrypt and sign raw bytes exactly as Feishu would, for bodies the emulator cannot build."""
    key = world.settings.encrypt_key
    body = json.dumps({"encrypt": PayloadCipher(key).encrypt(plaintext)}).encode()
    timestamp = str(int(time.time()))
    signature = event_signature(timestamp, "n", key, body)
    return {
        "X-Lark-Request-Timestamp": timestamp,
        "X-Lark-Request-Nonce": "n",
        "X-Lark-Signature": signature,
    }, body


async def test_lone_surrogates_are_refused_not_500(world: Harness) -> None:
    event = world.emulator.build_say_event(ALICE, TEAM, "/help")
    # json.dumps escapes as ASCII, so the lone surrogate travels as the six characters \ud800.
    raw = json.dumps(event).replace(event["event"]["message"]["message_id"], "\\ud800")
    headers, body = sealed(world, raw.encode())
    assert await post(world, body, headers) == 400
    challenge = b'{"type":"url_verification","challenge":"x","token":"\\ud800"}'
    assert await post(world, challenge) == 403


async def test_undecodable_signature_header_bytes_are_401(world: Harness) -> None:
    headers, body = world.emulator.seal(world.emulator.build_say_event(ALICE, TEAM, "/help"))
    reader, writer = await asyncio.open_connection("127.0.0.1", world.settings.bot_port)
    try:
        request = (
            b"POST /feishu/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"X-Lark-Request-Timestamp: {headers['X-Lark-Request-Timestamp']}\r\n".encode()
            + b"X-Lark-Request-Nonce: \xff\xfe\r\n"
            + f"X-Lark-Signature: {headers['X-Lark-Signature']}\r\n".encode()
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()
    assert status_line.split()[1] == b"401"


async def test_oauth_callback_refuses_head(world: Harness) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.head(f"{world.bot_url}/oauth/callback?state=x&code=y") as response,
    ):
        assert response.status == 405


class FlakyStore(SqliteStore):
    """The real store, made to fail its first claims and first completion, as a locked disk would."""

    claim_failures = 2
    complete_failures = 2

    async def claim_events(self, *, now: float, limit: int):  # type: ignore[no-untyped-def]
        if self.claim_failures:
            self.claim_failures -= 1
            raise OSError("disk I/O error")
        return await super().claim_events(now=now, limit=limit)

    async def complete_event(self, item_id: int) -> None:
        if self.complete_failures:
            self.complete_failures -= 1
            raise OSError("database is locked")
        await super().complete_event(item_id)


async def test_the_inbox_outlives_store_failures(tmp_path: Path) -> None:
    opened = await SqliteStore.open(str(tmp_path / "flaky.db"))
    store = FlakyStore(opened._db, opened._intake)
    handled: list[str] = []

    async def handler(envelope: EventEnvelope) -> None:
        handled.append(envelope.event_id)

    inbox = Inbox(store, handler, Metrics(), workers=2, max_attempts=3, dedupe_ttl_seconds=3600)
    try:
        await inbox.start()
        for n in range(3):
            await inbox.accept(
                EventEnvelope(
                    schema_version="2.0",
                    event_id=f"e{n}",
                    event_type="im.message.receive_v1",
                    event={"message": {"message_id": f"om_{n}", "chat_id": "oc_1"}, "sender": {}},
                )
            )
        await inbox.wait_idle(15)
        assert handled == ["e0", "e1", "e2"]  # each once, in order, despite the failures
        assert (await store.inbox_stats()).running == 0
    finally:
        await inbox.stop(1)
        await store.close()


async def test_an_event_that_keeps_killing_the_process_ends_dead(tmp_path: Path) -> None:
    store = await SqliteStore.open(str(tmp_path / "crash.db"))
    calls = 0

    async def handler(envelope: EventEnvelope) -> None:
        nonlocal calls
        calls += 1

    inbox = Inbox(store, handler, Metrics(), workers=1, max_attempts=2, dedupe_ttl_seconds=3600)
    try:
        await inbox.accept(
            EventEnvelope(
                schema_version="2.0",
                event_id="boom",
                event_type="im.message.receive_v1",
                event={"message": {"message_id": "om_boom", "chat_id": "oc_1"}, "sender": {}},
            )
        )
        for _ in range(2):  # two claims that never finished: the process died in each
            assert len(await store.claim_events(now=1e12, limit=1)) == 1
            await store.release_claims()
        await inbox.start()
        await inbox.wait_idle(5)
        assert calls == 0
        [(_, reason)] = await store.dead_events()
        assert "process stopped during every attempt" in reason
    finally:
        await inbox.stop(1)
        await store.close()
