"""Finding the meeting: a number resolved to the meeting in progress, and the one a sender last used.

Which meeting the user is in now is asked separately (current.py), when Feishu lets us. A meeting number
is reused over time, so `list_by_no` over a recent window gives candidates and `GET /meetings/:id`
tells which one is in progress.
`list_by_no` allows 100 calls a minute per app, so its answers are cached for a while.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass

from bot.clock import Clock
from bot.feishu.client import FeishuClient
from bot.feishu.errors import FeishuApiError
from bot.feishu.models import Meeting
from bot.store import Store

# Meetings started this long ago or less are considered; a longer one is rare enough to ignore.
SEARCH_BACK_SECONDS = 2 * 24 * 3600
SEARCH_AHEAD_SECONDS = 3600
CANDIDATES_TTL_SECONDS = 600.0
MAX_PAGES = 5
LAST_MEETING_NAMESPACE = "last_meeting"
LAST_MEETING_TTL_SECONDS = 24 * 3600.0
# GET answers 121004 for an id it does not know and 121005 for one this user may not see (reference
# §7.2: "only your own meetings"); either way that candidate is not the user's meeting.
NOT_YOURS = frozenset({121004, 121005})
_CACHED_NUMBERS = 1024


@dataclass(frozen=True)
class _Candidates:
    meeting_ids: tuple[str, ...]
    fetched_at: float


class MeetingFinder:
    def __init__(self, client: FeishuClient, store: Store, clock: Clock) -> None:
        self._client = client
        self._store = store
        self._clock = clock
        # Per tenant and number: another tenant's meeting with the same number is not ours to try.
        self._candidates: OrderedDict[tuple[str, str], _Candidates] = OrderedDict()

    async def in_progress(self, tenant_key: str, meeting_no: str, access_token: str) -> Meeting | None:
        """The meeting with this number that is in progress now, if any."""
        key = (tenant_key, meeting_no)
        cached = self._candidates.get(key)
        fresh = cached is not None and self._clock() - cached.fetched_at < CANDIDATES_TTL_SECONDS
        if cached is not None and fresh:
            ids = cached.meeting_ids
        else:
            ids = await self._list(key, access_token)
        meeting = await self._first_in_progress(ids, access_token)
        if meeting is None and fresh:
            # The cached candidates are over; a new meeting may have started under the same number.
            meeting = await self._first_in_progress(await self._list(key, access_token), access_token)
        return meeting

    async def by_id(self, meeting_id: str, access_token: str) -> Meeting | None:
        try:
            return await self._client.get_meeting(meeting_id, user_access_token=access_token)
        except FeishuApiError as error:
            if error.code in NOT_YOURS:
                return None
            raise

    async def remembered_id(self, tenant_key: str, chat_id: str, open_id: str) -> str | None:
        """The id of the meeting this sender last used in this chat (it may have ended since)."""
        stored = await self._store.get(
            LAST_MEETING_NAMESPACE, _key(tenant_key, chat_id, open_id), now=self._clock()
        )
        if stored is None:
            return None
        meeting_id = json.loads(stored.value).get("meeting_id")
        return meeting_id if isinstance(meeting_id, str) else None

    async def live_by_id(self, meeting_id: str, access_token: str) -> Meeting | None:
        """The meeting with this id, if it is in progress and this user may see it."""
        meeting = await self.by_id(meeting_id, access_token)
        return meeting if meeting is not None and meeting.in_progress else None

    async def remembered(
        self, tenant_key: str, chat_id: str, open_id: str, access_token: str
    ) -> Meeting | None:
        """The meeting this sender last used in this chat, while it is still in progress."""
        meeting_id = await self.remembered_id(tenant_key, chat_id, open_id)
        return None if meeting_id is None else await self.live_by_id(meeting_id, access_token)

    async def remember(self, tenant_key: str, chat_id: str, open_id: str, meeting: Meeting) -> None:
        value = json.dumps({"meeting_id": meeting.id}).encode()
        await self._store.put(
            LAST_MEETING_NAMESPACE,
            _key(tenant_key, chat_id, open_id),
            value,
            expires_at=self._clock() + LAST_MEETING_TTL_SECONDS,
        )

    async def _list(self, key: tuple[str, str], access_token: str) -> tuple[str, ...]:
        meeting_no = key[1]
        now = int(self._clock())
        ids: list[str] = []
        page_token: str | None = None
        for _ in range(MAX_PAGES):
            page = await self._client.list_meetings_by_no(
                meeting_no,
                start_time=now - SEARCH_BACK_SECONDS,
                end_time=now + SEARCH_AHEAD_SECONDS,
                user_access_token=access_token,
                page_token=page_token,
            )
            ids.extend(brief.id for brief in page.meeting_briefs)
            if not page.has_more or not page.page_token:
                break
            page_token = page.page_token
        # Newest first: meeting ids grow with time, and the latest one is the likeliest to be live.
        ordered = tuple(
            sorted(dict.fromkeys(ids), key=lambda meeting_id: (len(meeting_id), meeting_id), reverse=True)
        )
        self._candidates[key] = _Candidates(ordered, self._clock())
        self._candidates.move_to_end(key)
        while len(self._candidates) > _CACHED_NUMBERS:
            self._candidates.popitem(last=False)
        return ordered

    async def _first_in_progress(self, meeting_ids: tuple[str, ...], access_token: str) -> Meeting | None:
        for meeting_id in meeting_ids:
            meeting = await self.by_id(meeting_id, access_token)
            if meeting is not None and meeting.in_progress:
                return meeting
        return None


def _key(tenant_key: str, chat_id: str, open_id: str) -> str:
    return f"{tenant_key}/{chat_id}/{open_id}"
