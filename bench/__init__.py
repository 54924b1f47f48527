"""Benchmarks: run as scripts (`python bench/ack_latency.py`); never imported by the bot."""
