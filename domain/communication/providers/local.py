"""The local sink: accepts every message and delivers nothing. The default wherever no provider
is configured (and in `carewire dev`), so the delivery log shows every message that would have
gone out, body included (until the clinic's retention prunes it)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar

from domain.communication.models import Channel, Outbound
from domain.communication.providers.base import Sent

log = logging.getLogger("carewire.communication.local")


class LocalSink:
    name: ClassVar[str] = "local"
    channels: ClassVar[frozenset[Channel]] = frozenset({"email", "push", "whatsapp", "sms"})
    required_fields: ClassVar[tuple[str, ...]] = ()
    optional_fields: ClassVar[tuple[str, ...]] = ()
    default_rate_per_second: ClassVar[int] = 10_000

    async def send(self, message: Outbound, credentials: Mapping[str, str]) -> Sent:
        log.info("local sink kept %s message %s (not delivered)", message.channel, message.message_id)
        return Sent(provider_message_id=f"local-{message.message_id}")
