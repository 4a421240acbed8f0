from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-12-03T00:00:10:000000"
VERSION = "1.38.0"
DESCRIPTION = "invitations: a clinic asks, the person answers"

SQL = """
-- An invitation to join a clinic. `user_id` is the account the email had when the clinic asked
-- (NULL: none yet; nothing accepts such a row until a verified delivery exists). At most one
-- pending invitation per clinic and address; an expired one is marked before a new one is made.
CREATE TABLE invitations (
    id uuid PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    email text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    user_id uuid REFERENCES users (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('CLINIC_ADMIN', 'LOCATION_HEAD', 'DOCTOR', 'NURSE', 'RECEPTIONIST', 'PHARMACIST', 'LAB_TECHNICIAN', 'PATIENT', 'ACCOUNTANT', 'INVENTORY_MANAGER', 'SYSTEM_AUDITOR')),
    location_id uuid,
    invited_by uuid REFERENCES users (id) ON DELETE SET NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'accepted', 'declined', 'revoked', 'expired')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    answered_at timestamptz,
    FOREIGN KEY (clinic_id, location_id) REFERENCES locations (clinic_id, id),
    CHECK (role <> 'LOCATION_HEAD' OR location_id IS NOT NULL),
    CHECK (expires_at > created_at),
    CHECK ((status IN ('accepted', 'declined')) = (answered_at IS NOT NULL))
);
CREATE UNIQUE INDEX invitations_one_pending ON invitations (clinic_id, email)
    WHERE status = 'pending';
CREATE INDEX invitations_for_user ON invitations (user_id, created_at, id)
    WHERE status = 'pending';
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="tenancy", description=DESCRIPTION, sql=SQL)
