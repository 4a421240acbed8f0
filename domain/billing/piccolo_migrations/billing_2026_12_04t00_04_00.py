from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-12-04T00:04:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "billing: a subscription's invoice for its current period"

SQL = """
-- The invoice of the subscription's current period (null: a trial, or a free plan). The renewal
-- job reads its status: unpaid at the period's end is a failed renewal (past_due, then expired).
ALTER TABLE billing_subscriptions
    ADD COLUMN period_invoice_id uuid REFERENCES billing_invoices (id);
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="billing", description=DESCRIPTION, sql=SQL)
