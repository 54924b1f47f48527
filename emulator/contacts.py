"""Who is who: a chat's members (im/v1) and user IDs by e-mail or mobile (contact/v3, feishu-protocol §8)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from emulator import replies
from emulator.config import DirectoryUser, EmulatorConfig
from emulator.gateway import Gateway, require_app_scope
from emulator.ratelimit import PER_MINUTE, PER_SECOND, RateLimit
from emulator.replies import Refusal

# Doc: "Enable any scope from the list".
MEMBER_SCOPES = ("im:chat", "im:chat.group_info:readonly", "im:chat.members:read", "im:chat:readonly")
CONTACT_SCOPES = ("contact:user.id:readonly",)
# `status` in a batch_get_id answer needs one of these field scopes (doc); without them it is left out.
STATUS_FIELD_SCOPES = (
    "contact:user.employee:readonly",
    "contact:contact:access_as_app",
    "contact:contact:readonly",
    "contact:contact:readonly_as_app",
)
ID_TYPES = ("open_id", "union_id", "user_id")
MEMBERS_PAGE_DEFAULT, MEMBERS_PAGE_MAX = 20, 100
MAX_LOOKUPS = 50


class ContactRoutes:
    def __init__(self, config: EmulatorConfig, gateway: Gateway) -> None:
        self._config = config
        self._gateway = gateway
        self.members_limit = RateLimit([(50, PER_SECOND), (1000, PER_MINUTE)], gateway.now)
        self.lookup_limit = RateLimit([(50, PER_SECOND), (1000, PER_MINUTE)], gateway.now)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/open-apis/im/v1/chats/{chat_id}/members", self.chat_members),
            web.post("/open-apis/contact/v3/users/batch_get_id", self.batch_get_id),
        ]

    # --- GET /im/v1/chats/:chat_id/members -----------------------------------------------------------------

    async def chat_members(self, request: web.Request) -> web.Response:
        try:
            await self._gateway.begin(request, "chat_members")
            acting_user = self._gateway.authorize_any(request, self._config.app_scopes, MEMBER_SCOPES)
            self.members_limit.check()
            id_type = _choice(request.query.get("member_id_type"), "member_id_type")
            size = _page_size(request.query.get("page_size"))
            offset = _page_offset(request.query.get("page_token"))
            chat = self._config.chat(request.match_info["chat_id"])
            if chat is None:
                raise Refusal(replies.error(replies.CHAT_ID_INVALID))
            # The operator (the bot for a tenant token, else the user) must be in the chat.
            inside = chat.bot_is_member if acting_user is None else acting_user in chat.members
            if not inside:
                raise Refusal(replies.error(replies.CHAT_OPERATOR_NOT_IN_CHAT))
        except Refusal as refusal:
            return refusal.response
        # "This API doesn't return the bot in a group" (doc): people only.
        people = [who for who in chat.members if who != self._config.bot_open_id]
        page = people[offset : offset + size]
        items = []
        for open_id in page:
            user = self._config.user(open_id)
            items.append(
                {
                    "member_id_type": id_type,
                    "member_id": _id_of(user, open_id, id_type),
                    "name": user.name if user is not None else "",
                    "tenant_key": self._config.tenant_key,
                }
            )
        has_more = offset + size < len(people)
        data: dict[str, Any] = {"items": items, "has_more": has_more, "member_total": len(people)}
        if has_more:
            data["page_token"] = base64.urlsafe_b64encode(f"m:{offset + size}".encode()).decode()
        return replies.ok({"code": 0, "msg": "success", "data": data})

    # --- POST /contact/v3/users/batch_get_id ---------------------------------------------------------------

    async def batch_get_id(self, request: web.Request) -> web.Response:
        try:
            _, body = await self._gateway.begin(request, "batch_get_id")
            self._gateway.authorize_tenant(request)  # tenant_access_token only (doc)
            require_app_scope(self._config.app_scopes, CONTACT_SCOPES)
            self.lookup_limit.check()
            id_type = _choice(request.query.get("user_id_type"), "user_id_type")
            if body is None:
                body = {}
            if not isinstance(body, dict):
                raise Refusal(replies.field_violation("body", "must be a JSON object"))
            emails = _strings(body, "emails")
            mobiles = _strings(body, "mobiles")
            include_resigned = body.get("include_resigned", False)
            if not isinstance(include_resigned, bool):
                raise Refusal(replies.field_violation("include_resigned", "must be a boolean"))
        except Refusal as refusal:
            return refusal.response
        with_status = any(scope in self._config.app_scopes for scope in STATUS_FIELD_SCOPES)
        found: list[dict[str, Any]] = []
        for email in emails:
            user = next((u for u in self._config.users if u.email and u.email.lower() == email.lower()), None)
            found.append(self._entry({"email": email}, user, id_type, include_resigned, with_status))
        for mobile in mobiles:
            user = next((u for u in self._config.users if u.mobile and u.mobile == mobile), None)
            found.append(self._entry({"mobile": mobile}, user, id_type, include_resigned, with_status))
        return replies.ok({"code": 0, "msg": "success", "data": {"user_list": found}})

    def _entry(
        self,
        entry: dict[str, Any],
        user: DirectoryUser | None,
        id_type: str,
        include_resigned: bool,
        with_status: bool,
    ) -> dict[str, Any]:
        # Not found, not visible or resigned (without include_resigned): only what was asked, no user_id.
        if user is None or (user.resigned and not include_resigned):
            return entry
        entry["user_id"] = _id_of(user, user.open_id, id_type)
        if with_status:
            entry["status"] = {
                "is_frozen": False,
                "is_resigned": user.resigned,
                "is_activated": not user.resigned,
                "is_exited": user.resigned,
                "is_unjoin": False,
            }
        return entry


def _id_of(user: DirectoryUser | None, open_id: str, id_type: str) -> str:
    if user is None or id_type == "open_id":
        return open_id
    return str(getattr(user, id_type)) or open_id


def _choice(value: str | None, field: str) -> str:
    if value is None or value == "":
        return "open_id"
    if value not in ID_TYPES:
        raise Refusal(replies.field_violation(field, "must be one of " + "|".join(ID_TYPES)))
    return value


def _page_size(value: str | None) -> int:
    if value is None or value == "":
        return MEMBERS_PAGE_DEFAULT
    if not value.isdigit() or not 1 <= int(value) <= MEMBERS_PAGE_MAX:
        raise Refusal(
            replies.field_violation("page_size", f"must be an integer from 1 to {MEMBERS_PAGE_MAX}")
        )
    return int(value)


def _page_offset(token: str | None) -> int:
    if token is None or token == "":
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith("m:") or not text[2:].isdigit():
        raise Refusal(replies.error(replies.CHAT_INVALID_PARAM, detail="ext=invalid page_token"))
    return int(text[2:])


def _strings(body: dict[str, Any], field: str) -> list[str]:
    value = body.get(field, [])
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Refusal(replies.field_violation(field, "must be a list of strings"))
    # "Data validation rules: Maximum length: 50" (doc) → the gateway's field validation.
    if len(value) > MAX_LOOKUPS:
        raise Refusal(replies.field_violation(field, f"must hold at most {MAX_LOOKUPS} entries"))
    return list(value)
