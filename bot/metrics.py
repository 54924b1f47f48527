"""Prometheus metrics, on a registry per app so tests and several apps in one process stay apart."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_received = Counter(
            "invite_bot_events_received",
            "Well-formed events accepted at the webhook",
            ["event_type"],
            registry=self.registry,
        )
        self.events_deduplicated = Counter(
            "invite_bot_events_deduplicated",
            "Deliveries dropped as duplicates",
            ["event_type"],
            registry=self.registry,
        )
        self.events_ignored = Counter(
            "invite_bot_events_ignored",
            "Group chatter acknowledged without entering the inbox",
            registry=self.registry,
        )
        self.events_rejected = Counter(
            "invite_bot_events_rejected",
            "Webhook requests refused, by HTTP status",
            ["status"],
            registry=self.registry,
        )
        self.events_handled = Counter(
            "invite_bot_events_handled",
            "Events whose handler finished",
            ["event_type"],
            registry=self.registry,
        )
        self.events_failed = Counter(
            "invite_bot_events_failed", "Handler attempts that raised", ["event_type"], registry=self.registry
        )
        self.events_dead = Counter(
            "invite_bot_events_dead",
            "Events parked as dead after their last attempt",
            ["event_type"],
            registry=self.registry,
        )
        self.inbox_pending = Gauge("invite_bot_inbox_pending", "Events waiting", registry=self.registry)
        self.inbox_oldest_age = Gauge(
            "invite_bot_inbox_oldest_age_seconds",
            "Age of the oldest unfinished event",
            registry=self.registry,
        )
        self.api_calls = Counter(
            "invite_bot_openapi_calls",
            "Open API calls by endpoint and result",
            ["endpoint", "result"],
            registry=self.registry,
        )
        self.api_latency = Histogram(
            "invite_bot_openapi_latency_seconds",
            "Open API call latency",
            ["endpoint"],
            registry=self.registry,
        )
        self.ack_latency = Histogram(
            "invite_bot_webhook_ack_seconds",
            "Time from request to acknowledgement",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )

        self.invites = Counter(
            "invite_bot_invites",
            "People invited or not, by outcome and Feishu code (0 when Feishu gave none)",
            ["outcome", "code"],
            registry=self.registry,
        )
        self.token_refreshes = Counter(
            "invite_bot_user_token_refreshes",
            "user_access_token refreshes, by result (ok, gone, failed)",
            ["result"],
            registry=self.registry,
        )
        self.authorization_prompts = Counter(
            "invite_bot_authorization_prompts",
            "Authorization prompts sent, by where (ephemeral, direct, public)",
            ["via"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
