"""Scheduling jobs and recording their fate. `schedule` joins the caller's transaction, so a
change and the work it implies (a reminder, a notification) commit together."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from domain import clock, db

#: LISTEN channel the scheduler wakes on when a job is due now.
CHANNEL = "carewire_jobs"


class Due(msgspec.Struct, frozen=True):
    task: str
    job_key: str
    payload: dict[str, Any]
    attempt: int


async def schedule(
    *, task: str, job_key: str, payload: dict[str, Any] | None = None,
    run_at: datetime | None = None, attempt: int = 1,
) -> bool:
    """Returns False when this job (and attempt) was already scheduled."""
    when = run_at or clock.now()
    rows = await db.fetch(
        """INSERT INTO scheduled_jobs (id, task, job_key, schedule_key, payload, attempt, run_at)
           VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
           ON CONFLICT (schedule_key) DO NOTHING RETURNING id""",
        uuid.uuid4(), task, job_key, f"{job_key}#{attempt}",
        msgspec.json.encode(payload or {}).decode(), attempt, when,
    )
    if rows and when <= clock.now():
        await db.fetch("SELECT pg_notify($1, '')", CHANNEL)
    return bool(rows)


class Planned(msgspec.Struct, frozen=True):
    """A first attempt of a one-off job, for `schedule_many`."""

    task: str
    job_key: str
    run_at: datetime
    payload: dict[str, Any] = {}


async def schedule_many(jobs: Sequence[Planned], *, wake_within: float = 0.0) -> int:
    """`schedule` for many jobs in one statement; those already scheduled are left as they are.
    Wakes the schedulers when one is due within `wake_within` seconds: a scheduler sleeps until
    the next due job it knows of, and must hear of an earlier one (reminders leave on time).
    Returns how many were new."""
    if not jobs:
        return 0
    rows = await db.fetch(
        """WITH m AS (
               INSERT INTO scheduled_jobs (id, task, job_key, schedule_key, payload, run_at)
               SELECT gen_random_uuid(), t, k, k || '#1', p::jsonb, r
               FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS j(t, k, p, r)
               ON CONFLICT (schedule_key) DO NOTHING RETURNING run_at),
           woke AS (SELECT pg_notify($5, '') FROM m WHERE run_at <= now() + $6::interval LIMIT 1)
           SELECT (SELECT count(*) FROM m) AS n, (SELECT count(*) FROM woke) AS woke""",
        [j.task for j in jobs], [j.job_key for j in jobs],
        [msgspec.json.encode(j.payload).decode() for j in jobs], [j.run_at for j in jobs],
        CHANNEL, timedelta(seconds=wake_within),
    )
    return int(rows[0]["n"])


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def unschedule(*, prefix: str, keep: Sequence[str] = ()) -> int:
    """Deletes the jobs not yet handed to a worker whose job_key starts with `prefix`, except
    those named in `keep` (one statement; the index `scheduled_jobs_pending_key` finds them).
    A job already handed over still runs: it must check that it is still wanted."""
    rows = await db.fetch(
        """WITH gone AS (DELETE FROM scheduled_jobs
                         WHERE enqueued_at IS NULL AND job_key LIKE $1
                           AND NOT (job_key = ANY($2::text[])) RETURNING 1)
           SELECT count(*) AS n FROM gone""",
        _like_prefix(prefix), list(keep),
    )
    return int(rows[0]["n"])


class Claim(msgspec.Struct, frozen=True):
    due: list[Due]
    #: Seconds from the claim until the next job not yet due falls due (the database's clock,
    #: the one the claim compares with); None when none is planned.
    next_in: float | None


async def claim_due(limit: int = 100) -> Claim:
    """Inside the scheduler's transaction: due jobs, marked enqueued (rolled back if the hand-off
    to the broker fails), and when the next one falls due, in one statement (the scheduler
    sleeps until then). SKIP LOCKED lets several schedulers share the table; jobs due but held
    by another scheduler are not "next" (the partial index `scheduled_jobs_due` serves both)."""
    rows = await db.fetch(
        """WITH c AS (
               UPDATE scheduled_jobs SET enqueued_at = now()
               WHERE id IN (SELECT id FROM scheduled_jobs
                            WHERE enqueued_at IS NULL AND run_at <= now()
                            ORDER BY run_at LIMIT $1 FOR UPDATE SKIP LOCKED)
               RETURNING task, job_key, payload, attempt)
           SELECT task, job_key, payload, attempt, NULL::float8 AS next_in FROM c
           UNION ALL
           SELECT NULL, NULL, NULL, NULL,
                  extract(epoch FROM min(run_at) - clock_timestamp())::float8
           FROM scheduled_jobs WHERE enqueued_at IS NULL AND run_at > now()""",
        limit,
    )
    due = [Due(task=r["task"], job_key=r["job_key"], attempt=r["attempt"],
               payload=msgspec.json.decode(r["payload"])) for r in rows if r["task"] is not None]
    wait = next((r["next_in"] for r in rows if r["task"] is None), None)
    return Claim(due=due, next_in=None if wait is None else float(wait))


async def claim_once(*, job_key: str, task: str) -> bool:
    """Call inside the job's transaction, before its effect: False means it already ran."""
    rows = await db.fetch(
        """INSERT INTO job_runs (job_key, task) VALUES ($1, $2)
           ON CONFLICT (job_key) DO NOTHING RETURNING job_key""",
        job_key, task,
    )
    return bool(rows)


async def bury(*, task: str, job_key: str, payload: dict[str, Any], attempts: int,
               error: str) -> None:
    await db.fetch(
        """INSERT INTO dead_jobs (id, task, job_key, payload, attempts, error)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6)""",
        uuid.uuid4(), task, job_key, msgspec.json.encode(payload).decode(), attempts, error[:2000],
    )
