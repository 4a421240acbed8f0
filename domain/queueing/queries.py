"""Reads of queues: the staff view, a patient's own position and a board's ticket list, all
computed by order.py from the same rows."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from domain import clock, db
from domain.access.matrix import Scope
from domain.access.policies import Grant, require
from domain.errors import NotFound
from domain.identity import tokens
from domain.principal import Principal
from domain.queueing import order
from domain.queueing.models import (
    BoardState,
    BoardTicket,
    Entry,
    EntryStatus,
    EntryView,
    Pace,
    Position,
    Priority,
    Queue,
    QueueView,
)
from domain.scheduling.queries import booked_minutes, load_schedule, visible_appointment
from domain.tenancy.queries import load_clinic

_ACTIVE_FIRST = {EntryStatus.IN_CONSULTATION: 0, EntryStatus.CALLED: 1, EntryStatus.WAITING: 2,
                 EntryStatus.DONE: 3, EntryStatus.REMOVED: 4}


def entry_from_row(row: dict[str, Any]) -> Entry:
    return Entry(
        id=row["id"], queue_id=row["queue_id"], appointment_id=row["appointment_id"],
        patient_id=row["patient_id"], ticket_no=row["ticket_no"], ticket=row["ticket"],
        priority=Priority(row["priority"]), status=EntryStatus(row["status"]),
        scheduled_at=row["scheduled_at"], checked_in_at=row["checked_in_at"],
        order_at=row["order_at"], skips=row["skips"], called_at=row["called_at"],
        started_at=row["started_at"], finished_at=row["finished_at"],
        removed_reason=row["removed_reason"], told_position=row["told_position"],
        told_eta=row["told_eta"], told_status=row["told_status"],
    )


def queue_from_row(row: dict[str, Any]) -> Queue:
    return Queue(id=row["id"], clinic_id=row["clinic_id"], doctor_id=row["doctor_id"],
                 location_id=row["location_id"], day=row["day"], letter=row["letter"],
                 paused=row["paused"], last_ticket=row["last_ticket"])


async def load_queue(queue_id: uuid.UUID, *, lock: bool = False) -> Queue:
    """`lock`: FOR NO KEY UPDATE, so its entries' foreign-key checks (FOR KEY SHARE) pass;
    see the lock order in domain/queueing/commands.py."""
    rows = await db.fetch("SELECT * FROM queues WHERE id = $1"
                          + (" FOR NO KEY UPDATE" if lock else ""), queue_id)
    if not rows:
        raise NotFound("queue not found", resource_type="queue", resource_id=queue_id)
    return queue_from_row(rows[0])


async def load_entries(queue_id: uuid.UUID) -> list[Entry]:
    rows = await db.fetch("SELECT * FROM queue_entries WHERE queue_id = $1", queue_id)
    return [entry_from_row(r) for r in rows]


async def load_entry(entry_id: uuid.UUID) -> Entry:
    rows = await db.fetch("SELECT * FROM queue_entries WHERE id = $1", entry_id)
    if not rows:
        raise NotFound("queue entry not found", resource_type="queue_entry", resource_id=entry_id)
    return entry_from_row(rows[0])


def queue_grant(principal: Principal, queue: Queue, permission: str) -> Grant:
    """A queue belongs to its doctor (a DOCTOR manages their own) and to its location."""
    grant = require(principal, permission, queue.clinic_id, resource_type="queue",
                    resource_id=queue.id)
    grant.check_object(owner_id=queue.doctor_id, location_id=queue.location_id,
                       object_id=queue.id)
    return grant


async def clinic_today(clinic_id: uuid.UUID) -> date:
    clinic = await load_clinic(clinic_id)
    return clock.now().astimezone(ZoneInfo(clinic.timezone)).date()


async def pace_of(queue: Queue) -> Pace:
    """The doctor's consultations finished today, in any of their queues that day."""
    rows = await db.fetch(
        """SELECT extract(epoch FROM e.finished_at - e.started_at) / 60 AS minutes
           FROM queue_entries e JOIN queues q ON q.id = e.queue_id
           WHERE q.clinic_id = $1 AND q.doctor_id = $2 AND q.day = $3
             AND e.status = 'done' AND e.started_at IS NOT NULL AND e.finished_at IS NOT NULL""",
        queue.clinic_id, queue.doctor_id, queue.day,
    )
    if rows:
        return order.pace([float(r["minutes"]) for r in rows], 0)
    # none measured yet: the length of the slots booked in this queue, else the schedule's
    booked = await db.fetch(
        f"""SELECT avg({booked_minutes("e.appointment_id")}) AS minutes
            FROM queue_entries e WHERE e.queue_id = $1""", queue.id)
    if booked[0]["minutes"] is not None:
        return order.pace([], round(float(booked[0]["minutes"])))
    schedule = await load_schedule(queue.clinic_id, queue.doctor_id)
    return order.pace([], schedule.slot_minutes)


