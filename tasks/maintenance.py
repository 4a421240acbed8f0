"""Housekeeping jobs the worker keeps scheduled."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from domain import clock, db, settings
from domain.audit.queries import verify_chain
from domain.communication.commands.retention import prune_bodies
from domain.jobs.commands import claim_once
from domain.notifications.commands.retention import prune_texts
from domain.scheduling.commands import expire_unpaid
from tasks.registry import job

log = logging.getLogger("carewire.jobs")


@job("events.prune", every=3600)
async def prune_events(*, job_key: str, payload: dict[str, Any]) -> None:
    """Past the retention window a resuming client gets `resync_required` instead."""
    keep = timedelta(seconds=settings.get().event_retention_seconds)
    async with db.transaction():
        if not await claim_once(job_key=job_key, task="events.prune"):
            return
        rows = await db.fetch(
            """WITH gone AS (DELETE FROM events
                             WHERE published_at IS NOT NULL AND occurred_at < $1 RETURNING 1)
               SELECT count(*) AS n FROM gone""",
            clock.now() - keep,
        )
    log.info("pruned %s events older than %s", rows[0]["n"], keep)


class AuditChainBroken(RuntimeError):
    pass


@job("audit.verify", every=3600, max_attempts=3)
async def verify_audit(*, job_key: str, payload: dict[str, Any]) -> None:
    """Tampering is found within the hour, not only when someone runs `audit verify`."""
    result = await verify_chain()
    if not result.ok:
        log.error("audit chain broken at row %s: %s", result.first_bad_id, result.reason)
        raise AuditChainBroken(f"audit chain broken at row {result.first_bad_id}: {result.reason}")


@job("appointments.expire_unpaid", every=30)
async def expire_unpaid_appointments(*, job_key: str, payload: dict[str, Any]) -> None:
    """Unpaid bookings past their payment window free their slot."""
    moved = await expire_unpaid()
    if moved:
        log.info("expired %s unpaid appointments", moved)


@job("communication.prune_bodies", every=3600)
async def prune_message_bodies(*, job_key: str, payload: dict[str, Any]) -> None:
    """Message bodies, and the inbox's copies of their text, live only as long as each clinic's
    `message_body_retention_days`."""
    pruned = await prune_bodies()
    if pruned:
        log.info("pruned the bodies of %s messages", pruned)
    cleared = await prune_texts()
    if cleared:
        log.info("pruned the text of %s notifications", cleared)
