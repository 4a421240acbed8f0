"""Changes to schedules and appointments. Overlaps are refused by the database (exclusion
constraint), transitions by the state machine in lifecycle.py; each change records its
transition, its event and its audit row in one transaction."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from domain import clock, db
from domain.access import rooms
from domain.access.matrix import Scope, scope_of
from domain.access.policies import Grant, require
from domain.access.roles import Role
from domain.audit.commands import record
from domain.errors import Conflict, Forbidden, invalid_field
from domain.events.commands import record as record_event
from domain.events.envelope import Category, DomainEvent
from domain.principal import Principal
from domain.scheduling import events, lifecycle
from domain.scheduling.models import (
    Appointment,
    AppointmentType,
    Schedule,
    ScheduleRule,
    SlotOut,
    Status,
    TimeOffPeriod,
)
from domain.scheduling.queries import (
    compute_slots,
    load_appointment,
    load_schedule,
    nearest_free,
    require_doctor,
    visible_appointment,
)
from domain.tenancy.models import Clinic
from domain.tenancy.queries import find_member, load_clinic, location_ids, require_location, require_member

MIN_MINUTES, MAX_MINUTES = 5, 480
_HH_MM = re.compile(r"[0-9]{2}:[0-9]{2}")


class ScheduleUpdated(DomainEvent, frozen=True):
    TYPE = "schedule.updated"
    CATEGORY = Category.APPOINTMENT
    doctor_id: uuid.UUID


class BookingConflict(Conflict):
    """The slot is taken: carries the nearest free alternatives."""

    def __init__(self, message: str, *, alternatives: list[SlotOut], **kw: Any) -> None:
        super().__init__(message, **kw)
        self.extra = {"alternatives": msgspec.to_builtins(alternatives)}


# schedules ---------------------------------------------------------------------------------

def _parse_time(value: str, field: str) -> time:
    # fromisoformat alone would also take "0800", "T08:00" and "08:00:00", and store them as sent
    if not _HH_MM.fullmatch(value):
        raise invalid_field(field, "use HH:MM")
    try:
        return time.fromisoformat(value)
    except ValueError as exc:
        raise invalid_field(field, "use HH:MM") from exc


async def _doctor_location(clinic_id: uuid.UUID, doctor_id: uuid.UUID) -> uuid.UUID | None:
    member = await find_member(clinic_id, doctor_id)
    return member.location_id if member else None


async def _schedule_grant(principal: Principal, clinic_id: uuid.UUID, doctor_id: uuid.UUID) -> Grant:
    grant = require(principal, "schedules:manage", clinic_id, resource_type="schedule",
                    resource_id=doctor_id)
    await require_doctor(clinic_id, doctor_id)
    grant.check_object(owner_id=doctor_id, location_id=await _doctor_location(clinic_id, doctor_id),
                       object_id=doctor_id)
    return grant


async def put_schedule(principal: Principal, clinic_id: uuid.UUID, doctor_id: uuid.UUID, *,
                       rules: list[ScheduleRule], slot_minutes: int) -> Schedule:
    await _schedule_grant(principal, clinic_id, doctor_id)
    if not MIN_MINUTES <= slot_minutes <= MAX_MINUTES:
        raise invalid_field("slot_minutes", f"between {MIN_MINUTES} and {MAX_MINUTES}")
    locations = await location_ids(clinic_id)
    for i, rule in enumerate(rules):
        if not 0 <= rule.weekday <= 6:
            raise invalid_field(f"rules.{i}.weekday", "0 (Monday) to 6 (Sunday)")
        if _parse_time(rule.start, f"rules.{i}.start") >= _parse_time(rule.end, f"rules.{i}.end"):
            raise invalid_field(f"rules.{i}.end", "must be after start (same day)")
        if rule.location_id is not None and rule.location_id not in locations:
            raise invalid_field(f"rules.{i}.location_id", "no such location in this clinic")
        if not rule.appointment_types:
            raise invalid_field(f"rules.{i}.appointment_types", "name at least one type")
    async with db.transaction():
        await db.fetch(
            """INSERT INTO doctor_schedules (clinic_id, doctor_id, slot_minutes, rules)
               VALUES ($1, $2, $3, $4::jsonb)
               ON CONFLICT (clinic_id, doctor_id) DO UPDATE
               SET slot_minutes = EXCLUDED.slot_minutes, rules = EXCLUDED.rules, updated_at = now()""",
            clinic_id, doctor_id, slot_minutes, msgspec.json.encode(rules).decode(),
        )
        await record_event(principal, clinic_id=clinic_id, event=ScheduleUpdated(doctor_id=doctor_id),
                           audience=[rooms.clinic_staff(clinic_id), rooms.doctor(doctor_id)])
        await record(principal, action="schedules:manage", resource_type="schedule",
                     resource_id=doctor_id, clinic_id=clinic_id, detail={"rules": len(rules)})
    return Schedule(clinic_id=clinic_id, doctor_id=doctor_id, slot_minutes=slot_minutes, rules=rules)


async def add_time_off(principal: Principal, clinic_id: uuid.UUID, doctor_id: uuid.UUID | None, *,
                       start: datetime, end: datetime, reason: str) -> TimeOffPeriod:
    """`doctor_id=None` closes the whole clinic (a holiday)."""
    if doctor_id is None:
        grant = require(principal, "schedules:manage", clinic_id, resource_type="schedule")
        if grant.scope is not Scope.ANY:
            raise Forbidden(f"{grant.role} may not close the whole clinic", resource_type="schedule")
        await load_clinic(clinic_id)  # a SUPER_ADMIN may name any id: 404, not a foreign-key error
    else:
        await _schedule_grant(principal, clinic_id, doctor_id)
    if end <= start:
        raise invalid_field("end", "must be after start")
    period_id = uuid.uuid4()
    async with db.transaction():
        await db.fetch(
            """INSERT INTO time_off (id, clinic_id, doctor_id, starts_at, ends_at, reason)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            period_id, clinic_id, doctor_id, start, end, reason,
        )
        if doctor_id is not None:
            await record_event(principal, clinic_id=clinic_id,
                               event=ScheduleUpdated(doctor_id=doctor_id),
                               audience=[rooms.clinic_staff(clinic_id), rooms.doctor(doctor_id)])
        await record(principal, action="schedules:manage", resource_type="time_off",
                     resource_id=period_id, clinic_id=clinic_id)
    return TimeOffPeriod(id=period_id, clinic_id=clinic_id, doctor_id=doctor_id, start=start,
                         end=end, reason=reason)


