"""What video returns, and its vocabulary."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Literal

import msgspec

VideoProviderName = Literal["openvidu", "jitsi"]
PROVIDERS: tuple[VideoProviderName, ...] = ("openvidu", "jitsi")


class SessionStatus(enum.StrEnum):
    OPEN = "open"
    #: The patient is in and the doctor has not admitted them yet (the virtual waiting room).
    WAITING = "waiting"
    #: Admitted: the appointment is in_progress.
    LIVE = "live"
    ENDED = "ended"


class Role(enum.StrEnum):
    """What a participant is in the call (not their clinic role)."""

    DOCTOR = "doctor"
    PATIENT = "patient"
    #: Staff the permission file lets join: subscribe only, visible as an observer.
    OBSERVER = "observer"


class RecordingStatus(enum.StrEnum):
    STARTING = "starting"
    ACTIVE = "active"
    ENDING = "ending"
    COMPLETE = "complete"
    FAILED = "failed"
    ABORTED = "aborted"


RUNNING_RECORDING = (RecordingStatus.STARTING, RecordingStatus.ACTIVE, RecordingStatus.ENDING)


class Session(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    clinic_id: uuid.UUID
    appointment_id: uuid.UUID
    doctor_id: uuid.UUID
    patient_id: uuid.UUID
    provider: VideoProviderName
    #: The room's name at the provider.
    room: str
    status: SessionStatus
    room_ready_at: datetime | None
    patient_waiting_at: datetime | None
    admitted_at: datetime | None
    ended_at: datetime | None
    duration_seconds: int | None
    switched_from: VideoProviderName | None
    switched_at: datetime | None
    recording_consent_at: datetime | None
    created_at: datetime


class Join(msgspec.Struct, frozen=True, kw_only=True):
    """What a caller needs to enter the call: `url` opens it (Jitsi carries the token in it);
    OpenVidu clients connect to `server_url` with `token`."""

    session_id: uuid.UUID
    provider: VideoProviderName
    role: Role
    url: str
    server_url: str | None
    token: str
    expires_at: datetime
    #: Whether the doctor has admitted the patient (a patient not yet admitted waits).
    admitted: bool


class Recording(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    clinic_id: uuid.UUID
    session_id: uuid.UUID
    appointment_id: uuid.UUID
    status: RecordingStatus
    size_bytes: int | None
    duration_seconds: int | None
    error: str | None
    started_at: datetime
    ended_at: datetime | None


class RecordingLink(msgspec.Struct, frozen=True, kw_only=True):
    recording_id: uuid.UUID
    url: str
    expires_at: datetime
