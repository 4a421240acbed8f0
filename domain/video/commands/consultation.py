"""The consultation through the appointment's lifecycle: admitting the waiting patient starts
it (`in_progress`), ending the call completes it, and an appointment cancelled, marked no-show
or expired ends its call.

Admission goes through queueing's `check_in` when the appointment was not checked in yet, so a
video visit has its queue entry like any other and its measured length (queueing's handler
stamps the entry's started_at and finished_at) feeds the queue's ETA (`pace_of`).

Lock order: the appointment row, then (through the lifecycle's handlers) its queue, then the
session row, as scheduling's transition and queueing's commands take them. Ending the room at
the provider happens after COMMIT, best effort (an OpenVidu room also closes itself when empty),
as does promoting an admitted patient already in the OpenVidu room;
a call ended by a cancellation is closed by the provider's empty timeout (a transition's
handler has no after-commit step)."""

from __future__ import annotations

import uuid

from domain import db
from domain.audit.commands import record
from domain.errors import Conflict
from domain.principal import Principal
from domain.queueing.commands import check_in
from domain.scheduling.commands import apply_transition, on_expiry, on_transition
from domain.scheduling.models import Appointment, AppointmentType, Status
from domain.video import events, failover
from domain.video.commands.recordings import stop_running
from domain.video.commands.sessions import tell
from domain.video.models import Session, SessionStatus
from domain.video.queries import load_session, session_and_appointment, session_from_row

_ADMIT = """
UPDATE video_sessions SET status = 'live', admitted_at = now(), admitted_by = $2,
    updated_at = now()
WHERE id = $1 AND status = 'waiting' RETURNING *
"""

#: `$1`: the session ids to end (those not ended yet); the measured length from admission.
_END = """
UPDATE video_sessions SET status = 'ended', ended_at = now(), ended_by = $2, updated_at = now(),
    duration_seconds = CASE WHEN admitted_at IS NULL THEN NULL
                            ELSE greatest(0, extract(epoch FROM now() - admitted_at))::int END
WHERE {where} AND status <> 'ended' RETURNING *
"""
_END_ONE = _END.format(where="id = $1")
_END_OF_APPOINTMENTS = _END.format(where="appointment_id = ANY($1::uuid[])")

#: Appointment statuses that end the call.
_ENDS_CALL = frozenset({Status.CANCELLED, Status.NO_SHOW, Status.EXPIRED})


async def admit(principal: Principal, session_id: uuid.UUID) -> Session:
    """The doctor (or a `video:manage` holder) lets the waiting patient in: the appointment
    moves to `in_progress` (checked in first when it was not); the session goes live. After
    COMMIT, an OpenVidu session's patient already in the room with waiting grants is promoted
    to publish and subscribe (best effort: an outage is logged, the admission stands and the
    patient app, told `video.admitted`, asks a token with the full grants)."""
    async with db.transaction():
        _, session, appointment = await session_and_appointment(principal, session_id,
                                                                "video:manage", lock=True)
        _require_waiting(session)
        if appointment.status in (Status.SCHEDULED, Status.CONFIRMED):
            appointment = await check_in(principal, appointment.id, reason="video: admitted")
        if appointment.status is not Status.IN_PROGRESS:
            await apply_transition(principal, appointment, Status.IN_PROGRESS,
                                   reason="video: admitted", permission=None)
        rows = await db.fetch(_ADMIT, session_id, principal.user_id)
        if not rows:  # it changed since it was read (a cancellation ended it): all rolls back
            _require_waiting(await load_session(session_id))
            raise Conflict("the session changed; try again", resource_type="video_session",
                           resource_id=session_id)
        live = session_from_row(rows[0])
        await record(principal, action="video:admit", resource_type="video_session",
                     resource_id=session_id, clinic_id=live.clinic_id,
                     detail={"appointment_id": str(live.appointment_id)})
        await tell(principal, events.PatientAdmitted, live)
    if live.provider == "openvidu":  # after COMMIT, no transaction open; best effort
        await failover.admit_participant(live.clinic_id, live.room, str(appointment.patient_id))
    return live


def _require_waiting(session: Session) -> None:
    if session.status is not SessionStatus.WAITING:
        why = ("no patient is waiting" if session.status is SessionStatus.OPEN
               else f"the session is already {session.status.value}")
        raise Conflict(f"cannot admit: {why}", resource_type="video_session",
                       resource_id=session.id)


async def end_session(principal: Principal, session_id: uuid.UUID) -> Session:
    """The doctor (a `video:manage` holder) ends the call: the session's measured length is
    from admission; an `in_progress` appointment becomes `completed`. A session already ended
    is 409 (a second doctor or a cancellation ended it first: the caller should know)."""
    async with db.transaction():
        _, _, appointment = await session_and_appointment(principal, session_id,
                                                          "video:manage", lock=True)
        rows = await db.fetch(_END_ONE, session_id, principal.user_id)
        if not rows:
            raise Conflict("the video session has already ended", resource_type="video_session",
                           resource_id=session_id)
        ended = session_from_row(rows[0])
        if appointment.status is Status.IN_PROGRESS:
            await apply_transition(principal, appointment, Status.COMPLETED,
                                   reason="video: call ended", permission=None)
        await record(principal, action="video:end", resource_type="video_session",
                     resource_id=session_id, clinic_id=ended.clinic_id,
                     detail={"appointment_id": str(ended.appointment_id),
                             "duration_seconds": ended.duration_seconds})
        await tell(principal, events.SessionEnded, ended,
                   duration_seconds=ended.duration_seconds)
    await stop_running(ended.id)  # recordings: the egress finishes its file before the room goes
    await failover.close_room(ended.clinic_id, ended.provider, ended.room)  # best effort
    return ended


async def _end_calls(actor: Principal | None, appointment_ids: list[uuid.UUID]) -> None:
    rows = await db.fetch(_END_OF_APPOINTMENTS, appointment_ids,
                          actor.user_id if actor else None)
    for row in rows:
        ended = session_from_row(row)
        await tell(actor, events.SessionEnded, ended, duration_seconds=ended.duration_seconds)


@on_transition
async def _end_with_appointment(actor: Principal | None, before: Appointment,
                                after: Appointment) -> None:
    """A video appointment cancelled or marked no-show ends its call, in the same
    transaction."""
    if (after.type is AppointmentType.VIDEO and after.status in _ENDS_CALL
            and before.status is not after.status):
        await _end_calls(actor, [after.id])


@on_expiry
async def _end_with_expired(expired: list[Appointment]) -> None:
    """Unpaid video appointments whose payment window ended end their call."""
    ids = [a.id for a in expired if a.type is AppointmentType.VIDEO]
    if ids:
        await _end_calls(None, ids)
