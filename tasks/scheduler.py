"""Moves due scheduled jobs onto the broker. Every worker runs one; SKIP LOCKED shares the
table between them, and a hand-off that fails rolls back, so the job stays due."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg
from taskiq_redis import RedisStreamBroker

from domain import db, settings
from domain.jobs.commands import CHANNEL, claim_due
from tasks.broker import EXECUTE, TICK

log = logging.getLogger("carewire.scheduler")


async def enqueue_due(broker: RedisStreamBroker, limit: int = 100) -> int:
    execute = broker.find_task(EXECUTE)
    assert execute is not None
    async with db.transaction():
        due = await claim_due(limit)
        for item in due:
            await execute.kiq(item.task, item.job_key, item.payload, item.attempt)
    return len(due)


async def run_scheduler(broker: RedisStreamBroker, stop: asyncio.Event) -> None:
    cfg = settings.get()
    tick = broker.find_task(TICK)
    assert tick is not None
    last_tick = 0.0
    conn: asyncpg.Connection | None = None
    wake = asyncio.Event()
    while not stop.is_set():
        try:
            if conn is None or conn.is_closed():
                conn = await asyncpg.connect(cfg.database_url)
                await conn.add_listener(CHANNEL, lambda *_: wake.set())
            wake.clear()
            sent = await enqueue_due(broker)
            if time.monotonic() - last_tick > cfg.job_reclaim_seconds / 2:
                await tick.kiq()
                last_tick = time.monotonic()
            if sent < 100:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=cfg.scheduler_poll_seconds)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("scheduler pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=cfg.scheduler_poll_seconds)
    if conn is not None:
        await conn.close()
