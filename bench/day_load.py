"""A user's day against the bot: chatter and commands with a long history, a burst, one big invite.

    python -m bench.day_load                                  # every scenario, human tables
    python -m bench.day_load --scenario mixed --history 1000000
    python -m bench.day_load --scenario burst --json          # one JSON line per scenario as well
    python -m bench.day_load --env BOT_INBOX_WORKERS=8        # extra bot settings

The bot is a real `invite-bot serve` in a child process with a SQLite store in a temporary directory; its
CPU and peak RSS are read from /proc, so they are the bot's alone. The emulator runs in this process, with
Feishu's limits (invite and meeting lookups 50/s and 1000/min, replies 50/s and 1000/min, 5 messages per
chat per second) and 100 ms of latency added to every invite and reply call. Each chat has one sender who
authorized the bot through the OAuth pages (a real /login, consent and callback) and hosts a meeting
that has started. Events are pushed signed and encrypted on a fixed timetable (open loop: a slow answer
never delays the next push, so the ack latency includes queueing).

Scenarios:

- mixed: 200 events/s for 20 s over 20 chats; 90 % group chatter (no mention, no command word: a bot that
  may read all group messages receives it) and 10 % `/invite <meeting> @someone`, each naming a
  different person. `--history N` first writes N remembered deliveries into the store, their expiry spread
  over the next 8 hours as a day of traffic leaves them (about 2,000 already due, so expiry runs too).
- burst: 600 one-person `/invite` commands in 10 s over 60 chats. Feishu's own floor is 600 invite calls
  at 50/s = 12 s; the figure is when the last card arrives, counted from the first push.
- crowd: one `/invite <meeting> @all` in a chat of 500 people (BOT_INVITE_CEILING and
  BOT_CONFIRM_THRESHOLD raised to 1000, so no confirmation card is asked for): 50 calls of 10 at 50/s.

A command counts as completed when its result card arrived within 30 s of the last push and every person
it named is ringing in the meeting. Everything started is stopped and the directory deleted, also on
error or Ctrl-C; only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import random
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere without installing the project
    sys.path.insert(0, str(REPO))

# After the sys.path fix above.
from bench.ack_latency import (  # noqa: E402
    HOST,
    bot_metrics,
    child_env,
    free_port,
    percentiles,
    proc_stat,
    stop_process,
    thread_cpu_seconds,
    wait_healthy,
    workspace,
)
from bot.store.sqlite import SqliteStore  # noqa: E402
from emulator import Emulator, EmulatorConfig  # noqa: E402
from emulator.config import DirectoryChat  # noqa: E402
from emulator.faults import Fault  # noqa: E402
from emulator.server import start_emulator  # noqa: E402
from tests.harness import prompt_url  # noqa: E402

EVENTS_PATH = "/feishu/events"
REQUEST_TIMEOUT = 10.0
LOGIN_TIMEOUT = 20.0
COMPLETION_WINDOW = 30.0  # seconds after the last push within which a command's card must arrive
DEDUPE_SECONDS = 8 * 3600.0
FEISHU_INVITES_PER_SECOND = 50
INVITEES_PER_CALL = 10  # the invite API takes at most 10 people per call
CHATTER = (
    "lunch at noon?",
    "the build is green again",
    "下午三点开会吗",
    "can someone review my change",
    "ok",
    "收到，谢谢",
    "I'll be five minutes late to the sync",
    "does anyone have the slides from yesterday",
)


@dataclass(frozen=True)
class Scenario:
    name: str
    events: int
    seconds: float
    chatter: float  # fraction of the events that are group chatter
    chats: int
    latency: float  # seconds added to every invite and reply call
    history: int  # remembered deliveries written into the store before the bot starts
    crowd: int = 0  # > 0: one @all invite in a chat of this many people instead of a timetable
    store: str = "sqlite"  # or "postgresql"
    replicas: int = 1  # `serve` processes sharing the store (PostgreSQL only beyond 1)
    transport: str = "webhook"  # or "long-connection": pushes go down the bot's WebSocket


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    return [dataclasses.replace(scenario, transport=args.transport) for scenario in _scenarios(args)]


def _scenarios(args: argparse.Namespace) -> list[Scenario]:
    histories = [0, 1_000_000] if args.history is None else [args.history]
    store, replicas, events = args.store, args.replicas, round(args.rate * 20)
    if args.scenario == "replicas":
        # The mixed load on SQLite, then on PostgreSQL with 1, 2 and 3 replicas.
        fleets = [("sqlite", 1)] + [("postgresql", n) for n in (1, 2, 3)]
        return [
            Scenario("mixed", events, 20.0, 0.9, 20, args.latency, 0, store=s, replicas=n) for s, n in fleets
        ]
    mixed = [
        Scenario("mixed", events, 20.0, 0.9, 20, args.latency, history, store=store, replicas=replicas)
        for history in histories
    ]
    burst = Scenario("burst", 600, 10.0, 0.0, 60, args.latency, 0, store=store, replicas=replicas)
    crowd = Scenario("crowd", 1, 0.0, 0.0, 1, args.latency, 0, crowd=500, store=store, replicas=replicas)
    chosen = {"mixed": mixed, "burst": [burst], "crowd": [crowd]}
    return chosen.get(args.scenario, [*mixed, burst, crowd])


# --- the tenant ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Team:
    """One group chat: its host (who authorized the bot and types the commands), the others, a meeting."""

    chat_id: str
    host: str
    members: tuple[str, ...]
    meeting_id: str
    meeting_no: str


def tenant(chats: int, members_per_chat: int) -> tuple[EmulatorConfig, list[Team]]:
    base = EmulatorConfig().with_generated_users(chats * members_per_chat)
    generated = [user.open_id for user in base.users if user.open_id.startswith("ou_gen")]
    teams = []
    for index in range(chats):
        members = tuple(generated[index * members_per_chat : (index + 1) * members_per_chat])
        teams.append(
            Team(
                chat_id=f"oc_benchteam{index:020d}",
                host=members[0],
                members=members,
                meeting_id=f"7{index:018d}",
                meeting_no=f"{800_000_000 + index}",
            )
        )
    chats_config = [
        DirectoryChat(chat_id=team.chat_id, name=f"Team {i}", members=team.members, owner_id=team.host)
        for i, team in enumerate(teams)
    ]
    config = EmulatorConfig.model_validate({**base.model_dump(), "chats": chats_config})
    return config, teams


def open_meetings(emulator: Emulator, teams: Sequence[Team]) -> None:
    for team in teams:
        emulator.add_meeting(
            meeting_id=team.meeting_id,
            meeting_no=team.meeting_no,
            host=team.host,
            participants=(team.host,),
            capacity=1000,
        )


async def authorize(emulator: Emulator, team: Team) -> None:
    """What a person does once: /login in the group, open the link, consent, land on the bot's page."""
    await emulator.say(team.host, team.chat_id, "/login")
    prompts = await emulator.wait_for_ephemeral(1, open_id=team.host, timeout=LOGIN_TIMEOUT)
    landing = emulator.authorize(prompt_url(prompts[0].card), as_user=team.host)
    async with aiohttp.ClientSession() as session, session.get(landing, allow_redirects=False) as page:
        if page.status != 200:
            raise RuntimeError(f"the OAuth callback answered {page.status}")
    await emulator.wait_for_messages(1, chat_id=team.chat_id, timeout=LOGIN_TIMEOUT)


