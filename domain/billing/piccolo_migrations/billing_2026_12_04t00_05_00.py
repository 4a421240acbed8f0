from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-12-04T00:05:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "billing payments: one pending online payment per invoice"

SQL = """
-- A checkout asked for twice (a double tap, a retried request) finds the pending payment of
-- the first: one live online payment per invoice, whoever inserts first.
CREATE UNIQUE INDEX billing_payments_live ON billing_payments (invoice_id)
    WHERE status = 'pending';
CREATE INDEX billing_payments_provider_payment ON billing_payments (provider, provider_payment_id)
    WHERE provider_payment_id IS NOT NULL;
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="billing", description=DESCRIPTION, sql=SQL)
