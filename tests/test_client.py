"""The Open API client's machinery: rate limits, the tenant token, and what it logs."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import aiohttp
import pytest

from bot.feishu.client import FeishuClient
from bot.feishu.endpoints import MEETING_GET
from bot.feishu.errors import DEFERRED, FeishuApiError
from bot.feishu.ratelimit import Limit, RateLimiter
from bot.feishu.tokens import TenantTokenManager
from bot.logs import configure_logging
from bot.metrics import Metrics
from emulator.config import MEETING_IN_PROGRESS
from tests.harness import ALICE, TEAM, Harness, open_harness


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_sliding_window_never_exceeds_any_limit() -> None:
    time = FakeTime()
    limiter = RateLimiter(clock=time.clock, sleep=time.sleep)
    limits = (Limit(50, 1.0), Limit(1000, 60.0))
    stamps = []
    for _ in range(1200):
        await limiter.acquire("vc.meeting.invite", limits)
        stamps.append(time.now)
    for i, stamp in enumerate(stamps):
        in_second = sum(1 for other in stamps[i:] if other < stamp + 1.0)
        assert in_second <= 50
    assert sum(1 for stamp in stamps if stamp < stamps[0] + 60.0) == 1000
    # As fast as allowed, not slower: 1000 calls fit in the first minute (20 s at 50/s).
    assert stamps[999] - stamps[0] < 20.0


async def test_keys_are_limited_separately() -> None:
    time = FakeTime()
    limiter = RateLimiter(clock=time.clock, sleep=time.sleep)
    for _ in range(5):
        await limiter.acquire("chat:a", (Limit(5, 1.0),))
    assert await limiter.acquire("chat:b", (Limit(5, 1.0),)) == 0.0
    assert await limiter.acquire("chat:a", (Limit(5, 1.0),)) > 0.0


async def test_waiting_callers_are_admitted_in_the_order_they_came() -> None:
    # A burst: 20 callers for a limit of 5 a second, every one asking at once. Each must be admitted
    # after every caller that asked before it (no newer caller passes an older one that is waiting),
    # and the limit must still hold.
    limiter = RateLimiter()
    limits = (Limit(5, 0.2),)
    admitted: list[int] = []

    async def call(number: int) -> None:
        await limiter.acquire("vc.meeting.invite", limits)
        admitted.append(number)

    callers = []
    for number in range(20):
        callers.append(asyncio.create_task(call(number)))
        await asyncio.sleep(0)  # they ask in this order
    await asyncio.wait_for(asyncio.gather(*callers), timeout=5)
    assert admitted == list(range(20))
    # A caller after the burst, when the window has room and nobody waits, takes no turn in line.
    await asyncio.sleep(0.25)
    assert await limiter.acquire("vc.meeting.invite", limits) == 0.0


async def test_background_calls_take_at_most_half_a_window_and_never_wait() -> None:
    time = FakeTime()
    limiter = RateLimiter(clock=time.clock, sleep=time.sleep)
    limits = (Limit(50, 1.0), Limit(1000, 60.0))
    taken = 0
    while await limiter.try_acquire("vc.meeting.get", limits):
        taken += 1
    assert taken == 25  # half of the 50 a second; the refusal cost no time
    assert time.now == 1000.0
    # Commands still have the other half at once, and then wait for the window as always.
    for _ in range(25):
        assert await limiter.acquire("vc.meeting.get", limits) == 0.0
    assert await limiter.acquire("vc.meeting.get", limits) > 0.0
    # Asking every 0.1 s for three minutes: never more than half of either window.
    stamps: list[float] = []
    for _ in range(1800):
        time.now += 0.1
        while await limiter.try_acquire("vc.meeting.get", limits):
            stamps.append(time.now)
    per_second = max(sum(1 for other in stamps[i:] if other < stamp + 1.0) for i, stamp in enumerate(stamps))
    per_minute = max(sum(1 for other in stamps[i:] if other < stamp + 60.0) for i, stamp in enumerate(stamps))
    assert per_second <= 25
    assert 450 <= per_minute <= 500  # and it does use its half


async def test_a_background_call_gives_way_to_a_waiting_command() -> None:
    limiter = RateLimiter()
    limits = (Limit(2, 0.2),)
    await limiter.acquire("vc.meeting.get", limits)
    await limiter.acquire("vc.meeting.get", limits)
    waiting = asyncio.create_task(limiter.acquire("vc.meeting.get", limits))
    await asyncio.sleep(0.01)
    assert not await limiter.try_acquire("vc.meeting.get", limits)  # a command waits: no background
    assert await asyncio.wait_for(waiting, timeout=2) > 0.0
    await asyncio.sleep(0.25)
    assert await limiter.try_acquire("vc.meeting.get", limits)  # quiet again: room for background


async def test_a_background_meeting_read_with_no_room_is_deferred_without_a_request(world: Harness) -> None:
    limiter = RateLimiter()
    metrics = Metrics()
    async with aiohttp.ClientSession() as session:
        client = FeishuClient(
            session,
            domain=world.emulator_url,
            app_id=world.settings.feishu_app_id,
            app_secret=world.settings.feishu_app_secret,
            metrics=metrics,
            limiter=limiter,
        )
        while await limiter.try_acquire(MEETING_GET.name, MEETING_GET.limits):
            pass  # the background half of the window is used up
        before = len(world.emulator.requests)
        with pytest.raises(FeishuApiError) as deferred:
            await client.get_meeting(MEETING_IN_PROGRESS, user_access_token="u-x", background=True)
        assert (deferred.value.code, deferred.value.transient) == (DEFERRED, True)
        assert len(world.emulator.requests) == before  # nothing was sent
        counted = metrics.registry.get_sample_value(
            "invite_bot_openapi_calls_total", {"endpoint": MEETING_GET.name, "result": "deferred"}
        )
        assert counted == 1.0
        # A command's read of the same meeting still goes out at once.
        with pytest.raises(FeishuApiError) as refused:
            await client.get_meeting(MEETING_IN_PROGRESS, user_access_token="u-x")
        assert refused.value.code != DEFERRED
        assert len(world.emulator.requests) == before + 1


async def test_tenant_token_fetched_once_for_concurrent_callers_and_renewed_early() -> None:
    time = FakeTime()
    fetches = 0

    async def fetch() -> tuple[str, int]:
        nonlocal fetches
        fetches += 1
        await asyncio.sleep(0.01)
        return f"t-token{fetches}", 7200

    manager = TenantTokenManager(fetch, time.clock)
    tokens = await asyncio.gather(*(manager.get() for _ in range(20)))
    assert set(tokens) == {"t-token1"}
    assert fetches == 1
    time.now += 7200 - 601  # more than 10 min left: still the same token
    assert await manager.get() == "t-token1"
    time.now += 2  # under 10 min left: renewed before it expires
    assert await manager.get() == "t-token2"
    manager.invalidate("t-token1")  # a stale refusal does not throw away the newer token
    assert await manager.get() == "t-token2"
    manager.invalidate("t-token2")
    assert await manager.get() == "t-token3"


async def test_a_burst_in_one_chat_stays_under_five_per_second(world: Harness) -> None:
    # The emulator refuses a sixth message within a second in one chat (230020), as Feishu does.
    results = await asyncio.gather(*(world.emulator.say(ALICE, TEAM, "/help") for _ in range(12)))
    assert all(result.status == 200 for result in results)
    await world.emulator.wait_for_messages(12, chat_id=TEAM, timeout=10)
    # Exactly one call per reply: none was refused and retried.
    assert len([r for r in world.emulator.requests if r.path.endswith("/reply")]) == 12
    replies = sorted(message.create_time for message in world.emulator.messages)
    assert replies[-1] - replies[0] >= 1000  # 12 replies at 5/s take over a second (ms timestamps)


async def test_no_secret_or_token_reaches_the_logs(tmp_path: Path) -> None:
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    world = await open_harness(tmp_path)
    try:
        await world.start_bot()
        await world.emulator.say(ALICE, TEAM, "/help")
        await world.emulator.wait_for_messages(1, chat_id=TEAM)
        world.emulator.revoke_tenant_tokens()
        wrong = world.emulator.build_say_event(ALICE, TEAM, "/help")
        wrong["header"]["token"] = "x"
        await world.emulator.push(wrong)
        await world.emulator.push(world.emulator.build_say_event(ALICE, TEAM, "/help"), signature="0" * 64)
        await world.emulator.say(ALICE, TEAM, "/help")
        await world.emulator.wait_for_messages(2, chat_id=TEAM)
    finally:
        await world.close()
        configure_logging("console", "info")
    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert any(line["event"] == "webhook request refused" for line in lines)
    config = world.emulator.config
    for secret in (
        config.app_secret,
        config.verification_token,
        config.encrypt_key,
        *world.emulator.issued_tokens,
    ):
        assert secret not in text