def view(queue: Queue, entries: list[Entry], pace: Pace, now: datetime) -> QueueView:
    timing = order.etas(entries, pace, now)

    def rank(e: Entry) -> tuple[int, Any, Any]:
        at = timing.get(str(e.id), (0, 0))[0]
        return _ACTIVE_FIRST[e.status], at, e.called_at or e.checked_in_at

    views = [
        EntryView(
            id=e.id, appointment_id=e.appointment_id, patient_id=e.patient_id, ticket=e.ticket,
            priority=e.priority, status=e.status,
            position=timing[str(e.id)][0] if str(e.id) in timing else None,
            eta_minutes=timing[str(e.id)][1] if str(e.id) in timing else None,
            skips=e.skips, checked_in_at=e.checked_in_at, called_at=e.called_at,
            removed_reason=e.removed_reason,
        )
        for e in sorted(entries, key=rank)
    ]
    return QueueView(id=queue.id, clinic_id=queue.clinic_id, doctor_id=queue.doctor_id,
                     location_id=queue.location_id, date=queue.day, paused=queue.paused,
                     entries=views, eta=pace, stats=order.stats(entries))


def board(queue_view: QueueView) -> BoardState:
    def tickets(status: EntryStatus) -> list[str]:
        return [e.ticket for e in queue_view.entries if e.status is status]

    return BoardState(
        queue_id=queue_view.id, date=queue_view.date, paused=queue_view.paused,
        called=tickets(EntryStatus.CALLED), in_consultation=tickets(EntryStatus.IN_CONSULTATION),
        waiting=[BoardTicket(e.ticket, e.position, e.eta_minutes) for e in queue_view.entries
                 if e.position is not None and e.eta_minutes is not None],
    )


async def current_view(queue: Queue) -> QueueView:
    return view(queue, await load_entries(queue.id), await pace_of(queue), clock.now())


async def get_queue(principal: Principal, queue_id: uuid.UUID) -> QueueView:
    queue = await load_queue(queue_id)
    queue_grant(principal, queue, "queues:read")
    return await current_view(queue)


async def list_queues(principal: Principal, clinic_id: uuid.UUID, *,
                      doctor_id: uuid.UUID | None = None, day: date | None = None) -> list[QueueView]:
    grant = require(principal, "queues:read", clinic_id, resource_type="queue")
    today = await clinic_today(clinic_id)  # also: an unknown clinic is 404, with or without a date
    day = day or today
    rows = await db.fetch(
        """SELECT * FROM queues WHERE clinic_id = $1 AND day = $2
             AND ($3::uuid IS NULL OR doctor_id = $3) ORDER BY letter""",
        clinic_id, day, doctor_id,
    )
    visible = [queue_from_row(r) for r in rows if grant.scope is Scope.ANY
               or grant.covers(owner_id=r["doctor_id"], location_id=r["location_id"])]
    return [await current_view(q) for q in visible]


async def get_position(principal: Principal, appointment_id: uuid.UUID) -> Position:
    """A patient's own place (or staff looking at it): position, how many ahead, the ETA."""
    await visible_appointment(principal, appointment_id, "appointments:read")
    rows = await db.fetch("SELECT * FROM queue_entries WHERE appointment_id = $1", appointment_id)
    if not rows:
        raise NotFound("this appointment is not checked in to a queue", resource_type="queue_entry",
                       resource_id=appointment_id)
    entry = entry_from_row(rows[0])
    queue = await load_queue(entry.queue_id)
    return position_of(entry, await current_view(queue))


def position_of(entry: Entry, queue_view: QueueView) -> Position:
    mine = next(e for e in queue_view.entries if e.id == entry.id)
    return Position(appointment_id=entry.appointment_id, queue_id=queue_view.id, ticket=mine.ticket,
                    status=mine.status, position=mine.position,
                    ahead=mine.position - 1 if mine.position is not None else None,
                    eta_minutes=mine.eta_minutes, eta=queue_view.eta)


async def board_for_token(token: str, queue_id: uuid.UUID) -> BoardState:
    """A board token reads its own queue's board; any other queue is 404, as if absent."""
    claims = tokens.decode_device_token(token, "board")
    if claims.get("sub") != str(queue_id):
        raise NotFound("queue not found", resource_type="queue", resource_id=queue_id)
    return board(await current_view(await load_queue(queue_id)))


def board_claims(token: str) -> tuple[uuid.UUID, int]:
    """The queue a board token may watch, and when it stops working."""
    claims = tokens.decode_device_token(token, "board")
    return uuid.UUID(str(claims["sub"])), int(str(claims["exp"]))
