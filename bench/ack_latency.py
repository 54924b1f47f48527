"""Webhook acknowledgement benchmark: how fast a real `invite-bot serve` answers Feishu's pushes.

    python bench/ack_latency.py                       # 200 events/s for 20 s, human table
    python bench/ack_latency.py --rate 400 --json     # find headroom; one JSON line at the end
    python bench/ack_latency.py --duplicates 0.2      # 20 % of the sends are redeliveries (dedupe path)
    python bench/ack_latency.py --baseline-sdk        # in-process µs/event: ours vs lark-oapi

Load mode starts the emulator (a child process: it answers the bot's token and reply calls) and the bot
(`invite-bot serve`, a child process) on free 127.0.0.1 ports with a throw-away SQLite store, then posts
signed, encrypted `im.message.receive_v1` events carrying `/help` to `POST /feishu/events` on a fixed
timetable (open loop: a slow answer does not delay the next send, so latency includes queueing). The bot
replies to every event through the emulator in the background, competing for CPU as it would in
production. Everything started is stopped and the temporary directory deleted, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere without installing the project
    sys.path.insert(0, str(REPO))

from emulator import Emulator, EmulatorConfig  # noqa: E402 - after the sys.path fix above

HOST = "127.0.0.1"
EVENTS_PATH = "/feishu/events"
MAX_SECONDS = 240.0  # events are sealed up front; the bot's replay window is 300 s
MAX_RATE = 5000.0
MAX_EVENTS = 200_000
START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0
WARMUP_EVENTS = 50
# The emulator allows 5 messages per chat per second, as Feishu does; keep each chat well under it.
EVENTS_PER_CHAT_PER_SECOND = 1.0
P2P_SHARE = 0.25


# --- events ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """One event to send: its message and chat (registered in the emulator so the reply can land)."""

    payload: dict[str, Any]
    message_id: str
    chat_id: str


def plan_events(emulator: Emulator, count: int, chats: int, rng: random.Random) -> list[Planned]:
    """`count` distinct `/help` messages from the directory's users, spread round-robin over `chats`
    chats (a quarter of them p2p, the rest groups where the bot is @-mentioned)."""
    config = emulator.config
    senders = [user.open_id for user in config.users]
    p2p_chats = max(1, round(chats * P2P_SHARE))
    planned = []
    for index in range(count):
        chat = index % chats
        sender = rng.choice(senders)
        if chat < p2p_chats:
            chat_id = f"oc_benchp2p{chat:07d}"
            payload = emulator.build_message_event(sender, chat_id, "/help", chat_type="p2p")
        else:
            chat_id = f"oc_benchgrp{chat:07d}"
            payload = emulator.build_message_event(
                sender, chat_id, "@_user_1 /help", chat_type="group", mentions=[config.bot_open_id]
            )
        message_id = str(payload["event"]["message"]["message_id"])
        planned.append(Planned(payload, message_id, chat_id))
    return planned


def schedule(total: int, rate: float, duplicates: float, rng: random.Random) -> list[int]:
    """For each send slot, the index of the fresh event it carries; a duplicate slot repeats an event
    whose first send was scheduled at least one second earlier (so it has been acknowledged)."""
    slots: list[int] = []
    fresh = 0
    settled = max(1, math.ceil(rate))  # slots per second
    for slot in range(total):
        if duplicates > 0 and slot >= settled and fresh > 0 and rng.random() < duplicates:
            # Fresh events sent at least `settled` slots ago.
            eligible = slots[slot - settled]
            slots.append(rng.randint(0, eligible))
        else:
            slots.append(fresh)
            fresh += 1
    return slots


# --- processes ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """Our environment minus any FEISHU_*/BOT_* of the caller's, plus `extra`, with the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEISHU_", "BOT_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def read_line(stream: IO[bytes], timeout: float) -> str:
    """The first line a child prints, waiting at most `timeout` seconds."""
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines or not lines[0]:
        raise RuntimeError(f"child printed no line within {timeout:.0f} s")
    return lines[0].decode().strip()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


@dataclass
class ProcStat:
    cpu_seconds: float
    peak_rss_kib: int