# booking -----------------------------------------------------------------------------------

def _local(d: date, t: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, t, tzinfo=tz).astimezone(ZoneInfo("UTC"))


async def _within_hours(clinic: Clinic, doctor_id: uuid.UUID, start: datetime, end: datetime,
                        appointment_type: AppointmentType, location_id: uuid.UUID | None) -> bool:
    tz = ZoneInfo(clinic.timezone)
    schedule = await load_schedule(clinic.id, doctor_id)
    local_day = start.astimezone(tz).date()
    fits = any(
        rule.weekday == local_day.weekday()
        and appointment_type in rule.appointment_types
        and (rule.location_id is None or location_id is None or rule.location_id == location_id)
        and _local(local_day, time.fromisoformat(rule.start), tz) <= start
        and end <= _local(local_day, time.fromisoformat(rule.end), tz)
        for rule in schedule.rules
    )
    if not fits or clinic.settings.booking_paused:
        return False
    off = await db.fetch(
        """SELECT 1 FROM time_off WHERE clinic_id = $1 AND (doctor_id IS NULL OR doctor_id = $2)
           AND starts_at < $4 AND ends_at > $3 LIMIT 1""",
        clinic.id, doctor_id, start, end,
    )
    return not off


def _may_override(grant: Grant) -> bool:
    return scope_of("schedules:override", grant.role) is not Scope.DENY


async def _check_time(grant: Grant, clinic: Clinic, doctor_id: uuid.UUID, start: datetime,
                      end: datetime, appointment_type: AppointmentType,
                      location_id: uuid.UUID | None, override_reason: str | None,
                      ignore: uuid.UUID | None = None) -> bool:
    """Refuse past, too-far and out-of-hours times; returns whether an override was used."""
    if start.tzinfo is None:
        raise invalid_field("start", "include a UTC offset")
    now = clock.now()
    if start < now:
        raise invalid_field("start", "is in the past")
    if await _within_hours(clinic, doctor_id, start, end, appointment_type, location_id):
        horizon = now + timedelta(days=clinic.settings.booking_horizon_days)
        if start <= horizon or (override_reason and _may_override(grant)):
            return start > horizon
        raise invalid_field("start", f"bookings open {clinic.settings.booking_horizon_days} days ahead")
    if override_reason and _may_override(grant):
        return True
    alternatives = await nearest_free(clinic.id, doctor_id, start,
                                      appointment_type=appointment_type.value, ignore=ignore)
    why = "booking is paused" if clinic.settings.booking_paused else "outside the doctor's hours"
    raise BookingConflict(f"{why}; see alternatives", alternatives=alternatives,
                          resource_type="appointment")


