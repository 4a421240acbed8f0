"""Doctor schedules, time off, availability, appointments and their lifecycle."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Router, get, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from domain.errors import invalid_field
from domain.paging import Page
from domain.scheduling import commands, queries
from domain.scheduling.models import (
    Appointment,
    AppointmentType,
    Availability,
    Schedule,
    ScheduleRule,
    Status,
    TimeOffPeriod,
)
from gateway.context import CurrentPrincipal
from gateway.routes import NO_NUL, Body

Reason = Annotated[str, msgspec.Meta(max_length=1000, pattern=NO_NUL)]
Minutes = Annotated[int, msgspec.Meta(ge=commands.MIN_MINUTES, le=commands.MAX_MINUTES)]


class SchedulePut(Body):
    rules: Annotated[list[ScheduleRule], msgspec.Meta(max_length=100)]
    slot_minutes: Minutes = 30


class TimeOffCreate(Body):
    start: datetime
    end: datetime
    reason: Reason = ""


class Repeat(Body):
    every_days: Annotated[int, msgspec.Meta(ge=1, le=365)]
    count: Annotated[int, msgspec.Meta(ge=2, le=52)]


class AppointmentCreate(Body):
    clinic_id: uuid.UUID
    doctor_id: uuid.UUID
    patient_id: uuid.UUID
    type: AppointmentType
    start: datetime
    duration_minutes: Minutes | None = None
    location_id: uuid.UUID | None = None
    reason: Reason = ""
    #: Staff who may override the doctor's hours or the booking horizon say why (audited).
    override_reason: Reason | None = None


class SeriesCreate(AppointmentCreate, kw_only=True):
    repeat: Repeat


class Series(msgspec.Struct, frozen=True):
    series_id: uuid.UUID | None
    items: list[Appointment]


class TransitionBody(Body):
    reason: Reason = ""


class RescheduleBody(Body):
    start: datetime
    duration_minutes: Minutes | None = None
    override_reason: Reason | None = None
    reason: Reason = ""


class FollowUpBody(Body):
    start: datetime | None = None
    after_days: int | None = None
    reason: Reason = ""


#: Years a request may name: far beyond any schedule, yet every sum the domain makes (series,
#: slots, follow-ups) and the database's UTC conversion stay within what datetime can hold.
YEARS = (1900, 2999)


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise invalid_field(field, "include a UTC offset (RFC 3339)")
    if not YEARS[0] <= value.year <= YEARS[1]:
        raise invalid_field(field, f"a year from {YEARS[0]} to {YEARS[1]}")
    return value


@put("/clinics/{clinic_id:str}/doctors/{doctor_id:str}/schedule", permission="schedules:manage")
async def put_schedule(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                       doctor_id: FromPath[uuid.UUID], data: JSONBody[SchedulePut]) -> Schedule:
    return await commands.put_schedule(principal, clinic_id, doctor_id, rules=data.rules,
                                       slot_minutes=data.slot_minutes)


@get("/clinics/{clinic_id:str}/doctors/{doctor_id:str}/schedule", permission="schedules:read")
async def get_schedule(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                       doctor_id: FromPath[uuid.UUID]) -> Schedule:
    return await queries.get_schedule(principal, clinic_id, doctor_id)


@post("/clinics/{clinic_id:str}/doctors/{doctor_id:str}/time-off", permission="schedules:manage")
async def add_time_off(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                       doctor_id: FromPath[uuid.UUID], data: JSONBody[TimeOffCreate]) -> TimeOffPeriod:
    return await commands.add_time_off(principal, clinic_id, doctor_id,
                                       start=_aware(data.start, "start"),
                                       end=_aware(data.end, "end"), reason=data.reason)


@post("/clinics/{clinic_id:str}/holidays", permission="schedules:manage")
async def add_holiday(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                      data: JSONBody[TimeOffCreate]) -> TimeOffPeriod:
    """The whole clinic is closed: no doctor has free slots then."""
    return await commands.add_time_off(principal, clinic_id, None, start=_aware(data.start, "start"),
                                       end=_aware(data.end, "end"), reason=data.reason)


@get("/clinics/{clinic_id:str}/doctors/{doctor_id:str}/availability", permission="schedules:read")
async def availability(
    principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID], doctor_id: FromPath[uuid.UUID],
    from_: Annotated[datetime, QueryParameter(name="from")],
    to: Annotated[datetime, QueryParameter(name="to")],
    appointment_type: Annotated[Literal["in_person", "video"] | None, QueryParameter(name="type")] = None,
) -> Availability:
    """Free slots in the clinic's time zone, past times and booked time excluded."""
    return await queries.availability(principal, clinic_id, doctor_id,
                                      start=_aware(from_, "from"), end=_aware(to, "to"),
                                      appointment_type=appointment_type)


