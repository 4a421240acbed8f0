"""The notifications consumer in every worker: wakes when events are committed (NOTIFY, with a
poll as the safety net) and turns each clinic's new events into notifications (see
domain/notifications/consumer.py). Workers share clinics through the cursor's row lock."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from domain.events.commands import CHANNEL
from domain.notifications.commands.consume import pending, process_clinic
from domain.notifications.consumer import BATCH
from tasks.wakeups import Wakeups, nap

log = logging.getLogger("carewire.notifications")


class NotificationLoop:
    def __init__(self, wakeups: Wakeups, poll_seconds: float = 1.0) -> None:
        self.poll_seconds = poll_seconds
        self._wakeups = wakeups
        self._stop = asyncio.Event()
        self._wake = wakeups.subscribe(CHANNEL)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="notifications")

    async def stop(self, grace: float = 5.0) -> None:
        """A batch cut short rolls back; the next worker reads it again (once)."""
        self._stop.set()
        self._wake.set()
        if self._task:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout=grace)

    async def pass_once(self) -> int:
        """Every clinic with news, until each is caught up (or held by another worker)."""
        read = 0
        for clinic_id in await pending():
            while not self._stop.is_set():
                n = await process_clinic(clinic_id)
                read += n
                if n < BATCH:
                    break
        return read

    async def run(self) -> None:
        while not self._stop.is_set():
            await self._wakeups.ensure()
            self._wake.clear()
            try:
                await self.pass_once()
            except Exception:
                log.exception("notifications pass failed")
            await nap(self._wake, self.poll_seconds)
