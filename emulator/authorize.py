"""The authorize page, `GET /open-apis/authen/v1/authorize` (feishu-protocol §6.1).

Feishu serves it on accounts.feishu.cn; for any other domain the bot derives the accounts URL from
FEISHU_DOMAIN, so the emulator serves it on its own port. There is no login: the page lists the
directory and lets whoever opens it choose who signs in and whether to approve. Tests skip the page
with `emulator_user` and `emulator_decision` query parameters, or `Emulator.authorize`.
"""

from __future__ import annotations

import html
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from emulator.config import EmulatorConfig
from emulator.oauth import UserAuth

MAX_SCOPES = 50
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
EMULATOR_PARAMS = ("emulator_user", "emulator_decision")


class AuthorizeError(ValueError):
    """An authorize request Feishu would not show a consent page for; the page shows `code` instead.

    Codes: 20027 (scope not enabled for the app) is documented (feishu-protocol §6.1); 20029 (redirect_uri not
    registered) is the code commonly quoted for that case, UNCONFIRMED; the rest reuse the token
    endpoint's table (20001 missing or invalid parameter, 20048 no such app, 20008 no such user): guesses.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"authorize refused ({code}): {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AuthorizeRequest:
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    challenge: str | None
    method: str


def is_loopback_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def parse_authorize(params: Mapping[str, str], config: EmulatorConfig) -> AuthorizeRequest:
    client_id = params.get("client_id", "")
    if not client_id:
        raise AuthorizeError(20001, "client_id is required")
    if client_id != config.app_id:
        raise AuthorizeError(20048, "no app with this client_id")
    if params.get("response_type") != "code":
        raise AuthorizeError(20001, "response_type must be code")
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri:
        raise AuthorizeError(20001, "redirect_uri is required")
    if not (is_loopback_url(redirect_uri) or redirect_uri in config.redirect_uris):
        raise AuthorizeError(20029, "redirect_uri is not a registered redirect URL")
    scopes = tuple(dict.fromkeys(params.get("scope", "").split()))
    if len(scopes) > MAX_SCOPES:
        raise AuthorizeError(20001, f"at most {MAX_SCOPES} scopes")
    not_enabled = [scope for scope in scopes if scope not in config.app_scopes]
    if not_enabled:
        raise AuthorizeError(20027, "scopes not enabled for the app: " + " ".join(not_enabled))
    challenge = params.get("code_challenge") or None
    method = params.get("code_challenge_method") or "plain"
    if method not in ("S256", "plain"):
        raise AuthorizeError(20001, "code_challenge_method must be S256 or plain")
    if challenge is not None and not _CHALLENGE.match(challenge):
        raise AuthorizeError(20001, "code_challenge must be 43 to 128 characters of [A-Za-z0-9-._~]")
    return AuthorizeRequest(client_id, redirect_uri, scopes, params.get("state"), challenge, method)


def with_query(url: str, extra: Mapping[str, str]) -> str:
    """`url` with `extra` added to its query; a fragment stays last, as Feishu keeps it."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(extra.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def decide(
    auth: UserAuth, config: EmulatorConfig, request: AuthorizeRequest, *, as_user: str, approve: bool
) -> str:
    """Where the browser goes next: the redirect_uri with a code, or with error=access_denied."""
    if config.user(as_user) is None:
        raise AuthorizeError(20008, f"no user {as_user!r} in the directory")
    echo = {} if request.state is None else {"state": request.state}
    if not approve:
        return with_query(request.redirect_uri, {"error": "access_denied", **echo})
    code = auth.issue_code(
        open_id=as_user,
        client_id=request.client_id,
        redirect_uri=request.redirect_uri,
        scopes=request.scopes,
        challenge=request.challenge,
        method=request.method,
    )
    return with_query(request.redirect_uri, {"code": code, **echo})


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


# --- pages ---------------------------------------------------------------------------------------------

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem}"
    "li{margin:.6rem 0}a{margin-left:.8rem}.scope{font-family:monospace}"
)


def consent_page(config: EmulatorConfig, request: AuthorizeRequest, params: Mapping[str, str]) -> str:
    base = {key: value for key, value in params.items() if key not in EMULATOR_PARAMS}
    rows = []
    for user in config.users:
        links = []
        for decision, label in (("approve", "授权 Approve"), ("deny", "拒绝 Deny")):
            query = urlencode({**base, "emulator_user": user.open_id, "emulator_decision": decision})
            links.append(f'<a href="?{html.escape(query)}">{label}</a>')
        who = f"<b>{html.escape(user.name)}</b> <small>{html.escape(user.open_id)}</small>"
        rows.append(f"<li>{who}{''.join(links)}</li>")
    scopes = "".join(f'<li class="scope">{html.escape(s)}</li>' for s in request.scopes) or "<li>—</li>"
    app = f"<b>{html.escape(config.bot_name)}</b> ({html.escape(config.app_id)})"
    return _page(
        "授权 Authorize",
        f"<p>{app} 请求以下权限 / asks for:</p>"
        f"<ul>{scopes}</ul><p>以谁的身份登录 / Sign in as:</p><ul>{''.join(rows)}</ul>"
        f"<p><small>Feishu emulator: no password, pick a test user.</small></p>",
    )


def error_page(error: AuthorizeError) -> str:
    return _page(
        "授权失败 Authorization failed",
        f"<p>错误码 / Error code: <b>{error.code}</b></p><p>{html.escape(error.message)}</p>",
    )


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