@post("/appointments", permission="appointments:create")
async def book(principal: CurrentPrincipal, data: JSONBody[AppointmentCreate]) -> Appointment:
    booked = await commands.book(
        principal, clinic_id=data.clinic_id, doctor_id=data.doctor_id, patient_id=data.patient_id,
        appointment_type=data.type, start=_aware(data.start, "start"),
        duration_minutes=data.duration_minutes, location_id=data.location_id, reason=data.reason,
        override_reason=data.override_reason,
    )
    return booked[0]


@post("/appointments/series", permission="appointments:create")
async def book_series(principal: CurrentPrincipal, data: JSONBody[SeriesCreate]) -> Series:
    """All occurrences or none; a 409 lists every conflicting start."""
    booked = await commands.book(
        principal, clinic_id=data.clinic_id, doctor_id=data.doctor_id, patient_id=data.patient_id,
        appointment_type=data.type, start=_aware(data.start, "start"),
        duration_minutes=data.duration_minutes, location_id=data.location_id, reason=data.reason,
        override_reason=data.override_reason, repeat_every_days=data.repeat.every_days,
        repeat_count=data.repeat.count,
    )
    return Series(series_id=booked[0].series_id, items=booked)


@get("/appointments", permission="appointments:read")
async def list_appointments(
    principal: CurrentPrincipal, clinic_id: FromQuery[uuid.UUID],
    doctor_id: FromQuery[uuid.UUID | None] = None, patient_id: FromQuery[uuid.UUID | None] = None,
    status: FromQuery[Status | None] = None, limit: FromQuery[int] = 50,
    cursor: FromQuery[str | None] = None,
) -> Page[Appointment]:
    return await queries.list_appointments(principal, clinic_id=clinic_id, doctor_id=doctor_id,
                                           patient_id=patient_id, status=status, limit=limit,
                                           cursor=cursor)


@get("/appointments/{appointment_id:str}", permission="appointments:read")
async def get_appointment(principal: CurrentPrincipal,
                          appointment_id: FromPath[uuid.UUID]) -> Appointment:
    return await queries.get_appointment(principal, appointment_id)


def _transition_route(action: str, permission: str) -> HTTPRouteHandler:
    async def handler(principal: CurrentPrincipal, appointment_id: FromPath[uuid.UUID],
                      data: JSONBody[TransitionBody | None] = None) -> Appointment:
        return await commands.transition(principal, appointment_id, action,
                                         reason=data.reason if data else "")

    handler.__name__ = f"appointment_{action.replace('-', '_')}"
    handler.__doc__ = f"State transition: {action} (409 names the current status when refused)."
    return post(f"/appointments/{{appointment_id:str}}/{action}", permission=permission,
                status_code=200)(handler)


TRANSITIONS = [_transition_route(a, commands.permission_for(a))
               for a in ("confirm", "start", "complete", "no-show", "cancel")]
# check-in lives with the queues (gateway/routes/queues.py): it also hands out the ticket


@post("/appointments/{appointment_id:str}/reschedule", permission="appointments:update",
      status_code=200)
async def reschedule(principal: CurrentPrincipal, appointment_id: FromPath[uuid.UUID],
                     data: JSONBody[RescheduleBody]) -> Appointment:
    return await commands.reschedule(principal, appointment_id, start=_aware(data.start, "start"),
                                     duration_minutes=data.duration_minutes,
                                     override_reason=data.override_reason, reason=data.reason)


@post("/appointments/{appointment_id:str}/follow-up", permission="follow_ups:create")
async def follow_up(principal: CurrentPrincipal, appointment_id: FromPath[uuid.UUID],
                    data: JSONBody[FollowUpBody]) -> Appointment:
    return await commands.follow_up(principal, appointment_id,
                                    start=_aware(data.start, "start") if data.start else None,
                                    after_days=data.after_days, reason=data.reason)


@get("/patients/{patient_id:str}/history", permission="appointments:read")
async def history(principal: CurrentPrincipal, patient_id: FromPath[uuid.UUID],
                  clinic_id: FromQuery[uuid.UUID]) -> list[Appointment]:
    """Newest first, with follow-up links; a PHI read, audited."""
    return await queries.patient_history(principal, patient_id, clinic_id=clinic_id)


router = Router(path="/", route_handlers=[
    put_schedule, get_schedule, add_time_off, add_holiday, availability, book, book_series,
    list_appointments, get_appointment, *TRANSITIONS, reschedule, follow_up, history,
], tags=["scheduling"])
