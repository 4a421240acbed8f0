"""The notifications consumer in every worker: wakes when events are committed (NOTIFY, with a
poll as the safety net) and turns each clinic's new events into notifications (see
domain/notifications/consumer.py). Workers share clinics through the cursor's row lock."""

from __future__ import annotations

import logging

from domain.events.commands import CHANNEL
from domain.notifications.commands.consume import pending, process_clinic
from domain.notifications.consumer import BATCH
from tasks.wakeups import Wakeups, WakingLoop, nap

log = logging.getLogger("carewire.notifications")


class NotificationLoop(WakingLoop):
    name = "notifications"

    def __init__(self, wakeups: Wakeups, poll_seconds: float = 1.0) -> None:
        super().__init__(wakeups, CHANNEL)
        self.poll_seconds = poll_seconds

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
