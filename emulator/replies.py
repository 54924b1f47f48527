"""How Feishu's Open API answers: `{"code","msg",...}` bodies, the X-Tt-Logid header, its error codes.

Every code lives here once, with the HTTP status and message Feishu sends, so that a finding about the
real platform is a one-line change. Sources: feishu-protocol §4.1, §5, §6.6 and the rate-limit doc page
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
# im/v1 codes (feishu-protocol §4.1). HTTP 400 for all of them: UNCONFIRMED but consistent with every
# im/v1 error table we have seen quoted.
INVALID_REQUEST = FeishuError(230001, "Your request contains an invalid request parameter.", 400)
BOT_NOT_IN_CHAT = FeishuError(230002, "Bot/User can NOT be out of the chat.", 400)
CHAT_RATE_LIMITED = FeishuError(230020, "This operation triggers the frequency limit.", 400)
MESSAGE_TOO_LONG = FeishuError(230025, "The length of the message content reaches its limit.", 400)
# PATCH of a card older than 14 days (feishu-protocol §3.3). Message text UNCONFIRMED.
MESSAGE_TOO_OLD = FeishuError(230031, "The message is beyond the time limit for this operation.", 400)
# A card JSON 2.0 may not be replaced by a 1.0 one (client code 200830, feishu-protocol §3.1); over the API
# the same rule surfaces as 230099 with the card error as detail: UNCONFIRMED.
CARD_CONTENT_FAILED = FeishuError(230099, "Failed to create card content.", 400)

# --- user_access_token on business APIs (feishu-protocol §6.6) ----------------------------------------------
# HTTP 400 like the other token refusals (captured for 99991668); 99991677 and 99991679: UNCONFIRMED.
USER_TOKEN_EXPIRED = FeishuError(
    99991677, "Authentication token expired. Please refresh the user_access_token and try again.", 400
)
USER_SCOPE_NOT_GRANTED = FeishuError(
    99991679,
    "Unauthorized. You do not have permission to perform the requested operation on the resource. "
    "Please request user re-authorization and try again.",
    400,
)
APP_SCOPE_NOT_ENABLED = FeishuError(
    99991672, "Access denied. One of the following scopes is required for the app.", 400
)
# A valid user_access_token on a route that takes only tenant tokens. Which code Feishu sends here is
# UNCONFIRMED; 99991663 says "not the token this API wants" without inviting a user-token refresh.
USER_TOKEN_NOT_ACCEPTED = FeishuError(
    99991663, "Invalid access token for authorization. This API requires a tenant_access_token.", 400
)


# --- vc/v1 meetings (feishu-protocol §7) --------------------------------------------------------------------
# Statuses and messages of 121001-121005 and 122001-122005 are the error tables of the vc/v1 doc pages
# (meeting/get, meeting/set_host, meeting-recording/start, open.larksuite.com and open.feishu.cn mirrors).
# The invite page's own table was not readable: that these codes apply to invite is our reading of the
# family. 122006-122008 appear only in the seed list: meanings from there, status 400 GUESSED.
VC_INTERNAL = FeishuError(121001, "internal error", 500)
VC_NOT_SUPPORTED = FeishuError(121002, "not support", 400)
VC_PARAM_ERROR = FeishuError(121003, "param error", 400)
VC_DATA_NOT_EXIST = FeishuError(121004, "data not exist", 404)
VC_NO_PERMISSION = FeishuError(121005, "no permission", 403)
VC_MEETING_STATUS = FeishuError(122001, "meeting status unexpected", 400)
VC_MEETING_NOT_EXIST = FeishuError(122002, "meeting not exist", 404)
VC_OPERATOR_NOT_IN_MEETING = FeishuError(122003, "operator user not in meeting", 400)
VC_CANNOT_OPERATE_SELF = FeishuError(122005, "cannot operate self", 400)
VC_MEETING_FULL = FeishuError(122006, "participant count reaches the upper limit", 400)  # GUESS
VC_INVITEE_BUSY = FeishuError(122007, "invitee is busy", 400)  # GUESS
VC_MEETING_LOCKED = FeishuError(122008, "meeting is locked", 400)  # GUESS
VC_ERRORS = {
    e.code: e for e in globals().copy().values() if isinstance(e, FeishuError) and 121000 < e.code < 123000
}

# How the emulated invite endpoint decides (one table, so a finding about the real platform is a one-line
# change). Whole-call: the answer is `code` != 0 and no invite_results. Per-invitee: code 0, the call goes on,
# and that person's invite_results status is 2.            Source
#   token missing/invalid/expired, scope not granted          feishu-protocol §6.6 (99991661/8/77/79)
#   tenant token (user-only API)                              GUESS: 99991668 via the user gate
#   over 50/s or 1000/min per app                             doc rate limits; 99991400 + 429
#   `invitees` missing                                        GUESS: 99992402 field validation
#   empty, more than 10, malformed entry, bad user_type       GUESS: 121003 ("up to 10" is prose, not a rule)
#   meeting_id not numeric                                    GUESS: 121003
#   unknown meeting_id                                        122002 (404) per the vc family table
#   meeting not in progress (calling or ended)                122001
#   operator not in the meeting                               122003 (doc: "if the operator is a user, they
#                                                             must be in the meeting")
#   operator among the invitees                               GUESS: whole-call 122005 ("cannot operate self")
#   meeting locked                                            GUESS: whole-call 122008 (doc prose: fails)
#   meeting already at capacity (in it + ringing)             GUESS: whole-call 122006 (doc prose: fails)
#   room for only some of this call's invitees                GUESS: per-invitee status 2 for the rest
#   invitee unknown to the tenant / busy / already in it      GUESS: per-invitee status 2
#   `fail_invitee(open_id, code=...)`                         whole-call with that code, on demand
#   `fail_invitee(open_id)` (status 2)                        per-invitee status 2, on demand

# --- im/v1 chat members and contact/v3 (feishu-protocol §8) -------------------------------------------------
# From the im-v1/chat-members/get error table (open.larksuite.com mirror).
CHAT_INVALID_PARAM = FeishuError(232001, "Your request contains an invalid request parameter.", 400)
CHAT_ID_INVALID = FeishuError(232006, "Your request specifies a chat_id which is invalid.", 400)
CHAT_OPERATOR_NOT_IN_CHAT = FeishuError(232011, "Operator can NOT be out of the chat.", 400)


# --- interactive/v1/card/update: delayed update with a callback's token (feishu-protocol §3.4) --------------
# Codes and meanings: the error table of https://open.feishu.cn/document/server-docs/im-v1/message-card/
# delay-update-message-card (2025-09). HTTP 400 for all: UNCONFIRMED. Which code answers a token spent while
# its callback is still unanswered is a GUESS (300030): the page only says such an update "fails or is undone
# right after". The 30 KB card limit surfacing as 100000 is a GUESS too (the page names 100000 for > 100 KB).
CARD_FORMAT_INVALID = FeishuError(11311, "The card format does not meet the requirements.", 400)
CARD_PARAM_INVALID = FeishuError(10002, "card param invalid", 400)
CARD_TOO_LARGE = FeishuError(100000, "The card content is too large after conversion.", 400)
CARD_NOT_JSON = FeishuError(100030, "The input parameter is not valid JSON.", 400)
CARD_TOKEN_BAD_FORMAT = FeishuError(300020, "The card update token has a wrong format.", 400)
CARD_TOKEN_EXPIRED = FeishuError(300030, "The card update token is no longer valid.", 400)
CARD_TOKEN_USED_UP = FeishuError(300040, "The card update token was used more than the allowed times.", 400)
CARD_OPEN_IDS_REQUIRED = FeishuError(300090, "open_ids is required to update a non-shared card.", 400)


class Refusal(Exception):
    """A request Feishu would refuse; carries the ready answer. Raised by shared steps and helpers."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


