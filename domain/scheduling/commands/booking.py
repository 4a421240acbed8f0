"""Booking, rescheduling and follow-ups: the time is checked against the doctor's hours and
time off (read once per command, see `load_calendar`), and an overlap is refused by the
database (exclusion constraint) under the doctor's lock. Each change records its transition,
its event and its audit row in one transaction."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from domain import clock, db
from domain.access.matrix import Scope, scope_of
from domain.access.policies import Grant, require
from domain.access.roles import Role
from domain.audit.commands import record
from domain.errors import Conflict, NotFound, invalid_field
from domain.principal import Principal
from domain.scheduling import events, lifecycle
from domain.scheduling.commands.schedules import MAX_MINUTES, MIN_MINUTES
from domain.scheduling.commands.transitions import BOOKING_HANDLERS, patient_notice
from domain.scheduling.errors import BookingConflict
from domain.scheduling.models import Appointment, AppointmentType, Schedule, Status
from domain.scheduling.queries import (
    Calendar,
    appointment_from_row,
    compute_slots,
    load_calendar,
    nearest_free,
    visible_appointment,
)
from domain.tenancy.models import Clinic
from domain.tenancy.queries import booking_parties, load_clinic


def _local(d: date, t: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, t, tzinfo=tz).astimezone(ZoneInfo("UTC"))


def _within_hours(clinic: Clinic, calendar: Calendar, start: datetime, end: datetime,
                  appointment_type: AppointmentType, location_id: uuid.UUID | None) -> bool:
    tz = ZoneInfo(clinic.timezone)
    local_day = start.astimezone(tz).date()
    fits = any(
        rule.weekday == local_day.weekday()
        and appointment_type in rule.appointment_types
        and (rule.location_id is None or location_id is None or rule.location_id == location_id)
        and _local(local_day, time.fromisoformat(rule.start), tz) <= start
        and end <= _local(local_day, time.fromisoformat(rule.end), tz)
        for rule in calendar.schedule.rules
    )
    return fits and not clinic.settings.booking_paused and not calendar.is_off(start, end)


def _may_override(grant: Grant) -> bool:
    return scope_of("schedules:override", grant.role) is not Scope.DENY


async def _check_time(grant: Grant, clinic: Clinic, calendar: Calendar, start: datetime,
                      end: datetime, appointment_type: AppointmentType,
                      location_id: uuid.UUID | None, override_reason: str | None,
                      ignore: uuid.UUID | None = None) -> bool:
    """Refuse past, too-far and out-of-hours times; returns whether an override was used.
    `calendar` must cover [start, end) (see `_span`)."""
    if start.tzinfo is None:
        raise invalid_field("start", "include a UTC offset")
    now = clock.now()
    if start < now:
        raise invalid_field("start", "is in the past")
    if _within_hours(clinic, calendar, start, end, appointment_type, location_id):
        horizon = now + timedelta(days=clinic.settings.booking_horizon_days)
        if start <= horizon or (override_reason and _may_override(grant)):
            return start > horizon
        raise invalid_field("start", f"bookings open {clinic.settings.booking_horizon_days} days ahead")
    if override_reason and _may_override(grant):
        return True
    alternatives = await nearest_free(clinic.id, calendar.schedule.doctor_id, start,
                                      appointment_type=appointment_type.value, ignore=ignore,
                                      clinic=clinic, schedule=calendar.schedule)
    why = "booking is paused" if clinic.settings.booking_paused else "outside the doctor's hours"
    raise BookingConflict(f"{why}; see alternatives", alternatives=alternatives,
                          resource_type="appointment")


def _span(starts: list[datetime]) -> tuple[datetime, datetime] | None:
    """The time the occurrences starting at `starts` can cover (at most MAX_MINUTES each);
    None when a start has no UTC offset (refused by `_check_time`)."""
    if any(s.tzinfo is None for s in starts):
        return None
    return min(starts), max(starts) + timedelta(minutes=MAX_MINUTES)


_INSERT = """
WITH booked AS (
    INSERT INTO appointments (id, clinic_id, doctor_id, patient_id, location_id, type, status,
        starts_at, ends_at, reason, parent_id, series_id, payment_due_at, created_by)
    SELECT x.id, $2, $3, $4, $5, $6, $7, x.s, x.e, $8, $9, $10, $11, $12
    FROM unnest($13::uuid[], $14::timestamptz[], $15::timestamptz[]) AS x(id, s, e)
    WHERE NOT EXISTS (
        SELECT 1 FROM unnest($14::timestamptz[], $15::timestamptz[]) AS w(s, e)
        JOIN appointments a ON a.doctor_id = $3 AND a.status <> ALL($1::text[])
             AND tstzrange(a.starts_at, a.ends_at, '[)') && tstzrange(w.s, w.e, '[)'))
    RETURNING *
), noted AS (
    INSERT INTO appointment_transitions (appointment_id, from_status, to_status, starts_at,
        ends_at, actor_id, reason)
    SELECT id, NULL, status, starts_at, ends_at, $12, 'booked' FROM booked
)
SELECT * FROM booked ORDER BY starts_at
"""

_TAKEN = """
SELECT w.i FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS w(s, e, i)
WHERE EXISTS (SELECT 1 FROM appointments a WHERE a.doctor_id = $1 AND a.status <> ALL($4::text[])
              AND tstzrange(a.starts_at, a.ends_at, '[)') && tstzrange(w.s, w.e, '[)'))
