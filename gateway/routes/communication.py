"""A clinic's communication settings: provider chains and credentials, the test send, and the
providers' health. Credentials go in and never come out (a mask of their last 4 characters)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Router, get, post, put
from litestar.params import FromPath, JSONBody

from domain.communication import health
from domain.communication.commands import config as commands
from domain.communication.config import CommunicationConfig, read_config
from domain.communication.models import Sender
from gateway.context import CurrentPrincipal
from gateway.routes import NO_NUL, Body, Email, Name

UNSET = msgspec.UNSET

ProviderName = Annotated[str, msgspec.Meta(max_length=40, pattern=NO_NUL)]
FieldName = Annotated[str, msgspec.Meta(max_length=64, pattern=NO_NUL)]
ShortText = Annotated[str, msgspec.Meta(max_length=32, pattern=NO_NUL)]


class SenderPut(Body):
    from_address: Email | None = None
    from_name: Name | None = None
    reply_to: Email | None = None
    whatsapp_number_id: ShortText | None = None
    sms_sender_id: ShortText | None = None


class ChannelPut(Body):
    """Primary first, then fallbacks in order (at most 5)."""

    providers: Annotated[list[ProviderName], msgspec.Meta(max_length=5)]
    sender: SenderPut = msgspec.field(default_factory=SenderPut)
    rate_per_second: int | None = None
    retry_unknown: bool = False


class ChannelsPut(Body):
    """A channel given replaces the clinic's chain for it; `null` removes it (the global default
    applies again); a channel left out stays as it is."""

    email: ChannelPut | msgspec.UnsetType | None = UNSET
    push: ChannelPut | msgspec.UnsetType | None = UNSET
    whatsapp: ChannelPut | msgspec.UnsetType | None = UNSET
    sms: ChannelPut | msgspec.UnsetType | None = UNSET


class ConfigPut(Body):
    channels: ChannelsPut = msgspec.field(default_factory=ChannelsPut)
    #: provider -> its fields, each a string (all of them: they replace what is stored for
    #: that provider). Values are checked by the command, which names a bad one's field.
    credentials: Annotated[dict[ProviderName, Annotated[dict[FieldName, Any],
                                                         msgspec.Meta(max_length=20)]],
                           msgspec.Meta(max_length=10)] = {}


class TestSent(msgspec.Struct, frozen=True, kw_only=True):
    message_ids: list[uuid.UUID]


def _settings(c: ChannelPut) -> commands.ChannelSettings:
    s = c.sender
    return commands.ChannelSettings(
        providers=list(c.providers),
        sender=Sender(from_address=s.from_address, from_name=s.from_name, reply_to=s.reply_to,
                      whatsapp_number_id=s.whatsapp_number_id, sms_sender_id=s.sms_sender_id),
        rate_per_second=c.rate_per_second, retry_unknown=c.retry_unknown)


@get("/config", permission="communication_settings:read")
async def get_config(principal: CurrentPrincipal,
                     clinic_id: FromPath[uuid.UUID]) -> CommunicationConfig:
    """Each channel's chain (`source: "default"` where the clinic has none and the global
    default applies) and the stored credentials as `****` + their last 4 characters."""
    return await read_config(principal, clinic_id)


@put("/config", permission="communication_settings:manage")
async def put_config(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                     data: JSONBody[ConfigPut]) -> CommunicationConfig:
    """Validated whole (400 naming each bad field: unknown or duplicate provider, a provider
    that does not send the channel, a required credential neither given nor stored, an unknown
    credential field, a bad sender), then written in one transaction; the answer is the new
    configuration as GET shows it."""
    channels: dict[str, commands.ChannelSettings | None] = {}
    for name in ("email", "push", "whatsapp", "sms"):
        value = getattr(data.channels, name)
        if value is not UNSET:
            channels[name] = _settings(value) if value is not None else None
    return await commands.put_config(principal, clinic_id, channels=channels,
                                     credentials=data.credentials)


@post("/test/{channel:str}", permission="communication_settings:manage", status_code=202)
async def send_test(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                    channel: FromPath[str]) -> TestSent:
    """Queue a real test message to the caller: email to their account email, sms / whatsapp
    to their profile's phone (400 naming `phone` without one), push to their active devices
    (400 naming `devices` without any). At most 10 per clinic per minute (429)."""
    ids = await commands.send_test(principal, clinic_id, channel)
    return TestSent(message_ids=ids)


@get("/health", permission="communication_settings:read")
async def provider_health(principal: CurrentPrincipal,
                          clinic_id: FromPath[uuid.UUID]) -> health.Health:
    """Each provider the clinic's chains use: its breaker (shared by every worker) and the last
    five minutes' attempts, error rate and p95 latency."""
    return await health.provider_health(principal, clinic_id)


router = Router(path="/clinics/{clinic_id:str}/communication",
                route_handlers=[get_config, put_config, send_test, provider_health],
                tags=["communication"])