async def _insert(*, clinic_id: uuid.UUID, doctor_id: uuid.UUID, patient_id: uuid.UUID,
                  location_id: uuid.UUID | None, appointment_type: AppointmentType, status: Status,
                  start: datetime, end: datetime, reason: str, parent_id: uuid.UUID | None,
                  series_id: uuid.UUID | None, payment_due_at: datetime | None,
                  actor: Principal) -> Appointment:
    appointment_id = uuid.uuid4()
    await db.fetch(
        """INSERT INTO appointments (id, clinic_id, doctor_id, patient_id, location_id, type,
               status, starts_at, ends_at, reason, parent_id, series_id, payment_due_at, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)""",
        appointment_id, clinic_id, doctor_id, patient_id, location_id, appointment_type.value,
        status.value, start, end, reason, parent_id, series_id, payment_due_at, actor.user_id,
    )
    await _transition_row(appointment_id, None, status, start, end, actor, "booked")
    appointment = await load_appointment(appointment_id)
    await record_event(actor, clinic_id=clinic_id,
                       event=events.AppointmentCreated(**_event_fields(appointment)),
                       audience=events.audience(clinic_id, doctor_id, patient_id))
    return appointment


async def lock_doctor(doctor_id: uuid.UUID) -> None:
    """Bookings for one doctor take turns. The exclusion constraint is what refuses overlaps;
    without this, two transactions inserting overlapping rows wait on each other and one dies
    as a deadlock a second later instead of getting a clean conflict."""
    await db.fetch("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))", str(doctor_id))


def _event_fields(a: Appointment) -> dict[str, Any]:
    return {"appointment_id": a.id, "doctor_id": a.doctor_id, "patient_id": a.patient_id,
            "location_id": a.location_id, "type": a.type.value, "status": a.status.value,
            "start": a.start, "end": a.end}


