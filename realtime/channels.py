"""Redis pub/sub channel names shared by the relay (publisher) and every hub (subscriber)."""

from __future__ import annotations

from domain import kv


def events() -> str:
    return kv.key("sio", "events")
