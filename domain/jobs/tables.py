"""Job tables; the SQL of record is in piccolo_migrations/."""

from piccolo.columns import JSONB, UUID, Integer, Text, Timestamptz
from piccolo.table import Table


class ScheduledJob(Table, tablename="scheduled_jobs"):
    id = UUID(primary_key=True)
    task = Text()
    job_key = Text()
    schedule_key = Text()
    payload = JSONB()
    attempt = Integer()
    run_at = Timestamptz()
    enqueued_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()


class JobRun(Table, tablename="job_runs"):
    job_key = Text(primary_key=True)
    task = Text()
    finished_at = Timestamptz()


class DeadJob(Table, tablename="dead_jobs"):
    id = UUID(primary_key=True)
    task = Text()
    job_key = Text()
    payload = JSONB()
    attempts = Integer()
    error = Text()
    failed_at = Timestamptz()
