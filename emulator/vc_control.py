"""`/_emulator/meetings…`, `/_emulator/invite-calls`, `/_emulator/fail-invitee`: meetings driven over HTTP.

Same rules as `control`: JSON in and out, anything malformed is a 400 with a reason, never a 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulator.config import DirectoryMeeting
from emulator.control import _bad, _first, _json_object, _Refused

if TYPE_CHECKING:
    from emulator.emulator import Emulator


class _Person(BaseModel):
    model_config = ConfigDict(extra="forbid")

    open_id: str = Field(min_length=1, max_length=256)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    open_id: str = Field(min_length=1, max_length=256)
    answer: Literal["join", "decline", "leave"]
    after_seconds: float = Field(default=0, ge=0, le=3600)
    then: Literal["leave"] | None = None
    then_after_seconds: float = Field(default=0, ge=0, le=3600)


class _Lock(BaseModel):
    model_config = ConfigDict(extra="forbid")

    locked: bool = Field(default=True, strict=True)


class _FailInvitee(BaseModel):
    model_config = ConfigDict(extra="forbid")

    open_id: str = Field(min_length=1, max_length=256)
    code: int = Field(default=2, ge=2, le=2_000_000_000)
    times: int | None = Field(default=None, ge=1, le=10_000)


Handler = Callable[[web.Request], Awaitable[web.Response]]


def vc_control_routes(emulator: Emulator) -> list[web.RouteDef]:
    async def body_of(request: web.Request, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate(await _json_object(request))
        except _Refused as refused:
            raise _Bad(str(refused)) from None
        except ValidationError as error:
            raise _Bad(_first(error)) from None

    def guarded(handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except _Bad as bad:
                return _bad(str(bad))
            except KeyError:
                return web.json_response({"error": "no such meeting"}, status=404)
            except ValueError as error:
                return _bad(str(error))

        return run

    async def meetings(request: web.Request) -> web.Response:
        return web.json_response({"meetings": [m.as_json() for m in emulator.meetings]})

    async def add_meeting(request: web.Request) -> web.Response:
        spec = await body_of(request, DirectoryMeeting)
        return web.json_response({"meeting": emulator.add_meeting(spec).as_json()})

    async def end(request: web.Request) -> web.Response:
        meeting_id = request.match_info["meeting_id"]
        emulator.end_meeting(meeting_id)
        return web.json_response({"meeting": emulator.meeting(meeting_id).as_json()})

    async def join(request: web.Request) -> web.Response:
        person = await body_of(request, _Person)
        meeting_id = request.match_info["meeting_id"]
        emulator.join_meeting(meeting_id, person.open_id)
        return web.json_response({"meeting": emulator.meeting(meeting_id).as_json()})

    async def leave(request: web.Request) -> web.Response:
        person = await body_of(request, _Person)
        meeting_id = request.match_info["meeting_id"]
        emulator.leave_meeting(meeting_id, person.open_id)
        return web.json_response({"meeting": emulator.meeting(meeting_id).as_json()})

    async def decline(request: web.Request) -> web.Response:
        person = await body_of(request, _Person)
        meeting_id = request.match_info["meeting_id"]
        emulator.decline_meeting(meeting_id, person.open_id)
        return web.json_response({"meeting": emulator.meeting(meeting_id).as_json()})

    async def answers(request: web.Request) -> web.Response:
        plan = await body_of(request, _Answer)
        emulator.answer_when_invited(
            plan.open_id, plan.answer, plan.after_seconds, then=plan.then, then_after=plan.then_after_seconds
        )
        return web.json_response(plan.model_dump())

    async def clear_answers(request: web.Request) -> web.Response:
        emulator.clear_answers()
        return web.json_response({"cleared": True})

    async def lock(request: web.Request) -> web.Response:
        wanted = await body_of(request, _Lock)
        meeting_id = request.match_info["meeting_id"]
        emulator.lock_meeting(meeting_id, wanted.locked)
        return web.json_response({"meeting": emulator.meeting(meeting_id).as_json()})

    async def invite_calls(request: web.Request) -> web.Response:
        meeting_id = request.query.get("meeting_id")
        calls = [c.as_json() for c in emulator.invite_calls if meeting_id in (None, c.meeting_id)]
        return web.json_response({"invite_calls": calls})

    async def fail_invitee(request: web.Request) -> web.Response:
        wanted = await body_of(request, _FailInvitee)
        emulator.fail_invitee(wanted.open_id, wanted.code, times=wanted.times)
        return web.json_response({"open_id": wanted.open_id, "code": wanted.code, "times": wanted.times})

    async def clear_failures(request: web.Request) -> web.Response:
        emulator.clear_invitee_failures()
        return web.json_response({"cleared": True})

    return [
        web.get("/_emulator/meetings", guarded(meetings)),
        web.post("/_emulator/meetings", guarded(add_meeting)),
        web.post("/_emulator/meetings/{meeting_id}/end", guarded(end)),
        web.post("/_emulator/meetings/{meeting_id}/join", guarded(join)),
        web.post("/_emulator/meetings/{meeting_id}/leave", guarded(leave)),
        web.post("/_emulator/meetings/{meeting_id}/decline", guarded(decline)),
        web.post("/_emulator/meetings/{meeting_id}/lock", guarded(lock)),
        web.post("/_emulator/answers", guarded(answers)),
        web.delete("/_emulator/answers", guarded(clear_answers)),
        web.get("/_emulator/invite-calls", guarded(invite_calls)),
        web.post("/_emulator/fail-invitee", guarded(fail_invitee)),
        web.delete("/_emulator/fail-invitee", guarded(clear_failures)),
    ]


class _Bad(Exception):
    pass
