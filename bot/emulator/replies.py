"""How Feishu's Open API answers: `{"code","msg",...}` bodies, the X-Tt-Logid header, its error codes.

Every code lives here once, with the HTTP status and message Feishu sends, so that a finding about the
real platform is a one-line change. Sources: reference §4.1, §5, §6.6 and the rate-limit doc page
(https://open.feishu.cn/document/server-docs/api-call-guide/frequency-control). Statuses marked
UNCONFIRMED are our best reading, not something a doc page or a captured response showed.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

LOGID_HEADER = "X-Tt-Logid"


@dataclass(frozen=True)
class FeishuError:
    code: int
    msg: str
    http_status: int


# A captured probe of open.feishu.cn (2026) answered the token endpoint's bad credentials with HTTP 200
# and code 10003; "app secret invalid" (10014) is widely reported for a wrong secret of a real app.
# Reference §6.6 names 99991543 for this case: no capture shows it, so we follow the captures.
INVALID_PARAM = FeishuError(10003, "invalid param", 200)
APP_SECRET_INVALID = FeishuError(10014, "app secret invalid", 200)
# Business APIs reject auth with HTTP 400 (captured), not 401.
TOKEN_MISSING = FeishuError(
    99991661, "Missing access token for authorization. Please make a request with token attached.", 400
)
TENANT_TOKEN_INVALID = FeishuError(
    99991663, "Invalid access token for authorization. Please make a request with token attached.", 400
)
# A token that looks like a user token (u-..., or a v2 JWT eyJ...) is judged as one (captured).
USER_TOKEN_INVALID = FeishuError(
    99991668, "Invalid access token for authorization. Please make a request with token attached.", 400
)
RATE_LIMITED = FeishuError(99991400, "request trigger frequency limit", 429)
# Generic request validation (missing or malformed fields); Feishu adds error.field_violations.
FIELD_VALIDATION_FAILED = FeishuError(99992402, "field validation failed", 400)
# im/v1 codes (reference §4.1). HTTP 400 for all of them: UNCONFIRMED but consistent with every
# im/v1 error table we have seen quoted.
INVALID_REQUEST = FeishuError(230001, "Your request contains an invalid request parameter.", 400)
BOT_NOT_IN_CHAT = FeishuError(230002, "Bot/User can NOT be out of the chat.", 400)
CHAT_RATE_LIMITED = FeishuError(230020, "This operation triggers the frequency limit.", 400)
MESSAGE_TOO_LONG = FeishuError(230025, "The length of the message content reaches its limit.", 400)


def new_log_id() -> str:
    # Same look as Feishu's: a UTC timestamp and 20 upper-case hex digits.
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + secrets.token_hex(10).upper()


def ok(body: dict[str, Any], *, log_id: str | None = None) -> web.Response:
    response = web.json_response(body)
    response.headers[LOGID_HEADER] = log_id or new_log_id()
    return response


def error(
    failure: FeishuError,
    *,
    detail: str = "",
    status: int | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> web.Response:
    """An error answer as Feishu shapes it: the log_id both in the header and in `error.log_id`."""
    log_id = new_log_id()
    msg = f"{failure.msg} {detail}".strip() if detail else failure.msg
    body: dict[str, Any] = {
        "code": failure.code,
        "msg": msg,
        "error": {
            "log_id": log_id,
            "troubleshooter": (
                "排查建议查看(Troubleshooting suggestions): "
                f"https://open.feishu.cn/search?from=openapi&log_id={log_id}&code={failure.code}"
            ),
            **(extra or {}),
        },
    }
    response = web.json_response(body, status=status or failure.http_status, headers=headers)
    response.headers[LOGID_HEADER] = log_id
    return response


def field_violation(field: str, description: str) -> web.Response:
    return error(
        FIELD_VALIDATION_FAILED,
        extra={"field_violations": [{"field": field, "description": description}]},
    )
