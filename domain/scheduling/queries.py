"""Reads of schedules, appointments and availability, scoped by what the caller may see."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from domain import clock, db
from domain.access.matrix import Scope, scope_of
from domain.access.policies import Grant, require
from domain.access.roles import Role
from domain.audit.commands import record
from domain.errors import NotFound
from domain.paging import Page, check_limit, decode_cursor, encode_cursor
from domain.principal import Principal
from domain.scheduling.availability import Rule, free_slots
from domain.scheduling.lifecycle import ACTIVE
from domain.scheduling.models import (
    Appointment,
    AppointmentType,
    Availability,
    Schedule,
    ScheduleRule,
    SlotOut,
    Status,
    Transition,
)
from domain.tenancy.models import Clinic
from domain.tenancy.queries import load_clinic, require_member


def appointment_from_row(row: dict[str, Any]) -> Appointment:
    return Appointment(
        id=row["id"], clinic_id=row["clinic_id"], doctor_id=row["doctor_id"],
        patient_id=row["patient_id"], location_id=row["location_id"],
        type=AppointmentType(row["type"]),
        status=Status(row["status"]), start=row["starts_at"], end=row["ends_at"],
        reason=row["reason"], parent_id=row["parent_id"],
        follow_up_ids=list(row.get("follow_up_ids") or []), series_id=row["series_id"],
        reschedule_count=row["reschedule_count"], payment_due_at=row["payment_due_at"],
        created_at=row["created_at"],
    )


_SELECT = """
SELECT a.*, ARRAY(SELECT f.id FROM appointments f WHERE f.parent_id = a.id
                  ORDER BY f.starts_at) AS follow_up_ids
FROM appointments a
"""


def owner_of(grant: Grant, appointment: Appointment) -> uuid.UUID:
    """Whose appointment it is, for an ownership-scoped role: a doctor's own are those they
    see; everyone else's own are those they are the patient of."""
    return appointment.doctor_id if grant.role is Role.DOCTOR else appointment.patient_id


def for_reader(grant: Grant, appointment: Appointment) -> Appointment:
    """Field-level access: the reasons (the visit's and each transition's, which carry what a
    person typed) go only to roles the matrix lets read them."""
    if scope_of("appointments:read_reason", grant.role) is not Scope.DENY:
        return appointment
    history = None if appointment.history is None else [
        msgspec.structs.replace(t, reason=msgspec.UNSET) for t in appointment.history]
    return msgspec.structs.replace(appointment, reason=msgspec.UNSET, history=history)


async def load_appointment(appointment_id: uuid.UUID, *, lock: bool = False) -> Appointment:
    """`lock`: FOR NO KEY UPDATE, which serialises writers of the appointment but lets the
    foreign-key checks of rows that reference it (FOR KEY SHARE) through: with FOR UPDATE, a
    queue entry re-checked under its queue's lock deadlocked against a command holding the
    appointment and waiting for that queue (lock order: domain/queueing/commands.py)."""
    rows = await db.fetch(_SELECT + "WHERE a.id = $1"
                          + (" FOR NO KEY UPDATE OF a" if lock else ""), appointment_id)
    if not rows:
        raise NotFound("appointment not found", resource_type="appointment",
                       resource_id=appointment_id)
    return appointment_from_row(rows[0])


async def load_appointments(ids: list[uuid.UUID]) -> dict[uuid.UUID, Appointment]:
    """Several appointments in one statement (reminders falling due together); missing ids are
    left out."""
    rows = await db.fetch(_SELECT + "WHERE a.id = ANY($1::uuid[])", list(set(ids)))
    return {r["id"]: appointment_from_row(r) for r in rows}


async def visible_appointment(
    principal: Principal, appointment_id: uuid.UUID, permission: str, *, lock: bool = False
) -> tuple[Grant, Appointment]:
    """Another clinic's, or an unseen, appointment is 404 either way."""
    appointment = await load_appointment(appointment_id, lock=lock)
    grant = require(principal, permission, appointment.clinic_id, resource_type="appointment",
                    resource_id=appointment_id)
    grant.check_object(owner_id=owner_of(grant, appointment),
                       location_id=appointment.location_id, object_id=appointment_id)
    return grant, appointment


