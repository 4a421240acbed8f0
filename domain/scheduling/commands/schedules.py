"""Doctors' weekly hours and time off: who may set them, and the event that tells the
clinic's staff and the doctor the calendar changed."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, time

import msgspec

from domain import db
from domain.access import rooms
from domain.access.matrix import Scope
from domain.access.policies import Grant, require
from domain.audit.commands import record
from domain.errors import Forbidden, invalid_field
from domain.events.commands import record as record_event
from domain.principal import Principal
from domain.scheduling.events import ScheduleUpdated
from domain.scheduling.models import Schedule, ScheduleRule, TimeOffPeriod
from domain.scheduling.queries import require_doctor
from domain.tenancy.queries import find_member, load_clinic, location_ids

MIN_MINUTES, MAX_MINUTES = 5, 480
_HH_MM = re.compile(r"[0-9]{2}:[0-9]{2}")


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
