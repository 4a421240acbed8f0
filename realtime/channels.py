"""Redis pub/sub channel names shared by the relay (publisher) and every hub (subscriber)."""

from __future__ import annotations

from domain import kv


def events() -> str:
    return kv.key("sio", "events")


def control() -> str:
    """Hub-to-hub requests, e.g. close a socket the per-user cap evicted on another process."""
    return kv.key("sio", "control")
