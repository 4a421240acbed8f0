"""`carewire worker`: scheduled jobs run once across workers, failures retry then dead-letter,
and SIGTERM stops it cleanly. Each test has its own database and Redis."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests import servers
from tests.conftest import Db
from tests.servers import eventually, workers

pytestmark = [pytest.mark.slow]  # starts, kills and retries real workers


@pytest.fixture
def stack(env) -> Iterator[tuple[dict[str, str], Db]]:
    with servers.isolated_stack(env) as (own_env, _redis):
        own_env = {**own_env, "CAREWIRE_JOB_BACKOFF_SECONDS": "0.2",
                   "CAREWIRE_SCHEDULER_POLL_SECONDS": "0.2", "CAREWIRE_EVENT_RETENTION_SECONDS": "0"}
        yield own_env, Db(own_env["DATABASE_URL"])


def schedule(db: Db, task: str, job_key: str) -> None:
    db.fetch("INSERT INTO scheduled_jobs (id, task, job_key, schedule_key, run_at) "
             "VALUES (gen_random_uuid(), $1, $2, $2 || '#1', now())", task, job_key)


def test_a_job_runs_once_with_two_workers(stack) -> None:
    env, db = stack
    assert servers.cli(env, "seed-demo").returncode == 0  # leaves committed events behind
    assert db.fetch("SELECT count(*) AS n FROM events")[0]["n"] > 0
    with workers(env, 2):
        # The relay ran in one of them, and the notifications consumer has read every event
        # (the seed's bookings notify patients: notification.created events of its own).
        eventually(lambda: db.fetch(
            "SELECT (SELECT count(*) FROM events WHERE published_at IS NULL) = 0 AND NOT EXISTS ("
            " SELECT 1 FROM clinic_sequences s LEFT JOIN notification_cursors c USING (clinic_id)"
            " WHERE c.last_seq IS DISTINCT FROM s.last_seq) AS idle")[0]["idle"])
        schedule(db, "events.prune", "prune-now")
        eventually(lambda: db.fetch("SELECT 1 FROM job_runs WHERE job_key = 'prune-now'"))
        assert db.fetch("SELECT count(*) AS n FROM events")[0]["n"] == 0
        # The periodic jobs each workers scheduled at start-up exist once, not twice.
        periodic = db.fetch("SELECT task, count(*) AS n FROM scheduled_jobs "
                            "WHERE job_key LIKE '%@%' GROUP BY task")
        assert {(r["task"], r["n"]) for r in periodic} >= {("events.prune", 1),
                                                          ("audit.verify", 1)}
    assert db.fetch("SELECT count(*) AS n FROM job_runs WHERE job_key = 'prune-now'")[0]["n"] == 1


def test_a_failing_job_retries_with_backoff_then_dead_letters(stack) -> None:
    env, db = stack
    assert servers.cli(env, "seed-demo").returncode == 0
    first = db.fetch("SELECT min(id) AS id FROM audit_log")[0]["id"]
    db.fetch("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
    db.fetch("UPDATE audit_log SET outcome = 'denied' WHERE id = $1", first)
    schedule(db, "audit.verify", "verify-now")
    with workers(env, 1):
        dead = eventually(lambda: db.fetch(
            "SELECT attempts, error FROM dead_jobs WHERE job_key = 'verify-now'"))
    assert dead[0]["attempts"] == 3
    assert f"broken at row {first}" in dead[0]["error"]
    attempts = db.fetch("SELECT attempt, run_at, created_at FROM scheduled_jobs "
                        "WHERE job_key = 'verify-now' ORDER BY attempt")
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    delays = [(a["run_at"] - a["created_at"]).total_seconds() for a in attempts[1:]]
    assert delays[0] >= 0.19 and delays[1] >= 0.39  # 0.2 s, then doubled


def test_sigterm_stops_a_worker_cleanly(stack) -> None:
    env, db = stack
    with workers(env, 1) as (proc,):
        eventually(lambda: db.fetch("SELECT 1 FROM scheduled_jobs WHERE task = 'events.prune'"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


TAKE_AND_DIE = """
import asyncio, sys
import redis.asyncio as aioredis
from domain import kv, settings
from tasks.broker import EXECUTE, build_broker

async def main():
    broker = build_broker()
    await broker.startup()
    await broker.find_task(EXECUTE).kiq("events.prune", "reclaimed-job", {}, 1)
    conn = aioredis.from_url(settings.get().redis_url)
    # What a worker killed mid-job leaves behind: a message delivered, never acknowledged.
    taken = await conn.xreadgroup("carewire-workers", "killed-worker", {kv.key("jobs"): ">"},
                                  count=10)
    print(len(taken[0][1]) if taken else 0)
    await conn.aclose()
    await broker.shutdown()

asyncio.run(main())
"""


def test_a_job_held_by_a_dead_worker_is_reclaimed_and_runs_once(stack) -> None:
    env, db = stack
    env = {**env, "CAREWIRE_JOB_RECLAIM_SECONDS": "1"}
    taken = subprocess.run([sys.executable, "-c", TAKE_AND_DIE], env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert taken.stdout.strip() == "1", taken.stderr
    with workers(env, 2):
        eventually(lambda: db.fetch("SELECT 1 FROM job_runs WHERE job_key = 'reclaimed-job'"))

        def pending() -> int:
            import redis

            conn = redis.Redis.from_url(env["REDIS_URL"])
            try:
                return int(conn.xpending(env["CAREWIRE_REDIS_PREFIX"] + "jobs",
                                         "carewire-workers")["pending"])
            finally:
                conn.close()

        eventually(lambda: pending() == 0)
    assert db.fetch("SELECT count(*) AS n FROM job_runs WHERE job_key = 'reclaimed-job'"
                    )[0]["n"] == 1
