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
from typing import Any, Literal

import msgspec

from domain import db
from domain.access.policies import require
from domain.communication.models import CHANNELS, Channel, Sender
from domain.principal import Principal
from domain.settings import get as app_settings
from domain.tenancy.credentials import get_credentials, masked_credentials
from domain.tenancy.queries import load_clinic


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


def _from_row(r: dict[str, Any]) -> Resolved:
    raw = r["sender"]
    sender = raw if isinstance(raw, (str, bytes)) else json.dumps(raw)
    return Resolved(channel=r["channel"], providers=list(r["providers"]),
                    sender=msgspec.json.decode(sender, type=Sender),
                    rate_per_second=r["rate_per_second"], retry_unknown=bool(r["retry_unknown"]),
                    source="clinic")


async def resolve(clinic_id: uuid.UUID, channel: Channel) -> Resolved:
    rows = await db.fetch(
        """SELECT channel, providers, sender, rate_per_second, retry_unknown
           FROM communication_configs WHERE clinic_id = $1 AND channel = $2""", clinic_id, channel)
    if not rows:
        return default_for(channel)
    return _from_row(rows[0])


async def resolve_all(clinic_id: uuid.UUID) -> dict[Channel, Resolved]:
    """Every channel's chain for the clinic, in one query: its own where it has one, else the
    global default."""
    rows = await db.fetch(
        """SELECT channel, providers, sender, rate_per_second, retry_unknown
           FROM communication_configs WHERE clinic_id = $1""", clinic_id)
    own = {r["channel"]: _from_row(r) for r in rows}
    return {channel: own.get(channel) or default_for(channel) for channel in CHANNELS}


class CommunicationConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A clinic's configuration as its admins see it: each channel's chain (`source: default`
    where the clinic has none and the global default applies) and the stored credentials,
    masked (`****` + the last 4 characters; never a value)."""

    channels: dict[str, Resolved]
    credentials: dict[str, dict[str, str]]


async def read_config(principal: Principal, clinic_id: uuid.UUID) -> CommunicationConfig:
    require(principal, "communication_settings:read", clinic_id, resource_type="clinic",
            resource_id=clinic_id)
    await load_clinic(clinic_id)  # a SUPER_ADMIN's unknown clinic is 404, not an empty config
    return await config_view(principal, clinic_id)


async def config_view(principal: Principal, clinic_id: uuid.UUID) -> CommunicationConfig:
    """The view without the clinic check (the caller made it), e.g. after a PUT."""
    chains = await resolve_all(clinic_id)
    masked = await masked_credentials(principal, clinic_id)
    return CommunicationConfig(channels=dict(chains.items()), credentials=masked)


async def credentials_for(clinic_id: uuid.UUID, provider: str,
                          source: Literal["clinic", "default"]) -> Mapping[str, str]:
    """Plaintext credentials for an adapter about to send; the local sink needs none."""
    if provider == "local":
        return {}
    if source == "default":
        return defaults().credentials.get(provider, {})
    return await get_credentials(clinic_id, provider)


__all__ = ["CHANNELS", "CommunicationConfig", "Defaults", "Resolved", "config_view",
           "credentials_for", "default_for", "defaults", "read_config", "resolve", "resolve_all"]
