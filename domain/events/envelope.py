"""What an event is: a typed payload (ids, statuses, times; never clinical content) inside an
envelope carrying the clinic's sequence number."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any, ClassVar

import msgspec


class Category(enum.StrEnum):
    APPOINTMENT = "APPOINTMENT"
    QUEUE = "QUEUE"
    BILLING = "BILLING"
    VIDEO = "VIDEO"
    COMMUNICATION = "COMMUNICATION"
    CLINIC = "CLINIC"
    USER_ACTIVITY = "USER_ACTIVITY"
    EHR_RECORD = "EHR_RECORD"
    SECURITY = "SECURITY"


class Priority(enum.StrEnum):
    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class DomainEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event payload; subclasses set TYPE and CATEGORY."""

    TYPE: ClassVar[str]
    CATEGORY: ClassVar[Category]
    PRIORITY: ClassVar[Priority] = Priority.NORMAL


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """The wire form, identical over Socket.IO, resume and GET /events."""

    id: uuid.UUID
    seq: int
    clinic_id: uuid.UUID
    type: str
    category: Category
    priority: Priority
    occurred_at: datetime
    data: dict[str, Any]


class Outgoing(msgspec.Struct, frozen=True, kw_only=True):
    """What the relay hands to the hub: the envelope and the rooms allowed to see it."""

    envelope: Envelope
    audience: list[str]