async def authorize_all(emulator: Emulator, teams: Sequence[Team]) -> None:
    gate = asyncio.Semaphore(8)

    async def one(team: Team) -> None:
        async with gate:
            await authorize(emulator, team)

    await asyncio.gather(*(one(team) for team in teams))


def add_latency(emulator: Emulator, seconds: float) -> None:
    if seconds > 0:
        for route in ("invite", "reply"):
            emulator.add_fault(Fault(route=route, status=None, delay_seconds=seconds, times=10_000))


# --- the history ---------------------------------------------------------------------------------------


async def prefill(path: Path, keys: int, now: float) -> None:
    """`keys` remembered deliveries, as 8 hours of traffic leave them: expiries spread evenly from one
    minute ago (already due, so the purge has work) to the end of the dedupe window."""
    store = await SqliteStore.open(str(path))  # the bot's own schema
    await store.close()
    if keys <= 0:
        return
    first, span = now - 60.0, DEDUPE_SECONDS + 60.0
    rows = ((f"message:om_history{i:012d}", first + span * i / keys) for i in range(keys))
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany("INSERT INTO delivery (dedupe_key, dedupe_until) VALUES (?, ?)", rows)


def remembered_deliveries(path: Path) -> int:
    """Delivery keys in the store now, read beside the running bot (WAL readers do not block it)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM delivery").fetchone()[0])


# --- the timetable -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Push:
    payload: dict[str, Any]
    at: float  # seconds after the start
    command: tuple[Team, str] | None = None  # (team, invitee) for an /invite


def timetable(
    emulator: Emulator, scenario: Scenario, teams: Sequence[Team], rng: random.Random
) -> list[Push]:
    """Commands evenly spread among the chatter; command k goes to chat k mod n and names that chat's
    next person, so no one is invited twice."""
    bot = emulator.config.bot_open_id
    share = 1.0 - scenario.chatter
    pushes: list[Push] = []
    commands = 0
    for index in range(scenario.events):
        at = scenario.seconds * index / scenario.events
        if math.floor(index * share) != math.floor((index - 1) * share):
            team = teams[commands % len(teams)]
            invitee = team.members[1 + commands // len(teams)]
            text = f"@_user_1 /invite {team.meeting_no} @_user_2"
            payload = emulator.build_message_event(team.host, team.chat_id, text, mentions=[bot, invitee])
            pushes.append(Push(payload, at, (team, invitee)))
            commands += 1
        else:
            team = rng.choice(teams)
            sender = rng.choice(team.members)
            payload = emulator.build_message_event(sender, team.chat_id, rng.choice(CHATTER))
            pushes.append(Push(payload, at))
    return pushes


@dataclass
class Pushed:
    push: Push
    message_id: str
    sent_at: float  # wall clock (the emulator's), when the push was due
    ack_ms: float  # from when it was due to the bot's answer
    status: int  # 0: no answer


async def drive(emulator: Emulator, pushes: Sequence[Push], hooks: Sequence[str]) -> list[Pushed]:
    """Push i goes to replica i mod n, as a balancer in front of them would spread Feishu's pushes."""

    async def one(push: Push, due: float, due_wall: float, hook: str) -> Pushed:
        message_id = str(push.payload["event"]["message"]["message_id"])
        emulator.webhook_url = hook  # read by `push` before its first await
        try:
            status = (await emulator.push(push.payload, timeout=REQUEST_TIMEOUT)).status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        return Pushed(push, message_id, due_wall, (time.perf_counter() - due) * 1000, status)

    start, start_wall = time.perf_counter() + 0.05, time.time() + 0.05
    tasks = []
    for index, push in enumerate(pushes):
        due = start + push.at
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        hook = hooks[index % len(hooks)]
        tasks.append(asyncio.create_task(one(push, due, start_wall + push.at, hook)))
    return list(await asyncio.gather(*tasks))


