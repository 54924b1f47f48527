"""What a live result card costs Feishu: Open API calls per watched meeting per minute.

`N` result cards on one meeting (N /invite commands in one chat, each ringing Bob), the bot at its service
pace (a read every 5 s) for one full watch of `--watch` seconds; Bob answers after `--answer` seconds.
Counts, from the emulator's own record, the meeting reads (GET /meetings/:id?with_participants=true) and
the card updates (PATCH /im/v1/messages/:id) made while the cards followed the meeting.

    .venv/bin/python -m bench.live_card --cards 50 --watch 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.config import MEETING_IN_PROGRESS
from tests.harness import ALICE, BOB, authorize, invite, open_harness


async def run(cards: int, watch: float, answer: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        world = await open_harness(Path(folder), bot_meeting_watch_seconds=watch)
        try:
            world.watch_every_seconds = 5.0  # the service pace (tests read every 0.2 s)
            await world.start_bot()
            await authorize(world, ALICE)
            await world.emulator.wait_for_messages(1)
            world.emulator.answer_when_invited(BOB, "join", answer)
            began = time.time()
            for _ in range(cards):
                await invite(world, "/invite 123456789 @Bob")
            posted = time.time() - began
            await asyncio.sleep(watch + 6)
            span = time.time() - began
            reads = [
                r
                for r in world.emulator.requests
                if r.path == f"/open-apis/vc/v1/meetings/{MEETING_IN_PROGRESS}"
                and r.query.get("with_participants") == "true"
            ]
            patches = [
                r for r in world.emulator.requests if r.method == "PATCH" and "/im/v1/messages/" in r.path
            ]
            minutes = max(r.at for r in reads) - min(r.at for r in reads) if reads else 0.0
            return {
                "cards": cards,
                "watch_s": watch,
                "posting_s": round(posted, 2),
                "span_s": round(span, 1),
                "meeting_reads": len(reads),
                "reads_per_minute": round(len(reads) / (minutes / 60), 1) if minutes else 0.0,
                "card_updates": len(patches),
                "updates_per_card": round(len(patches) / cards, 2),
            }
        finally:
            await world.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=50)
    parser.add_argument("--watch", type=float, default=60.0)
    parser.add_argument("--answer", type=float, default=20.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.cards, args.watch, args.answer))))


if __name__ == "__main__":
    main()