async def get_appointment(principal: Principal, appointment_id: uuid.UUID) -> Appointment:
    grant, appointment = await visible_appointment(principal, appointment_id, "appointments:read")
    rows = await db.fetch(
        "SELECT * FROM appointment_transitions WHERE appointment_id = $1 ORDER BY id",
        appointment_id,
    )
    history = [Transition(from_status=r["from_status"], to_status=r["to_status"],
                          starts_at=r["starts_at"], ends_at=r["ends_at"], actor_id=r["actor_id"],
                          reason=r["reason"], at=r["at"]) for r in rows]
    await record(principal, action="appointments:read", resource_type="appointment",
                 resource_id=appointment_id, clinic_id=appointment.clinic_id)
    return for_reader(grant, msgspec.structs.replace(appointment, history=history))


async def list_appointments(
    principal: Principal, *, clinic_id: uuid.UUID, doctor_id: uuid.UUID | None = None,
    patient_id: uuid.UUID | None = None, start: datetime | None = None,
    end: datetime | None = None, status: Status | None = None, limit: int = 50,
    cursor: str | None = None,
) -> Page[Appointment]:
    grant = require(principal, "appointments:read", clinic_id, resource_type="appointment")
    check_limit(limit)
    after = decode_cursor(cursor)
    own_doctor = grant.scope is Scope.OWN and grant.role is Role.DOCTOR
    own_patient = grant.scope is Scope.OWN and grant.role is not Role.DOCTOR
    rows = await db.fetch(
        _SELECT + """WHERE a.clinic_id = $1
          AND ($2::uuid IS NULL OR a.doctor_id = $2) AND ($3::uuid IS NULL OR a.patient_id = $3)
          AND ($4::timestamptz IS NULL OR a.ends_at > $4) AND ($5::timestamptz IS NULL OR a.starts_at < $5)
          AND ($6::text IS NULL OR a.status = $6)
          AND (NOT $7 OR a.doctor_id = $9) AND (NOT $8 OR a.patient_id = $9)
          AND (NOT $10 OR a.location_id = $11)
          AND ($12::timestamptz IS NULL OR (a.starts_at, a.id) > ($12, $13))
        ORDER BY a.starts_at, a.id LIMIT $14""",
        clinic_id, doctor_id, patient_id, start, end, status.value if status else None,
        own_doctor, own_patient, principal.user_id, grant.scope is Scope.LOCATION,
        grant.location_id, after[0] if after else None, after[1] if after else None, limit + 1,
    )
    items = [for_reader(grant, appointment_from_row(r)) for r in rows[:limit]]
    more = len(rows) > limit
    await record(principal, action="appointments:read", resource_type="appointment",
                 clinic_id=clinic_id, detail={"count": len(items)})
    last = rows[limit - 1] if more else None
    return Page(items=items,
                next_cursor=encode_cursor(last["starts_at"], last["id"]) if last else None)


async def patient_history(
    principal: Principal, patient_id: uuid.UUID, *, clinic_id: uuid.UUID
) -> list[Appointment]:
    """The patient's appointments with outcomes and follow-up links, newest first."""
    grant = require(principal, "appointments:read", clinic_id, resource_type="patient",
                    resource_id=patient_id)
    if grant.scope is Scope.OWN and grant.role is not Role.DOCTOR:
        grant.check_object(owner_id=patient_id, location_id=None, object_id=patient_id)
    rows = await db.fetch(
        _SELECT + """WHERE a.clinic_id = $1 AND a.patient_id = $2
          AND (NOT $3 OR a.doctor_id = $4) AND (NOT $5 OR a.location_id = $6)
        ORDER BY a.starts_at DESC, a.id""",
        clinic_id, patient_id, grant.scope is Scope.OWN and grant.role is Role.DOCTOR,
        principal.user_id, grant.scope is Scope.LOCATION, grant.location_id,
    )
    await require_member(clinic_id, patient_id, otherwise=NotFound(
        "patient not found", hidden=True, resource_type="patient", resource_id=patient_id))
    await record(principal, action="patients:history", resource_type="patient",
                 resource_id=patient_id, clinic_id=clinic_id, detail={"count": len(rows)})
    return [for_reader(grant, appointment_from_row(r)) for r in rows]


