"""Changes to waiting-room queues. Every change takes its queue's lock, so changes to one queue
take turns (two "call next" at once call two different patients), then records the queue's
events (`record_queue_events`): `queue.updated` for staff and the board, and `queue.position`
for exactly the patients whose position, ETA or status changed.

Lock order, for every queue command and for the appointment transitions that move entries
(scheduling's `transition`, which runs `_follow_appointment` as its registered handler,
`check_in`, `consult`), so that none of them can deadlock another:

1. The appointment row (`load_appointment(lock=True)`), when the command is about one entry or
   appointment. Only its holder may move the entry to another queue (transfer), so once it is
   held the entry's queue is settled: `_pinned_entry` re-reads the entry after taking it. A
   transition writes the appointment row (already locked) before its handler takes step 2.
2. The queue row(s) (`load_queue(lock=True)`); a transfer's two in id order. Every write to an
   entry happens under its queue's lock, so entry rows need no lock of their own. Call-next,
   pause and resume start here. Creating a queue (`open_queue`) takes a per-clinic-day
   advisory lock just before this step.
3. The entry rows, by the writes themselves; `_reread` reads the entry again under its queue's
   lock (call-next may just have called it) and answers 409 if it is no longer in that queue.
4. At COMMIT, the audit chain, then the clinics' event sequences (domain.journal).

Appointment and queue rows are locked FOR NO KEY UPDATE, never FOR UPDATE: an entry row written
twice in one transaction (a change, then `record_queue_events` noting what its patient was told) has its
foreign keys re-checked, which takes FOR KEY SHARE on its appointment and queue. FOR UPDATE
blocks that, FOR NO KEY UPDATE does not; with FOR UPDATE, call-next (holding the queue,
re-checking the called entry's appointment) and a priority change of that entry (holding the
appointment, waiting for the queue) deadlocked every time. Neither row's key ever changes, so
NO KEY UPDATE serialises the writers all the same."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from domain import clock, db
from domain.access import rooms
from domain.access.policies import require
from domain.access.roles import Role
from domain.audit.commands import record
from domain.errors import Conflict, Forbidden, NotFound, invalid_field
from domain.events.commands import record as record_event
from domain.events.commands import record_many as record_events
from domain.events.envelope import DomainEvent
from domain.identity import tokens
from domain.principal import Principal
from domain.queueing import codes, events, order
from domain.queueing.models import (
    BoardToken,
    CheckInCode,
    Entry,
    EntryStatus,
    EntryView,
    Priority,
    Queue,
    QueueView,
)
from domain.queueing.queries import (
    board,
    current_view,
    load_entries,
    load_entry,
    load_queue,
    pace_of,
    queue_from_row,
    queue_grant,
    view,
)
from domain.scheduling.commands import apply_transition, on_transition
from domain.scheduling.models import Appointment, Status
from domain.scheduling.queries import load_appointment, require_doctor, visible_appointment
from domain.tenancy.queries import load_clinic, require_location

BOARD_TOKEN_HOURS = 36


# the queue's events --------------------------------------------------------------------------------

async def record_queue_events(actor: Principal | None, queue: Queue) -> QueueView:
    """Inside the change's transaction, note the queue as it now stands for everyone it
    concerns (`queue.updated` for staff and the board, `queue.position` for each patient whose
    place changed) in the transaction's journal, and remember what each patient was told.
    Nothing is sent from here: the relay delivers the events after COMMIT (not to be confused
    with realtime/publisher.publish, which does)."""
    entries = await load_entries(queue.id)
    snapshot = view(queue, entries, await pace_of(queue), clock.now())
    state = board(snapshot)
    out: list[tuple[DomainEvent, list[str]]] = [(events.QueueUpdated(
        queue_id=queue.id, doctor_id=queue.doctor_id, location_id=queue.location_id,
        date=queue.day, paused=queue.paused, called=state.called,
        in_consultation=state.in_consultation, waiting=state.waiting),
        events.staff_audience(queue.clinic_id, queue.doctor_id, queue.id))]
    told = {e.id: (e.told_position, e.told_eta, e.told_status) for e in entries}
    changed = [e for e in snapshot.entries
               if told.get(e.id) != (e.position, e.eta_minutes, e.status.value)]
    if changed:
        await db.fetch(
            """UPDATE queue_entries SET told_position = x.position, told_eta = x.eta,
                   told_status = x.status
               FROM unnest($1::uuid[], $2::int[], $3::int[], $4::text[]) AS x(id, position, eta, status)
               WHERE queue_entries.id = x.id""",
            [e.id for e in changed], [e.position for e in changed],
            [e.eta_minutes for e in changed], [e.status.value for e in changed])
    out += [(events.QueuePosition(
        appointment_id=e.appointment_id, queue_id=queue.id, ticket=e.ticket,
        status=e.status.value, position=e.position,
        ahead=e.position - 1 if e.position is not None else None, eta_minutes=e.eta_minutes),
        [rooms.user(e.patient_id)]) for e in changed]
    await record_events(actor, clinic_id=queue.clinic_id, events=out)
    return snapshot


# queues ------------------------------------------------------------------------------------

async def open_queue(clinic_id: uuid.UUID, doctor_id: uuid.UUID, location_id: uuid.UUID | None,
                     day: date) -> Queue:
    """The doctor's queue at that place on that day, created on first use with the day's next
    ticket letter. Creation takes turns per clinic day, so letters never collide."""
    def find() -> Any:  # a coroutine of rows
        return db.fetch(
            """SELECT * FROM queues WHERE clinic_id = $1 AND doctor_id = $2 AND day = $4
                 AND location_id IS NOT DISTINCT FROM $3""",
            clinic_id, doctor_id, location_id, day)

    rows = await find()
    if rows:
        return queue_from_row(rows[0])
    await db.fetch("SELECT pg_advisory_xact_lock(hashtextextended($1, 11))", f"{clinic_id}:{day}")
    rows = await find()
    if rows:
        return queue_from_row(rows[0])
    count = await db.fetch("SELECT count(*) AS n FROM queues WHERE clinic_id = $1 AND day = $2",
                           clinic_id, day)
    rows = await db.fetch(
        """INSERT INTO queues (id, clinic_id, doctor_id, location_id, day, letter)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
        uuid.uuid4(), clinic_id, doctor_id, location_id, day, order.ticket_letters(count[0]["n"]))
    return queue_from_row(rows[0])