ORDER BY w.i
"""
_FREEING = [s.value for s in Status if s not in lifecycle.ACTIVE]


async def _insert_all(*, clinic_id: uuid.UUID, doctor_id: uuid.UUID, patient_id: uuid.UUID,
                      location_id: uuid.UUID | None, appointment_type: AppointmentType,
                      status: Status, starts: list[datetime], length: timedelta, reason: str,
                      parent_id: uuid.UUID | None, series_id: uuid.UUID | None,
                      payment_due_at: datetime | None, actor: Principal) -> list[Appointment]:
    """Every occurrence with its transition row in one statement, or none of them when any
    overlaps the doctor's booked time (the caller holds the doctor's lock, so what this sees
    stays true until COMMIT; the exclusion constraint backs it all the same). Empty: taken."""
    rows = await db.fetch(
        _INSERT, _FREEING, clinic_id, doctor_id, patient_id, location_id, appointment_type.value,
        status.value, reason, parent_id, series_id, payment_due_at, actor.user_id,
        [uuid.uuid4() for _ in starts], starts, [s + length for s in starts],
    )
    booked = [appointment_from_row(r) for r in rows]
    for appointment in booked:
        await events.record(actor, events.AppointmentCreated, appointment)
    return booked


async def _taken(doctor_id: uuid.UUID, starts: list[datetime], length: timedelta) -> list[datetime]:
    """Which of the occurrences overlap the doctor's booked time (as the caller gave them, in
    the caller's UTC offset)."""
    rows = await db.fetch(_TAKEN, doctor_id, starts, [s + length for s in starts], _FREEING)
    return [starts[r["i"] - 1] for r in rows]


async def lock_doctor(doctor_id: uuid.UUID) -> None:
    """Bookings for one doctor take turns. The exclusion constraint is what refuses overlaps;
    without this, two transactions inserting overlapping rows wait on each other and one dies
    as a deadlock a second later instead of getting a clean conflict."""
    await db.fetch("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))", str(doctor_id))