async def wait_for_cards(emulator: Emulator, commands: set[str], within: float) -> dict[str, float]:
    """Arrival time (wall clock, s) of the bot's reply to each command message, waiting at most `within`."""
    deadline = time.monotonic() + within
    while True:
        cards = {m.reply_to: m.create_time / 1000 for m in emulator.messages if m.reply_to in commands}
        if len(cards) >= len(commands) or time.monotonic() >= deadline:
            return {key: at for key, at in cards.items() if key is not None}
        await asyncio.sleep(0.05)


# --- one run -------------------------------------------------------------------------------------------


@dataclass
class Report:
    scenario: str
    transport: str
    store: str
    replicas: int
    history: int
    remembered_at_end: int  # delivery keys in the store when the last card arrived
    events: int
    commands: int
    non_200: int
    ack_ms: dict[str, float]
    card_ms: dict[str, float]
    completed: int  # card arrived in time and everyone named is ringing
    invited: int  # people ringing in the meetings, of those named
    first_push_to_last_card_s: float
    platform_floor_s: float  # invite calls / 50 per second; 0 when they fit one second's window
    bot_cpu_s: float
    event_loop_cpu_s: float  # the main thread's share; the rest is SQLite's threads
    cpu_ms_per_event: float
    database_cpu_s: float  # PostgreSQL's server processes over the same window (0 for SQLite)
    bot_peak_rss_mib: float  # the largest replica's
    rate_limited_answers: int  # 99991400 answers the bot got from the emulator (retried, not shown)
    ignored: int  # chatter the bot acknowledged without queueing
    settings: dict[str, str] = field(default_factory=dict)