async def _next_ticket(queue_id: uuid.UUID) -> tuple[int, str]:
    rows = await db.fetch("UPDATE queues SET last_ticket = last_ticket + 1 WHERE id = $1 "
                          "RETURNING last_ticket, letter", queue_id)
    return rows[0]["last_ticket"], order.ticket(rows[0]["letter"], rows[0]["last_ticket"])


async def set_paused(principal: Principal, queue_id: uuid.UUID, paused: bool) -> QueueView:
    async with db.transaction():
        queue = await load_queue(queue_id, lock=True)
        queue_grant(principal, queue, "queues:manage")
        if queue.paused == paused:
            snapshot = await current_view(queue)
        else:
            await db.fetch("UPDATE queues SET paused = $2 WHERE id = $1", queue_id, paused)
            queue = msgspec.structs.replace(queue, paused=paused)
            await record(principal, action="queues:manage", resource_type="queue",
                         resource_id=queue_id, clinic_id=queue.clinic_id, detail={"paused": paused})
            snapshot = await record_queue_events(principal, queue)
    return snapshot


async def call_next(principal: Principal, queue_id: uuid.UUID) -> EntryView:
    async with db.transaction():
        queue = await load_queue(queue_id, lock=True)
        queue_grant(principal, queue, "queues:manage")
        if queue.paused:
            raise Conflict("the queue is paused; resume it to call the next patient",
                           resource_type="queue", resource_id=queue_id)
        snapshot = await current_view(queue)
        waiting = [e for e in snapshot.entries if e.position == 1]
        if not waiting:
            raise Conflict("nobody is waiting in this queue", resource_type="queue",
                           resource_id=queue_id)
        entry = waiting[0]
        # clock_timestamp, not now(): calls that queued on the lock are stamped in call order
        await db.fetch("UPDATE queue_entries SET status = 'called', called_at = clock_timestamp() "
                       "WHERE id = $1", entry.id)
        await record_event(principal, clinic_id=queue.clinic_id, event=events.QueueCalled(
            queue_id=queue_id, appointment_id=entry.appointment_id, ticket=entry.ticket),
            audience=[rooms.user(entry.patient_id), rooms.clinic_staff(queue.clinic_id),
                      rooms.doctor(queue.doctor_id)])
        await record(principal, action="queues:manage", resource_type="queue_entry",
                     resource_id=entry.id, clinic_id=queue.clinic_id, detail={"called": True})
        result = _view_of(await record_queue_events(principal, queue), entry.id)
    return result


# entries -----------------------------------------------------------------------------------

async def _pinned_entry(entry_id: uuid.UUID) -> tuple[Entry, Appointment]:
    """The entry, read again once its appointment is locked (step 1): whatever moved it before
    has committed, and nothing can move it now. Returns the locked appointment too."""
    entry = await load_entry(entry_id)
    appointment = await load_appointment(entry.appointment_id, lock=True)
    return await load_entry(entry_id), appointment


