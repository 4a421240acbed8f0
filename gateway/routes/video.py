"""Video sessions: create (idempotent per appointment), read, join tokens, the waiting room's
admission, ending the call. An appointment's sessions are listed under the appointment
(`GET /appointments/{id}/video-sessions`), like its other sub-resources."""

from __future__ import annotations

import uuid

from litestar import Response, Router, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody

from domain.video import queries
from domain.video.commands import consultation, joins, sessions
from domain.video.models import Join, Session
from gateway.context import CurrentPrincipal
from gateway.routes import Body


class SessionCreate(Body):
    appointment_id: uuid.UUID


@post("/video/sessions", permission="video:join", summary="Open the appointment's video room",
      responses={200: ResponseSpec(data_container=Session,
                                   description="The appointment's live session, which exists")})
async def create_session(principal: CurrentPrincipal,
                         data: JSONBody[SessionCreate]) -> Response[Session]:
    """201 with the new session; 200 with the appointment's live one when it has one (one live
    room per appointment, also for concurrent requests). Allowed to `video:manage` holders and
    to the appointment's own doctor and patient. 409: not a video appointment, or one that is
    cancelled, completed, no-show or expired. 503: no video provider is set up. OpenVidu first;
    when it fails the session is created on Jitsi (`switched_from: openvidu`)."""
    session, created = await sessions.ensure_session(principal, data.appointment_id)
    return Response(session, status_code=201 if created else 200)


@get("/video/sessions/{session_id:str}", permission="video:read",
     summary="A video session")
async def get_session(principal: CurrentPrincipal, session_id: FromPath[uuid.UUID]) -> Session:
    return await queries.get_session(principal, session_id)


@get("/appointments/{appointment_id:str}/video-sessions", permission="video:read",
     summary="An appointment's video sessions")
async def appointment_sessions(principal: CurrentPrincipal,
                               appointment_id: FromPath[uuid.UUID]) -> list[Session]:
    """Oldest first; at most one is not `ended`."""
    return await queries.sessions_of_appointment(principal, appointment_id)


@post("/video/sessions/{session_id:str}/token", permission="video:join", status_code=200,
      summary="Join the call: a link and token for the caller")
async def session_token(principal: CurrentPrincipal, session_id: FromPath[uuid.UUID]) -> Join:
    """The caller's role decides the grants: the appointment's doctor (publish, subscribe,
    moderate, record), its patient (publish, subscribe), other staff allowed to join (observers:
    subscribe only). 402 `payment_required`: the patient's visit awaits its prepayment. 409:
    the appointment is over, the session ended, or now is outside the join window (the token
    expires at its end). A patient the doctor has not admitted gets `admitted: false` and waits
    (`video.patient_waiting` tells the doctor and reception)."""
    return await joins.session_token(principal, session_id)


@post("/video/sessions/{session_id:str}/admit", permission="video:manage", status_code=200,
      summary="Let the waiting patient in")
async def admit(principal: CurrentPrincipal, session_id: FromPath[uuid.UUID]) -> Session:
    """The appointment moves to `in_progress` (checked in first, so it has its queue entry);
    the session goes `live`. 409 when no patient waits or the session is live or ended."""
    return await consultation.admit(principal, session_id)


@post("/video/sessions/{session_id:str}/end", permission="video:manage", status_code=200,
      summary="End the call")
async def end_session(principal: CurrentPrincipal, session_id: FromPath[uuid.UUID]) -> Session:
    """The session ends with its length since admission; an `in_progress` appointment becomes
    `completed` (the length feeds the queue's ETA). 409 when it has already ended."""
    return await consultation.end_session(principal, session_id)


router = Router(path="/", route_handlers=[create_session, get_session, appointment_sessions,
                                          session_token, admit, end_session], tags=["video"])
