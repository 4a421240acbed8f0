"""Subscription renewal, kept scheduled by the worker (see domain/billing/commands/
subscriptions.py for what a renewal, a failed one and a retry are)."""

from __future__ import annotations

import logging
from typing import Any

from domain.billing.commands.subscriptions import renew_due
from tasks.registry import job

log = logging.getLogger("carewire.jobs")


@job("billing.renew_subscriptions", every=3600)
async def renew_subscriptions(*, job_key: str, payload: dict[str, Any]) -> None:
    """Hourly: each run also counts one retry of every past_due subscription (three unpaid
    retries, then expired). Safe on several workers: each subscription is taken under SKIP
    LOCKED, and a run moves it once."""
    moved = await renew_due()
    if moved:
        log.info("renewal run moved %s subscriptions", moved)
