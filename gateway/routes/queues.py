"""Waiting-room queues, check-in codes and board tokens."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

import msgspec
from litestar import Request, Router, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from domain.errors import Unauthenticated
from domain.queueing import commands, queries
from domain.queueing.models import (
    BoardState,
    BoardToken,
    CheckInCode,
    EntryView,
    Position,
    Priority,
    QueueView,
)
from domain.scheduling.models import Appointment
from gateway.context import CurrentPrincipal, bearer_token
from gateway.routes import NO_NUL, PUBLIC, Body

Reason = Annotated[str, msgspec.Meta(max_length=1000, pattern=NO_NUL)]
Code = Annotated[str, msgspec.Meta(max_length=100, pattern=NO_NUL)]


class PriorityBody(Body):
    priority: Priority
    #: Required: a priority change is audited with its reason.
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000, pattern=NO_NUL)]


class TransferBody(Body):
    doctor_id: uuid.UUID


class CheckInBody(Body):
    reason: Reason = ""
    #: A patient checking themselves in: the location's QR code or the appointment's link code.
    code: Code | None = None


@get("/clinics/{clinic_id:str}/queues", permission="queues:read")
async def list_queues(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                      doctor_id: FromQuery[uuid.UUID | None] = None,
                      date: FromQuery[date | None] = None) -> list[QueueView]:
    """The day's queues (today in the clinic's time zone by default), entries in order."""
    return await queries.list_queues(principal, clinic_id, doctor_id=doctor_id, day=date)


@get("/queues/{queue_id:str}", permission="queues:read")
async def get_queue(principal: CurrentPrincipal, queue_id: FromPath[uuid.UUID]) -> QueueView:
    """Entries in order, each with its position and ETA; `eta` says how ETAs were computed."""
    return await queries.get_queue(principal, queue_id)


@post("/queues/{queue_id:str}/call-next", permission="queues:manage", status_code=200)
async def call_next(principal: CurrentPrincipal, queue_id: FromPath[uuid.UUID]) -> EntryView:
    """The first waiting entry becomes `called`; 409 when the queue is paused or empty."""
    return await commands.call_next(principal, queue_id)


@post("/queues/{queue_id:str}/pause", permission="queues:manage", status_code=200)
async def pause(principal: CurrentPrincipal, queue_id: FromPath[uuid.UUID]) -> QueueView:
    return await commands.set_paused(principal, queue_id, True)


@post("/queues/{queue_id:str}/resume", permission="queues:manage", status_code=200)
async def resume(principal: CurrentPrincipal, queue_id: FromPath[uuid.UUID]) -> QueueView:
    return await commands.set_paused(principal, queue_id, False)


@post("/queues/{queue_id:str}/board-token", permission="queues:manage")
async def board_token(principal: CurrentPrincipal, queue_id: FromPath[uuid.UUID]) -> BoardToken:
    """A token for the waiting-room screen at `url`: it reads this queue's board only."""
    return await commands.issue_board_token(principal, queue_id)


@post("/queue-entries/{entry_id:str}/priority", permission="queues:manage", status_code=200)
async def set_priority(principal: CurrentPrincipal, entry_id: FromPath[uuid.UUID],
                       data: JSONBody[PriorityBody]) -> EntryView:
    return await commands.set_priority(principal, entry_id, priority=data.priority,
                                       reason=data.reason)


@post("/queue-entries/{entry_id:str}/transfer", permission="queues:manage", status_code=200)
async def transfer(principal: CurrentPrincipal, entry_id: FromPath[uuid.UUID],
                   data: JSONBody[TransferBody]) -> EntryView:
    """To another doctor's queue at the same place today; the patient keeps their place in time."""
    return await commands.transfer(principal, entry_id, doctor_id=data.doctor_id)


@post("/queue-entries/{entry_id:str}/skip", permission="queues:manage", status_code=200)
async def skip(principal: CurrentPrincipal, entry_id: FromPath[uuid.UUID]) -> EntryView:
    """To the end of the line; out of the queue at the clinic's skip limit."""
    return await commands.skip(principal, entry_id)


@post("/queue-entries/{entry_id:str}/requeue", permission="queues:manage", status_code=200)
async def requeue(principal: CurrentPrincipal, entry_id: FromPath[uuid.UUID]) -> EntryView:
    return await commands.requeue(principal, entry_id)


@post("/queue-entries/{entry_id:str}/start", permission="queues:manage", status_code=200)
async def start(principal: CurrentPrincipal, entry_id: FromPath[uuid.UUID]) -> EntryView:
    """The consultation starts: the appointment becomes `in_progress`."""
    return await commands.consult(principal, entry_id, "start")


@post("/queue-entries/{entry_id:str}/complete", permission="queues:manage", status_code=200)
async def complete(principal: CurrentPrincipal, entry_id: FromPath[uuid.UUID]) -> EntryView:
    """The consultation ends: the appointment becomes `completed`; its length feeds the ETA."""
    return await commands.consult(principal, entry_id, "complete")


@post("/appointments/{appointment_id:str}/check-in", permission="appointments:update",
      status_code=200)
async def check_in(principal: CurrentPrincipal, appointment_id: FromPath[uuid.UUID],
                   data: JSONBody[CheckInBody | None] = None) -> Appointment:
    """`checked_in`, with one ticket in the doctor's queue for today. A patient sends `code`."""
    return await commands.check_in(principal, appointment_id, code=data.code if data else None,
                                   reason=data.reason if data else "")


@get("/appointments/{appointment_id:str}/queue-position", permission="appointments:read")
async def queue_position(principal: CurrentPrincipal,
                         appointment_id: FromPath[uuid.UUID]) -> Position:
    return await queries.get_position(principal, appointment_id)


@get("/appointments/{appointment_id:str}/check-in-code", permission="queues:manage")
async def appointment_code(principal: CurrentPrincipal,
                           appointment_id: FromPath[uuid.UUID]) -> CheckInCode:
    """The code of this appointment's check-in link."""
    return await commands.appointment_code(principal, appointment_id)


@get("/clinics/{clinic_id:str}/locations/{location_id:str}/check-in-code",
     permission="queues:manage")
async def location_code(principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID],
                        location_id: FromPath[uuid.UUID]) -> CheckInCode:
    """What the location's check-in QR code carries."""
    return await commands.location_code(principal, clinic_id, location_id)


@get("/boards/{queue_id:str}/state", permission=PUBLIC, security=[{"bearer": []}])
async def board_state(request: Request, queue_id: FromPath[uuid.UUID]) -> BoardState:  # type: ignore[type-arg]
    """For a board: authenticated by its board token (Bearer), not a user's."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthenticated("missing bearer board token")
    return await queries.board_for_token(token, queue_id)


router = Router(path="/", route_handlers=[
    list_queues, get_queue, call_next, pause, resume, board_token, set_priority, transfer, skip,
    requeue, start, complete, check_in, queue_position, appointment_code, location_code,
    board_state,
], tags=["queues"])
