"""The delivery loop: every worker claims due messages in batches and runs each through the
pipeline, up to `concurrency` at once, and records the rounds that end together in one
statement. It wakes on NOTIFY when a message is enqueued, and polls as the safety net (and for
messages due later: the next round, a rate-limit slot)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from domain import settings
from domain.communication.commands.messages import CHANNEL, Claimed, claim_due, finish
from domain.communication.pipeline import Delivery, deliver
from realtime import metrics
from tasks.wakeups import Wakeups, nap

log = logging.getLogger("carewire.delivery")


#: The longest a finished round waits for others to be recorded with it.
GATHER_SECONDS = 0.002


def _count(delivery: Delivery) -> None:
    for a in delivery.finish.attempts:
        metrics.MESSAGE_ATTEMPTS.labels(delivery.channel, a.provider, a.outcome).inc()
        if a.latency_ms is not None:
            metrics.PROVIDER_LATENCY.labels(a.provider).observe(a.latency_ms / 1000)
    metrics.MESSAGES.labels(delivery.channel, delivery.finish.status or "requeued").inc()


class DeliveryLoop:
    def __init__(self, wakeups: Wakeups, concurrency: int, poll_seconds: float = 1.0) -> None:
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self._wakeups = wakeups
        self._stop = asyncio.Event()
        self._wake = wakeups.subscribe(CHANNEL)
        self._inflight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._done: list[Delivery] = []
        self._has_done = asyncio.Event()
        self._recorder: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="delivery-loop")
        self._recorder = asyncio.create_task(self._record(), name="delivery-recorder")

    async def stop(self, grace: float = 5.0) -> None:
        """Let sends in flight finish (a cut-short one is reclaimed after its lease)."""
        self._stop.set()
        self._wake.set()
        if self._task:  # bounded: a stop must never hang on a claim in progress
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout=grace)
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=grace)
        for t in list(self._inflight):
            t.cancel()
        if self._inflight:  # let the cancelled ones give their connections back
            await asyncio.wait(self._inflight, timeout=grace)
        if self._recorder:
            self._recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recorder
        await self._flush()

    async def _flush(self) -> None:
        batch, self._done = self._done, []
        if not batch:
            return
        try:
            await finish([d.finish for d in batch])
        except Exception:  # their leases run out and another round sends them (once more at most)
            log.exception("could not record %s sending rounds", len(batch))
            return
        for d in batch:
            _count(d)

    async def _record(self) -> None:
        """Rounds that end within GATHER_SECONDS of each other are written together."""
        while True:
            await self._has_done.wait()
            await asyncio.sleep(GATHER_SECONDS)
            self._has_done.clear()
            await self._flush()
            self._wake.set()

    async def _one(self, claimed: Claimed) -> None:
        try:
            delivery = await deliver(claimed)
            # (not `self._done.append(await ...)`: that binds the list before the await, and
            # _flush may have swapped it by then)
            self._done.append(delivery)
            self._has_done.set()
        except Exception:  # the database went away mid-round: the lease hands it on
            log.exception("delivery round failed for message %s", claimed.id)
        finally:
            self._wake.set()

    async def run(self) -> None:
        lease = timedelta(seconds=settings.get().message_lease_seconds)
        while not self._stop.is_set():
            await self._wakeups.ensure()
            self._wake.clear()
            free = self.concurrency - len(self._inflight)
            claimed: list[Claimed] = []
            if free > 0:
                try:
                    claimed = await claim_due(free, lease=lease)
                except Exception:
                    log.exception("claiming messages failed")
            for c in claimed:
                task = asyncio.create_task(self._one(c))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            if claimed and len(claimed) == free:
                continue  # more may be due: claim again as soon as a slot frees
            await nap(self._wake, self.poll_seconds)
