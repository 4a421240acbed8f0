from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-12-03T00:00:11:000000"
VERSION = "1.38.0"
DESCRIPTION = "clinic_credentials: each clinic's provider secrets, encrypted"

SQL = """
-- One row per clinic and provider: the credential fields as one AES-256-GCM ciphertext whose
-- associated data is the clinic id and provider (a row copied elsewhere does not decrypt),
-- under the key `key_id` names (rotation rewrites rows key by key). `last4` holds only what the
-- masked view shows, so showing it needs no key (domain/tenancy/credentials.py).
CREATE TABLE clinic_credentials (
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    provider text NOT NULL CHECK (provider ~ '^[a-z][a-z0-9_]{0,39}$'),
    key_id text NOT NULL CHECK (length(key_id) BETWEEN 1 AND 32),
    nonce bytea NOT NULL CHECK (length(nonce) = 12),
    ciphertext bytea NOT NULL CHECK (length(ciphertext) > 16),
    last4 jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (clinic_id, provider)
);
-- `carewire keys rotate` looks for the rows not under the current key.
CREATE INDEX clinic_credentials_by_key ON clinic_credentials (key_id, clinic_id, provider);
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="tenancy", description=DESCRIPTION, sql=SQL)
