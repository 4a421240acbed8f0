"""Which providers carry a clinic's messages on a channel, and with which credentials.

A clinic's own chain (communication_configs) wins; where it has none, the global default from
CAREWIRE_COMMUNICATION_DEFAULTS applies; where that names nothing, the local sink.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

import msgspec

from domain import db
from domain.communication.models import CHANNELS, Channel, Sender
from domain.settings import get as app_settings
from domain.tenancy.credentials import get_credentials


class Resolved(msgspec.Struct, frozen=True, kw_only=True):
    channel: Channel
    providers: list[str]
    sender: Sender = Sender()
    rate_per_second: int | None = None
    retry_unknown: bool = False
    #: Whose chain this is: credentials come from the clinic's store or from the defaults.
    source: Literal["clinic", "default"]


class _DefaultChannel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    providers: list[str]
    sender: Sender = Sender()
    rate_per_second: int | None = None
    retry_unknown: bool = False


class Defaults(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: _DefaultChannel | None = None
    push: _DefaultChannel | None = None
    whatsapp: _DefaultChannel | None = None
    sms: _DefaultChannel | None = None
    credentials: dict[str, dict[str, str]] = {}


@lru_cache(maxsize=4)
def _parse_defaults(raw: str) -> Defaults:
    raw = raw.strip()
    if not raw:
        return Defaults()
    text = raw if raw.startswith("{") else Path(raw).read_text()
    return msgspec.json.decode(text.encode(), type=Defaults)


def defaults() -> Defaults:
    return _parse_defaults(app_settings().communication_defaults)


def default_for(channel: Channel) -> Resolved:
    d: _DefaultChannel | None = getattr(defaults(), channel)
    if d is None:
        return Resolved(channel=channel, providers=["local"], source="default")
    return Resolved(channel=channel, providers=list(d.providers), sender=d.sender,
                    rate_per_second=d.rate_per_second, retry_unknown=d.retry_unknown,
                    source="default")


async def resolve(clinic_id: uuid.UUID, channel: Channel) -> Resolved:
    rows = await db.fetch(
        """SELECT providers, sender, rate_per_second, retry_unknown FROM communication_configs
           WHERE clinic_id = $1 AND channel = $2""", clinic_id, channel)
    if not rows:
        return default_for(channel)
    r = rows[0]
    sender = r["sender"] if isinstance(r["sender"], str) else json.dumps(r["sender"])
    return Resolved(channel=channel, providers=list(r["providers"]),
                    sender=msgspec.json.decode(sender, type=Sender),
                    rate_per_second=r["rate_per_second"], retry_unknown=bool(r["retry_unknown"]),
                    source="clinic")


async def credentials_for(clinic_id: uuid.UUID, provider: str,
                          source: Literal["clinic", "default"]) -> Mapping[str, str]:
    """Plaintext credentials for an adapter about to send; the local sink needs none."""
    if provider == "local":
        return {}
    if source == "default":
        return defaults().credentials.get(provider, {})
    return await get_credentials(clinic_id, provider)


__all__ = ["CHANNELS", "Defaults", "Resolved", "credentials_for", "default_for", "defaults",
           "resolve"]
