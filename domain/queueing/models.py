"""What queue queries and commands return, and the queue's vocabulary."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Literal

import msgspec


class Priority(enum.StrEnum):
    EMERGENCY = "emergency"
    URGENT = "urgent"
    NORMAL = "normal"


class EntryStatus(enum.StrEnum):
    WAITING = "waiting"
    CALLED = "called"
    IN_CONSULTATION = "in_consultation"
    DONE = "done"
    REMOVED = "removed"


class Queue(msgspec.Struct, frozen=True, kw_only=True):
    """A row of `queues`: one doctor's line at one place (None: the virtual room) on one day."""

    id: uuid.UUID
    clinic_id: uuid.UUID
    doctor_id: uuid.UUID
    location_id: uuid.UUID | None
    day: date
    letter: str
    paused: bool
    last_ticket: int


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """A row of `queue_entries`, as the ordering and ETA functions see it."""

    id: uuid.UUID
    queue_id: uuid.UUID
    appointment_id: uuid.UUID
    patient_id: uuid.UUID
    ticket_no: int
    ticket: str
    priority: Priority
    status: EntryStatus
    scheduled_at: datetime
    checked_in_at: datetime
    order_at: datetime
    skips: int
    called_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    removed_reason: str | None = None
    told_position: int | None = None
    told_eta: int | None = None
    told_status: str | None = None


class Pace(msgspec.Struct, frozen=True):
    """How the ETA was computed: the doctor's measured consultations today, or the slot length
    when there are none yet."""

    method: Literal["measured", "slot_length"]
    minutes_per_patient: float
    samples: int


class Stats(msgspec.Struct, frozen=True):
    waiting: int
    average_wait_minutes: float | None
    p90_wait_minutes: float | None
    consultations_done: int
    no_shows: int


class EntryView(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    appointment_id: uuid.UUID
    patient_id: uuid.UUID
    ticket: str
    priority: Priority
    status: EntryStatus
    position: int | None
    eta_minutes: int | None
    skips: int
    checked_in_at: datetime
    called_at: datetime | None
    removed_reason: str | None


class QueueView(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    clinic_id: uuid.UUID
    doctor_id: uuid.UUID
    location_id: uuid.UUID | None
    date: date
    paused: bool
    #: Active entries first (in consultation, called, then waiting by position), then the day's
    #: finished and removed ones.
    entries: list[EntryView]
    eta: Pace
    stats: Stats


class Position(msgspec.Struct, frozen=True):
    """`GET /appointments/{id}/queue-position` and the `queue.position` event."""

    appointment_id: uuid.UUID
    queue_id: uuid.UUID
    ticket: str
    status: EntryStatus
    position: int | None
    ahead: int | None
    eta_minutes: int | None
    #: How the ETA was computed.
    eta: Pace


class BoardTicket(msgspec.Struct, frozen=True):
    ticket: str
    position: int
    eta_minutes: int


class BoardState(msgspec.Struct, frozen=True, kw_only=True):
    """What a waiting-room screen may know: tickets and positions, never who holds them."""

    queue_id: uuid.UUID
    date: date
    paused: bool
    called: list[str]
    in_consultation: list[str]
    waiting: list[BoardTicket]


class BoardToken(msgspec.Struct, frozen=True):
    queue_id: uuid.UUID
    token: str
    expires_at: datetime
    url: str


class CheckInCode(msgspec.Struct, frozen=True):
    """What a location's QR code (or an appointment's check-in link) carries."""

    code: str
    valid_for: Literal["location", "appointment"]
    target_id: uuid.UUID