async def book(
    principal: Principal, *, clinic_id: uuid.UUID, doctor_id: uuid.UUID, patient_id: uuid.UUID,
    appointment_type: AppointmentType, start: datetime, duration_minutes: int | None = None,
    location_id: uuid.UUID | None = None, reason: str = "", override_reason: str | None = None,
    repeat_every_days: int | None = None, repeat_count: int = 1,
    parent_id: uuid.UUID | None = None,
) -> list[Appointment]:
    """Book one appointment, or a series all-or-none (the 409 lists every conflicting start).
    Everything it reads comes from two queries inside its transaction (tenancy's parties, the
    doctor's calendar over the series), and every occurrence is written by one statement."""
    grant = require(principal, "follow_ups:create" if parent_id else "appointments:create",
                    clinic_id, resource_type="appointment")
    # whose it is, as in queries.owner_of: a DOCTOR's own (follow_ups:create O) are their visits
    grant.check_target(owner_id=doctor_id if grant.role is Role.DOCTOR else patient_id,
                       location_id=location_id)
    step = timedelta(days=repeat_every_days or 0)
    starts = [start + i * step for i in range(max(1, min(repeat_count, 52)))]
    try:
        async with db.transaction():
            parties = await booking_parties(clinic_id, doctor_id, patient_id, location_id)
            clinic = parties.clinic
            if not parties.is_doctor:
                raise NotFound("doctor not found", resource_type="doctor", resource_id=doctor_id)
            if not parties.is_patient:
                raise invalid_field("patient_id", "not a patient of this clinic")
            if appointment_type is AppointmentType.IN_PERSON and location_id is None:
                raise invalid_field("location_id", "an in-person appointment needs a location")
            if not parties.location_known:
                raise invalid_field("location_id", "no such location in this clinic")
            calendar = await load_calendar(clinic_id, doctor_id, _span(starts))
            minutes = duration_minutes or calendar.schedule.slot_minutes
            if not MIN_MINUTES <= minutes <= MAX_MINUTES:
                raise invalid_field("duration_minutes", f"between {MIN_MINUTES} and {MAX_MINUTES}")
            if repeat_count < 1 or repeat_count > 52 or (repeat_count > 1 and not repeat_every_days):
                raise invalid_field("repeat", "count 1 to 52, with every_days for more than one")
            if grant.role is Role.PATIENT:
                _patient_booking_shape(clinic, minutes, calendar.schedule.slot_minutes, repeat_count)
            length = timedelta(minutes=minutes)
            overrides = [await _check_time(grant, clinic, calendar, s, s + length,
                                           appointment_type, location_id, override_reason)
                         for s in starts]
            pay = appointment_type.value in clinic.settings.payment_required_types
            status = Status.PENDING_PAYMENT if pay else Status.SCHEDULED
            due = (clock.now() + timedelta(minutes=clinic.settings.payment_window_minutes)
                   if pay else None)
            if grant.role is Role.PATIENT:
                await _check_patient_quota(clinic, patient_id, len(starts))
            await lock_doctor(doctor_id)
            booked = await _insert_all(
                clinic_id=clinic_id, doctor_id=doctor_id, patient_id=patient_id,
                location_id=location_id, appointment_type=appointment_type, status=status,
                starts=starts, length=length, reason=reason, parent_id=parent_id,
                series_id=uuid.uuid4() if repeat_count > 1 else None, payment_due_at=due,
                actor=principal)
            if not booked:
                raise await _taken_conflict(clinic, calendar.schedule, starts, length,
                                            appointment_type)
            for appointment, overridden in zip(booked, overrides, strict=True):
                await record(principal, action="appointments:create", resource_type="appointment",
                             resource_id=appointment.id, clinic_id=clinic_id,
                             detail={"override": override_reason or ""} if overridden else {})
            for handler in BOOKING_HANDLERS:
                booked = await handler(principal, clinic, booked)
    except asyncpg.ExclusionViolationError:
        # only when a writer skipped the doctor's lock; the transaction is gone, so ask again
        raise await _taken_conflict(clinic, calendar.schedule, starts, length,
                                    appointment_type) from None
    return booked


async def _taken_conflict(clinic: Clinic, schedule: Schedule, starts: list[datetime],
                          length: timedelta, appointment_type: AppointmentType) -> BookingConflict:
    """The 409 of a taken time: every conflicting start, and the free slots nearest the first."""
    conflicts = await _taken(schedule.doctor_id, starts, length) or starts
    alternatives = await nearest_free(clinic.id, schedule.doctor_id, conflicts[0],
                                      appointment_type=appointment_type.value, clinic=clinic,
                                      schedule=schedule)
    taken = ", ".join(c.isoformat() for c in conflicts)
    error = BookingConflict(f"the doctor is already booked at {taken}",
                            alternatives=alternatives, resource_type="appointment")
    error.extra["conflicts"] = [c.isoformat() for c in conflicts]
    return error


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