async def _transition_row(appointment_id: uuid.UUID, from_status: Status | None, to_status: Status,
                          start: datetime, end: datetime, actor: Principal | None,
                          reason: str) -> None:
    await db.fetch(
        """INSERT INTO appointment_transitions (appointment_id, from_status, to_status, starts_at,
               ends_at, actor_id, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        appointment_id, from_status.value if from_status else None, to_status.value, start, end,
        actor.user_id if actor else None, reason,
    )


async def _require_patient(clinic_id: uuid.UUID, patient_id: uuid.UUID) -> None:
    await require_member(clinic_id, patient_id, role=Role.PATIENT,
                         otherwise=invalid_field("patient_id", "not a patient of this clinic"))


async def book(
    principal: Principal, *, clinic_id: uuid.UUID, doctor_id: uuid.UUID, patient_id: uuid.UUID,
    appointment_type: AppointmentType, start: datetime, duration_minutes: int | None = None,
    location_id: uuid.UUID | None = None, reason: str = "", override_reason: str | None = None,
    repeat_every_days: int | None = None, repeat_count: int = 1,
    parent_id: uuid.UUID | None = None,
) -> list[Appointment]:
    """Book one appointment, or a series all-or-none (the 409 lists every conflicting start)."""
    grant = require(principal, "follow_ups:create" if parent_id else "appointments:create",
                    clinic_id, resource_type="appointment")
    # whose it is, as in queries.owner_of: a DOCTOR's own (follow_ups:create O) are their visits
    grant.check_target(owner_id=doctor_id if grant.role is Role.DOCTOR else patient_id,
                       location_id=location_id)
    clinic = await load_clinic(clinic_id)
    await require_doctor(clinic_id, doctor_id)
    await _require_patient(clinic_id, patient_id)
    if appointment_type is AppointmentType.IN_PERSON and location_id is None:
        raise invalid_field("location_id", "an in-person appointment needs a location")
    if location_id is not None:
        await require_location(clinic_id, location_id,
                               otherwise=invalid_field("location_id", "no such location in this clinic"))
    schedule = await load_schedule(clinic_id, doctor_id)
    minutes = duration_minutes or schedule.slot_minutes
    if not MIN_MINUTES <= minutes <= MAX_MINUTES:
        raise invalid_field("duration_minutes", f"between {MIN_MINUTES} and {MAX_MINUTES}")
    if repeat_count < 1 or repeat_count > 52 or (repeat_count > 1 and not repeat_every_days):
        raise invalid_field("repeat", "count 1 to 52, with every_days for more than one")
    if grant.role is Role.PATIENT:
        _patient_booking_shape(clinic, minutes, schedule.slot_minutes, repeat_count)
    step = timedelta(days=repeat_every_days or 0)
    starts = [start + i * step for i in range(repeat_count)]
    length = timedelta(minutes=minutes)
    overrides = [await _check_time(grant, clinic, doctor_id, s, s + length, appointment_type,
                                   location_id, override_reason) for s in starts]
    pay = appointment_type.value in clinic.settings.payment_required_types
    status = Status.PENDING_PAYMENT if pay else Status.SCHEDULED
    due = clock.now() + timedelta(minutes=clinic.settings.payment_window_minutes) if pay else None
    series_id = uuid.uuid4() if repeat_count > 1 else None
    conflicts: list[datetime] = []
    booked: list[Appointment] = []
    try:
        async with db.transaction() as tx:
            if grant.role is Role.PATIENT:
                await _check_patient_quota(clinic, patient_id, len(starts))
            await lock_doctor(doctor_id)
            for s in starts:
                try:
                    # a savepoint per occurrence: a refused one leaves no row and no event
                    async with tx.savepoint():
                        booked.append(await _insert(
                            clinic_id=clinic_id, doctor_id=doctor_id, patient_id=patient_id,
                            location_id=location_id, appointment_type=appointment_type,
                            status=status, start=s, end=s + length, reason=reason,
                            parent_id=parent_id, series_id=series_id, payment_due_at=due,
                            actor=principal))
                except asyncpg.ExclusionViolationError:
                    conflicts.append(s)
            if conflicts:
                raise _SeriesConflict()
            for appointment, overridden in zip(booked, overrides, strict=True):
                await record(principal, action="appointments:create", resource_type="appointment",
                             resource_id=appointment.id, clinic_id=clinic_id,
                             detail={"override": override_reason or ""} if overridden else {})
    except _SeriesConflict:
        alternatives = await nearest_free(clinic_id, doctor_id, conflicts[0],
                                          appointment_type=appointment_type.value)
        taken = ", ".join(c.isoformat() for c in conflicts)
        error = BookingConflict(f"the doctor is already booked at {taken}",
                                alternatives=alternatives, resource_type="appointment")
        error.extra["conflicts"] = [c.isoformat() for c in conflicts]
        raise error from None
    return booked


def _patient_booking_shape(clinic: Clinic, minutes: int, slot_minutes: int, occurrences: int) -> None:
    """A patient books the schedule's own slot length and bounded series (staff are free to do
    otherwise): three 480-minute daily series once emptied a doctor's calendar for 52 days."""
    if minutes != slot_minutes:
        raise invalid_field("duration_minutes",
                            f"patients book the doctor's slot length ({slot_minutes} minutes)")
    limit = clinic.settings.patient_max_series_occurrences
    if occurrences > limit:
        raise invalid_field("repeat.count", f"patients book series of at most {limit} occurrences")


async def _check_patient_quota(clinic: Clinic, patient_id: uuid.UUID, adding: int) -> None:
    """At most `patient_max_future_appointments` upcoming appointments per patient and clinic.
    The patient's bookings in the clinic take turns (an advisory lock taken before the doctor's,
    always in that order), so concurrent requests cannot each see room for one more."""
    await db.fetch("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 8))",
                   f"{clinic.id}:{patient_id}")
    rows = await db.fetch(
        """SELECT count(*) AS n FROM appointments
           WHERE clinic_id = $1 AND patient_id = $2 AND starts_at > now()
             AND status = ANY($3::text[])""",
        clinic.id, patient_id, [s.value for s in lifecycle.UPCOMING],
    )
    limit = clinic.settings.patient_max_future_appointments
    if rows[0]["n"] + adding > limit:
        raise Conflict(f"a patient may hold at most {limit} upcoming appointments in this clinic; "
                       f"you have {rows[0]['n']}", resource_type="appointment")


class _SeriesConflict(Exception):
    """Rolls the whole series back."""


# transitions -------------------------------------------------------------------------------

