"""Queue events: tickets, positions and times. A board hears `queue.updated` only, which names
no one; `queue.position` goes to one patient; `queue.called` to the called patient and staff."""

from __future__ import annotations

import uuid
from datetime import date

from domain.access import rooms
from domain.events.envelope import Category, DomainEvent, Priority
from domain.queueing.models import BoardTicket


class QueueUpdated(DomainEvent, frozen=True):
    TYPE = "queue.updated"
    CATEGORY = Category.QUEUE
    queue_id: uuid.UUID
    doctor_id: uuid.UUID
    location_id: uuid.UUID | None
    date: date
    paused: bool
    called: list[str]
    in_consultation: list[str]
    waiting: list[BoardTicket]


class QueuePosition(DomainEvent, frozen=True):
    TYPE = "queue.position"
    CATEGORY = Category.QUEUE
    appointment_id: uuid.UUID
    queue_id: uuid.UUID
    ticket: str
    status: str
    position: int | None
    ahead: int | None
    eta_minutes: int | None


class QueueCalled(DomainEvent, frozen=True):
    TYPE = "queue.called"
    CATEGORY = Category.QUEUE
    PRIORITY = Priority.HIGH
    queue_id: uuid.UUID
    appointment_id: uuid.UUID
    ticket: str


def staff_audience(clinic_id: uuid.UUID, doctor_id: uuid.UUID, queue_id: uuid.UUID) -> list[str]:
    return [rooms.clinic_staff(clinic_id), rooms.doctor(doctor_id), rooms.queue(queue_id)]
