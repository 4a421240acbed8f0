from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-12-05T00:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "video: one live room per appointment, provider switches, consent, recordings"

SQL = """
-- A video consultation's room. `room` is our name for it at the provider (random, never an
-- id a guest could guess from the appointment). Who-columns have no users FK (the system
-- principal has no row; the audit log is the record).
CREATE TABLE video_sessions (
    id uuid PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    appointment_id uuid NOT NULL REFERENCES appointments (id) ON DELETE CASCADE,
    doctor_id uuid NOT NULL,
    patient_id uuid NOT NULL,
    provider text NOT NULL CHECK (provider IN ('openvidu', 'jitsi')),
    room text NOT NULL UNIQUE CHECK (room ~ '^[A-Za-z0-9_-]{16,64}$'),
    -- open: created; waiting: the patient is in before the doctor admitted them; live: admitted
    -- (the appointment is in_progress); ended.
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'waiting', 'live', 'ended')),
    -- When the room exists at the provider (Jitsi rooms exist on first join: set at creation).
    room_ready_at timestamptz,
    patient_waiting_at timestamptz,
    admitted_at timestamptz,
    admitted_by uuid,
    ended_at timestamptz,
    ended_by uuid,
    -- Seconds between admission and the end (the consultation's measured length).
    duration_seconds integer CHECK (duration_seconds >= 0),
    -- A move from OpenVidu to Jitsi (once: a session never switches back).
    switched_from text CHECK (switched_from IN ('openvidu')),
    switched_at timestamptz,
    switch_reason text CHECK (length(switch_reason) <= 200),
    -- The patient's consent to recording (POST .../consent), audited.
    recording_consent_at timestamptz,
    recording_consent_by uuid,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'ended') = (ended_at IS NOT NULL)),
    CHECK (status NOT IN ('live') OR admitted_at IS NOT NULL),
    CHECK ((switched_from IS NULL) = (switched_at IS NULL)),
    CHECK (switched_from IS NULL OR provider = 'jitsi')
);
-- An appointment never has two live rooms, whoever inserts first.
CREATE UNIQUE INDEX video_sessions_live ON video_sessions (appointment_id)
    WHERE status <> 'ended';
CREATE INDEX video_sessions_appointment ON video_sessions (appointment_id, created_at);
CREATE INDEX video_sessions_clinic ON video_sessions (clinic_id, created_at, id);

-- A recording (an OpenVidu egress). `egress_id` is the provider's; the file lands in the
-- recording bucket under `file_key` (our key, never the provider's say).
CREATE TABLE video_recordings (
    id uuid PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    session_id uuid NOT NULL REFERENCES video_sessions (id) ON DELETE CASCADE,
    appointment_id uuid NOT NULL REFERENCES appointments (id) ON DELETE CASCADE,
    egress_id text UNIQUE CHECK (length(egress_id) BETWEEN 1 AND 200),
    status text NOT NULL CHECK (status IN ('starting', 'active', 'ending', 'complete',
                                           'failed', 'aborted')),
    file_key text NOT NULL UNIQUE,
    size_bytes bigint CHECK (size_bytes >= 0),
    duration_seconds integer CHECK (duration_seconds >= 0),
    error text CHECK (length(error) <= 500),
    started_by uuid NOT NULL,
    stopped_by uuid,
    started_at timestamptz NOT NULL DEFAULT now(),
    ended_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- One recording running per session at a time.
CREATE UNIQUE INDEX video_recordings_running ON video_recordings (session_id)
    WHERE status IN ('starting', 'active', 'ending');
CREATE INDEX video_recordings_appointment ON video_recordings (appointment_id, started_at);
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="video", description=DESCRIPTION, sql=SQL)
