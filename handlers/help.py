"""/help, and the answer to anything the bot does not understand: both generated from the command table."""

from __future__ import annotations

from handlers.cards import Card, card, divider, literal, markdown
from handlers.commands import Command, CommandTable
from handlers.context import CommandContext
from handlers.i18n import Text

HELP_TITLE = Text("邀请助手 · 使用说明", "Invite bot · how to use")
UNKNOWN_TITLE = Text("没有这个命令", "Unknown command")


def _command_lines(commands: list[Command]) -> Text:
    zh, en = [], []
    for command in commands:
        also = ", ".join(f"`{alias}`" for alias in command.aliases)
        zh.append(f"**`{command.usage}`**  {command.summary.zh_cn}" + (f"（也可用 {also}）" if also else ""))
        en.append(f"**`{command.usage}`**  {command.summary.en_us}" + (f" (or {also})" if also else ""))
        for example in command.examples:
            zh.append(f"  例如 `{example}`")
            en.append(f"  e.g. `{example}`")
    return Text("\n".join(zh), "\n".join(en))


def help_card(commands: CommandTable, *, lead: Text | None = None, title: Text = HELP_TITLE) -> Card:
    elements = []
    if lead is not None:
        elements += [markdown(lead), divider()]
    elements.append(markdown(_command_lines(commands.all())))
    elements.append(
        markdown(
            Text(
                "在群里 @我 并输入命令，或在单聊中直接输入。",
                "Mention me in a group with a command, or type it in a direct chat with me.",
            )
        )
    )
    return card(title, elements, template="blue" if lead is None else "orange", summary=title)


def unknown_command_card(commands: CommandTable, typed: str) -> Card:
    suggestion = commands.suggest(typed)
    word = literal(typed, 40)
    if suggestion is not None:
        lead = Text(
            f"我不认识 `{word}`。你是想用 `{suggestion.name}` 吗？",
            f"I don't know `{word}`. Did you mean `{suggestion.name}`?",
        )
    else:
        lead = Text(f"我不认识 `{word}`。可用的命令：", f"I don't know `{word}`. Here is what I can do:")
    return help_card(commands, lead=lead, title=UNKNOWN_TITLE)


def too_long_card(command: str, limit: int) -> Card:
    body = Text(
        f"这条 `{command}` 太长了（超过 {limit} 个字符），我没有读它。请分成几条较短的命令发送。",
        f"That `{command}` is too long (over {limit} characters), so I did not read it. "
        "Send it as a few shorter commands.",
    )
    return card(Text("命令太长", "Command too long"), [markdown(body)], template="orange")


def not_a_command_card(commands: CommandTable) -> Card:
    lead = Text("我只听得懂命令，下面是我能做的事：", "I only understand commands. Here is what I can do:")
    return help_card(commands, lead=lead)


def help_command(commands: CommandTable) -> Command:
    async def handle(context: CommandContext) -> None:
        await context.reply_card(help_card(commands))

    return Command(
        name="/help",
        aliases=("/帮助",),
        summary=Text("查看用法和示例", "show usage and examples"),
        usage="/help",
        examples=(),
        handler=handle,
    )