# --- OAuth v2 token endpoint (feishu-protocol §6.2, §6.3) ---------------------------------------------------
# The doc calls the endpoint RFC 6749 compliant and shows failures as top-level `code`, `error`,
# `error_description` (example: 20050 server_error). The `error` strings and HTTP statuses below follow
# RFC 6749 §5.2 (400; 401 for client authentication; 5xx for the retryable server errors): the RFC
# reading is ours, the statuses per code are UNCONFIRMED.


@dataclass(frozen=True)
class OAuthError:
    code: int
    error: str
    description: str
    http_status: int


OAUTH_MISSING_PARAM = OAuthError(20001, "invalid_request", "A required parameter is missing.", 400)
OAUTH_BAD_SECRET = OAuthError(20002, "invalid_client", "Client authentication failed.", 401)
OAUTH_CODE_NOT_FOUND = OAuthError(20003, "invalid_grant", "The authorization code was not found.", 400)
OAUTH_CODE_EXPIRED = OAuthError(20004, "invalid_grant", "The authorization code has expired.", 400)
OAUTH_USER_NOT_FOUND = OAuthError(20008, "invalid_grant", "The user does not exist.", 400)
OAUTH_REFRESH_INVALID = OAuthError(20026, "invalid_grant", "The refresh token is invalid.", 400)
OAUTH_BAD_GRANT_TYPE = OAuthError(20036, "unsupported_grant_type", "The grant_type is not supported.", 400)
OAUTH_REFRESH_EXPIRED = OAuthError(20037, "invalid_grant", "The refresh token has expired.", 400)
OAUTH_APP_NOT_FOUND = OAuthError(20048, "invalid_client", "The app does not exist.", 401)
OAUTH_PKCE_FAILED = OAuthError(20049, "invalid_grant", "PKCE verification failed.", 400)
OAUTH_SERVER_ERROR = OAuthError(
    20050, "server_error", "An unexpected server error occurred. Please retry your request.", 500
)
OAUTH_MALFORMED = OAuthError(20063, "invalid_request", "The request is malformed.", 400)
OAUTH_REFRESH_REVOKED = OAuthError(20064, "invalid_grant", "The refresh token has been revoked.", 400)
OAUTH_CODE_USED = OAuthError(20065, "invalid_grant", "The authorization code has already been used.", 400)
OAUTH_DUPLICATE_SCOPE = OAuthError(20067, "invalid_scope", "The scope contains duplicates.", 400)
OAUTH_SCOPE_NOT_PERMITTED = OAuthError(20068, "invalid_scope", "The scope exceeds what was granted.", 400)
OAUTH_TWO_CLIENT_AUTHS = OAuthError(
    20070, "invalid_request", "Use either HTTP Basic authentication or client_secret in the body.", 400
)
OAUTH_REDIRECT_MISMATCH = OAuthError(
    20071, "invalid_grant", "The redirect_uri does not match the authorization request.", 400
)
OAUTH_UNAVAILABLE = OAuthError(
    20072, "temporarily_unavailable", "The service is temporarily unavailable. Please retry.", 503
)
OAUTH_REFRESH_USED = OAuthError(20073, "invalid_grant", "The refresh token has already been used.", 400)
# Every row above, by code.
OAUTH_ERRORS = {e.code: e for e in globals().copy().values() if isinstance(e, OAuthError)}


def oauth_error(failure: OAuthError, *, detail: str = "") -> web.Response:
    """An OAuth-style failure of the token endpoint: top-level `code`, `error`, `error_description`."""
    description = f"{failure.description} {detail}".strip() if detail else failure.description
    body = {"code": failure.code, "error": failure.error, "error_description": description}
    response = web.json_response(body, status=failure.http_status)
    response.headers[LOGID_HEADER] = new_log_id()
    response.headers["Cache-Control"] = "no-store"
    return response


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
