from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-12-03T00:01:10:000000"
VERSION = "1.38.0"
DESCRIPTION = "delivery webhooks: a 'read' status, soft-bounce suppressions, the soft bounces"

SQL = """
-- WhatsApp reports `read`; the log keeps it. The order (sent < delivered < read; bounced,
-- complained and failed final) is kept by the webhooks' UPDATE (commands/delivery_status.py).
ALTER TABLE communication_messages DROP CONSTRAINT communication_messages_status_check;
ALTER TABLE communication_messages ADD CONSTRAINT communication_messages_status_check
    CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'read', 'bounced', 'complained',
                      'failed', 'suppressed', 'unknown'));

-- Repeated soft bounces suppress an address too (3 within 7 days).
ALTER TABLE communication_suppressions DROP CONSTRAINT communication_suppressions_reason_check;
ALTER TABLE communication_suppressions ADD CONSTRAINT communication_suppressions_reason_check
    CHECK (reason IN ('hard_bounce', 'soft_bounce', 'complaint', 'unsubscribe', 'manual'));

-- Each soft bounce a provider reported, once per provider event: what the rule counts.
CREATE TABLE communication_soft_bounces (
    id bigserial PRIMARY KEY,
    clinic_id uuid NOT NULL REFERENCES clinics (id) ON DELETE CASCADE,
    channel text NOT NULL CHECK (channel IN ('email', 'push', 'whatsapp', 'sms')),
    address text NOT NULL CHECK (length(address) BETWEEN 1 AND 320),
    source_event_id text NOT NULL UNIQUE,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX communication_soft_bounces_of_address
    ON communication_soft_bounces (clinic_id, channel, address, at);
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="communication", description=DESCRIPTION, sql=SQL)
