"""Shapes of outbound messages and of their configuration."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import msgspec

Channel = Literal["email", "push", "whatsapp", "sms"]
CHANNELS: tuple[Channel, ...] = ("email", "push", "whatsapp", "sms")

Status = Literal["queued", "sending", "sent", "delivered", "read", "bounced", "complained",
                 "failed", "suppressed", "unknown"]

Outcome = Literal["sent", "rejected", "unavailable", "unknown", "skipped"]
SuppressionReason = Literal["hard_bounce", "soft_bounce", "complaint", "unsubscribe", "manual"]


class Sender(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Who a clinic's messages come from, per channel (each channel uses its own fields)."""

    from_address: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    whatsapp_number_id: str | None = None
    sms_sender_id: str | None = None


class WhatsAppTemplate(msgspec.Struct, frozen=True, kw_only=True):
    """A Meta-approved template: the only way to open a conversation outside the 24 h window."""

    name: str
    language: str = "en"
    parameters: list[str] = []


class Outbound(msgspec.Struct, frozen=True, kw_only=True):
    """One message as an adapter sees it: the address resolved, the text rendered. `idempotency_key`
    is stable across retries and workers, so a provider that dedupes drops a second send."""

    message_id: uuid.UUID
    clinic_id: uuid.UUID
    channel: Channel
    #: Email address, E.164 phone number, or push token.
    to: str
    #: Push only: which kind of token `to` is ("fcm" or "apns").
    token_kind: str | None = None
    subject: str | None = None
    text: str
    html: str | None = None
    #: Push data payload (string values only, as FCM requires).
    data: dict[str, str] = {}
    #: Extra email headers (e.g. List-Unsubscribe).
    headers: dict[str, str] = {}
    template: WhatsAppTemplate | None = None
    sender: Sender = Sender()
    idempotency_key: str


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    outcome: Outcome
    status_code: int | None
    latency_ms: float | None
    error: str | None
    at: datetime


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery-log row as its readers see it (body fields only until pruned)."""

    id: uuid.UUID
    clinic_id: uuid.UUID
    user_id: uuid.UUID | None
    channel: Channel
    kind: str
    address: str
    status: Status
    provider: str | None
    provider_message_id: str | None
    error: str | None
    created_at: datetime
    sent_at: datetime | None
    attempts: list[Attempt] = []
    #: The content fields are left out of lists, and out of a single message for roles without
    #: `communication_messages:read_body`; null once pruned (`body_pruned_at` says when).
    subject: str | msgspec.UnsetType | None = msgspec.UNSET
    body: str | msgspec.UnsetType | None = msgspec.UNSET
    body_pruned_at: datetime | msgspec.UnsetType | None = msgspec.UNSET


DeviceKind = Literal["fcm", "apns"]
Platform = Literal["android", "ios", "web"]


class Device(msgspec.Struct, frozen=True, kw_only=True):
    """A user's push registration as its owner sees it: never the token itself."""

    id: uuid.UUID
    kind: DeviceKind
    platform: Platform
    app_version: str | None
    token_last4: str
    created_at: datetime
    last_seen_at: datetime


class Suppression(msgspec.Struct, frozen=True, kw_only=True):
    channel: Channel
    address: str
    #: The one notification kind suppressed (a one-click unsubscribe); null: every kind.
    kind: str | None
    reason: SuppressionReason
    note: str | None
    created_at: datetime
    created_by: uuid.UUID | None


TemplateOrigin = Literal["clinic", "default"]


class Template(msgspec.Struct, frozen=True, kw_only=True):
    """What a kind sends on a channel in a locale: the clinic's own template, or (`origin:
    "default"`) the shipped one. `source_locale` is the locale of the template shown (a `hi-in`
    request with a clinic template stored for `hi`, or the shipped `en` when no Hindi exists)."""

    kind: str
    channel: Channel
    locale: str
    source: str
    origin: TemplateOrigin
    source_locale: str
    default_source: str
    updated_at: datetime | None
    updated_by: uuid.UUID | None
