"""structlog set-up: JSON lines by default, bound context, and a last guard against leaked secrets."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"token|secret|password|authorization|encrypt_key|code_verifier|cookie", re.I)
# Feishu token shapes: tenant/app/user tokens (t-, a-, u-, ur-) and v2 JWT-like user tokens (eyJ...).
_SECRET_VALUES = re.compile(r"\b(?:t|a|u|ur|c)-[A-Za-z0-9._-]{16,}|\beyJ[A-Za-z0-9._-]{20,}")
_REDACTED = "[redacted]"


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop values of secret-named keys and mask token-shaped strings anywhere in a log line."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEYS.search(key) and key not in ("event", "token_kind"):
            event_dict[key] = _REDACTED
        elif isinstance(value, str):
            event_dict[key] = _SECRET_VALUES.sub(_REDACTED, value)
    return event_dict


def configure_logging(fmt: str = "json", level: str = "info", stream: Any = None) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    # aiohttp's access log would print every request line; our own ack log says what matters.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
