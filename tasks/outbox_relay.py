"""The outbox relay: publishes committed events to every hub, then marks them published.

One relay is active at a time (a PostgreSQL advisory lock held on its LISTEN connection);
others wait as standbys and take over when it dies. It wakes on NOTIFY, with a poll as the
safety net. A crash between publish and mark re-publishes: hubs drop what they have seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg

from domain import db, settings
from domain.events.commands import CHANNEL
from domain.events.queries import claim_unpublished, mark_published
from realtime import metrics, publisher

log = logging.getLogger("carewire.relay")

LEADER_LOCK = 0x0E7E17
BATCH = 500


async def pump_once() -> int:
    """Publish one batch; returns how many events went out."""
    async with db.transaction():
        batch = await claim_unpublished(BATCH)
        if not batch:
            return 0
        await publisher.publish(batch)
        await mark_published([o.envelope.id for o in batch])
    now = time.time()
    for out in batch:
        metrics.RELAY_LAG.observe(max(0.0, now - out.envelope.occurred_at.timestamp()))
    metrics.EVENTS_RELAYED.inc(len(batch))
    return len(batch)


class Relay:
    def __init__(self) -> None:
        self.is_leader = False
        self.published = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        self._stop.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _wait(self, wake: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=seconds)

    async def run(self) -> None:
        poll = settings.get().relay_poll_seconds
        while not self._stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(settings.get().database_url)
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK):
                    await self._wait(self._stop, 2 * poll)  # standby: try again later
                    continue
                self.is_leader = True
                wake = asyncio.Event()
                await conn.add_listener(CHANNEL, lambda *_, w=wake: w.set())
                while not self._stop.is_set():
                    wake.clear()
                    sent = await pump_once()
                    self.published += sent
                    if sent < BATCH:
                        await self._wait(wake, poll)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay failed; restarting")
                await self._wait(self._stop, poll)
            finally:
                self.is_leader = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