def proc_stat(pid: int) -> ProcStat:
    """utime+stime (seconds) and VmHWM (KiB) of a running process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), counted after "pid (comm)"
    peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1])
    return ProcStat(ticks / os.sysconf("SC_CLK_TCK"), peak)


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """utime+stime of each thread of a process, by thread id (threads that ended are left out)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (task / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            found[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


# --- the emulator child --------------------------------------------------------------------------------


async def emulator_child(messages: list[tuple[str, str]]) -> None:
    """Serve the emulator on a free port, with every planned message known so replies succeed; print the
    URL; run until SIGTERM/SIGINT or until our stdin closes (the parent died)."""
    from emulator import start_emulator

    emulator, runner, base_url = await start_emulator(EmulatorConfig(), HOST, 0)
    for message_id, chat_id in messages:
        # No public API registers a message without pushing it; the bench sends the pushes itself.
        emulator._store.register(message_id, chat_id)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def watch_parent() -> None:
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_parent, daemon=True).start()
    print(base_url, flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


# --- the load ------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    scheduled: float
    sent: float
    done: float
    status: int  # HTTP status; 0 for a transport error or timeout


@dataclass
class Load:
    outcomes: list[Outcome]
    wall_seconds: float
    max_in_flight: int


async def drive(
    url: str,
    sealed: Sequence[tuple[dict[str, str], bytes]],
    rate: float,
    connections: int,
) -> Load:
    """Send `sealed[i]` at start + i/rate, without waiting for earlier answers."""
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    outcomes: list[Outcome | None] = [None] * len(sealed)
    in_flight = 0
    max_in_flight = 0

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def send(index: int, scheduled: float) -> None:
            nonlocal in_flight, max_in_flight
            headers, body = sealed[index]
            in_flight += 1
            max_in_flight = max(max_in_flight, in_flight)
            sent = time.perf_counter()
            status = 0
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            finally:
                in_flight -= 1
            outcomes[index] = Outcome(scheduled, sent, time.perf_counter(), status)

        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter() + 0.05
        for index in range(len(sealed)):
            scheduled = start + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(index, scheduled)))
        await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        wall = time.perf_counter() - start
    done = [o if o is not None else Outcome(0.0, 0.0, 0.0, 0) for o in outcomes]
    return Load(done, wall, max_in_flight)


_METRIC_LINE = re.compile(r"^(invite_bot_[a-z_]+?)(?:_total)?(?:\{[^}]*\})?\s+([0-9.eE+-]+)$")