def bot_environment(
    config: EmulatorConfig, emulator_url: str, port: int, public_port: int, store_url: str
) -> dict[str, str]:
    return {
        "FEISHU_APP_ID": config.app_id,
        "FEISHU_APP_SECRET": config.app_secret,
        "FEISHU_VERIFICATION_TOKEN": config.verification_token,
        "FEISHU_ENCRYPT_KEY": config.encrypt_key,
        "FEISHU_DOMAIN": emulator_url,
        "BOT_HOST": HOST,
        "BOT_PORT": str(port),
        # Replicas share one public URL (a balancer's); here the first replica's, where OAuth lands.
        "BOT_PUBLIC_URL": f"http://{HOST}:{public_port}",
        "BOT_STORE_URL": store_url,
        "BOT_SECRET_KEY": "bench-" + "k" * 42,
        "BOT_LOG_LEVEL": "warning",
        "BOT_SHUTDOWN_TIMEOUT": "3",
    }


def start_bot(settings: dict[str, str], tmp: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from bot.cli import main; main()", "serve"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=child_env(settings),
        cwd=tmp,  # so no developer .env is picked up
    )


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    base: str
    log: Path


@contextlib.asynccontextmanager
async def store_for(scenario: Scenario, tmp: Path, postgres_url: str) -> AsyncIterator[RunStore]:
    """A fresh store for one run, prefilled with the scenario's history: a SQLite file, or a PostgreSQL
    schema of its own (dropped afterwards)."""
    now = time.time()
    if scenario.store == "sqlite":
        path = tmp / "bot.db"
        await prefill(path, scenario.history, now)
        yield RunStore(f"sqlite:///{path}", lambda: asyncio.to_thread(remembered_deliveries, path))
        return
    import asyncpg

    from bot.store.postgres import PostgresStore

    schema = f"bench_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(postgres_url, timeout=5)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}search_path={schema}"
        store = await PostgresStore.open(url)  # the bot's own schema, migrated
        await store.close()
        if scenario.history:
            first, span = now - 60.0, DEDUPE_SECONDS + 60.0
            await admin.execute(
                f"INSERT INTO {schema}.delivery (dedupe_key, dedupe_until) SELECT 'message:om_history' || n,"  # noqa: S608 - our own schema name
                " $1 + $2 * n / $3 FROM generate_series(0, $3 - 1) AS n",
                first,
                span,
                scenario.history,
            )
            await admin.execute(f"ANALYZE {schema}.delivery")

        async def count() -> int:
            return int(await admin.fetchval(f"SELECT count(*) FROM {schema}.delivery"))  # noqa: S608 - ours

        yield RunStore(url, count)
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


@dataclass(frozen=True)
class RunStore:
    url: str
    remembered: Callable[[], Awaitable[int]]


async def run(scenario: Scenario, extra_env: dict[str, str], postgres_url: str) -> Report:
    members = 1 + math.ceil(scenario.events * (1 - scenario.chatter) / scenario.chats) + 4
    config, teams = tenant(scenario.chats, max(members, scenario.crowd + 1))
    with workspace() as tmp:
        async with store_for(scenario, tmp, postgres_url) as store:
            emulator, runner, emulator_url = await start_emulator(config, HOST, 0)
            ports = [free_port() for _ in range(scenario.replicas)]
            settings = {}
            replicas: list[Replica] = []
            try:
                with contextlib.ExitStack() as logs:
                    for index, port in enumerate(ports):
                        settings = {
                            **bot_environment(config, emulator_url, port, ports[0], store.url),
                            **extra_env,
                        }
                        if scenario.crowd:
                            settings.update(BOT_INVITE_CEILING="1000", BOT_CONFIRM_THRESHOLD="1000")
                        if scenario.transport == "long-connection":
                            settings["BOT_EVENT_TRANSPORT"] = "long-connection"
                            emulator.transport = "long-connection"
                        log_path = tmp / f"bot{index}.log"
                        process = start_bot(settings, tmp, logs.enter_context(log_path.open("wb")))
                        replicas.append(Replica(process, f"http://{HOST}:{port}", log_path))
                    try:
                        return await measure(scenario, emulator, teams, replicas, store, settings)
                    except Exception:
                        for replica in replicas:
                            print(replica.log.read_bytes()[-3000:].decode(errors="replace"), file=sys.stderr)
                        raise
            finally:
                await asyncio.gather(*(asyncio.to_thread(stop_process, r.process) for r in replicas))
                await emulator.close()
                await runner.cleanup()


