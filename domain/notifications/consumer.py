"""Events become notifications. A consumer of the event log (not of the hub, which drops what no
socket hears): each clinic's events are read in order after the clinic's cursor, and the cursor
moves in the transaction that enqueued their messages, so a restart neither skips nor repeats.
Several workers share the clinics (the cursor row is locked with SKIP LOCKED).

What each event type becomes is the table `RULES`; recipients come from ids (the appointment's
patient and doctor, loaded now), never from names in the event."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any, Final

from domain.events.envelope import Envelope
from domain.notifications import reminders
from domain.notifications.dispatch import Notice, load_facts, notify_many
from domain.scheduling.lifecycle import ACTIVE
from domain.scheduling.models import Appointment, Status
from domain.tenancy.models import Clinic

log = logging.getLogger("carewire.notifications")

#: Events read per clinic per transaction.
BATCH: Final = 200

#: Who hears of an event: (kind, "patient" | "doctor") pairs, from the event's data and the
#: appointment as it now stands.
Notices = list[tuple[str, str]]
Rule = Callable[[dict[str, Any], Appointment], Notices]


def _booked(a: Appointment) -> Notices:
    if a.status not in ACTIVE or a.status is Status.PENDING_PAYMENT:
        return []  # cancelled since (its own notice follows) or not paid yet
    return [("follow_up.scheduled" if a.parent_id else "appointment.booked", "patient"),
            ("staff.appointment_booked", "doctor")]


def _created(data: dict[str, Any], a: Appointment) -> Notices:
    return _booked(a) if data["status"] != Status.PENDING_PAYMENT else []


def _status_changed(data: dict[str, Any], a: Appointment) -> Notices:
    if data["previous_status"] == Status.PENDING_PAYMENT and data["status"] == Status.SCHEDULED:
        return _booked(a)  # paid
    if data["status"] == Status.NO_SHOW:
        return [("appointment.no_show", "patient")]
    return []


def _rescheduled(data: dict[str, Any], a: Appointment) -> Notices:
    return [("appointment.rescheduled", "patient")] if a.status in ACTIVE else []


def _cancelled(data: dict[str, Any], a: Appointment) -> Notices:
    if data["previous_status"] == Status.PENDING_PAYMENT:
        return []  # never confirmed to anyone
    return [("appointment.cancelled", "patient"), ("staff.appointment_cancelled", "doctor")]


def _called(data: dict[str, Any], a: Appointment) -> Notices:
    return [("queue.called", "patient")]


def _position(data: dict[str, Any], a: Appointment) -> Notices:
    return [("queue.next", "patient")]


RULES: Final[dict[str, Rule]] = {
    "appointment.created": _created,
    "appointment.status_changed": _status_changed,
    "appointment.rescheduled": _rescheduled,
    "appointment.cancelled": _cancelled,
    "queue.called": _called,
    "queue.position": _position,
}


#: Billing events that tell the patient something, from the event's own ids and amounts (no
#: appointment needed: a plan's invoice has none). The receipt is once per event.
BILLING_RULES: Final[dict[str, str]] = {
    "payment.succeeded": "billing.receipt",
}


def relevant(env: Envelope) -> bool:
    if env.type in BILLING_RULES:
        return True
    if env.type not in RULES:
        return False
    if env.type == "queue.position":  # "you are next": only the one now first in line
        return env.data.get("ahead") == 0 and env.data.get("status") == "waiting"
    return True


def _key(env: Envelope, kind: str) -> str:
    """Once per event and kind; "you are next" once per appointment, however often the line
    reshuffles."""
    if kind == "queue.next":
        return f"queue.next:{env.data['appointment_id']}"
    return f"{env.id}:{kind}"


async def act(clinic: Clinic, events: list[Envelope]) -> None:
    """What `events` (relevant ones) mean, in the caller's transaction: each appointment's
    reminders planned as it now stands, and every notice of the batch made at once (the
    appointments, people, preferences and templates read once)."""
    billing = [env for env in events if env.type in BILLING_RULES]
    events = [env for env in events if env.type not in BILLING_RULES]
    ids = [uuid.UUID(env.data["appointment_id"]) for env in events]
    facts = await load_facts([clinic], ids,
                             [uuid.UUID(env.data["patient_id"]) for env in billing])
    notices: list[Notice] = [
        Notice(clinic_id=clinic.id, kind=BILLING_RULES[env.type],
               user_id=uuid.UUID(env.data["patient_id"]), appointment_id=None,
               key=_key(env, BILLING_RULES[env.type]), amount=int(env.data["amount"]),
               currency=str(env.data["currency"]))
        for env in billing]
    synced: set[uuid.UUID] = set()
    for env, appointment_id in zip(events, ids, strict=True):
        a = facts.appointments.get(appointment_id)
        if a is None:
            continue  # gone with its clinic
        if env.type.startswith("appointment.") and a.id not in synced:
            synced.add(a.id)  # as it now stands: once per batch is enough
            await reminders.sync(a, clinic.settings.reminder_offsets_seconds)
        notices += [Notice(clinic_id=clinic.id, kind=kind,
                           user_id=a.patient_id if who == "patient" else a.doctor_id,
                           appointment_id=a.id, key=_key(env, kind),
                           ticket=env.data.get("ticket"))
                    for kind, who in RULES[env.type](env.data, a)]
    await notify_many(notices, facts)
