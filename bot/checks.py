"""`invite-bot check`: prove the settings and the credentials against the configured Feishu domain."""

from __future__ import annotations

from bot.feishu.client import FeishuClient
from bot.feishu.errors import FeishuApiError
from bot.metrics import Metrics
from config import Settings


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
    return 0
