from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-12-03T00:01:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhook_inbox: every provider's verified webhooks, stored before processing"

SQL = """
-- One row per provider event, written only after its signature was verified on the raw body.
-- UNIQUE (provider, event_id) is what makes a redelivered or concurrent webhook one event; the
-- processing job marks `processed_at` in the transaction of its effects (once).
CREATE TABLE webhook_inbox (
    id bigserial PRIMARY KEY,
    provider text NOT NULL CHECK (length(provider) BETWEEN 1 AND 40),
    event_id text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 300),
    -- Known once processed (the event's message names it); NULL for events of no clinic.
    clinic_id uuid REFERENCES clinics (id) ON DELETE CASCADE,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- The headers the verification read (signature, type), never cookies or authorization.
    headers jsonb NOT NULL DEFAULT '{}'::jsonb,
    body bytea NOT NULL,
    verified boolean NOT NULL,
    processed_at timestamptz,
    -- What processing did (`bounced`, `unknown_message`, ...), or why it failed last.
    result text CHECK (length(result) <= 200),
    error text CHECK (length(error) <= 2000),
    UNIQUE (provider, event_id)
);
CREATE INDEX webhook_inbox_unprocessed ON webhook_inbox (received_at) WHERE processed_at IS NULL;
CREATE INDEX webhook_inbox_of_clinic ON webhook_inbox (clinic_id, received_at)
    WHERE clinic_id IS NOT NULL;
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="inbox", description=DESCRIPTION, sql=SQL)
