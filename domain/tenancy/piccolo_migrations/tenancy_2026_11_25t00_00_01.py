from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-11-25T00:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "clinics, locations, memberships"

SQL = """
CREATE TABLE clinics (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    timezone text NOT NULL,
    settings jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE locations (
    id uuid PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    address text NOT NULL DEFAULT '',
    timezone text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (clinic_id, id)
);

-- One membership per user per clinic; the composite key keeps a member's location inside
-- the same clinic, and a location head always has a location.
CREATE TABLE memberships (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('CLINIC_ADMIN', 'LOCATION_HEAD', 'DOCTOR', 'NURSE', 'RECEPTIONIST', 'PHARMACIST', 'LAB_TECHNICIAN', 'PATIENT', 'ACCOUNTANT', 'INVENTORY_MANAGER', 'SYSTEM_AUDITOR')),
    location_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, clinic_id),
    FOREIGN KEY (clinic_id, location_id) REFERENCES locations (clinic_id, id),
    CHECK (role <> 'LOCATION_HEAD' OR location_id IS NOT NULL)
);
CREATE INDEX memberships_by_clinic ON memberships (clinic_id, created_at, id);
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="tenancy", description=DESCRIPTION, sql=SQL)
