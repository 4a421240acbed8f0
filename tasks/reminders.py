"""The reminder loop in every worker: sends due reminders in batches straight from the job
schedule (the scheduler leaves them to it). One Taskiq job per reminder cost a worker about
10 ms of CPU and PostgreSQL 7 ms each (bench/reminders.py); a batch loads its appointments,
people, preferences and templates once and writes each kind of row in one statement.

It sleeps until the next reminder falls due (capped by the poll) and wakes on NOTIFY when one
is planned sooner. A batch that fails is retried one reminder at a time; a single one that
still fails is buried (dead_jobs) so it cannot hold back the others."""

from __future__ import annotations

import logging

from domain import db, settings
from domain.jobs.commands import CHANNEL, bury, claim_due
from domain.notifications import reminders
from tasks.wakeups import Wakeups, WakingLoop, nap

log = logging.getLogger("carewire.reminders")

BATCH = 200
#: Added to the sleep until the next due reminder, so the claim's `now()` has passed it.
_MARGIN = 0.001


class ReminderLoop(WakingLoop):
    name = "reminders"

    def __init__(self, wakeups: Wakeups, batch: int = BATCH) -> None:
        super().__init__(wakeups, CHANNEL)
        self.batch = batch

    async def _one_at_a_time(self) -> None:
        """After a failed batch: each reminder on its own; one that fails alone is buried."""
        for _ in range(self.batch):
            try:
                if not (await reminders.send_due(1)).due:
                    return
            except Exception as exc:
                log.exception("a reminder failed on its own; burying it")
                async with db.transaction():
                    claim = await claim_due(1, task=reminders.TASK)
                    for d in claim.due:
                        await bury(task=d.task, job_key=d.job_key, payload=d.payload,
                                   attempts=d.attempt, error=f"{type(exc).__name__}: {exc}")

    async def run(self) -> None:
        poll = settings.get().scheduler_poll_seconds
        while not self._stop.is_set():
            await self._wakeups.ensure()
            self._wake.clear()
            wait = poll
            try:
                claim = await reminders.send_due(self.batch)
                if len(claim.due) == self.batch:
                    continue  # more are due
                if claim.next_in is not None:
                    wait = min(poll, max(0.0, claim.next_in) + _MARGIN)
            except Exception:
                log.exception("a batch of reminders failed; one at a time")
                await self._one_at_a_time()
            await nap(self._wake, wait)