async def _reread(entry_id: uuid.UUID, queue: Queue) -> Entry:
    """The entry as it stands under its queue's lock (step 3)."""
    entry = await load_entry(entry_id)
    if entry.queue_id != queue.id:
        raise Conflict("the entry moved to another queue meanwhile; reload it and try again",
                       resource_type="queue_entry", resource_id=entry_id)
    return entry


async def _locked_entry(principal: Principal, entry_id: uuid.UUID
                        ) -> tuple[Entry, Queue, Appointment]:
    """The entry, its queue and its appointment, locked in the house order; another clinic's
    entry is 404."""
    entry, appointment = await _pinned_entry(entry_id)
    queue = await load_queue(entry.queue_id, lock=True)
    queue_grant(principal, queue, "queues:manage")
    return await _reread(entry_id, queue), queue, appointment


def _require_status(entry: Entry, *allowed: EntryStatus, doing: str) -> None:
    if entry.status not in allowed:
        raise Conflict(f"cannot {doing} an entry that is {entry.status}",
                       resource_type="queue_entry", resource_id=entry.id)


def _view_of(snapshot: QueueView, entry_id: uuid.UUID) -> EntryView:
    """The entry in its queue's new view; called inside the transaction, so that if it were not
    there the change would roll back with a 409 rather than commit behind a 500."""
    for e in snapshot.entries:
        if e.id == entry_id:
            return e
    raise Conflict("the entry is no longer in this queue; reload it and try again",
                   resource_type="queue_entry", resource_id=entry_id)


async def skip(principal: Principal, entry_id: uuid.UUID) -> EntryView:
    """To the end of the line; the skip that reaches the clinic's limit takes it out."""
    async with db.transaction():
        entry, queue, _ = await _locked_entry(principal, entry_id)
        _require_status(entry, EntryStatus.WAITING, EntryStatus.CALLED, doing="skip")
        clinic = await load_clinic(queue.clinic_id)
        skips = entry.skips + 1
        if skips >= clinic.settings.queue_max_skips:
            await db.fetch("""UPDATE queue_entries SET skips = $2, status = 'removed',
                                  removed_reason = 'skipped_out' WHERE id = $1""", entry_id, skips)
        else:
            others = [e for e in await _entries(queue) if e.id != entry_id]
            await db.fetch("""UPDATE queue_entries SET skips = $2, status = 'waiting',
                                  called_at = NULL, order_at = $3 WHERE id = $1""",
                           entry_id, skips, order.end_of_line(others, clock.now()))
        await record(principal, action="queues:manage", resource_type="queue_entry",
                     resource_id=entry_id, clinic_id=queue.clinic_id, detail={"skips": skips})
        result = _view_of(await record_queue_events(principal, queue), entry_id)
    return result


async def requeue(principal: Principal, entry_id: uuid.UUID) -> EntryView:
    """Back in line, at the end: a called patient who was not there, or one skipped out."""
    async with db.transaction():
        entry, queue, _ = await _locked_entry(principal, entry_id)
        if not (entry.status is EntryStatus.CALLED or entry.removed_reason == "skipped_out"):
            raise Conflict(f"cannot requeue an entry that is {entry.status}"
                           + (f" ({entry.removed_reason})" if entry.removed_reason else ""),
                           resource_type="queue_entry", resource_id=entry_id)
        others = [e for e in await _entries(queue) if e.id != entry_id]
        await db.fetch("""UPDATE queue_entries SET status = 'waiting', removed_reason = NULL,
                              called_at = NULL, order_at = $2 WHERE id = $1""",
                       entry_id, order.end_of_line(others, clock.now()))
        await record(principal, action="queues:manage", resource_type="queue_entry",
                     resource_id=entry_id, clinic_id=queue.clinic_id, detail={"requeued": True})
        result = _view_of(await record_queue_events(principal, queue), entry_id)
    return result


async def set_priority(principal: Principal, entry_id: uuid.UUID, *, priority: Priority,
                       reason: str) -> EntryView:
    if not reason.strip():
        raise invalid_field("reason", "say why the priority changes (it is audited)")
    async with db.transaction():
        entry, queue, _ = await _locked_entry(principal, entry_id)
        _require_status(entry, EntryStatus.WAITING, EntryStatus.CALLED, doing="reprioritise")
        await db.fetch("UPDATE queue_entries SET priority = $2 WHERE id = $1", entry_id,
                       priority.value)
        await record(principal, action="queues:manage", resource_type="queue_entry",
                     resource_id=entry_id, clinic_id=queue.clinic_id,
                     detail={"priority": {"from": entry.priority.value, "to": priority.value},
                             "reason": reason[:500]})
        result = _view_of(await record_queue_events(principal, queue), entry_id)
    return result