async def reschedule(principal: Principal, appointment_id: uuid.UUID, *, start: datetime,
                     duration_minutes: int | None = None, override_reason: str | None = None,
                     reason: str = "") -> Appointment:
    """Same appointment, new time; allowed from scheduled and confirmed only. The appointment
    is read once, locked; then its doctor's bookings take turns (`lock_doctor`). That order is
    deadlock-free: nobody holding a doctor's lock waits for an appointment row (a booking's
    foreign key takes FOR KEY SHARE, which FOR NO KEY UPDATE lets through)."""
    try:
        return await _reschedule(principal, appointment_id, start=start,
                                 duration_minutes=duration_minutes,
                                 override_reason=override_reason, reason=reason)
    except asyncpg.ExclusionViolationError:  # only if a writer skipped the doctor's lock
        raise BookingConflict("the doctor is already booked then", alternatives=[],
                              resource_type="appointment", resource_id=appointment_id) from None


async def _reschedule(principal: Principal, appointment_id: uuid.UUID, *, start: datetime,
                      duration_minutes: int | None, override_reason: str | None,
                      reason: str) -> Appointment:
    async with db.transaction():
        grant, appointment = await visible_appointment(principal, appointment_id,
                                                       "appointments:update", lock=True)
        await lock_doctor(appointment.doctor_id)
        if appointment.status not in lifecycle.RESCHEDULABLE:
            raise Conflict(f"cannot reschedule an appointment that is {appointment.status}",
                           resource_type="appointment", resource_id=appointment_id)
        clinic = await load_clinic(appointment.clinic_id)
        patient_notice(grant, appointment, clinic.settings.min_reschedule_notice_minutes,
                       "rescheduling")
        if appointment.reschedule_count >= clinic.settings.max_reschedules and not (
                override_reason and _may_override(grant)):
            raise Conflict(f"this appointment was already rescheduled "
                           f"{appointment.reschedule_count} times", resource_type="appointment",
                           resource_id=appointment_id)
        minutes = duration_minutes or int((appointment.end - appointment.start).total_seconds() // 60)
        if not MIN_MINUTES <= minutes <= MAX_MINUTES:
            raise invalid_field("duration_minutes", f"between {MIN_MINUTES} and {MAX_MINUTES}")
        calendar = await load_calendar(appointment.clinic_id, appointment.doctor_id, _span([start]))
        if grant.role is Role.PATIENT and duration_minutes is not None:
            _patient_booking_shape(clinic, minutes, calendar.schedule.slot_minutes, 1)
        end = start + timedelta(minutes=minutes)
        overridden = await _check_time(grant, clinic, calendar, start, end, appointment.type,
                                       appointment.location_id, override_reason,
                                       ignore=appointment_id)
        rows = await db.fetch(_MOVE, appointment_id, start, end, principal.user_id,
                              reason or "rescheduled", _FREEING)
        if not rows:
            alternatives = await nearest_free(
                clinic.id, appointment.doctor_id, start, appointment_type=appointment.type.value,
                ignore=appointment_id, clinic=clinic, schedule=calendar.schedule)
            raise BookingConflict("the doctor is already booked then", alternatives=alternatives,
                                  resource_type="appointment", resource_id=appointment_id)
        updated = msgspec.structs.replace(appointment_from_row(rows[0]),
                                          follow_up_ids=appointment.follow_up_ids)
        await events.record(principal, events.AppointmentRescheduled, updated,
                            previous_start=appointment.start, previous_end=appointment.end)
        await record(principal, action="appointments:update", resource_type="appointment",
                     resource_id=appointment_id, clinic_id=updated.clinic_id,
                     detail={"rescheduled": True, "override": override_reason or ""}
                     if overridden else {"rescheduled": True})
    return updated


#: The new time and its transition row in one statement; no row when the time is taken (the
#: caller holds the doctor's lock; the exclusion constraint backs it).
_MOVE = """
WITH moved AS (
    UPDATE appointments SET starts_at = $2, ends_at = $3,
        reschedule_count = reschedule_count + 1, updated_at = now()
    WHERE id = $1 AND NOT EXISTS (
        SELECT 1 FROM appointments o WHERE o.doctor_id = appointments.doctor_id AND o.id <> $1
          AND o.status <> ALL($6::text[])
          AND tstzrange(o.starts_at, o.ends_at, '[)') && tstzrange($2, $3, '[)'))
    RETURNING *
), noted AS (
    INSERT INTO appointment_transitions (appointment_id, from_status, to_status, starts_at,
        ends_at, actor_id, reason)
    SELECT id, status, status, starts_at, ends_at, $4, $5 FROM moved
)
SELECT * FROM moved
"""


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
