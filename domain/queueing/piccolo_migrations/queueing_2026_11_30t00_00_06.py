from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-11-30T00:00:06:000000"
VERSION = "1.38.0"
DESCRIPTION = "waiting-room queues: one per doctor, location and clinic day; one ticket per appointment"

SQL = """
CREATE TABLE queues (
    id uuid PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    doctor_id uuid NOT NULL REFERENCES users (id),
    location_id uuid,
    day date NOT NULL,
    letter text NOT NULL CHECK (letter ~ '^[A-Z]{1,3}$'),
    paused boolean NOT NULL DEFAULT false,
    last_ticket integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (clinic_id, location_id) REFERENCES locations (clinic_id, id),
    UNIQUE (clinic_id, day, letter)
);
-- One queue per doctor per location (or the virtual room, NULL) per clinic day.
CREATE UNIQUE INDEX queues_one_per_doctor_day ON queues (
    clinic_id, doctor_id, coalesce(location_id, '00000000-0000-0000-0000-000000000000'::uuid), day);
CREATE INDEX queues_by_clinic_day ON queues (clinic_id, day);

CREATE TABLE queue_entries (
    id uuid PRIMARY KEY,
    queue_id uuid NOT NULL REFERENCES queues (id) ON DELETE CASCADE,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    -- one ticket per appointment, ever: a transfer moves the entry, it never copies it
    appointment_id uuid NOT NULL UNIQUE REFERENCES appointments (id) ON DELETE CASCADE,
    patient_id uuid NOT NULL REFERENCES users (id),
    ticket_no integer NOT NULL CHECK (ticket_no > 0),
    ticket text NOT NULL,
    priority text NOT NULL DEFAULT 'normal' CHECK (priority IN ('emergency', 'urgent', 'normal')),
    status text NOT NULL DEFAULT 'waiting'
        CHECK (status IN ('waiting', 'called', 'in_consultation', 'done', 'removed')),
    scheduled_at timestamptz NOT NULL,
    checked_in_at timestamptz NOT NULL,
    -- the time the entry queues by: its start if on time, else its arrival, else a skip's end of line
    order_at timestamptz NOT NULL,
    skips integer NOT NULL DEFAULT 0 CHECK (skips >= 0),
    called_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    transferred_from uuid REFERENCES queues (id) ON DELETE SET NULL,
    removed_reason text CHECK (removed_reason IN ('skipped_out', 'no_show', 'cancelled')),
    -- what the patient was last told, so a change tells exactly those whose view changed
    told_position integer,
    told_eta integer,
    told_status text,
    UNIQUE (queue_id, ticket_no),
    UNIQUE (queue_id, ticket)
);
CREATE INDEX queue_entries_by_queue ON queue_entries (queue_id, status);
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="queueing", description=DESCRIPTION, sql=SQL)