def _patient_notice(grant: Grant, appointment: Appointment, minutes: int, what: str,
                    override_reason: str | None) -> None:
    if grant.role is not Role.PATIENT:
        return
    if appointment.start - clock.now() < timedelta(minutes=minutes):
        raise Conflict(f"{what} needs {minutes} minutes' notice; please call the clinic",
                       resource_type="appointment", resource_id=appointment.id)


async def transition(principal: Principal, appointment_id: uuid.UUID, action: str, *,
                     reason: str = "") -> Appointment:
    target = lifecycle.ACTIONS[action]
    permission = "appointments:cancel" if action == "cancel" else "appointments:update"
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
        if action == "cancel":
            clinic = await load_clinic(appointment.clinic_id)
            _patient_notice(grant, appointment, clinic.settings.min_cancel_notice_minutes,
                            "cancelling", None)
        updated = await apply_transition(principal, appointment, target, reason=reason,
                                         permission=permission)
    return updated


async def apply_transition(principal: Principal, appointment: Appointment, target: Status, *,
                           reason: str, permission: str = "appointments:update") -> Appointment:
    """Move an already authorised, locked appointment: the state machine, its transition row,
    its event and its audit row. Queue actions reuse it for the consultation they drive."""
    lifecycle.check(appointment.status, target)
    await db.fetch("UPDATE appointments SET status = $2, updated_at = now() WHERE id = $1",
                   appointment.id, target.value)
    await _transition_row(appointment.id, appointment.status, target, appointment.start,
                          appointment.end, principal, reason)
    updated = await load_appointment(appointment.id)
    kind = events.AppointmentCancelled if target is Status.CANCELLED else events.AppointmentStatusChanged
    await record_event(principal, clinic_id=updated.clinic_id,
                       event=kind(**_event_fields(updated), previous_status=appointment.status.value),
                       audience=events.audience(updated.clinic_id, updated.doctor_id, updated.patient_id))
    await record(principal, action=permission, resource_type="appointment",
                 resource_id=appointment.id, clinic_id=updated.clinic_id,
                 detail={"from": appointment.status.value, "to": target.value})
    return updated


