"""Prometheus metrics of the live path. Each process exposes its own at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

SOCKETS = Gauge("carewire_sockets_connected", "Sockets connected to this process")
ROOMS = Gauge("carewire_rooms", "Socket.IO rooms with at least one socket in this process")
EVENTS_RELAYED = Counter("carewire_events_relayed_total", "Events the relay published")
RELAY_LAG = Histogram("carewire_relay_lag_seconds", "Commit to relay publish",
                      buckets=LATENCY_BUCKETS)
DELIVERIES = Counter("carewire_socket_deliveries_total", "Event deliveries to sockets")
DIRECT_SENDS = Counter("carewire_socket_direct_sends_total",
                       "Deliveries written straight to an idle websocket (the fan-out bypass)")
DELIVERY_LATENCY = Histogram("carewire_delivery_latency_seconds",
                             "Event occurred_at to emit by this hub", buckets=LATENCY_BUCKETS)
JOBS = Counter("carewire_jobs_total", "Background jobs by final state", ["task", "state"])
AUTH_REFUSALS = Counter("carewire_auth_refusals_total",
                        "Unauthenticated refusals: REST 401s, refused socket connects and refused webhooks "
                        "(reason: one of domain.audit.refusals.REASONS)", ["transport", "reason"])
SOCKETS_EVICTED = Counter("carewire_sockets_evicted_total",
                          "Sockets this process closed because their user opened more than "
                          "sockets_per_user")

MESSAGE_ATTEMPTS = Counter("carewire_message_attempts_total",
                           "Provider attempts of outbound messages (outcome: sent, rejected, "
                           "unavailable, unknown, skipped)", ["channel", "provider", "outcome"])
MESSAGES = Counter("carewire_messages_total",
                   "Outbound messages by the status a sending round left them in "
                   "(requeued: no provider could take it yet)", ["channel", "status"])
PROVIDER_LATENCY = Histogram("carewire_provider_latency_seconds",
                             "One provider call, request to answer", ["provider"],
                             buckets=LATENCY_BUCKETS)