async def load_schedule(clinic_id: uuid.UUID, doctor_id: uuid.UUID) -> Schedule:
    rows = await db.fetch(
        "SELECT * FROM doctor_schedules WHERE clinic_id = $1 AND doctor_id = $2",
        clinic_id, doctor_id,
    )
    return _schedule(clinic_id, doctor_id, rows[0] if rows else None)


def _schedule(clinic_id: uuid.UUID, doctor_id: uuid.UUID, row: dict[str, Any] | None) -> Schedule:
    """A doctor without a schedule row has 30-minute slots and no hours."""
    if row is None:
        return Schedule(clinic_id=clinic_id, doctor_id=doctor_id, slot_minutes=30, rules=[])
    raw = row["rules"]
    rules = msgspec.convert(json.loads(raw) if isinstance(raw, str) else raw, list[ScheduleRule])
    return Schedule(clinic_id=clinic_id, doctor_id=doctor_id, slot_minutes=row["slot_minutes"],
                    rules=rules)


class Calendar(msgspec.Struct, frozen=True):
    """A doctor's schedule and the time off (theirs and the clinic's) over a span, read once
    per command: a series checks every occurrence against these without another query."""

    schedule: Schedule
    time_off: list[tuple[datetime, datetime]]

    def is_off(self, start: datetime, end: datetime) -> bool:
        return any(s < end and e > start for s, e in self.time_off)


async def load_calendar(clinic_id: uuid.UUID, doctor_id: uuid.UUID,
                        span: tuple[datetime, datetime] | None) -> Calendar:
    """The schedule, and the time off overlapping `span` (none when no span), in one query."""
    rows = await db.fetch(
        """SELECT (SELECT to_jsonb(s) FROM doctor_schedules s
                   WHERE s.clinic_id = $1 AND s.doctor_id = $2) AS schedule,
                  ARRAY(SELECT t.starts_at FROM time_off t
                        WHERE t.clinic_id = $1 AND (t.doctor_id IS NULL OR t.doctor_id = $2)
                          AND t.starts_at < $4 AND t.ends_at > $3 ORDER BY t.starts_at, t.id)
                      AS off_starts,
                  ARRAY(SELECT t.ends_at FROM time_off t
                        WHERE t.clinic_id = $1 AND (t.doctor_id IS NULL OR t.doctor_id = $2)
                          AND t.starts_at < $4 AND t.ends_at > $3 ORDER BY t.starts_at, t.id)
                      AS off_ends""",
        clinic_id, doctor_id, span[0] if span else None, span[1] if span else None,
    )
    row = rows[0]
    raw = row["schedule"]
    found = json.loads(raw) if isinstance(raw, str) else raw
    return Calendar(schedule=_schedule(clinic_id, doctor_id, found),
                    time_off=list(zip(row["off_starts"], row["off_ends"], strict=True)))


async def get_schedule(principal: Principal, clinic_id: uuid.UUID,
                       doctor_id: uuid.UUID) -> Schedule:
    require(principal, "schedules:read", clinic_id, resource_type="schedule",
            resource_id=doctor_id)
    await require_doctor(clinic_id, doctor_id)
    return await load_schedule(clinic_id, doctor_id)


async def require_doctor(clinic_id: uuid.UUID, doctor_id: uuid.UUID) -> None:
    await require_member(clinic_id, doctor_id, role=Role.DOCTOR, otherwise=NotFound(
        "doctor not found", resource_type="doctor", resource_id=doctor_id))


