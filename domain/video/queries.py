"""Reads of video's own tables (other contexts call these, never the SQL)."""

from __future__ import annotations

import uuid
from typing import Any

from domain import db
from domain.access.policies import Grant, require
from domain.errors import Forbidden, NotFound
from domain.principal import Principal
from domain.scheduling.models import Appointment
from domain.scheduling.queries import load_appointment, owner_of, visible_appointment
from domain.video.models import Recording, RecordingStatus, Session, SessionStatus


def session_from_row(row: dict[str, Any]) -> Session:
    return Session(
        id=row["id"], clinic_id=row["clinic_id"], appointment_id=row["appointment_id"],
        doctor_id=row["doctor_id"], patient_id=row["patient_id"], provider=row["provider"],
        room=row["room"], status=SessionStatus(row["status"]), room_ready_at=row["room_ready_at"],
        patient_waiting_at=row["patient_waiting_at"], admitted_at=row["admitted_at"],
        ended_at=row["ended_at"], duration_seconds=row["duration_seconds"],
        switched_from=row["switched_from"], switched_at=row["switched_at"],
        recording_consent_at=row["recording_consent_at"], created_at=row["created_at"])


def recording_from_row(row: dict[str, Any]) -> Recording:
    return Recording(
        id=row["id"], clinic_id=row["clinic_id"], session_id=row["session_id"],
        appointment_id=row["appointment_id"], status=RecordingStatus(row["status"]),
        size_bytes=row["size_bytes"], duration_seconds=row["duration_seconds"],
        error=row["error"], started_at=row["started_at"], ended_at=row["ended_at"])


def _missing(session_id: uuid.UUID) -> NotFound:
    return NotFound("video session not found", resource_type="video_session",
                    resource_id=session_id)


async def load_session(session_id: uuid.UUID, *, lock: bool = False) -> Session:
    """The session row, unchecked (callers authorise through its appointment). 404 if none."""
    rows = await db.fetch(
        "SELECT * FROM video_sessions WHERE id = $1" + (" FOR NO KEY UPDATE" if lock else ""),
        session_id)
    if not rows:
        raise _missing(session_id)
    return session_from_row(rows[0])


async def session_by_room(room: str) -> Session | None:
    rows = await db.fetch("SELECT * FROM video_sessions WHERE room = $1", room)
    return session_from_row(rows[0]) if rows else None


async def live_session_of(appointment_id: uuid.UUID) -> Session | None:
    """The appointment's session that has not ended (there is at most one)."""
    rows = await db.fetch(
        "SELECT * FROM video_sessions WHERE appointment_id = $1 AND status <> 'ended'",
        appointment_id)
    return session_from_row(rows[0]) if rows else None


def grant_for(principal: Principal, appointment: Appointment, *permissions: str) -> Grant:
    """The first of `permissions` the caller holds on the appointment (another clinic's, or one
    out of the caller's scope, is 404; holding none of them is 403)."""
    denied: Forbidden | None = None
    for permission in permissions:
        try:
            grant = require(principal, permission, appointment.clinic_id,
                            resource_type="appointment", resource_id=appointment.id)
        except Forbidden as exc:
            denied = denied or exc
            continue
        grant.check_object(owner_id=owner_of(grant, appointment),
                           location_id=appointment.location_id, object_id=appointment.id)
        return grant
    assert denied is not None
    raise denied


async def session_and_appointment(principal: Principal, session_id: uuid.UUID,
                                  *permissions: str, lock: bool = False
                                  ) -> tuple[Grant, Session, Appointment]:
    """A session the caller may reach through its appointment; any miss is the session's 404
    (`lock`: the appointment row, FOR NO KEY UPDATE, as every appointment command takes it)."""
    session = await load_session(session_id)
    appointment = await load_appointment(session.appointment_id, lock=lock)
    try:
        grant = grant_for(principal, appointment, *permissions)
    except NotFound as exc:
        raise NotFound("video session not found", hidden=exc.hidden,
                       resource_type="video_session", resource_id=session_id) from exc
    return grant, session, appointment


async def get_session(principal: Principal, session_id: uuid.UUID) -> Session:
    """`video:read`: the appointment's doctor and patient, and staff by the permission file."""
    _, session, _ = await session_and_appointment(principal, session_id, "video:read")
    return session


async def sessions_of_appointment(principal: Principal, appointment_id: uuid.UUID
                                  ) -> list[Session]:
    """Every session the appointment had, oldest first (one live at most; ended ones stay)."""
    await visible_appointment(principal, appointment_id, "video:read")
    rows = await db.fetch(
        "SELECT * FROM video_sessions WHERE appointment_id = $1 ORDER BY created_at, id",
        appointment_id)
    return [session_from_row(row) for row in rows]
