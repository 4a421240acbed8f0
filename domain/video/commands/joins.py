"""Who may join a video session, with which rights, and when: the join token.

The appointment's doctor joins as the doctor, its patient as the patient, other staff the
permission file lets join (`video:join`: nurses) as observers; the grants of each are
`providers.base.GRANTS`. Nobody joins a cancelled, completed, no-show or expired appointment
or an ended session; a patient whose visit awaits its prepayment (`pending_payment`) gets 402;
everyone only inside the clinic's join window, and the token expires at the window's end.

A patient joining before the doctor admitted them waits (the virtual waiting room): the session
becomes `waiting` and the doctor and reception hear `video.patient_waiting`. On OpenVidu the
provider enforces it: until the session is `live` the patient's token carries
`providers.base.WAITING` (in the room, no publish, subscribe or data), so the doctor sees them
there but neither sees nor hears the other; admission promotes a connected patient
(`consultation.admit`) and later tokens carry the full patient grants. On Jitsi the waiting room
is the app's: a Jitsi JWT has no per-participant publish grant on a stock deployment, so the
patient's token is the full one and the app opens the link only on `video.admitted`. The token is
signed locally; only an OpenVidu room is checked (and made again if it went) first, and a room
OpenVidu cannot give moves the session to Jitsi (both sides then get Jitsi links)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from domain import clock, db
from domain.audit.commands import record
from domain.errors import Conflict, PaymentRequired, Unavailable
from domain.identity.people import contact
from domain.principal import Principal
from domain.scheduling.models import Appointment, Status
from domain.tenancy.models import VideoSettings
from domain.tenancy.queries import load_clinic
from domain.video import events
from domain.video.commands.sessions import CLOSED, ready_room, tell
from domain.video.models import Join, Role, Session, SessionStatus
from domain.video.providers import provider
from domain.video.providers.base import GRANTS, WAITING, Grants, NotConfigured, Participant
from domain.video.queries import load_session, session_and_appointment, session_from_row

#: The patient's first join before admission: the waiting room (once).
_WAIT = """
UPDATE video_sessions SET status = 'waiting', patient_waiting_at = now(), updated_at = now()
WHERE id = $1 AND status = 'open' RETURNING *
"""


def join_window(appointment: Appointment, video: VideoSettings) -> tuple[datetime, datetime]:
    """From `join_opens_minutes` before the start until `join_closes_minutes` after the end."""
    return (appointment.start - timedelta(minutes=video.join_opens_minutes),
            appointment.end + timedelta(minutes=video.join_closes_minutes))


def role_in_call(principal: Principal, appointment: Appointment) -> Role:
    if principal.user_id == appointment.doctor_id:
        return Role.DOCTOR
    if principal.user_id == appointment.patient_id:
        return Role.PATIENT
    return Role.OBSERVER


def grants_for(session: Session, role: Role) -> Grants:
    """The role's grants; a patient not admitted yet (the session is not `live`) gets the
    waiting room's on OpenVidu. Jitsi tokens carry no publish grant: the role's grants."""
    if role is Role.PATIENT and session.provider == "openvidu" and session.status is not SessionStatus.LIVE:
        return WAITING
    return GRANTS[role]


def check_may_join(session: Session, appointment: Appointment, role: Role,
                   window: tuple[datetime, datetime], now: datetime) -> None:
    """The refusals, most final first: the visit is over, the call is over, unpaid, too early
    or too late."""
    if appointment.status in CLOSED:
        raise Conflict(f"the appointment is {appointment.status.value}: its call cannot be "
                       "joined", resource_type="appointment", resource_id=appointment.id)
    if session.status is SessionStatus.ENDED:
        raise Conflict("the video session has ended", resource_type="video_session",
                       resource_id=session.id)
    if role is Role.PATIENT and appointment.status is Status.PENDING_PAYMENT:
        raise PaymentRequired("the visit must be paid before joining the call",
                              resource_type="appointment", resource_id=appointment.id)
    opens, closes = window
    if not opens <= now < closes:
        raise Conflict(f"the call can be joined from {opens.isoformat()} until "
                       f"{closes.isoformat()} (the join window)",
                       resource_type="video_session", resource_id=session.id)


async def session_token(principal: Principal, session_id: uuid.UUID) -> Join:
    """A join for the caller: the provider, a URL, a token and the role it carries. A Jitsi
    session's join is one transaction; an OpenVidu one asks OpenVidu for its room between two
    (no transaction is open while a provider is called)."""
    async with db.transaction():
        _, session, appointment = await session_and_appointment(principal, session_id,
                                                                "video:join")
        role = role_in_call(principal, appointment)
        clinic = await load_clinic(appointment.clinic_id)
        window = join_window(appointment, clinic.settings.video)
        check_may_join(session, appointment, role, window, clock.now())
        person = await contact(principal.user_id)
        name = person.name if person else ""
        joined = (await _issue(principal, session, role, name, window)
                  if session.provider != "openvidu" else None)
    if joined is not None:
        return joined
    session = await ready_room(principal, session)  # the room may have gone; may move to Jitsi
    async with db.transaction():
        join = await _issue(principal, session, role, name, window)
    return join


async def _issue(principal: Principal, session: Session, role: Role, name: str,
                 window: tuple[datetime, datetime]) -> Join:
    """Inside the join's transaction: the waiting room for a patient not yet admitted, the
    signed ticket (no network call) with the grants of the session as it is then, the audit
    row (never the token)."""
    try:
        video = await provider(session.clinic_id, session.provider)
    except NotConfigured as exc:
        raise Unavailable(f"{session.provider} is not set up for this clinic") from exc
    if role is Role.PATIENT and session.status is SessionStatus.OPEN:
        session = await _wait(principal, session)
    ticket = video.ticket(session.room, Participant(identity=str(principal.user_id), name=name,
                                                    role=role),
                          grants_for(session, role), not_before=window[0], expires_at=window[1])
    await record(principal, action="video:join", resource_type="video_session",
                 resource_id=session.id, clinic_id=session.clinic_id,
                 detail={"role": role.value, "provider": session.provider,
                         "appointment_id": str(session.appointment_id)})
    return Join(session_id=session.id, provider=session.provider, role=role, url=ticket.url,
                server_url=ticket.server_url, token=ticket.token, expires_at=window[1],
                admitted=session.status is SessionStatus.LIVE)


async def _wait(principal: Principal, session: Session) -> Session:
    """Inside the join's transaction: the patient is in the waiting room, once, told to the
    doctor and reception live."""
    rows = await db.fetch(_WAIT, session.id)
    if not rows:  # another join got there first, or the doctor admitted meanwhile
        return await load_session(session.id)
    waiting = session_from_row(rows[0])
    await tell(principal, events.PatientWaiting, waiting)
    return waiting
