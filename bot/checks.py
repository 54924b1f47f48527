"""`invite-bot check`: prove the settings and the credentials against the configured Feishu domain."""

from __future__ import annotations

from bot.feishu.client import FeishuClient
from bot.feishu.errors import FeishuApiError
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
    print(f"bot: {bot.app_name or '(no name)'} open_id={bot.open_id}")
    print("register in the Feishu developer console:")
    print(f"  event request URL:    {settings.bot_public_url}/feishu/events")
    print(f"  callback request URL: {settings.bot_public_url}/feishu/events")
    print(f"  redirect URL:         {settings.oauth_redirect_uri}")
    print("  events:               im.message.receive_v1")
    print("  callbacks:            card.action.trigger (same URL)")
    print("  app scopes:           " + " ".join(APP_SCOPES))
    print("  user scopes (OAuth):  " + settings.bot_oauth_scopes)
    if not settings.encrypt_key:
        # check validates what it can; serve is where an unsigned set-up is refused outright.
        verdict = (
            "accepted (BOT_ALLOW_UNSIGNED_EVENTS=true)"
            if settings.bot_allow_unsigned_events
            else ("serve refuses to start; set FEISHU_ENCRYPT_KEY")
        )
        print(f"warning: FEISHU_ENCRYPT_KEY is empty, so events carry no signature: {verdict}")
    print("details: docs/setup-feishu.md")
    return 0
