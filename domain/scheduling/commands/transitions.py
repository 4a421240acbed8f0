"""Moving an appointment through its lifecycle: the one path every transition takes (REST,
queue actions, jobs), and the handlers other contexts register to react to it.

Scheduling owns the transition. A context that must change its own rows when an appointment
moves (queueing moves the queue entry; billing, video and notifications next) registers a
handler with `on_transition`; handlers run inside the transition's transaction, after the
appointment row is written, so they commit or roll back with it (there is no after-commit
step: what must happen after COMMIT goes through the event stream). Handlers are registered
when their context's package is imported (`domain/queueing/__init__.py`); every process that
runs commands imports them (gateway, worker, CLI).

Lock order: the appointment row first (FOR NO KEY UPDATE, taken by `visible_appointment` /
`load_appointment(lock=True)`); a handler then takes its own rows (queueing: the entry's queue,
see the top of domain/queueing/commands.py); the journal's locks come at COMMIT."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import msgspec

from domain import clock, db
from domain.access.policies import Grant
from domain.access.roles import Role
from domain.audit.commands import record
from domain.errors import Conflict, Forbidden
from domain.principal import Principal
from domain.scheduling import events, lifecycle
from domain.scheduling.models import Appointment, Status
from domain.scheduling.queries import appointment_from_row, load_appointment, visible_appointment
from domain.tenancy.models import Clinic
from domain.tenancy.queries import load_clinic

#: (actor, the appointment before, the appointment after) -> None, inside the transaction.
TransitionHandler = Callable[[Principal | None, Appointment, Appointment], Awaitable[None]]
_HANDLERS: list[TransitionHandler] = []


def on_transition(handler: TransitionHandler) -> TransitionHandler:
    """Register a context's reaction to every appointment transition (usable as a decorator)."""
    if handler not in _HANDLERS:
        _HANDLERS.append(handler)
    return handler


#: (actor, clinic, the appointments just booked) -> those appointments as they now stand;
#: inside the booking's transaction, after the rows, events and audit are written. Billing
#: covers a booking by a plan here (and may move it on from `pending_payment`).
BookingHandler = Callable[[Principal, Clinic, list[Appointment]], Awaitable[list[Appointment]]]
BOOKING_HANDLERS: list[BookingHandler] = []
#: (the appointments the payment window just expired) -> None, inside the expiry's transaction.
ExpiryHandler = Callable[[list[Appointment]], Awaitable[None]]
_EXPIRY_HANDLERS: list[ExpiryHandler] = []


def on_booking(handler: BookingHandler) -> BookingHandler:
    if handler not in BOOKING_HANDLERS:
        BOOKING_HANDLERS.append(handler)
    return handler


def on_expiry(handler: ExpiryHandler) -> ExpiryHandler:
    if handler not in _EXPIRY_HANDLERS:
        _EXPIRY_HANDLERS.append(handler)
    return handler


def permission_for(action: str) -> str:
    """The one statement of the rule: cancelling has its own permission (a patient may cancel
    their own appointment); every other move is an update. Routes declare it from here."""
    return "appointments:cancel" if action == "cancel" else "appointments:update"


def patient_notice(grant: Grant, appointment: Appointment, minutes: int, what: str) -> None:
    """A patient changes an appointment only with the clinic's notice."""
    if grant.role is not Role.PATIENT:
        return
    if appointment.start - clock.now() < timedelta(minutes=minutes):
        raise Conflict(f"{what} needs {minutes} minutes' notice; please call the clinic",
                       resource_type="appointment", resource_id=appointment.id)


