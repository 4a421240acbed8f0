"""Recording a video consultation: the patient's consent, the doctor's start and stop, an
appointment's recordings and a recording's download link (domain/video/commands/recordings.py)."""

from __future__ import annotations

import uuid

from litestar import Response, Router, get, post
from litestar.params import FromPath, FromQuery

from domain.video.commands import recordings
from domain.video.models import Recording, RecordingLink, Session
from gateway.context import CurrentPrincipal


@post("/sessions/{session_id:str}/consent", permission="video:join", status_code=200)
async def record_consent(principal: CurrentPrincipal,
                         session_id: FromPath[uuid.UUID]) -> Session:
    """The appointment's patient agrees to be recorded (audited; once: again answers the same)."""
    return await recordings.record_consent(principal, session_id)


@post("/sessions/{session_id:str}/recordings", permission="video:manage")
async def start_recording(principal: CurrentPrincipal,
                          session_id: FromPath[uuid.UUID]) -> Response[Recording]:
    """The appointment's doctor starts recording (201). 409 when the clinic has recording off
    (`video.recording_enabled`), the patient has not consented (`recording_consent`), the
    session is not live on OpenVidu, or a recording already runs; 503 when no bucket is set up
    or the provider fails."""
    return Response(await recordings.start_recording(principal, session_id), status_code=201)


@post("/recordings/{recording_id:str}/stop", permission="video:manage", status_code=200)
async def stop_recording(principal: CurrentPrincipal,
                         recording_id: FromPath[uuid.UUID]) -> Recording:
    """The doctor stops it (`ending`; the provider's webhook completes it)."""
    return await recordings.stop_recording(principal, recording_id)


@get("/recordings", permission="recordings:read")
async def list_recordings(principal: CurrentPrincipal,
                          appointment_id: FromQuery[uuid.UUID]) -> list[Recording]:
    """An appointment's recordings, oldest first (audited)."""
    return await recordings.list_recordings(principal, appointment_id)


@post("/recordings/{recording_id:str}/link", permission="recordings:read", status_code=200)
async def recording_link(principal: CurrentPrincipal,
                         recording_id: FromPath[uuid.UUID]) -> RecordingLink:
    """A presigned download link to a complete recording, valid `recording_link_seconds`
    (audited); 409 while it is not complete."""
    return await recordings.recording_link(principal, recording_id)


router = Router(path="/video", tags=["video"],
                route_handlers=[record_consent, start_recording, stop_recording,
                                list_recordings, recording_link])