async def bot_metrics(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """The bot's Prometheus counters, summed over labels (`_total` suffix dropped)."""
    async with session.get(f"{base}/metrics") as response:
        text = await response.text()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC_LINE.match(line)
        if match:
            totals[match.group(1)] = totals.get(match.group(1), 0.0) + float(match.group(2))
    return totals


def _finished(metrics: dict[str, float]) -> float:
    return metrics.get("invite_bot_events_handled", 0.0) + metrics.get("invite_bot_events_dead", 0.0)


async def wait_healthy(base: str, bot: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if bot.poll() is not None:
                raise RuntimeError(f"the bot exited during start-up with code {bot.returncode}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the bot did not answer /healthz within {START_TIMEOUT:.0f} s")


def start_profiler(pid: int, args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the bot for the length of the run (collapsed stacks, on-CPU samples only)."""
    if args.profile is None:
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw"]
    command += ["--duration", str(math.ceil(args.seconds)), "--output", str(args.profile), "--threads"]
    if args.profile_native:
        command.append("--native")  # C frames too: sqlite3, OpenSSL, the aiohttp parser
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603


def finish_profiler(profiler: subprocess.Popen[bytes], output: Path) -> None:
    try:
        _, errors = profiler.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        stop_process(profiler)
        errors = b""
    if profiler.returncode != 0:
        print(f"py-spy failed: {errors.decode(errors='replace')[-500:]}", file=sys.stderr)
    else:
        print(f"profile (collapsed stacks) written to {output}", file=sys.stderr)


@dataclass
class Report:
    mode: str
    target_rate: float
    seconds: float
    duplicates_fraction: float
    requests: int
    duplicates_sent: int
    errors: int
    error_statuses: dict[str, int]
    achieved_rate: float
    latency_ms: dict[str, float]  # from the scheduled send time
    latency_from_send_ms: dict[str, float]  # from the moment the request was handed to aiohttp
    server_ack_mean_ms: float  # the bot's own invite_bot_webhook_ack_seconds, sum/count
    max_in_flight: int
    bot_cpu_seconds: float
    bot_main_thread_cpu_seconds: float  # the event loop; the rest is aiosqlite's thread (and the like)
    events_per_cpu_second: float
    bot_cpu_seconds_incl_handling: float
    events_per_cpu_second_incl_handling: float
    deduplicated: int  # the bot's invite_bot_events_deduplicated; equals duplicates_sent when dedupe works
    handled: int
    dead: int
    failed_attempts: int
    drained_seconds: float | None
    bot_peak_rss_mib: float
    emulator_cpu_seconds: float
    bench_cpu_seconds: float
    cores: int = field(default_factory=lambda: os.cpu_count() or 0)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": math.nan, "p90": math.nan, "p99": math.nan, "max": math.nan}
    ordered = sorted(values)

    def rank(q: float) -> float:  # nearest-rank
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "max": ordered[-1]}


async def measure(
    bot_base: str,
    bot: subprocess.Popen[bytes],
    emulator_pid: int,
    emulator: Emulator,
    planned: list[Planned],
    slots: list[int],
    args: argparse.Namespace,
) -> Report:
    await wait_healthy(bot_base, bot)
    url = bot_base + EVENTS_PATH
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        # Warm-up: first connections, first token fetch, first replies; not measured.
        warm = [emulator.seal(p.payload) for p in planned[:WARMUP_EVENTS]]
        warmed = await drive(url, warm, min(args.rate, 100.0), min(args.connections, 16))
        bad = [o.status for o in warmed.outcomes if o.status != 200]
        if bad:
            raise RuntimeError(f"warm-up requests failed with statuses {sorted(set(bad))}")
        for _ in range(100):  # at most ~10 s for the warm-up replies
            if _finished(await bot_metrics(session, bot_base)) >= WARMUP_EVENTS:
                break
            await asyncio.sleep(0.1)

        # Sealed just before the run: every timestamp stays inside the bot's replay window.
        fresh = planned[WARMUP_EVENTS:]
        sealed_fresh = [emulator.seal(p.payload) for p in fresh]
        sealed = [sealed_fresh[i] for i in slots]

        profiler = start_profiler(bot.pid, args)
        if profiler is not None:
            await asyncio.sleep(0.5)  # let py-spy attach before the load starts
        before = await bot_metrics(session, bot_base)
        cpu0, emu0, own0 = (
            proc_stat(bot.pid).cpu_seconds,
            proc_stat(emulator_pid).cpu_seconds,
            own_cpu_seconds(),
        )
        threads0 = thread_cpu_seconds(bot.pid)
        load = await drive(url, sealed, args.rate, args.connections)
        cpu1 = proc_stat(bot.pid).cpu_seconds
        threads1 = thread_cpu_seconds(bot.pid)
        own1 = own_cpu_seconds()
        after = await bot_metrics(session, bot_base)
        if profiler is not None:
            await asyncio.to_thread(finish_profiler, profiler, args.profile)

        # Let the background handling finish (bounded), to see whether the bot keeps up.
        received = after.get("invite_bot_events_received", 0.0)
        drain_started = time.monotonic()
        drained: float | None = None
        while time.monotonic() - drain_started < args.drain_seconds:
            latest = await bot_metrics(session, bot_base)
            if _finished(latest) >= received:
                drained = time.monotonic() - drain_started
                break
            await asyncio.sleep(0.2)
        final = await bot_metrics(session, bot_base)
        end = proc_stat(bot.pid)
        emu1 = proc_stat(emulator_pid).cpu_seconds

    outcomes = load.outcomes
    statuses: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.status != 200:
            statuses[str(outcome.status)] = statuses.get(str(outcome.status), 0) + 1
    ok = [o for o in outcomes if o.status == 200]
    requests = len(outcomes)
    window_cpu = cpu1 - cpu0
    total_cpu = end.cpu_seconds - cpu0
    acks = after.get("invite_bot_webhook_ack_seconds_count", 0.0) - before.get(
        "invite_bot_webhook_ack_seconds_count", 0.0
    )
    ack_sum = after.get("invite_bot_webhook_ack_seconds_sum", 0.0) - before.get(
        "invite_bot_webhook_ack_seconds_sum", 0.0
    )
    last_done = max((o.done for o in outcomes if o.done), default=0.0)
    first_sent = min((o.sent for o in outcomes if o.sent), default=0.0)
    span = last_done - first_sent if last_done > first_sent else load.wall_seconds

    def delta(name: str) -> int:
        return round(final.get(name, 0.0) - before.get(name, 0.0))

    return Report(
        mode="load",
        target_rate=args.rate,
        seconds=args.seconds,
        duplicates_fraction=args.duplicates,
        requests=requests,
        duplicates_sent=requests - len(fresh),
        errors=requests - len(ok),
        error_statuses=statuses,
        achieved_rate=len(ok) / span if span > 0 else 0.0,
        latency_ms=percentiles([(o.done - o.scheduled) * 1000 for o in ok]),
        latency_from_send_ms=percentiles([(o.done - o.sent) * 1000 for o in ok]),
        server_ack_mean_ms=1000 * ack_sum / acks if acks else math.nan,
        max_in_flight=load.max_in_flight,
        bot_cpu_seconds=window_cpu,
        bot_main_thread_cpu_seconds=threads1.get(bot.pid, 0.0) - threads0.get(bot.pid, 0.0),
        events_per_cpu_second=requests / window_cpu if window_cpu > 0 else math.inf,
        bot_cpu_seconds_incl_handling=total_cpu,
        events_per_cpu_second_incl_handling=requests / total_cpu if total_cpu > 0 else math.inf,
        deduplicated=round(
            after.get("invite_bot_events_deduplicated", 0.0)
            - before.get("invite_bot_events_deduplicated", 0.0)
        ),
        handled=delta("invite_bot_events_handled"),
        dead=delta("invite_bot_events_dead"),
        failed_attempts=delta("invite_bot_events_failed"),
        drained_seconds=drained,
        bot_peak_rss_mib=end.peak_rss_kib / 1024,
        emulator_cpu_seconds=emu1 - emu0,
        bench_cpu_seconds=own1 - own0,
    )


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="ack-bench-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_load(args: argparse.Namespace) -> Report:
    rng = random.Random(args.seed)
    total = round(args.rate * args.seconds)
    slots = schedule(total, args.rate, args.duplicates, rng)
    fresh_count = (max(slots) + 1) if slots else 0
    chats = max(16, math.ceil(args.rate / EVENTS_PER_CHAT_PER_SECOND))
    config = EmulatorConfig()
    builder = Emulator(config)  # builds and seals in this process; the served emulator is a child
    planned = plan_events(builder, WARMUP_EVENTS + fresh_count, chats, rng)

    with workspace() as tmp, contextlib.ExitStack() as stack:
        registry = tmp / "messages.json"
        registry.write_text(json.dumps([[p.message_id, p.chat_id] for p in planned]))
        emulator_log = stack.enter_context((tmp / "emulator.log").open("wb"))
        emulator_proc = subprocess.Popen(  # noqa: S603 - our interpreter running this very file
            [sys.executable, str(Path(__file__).resolve()), "--emulator-child", str(registry)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=emulator_log,
            env=child_env({}),
            cwd=tmp,
        )
        stack.callback(stop_process, emulator_proc)
        assert emulator_proc.stdout is not None
        emulator_url = read_line(emulator_proc.stdout, START_TIMEOUT)
        if not emulator_url.startswith(f"http://{HOST}:"):
            raise RuntimeError(f"unexpected emulator announcement: {emulator_url!r}")

        port = free_port()
        settings = {
            "FEISHU_APP_ID": config.app_id,
            "FEISHU_APP_SECRET": config.app_secret,
            "FEISHU_VERIFICATION_TOKEN": config.verification_token,
            "FEISHU_ENCRYPT_KEY": config.encrypt_key,
            "FEISHU_DOMAIN": emulator_url,
            "BOT_HOST": HOST,
            "BOT_PORT": str(port),
            "BOT_PUBLIC_URL": f"http://{HOST}:{port}",
            "BOT_STORE_URL": f"sqlite:///{tmp / 'bench.db'}",
            "BOT_SECRET_KEY": secrets.token_urlsafe(48),
            "BOT_LOG_LEVEL": "warning",
            # The reply backlog is cancelled at the end, not waited for (it resumes at the next start).
            "BOT_SHUTDOWN_TIMEOUT": "3",
            **dict(item.split("=", 1) for item in args.env),
        }
        bot_log_path = tmp / "bot.log"
        bot_log = stack.enter_context(bot_log_path.open("wb"))
        command = [sys.executable, "-c", "from bot.cli import main; main()", "serve"]
        if args.cprofile is not None:
            # cProfile of the bot's main thread, start-up to shutdown; written when it exits.
            launcher = tmp / "serve.py"
            launcher.write_text("from bot.cli import main\nmain()\n")
            command = [sys.executable, "-m", "cProfile", "-o", str(args.cprofile.resolve()), str(launcher)]
            command.append("serve")
        bot_proc = subprocess.Popen(  # noqa: S603 - our interpreter running the bot's CLI
            command,
            stdin=subprocess.DEVNULL,
            stdout=bot_log,
            stderr=subprocess.STDOUT,
            env=child_env(settings),
            cwd=tmp,  # so no developer .env is picked up
        )
        stack.callback(stop_process, bot_proc)
        try:
            return asyncio.run(
                measure(f"http://{HOST}:{port}", bot_proc, emulator_proc.pid, builder, planned, slots, args)
            )
        except Exception:
            bot_log.flush()
            tail = bot_log_path.read_bytes()[-4000:].decode(errors="replace")
            print(f"--- last lines of the bot's log ---\n{tail}", file=sys.stderr)
            raise


# --- the in-process baseline ----------------------------------------------------------------------------


@dataclass
class Baseline:
    mode: str
    events: int
    rounds: int
    ours_us_per_event: float
    sdk_us_per_event: float
    sdk_over_ours: float


def run_baseline(args: argparse.Namespace) -> Baseline:
    """CPU µs per event to verify, decrypt and parse, best of `rounds`: bot.feishu.webhook vs lark-oapi."""
    import logging

    import lark_oapi as lark

    from bot.feishu.events import EventEnvelope
    from bot.feishu.webhook import WebhookSecrets, open_event_request

    logging.getLogger("Lark").setLevel(logging.CRITICAL)
    rng = random.Random(args.seed)
    config = EmulatorConfig()
    emulator = Emulator(config)
    planned = plan_events(emulator, args.baseline_events, 64, rng)
    sealed = [emulator.seal(p.payload) for p in planned]

    webhook_secrets = WebhookSecrets(
        verification_token=config.verification_token,
        encrypt_key=config.encrypt_key,
        replay_window_seconds=300,
    )
    received: list[Any] = []
    handler = (
        lark.EventDispatcherHandler.builder(config.encrypt_key, config.verification_token)
        .register_p2_im_message_receive_v1(received.append)
        .build()
    )
    requests = []
    for headers, body in sealed:
        request = lark.RawRequest()
        request.uri = EVENTS_PATH
        request.headers = headers
        request.body = body
        requests.append(request)

    def ours() -> None:
        now = time.time()
        for headers, body in sealed:
            opened = open_event_request(headers, body, webhook_secrets, now)
            if not isinstance(opened, EventEnvelope):
                raise RuntimeError("ours did not parse an event")

    def sdk() -> None:
        for request in requests:
            if handler.do(request).status_code != 200:
                raise RuntimeError("lark-oapi refused an event")

    best = {"ours": math.inf, "sdk": math.inf}
    for _ in range(args.baseline_rounds):
        for name, run in (("ours", ours), ("sdk", sdk)):
            started = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - started)
        received.clear()
    ours_us = best["ours"] / len(sealed) * 1e6
    sdk_us = best["sdk"] / len(sealed) * 1e6
    return Baseline("baseline-sdk", len(sealed), args.baseline_rounds, ours_us, sdk_us, sdk_us / ours_us)


# --- output ----------------------------------------------------------------------------------------------


def print_load(report: Report) -> None:
    lat, sent = report.latency_ms, report.latency_from_send_ms
    drained = "no (still busy)" if report.drained_seconds is None else f"{report.drained_seconds:.1f} s"
    rows = [
        ("target rate", f"{report.target_rate:.0f} events/s for {report.seconds:.0f} s"),
        (
            "requests",
            f"{report.requests} ({report.duplicates_sent} duplicates sent,"
            f" {report.deduplicated} dropped as duplicates by the bot)",
        ),
        ("errors (non-200)", f"{report.errors} {report.error_statuses or ''}".strip()),
        ("achieved rate", f"{report.achieved_rate:.1f} events/s"),
        (
            "ack latency (from schedule)",
            f"p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  p99 {lat['p99']:.2f}  max {lat['max']:.2f} ms",
        ),
        (
            "ack latency (from send)",
            f"p50 {sent['p50']:.2f}  p90 {sent['p90']:.2f}  p99 {sent['p99']:.2f}  max {sent['max']:.2f} ms",
        ),
        ("bot's own ack time (mean)", f"{report.server_ack_mean_ms:.2f} ms"),
        ("max requests in flight", str(report.max_in_flight)),
        (
            "bot CPU during load",
            f"{report.bot_cpu_seconds:.2f} s -> {report.events_per_cpu_second:.0f} events/CPU-s"
            f" (event loop thread {report.bot_main_thread_cpu_seconds:.2f} s)",
        ),
        (
            "bot CPU load+drain window",
            f"{report.bot_cpu_seconds_incl_handling:.2f} s -> "
            f"{report.events_per_cpu_second_incl_handling:.0f} events/CPU-s",
        ),
        ("handled / dead / failed tries", f"{report.handled} / {report.dead} / {report.failed_attempts}"),
        ("backlog drained after load", drained),
        ("bot peak RSS (VmHWM)", f"{report.bot_peak_rss_mib:.1f} MiB"),
        ("emulator / bench CPU", f"{report.emulator_cpu_seconds:.2f} s / {report.bench_cpu_seconds:.2f} s"),
        ("cores", str(report.cores)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def print_baseline(baseline: Baseline) -> None:
    print(f"events                       {baseline.events} x best of {baseline.rounds} rounds")
    print(f"ours (open_event_request)    {baseline.ours_us_per_event:.1f} µs/event")
    print(f"lark-oapi EventDispatcher.do {baseline.sdk_us_per_event:.1f} µs/event")
    print(f"SDK / ours                   {baseline.sdk_over_ours:.2f}x")


def _env_item(value: str) -> str:
    name, sep, _ = value.partition("=")
    if not sep or not re.fullmatch(r"(BOT|FEISHU)_[A-Z_]+", name):
        raise argparse.ArgumentTypeError("expected BOT_NAME=value or FEISHU_NAME=value")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="events per second (default 200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the run (default 20)")
    parser.add_argument("--connections", type=int, default=64, help="connection pool size (default 64)")
    parser.add_argument(
        "--duplicates", type=float, default=0.0, help="fraction of sends that repeat an earlier event"
    )
    parser.add_argument("--drain-seconds", type=float, default=10.0, help="max wait for handling to finish")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--env", action="append", default=[], type=_env_item, help="extra BOT_*/FEISHU_* setting for the bot"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="record the bot with py-spy during the run (collapsed stacks) to this file",
    )
    parser.add_argument("--cprofile", type=Path, help="run the bot under cProfile, stats to this file")
    parser.add_argument("--profile-native", action="store_true", help="with --profile: include C frames")
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    parser.add_argument("--baseline-sdk", action="store_true", help="in-process µs/event: ours vs lark-oapi")
    parser.add_argument("--baseline-events", type=int, default=2000)
    parser.add_argument("--baseline-rounds", type=int, default=5)
    parser.add_argument("--emulator-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 0 < args.rate <= MAX_RATE:
        parser.error(f"--rate must be in (0, {MAX_RATE:.0f}]")
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS:.0f}] (events are sealed before the run)")
    if args.rate * args.seconds > MAX_EVENTS:
        parser.error(f"at most {MAX_EVENTS} events per run")
    if not 0 <= args.duplicates < 1:
        parser.error("--duplicates must be in [0, 1)")
    if not 1 <= args.connections <= 1024:
        parser.error("--connections must be in [1, 1024]")
    if not 0 <= args.drain_seconds <= 600:
        parser.error("--drain-seconds must be in [0, 600]")
    if not 1 <= args.baseline_events <= 100_000 or not 1 <= args.baseline_rounds <= 50:
        parser.error("--baseline-events in [1, 100000], --baseline-rounds in [1, 50]")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.emulator_child is not None:
        messages = [(str(m), str(c)) for m, c in json.loads(args.emulator_child.read_text())]
        asyncio.run(emulator_child(messages))
        return 0
    # SIGTERM unwinds like Ctrl-C, so the children and the temporary directory are cleaned up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.baseline_sdk:
        baseline = run_baseline(args)
        print_baseline(baseline)
        if args.json:
            print(json.dumps(asdict(baseline)))
        return 0
    report = run_load(args)
    print_load(report)
    if args.json:
        print(json.dumps(asdict(report)))
    return 0 if report.errors == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
