"""`invite-bot check`: prove the settings and the credentials against the configured Feishu domain."""

from __future__ import annotations

import aiohttp

from bot.feishu.client import FeishuClient
from bot.feishu.endpoints import ACTIVE_MEETING_SCOPE
from bot.feishu.errors import FeishuApiError
from bot.feishu.long_connection import Lost, Refused, dial, fetch_endpoint
from bot.metrics import Metrics
from config import Settings

# What the bot calls with its own (tenant) token, and why: docs/setup-feishu.md has the long form.
APP_SCOPES = (
    "im:message",  # reply, send, update cards, ephemeral cards
    "im:message.group_at_msg:readonly",  # read group messages that mention the bot
    "im:message.p2p_msg:readonly",  # read direct messages
    "im:chat:readonly",  # list chat members for @all
    "contact:user.id:readonly",  # find people by e-mail
)


async def run_checks(settings: Settings) -> int:
    print(f"settings: ok (domain {settings.feishu_domain}, app {settings.feishu_app_id})")
    async with FeishuClient.open_session(timeout_seconds=10.0) as session:
        client = FeishuClient(
            session,
            domain=settings.feishu_domain,
            app_id=settings.feishu_app_id,
            app_secret=settings.feishu_app_secret,
            metrics=Metrics(),
        )
        try:
            await client.tenant_tokens.get()
            print("credentials: ok (tenant_access_token issued)")
            bot = await client.bot_info()
        except FeishuApiError as error:
            print(f"credentials: FAILED: code {error.code}: {error.msg} (log_id {error.log_id or '-'})")
            return 1
        current = await _check_current_meeting(client, settings, bot.open_id)
        if settings.bot_event_transport == "long-connection" and not await _check_long_connection(
            session, settings
        ):
            return 1
    print(f"bot: {bot.app_name or '(no name)'} open_id={bot.open_id}")
    print(current)
    print("register in the Feishu developer console:")
    if settings.bot_event_transport == "long-connection":
        print("  events:               receive through the long connection (使用长连接接收事件); the console")
        print("                        saves this only while a bot is connected: start `serve` first")
        print("  callbacks:            receive through the long connection (使用长连接接收回调)")
    else:
        print(f"  event request URL:    {settings.bot_public_url}/feishu/events")
        print(f"  callback request URL: {settings.bot_public_url}/feishu/events")
    print(f"  redirect URL:         {settings.oauth_redirect_uri}")
    print("  events:               im.message.receive_v1")
    print("  callbacks:            card.action.trigger")
    print("  app scopes:           " + " ".join(APP_SCOPES))
    print("  user scopes (OAuth):  " + settings.bot_oauth_scopes)
    if not settings.encrypt_key and settings.bot_event_transport == "webhook":
        # check validates what it can; serve is where an unsigned set-up is refused outright.
        verdict = (
            "accepted (BOT_ALLOW_UNSIGNED_EVENTS=true)"
            if settings.bot_allow_unsigned_events
            else ("serve refuses to start; set FEISHU_ENCRYPT_KEY")
        )
        print(f"warning: FEISHU_ENCRYPT_KEY is empty, so events carry no signature: {verdict}")
    print("details: docs/setup-feishu.md")
    return 0


async def _check_current_meeting(client: FeishuClient, settings: Settings, bot_open_id: str) -> str:
    """Whether `/invite` without a number can ask Feishu which meeting the sender is in (§14).

    Asked as the app (a tenant token needs `user_id`; the bot's own is used): the answer says whether
    the API and its scope are enabled for this app. Feishu releases the API gradually, so it may still
    refuse user tokens; the bot then falls back and asks again an hour later."""
    if ACTIVE_MEETING_SCOPE not in settings.bot_oauth_scopes.split():
        return (
            f"current meeting: off ({ACTIVE_MEETING_SCOPE} is not in BOT_OAUTH_SCOPES): "
            "/invite needs a number, or uses the meeting the sender last used in the chat"
        )
    try:
        await client.user_active_meetings(open_id=bot_open_id)
    except FeishuApiError as error:
        return (
            f"current meeting: not available (code {error.code}: {error.msg}; log_id {error.log_id or '-'}): "
            f"enable {ACTIVE_MEETING_SCOPE} for the app, or /invite keeps asking for a number"
        )
    return "current meeting: available (/invite without a number uses the meeting the sender is in)"


async def _check_long_connection(session: aiohttp.ClientSession, settings: Settings) -> bool:
    """Ask for a socket and open it once, explaining what a user meets when that fails."""
    try:
        url, _ = await fetch_endpoint(
            session, settings.feishu_domain, settings.feishu_app_id, settings.feishu_app_secret
        )
        socket = await dial(session, url)  # the URL carries credentials: never printed
        await socket.close()
    except Refused as refused:
        reason = str(refused)
        if "10003" in reason or "10014" in reason:
            hint = "the App ID or App Secret is wrong"
        elif "connection limit" in reason:
            hint = "Feishu allows 50 connections per app, and that many processes of this app are connected"
        elif "banned" in reason:
            hint = "Feishu has disabled this app"
        else:
            hint = "only enterprise custom apps (企业自建应用) may use it; a store app needs the webhook"
        print(f"long connection: FAILED: {reason}: {hint}")
        return False
    except (Lost, aiohttp.ClientError, OSError, TimeoutError) as error:
        said = str(error) if isinstance(error, Lost) else type(error).__name__
        print(f"long connection: FAILED: {said}: Feishu did not answer; try again later")
        return False
    print("long connection: ok (endpoint issued, socket opened and closed)")
    return True
