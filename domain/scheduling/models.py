"""What scheduling returns, and its vocabulary."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

import msgspec


class Status(enum.StrEnum):
    PENDING_PAYMENT = "pending_payment"
    SCHEDULED = "scheduled"
    CONFIRMED = "confirmed"
    CHECKED_IN = "checked_in"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"
    EXPIRED = "expired"


class AppointmentType(enum.StrEnum):
    IN_PERSON = "in_person"
    VIDEO = "video"


class Transition(msgspec.Struct, frozen=True):
    from_status: Status | None
    to_status: Status
    starts_at: datetime
    ends_at: datetime
    actor_id: uuid.UUID | None
    #: Absent for roles that may not read reasons (see `appointments:read_reason`).
    reason: str | msgspec.UnsetType
    at: datetime


class Appointment(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    clinic_id: uuid.UUID
    doctor_id: uuid.UUID
    patient_id: uuid.UUID
    location_id: uuid.UUID | None
    type: AppointmentType
    status: Status
    start: datetime
    end: datetime
    #: The visit reason; absent for roles the matrix denies `appointments:read_reason`
    #: (minimum necessary: an accountant or an auditor needs the visit, not why).
    reason: str | msgspec.UnsetType
    parent_id: uuid.UUID | None
    follow_up_ids: list[uuid.UUID] = []
    series_id: uuid.UUID | None
    reschedule_count: int
    payment_due_at: datetime | None
    created_at: datetime
    history: list[Transition] | None = None


class ScheduleRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    weekday: int
    start: str
    end: str
    location_id: uuid.UUID | None = None
    appointment_types: list[AppointmentType] = msgspec.field(
        default_factory=lambda: [AppointmentType.IN_PERSON, AppointmentType.VIDEO])


class Schedule(msgspec.Struct, frozen=True):
    clinic_id: uuid.UUID
    doctor_id: uuid.UUID
    slot_minutes: int
    rules: list[ScheduleRule]


class TimeOffPeriod(msgspec.Struct, frozen=True):
    id: uuid.UUID
    clinic_id: uuid.UUID
    doctor_id: uuid.UUID | None
    start: datetime
    end: datetime
    reason: str


class SlotOut(msgspec.Struct, frozen=True):
    start: datetime
    end: datetime
    location_id: uuid.UUID | None = None


class Availability(msgspec.Struct, frozen=True):
    doctor_id: uuid.UUID
    timezone: str
    slots: list[SlotOut]
