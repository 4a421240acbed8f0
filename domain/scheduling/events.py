"""Appointment events: ids, statuses and times; never the reason for the visit."""

from __future__ import annotations

import uuid
from datetime import datetime

from domain.access import rooms
from domain.events.envelope import Category, DomainEvent


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
