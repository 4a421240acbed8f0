from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-11-25T00:00:03:000000"
VERSION = "1.38.0"
DESCRIPTION = "events outbox with a gapless per-clinic sequence"

SQL = """
-- The row lock taken by `UPDATE ... SET last_seq = last_seq + 1` is held until commit, so
-- sequence numbers are gapless and in commit order within a clinic.
CREATE TABLE clinic_sequences (
    clinic_id uuid PRIMARY KEY REFERENCES clinics (id) ON DELETE CASCADE,
    last_seq bigint NOT NULL DEFAULT 0
);

CREATE TABLE events (
    id uuid PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    type text NOT NULL,
    category text NOT NULL,
    priority text NOT NULL,
    occurred_at timestamptz NOT NULL,
    actor_id uuid,
    data jsonb NOT NULL,
    audience text[] NOT NULL,
    published_at timestamptz,
    UNIQUE (clinic_id, seq)
);
CREATE INDEX events_unpublished ON events (occurred_at) WHERE published_at IS NULL;
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="events", description=DESCRIPTION, sql=SQL)
