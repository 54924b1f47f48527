"""Who is acting: asking a user to authorize, /login, /logout, and finishing after authorization."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import structlog

from bot.feishu.errors import FeishuApiError
from bot.feishu.events import EventEnvelope
from bot.feishu.models import EphemeralSendRequest, MessageCreateRequest, MessagePatchRequest, card_content
from bot.oauth.authority import AuthorizationRequired
from bot.oauth.device import DeviceFlow, prompt_key
from bot.oauth.records import AuthorizationGranted, DevicePoll, Prompt
from handlers.account_cards import (
    LINK_NOTE,
    authorized_card,
    device_ended_card,
    device_note,
    ephemeral_authorized_card,
    ephemeral_device_ended_card,
    ephemeral_prompt_card,
    logged_out_card,
    prompt_card,
)
from handlers.commands import Command
from handlers.context import CommandContext, Services, reply_uuid
from handlers.i18n import Text

log = structlog.get_logger("handlers.account")

# What the device card lists when no particular scope is missing: what /invite acts with.
DEVICE_SCOPES_SHOWN = ("vc:meeting", "vc:meeting:readonly", "vc:meeting.meetingevent:read", "offline_access")


def _date(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


async def ask_to_authorize(
    context: CommandContext,
    *,
    missing_scopes: tuple[str, ...] = (),
    resume: bool = True,
    why: Text | None = None,
) -> None:
    """A private prompt to authorize. `resume`: run this command again once authorized (not when it
    was answered already); `why`: a line saying what authorizing brings, when it is not this command."""
    services, message = context.services, context.message
    pending = context.envelope if resume else None
    if services.device is not None:
        await _ask_on_a_feishu_page(context, services.device, missing_scopes, pending, why)
        return
    state, url = await services.flow.begin(
        message.tenant_key, message.sender_open_id, pending=pending, extra_scopes=missing_scopes
    )
    # Each prompt is its own answer: a second one about the same message (another scope needed, or a
    # second person clicking the same card) must not share the first one's uuid, or Feishu drops it.
    purpose = f"authorize:{message.sender_open_id}:{hashlib.sha256(state.encode()).hexdigest()[:16]}"
    note = (
        LINK_NOTE
        if why is None
        else Text(f"{why.zh_cn}\n{LINK_NOTE.zh_cn}", f"{why.en_us}\n{LINK_NOTE.en_us}")
    )
    prompt = await _deliver_privately(context, url, missing_scopes, purpose, note=note)
    await services.flow.attach_prompt(state, prompt)
    services.metrics.authorization_prompts.labels(prompt.kind).inc()
    log.info("authorization requested", open_id=message.sender_open_id, via=prompt.kind)


async def _ask_on_a_feishu_page(
    context: CommandContext,
    device: DeviceFlow,
    missing_scopes: tuple[str, ...],
    pending: EventEnvelope | None,
    why: Text | None,
) -> None:
    """Device authorization: a private card with the Feishu link; an inbox event polls until decided."""
    services, message = context.services, context.message
    assert services.enqueue is not None
    start = await device.begin(
        message.tenant_key, message.sender_open_id, pending=pending, extra_scopes=missing_scopes
    )
    purpose = f"authorize:{message.sender_open_id}:{prompt_key(start.flow_id)[:16]}"
    note = device_note(max(1, start.expires_in // 60), missing_scopes or DEVICE_SCOPES_SHOWN)
    if why is not None:
        note = Text(f"{why.zh_cn}\n{note.zh_cn}", f"{why.en_us}\n{note.en_us}")
    prompt = await _deliver_privately(context, start.url, missing_scopes, purpose, note=note)
    await services.flow.attach_prompt(start.flow_id, prompt)
    await services.enqueue(start.poll)
    services.metrics.authorization_prompts.labels(prompt.kind).inc()
    log.info("authorization requested", open_id=message.sender_open_id, via=prompt.kind, flow="device")


async def poll_device_authorization(services: Services, poll: DevicePoll) -> None:
    """The inbox event of a device authorization: wait for the user's answer, then say how it ended."""
    assert services.device is not None
    assert services.enqueue is not None
    outcome = await services.device.poll(poll)
    if outcome.resume is not None:
        await services.enqueue(outcome.resume)  # updates the prompt and runs what waited
        return
    prompt = await services.flow.take_prompt(outcome.prompt_key)
    if prompt is None:
        return
    try:
        if prompt.kind == "ephemeral":
            await services.client.delete_ephemeral(prompt.message_id)
            if outcome.kind != "replaced":  # the newer request shows its own card
                await services.client.send_ephemeral(
                    EphemeralSendRequest(
                        chat_id=prompt.chat_id,
                        open_id=poll.open_id,
                        card=ephemeral_device_ended_card(outcome.kind),
                    )
                )
        else:
            content = card_content(device_ended_card(outcome.kind))
            await services.client.patch_message(prompt.message_id, MessagePatchRequest(content=content))
    except FeishuApiError as error:
        log.warning("could not update the authorization prompt", code=error.code, log_id=error.log_id)