def postgres_cpu_seconds() -> float:
    """utime+stime of every PostgreSQL server process on this machine (their /proc is readable)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            if (entry / "comm").read_text().strip().startswith("postgres"):
                total += proc_stat(int(entry.name)).cpu_seconds
    return total


async def measure(
    scenario: Scenario,
    emulator: Emulator,
    teams: list[Team],
    replicas: list[Replica],
    store: RunStore,
    settings: dict[str, str],
) -> Report:
    for replica in replicas:
        await wait_healthy(replica.base, replica.process)
    hooks = [replica.base + EVENTS_PATH for replica in replicas]
    emulator.webhook_url = hooks[0]
    if scenario.transport == "long-connection":
        for _ in range(200):  # every replica dials in
            if len(emulator.long_connection.connections) >= len(replicas):
                break
            await asyncio.sleep(0.05)
    open_meetings(emulator, teams)
    await authorize_all(emulator, teams)
    add_latency(emulator, scenario.latency)
    if scenario.crowd:
        team = teams[0]
        crowd = emulator.build_say_event(team.host, team.chat_id, f"/invite {team.meeting_no} @all")
        pushes = [Push(crowd, 0.0, (team, "@all"))]
    else:
        pushes = timetable(emulator, scenario, teams, random.Random(11))
    pids = [replica.process.pid for replica in replicas]
    async with aiohttp.ClientSession() as session:
        before = [await bot_metrics(session, replica.base) for replica in replicas]
        cpu_before = sum(proc_stat(pid).cpu_seconds for pid in pids)
        loop_before = sum(thread_cpu_seconds(pid).get(pid, 0.0) for pid in pids)
        database_before = postgres_cpu_seconds() if scenario.store == "postgresql" else 0.0
        pushed = await drive(emulator, pushes, hooks)
        commands = {p.message_id: p for p in pushed if p.push.command is not None}
        cards = await wait_for_cards(emulator, set(commands), COMPLETION_WINDOW)
        ends = [proc_stat(pid) for pid in pids]
        database_cpu = postgres_cpu_seconds() - database_before if scenario.store == "postgresql" else 0.0
        loop_cpu = sum(thread_cpu_seconds(pid).get(pid, 0.0) for pid in pids) - loop_before
        remembered = await store.remembered()
        after = [await bot_metrics(session, replica.base) for replica in replicas]
        raws = [await (await session.get(f"{replica.base}/metrics")).text() for replica in replicas]

    completed = invited = calls = 0
    for message_id, item in commands.items():
        assert item.push.command is not None
        team, invitee = item.push.command
        meeting = emulator.meeting(team.meeting_id)
        ringing = set(meeting.ringing) | set(meeting.unanswered)  # rung, whether or not still ringing
        named = set(team.members[1:]) if invitee == "@all" else {invitee}
        invited += len(named & ringing)
        calls += math.ceil(len(named) / INVITEES_PER_CALL)
        if message_id in cards and named <= ringing:
            completed += 1
    card_ms = [(cards[m] - item.sent_at) * 1000 for m, item in commands.items() if m in cards]
    first = min(p.sent_at for p in pushed)
    cpu = sum(end.cpu_seconds for end in ends) - cpu_before
    limited = sum(
        float(line.rsplit(" ", 1)[1])
        for raw in raws
        for line in raw.splitlines()
        if line.startswith("invite_bot_openapi_calls_total{") and 'result="99991400"' in line
    )
    ignored = sum(
        a.get("invite_bot_events_ignored", 0.0) - b.get("invite_bot_events_ignored", 0.0)
        for a, b in zip(after, before, strict=True)
    )
    return Report(
        scenario=scenario.name,
        transport=scenario.transport,
        store=scenario.store,
        replicas=scenario.replicas,
        history=scenario.history,
        remembered_at_end=remembered,
        events=len(pushed),
        commands=len(commands),
        non_200=sum(1 for p in pushed if p.status != 200),
        ack_ms=percentiles([p.ack_ms for p in pushed]),
        card_ms=percentiles(card_ms),
        completed=completed,
        invited=invited,
        first_push_to_last_card_s=(max(cards.values()) - first) if cards else math.nan,
        platform_floor_s=calls / FEISHU_INVITES_PER_SECOND if calls > FEISHU_INVITES_PER_SECOND else 0.0,
        bot_cpu_s=cpu,
        event_loop_cpu_s=loop_cpu,
        cpu_ms_per_event=1000 * cpu / len(pushed),
        database_cpu_s=database_cpu,
        bot_peak_rss_mib=max(end.peak_rss_kib for end in ends) / 1024,
        rate_limited_answers=round(limited),
        ignored=round(ignored),
        settings={k: v for k, v in settings.items() if k in ("BOT_INBOX_WORKERS",)},
    )


# --- output --------------------------------------------------------------------------------------------


def print_report(report: Report) -> None:
    ack, card = report.ack_ms, report.card_ms
    fleet = (
        f"{report.transport}, {report.store}, {report.replicas} replica{'s' if report.replicas > 1 else ''}"
    )
    print(f"\n== {report.scenario}, {fleet}, history {report.history:,} remembered deliveries ==")
    print(f"remembered at the end  {report.remembered_at_end:,} delivery keys")
    print(f"pushes                 {report.events:,}, {report.non_200} not answered 200")
    print(f"chatter ignored        {report.ignored:,} (acknowledged, never queued)")
    print(f"ack                    p50 {ack['p50']:.1f} ms, p99 {ack['p99']:.1f} ms, max {ack['max']:.1f} ms")
    print(
        f"message -> card        p50 {card['p50']:.0f} ms, p99 {card['p99']:.0f} ms, max {card['max']:.0f} ms"
    )
    print(f"commands completed     {report.completed} of {report.commands} ({report.invited} people ringing)")
    pace = (
        f"Feishu's pace: {report.platform_floor_s:.2f} s for the invite calls at 50/s"
        if report.platform_floor_s
        else "the invite calls fit one second of Feishu's 50/s"
    )
    print(f"first push, last card  {report.first_push_to_last_card_s:.2f} s ({pace})")
    threads = report.bot_cpu_s - report.event_loop_cpu_s
    print(
        f"bot CPU                {report.bot_cpu_s:.2f} s = {report.cpu_ms_per_event:.3f} ms per event "
        f"(event loop {report.event_loop_cpu_s:.2f} s, SQLite threads {threads:.2f} s)"
    )
    if report.store == "postgresql":
        print(f"PostgreSQL CPU         {report.database_cpu_s:.2f} s (its server processes, same window)")
    print(f"bot peak RSS           {report.bot_peak_rss_mib:.1f} MiB (the largest replica)")
    print(f"429 answers to the bot {report.rate_limited_answers}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=("all", "mixed", "burst", "crowd", "replicas"), default="all")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s of the mixed load (20 s)")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--transport", choices=("webhook", "long-connection"), default="webhook")
    parser.add_argument(
        "--replicas", type=int, default=1, help="serve processes (PostgreSQL for more than 1)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test",
        help="a server to create a schema of its own in (dropped afterwards)",
    )
    parser.add_argument("--history", type=int, default=None, help="remembered deliveries to prefill")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added to invite and reply")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per scenario")
    args = parser.parse_args(argv)
    if args.history is not None and not 0 <= args.history <= 5_000_000:
        parser.error("--history must be between 0 and 5,000,000")
    if not 1 <= args.replicas <= 8 or (args.replicas > 1 and args.store != "postgresql"):
        parser.error("--replicas is 1-8, and more than 1 needs --store postgresql")
    if not 10 <= args.rate <= 1000:
        parser.error("--rate must be between 10 and 1000 events/s")
    if not 0 <= args.latency <= 2:
        parser.error("--latency must be between 0 and 2 seconds")
    for item in args.env:
        if "=" not in item or not item.startswith("BOT_"):
            parser.error(f"--env takes BOT_NAME=value, not {item!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.env)
    failed = False
    for scenario in scenarios(args):
        report = asyncio.run(run(scenario, extra, args.postgres_url))
        print_report(report)
        if args.json:
            print(json.dumps(asdict(report)))
        failed |= report.completed < report.commands or report.non_200 > 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