async def transfer(principal: Principal, entry_id: uuid.UUID, *, doctor_id: uuid.UUID) -> EntryView:
    """To another doctor's queue at the same place and day, keeping the time it queues by (the
    patient loses no ground) under a new ticket of that queue."""
    async with db.transaction():
        entry, _ = await _pinned_entry(entry_id)
        source = await load_queue(entry.queue_id)
        queue_grant(principal, source, "queues:manage")
        _require_status(entry, EntryStatus.WAITING, EntryStatus.CALLED, doing="transfer")
        if doctor_id == source.doctor_id:
            raise invalid_field("doctor_id", "the entry is already in this doctor's queue")
        try:
            await require_doctor(source.clinic_id, doctor_id)
        except NotFound:
            raise invalid_field("doctor_id", "not a doctor of this clinic") from None
        target = await open_queue(source.clinic_id, doctor_id, source.location_id,
                                  source.day)
        locked = {q: await load_queue(q, lock=True) for q in sorted([source.id, target.id])}
        source, target = locked[source.id], locked[target.id]
        entry = await _reread(entry_id, source)
        _require_status(entry, EntryStatus.WAITING, EntryStatus.CALLED, doing="transfer")
        number, ticket = await _next_ticket(target.id)
        await db.fetch(
            """UPDATE queue_entries SET queue_id = $2, ticket_no = $3, ticket = $4,
                   status = 'waiting', called_at = NULL, transferred_from = $5,
                   told_position = NULL, told_eta = NULL, told_status = NULL WHERE id = $1""",
            entry_id, target.id, number, ticket, source.id)
        await record(principal, action="queues:manage", resource_type="queue_entry",
                     resource_id=entry_id, clinic_id=source.clinic_id,
                     detail={"transferred": {"from": str(source.id), "to": str(target.id)}})
        await record_queue_events(principal, source)
        result = _view_of(await record_queue_events(principal, target), entry_id)
    return result


async def _entries(queue: Queue) -> list[Entry]:
    return await load_entries(queue.id)


# check-in and the consultation -------------------------------------------------------------

