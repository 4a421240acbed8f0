from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-12-03T00:03:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "scheduled jobs: pending ones found by job_key prefix (a reschedule moves reminders)"

SQL = """
-- `unschedule(prefix=...)` deletes an appointment's pending reminders (`reminder:{id}:...`)
-- whatever start they were planned for: LIKE 'prefix%' uses this index in any collation.
CREATE INDEX scheduled_jobs_pending_key ON scheduled_jobs (job_key text_pattern_ops)
    WHERE enqueued_at IS NULL;
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="jobs", description=DESCRIPTION, sql=SQL)
