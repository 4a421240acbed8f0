"""How committed events leave a process for every gateway's hub: one Redis PUBLISH per batch.
Used by the relay (tasks/) and, in-process, by `carewire dev`."""

from __future__ import annotations

import msgspec

from domain import kv
from domain.events.envelope import Outgoing
from realtime.channels import events

_encoder = msgspec.msgpack.Encoder()


async def publish(batch: list[Outgoing]) -> int:
    """Returns how many hub processes heard it."""
    if not batch:
        return 0
    return int(await kv.client().publish(events(), _encoder.encode(batch)))
