"""The reminder job: `domain.notifications.reminders.send` when a reminder falls due."""

from __future__ import annotations

from typing import Any

from domain.notifications import reminders
from tasks.registry import job


@job(reminders.TASK)
async def send_reminder(*, job_key: str, payload: dict[str, Any]) -> None:
    """Once per reminder (claim_once inside); a stale one does nothing, a too-late one drops."""
    await reminders.send(job_key=job_key, payload=payload)
