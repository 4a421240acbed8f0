"""OpenVidu's webhooks (the LiveKit format): intake verifies on the raw body and stores in the
one inbox; `handle` turns a stored event into `video.*` events and recording statuses, once.

Which secret verifies a delivery: the signed JWT's `iss` is an API key. The deployment's key
verifies with the deployment's secret; a clinic's own OpenVidu is found through the room the
body names (its session's clinic) and its stored credentials, used only when their key is that
`iss` (domain/video/providers: `openvidu_keys`, `verify_openvidu_webhook`). Anything else is
refused (401) before anything is stored. A delivery older than
`MAX_AGE` (the body's `createdAt`), or a token past its `exp`, is refused too: a replayed old
delivery is 401; a retry within the window is a duplicate the inbox stores once."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from google.protobuf.json_format import ParseError

from domain import clock, db
from domain.events import commands as event_log
from domain.inbox.commands import receive
from domain.inbox.models import Event, Handled, Receipt
from domain.inbox.signatures import Refused, forged, malformed
from domain.tenancy.credentials import CredentialsUnavailable
from domain.video import events
from domain.video.commands.recordings import advance
from domain.video.models import Role, Session
from domain.video.providers import openvidu_keys, verify_openvidu_webhook
from domain.video.providers.openvidu import recording_status
from domain.video.queries import session_by_room

log = logging.getLogger("carewire.video")

PROVIDER = "openvidu"
#: A delivery this old (by the body's createdAt) is refused as a replay.
MAX_AGE = timedelta(minutes=5)
#: Headers kept with a stored body (never Authorization: a bearer of nothing, but a signature).
KEPT = ("content-type",)


def room_named(body: Mapping[str, Any]) -> str | None:
    """The room an event is about (participant and room events: `room.name`; egress events:
    `egressInfo.roomName`), in protojson's camelCase or the proto's own names."""
    room = body.get("room")
    if isinstance(room, dict) and isinstance(room.get("name"), str) and room["name"]:
        return str(room["name"])
    egress = body.get("egressInfo", body.get("egress_info"))
    if isinstance(egress, dict):
        name = egress.get("roomName", egress.get("room_name"))
        return name if isinstance(name, str) and name else None
    return None


def _refusal(exc: ValueError) -> Refused:
    """A signature that verified over a body that is not an event is malformed (400); any other
    failure is a forgery (401). The SDK's ParseError is the context of the adapter's error."""
    if isinstance(exc.__context__, ParseError):
        return malformed("the webhook body is not an event")
    return forged()


async def _verified(body: bytes, authorization: str) -> Any:
    """The WebhookEvent, checked with the deployment's key or, for a clinic's own OpenVidu,
    the key of the clinic whose room the body names (the providers' `openvidu_keys`)."""
    try:
        return verify_openvidu_webhook(body, authorization, await openvidu_keys())
    except ValueError as exc:
        if "unknown issuer" not in str(exc):
            raise _refusal(exc) from None
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        parsed = None
    room = room_named(parsed) if isinstance(parsed, dict) else None
    session = await session_by_room(room) if room else None
    if session is None:
        raise Refused(401, "unknown_key", "no OpenVidu here signs with this API key")
    try:
        keys = await openvidu_keys(session.clinic_id)
    except CredentialsUnavailable:
        raise Refused(401, "unknown_key", "no OpenVidu here signs with this API key") from None
    try:
        return verify_openvidu_webhook(body, authorization, keys)
    except ValueError as exc:
        if "unknown issuer" in str(exc):
            raise Refused(401, "unknown_key", "no OpenVidu here signs with this API key") from None
        raise _refusal(exc) from None


async def intake(body: bytes, headers: Mapping[str, str]) -> Receipt:
    """Verify, refuse stale deliveries, store under the event's id; 401 when anything is off."""
    authorization = headers.get("authorization", "").strip()
    if not authorization:
        raise Refused(401, "missing_signature", "the Authorization header (a signed JWT) is "
                                                 "missing")
    event = await _verified(body, authorization)
    created = int(event.created_at)
    if created <= 0 or clock.now().timestamp() - created > MAX_AGE.total_seconds():
        raise Refused(401, "stale", "the webhook is older than 5 minutes (a replay)")
    if not 1 <= len(event.id) <= 250 or not event.id.isprintable():
        raise malformed("the event id is missing or not an event id")
    kept = {n: headers[n][:500] for n in KEPT if n in headers}
    return await receive(provider=PROVIDER, event_ids=[event.id], body=body, headers=kept)


def _parse(body: bytes) -> Any:
    from google.protobuf.json_format import Parse
    from livekit.protocol.webhook import WebhookEvent

    return Parse(body.decode(), WebhookEvent(), ignore_unknown_fields=True)


def _base(session: Session) -> dict[str, Any]:
    return {"session_id": session.id, "appointment_id": session.appointment_id,
            "provider": session.provider, "status": session.status.value}


def _audience(session: Session) -> list[str]:
    return events.audience(session.clinic_id, session.doctor_id, session.patient_id)


def participant_role(session: Session, user_id: uuid.UUID, metadata: str) -> Role:
    """From the token's metadata when it says (`{"role": ...}`), else by who the user is in
    the appointment; anyone else in the room is staff watching (an observer)."""
    try:
        said = json.loads(metadata).get("role") if metadata else None
    except (ValueError, AttributeError):
        said = None
    if said in {r.value for r in Role}:
        return Role(said)
    if user_id == session.doctor_id:
        return Role.DOCTOR
    if user_id == session.patient_id:
        return Role.PATIENT
    return Role.OBSERVER


async def _participant(hook: Any, session: Session) -> str:
    try:
        user_id = uuid.UUID(hook.participant.identity)
    except ValueError:  # the egress's own recorder joins the room too: not a person
        return "ignored_participant"
    role = participant_role(session, user_id, hook.participant.metadata)
    kind = events.ParticipantJoined if hook.event == "participant_joined" else events.ParticipantLeft
    await event_log.record(None, clinic_id=session.clinic_id, audience=_audience(session),
                           event=kind(**_base(session), participant_id=user_id, role=role.value))
    return str(hook.event)


async def _recording_row(info: Any) -> dict[str, Any] | None:
    """By egress id; else by our file key (an egress webhook can beat the command storing the
    egress id it was answered)."""
    rows = await db.fetch("SELECT * FROM video_recordings WHERE egress_id = $1 FOR NO KEY UPDATE",
                          info.egress_id)
    if rows:
        return rows[0]
    keys = [f.filename for f in info.file_results if f.filename]
    keys += [o.filepath for o in info.room_composite.file_outputs if o.filepath]
    if not keys:
        return None
    rows = await db.fetch(
        """SELECT * FROM video_recordings WHERE file_key = ANY($1::text[]) AND egress_id IS NULL
           FOR NO KEY UPDATE""", keys)
    return rows[0] if rows else None


async def _egress(hook: Any) -> Handled:
    info = hook.egress_info
    row = await _recording_row(info)
    if row is None:
        return Handled(result="unknown_egress")
    status = recording_status(int(info.status))
    files = list(info.file_results)
    size = int(files[0].size) if files and files[0].size else None
    duration = int(files[0].duration) // 1_000_000_000 if files and files[0].duration else None
    await advance(row, status, egress_id=info.egress_id or None, size_bytes=size,
                  duration_seconds=duration, error=info.error or None)
    return Handled(result=f"egress_{status.value}", clinic_id=row["clinic_id"])


async def handle(event: Event) -> Handled:
    """The inbox handler (inside the processing transaction). A room or egress we do not know is
    parked (`unknown_room`, `unknown_egress`), not an error."""
    hook = _parse(event.body)
    if hook.event.startswith("egress_"):
        return await _egress(hook)
    if hook.event not in ("participant_joined", "participant_left", "room_finished"):
        return Handled(result="ignored")
    session = await session_by_room(hook.room.name) if hook.room.name else None
    if session is None:
        return Handled(result="unknown_room")
    if hook.event == "room_finished":
        await event_log.record(None, clinic_id=session.clinic_id, audience=_audience(session),
                               event=events.RoomFinished(**_base(session)))
        return Handled(result="room_finished", clinic_id=session.clinic_id)
    return Handled(result=await _participant(hook, session), clinic_id=session.clinic_id)