async def transition(principal: Principal, appointment_id: uuid.UUID, action: str, *,
                     reason: str = "") -> Appointment:
    """`POST /appointments/{id}/{action}`: the appointment, read once and locked, moves; the
    registered handlers (its queue entry, if it has one) follow in the same transaction."""
    target = lifecycle.ACTIONS[action]
    permission = permission_for(action)
    async with db.transaction():
        grant, appointment = await visible_appointment(principal, appointment_id, permission,
                                                       lock=True)
        if grant.role is Role.PATIENT and action not in lifecycle.PATIENT_ACTIONS:
            raise Forbidden(f"a patient may not {action} an appointment",
                            resource_type="appointment", resource_id=appointment_id)
        try:
            lifecycle.check(appointment.status, target)
        except Conflict as exc:
            exc.resource_id = appointment_id
            raise
        if action == "cancel" and grant.role is Role.PATIENT:
            clinic = await load_clinic(appointment.clinic_id)
            patient_notice(grant, appointment, clinic.settings.min_cancel_notice_minutes,
                           "cancelling")
        updated = await apply_transition(principal, appointment, target, reason=reason,
                                         permission=permission)
    return updated


#: The status and its transition row in one statement.
_MOVE_STATUS = """
WITH moved AS (
    UPDATE appointments SET status = $2, updated_at = now()
        , payment_due_at = CASE WHEN $3 = 'pending_payment' AND $2 = 'scheduled' THEN NULL
                                ELSE payment_due_at END
    WHERE id = $1 RETURNING *
), noted AS (
    INSERT INTO appointment_transitions (appointment_id, from_status, to_status, starts_at,
        ends_at, actor_id, reason)
    SELECT id, $3, status, starts_at, ends_at, $4, $5 FROM moved
)
SELECT * FROM moved
"""


async def apply_transition(principal: Principal | None, appointment: Appointment, target: Status,
                           *, reason: str, permission: str | None = "appointments:update"
                           ) -> Appointment:
    """Move an already authorised, locked appointment: the state machine, its transition row,
    its event, its audit row (`permission`; None for the system's own moves) and the
    registered handlers."""
    lifecycle.check(appointment.status, target)
    rows = await db.fetch(_MOVE_STATUS, appointment.id, target.value, appointment.status.value,
                          principal.user_id if principal else None, reason)
    updated = msgspec.structs.replace(appointment_from_row(rows[0]),
                                      follow_up_ids=appointment.follow_up_ids)
    kind = (events.AppointmentCancelled if target is Status.CANCELLED
            else events.AppointmentStatusChanged)
    await events.record(principal, kind, updated, previous_status=appointment.status.value)
    if permission is not None:
        await record(principal, action=permission, resource_type="appointment",
                     resource_id=appointment.id, clinic_id=updated.clinic_id,
                     detail={"from": appointment.status.value, "to": target.value})
    for handler in _HANDLERS:
        await handler(principal, appointment, updated)
    return updated


# jobs and seams ----------------------------------------------------------------------------

async def expire_unpaid() -> int:
    """Unpaid `pending_payment` appointments past their window become `expired`, freeing the
    slot. The status guard makes each move happen once however many workers run this."""
    async with db.transaction():
        rows = await db.fetch(_EXPIRE)
        expired = [appointment_from_row(row) for row in rows]
        for appointment in expired:
            await events.record(None, events.AppointmentStatusChanged, appointment,
                                previous_status=Status.PENDING_PAYMENT.value)
        if expired:
            for handler in _EXPIRY_HANDLERS:
                await handler(expired)
    return len(rows)


#: The moves and their transition rows in one statement, however many are due (an event needs
#: only the row, not its follow-ups).
_EXPIRE = """
WITH moved AS (
    UPDATE appointments SET status = 'expired', updated_at = now()
    WHERE status = 'pending_payment' AND payment_due_at <= now() RETURNING *
), noted AS (
    INSERT INTO appointment_transitions (appointment_id, from_status, to_status, starts_at,
        ends_at, actor_id, reason)
    SELECT id, 'pending_payment', status, starts_at, ends_at, NULL, 'payment window ended'
    FROM moved
)
SELECT * FROM moved
"""


async def mark_paid(appointment_id: uuid.UUID) -> Appointment:
    """The seam billing plugs into: a paid `pending_payment` appointment becomes `scheduled`."""
    async with db.transaction():
        appointment = await load_appointment(appointment_id, lock=True)
        updated = await apply_transition(None, appointment, Status.SCHEDULED, reason="paid",
                                         permission=None)
    return updated
