from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-11-25T00:00:05:000000"
VERSION = "1.38.0"
DESCRIPTION = "doctor schedules, time off, appointments that cannot double-book"

SQL = """
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE doctor_schedules (
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    doctor_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    slot_minutes integer NOT NULL CHECK (slot_minutes BETWEEN 5 AND 480),
    rules jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (clinic_id, doctor_id)
);

-- doctor_id NULL: the whole clinic is closed (a holiday).
CREATE TABLE time_off (
    id uuid PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    doctor_id uuid REFERENCES users (id) ON DELETE CASCADE,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL CHECK (ends_at > starts_at),
    reason text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX time_off_by_clinic ON time_off (clinic_id, starts_at);

CREATE TABLE appointments (
    id uuid PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    doctor_id uuid NOT NULL REFERENCES users (id),
    patient_id uuid NOT NULL REFERENCES users (id),
    location_id uuid,
    type text NOT NULL CHECK (type IN ('in_person', 'video')),
    status text NOT NULL CHECK (status IN ('pending_payment', 'scheduled', 'confirmed',
        'checked_in', 'in_progress', 'completed', 'cancelled', 'no_show', 'expired')),
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    reason text NOT NULL DEFAULT '',
    parent_id uuid REFERENCES appointments (id),
    series_id uuid,
    reschedule_count integer NOT NULL DEFAULT 0,
    payment_due_at timestamptz,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CHECK (type = 'video' OR location_id IS NOT NULL),
    FOREIGN KEY (clinic_id, location_id) REFERENCES locations (clinic_id, id),
    -- The database itself refuses a double booking, whatever the concurrency.
    CONSTRAINT appointments_no_overlap EXCLUDE USING gist (
        doctor_id WITH =, tstzrange(starts_at, ends_at, '[)') WITH &&
    ) WHERE (status NOT IN ('cancelled', 'no_show', 'expired'))
);
CREATE INDEX appointments_by_clinic ON appointments (clinic_id, starts_at);
CREATE INDEX appointments_by_patient ON appointments (patient_id, starts_at);
CREATE INDEX appointments_by_parent ON appointments (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX appointments_unpaid ON appointments (payment_due_at) WHERE status = 'pending_payment';

CREATE TABLE appointment_transitions (
    id bigserial PRIMARY KEY,
    appointment_id uuid NOT NULL REFERENCES appointments (id) ON DELETE CASCADE,
    from_status text,
    to_status text NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    actor_id uuid,
    reason text NOT NULL DEFAULT '',
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX appointment_transitions_by_appointment ON appointment_transitions (appointment_id, id);
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="scheduling", description=DESCRIPTION, sql=SQL)