async def reschedule(principal: Principal, appointment_id: uuid.UUID, *, start: datetime,
                     duration_minutes: int | None = None, override_reason: str | None = None,
                     reason: str = "") -> Appointment:
    """Same appointment, new time; allowed from scheduled and confirmed only."""
    try:
        async with db.transaction():
            grant, appointment = await visible_appointment(principal, appointment_id,
                                                           "appointments:update")
            await lock_doctor(appointment.doctor_id)
            appointment = await load_appointment(appointment_id, lock=True)
            if appointment.status not in lifecycle.RESCHEDULABLE:
                raise Conflict(f"cannot reschedule an appointment that is {appointment.status}",
                               resource_type="appointment", resource_id=appointment_id)
            clinic = await load_clinic(appointment.clinic_id)
            _patient_notice(grant, appointment, clinic.settings.min_reschedule_notice_minutes,
                            "rescheduling", override_reason)
            if appointment.reschedule_count >= clinic.settings.max_reschedules and not (
                    override_reason and _may_override(grant)):
                raise Conflict(f"this appointment was already rescheduled "
                               f"{appointment.reschedule_count} times", resource_type="appointment",
                               resource_id=appointment_id)
            minutes = duration_minutes or int((appointment.end - appointment.start).total_seconds() // 60)
            if not MIN_MINUTES <= minutes <= MAX_MINUTES:
                raise invalid_field("duration_minutes", f"between {MIN_MINUTES} and {MAX_MINUTES}")
            if grant.role is Role.PATIENT and duration_minutes is not None:
                slot = (await load_schedule(appointment.clinic_id, appointment.doctor_id)).slot_minutes
                _patient_booking_shape(clinic, minutes, slot, 1)
            end = start + timedelta(minutes=minutes)
            overridden = await _check_time(grant, clinic, appointment.doctor_id, start, end,
                                           appointment.type, appointment.location_id,
                                           override_reason, ignore=appointment_id)
            await db.fetch(
                """UPDATE appointments SET starts_at = $2, ends_at = $3,
                       reschedule_count = reschedule_count + 1, updated_at = now()
                   WHERE id = $1""",
                appointment_id, start, end,
            )
            updated = await load_appointment(appointment_id)
            await _transition_row(appointment_id, appointment.status, updated.status, start, end,
                                  principal, reason or "rescheduled")
            await record_event(principal, clinic_id=updated.clinic_id,
                               event=events.AppointmentRescheduled(
                                   **_event_fields(updated), previous_start=appointment.start,
                                   previous_end=appointment.end),
                               audience=events.audience(updated.clinic_id, updated.doctor_id,
                                                        updated.patient_id))
            await record(principal, action="appointments:update", resource_type="appointment",
                         resource_id=appointment_id, clinic_id=updated.clinic_id,
                         detail={"rescheduled": True, "override": override_reason or ""}
                         if overridden else {"rescheduled": True})
    except asyncpg.ExclusionViolationError:
        current = await load_appointment(appointment_id)
        alternatives = await nearest_free(current.clinic_id, current.doctor_id, start,
                                          appointment_type=current.type.value,
                                          ignore=appointment_id)
        raise BookingConflict("the doctor is already booked then", alternatives=alternatives,
                              resource_type="appointment", resource_id=appointment_id) from None
    return updated


async def follow_up(principal: Principal, parent_id: uuid.UUID, *, start: datetime | None,
                    after_days: int | None, reason: str = "") -> Appointment:
    """A new appointment linked to its parent: same doctor, patient, type and place."""
    _, parent = await visible_appointment(principal, parent_id, "follow_ups:create")
    if parent.status not in lifecycle.FOLLOW_UP_FROM:
        raise Conflict(f"a follow-up needs a visit that took place; this one is {parent.status}",
                       resource_type="appointment", resource_id=parent_id)
    if (start is None) == (after_days is None):
        raise invalid_field("start", "give either start or after_days")
    if start is None:
        assert after_days is not None
        if not 1 <= after_days <= 365:
            raise invalid_field("after_days", "1 to 365")
        wanted = parent.start + timedelta(days=after_days)
        _, slots = await compute_slots(parent.clinic_id, parent.doctor_id, wanted,
                                       wanted + timedelta(days=14), appointment_type=parent.type.value)
        slots = [s for s in slots if s.location_id in (None, parent.location_id)]
        if not slots:
            raise Conflict("no free slot in the two weeks after that day", resource_type="appointment")
        start = slots[0].start
    booked = await book(principal, clinic_id=parent.clinic_id, doctor_id=parent.doctor_id,
                        patient_id=parent.patient_id, appointment_type=parent.type, start=start,
                        duration_minutes=int((parent.end - parent.start).total_seconds() // 60),
                        location_id=parent.location_id, reason=reason, parent_id=parent_id)
    return booked[0]


# jobs and seams ----------------------------------------------------------------------------

async def expire_unpaid() -> int:
    """Unpaid `pending_payment` appointments past their window become `expired`, freeing the
    slot. The status guard makes each move happen once however many workers run this."""
    async with db.transaction():
        rows = await db.fetch(
            """UPDATE appointments SET status = 'expired', updated_at = now()
               WHERE status = 'pending_payment' AND payment_due_at <= now() RETURNING id""")
        for row in rows:
            appointment = await load_appointment(row["id"])
            await _transition_row(appointment.id, Status.PENDING_PAYMENT, Status.EXPIRED,
                                  appointment.start, appointment.end, None, "payment window ended")
            await record_event(None, clinic_id=appointment.clinic_id,
                               event=events.AppointmentStatusChanged(
                                   **_event_fields(appointment),
                                   previous_status=Status.PENDING_PAYMENT.value),
                               audience=events.audience(appointment.clinic_id,
                                                        appointment.doctor_id,
                                                        appointment.patient_id))
    return len(rows)


async def mark_paid(appointment_id: uuid.UUID) -> Appointment:
    """The seam billing plugs into: a paid `pending_payment` appointment becomes `scheduled`."""
    async with db.transaction():
        appointment = await load_appointment(appointment_id, lock=True)
        lifecycle.check(appointment.status, Status.SCHEDULED)
        await db.fetch("UPDATE appointments SET status = 'scheduled', payment_due_at = NULL, "
                       "updated_at = now() WHERE id = $1", appointment_id)
        await _transition_row(appointment_id, appointment.status, Status.SCHEDULED,
                              appointment.start, appointment.end, None, "paid")
        updated = await load_appointment(appointment_id)
        await record_event(None, clinic_id=updated.clinic_id,
                           event=events.AppointmentStatusChanged(
                               **_event_fields(updated), previous_status=appointment.status.value),
                           audience=events.audience(updated.clinic_id, updated.doctor_id,
                                                    updated.patient_id))
    return updated
