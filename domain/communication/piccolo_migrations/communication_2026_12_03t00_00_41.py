from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-12-03T00:00:41:000000"
VERSION = "1.38.0"
DESCRIPTION = "communication_suppressions: an id for keyset pages; the delivery log by recipient"

SQL = """
-- Suppressions are keyed by (clinic, channel, address); pages are keyset by (created_at, id)
-- as every other list (domain/paging.py), so each row gets an id of its own.
ALTER TABLE communication_suppressions
    ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE;
CREATE INDEX communication_suppressions_page
    ON communication_suppressions (clinic_id, created_at, id);
-- Active devices per user are counted (the per-user cap) and listed newest first.
CREATE INDEX devices_of_user_by_time ON devices (user_id, created_at, id) WHERE retired_at IS NULL;
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="communication", description=DESCRIPTION, sql=SQL)
