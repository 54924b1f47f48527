"""Shared fixtures live in tests/harness.py; this file only prepares the test process."""

# Imported before any test runs: CPython 3.11 can fail to compile (assertion-rewrite) a module that is
# first imported after a test provoked a RecursionError, and hypothesis' plugin imports lazily.
import hypothesis  # noqa: F401
