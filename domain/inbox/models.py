"""What the inbox stores and hands to a provider's handler."""

from __future__ import annotations

import uuid

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """A verified webhook as stored: the raw body, and the headers verification read."""

    provider: str
    event_id: str
    body: bytes
    headers: dict[str, str]


class Handled(msgspec.Struct, frozen=True, kw_only=True):
    """What a handler did, in a short word (`bounced`, `unknown_message`, ...), and the clinic
    the event turned out to concern (None when it matched nothing of ours)."""

    result: str
    clinic_id: uuid.UUID | None = None


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a provider: events stored now, and those already stored before."""

    stored: int = 0
    duplicates: int = 0
    #: Set for messages that are not events (an SNS subscription confirmation...).
    note: str | None = None
