"""Appointment reminders, kept in the job schedule (domain/jobs) next to the unpaid-booking
expiry. `sync` plans them whenever an appointment changes (the consumer calls it in the
transaction that reads the event); the job `notifications.reminder` (tasks/reminders.py) runs
`send` when one falls due.

Decisions:
- Only a `scheduled` or `confirmed` appointment has reminders (`pending_payment` gets them when
  paid; a checked-in, finished, cancelled, no-show or expired one has none).
- A reminder whose due time has already passed when it is planned is skipped, not sent at once:
  booked 50 minutes ahead, there is no "1 hour before" reminder (the booking confirmation says
  it all). After downtime, a reminder planned in time but run late is still sent (marked late)
  while the appointment is ahead, and dropped once it has started.
- The job key is `reminder:{appointment_id}:{offset}:{reschedule_count}`, not the start time:
  the runner logs job keys, and no appointment time goes into a log line. The payload carries
  the start and the count; the job compares both with the appointment as it stands, so a job
  handed to a worker before a reschedule or cancellation does nothing (its successor exists).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from domain import clock, db, settings
from domain.errors import NotFound
from domain.jobs.commands import Planned, claim_once, schedule_many, unschedule
from domain.notifications import dispatch
from domain.scheduling.models import Appointment, Status

TASK: Final = "notifications.reminder"
KIND: Final = "appointment.reminder"
#: The statuses of an appointment that is still going to happen (and has been paid for).
REMINDED: Final = frozenset({Status.SCHEDULED, Status.CONFIRMED})


def _prefix(appointment_id: uuid.UUID) -> str:
    return f"reminder:{appointment_id}:"


def job_key(appointment: Appointment, offset: int) -> str:
    return f"{_prefix(appointment.id)}{offset}:{appointment.reschedule_count}"


def planned(appointment: Appointment, offsets: Sequence[int], now: datetime) -> list[Planned]:
    """The reminder jobs `appointment` should have pending now."""
    if appointment.status not in REMINDED:
        return []
    jobs = []
    for offset in sorted(set(offsets), reverse=True):
        due = appointment.start - timedelta(seconds=offset)
        if due > now:  # one already past is skipped (the booking confirmation said it all)
            jobs.append(Planned(task=TASK, job_key=job_key(appointment, offset), run_at=due,
                                payload={"appointment_id": str(appointment.id),
                                         "clinic_id": str(appointment.clinic_id),
                                         "offset": offset, "due": due.isoformat(),
                                         "start": appointment.start.isoformat(),
                                         "version": appointment.reschedule_count}))
    return jobs


async def sync(appointment: Appointment, offsets: list[int]) -> None:
    """Make the appointment's pending reminders exactly one per offset still ahead (none when it
    is not going to happen), in the caller's transaction: one DELETE of the pending ones not
    wanted any more (a reschedule's old start, a cancelled visit's, an offset the clinic
    dropped), and one INSERT of those missing (already planned ones are left as they are).
    Idempotent: the consumer may call it for every event of the appointment."""
    jobs = planned(appointment, offsets, clock.now())
    # A pending job of this very appointment version whose time has come stays, even though it
    # would not be planned now: after downtime the consumer's backlog and the scheduler race,
    # and the job itself decides (late, or dropped once the appointment has started).
    keep = [job_key(appointment, o) for o in offsets] if appointment.status in REMINDED else []
    await unschedule(prefix=_prefix(appointment.id), keep=keep)
    if jobs:
        await schedule_many(jobs, wake_within=settings.get().scheduler_poll_seconds)


def _is_current(appointment: Appointment, payload: dict[str, Any]) -> bool:
    return (appointment.status in REMINDED
            and appointment.reschedule_count == payload["version"]
            and appointment.start == datetime.fromisoformat(payload["start"]))


async def send(*, job_key: str, payload: dict[str, Any]) -> None:
    """One reminder, once however many workers run it (claim_once in the same transaction as
    its effect). A stale one (rescheduled, cancelled) does nothing; one whose appointment has
    started is recorded as dropped; one run more than `reminder_late_seconds` after its due
    time is sent marked late."""
    async with db.transaction():
        if not await claim_once(job_key=job_key, task=TASK):
            return
        try:  # what the message is rendered from, read once (the appointment among it)
            facts = await dispatch.load_facts(uuid.UUID(payload["clinic_id"]),
                                              uuid.UUID(payload["appointment_id"]), [])
        except NotFound:
            return
        appointment = facts.appointment
        if appointment is None or not _is_current(appointment, payload):
            return
        now = clock.now()
        if appointment.start <= now:
            await dispatch.record_dropped(clinic_id=appointment.clinic_id, kind=KIND,
                                          user_id=appointment.patient_id,
                                          appointment_id=appointment.id, key=job_key)
            return
        late = (now - datetime.fromisoformat(payload["due"])).total_seconds() \
            > settings.get().reminder_late_seconds
        await dispatch.notify(clinic_id=appointment.clinic_id, kind=KIND,
                              user_id=appointment.patient_id, appointment_id=appointment.id,
                              key=job_key, late=late, facts=facts)