def booked_minutes(appointment_id: str) -> str:
    """An SQL expression: the booked length in minutes of the appointment `appointment_id` (an
    SQL expression of the caller's statement; NULL for none). Lent to queueing, whose ETA
    averages it over a queue in the one statement."""
    return f"""(SELECT extract(epoch FROM a.ends_at - a.starts_at) / 60
              FROM appointments a WHERE a.id = {appointment_id})"""


def to_rules(schedule: Schedule) -> list[Rule]:
    return [Rule(weekday=r.weekday, start=time.fromisoformat(r.start), end=time.fromisoformat(r.end),
                 location_id=r.location_id,
                 appointment_types=frozenset(t.value for t in r.appointment_types))
            for r in schedule.rules]


async def busy_intervals(clinic_id: uuid.UUID, doctor_id: uuid.UUID, start: datetime,
                         end: datetime, *, ignore: uuid.UUID | None = None
                         ) -> list[tuple[datetime, datetime]]:
    """Booked time (in any clinic: a doctor is one person) and time off, the clinic's included."""
    rows = await db.fetch(
        """SELECT starts_at, ends_at FROM appointments
           WHERE doctor_id = $1 AND status = ANY($2::text[]) AND starts_at < $4 AND ends_at > $3
             AND ($6::uuid IS NULL OR id <> $6)
           UNION ALL
           SELECT starts_at, ends_at FROM time_off
           WHERE clinic_id = $5 AND (doctor_id IS NULL OR doctor_id = $1)
             AND starts_at < $4 AND ends_at > $3""",
        doctor_id, [s.value for s in ACTIVE], start, end, clinic_id, ignore,
    )
    return sorted((r["starts_at"], r["ends_at"]) for r in rows)


async def compute_slots(clinic_id: uuid.UUID, doctor_id: uuid.UUID, start: datetime,
                        end: datetime, *, appointment_type: str | None,
                        ignore: uuid.UUID | None = None, clinic: Clinic | None = None,
                        schedule: Schedule | None = None) -> tuple[str, list[SlotOut]]:
    """`clinic` and `schedule`: a command that has them already passes them in."""
    clinic = clinic or await load_clinic(clinic_id)
    schedule = schedule or await load_schedule(clinic_id, doctor_id)
    busy = await busy_intervals(clinic_id, doctor_id, start, end, ignore=ignore)
    slots = free_slots(tz=ZoneInfo(clinic.timezone), rules=to_rules(schedule),
                       slot_minutes=schedule.slot_minutes, start=start, end=end, busy=busy,
                       now=clock.now(), appointment_type=appointment_type)
    return clinic.timezone, [SlotOut(start=s.start, end=s.end, location_id=s.location_id)
                             for s in slots]


async def availability(
    principal: Principal, clinic_id: uuid.UUID, doctor_id: uuid.UUID, *, start: datetime,
    end: datetime, appointment_type: str | None = None,
) -> Availability:
    require(principal, "schedules:read", clinic_id, resource_type="schedule",
            resource_id=doctor_id)
    await require_doctor(clinic_id, doctor_id)
    tz, slots = await compute_slots(clinic_id, doctor_id, start, end,
                                    appointment_type=appointment_type)
    return Availability(doctor_id=doctor_id, timezone=tz, slots=slots)


async def nearest_free(clinic_id: uuid.UUID, doctor_id: uuid.UUID, around: datetime, *,
                       appointment_type: str, count: int = 5,
                       ignore: uuid.UUID | None = None, clinic: Clinic | None = None,
                       schedule: Schedule | None = None) -> list[SlotOut]:
    """Up to `count` free slots closest to the wanted time, for a refused booking."""
    start = max(clock.now(), around - timedelta(days=3))
    _, slots = await compute_slots(clinic_id, doctor_id, start, around + timedelta(days=7),
                                   appointment_type=appointment_type, ignore=ignore,
                                   clinic=clinic, schedule=schedule)
    slots.sort(key=lambda s: abs((s.start - around).total_seconds()))
    return sorted(slots[:count], key=lambda s: s.start)
