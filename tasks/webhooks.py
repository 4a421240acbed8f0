"""Processing the webhook inbox: one job per stored event (scheduled by
domain.inbox.commands.receive in the transaction that stored it)."""

from __future__ import annotations

from typing import Any

from domain.inbox.commands import TASK, process
from tasks.registry import job


@job(TASK, max_attempts=8)
async def process_webhook(*, job_key: str, payload: dict[str, Any]) -> None:
    """Once per event however often it runs: `process` marks the row in its effects'
    transaction and does nothing for a row already marked."""
    await process(str(payload["provider"]), str(payload["event_id"]))
