"""Video events: ids and statuses only (never names), to the appointment's doctor, its patient
and the clinic's staff (reception sees who is in the call)."""

from __future__ import annotations

import uuid

from domain.access import rooms
from domain.events.envelope import Category, DomainEvent, Priority


def audience(clinic_id: uuid.UUID, doctor_id: uuid.UUID, patient_id: uuid.UUID) -> list[str]:
    return [rooms.clinic_staff(clinic_id), rooms.doctor(doctor_id), rooms.user(patient_id)]


class VideoEvent(DomainEvent, frozen=True):
    CATEGORY = Category.VIDEO
    session_id: uuid.UUID
    appointment_id: uuid.UUID
    provider: str
    status: str


class SessionCreated(VideoEvent, frozen=True):
    TYPE = "video.session_created"


class PatientWaiting(VideoEvent, frozen=True):
    TYPE = "video.patient_waiting"
    PRIORITY = Priority.HIGH


class PatientAdmitted(VideoEvent, frozen=True):
    TYPE = "video.admitted"
    PRIORITY = Priority.HIGH


class SessionEnded(VideoEvent, frozen=True):
    TYPE = "video.session_ended"
    duration_seconds: int | None


class ProviderSwitched(VideoEvent, frozen=True):
    """Open screens reload their link (POST .../token again)."""

    TYPE = "video.provider_switched"
    PRIORITY = Priority.HIGH
    previous_provider: str


class ConsentRecorded(VideoEvent, frozen=True):
    TYPE = "video.consent_recorded"


class ParticipantEvent(VideoEvent, frozen=True):
    #: The user id the participant joined as, and doctor / patient / observer.
    participant_id: uuid.UUID | None
    role: str | None


class ParticipantJoined(ParticipantEvent, frozen=True):
    TYPE = "video.participant_joined"


class ParticipantLeft(ParticipantEvent, frozen=True):
    TYPE = "video.participant_left"


class RoomFinished(VideoEvent, frozen=True):
    TYPE = "video.room_finished"


class RecordingEvent(VideoEvent, frozen=True):
    recording_id: uuid.UUID
    recording_status: str


class RecordingStarted(RecordingEvent, frozen=True):
    TYPE = "video.recording_started"


class RecordingStopped(RecordingEvent, frozen=True):
    TYPE = "video.recording_stopped"


class RecordingFailed(RecordingEvent, frozen=True):
    TYPE = "video.recording_failed"
