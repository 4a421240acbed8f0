"""Reconciliation of payments whose webhook never came (domain/billing/commands/reconcile.py)."""

from __future__ import annotations

import logging
from typing import Any

from domain.billing.commands.reconcile import reconcile
from tasks.registry import job

log = logging.getLogger("carewire.billing")


@job("billing.reconcile_payments", every=60)
async def reconcile_payments(*, job_key: str, payload: dict[str, Any]) -> None:
    """Every minute, the oldest-checked pending payments past the threshold."""
    counts = await reconcile()
    if counts:
        log.info("reconciled payments: %s", counts)
