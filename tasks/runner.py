"""Runs one job: success is counted, a failure is retried later with backoff (a new scheduled
attempt), and the last failure goes to the dead letters."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from domain import clock, db, settings
from domain.jobs.commands import bury, schedule
from realtime import metrics
from tasks.registry import JOBS

log = logging.getLogger("carewire.jobs")


def backoff(attempt: int) -> timedelta:
    base = settings.get().job_backoff_seconds
    return timedelta(seconds=min(base * 2 ** (attempt - 1), 3600))


async def execute(task: str, job_key: str, payload: dict[str, Any], attempt: int) -> None:
    spec = JOBS.get(task)
    if spec is None:
        async with db.transaction():
            await bury(task=task, job_key=job_key, payload=payload, attempts=attempt,
                       error="no such job")
        metrics.JOBS.labels(task, "dead").inc()
        return
    try:
        await spec.fn(job_key=job_key, payload=payload)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        async with db.transaction():
            if attempt >= spec.max_attempts:
                log.error("job %s (%s) failed for good after %s attempts: %s", task, job_key,
                          attempt, error)
                await bury(task=task, job_key=job_key, payload=payload, attempts=attempt,
                           error=error)
                state = "dead"
            else:
                log.warning("job %s (%s) attempt %s failed: %s", task, job_key, attempt, error)
                await schedule(task=task, job_key=job_key, payload=payload,
                               run_at=clock.now() + backoff(attempt), attempt=attempt + 1)
                state = "retried"
        metrics.JOBS.labels(task, state).inc()
        if state == "dead" and spec.every:
            await schedule_next(task, spec.every)
        return
    metrics.JOBS.labels(task, "succeeded").inc()
    if spec.every:  # keep a periodic job going
        await schedule_next(task, spec.every)


def slot_key(task: str, every: float, offset: int = 1) -> tuple[str, Any]:
    """Periodic runs are keyed by their time slot, so every worker schedules the same one."""
    now = clock.now().timestamp()
    slot = int(now // every) + offset
    return f"{task}@{slot}", clock.now() + timedelta(seconds=slot * every - now)


async def schedule_next(task: str, every: float) -> None:
    key, when = slot_key(task, every)
    async with db.transaction():
        await schedule(task=task, job_key=key, run_at=when)


async def ensure_periodic() -> None:
    for spec in JOBS.values():
        if spec.every:
            await schedule_next(spec.name, spec.every)
