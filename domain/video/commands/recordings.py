"""Recording a consultation: the patient's consent, the doctor's start and stop through the
provider's egress, the listing and the download links (every listing and link audited).

The row goes in first (`starting`, in a transaction: the partial unique index lets one recording
run per session, whoever inserts first); the egress API is called after COMMIT, so no lock is
held across a network call; a provider that fails leaves the row `failed`. Statuses only move
forward (`advance`), whether a command or a webhook (domain/video/webhooks.py) tells them, so
facts arriving in any order converge."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from asyncpg.exceptions import UniqueViolationError

from domain import clock, db, settings
from domain.audit.commands import record
from domain.errors import Conflict, FieldError, Forbidden, NotFound, Unavailable
from domain.events import commands as event_log
from domain.principal import Principal
from domain.scheduling.queries import visible_appointment
from domain.tenancy.queries import load_clinic
from domain.video import events, storage
from domain.video.models import Recording, RecordingLink, RecordingStatus, Session, SessionStatus
from domain.video.providers.base import NotConfigured, ProviderDown, ProviderRefused
from domain.video.queries import (
    load_session,
    recording_from_row,
    session_and_appointment,
    session_from_row,
)

#: A status's place: a recording never moves back (a late `egress_started` after the end).
RANK = {RecordingStatus.STARTING: 0, RecordingStatus.ACTIVE: 1, RecordingStatus.ENDING: 2,
        RecordingStatus.COMPLETE: 3, RecordingStatus.FAILED: 3, RecordingStatus.ABORTED: 3}
FINAL = (RecordingStatus.COMPLETE, RecordingStatus.FAILED, RecordingStatus.ABORTED)
#: The clinic setting that switches recording on.
ENABLED_SETTING = "video.recording_enabled"


def _missing(recording_id: uuid.UUID) -> NotFound:
    return NotFound("recording not found", resource_type="video_recording",
                    resource_id=recording_id)


async def _load(recording_id: uuid.UUID, *, lock: bool = False) -> dict[str, Any]:
    rows = await db.fetch("SELECT * FROM video_recordings WHERE id = $1"
                          + (" FOR NO KEY UPDATE" if lock else ""), recording_id)
    if not rows:
        raise _missing(recording_id)
    return rows[0]


def _only_the_doctor(principal: Principal, session: Session, what: str) -> None:
    if principal.user_id != session.doctor_id:
        raise Forbidden(f"only the appointment's doctor may {what} a recording",
                        resource_type="video_recording")


def _event(session: Session, recording: Recording) -> events.RecordingEvent | None:
    kind: type[events.RecordingEvent] | None = {
        RecordingStatus.ACTIVE: events.RecordingStarted,
        RecordingStatus.COMPLETE: events.RecordingStopped,
        RecordingStatus.ABORTED: events.RecordingFailed,
        RecordingStatus.FAILED: events.RecordingFailed}.get(recording.status)
    if kind is None:
        return None
    return kind(session_id=session.id, appointment_id=session.appointment_id,
                provider=session.provider, status=session.status.value,
                recording_id=recording.id, recording_status=recording.status.value)


async def advance(row: dict[str, Any], status: RecordingStatus, *, egress_id: str | None = None,
                  size_bytes: int | None = None, duration_seconds: int | None = None,
                  error: str | None = None) -> Recording:
    """Move a recording forward (never back; a final status never changes) inside the caller's
    transaction, and tell the audience when it became active, ended or failed. Sizes and
    errors fill in when known; `egress_id` is stored once."""
    current = RecordingStatus(row["status"])
    moves = RANK[status] > RANK[current]
    rows = await db.fetch(
        """UPDATE video_recordings SET
             status = CASE WHEN $2 THEN $3 ELSE status END,
             egress_id = COALESCE(egress_id, $4),
             size_bytes = COALESCE($5, size_bytes),
             duration_seconds = COALESCE($6, duration_seconds),
             error = COALESCE($7, error),
             ended_at = CASE WHEN $2 AND $3 = ANY($8::text[]) THEN now() ELSE ended_at END,
             updated_at = now()
           WHERE id = $1 RETURNING *""",
        row["id"], moves, status.value, egress_id, size_bytes, duration_seconds,
        error[:500] if error else None, [s.value for s in FINAL])
    recording = recording_from_row(rows[0])
    if moves:
        session = await load_session(recording.session_id)
        event = _event(session, recording)
        if event is not None:
            await event_log.record(None, clinic_id=recording.clinic_id, event=event,
                                   audience=events.audience(session.clinic_id, session.doctor_id,
                                                            session.patient_id))
    return recording


async def record_consent(principal: Principal, session_id: uuid.UUID) -> Session:
    """The patient of the appointment agrees to be recorded, themself. Once: asking again
    answers the same session and writes nothing (no second audit row or event)."""
    _, session, _ = await session_and_appointment(principal, session_id, "video:join")
    if principal.user_id != session.patient_id:
        raise Forbidden("only the patient of the appointment may consent to recording",
                        resource_type="video_session", resource_id=session_id)
    if session.recording_consent_at is not None:
        return session
    async with db.transaction():
        rows = await db.fetch(
            """UPDATE video_sessions SET recording_consent_at = now(),
                 recording_consent_by = $2, updated_at = now()
               WHERE id = $1 AND recording_consent_at IS NULL RETURNING *""",
            session_id, principal.user_id)
        if not rows:  # a concurrent consent won: same answer
            return await load_session(session_id)
        session = session_from_row(rows[0])
        await record(principal, action="video:consent", resource_type="video_session",
                     resource_id=session_id, clinic_id=session.clinic_id)
        await event_log.record(
            principal, clinic_id=session.clinic_id,
            event=events.ConsentRecorded(session_id=session.id,
                                         appointment_id=session.appointment_id,
                                         provider=session.provider, status=session.status.value),
            audience=events.audience(session.clinic_id, session.doctor_id, session.patient_id))
    return session


async def _may_start(session: Session) -> str:
    """Why not (an error), or the bucket to record into."""
    clinic = await load_clinic(session.clinic_id)
    if not clinic.settings.video.recording_enabled:
        raise Conflict(f"recording is off for this clinic ({ENABLED_SETTING})",
                       errors=[FieldError(ENABLED_SETTING, "recording is not enabled")])
    bucket = settings.get().recording_bucket
    if not bucket:
        raise Unavailable("recording is not set up here (recording_bucket)",
                          errors=[FieldError("recording_bucket", "no bucket is configured")])
    if session.status is SessionStatus.ENDED or session.provider != "openvidu":
        raise Conflict("recording unavailable: only a live OpenVidu session records",
                       errors=[FieldError("session", "recording unavailable")])
    if session.recording_consent_at is None:
        raise Conflict("consent_required: the patient has not consented to recording",
                       errors=[FieldError("recording_consent", "consent_required")])
    return bucket


async def start_recording(principal: Principal, session_id: uuid.UUID) -> Recording:
    """The appointment's doctor starts recording the call (201 `starting`/`active`); 409 while
    one runs, when recording is off, the session is not on OpenVidu or the patient has not
    consented; 503 when the provider fails (the row is then `failed`)."""
    from domain.video.providers import recorder

    _, session, _ = await session_and_appointment(principal, session_id, "video:manage")
    _only_the_doctor(principal, session, "start")
    bucket = await _may_start(session)
    recording_id = uuid.uuid4()
    key = storage.recording_key(session.clinic_id, session.appointment_id, recording_id)
    try:
        async with db.transaction():
            rows = await db.fetch(
                """INSERT INTO video_recordings (id, clinic_id, session_id, appointment_id,
                     status, file_key, started_by) VALUES ($1, $2, $3, $4, 'starting', $5, $6)
                   RETURNING *""",
                recording_id, session.clinic_id, session.id, session.appointment_id, key,
                principal.user_id)
            await record(principal, action="recordings:start", resource_type="video_recording",
                         resource_id=recording_id, clinic_id=session.clinic_id,
                         detail={"session_id": str(session.id)})
    except UniqueViolationError:
        raise Conflict("a recording of this session is already running",
                       errors=[FieldError("session", "already recording")]) from None
    try:
        provider = await recorder(session.clinic_id)
        egress_id, status = await provider.start_recording(session.room, bucket=bucket,
                                                           file_key=key)
    except (ProviderDown, ProviderRefused, NotConfigured) as exc:
        async with db.transaction():
            await advance(rows[0], RecordingStatus.FAILED, error=f"start: {exc}"[:500])
        raise Unavailable("the video provider could not start the recording") from None
    async with db.transaction():
        row = await _load(recording_id, lock=True)
        recording = await advance(row, status, egress_id=egress_id)
    return recording


async def stop_recording(principal: Principal, recording_id: uuid.UUID) -> Recording:
    """The doctor stops it; the egress finishes the file and its webhook completes the row.
    Stopping one that has ended answers it as it is."""
    from domain.video.providers import recorder

    row = await _load(recording_id)
    session = await load_session(row["session_id"])
    try:
        await visible_appointment(principal, session.appointment_id, "video:manage")
    except NotFound:
        raise _missing(recording_id) from None
    _only_the_doctor(principal, session, "stop")
    if RecordingStatus(row["status"]) in FINAL:
        return recording_from_row(row)
    if row["egress_id"] is None:
        raise Conflict("the recording is still starting; stop it again in a moment",
                       errors=[FieldError("recording", "still starting")])
    try:
        status = await (await recorder(session.clinic_id)).stop_recording(row["egress_id"])
    except (ProviderDown, ProviderRefused, NotConfigured):
        raise Unavailable("the video provider could not stop the recording") from None
    async with db.transaction():
        locked = await _load(recording_id, lock=True)
        await db.fetch("UPDATE video_recordings SET stopped_by = $2 WHERE id = $1",
                       recording_id, principal.user_id)
        await record(principal, action="recordings:stop", resource_type="video_recording",
                     resource_id=recording_id, clinic_id=session.clinic_id)
        recording = await advance(locked, status)
    return recording


async def stop_running(session_id: uuid.UUID) -> None:
    """After a session ends: stop its running recording, if any (best effort; the egress also
    ends with the room)."""
    from domain.video.providers import recorder

    rows = await db.fetch(
        """SELECT * FROM video_recordings WHERE session_id = $1 AND egress_id IS NOT NULL
             AND status IN ('starting', 'active')""", session_id)
    for row in rows:
        try:
            status = await (await recorder(row["clinic_id"])).stop_recording(row["egress_id"])
        except (ProviderDown, ProviderRefused, NotConfigured):
            continue
        async with db.transaction():
            await advance(await _load(row["id"], lock=True), status)


async def list_recordings(principal: Principal, appointment_id: uuid.UUID) -> list[Recording]:
    """An appointment's recordings, oldest first (`recordings:read`; every listing audited)."""
    _, appointment = await visible_appointment(principal, appointment_id, "recordings:read")
    rows = await db.fetch(
        "SELECT * FROM video_recordings WHERE appointment_id = $1 ORDER BY started_at, id",
        appointment_id)
    await record(principal, action="recordings:list", resource_type="appointment",
                 resource_id=appointment_id, clinic_id=appointment.clinic_id)
    return [recording_from_row(r) for r in rows]


async def recording_link(principal: Principal, recording_id: uuid.UUID) -> RecordingLink:
    """A short-lived presigned download link of a complete recording (every link audited)."""
    row = await _load(recording_id)
    try:
        await visible_appointment(principal, row["appointment_id"], "recordings:read")
    except NotFound:
        raise _missing(recording_id) from None
    if row["status"] != RecordingStatus.COMPLETE.value:
        raise Conflict(f"the recording is {row['status']}: only a complete one downloads",
                       errors=[FieldError("recording", "not complete")])
    if not settings.get().recording_bucket:
        raise Unavailable("recordings are not kept here any more (recording_bucket)",
                          errors=[FieldError("recording_bucket", "no bucket is configured")])
    seconds = settings.get().recording_link_seconds
    url = await storage.presigned_get(row["file_key"], seconds=seconds)
    await record(principal, action="recordings:link", resource_type="video_recording",
                 resource_id=recording_id, clinic_id=row["clinic_id"])
    return RecordingLink(recording_id=recording_id, url=url,
                         expires_at=clock.now() + timedelta(seconds=seconds))
