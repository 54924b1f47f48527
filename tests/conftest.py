"""Shared fixtures live in tests/harness.py; this file only prepares the test process."""

# Imported before any test runs: CPython 3.11 can fail to compile (assertion-rewrite) a module that is
# first imported after a test provoked a RecursionError, and hypothesis' plugin imports lazily.
from collections.abc import AsyncIterator
from pathlib import Path

import hypothesis  # noqa: F401
import pytest

from tests.harness import Harness, open_harness


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Harness]:
    """Emulator and a running bot, both on 127.0.0.1."""
    harness = await open_harness(tmp_path)
    try:
        await harness.start_bot()
        yield harness
    finally:
        await harness.close()
