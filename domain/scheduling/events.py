"""Appointment events: ids, statuses and times; never the reason for the visit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from domain.access import rooms
from domain.events.commands import record as record_event
from domain.events.envelope import Category, DomainEvent
from domain.principal import Principal
from domain.scheduling.models import Appointment


class ScheduleUpdated(DomainEvent, frozen=True):
    TYPE = "schedule.updated"
    CATEGORY = Category.APPOINTMENT
    doctor_id: uuid.UUID


class AppointmentEvent(DomainEvent, frozen=True):
    CATEGORY = Category.APPOINTMENT
    appointment_id: uuid.UUID
    doctor_id: uuid.UUID
    patient_id: uuid.UUID
    location_id: uuid.UUID | None
    type: str
    status: str
    start: datetime
    end: datetime


class AppointmentCreated(AppointmentEvent, frozen=True):
    TYPE = "appointment.created"


class AppointmentStatusChanged(AppointmentEvent, frozen=True):
    TYPE = "appointment.status_changed"
    previous_status: str


class AppointmentRescheduled(AppointmentEvent, frozen=True):
    TYPE = "appointment.rescheduled"
    previous_start: datetime
    previous_end: datetime


class AppointmentCancelled(AppointmentEvent, frozen=True):
    TYPE = "appointment.cancelled"
    previous_status: str


def audience(clinic_id: uuid.UUID, doctor_id: uuid.UUID, patient_id: uuid.UUID) -> list[str]:
    """Staff of the clinic, the doctor, and the patient themselves."""
    return [rooms.clinic_staff(clinic_id), rooms.doctor(doctor_id), rooms.user(patient_id)]


async def record(actor: Principal | None, kind: type[AppointmentEvent], appointment: Appointment,
                 **extra: Any) -> None:
    """The one way an appointment event is built: its fields from the appointment as it now
    stands, its audience from whom it concerns; `extra` carries what it was before."""
    a = appointment
    await record_event(actor, clinic_id=a.clinic_id, event=kind(
        appointment_id=a.id, doctor_id=a.doctor_id, patient_id=a.patient_id,
        location_id=a.location_id, type=a.type.value, status=a.status.value, start=a.start,
        end=a.end, **extra), audience=audience(a.clinic_id, a.doctor_id, a.patient_id))
