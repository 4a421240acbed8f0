from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.migrations import sql_migration

ID = "2026-11-25T00:00:04:000000"
VERSION = "1.38.0"
DESCRIPTION = "scheduled jobs, job runs (effects once), dead letters"

SQL = """
-- What should run and when. `schedule_key` makes scheduling idempotent (one row per job and
-- attempt); `job_key` names the effect, shared by all attempts of one job.
CREATE TABLE scheduled_jobs (
    id uuid PRIMARY KEY,
    task text NOT NULL,
    job_key text NOT NULL,
    schedule_key text NOT NULL UNIQUE,
    payload jsonb NOT NULL DEFAULT '{}'::jsonb,
    attempt integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    run_at timestamptz NOT NULL,
    enqueued_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scheduled_jobs_due ON scheduled_jobs (run_at) WHERE enqueued_at IS NULL;

-- A job's effect and its row here commit together: a retried or reclaimed job sees it ran.
CREATE TABLE job_runs (
    job_key text PRIMARY KEY,
    task text NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dead_jobs (
    id uuid PRIMARY KEY,
    task text NOT NULL,
    job_key text NOT NULL,
    payload jsonb NOT NULL,
    attempts integer NOT NULL,
    error text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
"""


async def forwards() -> MigrationManager:
    return sql_migration(migration_id=ID, app_name="jobs", description=DESCRIPTION, sql=SQL)
