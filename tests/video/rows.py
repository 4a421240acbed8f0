"""Video rows for suites that need a session or a recording to exist without driving a call:
the authorization matrix and the statement counts run on the shared server, which has no
OpenVidu. Written as the commands write them (tests/billing/payment_rows.py does the same for
payments)."""

from __future__ import annotations

import secrets
import uuid
from typing import Any


def session_row(db: Any, *, clinic_id: str, appointment_id: str, doctor_id: str,
                patient_id: str, provider: str = "openvidu", room: str | None = None,
                consent: bool = False) -> str:
    """An open session of the appointment (its room: `room`, or a fresh random name)."""
    rows = db.fetch(
        """INSERT INTO video_sessions (id, clinic_id, appointment_id, doctor_id, patient_id,
             provider, room, room_ready_at, recording_consent_at, recording_consent_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, now(),
                   CASE WHEN $8::boolean THEN now() END, CASE WHEN $8::boolean THEN $5::uuid END)
           RETURNING id""",
        uuid.uuid4(), uuid.UUID(clinic_id), uuid.UUID(appointment_id), uuid.UUID(doctor_id),
        uuid.UUID(patient_id), provider, room or secrets.token_urlsafe(16), consent)
    return str(rows[0]["id"])


def recording_row(db: Any, session_id: str, *, status: str = "failed") -> str:
    """A recording of the session in `status` (a finished one by default: it blocks nothing)."""
    [session] = db.fetch("SELECT * FROM video_sessions WHERE id = $1", uuid.UUID(session_id))
    recording_id = uuid.uuid4()
    db.fetch(
        """INSERT INTO video_recordings (id, clinic_id, session_id, appointment_id, egress_id,
             status, file_key, started_by, ended_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
                   CASE WHEN $6::text IN ('complete', 'failed', 'aborted') THEN now() END)""",
        recording_id, session["clinic_id"], session["id"], session["appointment_id"],
        "EG_" + secrets.token_hex(6), status,
        f"recordings/{session['clinic_id']}/{session['appointment_id']}/{recording_id}.mp4",
        session["doctor_id"])
    return str(recording_id)