async def _deliver_privately(
    context: CommandContext,
    url: str,
    missing_scopes: tuple[str, ...],
    purpose: str,
    *,
    note: Text = LINK_NOTE,
) -> Prompt:
    """Ephemeral card in a group, else a direct message, else (only then) a public reply."""
    client, message = context.services.client, context.message
    if message.chat_type == "p2p":
        sent = await context.reply_card(
            prompt_card(url, missing_scopes=missing_scopes, note=note), purpose=purpose
        )
        return Prompt(chat_id=sent.chat_id or message.chat_id, message_id=sent.message_id, kind="direct")
    try:
        ephemeral_id = await client.send_ephemeral(
            EphemeralSendRequest(
                chat_id=message.chat_id,
                open_id=message.sender_open_id,
                card=ephemeral_prompt_card(url, missing_scopes=missing_scopes, note=note),
            )
        )
        return Prompt(chat_id=message.chat_id, message_id=ephemeral_id, kind="ephemeral")
    except FeishuApiError as error:
        if error.transient:
            raise  # a blip, not a refusal: the inbox retries rather than going less private
        log.info("ephemeral prompt refused; trying a direct message", code=error.code, log_id=error.log_id)
    try:
        sent = await client.send_message(
            "open_id",
            MessageCreateRequest(
                receive_id=message.sender_open_id,
                msg_type="interactive",
                content=card_content(prompt_card(url, missing_scopes=missing_scopes, note=note)),
                uuid=reply_uuid(message.message_id, f"{purpose}:dm"),
            ),
        )
        return Prompt(chat_id=sent.chat_id, message_id=sent.message_id, kind="direct")
    except FeishuApiError as error:
        if error.transient:
            raise
        log.info("direct prompt refused; asking in the chat", code=error.code, log_id=error.log_id)
    sent = await context.reply_card(
        prompt_card(url, missing_scopes=missing_scopes, note=note), purpose=purpose
    )
    return Prompt(chat_id=message.chat_id, message_id=sent.message_id, kind="public")


async def show_authorized(services: Services, granted: AuthorizationGranted) -> None:
    """Turn the prompt into an "authorized" note. Best effort: the command goes on either way."""
    prompt = await services.flow.take_prompt(granted.prompt_key)
    if prompt is None:
        return
    stored = await services.authority.current(granted.tenant_key, granted.open_id)
    until = _date(stored.usable_until()) if stored is not None else "?"
    name = granted.name or granted.open_id
    try:
        if prompt.kind == "ephemeral":
            # An ephemeral card cannot be edited; replace it with one that says it is done.
            await services.client.delete_ephemeral(prompt.message_id)
            await services.client.send_ephemeral(
                EphemeralSendRequest(
                    chat_id=prompt.chat_id,
                    open_id=granted.open_id,
                    card=ephemeral_authorized_card(name, until),
                )
            )
        else:
            await services.client.patch_message(
                prompt.message_id, MessagePatchRequest(content=card_content(authorized_card(name, until)))
            )
    except FeishuApiError as error:
        log.warning("could not update the authorization prompt", code=error.code, log_id=error.log_id)


def login_command() -> Command:
    async def handle(context: CommandContext) -> None:
        services, message = context.services, context.message
        try:
            user = await services.authority.call_as(
                message.tenant_key, message.sender_open_id, services.client.user_info
            )
        except AuthorizationRequired as required:
            await ask_to_authorize(context, missing_scopes=required.missing_scopes)
            return
        token = await services.authority.current(message.tenant_key, message.sender_open_id)
        until = _date(token.usable_until()) if token is not None else "?"
        await context.reply_card(authorized_card(user.name or user.en_name or user.open_id, until))

    return Command(
        name="/login",
        aliases=("/登录",),
        summary=Text(
            "授权我以你的身份邀请（首次使用前）", "let me invite on your behalf (before your first /invite)"
        ),
        usage="/login",
        examples=(),
        handler=handle,
    )


def logout_command() -> Command:
    async def handle(context: CommandContext) -> None:
        message = context.message
        forgotten = await context.services.authority.forget(message.tenant_key, message.sender_open_id)
        log.info("user logged out", open_id=message.sender_open_id, had_authorization=forgotten)
        await context.reply_card(logged_out_card(forgotten))

    return Command(
        name="/logout",
        aliases=("/注销",),
        summary=Text("删除你保存的授权", "forget your stored authorization"),
        usage="/logout",
        examples=(),
        handler=handle,
    )
