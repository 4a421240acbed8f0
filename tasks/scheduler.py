"""Moves due scheduled jobs onto the broker. Every worker runs one; SKIP LOCKED shares the
table between them, and a hand-off that fails rolls back, so the job stays due. Between passes
it sleeps until the next job falls due (a reminder leaves within milliseconds of its time),
at most `scheduler_poll_seconds`, and wakes early on NOTIFY when a job due sooner is planned."""

from __future__ import annotations

import asyncio
import logging
import time

from taskiq_redis import RedisStreamBroker

from domain import db, settings
from domain.jobs.commands import CHANNEL, claim_due
from domain.notifications import reminders
from tasks.broker import EXECUTE, TICK
from tasks.wakeups import Wakeups, nap

log = logging.getLogger("carewire.scheduler")


#: Jobs handed over per pass (one transaction); a full batch is followed at once by the next.
BATCH = 100
#: Added to the sleep until the next due job, so the claim's `now()` has passed its run_at.
_MARGIN = 0.001


async def enqueue_due(broker: RedisStreamBroker, limit: int = BATCH) -> tuple[int, float | None]:
    """Hands the due jobs over; returns how many, and the seconds until the next one is due."""
    execute = broker.find_task(EXECUTE)
    assert execute is not None
    async with db.transaction():
        claim = await claim_due(limit, skip=(reminders.TASK,))  # sent in batches by its own loop
        claimed_at = time.monotonic()
        for item in claim.due:
            await execute.kiq(item.task, item.job_key, item.payload, item.attempt)
    wait = None if claim.next_in is None else claim.next_in - (time.monotonic() - claimed_at)
    return len(claim.due), wait


async def run_scheduler(broker: RedisStreamBroker, stop: asyncio.Event, wakeups: Wakeups) -> None:
    cfg = settings.get()
    tick = broker.find_task(TICK)
    assert tick is not None
    last_tick = 0.0
    wake = wakeups.subscribe(CHANNEL)
    while not stop.is_set():
        try:
            await wakeups.ensure()
            wake.clear()
            sent, wait = await enqueue_due(broker)
            if time.monotonic() - last_tick > cfg.job_reclaim_seconds / 2:
                await tick.kiq()
                last_tick = time.monotonic()
            if sent < BATCH:
                timeout = cfg.scheduler_poll_seconds if wait is None else \
                    min(max(wait, 0.0) + _MARGIN, cfg.scheduler_poll_seconds)
                await nap(wake, timeout)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("scheduler pass failed")
            await nap(stop, cfg.scheduler_poll_seconds)