async def check_in(principal: Principal, appointment_id: uuid.UUID, *, code: str | None = None,
                   reason: str = "") -> Appointment:
    """The appointment becomes `checked_in` and gets exactly one ticket in its doctor's queue
    for the appointment's day. A patient needs the location's QR code or the appointment's
    check-in link, within the clinic's window around the start."""
    async with db.transaction():
        grant, appointment = await visible_appointment(principal, appointment_id,
                                                       "appointments:update", lock=True)
        clinic = await load_clinic(appointment.clinic_id)
        now = clock.now()
        # the queue of the appointment's own day: reception may record an arrival late (or,
        # by mistake, early); a patient's own check-in is held to the window below
        day = appointment.start.astimezone(ZoneInfo(clinic.timezone)).date()
        if grant.role is Role.PATIENT:
            _patient_may_check_in(appointment, clinic.settings.check_in_opens_minutes,
                                  clinic.settings.check_in_closes_minutes, code, now)
        found = await open_queue(clinic.id, appointment.doctor_id, appointment.location_id, day)
        queue = await load_queue(found.id, lock=True)  # see the lock order above
        updated = await apply_transition(principal, appointment, Status.CHECKED_IN,
                                         reason=reason or "checked in")
        number, ticket = await _next_ticket(queue.id)
        grace = timedelta(minutes=clinic.settings.queue_late_grace_minutes)
        await db.fetch(
            """INSERT INTO queue_entries (id, queue_id, clinic_id, appointment_id, patient_id,
                   ticket_no, ticket, scheduled_at, checked_in_at, order_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
            uuid.uuid4(), queue.id, clinic.id, appointment_id, appointment.patient_id, number,
            ticket, appointment.start, now, order.arrival_order_at(appointment.start, now, grace))
        await record_queue_events(principal, queue)
    return updated


def _patient_may_check_in(appointment: Appointment, opens: int, closes: int, code: str | None,
                          now: datetime) -> None:
    if not code:
        raise Forbidden("a patient checks in with the location's QR code or the check-in link",
                        resource_type="appointment", resource_id=appointment.id)
    if not codes.accepts(code, location_id=appointment.location_id, appointment_id=appointment.id):
        raise invalid_field("code", "not a check-in code for this appointment or its location")
    start, end = appointment.start - timedelta(minutes=opens), appointment.start + timedelta(minutes=closes)
    if not start <= now <= end:
        raise Conflict(f"self check-in is open from {start.isoformat()} to {end.isoformat()}; "
                       "please see reception", resource_type="appointment",
                       resource_id=appointment.id)


_FOLLOW = {
    Status.IN_PROGRESS: "status = 'in_consultation', started_at = clock_timestamp(), "
                        "called_at = coalesce(called_at, clock_timestamp())",
    Status.COMPLETED: "status = 'done', finished_at = clock_timestamp(), "
                      "started_at = coalesce(started_at, clock_timestamp())",
    Status.NO_SHOW: "status = 'removed', removed_reason = 'no_show'",
    Status.CANCELLED: "status = 'removed', removed_reason = 'cancelled'",
}


@on_transition
async def _follow_appointment(principal: Principal | None, before: Appointment,
                              after: Appointment) -> None:
    """Queueing's handler of every appointment transition, in its transaction: the queue entry
    (if the appointment has one) follows the lifecycle (start, complete, no-show, cancel), and
    the queue is told. Its queue is locked here, after the appointment (step 2 above)."""
    if after.status not in _FOLLOW:
        return
    rows = await db.fetch(
        """SELECT e.id AS entry_id, q.* FROM queue_entries e JOIN queues q ON q.id = e.queue_id
           WHERE e.appointment_id = $1 FOR NO KEY UPDATE OF q""", after.id)
    if not rows:
        return
    queue, entry_id = queue_from_row(rows[0]), rows[0]["entry_id"]
    await db.fetch(f"UPDATE queue_entries SET {_FOLLOW[after.status]} WHERE id = $1", entry_id)
    await record_queue_events(principal, queue)


async def consult(principal: Principal, entry_id: uuid.UUID, action: str) -> EntryView:
    """Start or complete the consultation from the queue: allowed to whoever manages the queue
    (after a transfer, the new doctor), moving the appointment through its lifecycle (the entry
    follows it through `_follow_appointment`)."""
    target = {"start": Status.IN_PROGRESS, "complete": Status.COMPLETED}[action]
    async with db.transaction():
        entry, queue, appointment = await _locked_entry(principal, entry_id)
        if target is Status.IN_PROGRESS:
            _require_status(entry, EntryStatus.WAITING, EntryStatus.CALLED,
                            doing="start the consultation of")
        else:
            _require_status(entry, EntryStatus.IN_CONSULTATION, doing="complete")
        try:
            await apply_transition(principal, appointment, target,
                                   reason=f"consultation {action}", permission="queues:manage")
        except Conflict as exc:
            exc.resource_id = entry.appointment_id
            raise
        result = _view_of(await current_view(queue), entry_id)
    return result


# boards and codes --------------------------------------------------------------------------

async def issue_board_token(principal: Principal, queue_id: uuid.UUID) -> BoardToken:
    """A token for the waiting-room screen: it can read this queue's board and nothing else,
    until the day after the queue's day."""
    queue = await load_queue(queue_id)
    queue_grant(principal, queue, "queues:manage")
    clinic = await load_clinic(queue.clinic_id)
    midnight = datetime.combine(queue.day + timedelta(days=1), datetime.min.time(),
                                tzinfo=ZoneInfo(clinic.timezone))
    expires = midnight + timedelta(hours=BOARD_TOKEN_HOURS - 24)
    token = tokens.issue_device_token("board", queue_id, int(expires.timestamp()),
                                      cid=str(queue.clinic_id))
    await record(principal, action="queues:manage", resource_type="queue", resource_id=queue_id,
                 clinic_id=queue.clinic_id, detail={"board_token": True})
    return BoardToken(queue_id=queue_id, token=token, expires_at=expires,
                      url=f"/boards/{queue_id}#token={token}")


async def location_code(principal: Principal, clinic_id: uuid.UUID,
                        location_id: uuid.UUID) -> CheckInCode:
    """What the location's check-in QR code carries."""
    grant = require(principal, "queues:manage", clinic_id, resource_type="location",
                    resource_id=location_id)
    await require_location(clinic_id, location_id, otherwise=NotFound(
        "location not found", resource_type="location", resource_id=location_id))
    grant.check_object(owner_id=None, location_id=location_id, object_id=location_id)
    return CheckInCode(codes.location_code(location_id), "location", location_id)


async def appointment_code(principal: Principal, appointment_id: uuid.UUID) -> CheckInCode:
    """What the appointment's check-in link carries (sent with reminders)."""
    await visible_appointment(principal, appointment_id, "queues:manage")
    return CheckInCode(codes.appointment_code(appointment_id), "appointment", appointment_id)
