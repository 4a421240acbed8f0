"""Creating a video appointment's room, and moving a session to Jitsi when OpenVidu fails.

One live room per appointment is the database's rule (the partial unique index
`video_sessions_live`): a create inserts ON CONFLICT DO NOTHING and, when another request got
there first, answers with that one's session, so any number of concurrent creates give one row.
The appointment row is locked first (as every appointment command does), so a cancellation
and a create take turns and no live session outlives its appointment.

The provider is asked after COMMIT (a slow or hanging OpenVidu must hold no lock): a room it
cannot open moves the session to Jitsi once (a guarded UPDATE ... WHERE provider = 'openvidu'),
recorded in `switched_from/at/reason`, with `video.provider_switched` so open screens fetch a
new link."""

from __future__ import annotations

import logging
import secrets
import uuid

from domain import db
from domain.audit.commands import record
from domain.errors import Conflict, Unavailable
from domain.events.commands import record as record_event
from domain.principal import Principal
from domain.scheduling.models import Appointment, AppointmentType, Status
from domain.scheduling.queries import load_appointment
from domain.video import events, failover
from domain.video.models import Session, SessionStatus
from domain.video.providers.base import NotConfigured, ProviderRefused
from domain.video.queries import grant_for, live_session_of, load_session, session_from_row

log = logging.getLogger("carewire.video.sessions")

#: Appointments that can no longer have a call.
CLOSED = frozenset({Status.CANCELLED, Status.COMPLETED, Status.NO_SHOW, Status.EXPIRED})

_INSERT = """
INSERT INTO video_sessions (id, clinic_id, appointment_id, doctor_id, patient_id, provider, room,
                            room_ready_at, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $6 = 'jitsi' THEN now() END, $8)
ON CONFLICT (appointment_id) WHERE status <> 'ended' DO NOTHING
RETURNING *
"""

_READY = """
UPDATE video_sessions SET room_ready_at = now(), updated_at = now()
WHERE id = $1 AND provider = 'openvidu' AND room_ready_at IS NULL RETURNING *
"""

#: Once: a session that already moved (or ended) is left as it is.
_SWITCH = """
UPDATE video_sessions
SET provider = 'jitsi', switched_from = 'openvidu', switched_at = now(), switch_reason = $2,
    room_ready_at = now(), updated_at = now()
WHERE id = $1 AND provider = 'openvidu' AND status <> 'ended' RETURNING *
"""


def new_room() -> str:
    """A name nobody can guess from the appointment (fits the table's CHECK: 24 characters)."""
    return secrets.token_urlsafe(18)


def check_bookable(appointment: Appointment) -> None:
    if appointment.type is not AppointmentType.VIDEO:
        raise Conflict(f"appointment {appointment.id} is {appointment.type.value}, not a video "
                       "appointment", resource_type="appointment", resource_id=appointment.id)
    if appointment.status in CLOSED:
        raise Conflict(f"the appointment is {appointment.status.value}: it has no call",
                       resource_type="appointment", resource_id=appointment.id)


async def tell(actor: Principal | None, kind: type[events.VideoEvent], session: Session,
               **extra: object) -> None:
    await record_event(actor, clinic_id=session.clinic_id, event=kind(
        session_id=session.id, appointment_id=session.appointment_id, provider=session.provider,
        status=session.status.value, **extra),
        audience=events.audience(session.clinic_id, session.doctor_id, session.patient_id))


async def create_session(principal: Principal, appointment_id: uuid.UUID) -> Session:
    """The appointment's live session, created if it has none (idempotent)."""
    session, _ = await ensure_session(principal, appointment_id)
    return session


async def ensure_session(principal: Principal, appointment_id: uuid.UUID
                         ) -> tuple[Session, bool]:
    """(the appointment's live session, whether this call created it). Allowed to `video:manage`
    holders and to the appointment's own doctor and patient (`video:join`); only for a video
    appointment still to happen. 503 when no video provider is set up."""
    async with db.transaction():
        appointment = await load_appointment(appointment_id, lock=True)
        grant_for(principal, appointment, "video:manage", "video:join")
        check_bookable(appointment)
        try:
            provider = await failover.first_choice(appointment.clinic_id)
        except NotConfigured as exc:
            raise Unavailable("no video provider is set up for this clinic") from exc
        rows = await db.fetch(_INSERT, uuid.uuid4(), appointment.clinic_id, appointment.id,
                              appointment.doctor_id, appointment.patient_id, provider, new_room(),
                              principal.user_id)
        if not rows:  # another request's session (the appointment lock makes this rare)
            existing = await live_session_of(appointment_id)
            if existing is None:  # pragma: no cover - the index guarantees one
                raise Conflict("the appointment's session changed; try again",
                               resource_type="appointment", resource_id=appointment_id)
            return existing, False  # as it stands: a join makes its room ready if need be
        session = session_from_row(rows[0])
        await record(principal, action="video:create", resource_type="video_session",
                     resource_id=session.id, clinic_id=session.clinic_id,
                     detail={"appointment_id": str(appointment_id), "provider": provider})
        await tell(principal, events.SessionCreated, session)
    return await ready_room(principal, session), True


async def ready_room(actor: Principal | None, session: Session) -> Session:
    """After COMMIT: make sure an OpenVidu session's room exists (the breaker decides whether
    OpenVidu is asked at all); a reason not to use it moves the session to Jitsi."""
    if session.provider != "openvidu" or session.status is SessionStatus.ENDED:
        return session
    try:
        reason = await failover.open_room(session.clinic_id, session.room)
    except ProviderRefused as exc:
        raise Unavailable(f"openvidu refused the room: {exc}") from exc
    if reason is not None:
        return await switch_to_jitsi(actor, session, reason)
    if session.room_ready_at is not None:
        return session
    rows = await db.fetch(_READY, session.id)
    return session_from_row(rows[0]) if rows else await load_session(session.id)


async def switch_to_jitsi(actor: Principal | None, session: Session, reason: str) -> Session:
    """Move the session to Jitsi, once however many requests see OpenVidu fail together."""
    async with db.transaction():
        rows = await db.fetch(_SWITCH, session.id, reason[:200])
        if not rows:
            return await load_session(session.id)
        switched = session_from_row(rows[0])
        log.warning("video session %s moved to jitsi: %s", session.id, reason)
        await record(actor, action="video:switch_provider", resource_type="video_session",
                     resource_id=session.id, clinic_id=session.clinic_id,
                     detail={"from": "openvidu", "to": "jitsi", "reason": reason[:200]})
        await tell(actor, events.ProviderSwitched, switched, previous_provider="openvidu")
    return switched

